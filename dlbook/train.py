"""A short, readable fit/evaluate loop for PyTorch classifiers and regressors.

:func:`fit` trains for a number of epochs and returns a :class:`History` of per-epoch
metrics; :func:`evaluate` computes the same metrics on a loader. A progress bar appears when
a person runs the code (terminal or live notebook) and nothing is printed in the book build.

Checkpoints: give :func:`fit` a ``checkpoint`` path and it saves model, optimizer, scheduler,
history and every random-number generator's state at the end of each epoch, atomically
(:func:`save_checkpoint`: write a temporary file, flush it to disk, rename). If the file
exists when :func:`fit` starts, training resumes from it; on the CPU a resumed run ends with
bit-identical weights to an uninterrupted one (``tests/test_train.py``). ``checkpoint`` may
also be a :class:`dlbook.practice.checkpointing.CheckpointManager`, which keeps the last k
checkpoints and the best one (the checkpointing chapter, ``book/practice/checkpointing.md``).

Integrity: every checkpoint carries a SHA-256 digest of its content, checked when it is
loaded, so a flipped bit is an error and not a silently different weight. A
:class:`~dlbook.practice.checkpointing.CheckpointManager` run whose newest file is corrupt
resumes from the previous one, with a warning naming both. The run's settings (optimizer,
scheduler, and whatever ``settings`` the caller adds) are saved too, and a resume with
different ones is refused unless ``fit(..., allow_changed_settings=True)``.

Data: :class:`TensorBatches` serves mini-batches of tensors held in memory, one indexing
operation per batch and a new order every epoch from its own generator, where a
``DataLoader`` would collate the examples of a batch one by one.

Regularization hooks: ``penalty`` adds a term such as an L1 or L2 norm of the weights to the
training loss only, and ``callbacks`` run after each epoch and may stop training (early
stopping, ``dlbook.regularization.regularization.EarlyStopping``).
"""

from __future__ import annotations

import hashlib
import numbers
import os
import pickle
import random
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import check_int, check_number, check_tensor
from dlbook.config import interactive

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max equals the target class.

    ``output`` is ``(..., C)`` and ``target`` holds one class per row,
    ``(...)``; a target of another shape is refused, never broadcast. The
    accuracy of no rows is NaN, as the mean of nothing in PyTorch.
    """
    check_tensor("output", output)
    check_tensor("target", target)
    if output.ndim == 0 or target.shape != output.shape[:-1]:
        raise ValueError(
            f"target must have shape {tuple(output.shape[:-1])} (one class "
            f"per row of output {tuple(output.shape)}), got "
            f"{tuple(target.shape)}"
        )
    return (output.argmax(dim=-1) == target).float().mean()


@dataclass
class History:
    """Per-epoch metrics: ``history["val_acc"]`` is a list with one value per epoch."""

    metrics: dict[str, list[float]] = field(default_factory=dict)

    def append(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.metrics.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        try:
            return self.metrics[key]
        except KeyError:
            raise KeyError(
                f"no metric {key!r} in this history; it holds: {', '.join(self.metrics)}"
            ) from None

    def __contains__(self, key: str) -> bool:
        return key in self.metrics

    def __len__(self) -> int:
        return max((len(v) for v in self.metrics.values()), default=0)

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.metrics.items() if v}

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last().items())
        return f"History({len(self)} epochs; last: {last})"


def _device_of(model: nn.Module) -> torch.device:
    """Where the model's first parameter (or buffer) lives."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _pair(batch: Any, name: str) -> tuple[Any, Any]:
    """A batch as ``(x, y)``; anything else is a clear error, not a bad unpacking."""
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        what = (
            f"{type(batch).__name__} of length {len(batch)}"
            if isinstance(batch, (list, tuple))
            else type(batch).__name__
        )
        raise TypeError(
            f"{name} must yield (x, y) pairs, got a {what} (a dictionary "
            "batch needs a collate_fn or a loop of your own)"
        )
    return batch[0], batch[1]


def _rows(target: Any) -> int:
    """Examples in a batch's target: its length, or its first part's for a tuple.

    A tuple target such as ``(labels, teacher_logits)`` (knowledge distillation,
    ``dlbook.transfer.distillation``) has one row per example in each part.
    """
    if isinstance(target, (list, tuple)) and target:
        return len(target[0])
    return len(target)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


class TensorBatches:
    """The mini-batches of ``(x, y)``, one epoch per pass, one indexing each.

    What a ``DataLoader`` over ``TensorDataset(x, y)`` yields, without its
    per-example work: a pass takes ``batch_size`` consecutive indices at a
    time and yields ``(x[i], y[i])`` (the last batch may be smaller). With
    ``shuffle``, each pass first draws a permutation of the N examples from
    ``generator``, as ``RandomSampler(x, generator=generator)`` draws its
    first one. Unlike a ``DataLoader``, a pass draws nothing from PyTorch's
    global generator, so the order depends on ``generator`` alone (and
    dropout's masks do not depend on how the data are loaded); ``fit``
    saves the generator's state with a checkpoint.

    Args:
        x, y: the examples and their targets, one row each.
        batch_size: examples per batch.
        shuffle: a new random order on every pass (else the stored order).
        generator: the source of the orders (default: seeded with 0).

    Shapes:
        x: (N, ...); y: (N, ...); a batch: (batch_size, ...) of each.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
    ):
        check_tensor("x", x, nonempty=True)
        check_tensor("y", y)
        if len(y) != len(x):
            raise ValueError(
                f"y has {len(y)} rows for the {len(x)} rows of x: one "
                "target per example is expected"
            )
        check_int("batch_size", batch_size, low=1)
        if generator is not None and not isinstance(
            generator, torch.Generator
        ):
            raise TypeError(
                "generator must be a torch.Generator, got "
                f"{type(generator).__name__}"
            )
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.shuffle = bool(shuffle)
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)  # batches per pass

    def __iter__(self):
        n = len(self.x)
        order = (
            torch.randperm(n, generator=self.generator)
            if self.shuffle
            else torch.arange(n)
        )
        for i in order.split(self.batch_size):
            yield self.x[i], self.y[i]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    | None = F.cross_entropy,
    metrics: Mapping[str, Metric] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Average loss and metrics of ``model`` over ``loader`` (batches of ``(x, y)``), in eval mode.

    Averages are weighted by batch size, so they equal the value over the whole set for
    metrics that are means (accuracy, mean squared error).
    """
    device = torch.device(device) if device is not None else _device_of(model)
    metrics = {"acc": accuracy} if metrics is None else metrics
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for batch in loader:
        x, y = _pair(batch, "loader")
        x, y = _to(x, device), _to(y, device)
        out = model(x)
        n = _rows(y)
        if loss_fn is not None:
            totals["loss"] = (
                totals.get("loss", 0.0) + float(loss_fn(out, y)) * n
            )
        for name, fn in metrics.items():
            totals[name] = totals.get(name, 0.0) + float(fn(out, y)) * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("loader is empty: nothing to evaluate")
    return {k: v / count for k, v in totals.items()}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    loss_fn: Callable[
        [torch.Tensor, torch.Tensor], torch.Tensor
    ] = F.cross_entropy,
    val_loader: Iterable | None = None,
    metrics: Mapping[str, Metric] | None = None,
    scheduler: Any = None,
    scheduler_step: str = "epoch",
    device: torch.device | str | None = None,
    checkpoint: str | Path | Any = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    callbacks: Sequence[Callable[[nn.Module, History], bool | None]] = (),
    progress: bool | None = None,
    clip_grad_norm: float | None = None,
    settings: Mapping[str, Any] | None = None,
    allow_changed_settings: bool = False,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        model: the network; moved to ``device``.
        train_loader: yields ``(x, y)`` batches.
        optimizer: any ``torch.optim`` optimizer over ``model``'s parameters.
        epochs: total number of epochs (a resumed run continues up to this number).
        loss_fn: ``loss_fn(output, target)`` -> scalar.
        val_loader: if given, ``val_loss`` and ``val_<metric>`` are recorded each epoch.
        metrics: name -> ``fn(output, target)``; default ``{"acc": accuracy}``; ``{}`` for none.
        scheduler: a learning-rate scheduler, stepped each epoch or each batch.
        scheduler_step: ``"epoch"`` or ``"batch"`` (e.g. for ``OneCycleLR``).
        device: where to train; default: where the model's parameters are.
        checkpoint: save state here after every epoch, and resume from it if it exists. A
            path, or an object with ``latest() -> Path | None`` and ``save(**state)`` such as
            :class:`dlbook.practice.checkpointing.CheckpointManager` (keep-last-k, keep-best).
        penalty: ``penalty(model)`` -> scalar added to the training loss (L1, L2, ...); it is
            recorded as ``train_penalty`` and is not part of ``train_loss`` or ``val_loss``.
        callbacks: each is called as ``callback(model, history)`` after every epoch (after the
            checkpoint is written); training stops when one returns ``True``.
        progress: show a progress bar; default: only when a person is watching.
        clip_grad_norm: if given, rescale the gradients before each step so that
            their joint norm is at most this (``torch.nn.utils.clip_grad_norm_``),
            and record the mean norm before clipping as ``train_grad_norm``;
            ``math.inf`` records the norm without clipping.
        settings: the run's own settings (plain values, e.g. ``asdict(config)``),
            saved in the checkpoint beside the optimizer's and scheduler's.
        allow_changed_settings: resume even if the checkpoint was saved with other
            settings (optimizer class or hyperparameters, scheduler, ``settings``), or
            is past ``epochs``. The saved states then win: the old schedule goes on.
            By default such a resume is refused, before anything is loaded.

    The history records ``train_loss`` and ``train_<metric>`` (running averages over the
    epoch, in train mode), ``lr``, and the validation metrics.
    """
    if (
        not isinstance(epochs, numbers.Integral)
        or isinstance(epochs, bool)
        or epochs < 1
    ):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    epochs = int(epochs)
    if clip_grad_norm is not None:
        check_number(
            "clip_grad_norm",
            clip_grad_norm,
            low=0,
            low_open=True,
            finite=False,
        )
    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(
            f"scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}"
        )
    _check_trainable(model, optimizer)
    device = torch.device(device) if device is not None else _device_of(model)
    model.to(device)
    run_settings = (
        _run_settings(optimizer, scheduler, scheduler_step, settings)
        if checkpoint is not None
        else None
    )
    metrics = {"acc": accuracy} if metrics is None else metrics
    history = History()
    start = 0
    manager = (
        checkpoint
        if checkpoint is not None
        and not isinstance(checkpoint, (str, os.PathLike))
        else None
    )
    if manager is not None and not all(
        callable(getattr(manager, m, None)) for m in ("latest", "save")
    ):
        raise TypeError(
            f"checkpoint must be a path or have latest() and save() methods, got {type(checkpoint).__name__}"
        )
    if manager is None:
        candidates = (
            [Path(checkpoint)] if Path(checkpoint or "").is_file() else []
        )
    elif callable(getattr(manager, "checkpoints", None)):
        candidates = list(reversed(manager.checkpoints()))  # newest first
    else:
        latest = manager.latest()
        candidates = [Path(latest)] if latest is not None else []
    state = load_latest(
        candidates,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loader=train_loader,
        settings=run_settings,
        epochs=epochs,
        allow_changed_settings=allow_changed_settings,
    )
    if state is not None:
        history = History(state["history"])
        start = state["epoch"]

    show = interactive() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start, desc="epochs", leave=True)
    for epoch in range(start, epochs):
        model.train()
        totals: dict[str, float] = {}
        count = 0
        for batch in train_loader:
            x, y = _pair(batch, "train_loader")
            x, y = _to(x, device), _to(y, device)
            out = model(x)
            if (
                loss_fn is F.cross_entropy
                and isinstance(y, torch.Tensor)
                and y.is_floating_point()
                and y.shape == out.shape[:-1]
            ):
                raise TypeError(
                    "the targets of cross_entropy must be integer classes, "
                    f"got dtype {y.dtype} (convert them with .long(); class "
                    "probabilities have shape (N, C))"
                )
            loss = loss_fn(out, y)
            extra = penalty(model) if penalty is not None else None
            optimizer.zero_grad(set_to_none=True)
            (loss if extra is None else loss + extra).backward()
            if clip_grad_norm is not None:
                norm = nn.utils.clip_grad_norm_(
                    model.parameters(), clip_grad_norm
                )
                totals["grad_norm"] = totals.get("grad_norm", 0.0) + float(
                    norm
                ) * _rows(y)
            optimizer.step()
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            n = _rows(y)
            totals["loss"] = totals.get("loss", 0.0) + loss.item() * n
            if extra is not None:
                totals["penalty"] = (
                    totals.get("penalty", 0.0) + extra.item() * n
                )
            with torch.no_grad():
                for name, fn in metrics.items():
                    totals[name] = (
                        totals.get(name, 0.0) + float(fn(out, y)) * n
                    )
            count += n
        if count == 0:
            raise ValueError(
                "train_loader yielded no examples: there is nothing to train "
                "on (a DataLoader with drop_last=True and a batch_size larger "
                "than the data set does this)"
            )
        record = {f"train_{k}": v / count for k, v in totals.items()}
        record["lr"] = optimizer.param_groups[0]["lr"]
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        if val_loader is not None:
            record.update(
                {
                    f"val_{k}": v
                    for k, v in evaluate(
                        model, val_loader, loss_fn, metrics, device
                    ).items()
                }
            )
        history.append(record)
        if checkpoint is not None:
            state = dict(
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                loader=train_loader,
                epoch=epoch + 1,
                history=history.metrics,
                settings=run_settings,
            )
            if manager is not None:
                manager.save(**state)
            else:
                save_checkpoint(checkpoint, **state)
        if bar is not None:
            bar.set_postfix(
                {k: f"{v:.4g}" for k, v in record.items() if k != "lr"}
            )
            bar.update(1)
        if any(
            [bool(callback(model, history)) for callback in callbacks]
        ):  # a list: every callback runs
            break
    if bar is not None:
        bar.close()
    return history


# --- checkpoints ---------------------------------------------------------------------------


def rng_state(loader: Any = None) -> dict[str, Any]:
    """The state of every random-number generator a training run draws from.

    Python's `random`, NumPy's global generator, PyTorch's CPU and CUDA
    generators, and the loader's own `generator` if it has one (it decides
    the shuffling order). NumPy's state is stored as tensors, so that the
    checkpoint loads with weights_only=True.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all()
        if torch.cuda.is_available()
        else [],
    }
    generator = getattr(loader, "generator", None)
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: Mapping[str, Any], loader: Any = None) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(loader, "generator", None)
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to `path` so that a crash mid-save never leaves a broken file.

    The object is written to a temporary file in the same folder, flushed to
    disk, and renamed over `path` (os.replace is atomic on one file system):
    `path` holds either the old checkpoint or the new one, never half of one.
    The folder is flushed too, so that the rename itself survives a power cut
    (POSIX; a no-op where folders cannot be opened). A process killed outright
    (SIGKILL) cannot remove its temporary file: such leftovers are named
    .<name>.<random>.tmp and are safe to delete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (new names, renames) to disk; nothing where that is not possible."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows, where folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    loader: Any = None,
    **extra: Any,
) -> Path:
    """Save everything needed to resume training exactly, atomically.

    The write goes through atomic_save. `extra` holds plain values (epoch,
    history, metrics) stored beside the states.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_class": _class_name(optimizer),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": _class_name(scheduler),
        "rng": rng_state(loader),
        **extra,
    }
    state["sha256"] = state_digest(state)
    return atomic_save(state, path)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, corrupt, or not for these objects."""


def _class_name(obj: Any) -> str | None:
    return None if obj is None else type(obj).__qualname__


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's content: every tensor's bytes, dtype and shape, every value.

    The ``"sha256"`` entry itself is left out. The digest is of what was saved, not of the
    file's bytes, so it survives hard links and copies and is checked after loading.
    """
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            if t.layout != torch.strided:
                t = t.to_dense()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, Mapping):
            h.update(f"D{len(x)}".encode())
            for k, v in x.items():
                feed(k)
                feed(v)
        elif isinstance(x, (list, tuple)):
            h.update(f"{type(x).__name__[0]}{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"{type(x).__name__}:{x!r};".encode())

    feed({k: v for k, v in state.items() if k != "sha256"})
    return h.hexdigest()


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    """Load and verify a checkpoint file; every failure names the file."""
    if path.is_dir():
        raise IsADirectoryError(
            f"checkpoint {path} is a folder, not a checkpoint file"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(
            path, map_location=map_location or "cpu", weights_only=True
        )
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise  # code in the pickle: refused, never run (not "corrupt")
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        what = f"{type(err).__name__}: {err}".strip().rstrip(":")
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({what})"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        if isinstance(state, dict) and all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            names = ", ".join(list(state)[:3])
            raise CheckpointError(
                f"checkpoint {path} holds a plain state dict ({names}, ...), "
                "not a training checkpoint: load it with model.load_state_"
                "dict(torch.load(path, weights_only=True))"
            )
        keys = list(state) if isinstance(state, dict) else type(state)
        raise CheckpointError(
            f"checkpoint {path} is not a training checkpoint written by "
            f"save_checkpoint: it holds {keys}, with no 'model' entry"
        )
    if "sha256" not in state:
        warnings.warn(
            f"checkpoint {path} has no checksum (it was written by an older "
            "dlbook or by hand); it is loaded without an integrity check",
            stacklevel=3,
        )
    elif state_digest(state) != state["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content does not match the "
            "SHA-256 digest stored when it was saved"
        )
    return state


def _check_compatible(
    path: Path,
    state: Mapping[str, Any],
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    restore_rng: bool,
) -> None:
    """Refuse, before anything is overwritten, a checkpoint that does not fit the objects."""
    mine = model.state_dict()
    saved = state["model"]
    missing = [k for k in mine if k not in saved]
    unexpected = [k for k in saved if k not in mine]
    shapes = [
        f"{k}: saved {tuple(saved[k].shape)}, model {tuple(v.shape)}"
        for k, v in mine.items()
        if k in saved
        and isinstance(v, torch.Tensor)
        and isinstance(saved[k], torch.Tensor)
        and saved[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing in the checkpoint", missing),
                ("not in the model", unexpected),
                ("different shapes", shapes),
            )
            if items
        ]
        raise CheckpointError(
            f"checkpoint {path} was saved from a different architecture than "
            f"this {type(model).__name__} ({'; '.join(parts)})"
        )
    if optimizer is not None:
        opt_state = state.get("optimizer")
        if opt_state is None:
            raise ValueError(f"checkpoint {path} holds no optimizer state")
        saved_class = state.get("optimizer_class")
        groups = opt_state.get("param_groups", [])
        mine_groups = optimizer.state_dict()["param_groups"]
        keys = [sorted(k for k in g if k != "params") for g in groups]
        mine_keys = [
            sorted(k for k in g if k != "params") for g in mine_groups
        ]
        if (
            saved_class is not None
            and saved_class != _class_name(optimizer)
            or keys != mine_keys
        ):
            raise CheckpointError(
                f"checkpoint {path} holds the state of a different optimizer "
                f"({saved_class or 'with hyperparameters ' + str(keys)}) than "
                f"this {_class_name(optimizer)}"
            )
        sizes = [len(g["params"]) for g in groups]
        if sizes != [len(g["params"]) for g in mine_groups]:
            raise CheckpointError(
                f"checkpoint {path}: the optimizer's parameter groups hold "
                f"{sizes} parameters, this optimizer's "
                f"{[len(g['params']) for g in mine_groups]}"
            )
    if scheduler is not None:
        if state.get("scheduler") is None:
            raise ValueError(f"checkpoint {path} holds no scheduler state")
        saved_class = state.get("scheduler_class")
        if saved_class is not None and saved_class != _class_name(scheduler):
            raise CheckpointError(
                f"checkpoint {path} holds the state of a {saved_class}, not "
                f"of this {_class_name(scheduler)}"
            )
    if restore_rng and "rng" not in state:
        raise CheckpointError(
            f"checkpoint {path} holds no random-number generator state; pass "
            "restore_rng=False to load it without"
        )


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    loader: Any = None,
    restore_rng: bool = True,
    map_location: Any = None,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects.

    The file is read with ``weights_only=True``: only tensors and plain Python values are
    unpickled, so a checkpoint from an untrusted source cannot run code. Its SHA-256
    digest is verified, and it must fit the objects (the same parameter names and
    shapes, the same optimizer and scheduler classes) before any of them is changed.

    Returns:
        The whole state dictionary (``epoch``, ``history`` and any extras among it).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a corrupt or truncated file, a plain state dict, or a
            checkpoint of another architecture, optimizer or scheduler.
    """
    path = Path(path)
    state = _read(path, map_location)
    return _apply(
        path, state, model, optimizer, scheduler, loader, restore_rng
    )


def _apply(
    path: Path,
    state: dict[str, Any],
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    loader: Any,
    restore_rng: bool,
) -> dict[str, Any]:
    """Check that ``state`` fits every object, then load it into them."""
    _check_compatible(path, state, model, optimizer, scheduler, restore_rng)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"], loader)
    return state


def _plain(x: Any) -> Any:
    """Settings as comparable plain values: tuples as lists, tensors as numbers."""
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return getattr(x, "__qualname__", type(x).__qualname__)


# What a scheduler's state_dict holds that changes as it steps (and so is no setting).
_DYNAMIC = {
    "last_epoch",
    "verbose",
    "best",
    "num_bad_epochs",
    "cooldown_counter",
}
_NESTED = {"_schedulers", "_milestones", "_schedule_phases"}


def _static(x: Any) -> Any:
    """A scheduler's state without its step counters: what it was built with."""
    if isinstance(x, dict):
        return {
            k: _static(v)
            for k, v in x.items()
            if k not in _DYNAMIC and (not k.startswith("_") or k in _NESTED)
        }
    if isinstance(x, list):
        return [_static(v) for v in x]
    return x


def _run_settings(
    optimizer: Any,
    scheduler: Any,
    scheduler_step: str,
    settings: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What defines a run besides its weights, as the fresh objects have it."""
    sched = {}
    if callable(getattr(scheduler, "state_dict", None)):
        sched = _static(_plain(scheduler.state_dict()))
    return {
        "optimizer": _class_name(optimizer),
        "optimizer_defaults": _plain(getattr(optimizer, "defaults", {})),
        "scheduler": _class_name(scheduler),
        "scheduler_settings": sched,
        "scheduler_step": scheduler_step,
        "settings": _plain(dict(settings or {})),
    }


def _differences(saved: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k in dict.fromkeys([*saved, *new]):
        a, b = saved.get(k, "(absent)"), new.get(k, "(absent)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: saved {a!r}, now {b!r}")
    return out


def load_latest(
    paths: Sequence[str | Path],
    *,
    model: nn.Module,
    optimizer: Any = None,
    scheduler: Any = None,
    loader: Any = None,
    settings: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    allow_changed_settings: bool = False,
    restore_rng: bool = True,
) -> dict[str, Any] | None:
    """Resume from the first usable checkpoint of ``paths`` (newest first); ``None`` if none exist.

    A corrupt or truncated file is skipped with a warning that names it and the older one
    used instead. The saved run settings are compared with ``settings`` (see :func:`fit`):
    a difference, or a checkpoint already past ``epochs``, is refused unless
    ``allow_changed_settings``, in which case it is only warned about.
    ``restore_rng=False`` leaves the random-number generators as they are.
    """
    skipped: list[str] = []
    for path in map(Path, paths):
        try:
            state = _read(path, None)
        except CheckpointError as err:
            if "corrupt" not in str(err):
                raise
            skipped.append(f"{path.name} ({err})")
            continue
        if settings is not None:
            diffs = _differences(
                state.get("settings", {}) or {}, _plain(settings)
            )
            if "settings" not in state:
                diffs = []  # an older checkpoint: nothing to compare with
            if epochs is not None and state.get("epoch", 0) > epochs:
                diffs.append(
                    f"epochs: the checkpoint is at epoch {state['epoch']}, "
                    f"past epochs={epochs}"
                )
            if diffs and not allow_changed_settings:
                raise CheckpointError(
                    f"checkpoint {path} was saved by a run with other "
                    f"settings: {'; '.join(diffs)}. Start a new run (another "
                    "checkpoint path), or pass allow_changed_settings=True to "
                    "resume with the saved states (the saved schedule goes on)"
                )
            if diffs:
                warnings.warn(
                    f"resuming {path} despite changed settings: "
                    + "; ".join(diffs),
                    stacklevel=3,
                )
        if skipped:
            warnings.warn(
                f"resuming from {path} because the newer "
                f"{', '.join(skipped)} could not be used",
                stacklevel=3,
            )
        return _apply(
            path, state, model, optimizer, scheduler, loader, restore_rng
        )
    if skipped:
        raise CheckpointError(
            "no usable checkpoint to resume from: " + "; ".join(skipped)
        )
    return None


def _check_trainable(model: nn.Module, optimizer: Any) -> None:
    """A model with parameters, and an optimizer that updates some of them."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    params = {id(p) for p in model.parameters()}
    if not params:
        raise ValueError(
            f"model ({type(model).__name__}) has no parameters to train"
        )
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer, got "
            f"{type(optimizer).__name__}"
        )
    if not any(id(p) in params for g in groups for p in g["params"]):
        raise ValueError(
            "optimizer updates none of the model's parameters (was it built "
            "for another model, e.g. before the model was re-created?)"
        )

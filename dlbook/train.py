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

Regularization hooks: ``penalty`` adds a term such as an L1 or L2 norm of the weights to the
training loss only, and ``callbacks`` run after each epoch and may stop training (early
stopping, ``dlbook.regularization.regularization.EarlyStopping``).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.config import interactive

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max equals the target class."""
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


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


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
    device = (
        torch.device(device)
        if device is not None
        else next(model.parameters()).device
    )
    metrics = {"acc": accuracy} if metrics is None else metrics
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for x, y in loader:
        x, y = _to(x, device), _to(y, device)
        out = model(x)
        n = len(y)
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

    The history records ``train_loss`` and ``train_<metric>`` (running averages over the
    epoch, in train mode), ``lr``, and the validation metrics.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(
            f"scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}"
        )
    device = (
        torch.device(device)
        if device is not None
        else next(model.parameters()).device
    )
    model.to(device)
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
    resume = manager.latest() if manager is not None else checkpoint
    if resume is not None and Path(resume).exists():
        state = load_checkpoint(
            resume,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            loader=train_loader,
        )
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
        for x, y in train_loader:
            x, y = _to(x, device), _to(y, device)
            out = model(x)
            loss = loss_fn(out, y)
            extra = penalty(model) if penalty is not None else None
            optimizer.zero_grad(set_to_none=True)
            (loss if extra is None else loss + extra).backward()
            optimizer.step()
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            n = len(y)
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
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(loader),
        **extra,
    }
    return atomic_save(state, path)


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
    unpickled, so a checkpoint from an untrusted source cannot run code.

    Returns:
        The whole state dictionary (``epoch``, ``history`` and any extras among it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(
        path, map_location=map_location or "cpu", weights_only=True
    )
    model.load_state_dict(state["model"])
    if optimizer is not None:
        if state.get("optimizer") is None:
            raise ValueError(f"checkpoint {path} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        if state.get("scheduler") is None:
            raise ValueError(f"checkpoint {path} holds no scheduler state")
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"], loader)
    return state

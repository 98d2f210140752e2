"""Checkpointing in practice: keep the last k and the best, survive crashes, resume exactly.

The primitives live in :mod:`dlbook.train`: :func:`~dlbook.train.save_checkpoint` writes model,
optimizer, scheduler and random-number-generator state atomically,
:func:`~dlbook.train.load_checkpoint` reads it back with ``weights_only=True``, and
``fit(..., checkpoint=...)`` resumes a run so that it ends with bit-identical weights on the
CPU. This module builds on them:

* :class:`CheckpointManager`: one file per epoch, the newest ``keep_last`` kept, and ``best.pt``
  for the epoch with the best validation metric (what Keras's ``ModelCheckpoint(save_best_only=True)``
  and Lightning's ``ModelCheckpoint(save_top_k=1, save_last=True)`` offer); ``fit`` accepts it
  as its ``checkpoint``.
* :func:`crash_during_save`: kill a process with SIGKILL while it is halfway through writing a
  checkpoint, to test a save function the way a crash, an out-of-memory kill or a preempted
  machine would.
* :class:`RunConfig` and :func:`train_run`: a small resumable training script
  (``python -m dlbook.practice.checkpointing DATA RUN_DIR``): kill it at any moment, start it
  again, and it finishes as if it had never stopped.

Checked by ``tests/practice/test_checkpointing.py`` (bit-identical resumption across processes,
keep-last-k and keep-best bookkeeping, atomicity under SIGKILL, refusal of pickled code).

Chapter: ``book/practice/checkpointing.md``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import select
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.checks import check_int, check_labels, check_number, check_tensor
from dlbook.config import seed_everything
from dlbook.train import (
    History,
    fit,
    fsync_dir,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)

# --- keep-last-k and keep-best ------------------------------------------------------------------


class CheckpointManager:
    """The checkpoints of one training run, in one folder: the newest ``keep_last`` and the best.

    Every :meth:`save` writes ``epoch-NNNN.pt`` with :func:`dlbook.train.save_checkpoint` (an
    atomic write), then, if the monitored metric improved, points ``best.pt`` at it (a hard
    link, or a copy where links are not possible, renamed into place atomically), and only then
    deletes the epochs older than the newest ``keep_last``. A crash at any point leaves every
    file either complete or absent, and the newest complete checkpoint is never deleted.

    Whether an epoch is the best is decided from the history saved with it (a strict
    improvement on every earlier value), so a resumed run keeps the same ``best.pt`` as an
    uninterrupted one. Temporary files left behind by a killed save (``.*.tmp``) are removed
    when the manager is created.

    Args:
        directory: the run's folder; created if missing.
        keep_last: how many of the newest epoch checkpoints to keep (at least 1).
        monitor: the history key that decides the best epoch, e.g. ``"val_loss"``; ``None``
            keeps no ``best.pt``.
        mode: ``"min"`` if smaller values of ``monitor`` are better, ``"max"`` otherwise.
    """

    PATTERN = re.compile(r"^epoch-(\d+)\.pt$")

    def __init__(
        self,
        directory: str | Path,
        *,
        keep_last: int = 3,
        monitor: str | None = "val_loss",
        mode: str = "min",
    ):
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(
                f"keep_last must be a positive integer, got {keep_last!r}"
            )
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory)
        self.keep_last, self.monitor, self.mode = keep_last, monitor, mode
        self.directory.mkdir(parents=True, exist_ok=True)
        self.removed_temporaries = [
            p.name for p in self.directory.glob(".*.tmp")
        ]
        for p in self.directory.glob(".*.tmp"):
            p.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({str(self.directory)!r}, keep_last={self.keep_last}, monitor={self.monitor!r}, "
            f"mode={self.mode!r})"
        )

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def checkpoints(self) -> list[Path]:
        """The epoch checkpoints on disk, oldest first."""
        found = [
            (int(m.group(1)), p)
            for p in self.directory.iterdir()
            if (m := self.PATTERN.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest epoch checkpoint, or ``None`` if there is none (``fit`` then starts afresh)."""
        found = self.checkpoints()
        return found[-1] if found else None

    def best(self) -> Path | None:
        """``best.pt`` if it exists."""
        return self.best_path if self.best_path.exists() else None

    def is_improvement(self, values: list[float]) -> bool:
        """Whether the last of ``values`` is strictly better than every earlier one."""
        if not values:
            return False
        last, earlier = values[-1], values[:-1]
        if not earlier:
            return True
        return (
            last < min(earlier) if self.mode == "min" else last > max(earlier)
        )

    def save(
        self,
        *,
        model: nn.Module,
        epoch: int,
        history: Mapping[str, list[float]] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        loader: Any = None,
        **extra: Any,
    ) -> Path:
        """Save epoch `epoch` (from 1), update best.pt, delete the oldest.

        The arguments are those of dlbook.train.save_checkpoint; `history`
        must hold the monitored metric unless `monitor` is None.
        """
        history = dict(getattr(history, "metrics", history or {}))
        if self.monitor is not None and self.monitor not in history:
            held = ", ".join(history) or "nothing"
            raise KeyError(
                f"monitor {self.monitor!r} is not in the history (it holds: "
                f"{held}); pass a val_loader to fit, or "
                "CheckpointManager(monitor=None)"
            )
        path = save_checkpoint(
            self.directory / f"epoch-{epoch:04d}.pt",
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            loader=loader,
            epoch=epoch,
            history=history,
            **extra,
        )
        if self.monitor is not None and self.is_improvement(
            history[self.monitor]
        ):
            self._point_best_at(path)
        for old in self.checkpoints()[: -self.keep_last]:
            old.unlink()
        fsync_dir(self.directory)
        return path

    def _point_best_at(self, path: Path) -> None:
        tmp = self.directory / f".best.pt.{uuid.uuid4().hex}.tmp"
        try:
            os.link(
                path, tmp
            )  # no copy: best.pt and the epoch file share the data until one is deleted
        except OSError:
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, self.best_path)

    def load(
        self, which: str | Path = "latest", **objects: Any
    ) -> dict[str, Any]:
        """:func:`dlbook.train.load_checkpoint` of ``"latest"``, ``"best"`` or a path, into ``objects``.

        ``"latest"`` falls back to the newest checkpoint that is intact, with a
        warning naming the corrupt files it skipped.
        """
        if str(which) == "latest":
            found = list(reversed(self.checkpoints()))
            if not found:
                raise FileNotFoundError(
                    f"no latest checkpoint in {self.directory}"
                )
            return load_latest(found, **objects)
        path = self.best() if str(which) == "best" else Path(which)
        if path is None:
            raise FileNotFoundError(
                f"no {which} checkpoint in {self.directory}"
            )
        return load_checkpoint(path, **objects)


# --- crash testing ------------------------------------------------------------------------------


def crash_during_save(
    save: Callable[[Any, Path], Any],
    obj: Any,
    path: str | Path,
    *,
    fraction: float = 0.5,
    timeout: float = 60.0,
) -> int:
    """Run ``save(obj, path)`` in a child process and kill it (SIGKILL) halfway through the write.

    The child replaces ``torch.save`` by a version that serializes ``obj`` in memory, writes the
    first ``fraction`` of the bytes to wherever ``save`` asked (a path or an open file), flushes
    them to disk, tells the parent, and waits. The parent then kills it with SIGKILL, which no
    ``try``/``finally`` or signal handler can intercept: the moment of death is exactly what a
    power cut during the write would leave on disk, minus any data still in the page cache.

    Args:
        save: a function that writes ``obj`` to ``path`` with ``torch.save`` somewhere inside it.
        obj: what to save.
        path: the checkpoint's destination.
        fraction: the share of the bytes written before the kill, in (0, 1).
        timeout: seconds to wait for the child to reach the write.

    Returns:
        The number of bytes the child had written when it was killed.

    POSIX only (it forks).
    """
    if not 0 < fraction < 1:
        raise ValueError(
            f"fraction must be strictly between 0 and 1, got {fraction!r}"
        )
    if not hasattr(os, "fork"):
        raise OSError("crash_during_save needs os.fork (Linux or macOS)")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            real_save = torch.save

            def stalling_save(o, f, *args, **kwargs):
                buffer = io.BytesIO()
                real_save(o, buffer, *args, **kwargs)
                data = buffer.getvalue()
                cut = int(len(data) * fraction)
                handle = (
                    open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
                )  # noqa: SIM115
                handle.write(data[:cut])
                handle.flush()
                os.fsync(handle.fileno())
                os.write(write_end, cut.to_bytes(8, "little"))
                time.sleep(timeout + 60)  # wait for the SIGKILL

            torch.save = stalling_save
            save(obj, Path(path))
        finally:
            os._exit(1)  # reached only if save never called torch.save
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        message = os.read(read_end, 8) if ready else b""
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
    if len(message) != 8:
        raise RuntimeError(
            "the child process never started writing: does save() call torch.save?"
        )
    return int.from_bytes(message, "little")


def naive_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``: writes straight into the destination, truncating it first."""
    torch.save(obj, path)


# --- a resumable training run -------------------------------------------------------------------


@dataclass
class RunConfig:
    """The training run of the checkpointing chapter: an MLP with dropout on MNIST."""

    epochs: int = 6  # total epochs; a resumed run continues up to this number
    hidden: int = 128  # width of the hidden layer
    dropout: float = 0.2  # dropout after the hidden layer (so that the random-number state matters)
    lr: float = (
        1e-3  # Adam's learning rate, annealed to 0 by a cosine schedule
    )
    batch_size: int = 64  # examples per step; the loader shuffles every epoch
    seed: int = (
        0  # seeds the initial weights, the shuffling and the dropout masks
    )
    keep_last: int = 2  # epoch checkpoints to keep, besides best.pt

    def __post_init__(self):
        check_int("epochs", self.epochs, low=1)
        check_int("hidden", self.hidden, low=1)
        check_number("dropout", self.dropout, low=0, high=1, high_open=True)
        check_number("lr", self.lr, low=0)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed, low=0)
        check_int("keep_last", self.keep_last, low=1)


def _check_run(data: Mapping[str, torch.Tensor], cfg: RunConfig) -> None:
    """Non-empty images with one integer label >= 0 each, and a valid config."""
    cfg.__post_init__()  # the fields may have been changed since
    for split in ("train", "val"):
        x = check_tensor(f"x_{split}", data[f"x_{split}"], nonempty=True)
        y = check_tensor(f"y_{split}", data[f"y_{split}"], nonempty=True)
        check_labels(f"y_{split}", y, int(y.max()) + 1)  # integers >= 0
        if len(y) != len(x):
            raise ValueError(
                f"x_{split} and y_{split} must have the same length, but "
                f"x_{split} has {len(x)}, y_{split} has {len(y)}"
            )


def build_run(
    data: Mapping[str, torch.Tensor],
    cfg: RunConfig,
    device: torch.device | str = "cpu",
):
    """Model, optimizer, scheduler and loaders of a run, freshly seeded.

    Args:
        data: tensors x_train, y_train, x_val, y_val (images of any shape,
            integer labels).
        cfg: the run's settings.

    Returns:
        (model, optimizer, scheduler, train_loader, val_loader).
    """
    missing = {"x_train", "y_train", "x_val", "y_val"} - set(data)
    if missing:
        raise KeyError(
            f"data lacks {sorted(missing)}; it holds {sorted(data)}"
        )
    _check_run(data, cfg)
    seed_everything(cfg.seed, deterministic=True)
    n_in = data["x_train"][0].numel()
    n_out = int(data["y_train"].max()) + 1
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, n_out),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=cfg.epochs
    )
    train_loader = DataLoader(
        TensorDataset(data["x_train"], data["y_train"]),
        batch_size=cfg.batch_size,
        shuffle=True,
    )
    val_loader = DataLoader(
        TensorDataset(data["x_val"], data["y_val"]), batch_size=1000
    )
    return model, optimizer, scheduler, train_loader, val_loader


def train_run(
    data_path: str | Path,
    directory: str | Path,
    cfg: RunConfig,
    device: torch.device | str = "cpu",
    allow_changed_settings: bool = False,
) -> tuple[nn.Module, History]:
    """Train, checkpointing every epoch into `directory`, or resume from it.

    If `directory` holds checkpoints, training resumes from the newest. Whether
    it starts afresh or resumes, and however often it is killed and restarted,
    the final weights are the same bit for bit (on the CPU, or on a GPU with
    deterministic algorithms). `data_path` is a file written by torch.save
    holding the dictionary that build_run expects. `cfg` is saved with every
    checkpoint; resuming with a different one is refused unless
    `allow_changed_settings` (see dlbook.train.fit).
    """
    data = torch.load(data_path, weights_only=True)
    model, optimizer, scheduler, train_loader, val_loader = build_run(
        data, cfg, device
    )
    manager = CheckpointManager(
        directory, keep_last=cfg.keep_last, monitor="val_loss"
    )
    history = fit(
        model,
        train_loader,
        optimizer,
        epochs=cfg.epochs,
        val_loader=val_loader,
        scheduler=scheduler,
        checkpoint=manager,
        device=device,
        settings={k: v for k, v in asdict(cfg).items() if k != "keep_last"},
        allow_changed_settings=allow_changed_settings,
    )
    return model, history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A resumable MNIST run: kill it and start it again."
    )
    parser.add_argument(
        "data", help="a torch.save-d dict with x_train, y_train, x_val, y_val"
    )
    parser.add_argument("directory", help="the run's checkpoint folder")
    for name, value in asdict(RunConfig()).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(value), default=value
        )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--allow-changed-settings",
        action="store_true",
        help="resume even if the checkpoints were saved with other settings",
    )
    args = vars(parser.parse_args(argv))
    data, directory, device, allow = (
        args.pop("data"),
        args.pop("directory"),
        args.pop("device"),
        args.pop("allow_changed_settings"),
    )
    try:
        cfg = RunConfig(**args)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    _, history = train_run(data, directory, cfg, device, allow)
    print(history)


if __name__ == "__main__":
    main()

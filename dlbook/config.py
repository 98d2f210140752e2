"""Profiles, device selection and seeding: the one place a chapter's settings come from.

Every chapter runs in one of two profiles, chosen by the environment variable
``DLBOOK_PROFILE``:

* ``quick`` (the default): a laptop CPU, offline, about a minute a chapter;
* ``full``: one GPU, the real benchmark, with the paper's number beside ours.

A chapter states both sets of settings in a single call and prints the result, so the
reader always sees which profile produced the page::

    cfg = settings(quick=dict(epochs=3, n_train=4000), full=dict(epochs=30, n_train=None))
    cfg.epochs

Used by every chapter of the book.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

PROFILES = ("quick", "full")
"""The valid values of ``DLBOOK_PROFILE``; the first is the default."""


def profile() -> str:
    """The active profile, read from ``DLBOOK_PROFILE`` (default ``quick``).

    Raises:
        ValueError: if the variable holds anything but a known profile.
    """
    value = os.environ.get("DLBOOK_PROFILE", "").strip()
    if not value:
        return PROFILES[0]
    if value not in PROFILES:
        raise ValueError(
            f"DLBOOK_PROFILE={value!r} is not a profile; expected one of: {', '.join(PROFILES)}"
        )
    return value


class Settings(Mapping):
    """A chapter's settings for the active profile: read them as attributes or keys.

    ``profile`` is always present and names the profile the values came from.
    """

    def __init__(self, profile: str, values: Mapping[str, Any]):
        self._profile = profile
        self._values = dict(values)

    @property
    def profile(self) -> str:
        return self._profile

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"no setting {name!r}; this chapter defines: {', '.join(self._values)}"
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Profile {self._profile!r}: {body}"

    def _repr_markdown_(self) -> str:
        rows = "\n".join(
            f"| `{k}` | `{v!r}` |" for k, v in self._values.items()
        )
        return (
            f"**Profile `{self._profile}`** (set `DLBOOK_PROFILE` to change it)\n\n"
            f"| setting | value |\n|---|---|\n{rows}\n"
        )


def settings(
    *,
    quick: Mapping[str, Any],
    full: Mapping[str, Any],
    profile: str | None = None,
) -> Settings:
    """Pick a chapter's settings for the active profile.

    Args:
        quick: settings for the ``quick`` profile (CPU, about a minute).
        full: settings for the ``full`` profile (one GPU, the real benchmark).
        profile: override the profile instead of reading ``DLBOOK_PROFILE``.

    Both dictionaries must name the same settings, so that a chapter cannot silently
    lack a value in the profile that is not being run.
    """
    chosen = globals()["profile"]() if profile is None else profile
    if chosen not in PROFILES:
        raise ValueError(
            f"profile={chosen!r} is not a profile; expected one of: {', '.join(PROFILES)}"
        )
    missing_full = sorted(set(quick) - set(full))
    missing_quick = sorted(set(full) - set(quick))
    if missing_full or missing_quick:
        raise ValueError(
            "quick and full must name the same settings; "
            f"only in quick: {missing_full or 'none'}, only in full: {missing_quick or 'none'}"
        )
    return Settings(chosen, quick if chosen == "quick" else full)


def _available(kind: str) -> tuple[bool, int]:
    """Whether this machine has devices of ``kind``, and how many (1 if not countable)."""
    if kind == "cpu":
        return True, 1
    if kind == "cuda":
        ok = torch.cuda.is_available()
        return ok, torch.cuda.device_count() if ok else 0
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available()), 1
    if kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        ok = bool(xpu is not None and xpu.is_available())
        return ok, xpu.device_count() if ok else 0
    return False, 0


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
_NAMES = {"cuda": "CUDA", "mps": "MPS (Apple GPUs)", "xpu": "XPU (Intel GPUs)"}
"""The device types :func:`device` accepts (when the machine has them)."""


def device(prefer: str | None = None) -> torch.device:
    """The device to compute on: CUDA if present, else the CPU.

    Args:
        prefer: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"xpu[:N]"`` to override
            the choice; when it is ``None`` the environment variable ``DLBOOK_DEVICE`` may
            override it instead (surrounding spaces are ignored, as for ``DLBOOK_PROFILE``).

    Raises:
        ValueError: if the requested device is not a device name, or not one to compute
            on (``"meta"`` holds no data).
        RuntimeError: if the requested device is not on this machine (no CUDA, no
            ``cuda:3`` on a machine with two GPUs, no MPS or XPU).
    """
    source = "device"
    choice = prefer
    if choice is None:
        choice = os.environ.get("DLBOOK_DEVICE", "").strip() or None
        source = "DLBOOK_DEVICE"
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(choice, (str, torch.device)):
        raise TypeError(
            f"device must be a device name such as 'cpu' or 'cuda:0', got "
            f"{type(choice).__name__}"
        )
    expected = "expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu'"
    try:
        dev = torch.device(
            choice.strip() if isinstance(choice, str) else choice
        )
    except RuntimeError as err:
        raise ValueError(
            f"{source}={choice!r} is not a device name; {expected}"
        ) from err
    if dev.type not in DEVICE_TYPES:
        raise ValueError(
            f"{source}={choice!r} is not a device to compute on; {expected}"
        )
    ok, count = _available(dev.type)
    if not ok:
        raise RuntimeError(
            f"{source}={choice!r} was requested but {_NAMES[dev.type]} is "
            "not available on this machine"
        )
    if dev.index is not None and dev.index >= count:
        raise RuntimeError(
            f"{source}={choice!r} was requested but this machine has "
            f"{count} {dev.type.upper()} device(s), numbered from 0"
        )
    return dev


def seed_everything(
    seed: int,
    *,
    deterministic: bool | None = None,
    tensorflow: bool | None = None,
) -> None:
    """Seed Python, NumPy, PyTorch and (when it is in use) TensorFlow.

    Args:
        seed: a non-negative integer.
        deterministic: ask PyTorch (and TensorFlow) for deterministic kernels. The default
            ``None`` turns them on when no GPU is in use, so that seeded CPU runs give the
            same numbers twice; on a GPU some scatter kernels have no deterministic version,
            so it is left to the caller there.
        tensorflow: seed TensorFlow too. ``None`` seeds it only if it is already imported,
            which avoids loading TensorFlow into chapters that never use it.
    """
    if (
        not isinstance(seed, (int, np.integer))
        or isinstance(seed, bool)
        or not 0 <= seed < 2**64  # torch.manual_seed takes 64 bits
    ):
        raise ValueError(
            f"seed must be a non-negative integer below 2**64, got {seed!r}"
        )
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic is None:
        deterministic = not torch.cuda.is_available()
    if deterministic:
        # Needed by cuBLAS before its first use for deterministic matmuls (CUDA docs, "Reproducibility").
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN to expose reads of uninitialized
    # memory, a debugging aid that costs a quarter of the time of scatter-heavy models (graph
    # networks) and changes no correct result.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if tensorflow or (tensorflow is None and "tensorflow" in sys.modules):
        import tensorflow as tf

        # Seeds Python, NumPy and TF in one call; NumPy's legacy seed is 32-bit.
        tf.keras.utils.set_random_seed(seed % 2**32)
        if deterministic:
            tf.config.experimental.enable_op_determinism()


def interactive() -> bool:
    """Whether a person is watching: true in a terminal or a live notebook, false in the book build.

    The book build sets ``DLBOOK_BUILD=1`` (see :mod:`dlbook.sphinxext`), so progress bars
    stay out of the published pages.
    """
    if os.environ.get("DLBOOK_BUILD"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


def describe() -> dict[str, str]:
    """Where the code is running: profile, device, library versions. Shown on the status page."""
    dev = device()
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (platform.processor() or platform.machine())
    )
    return {
        "profile": profile(),
        "device": f"{dev.type} ({name})",
        "cpu cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }

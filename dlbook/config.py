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

The book is executed several chapters at a time (:mod:`dlbook.bookexec`): ``DLBOOK_JOBS``
chapters at once, each kernel with ``DLBOOK_THREADS`` threads, so that the kernels do not
fight over the same cores. :func:`jobs` and :func:`threads` read and check both; when
``DLBOOK_THREADS`` is set, importing this module applies it (:func:`apply_threads`) to
PyTorch, to the BLAS and OpenMP libraries, and to TensorFlow.
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

from dlbook.checks import check_int

PROFILES = ("quick", "full")
"""The valid values of ``DLBOOK_PROFILE``; the first is the default."""

GIB = 2**30
JOB_MEMORY = 2 * GIB
"""Memory set aside for each chapter executed at once: the quick profile's budget."""

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
"""What OpenMP, MKL, OpenBLAS and TensorFlow read for their thread counts at start-up."""


def _positive_int_from_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def jobs() -> int:
    """How many chapters the book build executes at once: ``DLBOOK_JOBS``.

    The default is one per core, but at most one per 2 GiB of memory (the quick
    profile's memory budget of a chapter), and at least one.

    Raises:
        ValueError: if ``DLBOOK_JOBS`` is set to anything but a positive integer.
    """
    chosen = _positive_int_from_env("DLBOOK_JOBS")
    if chosen is not None:
        return chosen
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        memory = None
    n = cores()
    if memory:
        n = min(n, memory // JOB_MEMORY)
    return max(1, n)


def threads(n_jobs: int | None = None) -> int:
    """Threads for each kernel: ``DLBOOK_THREADS``, by default cores / jobs (at least 1).

    Args:
        n_jobs: the number of kernels sharing the cores; ``None`` reads :func:`jobs`.

    Raises:
        ValueError: if ``DLBOOK_THREADS`` is set to anything but a positive integer,
            or ``n_jobs`` is not a positive integer.
    """
    chosen = _positive_int_from_env("DLBOOK_THREADS")
    if chosen is not None:
        return chosen
    n_jobs = jobs() if n_jobs is None else check_int("n_jobs", n_jobs, low=1)
    return max(1, cores() // n_jobs)


def thread_environment(n_threads: int) -> dict[str, str]:
    """The environment variables that give a new process ``n_threads`` threads."""
    value = str(check_int("n_threads", n_threads, low=1))
    return {"DLBOOK_THREADS": value, **dict.fromkeys(THREAD_VARIABLES, value)}


def apply_threads() -> int | None:
    """Apply ``DLBOOK_THREADS`` to this process; return it, or ``None`` when it is unset.

    Sets PyTorch's intra-op threads, limits the BLAS and OpenMP libraries already loaded
    (through threadpoolctl, when it is installed), exports the variables of
    :data:`THREAD_VARIABLES` for libraries loaded later and for child processes, and sets
    TensorFlow's intra- and inter-op threads if TensorFlow is imported and has not
    started yet (otherwise it read ``TF_NUM_INTRAOP_THREADS`` when it started).
    """
    n = _positive_int_from_env("DLBOOK_THREADS")
    if n is None:
        return None
    for name, value in thread_environment(n).items():
        if name != "DLBOOK_THREADS":
            os.environ[name] = value
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except (
        ImportError
    ):  # the environment variables cover libraries loaded from now on
        pass
    else:
        threadpool_limits(limits=n)
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except (
            RuntimeError
        ):  # TensorFlow already started, with its own setting
            pass
    return n


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
    _use_deterministic_algorithms(deterministic)
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


def _use_deterministic_algorithms(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)``, without its import.

    PyTorch's function sets two switches: the C++ flag that every kernel
    reads, and ``torch._inductor.config.deterministic`` for ``torch.compile``.
    For the second it imports ``torch._inductor`` (and with it
    ``torch._dynamo`` and SymPy): 3-4 s of CPU per chapter, in a book of
    45-second chapters that never compile, and a segmentation fault when
    TensorFlow was imported first. This sets the same two switches: the C++
    flag directly, and inductor's flag on the module if it is loaded, or
    through the environment variable it reads when it loads.
    """
    torch._C._set_deterministic_algorithms(mode, warn_only=True)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode
    else:
        os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1" if mode else "0"


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


def describe_device() -> str:
    """The device :func:`device` picks, with its name: ``"cpu (x86_64)"``, ``"cuda (NVIDIA ...)"``."""
    dev = device()
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (platform.processor() or platform.machine())
    )
    return f"{dev.type} ({name})"


def describe() -> dict[str, str]:
    """Where the code is running: profile, device, library versions. Shown on the status page."""
    return {
        "profile": profile(),
        "device": describe_device(),
        "cpu cores": str(cores()),
        "chapters at once (DLBOOK_JOBS)": str(jobs()),
        "threads per kernel (DLBOOK_THREADS)": str(threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


apply_threads()

"""Argument checks shared by the whole package, so that every error reads alike.

A reader imports our functions and passes them odd input; they will not read our
tests. Each check raises ``ValueError`` (a value out of range, a wrong shape) or
``TypeError`` (a value of the wrong kind) with one message pattern::

    <name> must be <what was expected>, got <what was passed>

The checks accept what PyTorch and NumPy accept as the same thing: a NumPy scalar
or a 0-d tensor is a number, ``np.int64(3)`` is an integer. A ``bool`` is never a
number here (``True`` is almost always a mistake for ``1``). NaN is never in range.

Each check returns the value, converted to a plain Python ``int`` or ``float``
where that is what it checked, so a constructor can write
``self.lr = check_number("lr", lr, low=0)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Sequence, Sized
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_array",
    "check_choice",
    "check_in_range",
    "check_int",
    "check_labels",
    "check_nonempty",
    "check_number",
    "check_probability",
    "check_same_length",
    "check_same_shape",
    "check_tensor",
]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return (
            f"a tensor of shape {tuple(value.shape)} and dtype "
            f"{str(value.dtype).removeprefix('torch.')}"
        )
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(value: Any) -> Any:
    """A 0-d tensor or array, or a NumPy scalar, as the Python number it holds."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _range_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite"


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """A real number, optionally within ``[low, high]`` (``low_open``: ``(low, ...``).

    NaN always fails; infinity fails unless ``finite=False`` and it is within the
    bounds. Returns the value as a Python ``float``.
    """
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {_describe(value)}"
        )
    v = float(v)
    expected = _range_text(low, high, low_open, high_open)
    bad = math.isnan(v) or (finite and math.isinf(v))
    if low is not None:
        bad = bad or v < low or (low_open and v == low)
    if high is not None:
        bad = bad or v > high or (high_open and v == high)
    if bad:
        kind = "a finite number" if finite else "a number"
        rng = "" if expected == "finite" else f" {expected}"
        raise ValueError(f"{name} must be {kind}{rng}, got {value!r}")
    return v


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
) -> int:
    """An integer (Python, NumPy or a 0-d integer tensor) in ``[low, high]``.

    A float, even ``3.0``, is refused: a width of 2.7 must not become 2.
    """
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    v = int(v)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(
            f"{name} must be an integer {_range_text(low, high, False, False)}"
            f", got {v}"
        )
    return v


def check_probability(
    name: str, value: Any, *, allow_one: bool = True, allow_zero: bool = True
) -> float:
    """A probability in [0, 1]; ``allow_one=False`` gives [0, 1) (dropout)."""
    return check_number(
        name,
        value,
        low=0.0,
        high=1.0,
        low_open=not allow_zero,
        high_open=not allow_one,
    )


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """One of ``choices``, compared with ``==`` (so ``"quick"`` but not ``"QUICK"``)."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def check_nonempty(name: str, value: Sized) -> Sized:
    """A collection, tensor or array with at least one element."""
    size = value.numel() if isinstance(value, torch.Tensor) else len(value)
    if size == 0:
        raise ValueError(f"{name} must not be empty, got {_describe(value)}")
    return value


def _check_dims(name: str, got: tuple, ndim: Any, shape: Any) -> None:
    """The ``ndim`` and ``shape`` checks shared by check_tensor and check_array."""
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(got) not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(
                f"{name} must have {want} dimensions, got shape {got}"
            )
    if shape is not None:
        ok = len(shape) == len(got) and all(
            s is None or s == d for s, d in zip(shape, got)
        )
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape)
            raise ValueError(
                f"{name} must have shape {want.rstrip(', ')}), got {got}"
            )


def check_tensor(
    name: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool | None = None,
    finite: bool = False,
    nonempty: bool = False,
) -> torch.Tensor:
    """A ``torch.Tensor`` with the given number of dimensions and shape.

    Args:
        name: the argument's name, for the message.
        ndim: the allowed number(s) of dimensions.
        shape: the expected shape, ``None`` where any size goes, e.g.
            ``(None, 3, None, None)`` for a batch of RGB images.
        floating: ``True`` requires a floating dtype (no silent truncation of
            integer input), ``False`` an integer dtype.
        finite: refuse NaN and infinity.
        nonempty: refuse a tensor with no elements.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    _check_dims(name, tuple(x.shape), ndim, shape)
    if floating is True and not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"{name} must have a floating dtype, got {x.dtype} (convert it "
            "with .float(); integer input would be truncated)"
        )
    if floating is False and (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(
            f"{name} must not be empty, got shape {tuple(x.shape)}"
        )
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} must be finite, but {bad} of its {x.numel()} entries "
            "are NaN or infinite"
        )
    return x


def check_in_range(
    name: str, x: torch.Tensor, *, low: float, high: float
) -> torch.Tensor:
    """A floating tensor whose every entry lies in ``[low, high]`` (no NaN).

    For data whose range a model relies on: pixel intensities in [0, 1] for a
    Bernoulli likelihood, images scaled to [-1, 1] for a diffusion model.
    """
    check_tensor(name, x, floating=True)
    if x.numel() == 0:
        return x
    if torch.isnan(x).any():
        raise ValueError(
            f"{name} must hold values in [{low}, {high}], but "
            f"{int(torch.isnan(x).sum())} of its entries are NaN"
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < low or hi > high:
        raise ValueError(
            f"{name} must hold values in [{low}, {high}], got values from "
            f"{lo:.4g} to {hi:.4g}"
        )
    return x


def check_labels(
    name: str, y: Any, num_classes: int, *, ndim: int | None = 1
) -> torch.Tensor | np.ndarray:
    """Integer class labels in ``[0, num_classes)``; -1 is not a label.

    Works on tensors and NumPy arrays; returns the input unchanged.
    """
    if isinstance(y, torch.Tensor):
        integer = not (
            y.is_floating_point() or y.is_complex() or y.dtype == torch.bool
        )
    elif isinstance(y, np.ndarray):
        integer = np.issubdtype(y.dtype, np.integer)
    else:
        raise TypeError(
            f"{name} must be a tensor or array of class labels, got "
            f"{_describe(y)}"
        )
    if not integer:
        raise TypeError(
            f"{name} must hold integer class labels, got dtype {y.dtype}"
        )
    if ndim is not None and y.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimension(s), got shape {tuple(y.shape)}"
        )
    if y.size == 0 if isinstance(y, np.ndarray) else y.numel() == 0:
        return y
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name} must hold labels in [0, {num_classes}), got values from "
            f"{lo} to {hi}"
        )
    return y


def check_same_length(**named: Any) -> int:
    """All arguments have the same length (first dimension); returns it.

    ``check_same_length(x=x, y=y)`` names both in the message.
    """
    lengths = {
        k: (v.shape[0] if hasattr(v, "shape") else len(v))
        for k, v in named.items()
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(
            f"{' and '.join(lengths)} must have the same length, but {listed}"
        )
    return next(iter(lengths.values()))


def check_same_shape(**named: Any) -> tuple[int, ...]:
    """All arguments (tensors or arrays) have the same shape; returns it.

    Broadcasting is not matching: ``check_same_shape(output=o, target=t)``
    refuses a ``(1, 3)`` target for a ``(4, 3)`` output, naming both.
    """
    shapes = {k: tuple(v.shape) for k, v in named.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} has {s}" for k, s in shapes.items())
        raise ValueError(
            f"{' and '.join(shapes)} must have the same shape, but {listed}"
        )
    return next(iter(shapes.values()))


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool | None = None,
    finite: bool = False,
    nonempty: bool = False,
) -> np.ndarray:
    """A NumPy ``ndarray``: :func:`check_tensor`'s checks, for NumPy code.

    ``floating=True`` refuses integer arrays (which NumPy layers would
    silently truncate when they write their results back into the input's
    dtype); ``finite=True`` refuses NaN and infinity.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {_describe(x)}")
    _check_dims(name, tuple(x.shape), ndim, shape)
    is_float = np.issubdtype(x.dtype, np.floating)
    if floating is True and not is_float:
        raise TypeError(
            f"{name} must have a floating dtype, got {x.dtype} (convert it "
            "with .astype(np.float64); integer input would be truncated)"
        )
    if floating is False and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if nonempty and x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if finite and is_float and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(
            f"{name} must be finite, but {bad} of its {x.size} entries "
            "are NaN or infinite"
        )
    return x

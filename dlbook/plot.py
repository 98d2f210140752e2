"""One figure style for the book, and the plots every chapter needs.

* :func:`use_style` sets the house style (called once at the top of a chapter);
* :func:`plot_history` draws training curves from a :class:`dlbook.train.History`;
* :func:`image_grid` lays out images with titles;
* :func:`overlay` blends a heat map onto an image (CAM methods, attention maps).

Every function returns the matplotlib ``Figure`` (or draws on a given ``Axes``) so that a
chapter can save or glue it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from dlbook.checks import check_probability

PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
"""Okabe & Ito's colour-blind-safe palette."""

FIGURE_WIDTH = 6.2
"""Inches: the book's text column (684 px) at ``figure.dpi`` 110. A figure this wide
is shown at its own size; a wider one is scaled down, and its text with it."""

STYLE = {
    "figure.figsize": (FIGURE_WIDTH, 3.4),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's figure style to matplotlib."""
    mpl.rcParams.update(STYLE)


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    height: float | None = None,
    **kwargs,
):
    """``plt.subplots`` at the house width (:data:`FIGURE_WIDTH`), laid out without overlap.

    Args:
        nrows, ncols: the grid of axes. More than two panels side by side become
            too small to read at the column's width: stack them in rows instead.
        height: the figure's height in inches; default 3.4 for one row, 2.7 per
            row for more.
        **kwargs: passed to ``plt.subplots`` (``sharex``, ``gridspec_kw``, ...).
    """
    from dlbook.checks import check_int, check_number

    check_int("nrows", nrows, low=1)
    check_int("ncols", ncols, low=1)
    if height is None:
        height = 3.4 if nrows == 1 else 2.7 * nrows
    check_number("height", height, low=0, low_open=True)
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(FIGURE_WIDTH, height), **kwargs)


def _as_image(image) -> np.ndarray:
    """Tensor ``(C, H, W)`` / ``(H, W)`` or array ``(H, W, C)`` -> array ``(H, W[, C])`` for imshow."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3:
            image = image.permute(1, 2, 0)
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def plot_history(
    history,
    keys: Sequence[str] | None = None,
    *,
    ax=None,
    title: str | None = None,
    logy: bool = False,
):
    """Training curves: one line per metric in ``keys`` (default: every loss in the history).

    Args:
        history: a :class:`dlbook.train.History` or a mapping name -> list of per-epoch values.
        keys: which metrics to draw; they share one axis, so group losses and accuracies apart.
        ax: draw on this ``Axes``; default: a new figure.
    """
    metrics = getattr(history, "metrics", history)
    if not hasattr(metrics, "keys"):
        raise TypeError(
            "history must be a History or a mapping of metric names to "
            f"per-epoch values, got {type(history).__name__}"
        )
    keys = (
        list(keys)
        if keys is not None
        else [k for k in metrics if k.endswith("loss")]
    )
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise KeyError(
            f"history has no {missing}; it holds: {', '.join(metrics)}"
        )
    if not keys:
        raise ValueError(
            "nothing to plot: the history holds no metric ending in 'loss' "
            f"(it holds: {', '.join(metrics) or 'nothing'}); pass keys=[...]"
        )
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots()
    for key in keys:
        values = metrics[key]
        ax.plot(
            range(1, len(values) + 1),
            values,
            marker="o" if len(values) <= 20 else None,
            ms=3,
            label=key,
        )
    ax.set_xlabel("epoch")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def image_grid(
    images,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    size: float | None = None,
    cmap: str = "gray",
):
    """Images in a grid with optional titles; tensors ``(C, H, W)`` or arrays ``(H, W[, C])``.

    ``size`` is the side of one image in inches; by default the grid fills the
    house width (:data:`FIGURE_WIDTH`), at most 1.6 inches an image.
    """
    images = list(images)
    if not images:
        raise ValueError("images is empty")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    if size is None:
        size = min(1.6, FIGURE_WIDTH / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols, size * nrows + (0.3 * nrows if titles else 0)),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(_as_image(images[i]), cmap=cmap)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def overlay(
    image, heatmap, *, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """Blend ``heatmap`` (``(H, W)``, values in [0, 1]) onto ``image`` and return RGB in [0, 1].

    The image is read by its dtype: integers are 0..255, floats 0..1 (a float
    image in 0..255 is an error). The heat map is coloured with ``cmap`` and
    mixed as ``(1 - alpha) * image + alpha * colour``.
    """
    raw = _as_image(image)
    image = raw.astype(np.float32)
    if np.issubdtype(raw.dtype, np.integer):
        image = image / 255.0
    elif np.nanmax(image, initial=0.0) > 2.0:
        raise ValueError(
            "image must be a float image in [0, 1] or an integer image in "
            f"0..255, got floats up to {np.nanmax(image):.4g} (divide by 255 "
            "or convert to uint8)"
        )
    image = np.clip(
        image, 0.0, 1.0
    )  # resampled images overshoot [0, 1] slightly
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    heat = _as_image(heatmap).astype(np.float32)
    if heat.shape != image.shape[:2]:
        raise ValueError(
            f"heatmap shape {heat.shape} does not match image shape {image.shape[:2]}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_probability("alpha", alpha)
    if not np.isfinite(heat).all():
        raise ValueError(
            f"heatmap must be finite, but {int((~np.isfinite(heat)).sum())} "
            "of its values are NaN or infinite (they would be drawn as a "
            "colour)"
        )
    colour = plt.get_cmap(cmap)(np.clip(heat, 0.0, 1.0))[..., :3]
    return (1 - alpha) * image + alpha * colour


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float, digits: int = 1) -> str:
    """``x`` in scientific notation for prose: ``sci(1.63e8)`` is "1.6 × 10⁸".

    Python's ``f"{x:.1e}"`` gives "1.6e+08", which reads as code, not as a
    number, in a sentence. Zero is "0"; a negative number gets a real minus
    sign; ``digits`` is the number of digits after the decimal point.
    """
    from dlbook.checks import check_int, check_number

    check_number("x", x)
    check_int("digits", digits, low=0)
    if x == 0:
        return "0"
    mantissa, exponent = f"{abs(float(x)):.{digits}e}".split("e")
    sign = "\u2212" if x < 0 else ""
    power = str(int(exponent)).translate(_SUPERSCRIPTS)
    return f"{sign}{mantissa} \u00d7 10{power}"

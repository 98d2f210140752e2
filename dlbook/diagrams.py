"""Explanatory diagrams drawn from code: boxes, arrows, layered networks, graphs, grids.

Every chapter has at least one diagram that draws its idea (a model, an algorithm, the
flow of a gradient), not its data: Prince's *Understanding Deep Learning* and d2l draw
theirs, and a picture of the computational graph teaches what no loss curve can. The
book keeps them as source, never as pasted images: a chapter draws its diagram with these
few matplotlib primitives in a cell tagged ``diagram`` (input hidden, numbered caption),
so a diagram is versioned, reviewed and rebuilt like everything else.

Coordinates are in data units of a canvas whose x axis spans ``[0, width]`` inches and y
axis ``[0, height]`` inches, so a box of width 1.2 is 1.2 inches wide on the page.

    fig, ax = canvas(height=2.0)
    a = box(ax, (1.0, 1.0), "input $x$")
    b = box(ax, (3.5, 1.0), "layer")
    arrow(ax, a.right, b.left, "forward")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from dlbook.checks import check_int, check_number
from dlbook.plot import FIGURE_WIDTH, PALETTE

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """A drawn box and its anchor points (centre and the middles of its sides)."""

    x: float  # centre
    y: float
    width: float
    height: float

    @property
    def center(self) -> Point:
        return (self.x, self.y)

    @property
    def left(self) -> Point:
        return (self.x - self.width / 2, self.y)

    @property
    def right(self) -> Point:
        return (self.x + self.width / 2, self.y)

    @property
    def top(self) -> Point:
        return (self.x, self.y + self.height / 2)

    @property
    def bottom(self) -> Point:
        return (self.x, self.y - self.height / 2)


def canvas(height: float = 2.4, width: float = FIGURE_WIDTH):
    """A blank figure whose data units are inches: ``x`` in ``[0, width]``.

    Returns ``(fig, ax)``; the axes have no frame and equal aspect, so circles
    stay round and a box's size on the page is its size in the code.
    """
    check_number("height", height, low=0, low_open=True)
    check_number("width", width, low=0, low_open=True)
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(
    ax,
    xy: Point,
    text: str = "",
    *,
    width: float = 1.2,
    height: float = 0.5,
    color: str = PALETTE[0],
    fill: float = 0.15,
    fontsize: float = 9,
    rounded: bool = True,
) -> Box:
    """A labelled box centred at ``xy``; ``fill`` is the opacity of its face."""
    check_number("width", width, low=0, low_open=True)
    check_number("height", height, low=0, low_open=True)
    check_number("fill", fill, low=0, high=1)
    x, y = xy
    style = "round,pad=0.02,rounding_size=0.08" if rounded else "square,pad=0"
    patch = FancyBboxPatch(
        (x - width / 2, y - height / 2),
        width,
        height,
        boxstyle=style,
        facecolor=_alpha(color, fill),
        edgecolor=color,
        linewidth=1.2,
    )
    ax.add_patch(patch)
    if text:
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return Box(x, y, width, height)


def arrow(
    ax,
    start: Point,
    end: Point,
    text: str = "",
    *,
    color: str = "#333333",
    curve: float = 0.0,
    dashed: bool = False,
    fontsize: float = 8,
    offset: float = 0.12,
) -> None:
    """An arrow from ``start`` to ``end``, optionally bent (``curve``) and labelled.

    The label sits ``offset`` inches to the left of the arrow's direction, at its
    middle: above a rightward arrow, below a leftward one.
    """
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=10,
            color=color,
            linewidth=1.1,
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={curve}",
            shrinkA=2,
            shrinkB=2,
        )
    )
    if text:
        (x0, y0), (x1, y1) = start, end
        dx, dy = x1 - x0, y1 - y0
        norm = np.hypot(dx, dy) or 1.0
        # a bent arrow's middle lies off the chord, by curve * half its length
        bend = -curve * norm / 2
        nx, ny = -dy / norm, dx / norm
        mx = (x0 + x1) / 2 + nx * (bend + offset)
        my = (y0 + y1) / 2 + ny * (bend + offset)
        ax.text(
            mx,
            my,
            text,
            ha="center",
            va="center",
            fontsize=fontsize,
            color=color,
        )


def network(
    ax,
    sizes: Sequence[int],
    *,
    x0: float = 0.6,
    x1: float | None = None,
    y0: float = 0.3,
    y1: float | None = None,
    radius: float = 0.09,
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
) -> list[list[Point]]:
    """A fully connected layered network: one column of circles per layer.

    Args:
        sizes: units per layer (drawn, not the real width: 3 to 8 reads well).
        x0, x1, y0, y1: the rectangle the network fills (default: the canvas).
        labels: a caption under each layer.
        colors: one colour per layer.

    Returns:
        The centre of every unit, layer by layer, to draw on top of.
    """
    if len(sizes) < 1:
        raise ValueError("sizes must list at least one layer, got []")
    for i, n in enumerate(sizes):
        check_int(f"sizes[{i}]", n, low=1)
    if labels is not None and len(labels) != len(sizes):
        raise ValueError(
            f"labels must have one entry per layer ({len(sizes)}), "
            f"got {len(labels)}"
        )
    x1 = ax.get_xlim()[1] - 0.6 if x1 is None else x1
    y1 = ax.get_ylim()[1] - 0.3 if y1 is None else y1
    bottom = y0 + (0.25 if labels else 0.0)
    xs = np.linspace(x0, x1, len(sizes)) if len(sizes) > 1 else [x0]
    centres = []
    for layer, (x, n) in enumerate(zip(xs, sizes)):
        ys = np.linspace(y1, bottom, n + 2)[1:-1]
        centres.append([(float(x), float(y)) for y in ys])
    for a, b in zip(centres, centres[1:]):
        for p in a:
            for q in b:
                ax.plot(*zip(p, q), color="#999999", lw=0.5, zorder=1)
    for layer, layer_centres in enumerate(centres):
        c = colors[layer] if colors else PALETTE[layer % len(PALETTE)]
        for p in layer_centres:
            ax.add_patch(
                plt.Circle(
                    p, radius, facecolor=_alpha(c, 0.35), edgecolor=c, zorder=2
                )
            )
        if labels:
            ax.text(
                layer_centres[0][0],
                y0,
                labels[layer],
                ha="center",
                va="bottom",
                fontsize=8,
            )
    return centres


def graph(
    ax,
    positions: Mapping[object, Point],
    edges: Sequence[tuple[object, object]],
    *,
    node_colors: Mapping[object, str] | None = None,
    labels: Mapping[object, str] | None = None,
    radius: float = 0.14,
    directed: bool = False,
    edge_color: str = "#777777",
) -> None:
    """A small graph: nodes at ``positions``, straight edges, optional colours/labels."""
    for u, v in edges:
        for n in (u, v):
            if n not in positions:
                raise ValueError(
                    f"edge ({u!r}, {v!r}) names node {n!r}, which has no "
                    "position"
                )
        if directed:
            arrow(ax, positions[u], positions[v], color=edge_color)
        else:
            ax.plot(
                *zip(positions[u], positions[v]),
                color=edge_color,
                lw=1.0,
                zorder=1,
            )
    for n, p in positions.items():
        c = (node_colors or {}).get(n, PALETTE[0])
        ax.add_patch(
            plt.Circle(
                p,
                radius,
                facecolor=_alpha(c, 0.35),
                edgecolor=c,
                lw=1.2,
                zorder=2,
            )
        )
        text = (labels or {}).get(n, "")
        if text:
            ax.text(*p, text, ha="center", va="center", fontsize=8, zorder=3)


def grid(
    ax,
    xy: Point,
    values: np.ndarray | Sequence[Sequence[float]],
    *,
    cell: float = 0.25,
    cmap: str = "Blues",
    fmt: str | None = "{:g}",
    highlight: Sequence[tuple[int, int]] = (),
    color: str = PALETTE[1],
    fontsize: float = 7,
) -> Box:
    """A matrix drawn as a grid of cells (an image patch, a kernel, a feature map).

    ``xy`` is the top-left corner; ``highlight`` outlines cells ``(row, col)``;
    ``fmt=None`` draws no numbers. Returns the bounding :class:`Box`.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(
            f"values must be a non-empty 2-D matrix, got shape {values.shape}"
        )
    check_number("cell", cell, low=0, low_open=True)
    rows, cols = values.shape
    x0, y0 = xy
    lo, hi = np.nanmin(values), np.nanmax(values)
    scale = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    colormap = plt.get_cmap(cmap)
    for r in range(rows):
        for c in range(cols):
            x, y = x0 + c * cell, y0 - (r + 1) * cell
            ax.add_patch(
                Rectangle(
                    (x, y),
                    cell,
                    cell,
                    lw=0.6,
                    edgecolor="#444444",
                    facecolor=colormap(0.15 + 0.6 * scale[r, c]),
                )
            )
            if fmt is not None:
                ax.text(
                    x + cell / 2,
                    y + cell / 2,
                    fmt.format(values[r, c]),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                )
    for r, c in highlight:
        if not (0 <= r < rows and 0 <= c < cols):
            raise ValueError(
                f"highlight cell ({r}, {c}) is outside the {rows}x{cols} grid"
            )
        ax.add_patch(
            Rectangle(
                (x0 + c * cell, y0 - (r + 1) * cell),
                cell,
                cell,
                fill=False,
                lw=2.0,
                edgecolor=color,
                zorder=3,
            )
        )
    w, h = cols * cell, rows * cell
    return Box(x0 + w / 2, y0 - h / 2, w, h)


def _alpha(color: str, amount: float):
    """``color`` mixed with white (opaque, so lines behind a node stay hidden)."""
    from matplotlib.colors import to_rgb

    return tuple(1 - amount * (1 - c) for c in to_rgb(color))

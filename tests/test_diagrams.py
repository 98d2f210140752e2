"""The diagram primitives draw what they say, where they say, and refuse bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlbook.diagrams import arrow, box, canvas, graph, grid, network  # noqa: E402
from dlbook.plot import FIGURE_WIDTH  # noqa: E402


def test_canvas_units_are_inches_at_the_house_width():
    fig, ax = canvas(height=2.0)
    assert tuple(fig.get_size_inches()) == (FIGURE_WIDTH, 2.0)
    assert ax.get_xlim() == (0, FIGURE_WIDTH) and ax.get_ylim() == (0, 2.0)
    plt.close(fig)


def test_box_anchors_and_arrow_label():
    fig, ax = canvas()
    a = box(ax, (1.0, 1.0), "x", width=1.0, height=0.4)
    assert a.left == (0.5, 1.0) and a.right == (1.5, 1.0) and a.top == (1.0, 1.2) and a.bottom == (1.0, 0.8)
    b = box(ax, (4.0, 1.0), "y")
    arrow(ax, a.right, b.left, "f")
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["x", "y", "f"]
    label = ax.texts[-1]
    assert label.get_position()[1] > 1.0  # above a rightward arrow
    plt.close(fig)


def test_network_draws_every_unit_and_every_connection():
    fig, ax = canvas()
    centres = network(ax, [3, 4, 2], labels=["in", "hidden", "out"])
    assert [len(c) for c in centres] == [3, 4, 2]
    assert len(ax.lines) == 3 * 4 + 4 * 2 and len(ax.patches) == 9
    with pytest.raises(ValueError, match="labels must have one entry per layer"):
        network(ax, [3, 4], labels=["a"])
    with pytest.raises(ValueError, match=r"sizes\[1\] must be an integer >= 1"):
        network(ax, [3, 0])
    plt.close(fig)


def test_graph_and_grid():
    fig, ax = canvas()
    graph(ax, {0: (1, 1), 1: (2, 1), 2: (1.5, 2)}, [(0, 1), (1, 2)], labels={0: "a"})
    assert len(ax.lines) == 2 and len(ax.patches) == 3
    with pytest.raises(ValueError, match="names node 9"):
        graph(ax, {0: (1, 1)}, [(0, 9)])
    bbox = grid(ax, (3.0, 2.0), np.arange(6).reshape(2, 3), cell=0.2, highlight=[(1, 2)])
    assert np.isclose(bbox.width, 0.6) and np.isclose(bbox.height, 0.4)
    with pytest.raises(ValueError, match="outside the 2x3 grid"):
        grid(ax, (0, 0), np.ones((2, 3)), highlight=[(2, 0)])
    with pytest.raises(ValueError, match="non-empty 2-D"):
        grid(ax, (0, 0), np.ones(3))
    plt.close(fig)

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from dlbook import plot
from dlbook.train import History


def test_use_style_sets_the_palette():
    plot.use_style()
    assert matplotlib.rcParams["axes.spines.top"] is False
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0] == plot.PALETTE[0]


def test_plot_history_draws_each_metric():
    h = History()
    for i in range(5):
        h.append({"train_loss": 1 / (i + 1), "val_loss": 1.2 / (i + 1), "val_acc": 0.5 + i / 10})
    fig = plot.plot_history(h)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["train_loss", "val_loss"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), h["val_loss"])
    with pytest.raises(KeyError, match="train_acc"):
        plot.plot_history(h, ["train_acc"])


def test_image_grid_accepts_tensors_and_arrays():
    images = [torch.rand(1, 28, 28), torch.rand(3, 16, 16), np.random.rand(20, 20, 3)]
    fig = plot.image_grid(images, ["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "a"
    assert fig.axes[0].images[0].get_array().shape == (28, 28)
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        plot.image_grid(images, ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        plot.image_grid([])


def test_overlay_blends_in_unit_range():
    image = np.full((8, 8, 3), 255, dtype=np.uint8)
    heat = np.zeros((8, 8))
    heat[0, 0] = 1.0
    out = plot.overlay(image, heat, alpha=0.5)
    assert out.shape == (8, 8, 3) and 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out[0, 0], out[7, 7])  # hot and cold pixels differ
    grey = plot.overlay(torch.rand(1, 8, 8), torch.rand(8, 8))
    assert grey.shape == (8, 8, 3)
    with pytest.raises(ValueError, match="does not match"):
        plot.overlay(image, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="alpha"):
        plot.overlay(image, heat, alpha=2)


def test_sci_writes_numbers_for_prose():
    from dlbook.plot import sci

    assert sci(1.63e8) == "1.6 × 10⁸"
    assert sci(2.4e-28, 0) == "2 × 10⁻²⁸"
    assert sci(9.96e-5) == "1.0 × 10⁻⁴"  # the mantissa never reads 10.0
    assert sci(-3.2e4) == "\u22123.2 × 10⁴"
    assert sci(0.0) == "0"
    with pytest.raises(ValueError, match="x"):
        sci(float("nan"))
    with pytest.raises(ValueError, match="digits"):
        sci(1.0, -1)

"""What the plotting helpers refuse, and overlay's reading of an image's range
(reliability probe, issue 13: defect 6)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dlbook.plot import image_grid, overlay, plot_history  # noqa: E402


def test_overlay_keeps_a_float_image_that_overshoots_one():
    """Probe defect 6: one pixel at 1.02 divided the whole image by 255 (a black picture)."""
    img = np.full((4, 4), 0.8)
    img[0, 0] = 1.02  # resampling overshoot
    out = overlay(img, np.zeros((4, 4)), alpha=0.0)
    assert out.mean() == pytest.approx(0.8, abs=0.02)


def test_overlay_reads_the_range_from_the_dtype():
    u8 = np.full((4, 4, 3), 204, dtype=np.uint8)
    np.testing.assert_allclose(overlay(u8, np.zeros((4, 4)), alpha=0.0), 0.8, rtol=1e-6)
    with pytest.raises(ValueError, match=r"float image in \[0, 1\] or an integer image in 0..255, got floats up to 204"):
        overlay(u8.astype(np.float32), np.zeros((4, 4)))


def test_overlay_refuses_a_nan_heatmap():
    """Probe: NaN heat was drawn as the colour of 0."""
    heat = np.zeros((4, 4))
    heat[1, 1] = np.nan
    with pytest.raises(ValueError, match="heatmap must be finite, but 1 of its values"):
        overlay(np.zeros((4, 4)), heat)


def test_image_grid_and_plot_history_refuse_bad_arguments():
    with pytest.raises(ValueError, match="ncols must be a positive integer, got 0"):  # was ZeroDivisionError
        image_grid([torch.rand(1, 4, 4)], ncols=0)
    with pytest.raises(TypeError, match="history must be a History or a mapping"):
        plot_history(None)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_history({"acc": [0.5, 0.6]})
    plt.close("all")

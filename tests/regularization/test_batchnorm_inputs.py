"""What batch and layer normalization refuse, and TorchBatchNorm's float32 accuracy
(reliability probe, issue 13: defects 12 and 20)."""

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.regularization.batchnorm import (
    BatchNorm, BatchNormConfig, LayerNorm, TorchBatchNorm, batchnorm_backward, batchnorm_backward_alt,
    batchnorm_forward, layernorm_forward,
)


def test_integer_input_is_refused_not_truncated():
    """Probe: an int64 batch came back truncated to [-1, 0, 1] (torch raises for Long input)."""
    x = np.array([[1, 2], [3, 5], [4, 9]])
    with pytest.raises(TypeError, match="x must have a floating dtype, got int64"):
        BatchNorm(BatchNormConfig(2)).forward(x)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        TorchBatchNorm(2)(torch.from_numpy(x))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        LayerNorm(2).forward(x)


@pytest.mark.parametrize("dout_shape", [(1, 3), (8, 1), (3, 8)])
def test_a_wrong_shape_upstream_gradient_is_refused(dout_shape):
    """Probe: dout of shape (1, C) after a forward of (8, C) was broadcast, with m = 1."""
    bn = BatchNorm(BatchNormConfig(3))
    bn.forward(np.random.default_rng(0).standard_normal((8, 3)))
    with pytest.raises(ValueError, match=r"dout must have the shape of the forward pass's output \(8, 3\)"):
        bn.backward(np.ones(dout_shape))
    _, cache = batchnorm_forward(np.random.default_rng(1).standard_normal((8, 3)), np.ones(3), np.zeros(3))
    for backward in (batchnorm_backward, batchnorm_backward_alt):
        with pytest.raises(ValueError, match="dout must have the shape"):
            backward(np.ones(dout_shape), cache)


def test_four_dimensional_backward_still_works():
    bn = BatchNorm(BatchNormConfig(3))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    assert bn.backward(np.ones_like(bn.forward(x))).shape == x.shape
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        bn.backward(np.ones((2, 4, 5, 3)))


@pytest.mark.parametrize("x, gamma, match", [
    (np.ones((1, 3)), np.ones(3), r"more than 1 value per feature, got x of shape \(1, 3\)"),  # was zeros for a batch of one
    (np.random.default_rng(0).standard_normal((4, 3)), np.ones(1), r"gamma must have shape \(3\), got \(1,\)"),
    (np.random.default_rng(0).standard_normal((4, 3)), np.ones(2), r"gamma must have shape \(3\)"),
])
def test_batchnorm_forward_checks_its_arguments(x, gamma, match):
    with pytest.raises(ValueError, match=match):
        batchnorm_forward(x, gamma, np.zeros(3))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: LayerNorm(3, eps=-1), ValueError, "eps must be a finite number >= 0, got -1"),  # BatchNorm refused it
    (lambda: LayerNorm(1), ValueError, "num_features must be an integer >= 2"),
    (lambda: BatchNorm(BatchNormConfig(3, eps=float("nan"))), ValueError, "eps"),
    (lambda: BatchNorm(BatchNormConfig(2.5)), TypeError, "num_features must be an integer"),
    (lambda: BatchNorm(BatchNormConfig(3)).forward([[1.0, 2.0, 3.0]]), TypeError, "x must be a NumPy array"),
    (lambda: BatchNorm(BatchNormConfig(3)).forward(torch.ones(2, 3)), TypeError, "x must be a NumPy array, got a tensor"),
    (lambda: layernorm_forward(np.ones((2, 3)), np.ones(2), np.zeros(3)), ValueError, r"gamma must have shape \(3\)"),
])
def test_bad_arguments_are_refused(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_torch_batchnorm_float32_is_as_accurate_as_torchs():
    """Probe defect 20: with |mean|/std ~ 1e3, float32 statistics lost 5x more than nn.BatchNorm1d."""
    g = torch.Generator().manual_seed(0)
    x64 = 1e3 + torch.randn(64, 4, generator=g, dtype=torch.float64)
    exact = (x64 - x64.mean(0)) / torch.sqrt(x64.var(0, unbiased=False) + 1e-5)
    x = x64.float()
    ours = TorchBatchNorm(4)(x)
    theirs = nn.BatchNorm1d(4)(x)
    err_ours = (ours.double() - exact).abs().max().item()
    err_torch = (theirs.double() - exact).abs().max().item()
    assert err_ours <= 1.5 * err_torch, (err_ours, err_torch)
    assert ours.dtype == torch.float32


def test_layer_norm_of_one_example_is_fine_and_of_one_feature_is_not():
    out, _ = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
    np.testing.assert_allclose(out, [[-1.0, 1.0]], rtol=1e-4)
    with pytest.raises(ValueError, match="more than 1 value per example"):
        layernorm_forward(np.ones((4, 1)), np.ones(1), np.zeros(1))


def test_float32_layer_keeps_float32_statistics():
    bn = BatchNorm(BatchNormConfig(3), dtype=np.float32)
    out = bn.forward(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    assert out.dtype == np.float32 and bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32

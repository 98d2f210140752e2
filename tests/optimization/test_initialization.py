"""Xavier and He initialization against torch.nn.init, their predicted statistics, and deep MLPs."""

import math

import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.optimization.initialization import (
    DeepMLP, MLPConfig, fans, gain, he_std, kaiming_normal_, kaiming_uniform_, layer_statistics, recording,
    xavier_normal_, xavier_std, xavier_uniform_,
)
from dlbook.train import fit

SHAPES = [(64, 32), (300, 784), (16, 8, 3, 3), (8, 4, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ours, theirs, kwargs", [
    (xavier_uniform_, nn.init.xavier_uniform_, {}),
    (xavier_uniform_, nn.init.xavier_uniform_, {"gain": 5 / 3}),
    (xavier_normal_, nn.init.xavier_normal_, {}),
    (kaiming_uniform_, nn.init.kaiming_uniform_, {}),
    (kaiming_uniform_, nn.init.kaiming_uniform_, {"a": math.sqrt(5)}),  # nn.Linear's default
    (kaiming_normal_, nn.init.kaiming_normal_, {"nonlinearity": "relu"}),
    (kaiming_normal_, nn.init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"}),
    (kaiming_normal_, nn.init.kaiming_normal_, {"a": 0.2, "nonlinearity": "leaky_relu"}),
])
def test_same_numbers_as_torch_nn_init(shape, ours, theirs, kwargs):
    mine_kwargs = {("gain_" if k == "gain" else k): v for k, v in kwargs.items()}
    a = ours(torch.empty(shape), generator=torch.Generator().manual_seed(0), **mine_kwargs)
    b = theirs(torch.empty(shape), generator=torch.Generator().manual_seed(0), **kwargs)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("nonlinearity, param", [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                                                 ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_gain_equals_calculate_gain(nonlinearity, param):
    assert gain(nonlinearity, param) == pytest.approx(nn.init.calculate_gain(nonlinearity, param), rel=1e-12)


def test_fans_count_the_receptive_field():
    assert fans(torch.empty(10, 20)) == (20, 10)
    assert fans(torch.empty(16, 8, 3, 3)) == (72, 144)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fans(torch.empty(5))


@pytest.mark.parametrize("init, expected_std, dist", [
    (lambda w, g: xavier_uniform_(w, generator=g), lambda w: xavier_std(w), "uniform"),
    (lambda w, g: xavier_normal_(w, generator=g), lambda w: xavier_std(w), "normal"),
    (lambda w, g: kaiming_uniform_(w, nonlinearity="relu", generator=g), lambda w: he_std(w), "uniform"),
    (lambda w, g: kaiming_normal_(w, nonlinearity="relu", generator=g), lambda w: he_std(w), "normal"),
])
def test_distribution_has_the_derived_variance_and_shape(init, expected_std, dist):
    w = init(torch.empty(400, 600), torch.Generator().manual_seed(3))
    sigma = expected_std(w)
    n = w.numel()
    # the sample standard deviation is within 5 standard errors of the derived one
    assert abs(w.std().item() - sigma) < 5 * sigma / math.sqrt(2 * n)
    assert abs(w.mean().item()) < 5 * sigma / math.sqrt(n)
    ref = stats.uniform(-math.sqrt(3) * sigma, 2 * math.sqrt(3) * sigma) if dist == "uniform" else stats.norm(0, sigma)
    assert stats.kstest(w.flatten().double().numpy(), ref.cdf).pvalue > 1e-3
    wrong = stats.norm(0, sigma) if dist == "uniform" else stats.uniform(-math.sqrt(3) * sigma, 2 * math.sqrt(3) * sigma)
    assert stats.kstest(w.flatten().double().numpy(), wrong.cdf).pvalue < 1e-6  # the test can tell them apart


def test_derived_standard_deviations():
    w = torch.empty(300, 100)
    assert xavier_std(w) == pytest.approx(math.sqrt(2 / 400))
    assert he_std(w) == pytest.approx(math.sqrt(2 / 100))
    assert he_std(w, mode="fan_out") == pytest.approx(math.sqrt(2 / 300))
    with pytest.raises(ValueError, match="mode"):
        he_std(w, mode="both")
    with pytest.raises(ValueError, match="nonlinearity"):
        gain("gelu")


# --- deep MLPs and their statistics -----------------------------------------------------------


def _stats(depth=20, width=128, **kw):
    torch.manual_seed(0)
    model = DeepMLP(MLPConfig(depth=depth, width=width, in_features=64, **kw), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 64, generator=g), torch.randint(0, 10, (256,), generator=g)
    return model, layer_statistics(model, x, y)


def test_layer_statistics_shapes_and_values():
    model, s = _stats(depth=6, width=32)
    assert s.activation_std.shape == (7,) and s.backward_std.shape == (7,) and s.weight_grad_norm.shape == (8,)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 64, generator=g), torch.randint(0, 10, (256,), generator=g)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    norms = torch.stack([m.weight.grad.double().norm() for m in model.linears()])
    torch.testing.assert_close(s.weight_grad_norm, norms)
    assert s.weight_grad_nonzero.shape == (8,) and (s.weight_grad_nonzero > 0.5).all()
    h = model.stem(x)
    for block in model.blocks[:2]:
        h = block(h)
    torch.testing.assert_close(s.activation_std[2], h.double().std().detach())


def test_tiny_gradients_are_measured_not_flushed_to_zero():
    """With sigma = 0.01 the gradients are ~1e-30: fine in float32, but their
    squares are not, so a float32 norm underflows to 0. The statistics must not."""
    model, s = _stats(depth=20, width=128, init="normal", init_std=0.01)
    first = model.linears()[1].weight.grad
    assert first.dtype == torch.float32 and (first != 0).any()
    assert first.norm() == 0  # float32: the squares underflow
    assert 0 < s.weight_grad_norm[1] < 1e-20  # float64: a tiny, honest number
    assert (s.weight_grad_norm > 0).all() and (s.backward_std > 0).all()
    assert s.weight_grad_nonzero[1] > 0


def test_recording_removes_its_hooks():
    model, _ = _stats(depth=3, width=16)
    assert all(not m._forward_hooks for m in model.layers())
    with pytest.raises(RuntimeError, match="boom"), recording(model.layers()):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in model.layers())


def test_he_preserves_the_signal_and_xavier_halves_it_with_relu():
    """The derivation: with ReLU, He keeps E[h^2] constant; Xavier (n_in = n_out) halves it at every layer."""
    _, he = _stats(init="he")
    _, xav = _stats(init="xavier")
    he_ratio = (he.activation_std[-1] / he.activation_std[1]).item()
    xav_ratio = (xav.activation_std[-1] / xav.activation_std[1]).item() ** (1 / 19)  # per layer
    assert 0.5 < he_ratio < 2.0
    assert xav_ratio == pytest.approx(1 / math.sqrt(2), rel=0.08)
    assert xav.weight_grad_norm[1] < 1e-3 * he.weight_grad_norm[1]


@pytest.mark.parametrize("std, direction", [(0.01, "vanish"), (0.2, "explode")])
def test_a_fixed_standard_deviation_vanishes_or_explodes_at_the_predicted_rate(std, direction):
    _, s = _stats(init="normal", init_std=std, width=128)
    per_layer = (s.activation_std[-1] / s.activation_std[1]).item() ** (1 / 19)
    assert per_layer == pytest.approx(math.sqrt(128 * std**2 / 2), rel=0.1)
    assert (per_layer < 1) == (direction == "vanish")


def test_residual_without_normalization_doubles_the_variance_per_layer():
    """Var[h + W relu(h)] = Var[h] + 2/n * n * E[relu(h)^2] = 2 Var[h] with He init."""
    _, s = _stats(init="he", residual=True, depth=12)
    growth = (s.activation_std[-1] / s.activation_std[2]).item() ** (1 / 10)
    assert growth == pytest.approx(math.sqrt(2), rel=0.05)
    _, bn = _stats(init="he", residual=True, norm=True, depth=12)
    var = bn.activation_std**2  # with batch norm each block adds about 1: linear growth (De & Smith 2020)
    increments = var[1:] - var[:-1]
    assert increments[2:].mean().item() == pytest.approx(1.0, rel=0.15)


def test_deep_mlp_shapes_and_errors():
    model = DeepMLP(MLPConfig(depth=3, width=16, norm=True, residual=True))
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert len(model.linears()) == 5 and len(model.layers()) == 4 and model.blocks[0].residual
    with pytest.raises(ValueError, match="expects 784"):
        model(torch.rand(5, 100))
    with pytest.raises(ValueError, match="init"):
        MLPConfig(init="orthogonal")
    with pytest.raises(ValueError, match="depth"):
        MLPConfig(depth=0)


@pytest.mark.parametrize("kw", [dict(), dict(norm=True), dict(norm=True, residual=True)])
def test_a_deep_mlp_learns(kw):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=g)
    y = (x @ torch.randn(20, 4, generator=g)).argmax(1)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = DeepMLP(MLPConfig(depth=6, width=64, in_features=20, num_classes=4, **kw))
    h = fit(model, loader, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), epochs=6, progress=False)
    assert h["train_loss"][-1] < h["train_loss"][0] / 3
    assert h["train_acc"][-1] > 0.8  # chance: about 0.25

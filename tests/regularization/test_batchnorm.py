"""NumPy batch and layer normalization against a numerical gradient and torch.nn."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.config import seed_everything
from dlbook.regularization.batchnorm import (
    BatchNorm, BatchNormConfig, LayerNorm, TorchBatchNorm, batchnorm_backward, batchnorm_backward_alt,
    batchnorm_forward, deep_mlp, layernorm_backward, layernorm_forward, numerical_gradient, rel_error,
)


def _problem(seed=0, n=8, d=5):
    rng = np.random.default_rng(seed)
    # off-centre, unevenly scaled features, as in CS231n's check
    x = 5 * rng.standard_normal((n, d)) + 12
    return x, rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal((n, d))


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_alt])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batchnorm_gradients_match_a_numerical_gradient(backward, seed):
    x, gamma, beta, dout = _problem(seed)

    def f():
        return float((batchnorm_forward(x, gamma, beta)[0] * dout).sum())

    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)
    assert rel_error(dx, numerical_gradient(f, x)) <= 1e-8
    assert rel_error(dgamma, numerical_gradient(f, gamma)) <= 1e-8
    assert rel_error(dbeta, numerical_gradient(f, beta)) <= 1e-8


def test_the_two_backward_passes_agree():
    x, gamma, beta, dout = _problem(3, n=64, d=16)
    _, cache = batchnorm_forward(x, gamma, beta)
    for a, b in zip(batchnorm_backward(dout, cache), batchnorm_backward_alt(dout, cache), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_numerical_gradient_check_catches_a_wrong_gradient():
    """A backward pass that forgets the path through the mean fails the same check."""
    x, gamma, beta, dout = _problem(0)
    _, cache = batchnorm_forward(x, gamma, beta)
    wrong = dout * gamma * cache["ivar"]  # treats mu and var as constants
    numeric = numerical_gradient(lambda: float((batchnorm_forward(x, gamma, beta)[0] * dout).sum()), x)
    assert rel_error(wrong, numeric) > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_layernorm_gradients_match_a_numerical_gradient(seed):
    x, _, _, dout = _problem(seed, n=4, d=7)
    rng = np.random.default_rng(seed + 10)
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)

    def f():
        return float((layernorm_forward(x, gamma, beta)[0] * dout).sum())

    _, cache = layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    assert rel_error(dx, numerical_gradient(f, x)) <= 1e-8
    assert rel_error(dgamma, numerical_gradient(f, gamma)) <= 1e-8
    assert rel_error(dbeta, numerical_gradient(f, beta)) <= 1e-8


def test_batchnorm_4d_gradient_matches_a_numerical_gradient():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 3, 2)) * 3 + 1
    dout = rng.standard_normal(x.shape)
    layer = BatchNorm(BatchNormConfig(2))
    layer.gamma, layer.beta = rng.standard_normal(2), rng.standard_normal(2)

    def f():
        return float((_fresh(layer)(x) * dout).sum())

    layer(x)
    dx = layer.backward(dout)
    assert rel_error(dx, numerical_gradient(f, x)) <= 1e-8


def _fresh(layer):
    """A training-mode copy of ``layer`` with its parameters, so that f() does not touch running stats."""
    new = BatchNorm(layer.cfg)
    new.gamma, new.beta = layer.gamma, layer.beta
    return new


def _torch_reference(ndim, c, momentum):
    cls = nn.BatchNorm1d if ndim in (2, 3) else nn.BatchNorm2d
    return cls(c, eps=1e-5, momentum=momentum).double()


@pytest.mark.parametrize("shape", [(16, 6), (8, 6, 5), (4, 6, 3, 5)])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_equals_torch_in_train_and_eval_with_running_statistics(shape, momentum):
    rng = np.random.default_rng(0)
    c = shape[1]
    ours = BatchNorm(BatchNormConfig(c, momentum=momentum))
    ref = _torch_reference(len(shape), c, momentum)
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    ours.gamma, ours.beta = gamma.copy(), beta.copy()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma))
        ref.bias.copy_(torch.from_numpy(beta))
    for step in range(4):
        for mode in ("train", "eval") if step < 3 else ("eval",):
            ours.train(mode == "train")
            ref.train(mode == "train")
            x = rng.standard_normal(shape) * (step + 1) + step  # the statistics drift from batch to batch
            dout = rng.standard_normal(shape)
            xt = torch.from_numpy(x).requires_grad_()
            yt = ref(xt)
            yt.backward(torch.from_numpy(dout))
            y = ours(x)
            dx = ours.backward(dout)
            torch.testing.assert_close(torch.from_numpy(y), yt.detach())
            torch.testing.assert_close(torch.from_numpy(dx), xt.grad)
            torch.testing.assert_close(torch.from_numpy(ours.dgamma), ref.weight.grad)
            torch.testing.assert_close(torch.from_numpy(ours.dbeta), ref.bias.grad)
            ref.weight.grad = ref.bias.grad = None
            torch.testing.assert_close(torch.from_numpy(ours.running_mean), ref.running_mean)
            torch.testing.assert_close(torch.from_numpy(ours.running_var), ref.running_var)
            assert ours.num_batches_tracked == int(ref.num_batches_tracked)
    assert ours.num_batches_tracked == 3


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
def test_layernorm_equals_torch(shape):
    rng = np.random.default_rng(1)
    ours = LayerNorm(7)
    ours.gamma, ours.beta = rng.standard_normal(7), rng.standard_normal(7)
    ref = nn.LayerNorm(7).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.gamma))
        ref.bias.copy_(torch.from_numpy(ours.beta))
    x, dout = rng.standard_normal(shape) * 3 + 2, rng.standard_normal(shape)
    xt = torch.from_numpy(x).requires_grad_()
    ref(xt).backward(torch.from_numpy(dout))
    torch.testing.assert_close(torch.from_numpy(ours(x)), ref(xt).detach())
    torch.testing.assert_close(torch.from_numpy(ours.backward(dout)), xt.grad)
    torch.testing.assert_close(torch.from_numpy(ours.dgamma), ref.weight.grad)
    torch.testing.assert_close(torch.from_numpy(ours.dbeta), ref.bias.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_batchnorm_trains_like_nn_batchnorm(dtype):
    """Five SGD steps of a network with our layer == the same network with nn.BatchNorm1d."""

    def net(norm):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(10, 16), norm(16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)

    ours, ref = net(TorchBatchNorm), net(nn.BatchNorm1d)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ours, ref)]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = torch.randn(32, 10, generator=g, dtype=dtype), torch.randint(0, 3, (32,), generator=g)
        for model, opt in zip((ours, ref), opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else {}
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, **tol, msg=name)
    ours.eval()
    ref.eval()
    x = torch.randn(7, 10, generator=g, dtype=dtype)
    torch.testing.assert_close(ours(x), ref(x), **tol)


def test_torch_batchnorm_network_learns():
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2
    y = torch.randint(0, 3, (256,), generator=g)
    x = centres[y] + torch.randn(256, 8, generator=g)
    model = nn.Sequential(nn.Linear(8, 32), TorchBatchNorm(32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = F.cross_entropy(model(x), y).item()
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert F.cross_entropy(model(x), y).item() < 0.3 * first
    assert (model(x).argmax(1) == y).float().mean() > 0.9  # three classes: chance is 1/3


def test_epsilon_zero_breaks_on_a_constant_feature():
    x = np.column_stack([np.random.default_rng(0).standard_normal(6), np.full(6, 3.0)])
    with np.errstate(invalid="ignore", divide="ignore"):
        out0, _ = batchnorm_forward(x, np.ones(2), np.zeros(2), eps=0.0)
    out, _ = batchnorm_forward(x, np.ones(2), np.zeros(2), eps=1e-5)
    assert np.isnan(out0[:, 1]).all() and np.isfinite(out0[:, 0]).all()
    assert np.array_equal(out[:, 1], np.zeros(6))  # with eps: a constant feature maps to beta


def test_errors():
    layer = BatchNorm(BatchNormConfig(3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3"):
        layer(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\]"):
        BatchNorm(BatchNormConfig(3, momentum=2.0))
    with pytest.raises(RuntimeError, match="before forward"):
        BatchNorm(BatchNormConfig(3)).backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected input of shape \(\.\.\., 4\)"):
        LayerNorm(4)(np.zeros((2, 3)))


@pytest.mark.parametrize("norm, kind", [(None, None), ("ours", TorchBatchNorm), ("torch", nn.BatchNorm1d),
                                        ("layer", nn.LayerNorm)])
def test_deep_mlp_layers(norm, kind):
    model = deep_mlp(4, 16, norm)
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert sum(isinstance(m, nn.Linear) for m in model) == 5
    if kind is not None:
        assert sum(isinstance(m, kind) for m in model) == 4
    with pytest.raises(ValueError, match="norm must be one of"):
        deep_mlp(norm="group")


def test_random_batches_yield_every_batch_of_one_seeded_draw():
    from dlbook.regularization.batchnorm import RandomBatches

    x = torch.arange(50.0).reshape(50, 1) * 10
    y = torch.arange(50)
    draws = RandomBatches(x, y, steps=12, every=4, batch_size=6, seed=3)
    passes = [list(draws) for _ in range(3)]  # fit's three epochs
    assert [len(p) for p in passes] == [4, 4, 4] and len(draws) == 4
    expected = torch.randint(50, (3, 4, 6), generator=torch.Generator().manual_seed(3))
    for p, idx in zip(passes, expected):
        for (xb, yb), i in zip(p, idx):
            assert torch.equal(yb, i) and torch.equal(xb[:, 0], 10 * i.float())
    with pytest.raises(RuntimeError, match="passes"):
        list(draws)  # the steps are used up
    again = RandomBatches(x, y, steps=12, every=4, batch_size=6, seed=3)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(list(again), passes[0]))
    other = list(RandomBatches(x, y, steps=12, every=4, batch_size=6, seed=4))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(other, passes[0]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=3, every=4), "steps"), (dict(every=0), "every"),
    (dict(batch_size=0), "batch_size"), (dict(y=torch.zeros(3)), "y"),
])
def test_random_batches_refuse_bad_arguments(kwargs, match):
    from dlbook.regularization.batchnorm import RandomBatches

    args = dict(x=torch.zeros(5, 2), y=torch.zeros(5), steps=8, every=4, batch_size=2)
    with pytest.raises((ValueError, TypeError), match=match):
        RandomBatches(**{**args, **kwargs})

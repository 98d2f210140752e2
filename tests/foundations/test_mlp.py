"""Activations, logistic and softmax regression, and the MLP against PyTorch and scikit-learn."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from dlbook.foundations.mlp import (
    ACTIVATIONS, MLP, BudgetStudyConfig, GDConfig, MLPConfig, ParallelMLP, SideBySide, activation, count_params, deep_vs_wide,
    fit_logistic_regression, fit_softmax_regression, gelu, gelu_grad, gradient_descent, logistic_nll, smoothness,
    softmax, softmax_jacobian, softmax_nll, softplus, summed_cross_entropy, width_for_budget,
)

REFERENCE = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "gelu": F.gelu,
}


def _x(n=4001, lo=-30.0, hi=30.0):
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    return x[x != 0]  # the kink of ReLU: both conventions are valid there, tested separately


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_and_derivative_equal_torch(name):
    act, ref = ACTIVATIONS[name], REFERENCE[name]
    x = _x().requires_grad_(True)
    (d_ref,) = torch.autograd.grad(ref(x).sum(), x)
    torch.testing.assert_close(act.fn(x.detach()), ref(x.detach()))
    torch.testing.assert_close(act.grad(x.detach()), d_ref)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activations_stay_finite_for_huge_inputs(name):
    x = torch.tensor([-1e4, -800.0, 800.0, 1e4], dtype=torch.float32)
    act = ACTIVATIONS[name]
    assert torch.isfinite(act.fn(x)).all() and torch.isfinite(act.grad(x)).all()
    torch.testing.assert_close(act.fn(x), REFERENCE[name](x))


def test_relu_derivative_at_zero_follows_pytorch():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for name in ("relu", "leaky_relu"):
        (d_ref,) = torch.autograd.grad(REFERENCE[name](x).sum(), x)
        torch.testing.assert_close(ACTIVATIONS[name].grad(x.detach()), d_ref)


def test_tanh_keeps_precision_for_tiny_inputs():
    x = torch.tensor([1e-12, -3e-10, 1e-30], dtype=torch.float64)
    torch.testing.assert_close(ACTIVATIONS["tanh"].fn(x), torch.tanh(x), rtol=1e-15, atol=0)


def test_gelu_tanh_approximation_equals_torch():
    x = _x(2001, -8, 8).requires_grad_(True)
    (d_ref,) = torch.autograd.grad(F.gelu(x, approximate="tanh").sum(), x)
    torch.testing.assert_close(gelu(x.detach(), "tanh"), F.gelu(x.detach(), approximate="tanh"))
    torch.testing.assert_close(gelu_grad(x.detach(), "tanh"), d_ref)
    with pytest.raises(ValueError, match="approximate"):
        gelu(x, "erf")


def test_softmax_and_its_jacobian_equal_torch():
    z = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5
    torch.testing.assert_close(softmax(z), F.softmax(z, dim=-1))
    torch.testing.assert_close(softmax(z, dim=0), F.softmax(z, dim=0))
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: F.softmax(v, 0), zi) for zi in z])
    torch.testing.assert_close(softmax_jacobian(z), jac)
    big = torch.tensor([[1000.0, 999.0, -1000.0]])
    torch.testing.assert_close(softmax(big), F.softmax(big, dim=-1))  # no overflow


def test_softplus_equals_torch():
    x = _x(1001, -100, 100)
    torch.testing.assert_close(softplus(x), F.softplus(x))


def test_unknown_activation_is_an_error():
    with pytest.raises(ValueError, match="'swish' is not known"):
        activation("swish")
    with pytest.raises(ValueError, match="not known"):
        MLP(MLPConfig(activation="swish"))


# --- logistic and softmax regression -------------------------------------------------------


def _data(n=60, d=5, k=2, seed=0):
    """Features and labels drawn from a softmax-regression model, so the labels carry signal."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    logits = X @ torch.randn(d, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=g)[:, 0]
    return X, y


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_logistic_nll_and_gradient_equal_autograd(weight_decay):
    X, y = _data()
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    loss, gw, gb = logistic_nll(w.detach(), b.detach(), X, y, weight_decay)
    ref = F.binary_cross_entropy_with_logits(X @ w + b, y.double()) + 0.5 * weight_decay * (w @ w)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(gw, w.grad)
    torch.testing.assert_close(gb, b.grad)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_softmax_nll_and_gradient_equal_autograd(weight_decay):
    X, y = _data(k=4)
    W = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    loss, gW, gb = softmax_nll(W.detach(), b.detach(), X, y, weight_decay)
    ref = F.cross_entropy(X @ W + b, y) + 0.5 * weight_decay * (W * W).sum()
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(gW, W.grad)
    torch.testing.assert_close(gb, b.grad)


def test_softmax_nll_in_float32_on_mnist_sized_data_equals_autograd():
    """The transposed products keep float32 precision on many examples and features."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(3000, 784, generator=g), torch.randint(0, 10, (3000,), generator=g)
    W = (0.01 * torch.randn(784, 10, generator=g)).requires_grad_()
    b = torch.zeros(10, requires_grad=True)
    loss, gW, gb = softmax_nll(W.detach(), b.detach(), X, y, 0.01)
    ref = F.cross_entropy(X @ W + b, y) + 0.005 * (W * W).sum()
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(gW, W.grad)
    torch.testing.assert_close(gb, b.grad)


def test_logistic_regression_reaches_the_sklearn_solution():
    X, y = _data(n=200, d=4)
    lam = 0.1
    clf = fit_logistic_regression(X, y, GDConfig(lr=1 / smoothness(X, weight_decay=lam), steps=3000, weight_decay=lam))
    sk = LogisticRegression(C=1 / (lam * len(X)), tol=1e-12, max_iter=10_000).fit(X.numpy(), y.numpy())
    torch.testing.assert_close(clf.weight, torch.from_numpy(sk.coef_[0]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(clf.predict_proba(X), torch.from_numpy(sk.predict_proba(X.numpy())[:, 1]), atol=1e-7, rtol=1e-6)
    assert torch.equal(clf.predict(X), torch.from_numpy(sk.predict(X.numpy())))


def test_softmax_regression_reaches_the_sklearn_solution():
    X, y = _data(n=300, d=4, k=3)
    lam = 0.1
    clf = fit_softmax_regression(X, y, GDConfig(lr=1 / smoothness(X, multiclass=True, weight_decay=lam), steps=3000, weight_decay=lam))
    sk = LogisticRegression(C=1 / (lam * len(X)), tol=1e-12, max_iter=10_000).fit(X.numpy(), y.numpy())
    torch.testing.assert_close(clf.predict_proba(X), torch.from_numpy(sk.predict_proba(X.numpy())), atol=1e-7, rtol=1e-6)


def test_gradient_descent_with_step_one_over_L_never_increases_the_loss():
    X, y = _data(n=100, d=6, k=3)
    L = smoothness(X, multiclass=True)
    clf = fit_softmax_regression(X, y, GDConfig(lr=1 / L, steps=200))
    assert len(clf.losses) == 201 and clf.losses[0] == pytest.approx(math.log(3))
    assert np.all(np.diff(clf.losses) <= 1e-12)
    assert clf.losses[-1] < 0.8 * clf.losses[0]


def test_gradient_descent_minimises_a_quadratic():
    target = torch.tensor([3.0, -2.0], dtype=torch.float64)
    x = torch.zeros(2, dtype=torch.float64)
    losses = gradient_descent(lambda v: (((v - target) ** 2).sum(), 2 * (v - target)), [x], GDConfig(lr=0.25, steps=60))
    torch.testing.assert_close(x, target)
    assert losses[-1] < 1e-20


def test_regressions_reject_bad_labels_and_shapes():
    X, y = _data()
    with pytest.raises(ValueError, match="labels 0 and 1"):
        fit_logistic_regression(X, y + 1)
    with pytest.raises(ValueError, match="int64 classes"):
        fit_softmax_regression(X, y.float())
    with pytest.raises(ValueError, match="one per row"):
        logistic_nll(torch.zeros(5, dtype=torch.float64), torch.zeros((), dtype=torch.float64), X, y[:-1])
    with pytest.raises(ValueError, match=r"lr (must be a finite number )?> 0"):
        gradient_descent(lambda v: (v.sum(), torch.ones_like(v)), [torch.zeros(2)], GDConfig(lr=-1.0))


# --- the MLP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [(), (7,), (5, 6, 4)])
def test_mlp_shapes_and_parameter_count(hidden):
    model = MLP(MLPConfig(d_in=12, hidden=hidden, d_out=3))
    assert model(torch.randn(8, 3, 2, 2)).shape == (8, 3)
    assert count_params(12, hidden, 3) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="d_in=12"):
        model(torch.randn(8, 13))


def test_mlp_without_hidden_layers_is_softmax_regression():
    model = MLP(MLPConfig(d_in=5, hidden=(), d_out=3)).double()
    X, _ = _data(d=5)
    lin = model.layers[0]
    torch.testing.assert_close(model(X), X @ lin.weight.T + lin.bias)


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
@pytest.mark.parametrize("budget", [20_000, 100_000, 1_000_000])
def test_width_for_budget_is_the_closest_width(depth, budget):
    h = width_for_budget(budget, depth)
    count = lambda w: abs(count_params(784, [w] * depth, 10) - budget)
    assert count(h) <= count(h - 1) and count(h) <= count(h + 1)
    step = count_params(784, [h + 1] * depth, 10) - count_params(784, [h] * depth, 10)
    assert count(h) <= step / 2 + 1  # within half a unit of width of the budget


def test_width_for_budget_rejects_impossible_budgets():
    with pytest.raises(ValueError, match="too small"):
        width_for_budget(100, 2)
    with pytest.raises(ValueError, match="depth"):
        width_for_budget(10_000, 0)


def test_mlp_learns_two_moons():
    from sklearn.datasets import make_moons

    X, y = (torch.tensor(a) for a in make_moons(n_samples=300, noise=0.1, random_state=0))
    torch.manual_seed(0)
    model = MLP(MLPConfig(d_in=2, hidden=(16,), d_out=2, activation="tanh"))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(200):
        loss = F.cross_entropy(model(X.float()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
    assert (model(X.float()).argmax(1) == y).float().mean() > 0.97


def _digits(n_train=1000, n_test=300):
    from dlbook.data import load_mnist

    m = load_mnist("quick", n_train=n_train, n_test=n_test)
    return m.x_train, m.y_train, m.x_test, m.y_test


def test_deep_vs_wide_trains_at_an_equal_budget_and_repeats_exactly():
    data = _digits()
    cfg = BudgetStudyConfig(budget=20_000, depths=(1, 3), seeds=(0,), epochs=4, batch_size=64)
    a, b = deep_vs_wide(*data, cfg), deep_vs_wide(*data, cfg)
    assert a == b  # seeded CPU runs give the same numbers twice
    assert [r["depth"] for r in a] == [1, 3]
    assert all(r["params"] == count_params(784, [r["width"]] * r["depth"], 10) for r in a)
    assert all(abs(r["params"] - 20_000) < 500 for r in a)  # within half a unit of width
    assert a[0]["width"] > a[1]["width"]
    assert all(r["test_acc"] > 0.6 for r in a), a  # ten classes: chance is 0.1
    assert all(r["steps"] == 4 * math.ceil(1000 / 64) for r in a)


def test_deep_vs_wide_in_one_loop_equals_one_loop_per_depth():
    """All depths side by side (SideBySide) make the runs of one training per depth."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    from dlbook.config import seed_everything
    from dlbook.train import evaluate, fit

    x, y, xt, yt = _digits(n_train=600, n_test=200)
    cfg = BudgetStudyConfig(budget=15_000, depths=(1, 3), seeds=(0, 1), epochs=3, batch_size=64)
    together = deep_vs_wide(x, y, xt, yt, cfg)
    separate = []
    for depth in cfg.depths:  # the loop of deep_vs_wide before SideBySide
        width = width_for_budget(cfg.budget, depth)
        nets = []
        for seed in cfg.seeds:
            seed_everything(seed)
            nets.append(MLP(MLPConfig(784, (width,) * depth, 10, cfg.activation)))
        model = ParallelMLP(nets)
        data = TensorDataset(x, y)
        order = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.batch_seed))
        loader = DataLoader(data, sampler=BatchSampler(order, cfg.batch_size, False), batch_size=None)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
        fit(model, loader, opt, epochs=cfg.epochs, loss_fn=summed_cross_entropy, metrics={}, progress=False)
        separate += [evaluate(net, [(xt, yt)])["loss"] for net in model.split()]
    assert [r["test_loss"] for r in together] == pytest.approx(separate, rel=1e-5)
    assert [(r["depth"], r["seed"]) for r in together] == [(1, 0), (1, 1), (3, 0), (3, 1)]


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD])
def test_parallel_mlp_equals_separate_runs(optimizer):
    """S networks trained side by side make the same runs as S separate trainings."""
    cfg = MLPConfig(d_in=12, hidden=(9, 7), d_out=4, activation="tanh")
    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(MLP(cfg).double())  # float64: Adam's division amplifies rounding
    parallel = ParallelMLP(nets)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (16,), generator=g))
               for _ in range(20)]
    x0 = batches[0][0]
    torch.testing.assert_close(parallel(x0), torch.stack([n(x0) for n in nets], dim=1))
    opt = optimizer(parallel.parameters(), lr=0.05)
    for x, y in batches:
        opt.zero_grad()
        summed_cross_entropy(parallel(x), y).backward()
        opt.step()
    for net, trained in zip(nets, parallel.split()):
        opt = optimizer(net.parameters(), lr=0.05)
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        for p, q in zip(net.parameters(), trained.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="one shape"):
        ParallelMLP([nets[0], MLP(MLPConfig(d_in=12, hidden=(9,), d_out=4))])


def test_side_by_side_concatenates_its_parts_and_needs_one():
    nets = [MLP(MLPConfig(d_in=6, hidden=(5,), d_out=3)) for _ in range(2)]
    deep = [MLP(MLPConfig(d_in=6, hidden=(4, 4), d_out=3))]
    grid = SideBySide([ParallelMLP(nets), ParallelMLP(deep)])
    x = torch.randn(7, 6)
    torch.testing.assert_close(grid(x), torch.stack([n(x) for n in nets + deep], dim=1))
    with pytest.raises(ValueError, match="at least one network"):
        SideBySide([])

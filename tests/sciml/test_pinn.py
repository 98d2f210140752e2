"""PINN for Burgers: autograd derivatives against torch.func and finite differences, exact
residuals, the data, short training runs (forward and inverse), and bad inputs."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.sciml.burgers import NU_RAISSI
from dlbook.sciml.pinn import (
    MLP, BurgersPINN, PINNConfig, burgers_forward_data, burgers_inverse_data, burgers_residual, derivatives,
    latin_hypercube, pinn_loss, predict, relative_l2, train_pinn,
)

F64 = torch.float64



def _points(n=64, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g, dtype=dtype), 2 * torch.rand(n, 1, generator=g, dtype=dtype) - 1


def _small_model(seed=0, dtype=F64, **kw):
    torch.manual_seed(seed)
    cfg = PINNConfig(depth=3, width=16, dtype=dtype, **kw)
    return BurgersPINN(cfg, lb=[0.0, -1.0], ub=[1.0, 1.0])


def test_shapes_and_input_scaling():
    model = _small_model()
    t, x = _points(10)
    assert model(t, x).shape == (10, 1)
    assert model.residual(t, x).shape == (10, 1)
    # the corners of the domain map to -1 and +1 before the first layer
    net = MLP([0.0, -1.0], [1.0, 1.0], depth=2, width=4, dtype=F64)
    net.layers[0] = nn.Identity()
    h = 2 * (torch.tensor([[0.0, -1.0], [1.0, 1.0]], dtype=F64) - net.lb) / (net.ub - net.lb) - 1
    torch.testing.assert_close(h, torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=F64))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # torch.func's internals
def test_derivatives_equal_torch_func():
    model = _small_model()
    t, x = _points(32)
    u, u_t, u_x, u_xx = derivatives(model, t, x)
    f = lambda tx: model(tx[:1][None], tx[1:][None]).squeeze()  # noqa: E731  one point (2,) -> scalar
    tx = torch.cat([t, x], 1)
    jac = torch.func.vmap(torch.func.jacrev(f))(tx)  # (N, 2)
    hess = torch.func.vmap(torch.func.hessian(f))(tx)  # (N, 2, 2)
    torch.testing.assert_close(u_t[:, 0], jac[:, 0])
    torch.testing.assert_close(u_x[:, 0], jac[:, 1])
    torch.testing.assert_close(u_xx[:, 0], hess[:, 1, 1])


def test_derivatives_equal_finite_differences():
    model = _small_model(seed=1)
    t, x = _points(32, seed=1)
    _, u_t, u_x, u_xx = derivatives(model, t, x)
    h = 1e-4
    with torch.no_grad():
        fd_t = (model(t + h, x) - model(t - h, x)) / (2 * h)
        fd_x = (model(t, x + h) - model(t, x - h)) / (2 * h)
        fd_xx = (model(t, x + h) - 2 * model(t, x) + model(t, x - h)) / h**2
    torch.testing.assert_close(u_t, fd_t, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(u_x, fd_x, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(u_xx, fd_xx, atol=1e-5, rtol=1e-4)


def _traveling_wave(nu, c=0.3, a=0.8):
    return lambda t, x: c - a * torch.tanh(a * (x - c * t) / (2 * nu))


def _heat_mode(nu, k=2, a=2.0, b=1.0):
    def u(t, x):
        e = torch.exp(-nu * k**2 * t)
        return 2 * nu * k * b * e * torch.sin(k * x) / (a + b * e * torch.cos(k * x))
    return u


@pytest.mark.parametrize("exact", [_traveling_wave, _heat_mode])
@pytest.mark.parametrize("nu", [NU_RAISSI, 0.1])
def test_residual_of_exact_solutions_is_zero(exact, nu):
    t, x = _points(200, seed=2)
    x = 0.2 * x if exact is _traveling_wave else x  # the shock's neighbourhood, where u_xx is large
    r = burgers_residual(exact(nu), t, x, 1.0, nu)
    _, u_t, *_ = derivatives(exact(nu), t, x)
    scale = u_t.abs().max().item()
    assert r.abs().max() < 1e-12 * max(1.0, scale)
    # the residual is not zero by construction: wrong coefficients leave a large one
    assert burgers_residual(exact(nu), t, x, 1.0, 1.5 * nu).abs().max() > 1e-2 * scale
    assert burgers_residual(exact(nu), t, x, 0.5, nu).abs().max() > 1e-2 * scale


def test_latin_hypercube_fills_every_stratum_once():
    n, lb, ub = 50, np.array([0.0, -1.0]), np.array([1.0, 1.0])
    pts = latin_hypercube(n, lb, ub, seed=3)
    assert pts.shape == (n, 2) and np.all(pts >= lb) and np.all(pts <= ub)
    for d in range(2):
        strata = np.floor((pts[:, d] - lb[d]) / (ub[d] - lb[d]) * n).astype(int)
        assert sorted(strata) == list(range(n))
    np.testing.assert_array_equal(pts, latin_hypercube(n, lb, ub, seed=3))


def test_forward_data_lies_on_the_initial_and_boundary_lines():
    cfg = PINNConfig(n_u=100, n_f=500)
    data = burgers_forward_data(cfg)
    assert data.tx_u.shape == (100, 2) and data.u.shape == (100, 1) and data.tx_f.shape == (600, 2)
    assert data.tx_grid.shape == (100 * 256, 2) and data.u_grid.shape == (100, 256)
    t, x, u = data.tx_u[:, 0].double(), data.tx_u[:, 1].double(), data.u[:, 0].double()
    on_ic, on_bc = t == 0, x.abs() == 1
    assert torch.all(on_ic | on_bc) and on_ic.any() and on_bc.any()
    torch.testing.assert_close(u[on_ic], -torch.sin(math.pi * x[on_ic]), atol=1e-6, rtol=0)
    torch.testing.assert_close(u[on_bc & ~on_ic], torch.zeros_like(u[on_bc & ~on_ic]), atol=1e-6, rtol=0)


def test_inverse_data_noise_level():
    tx, u = burgers_inverse_data(2000, noise=0.0, seed=0, dtype=F64)
    tx_n, u_n = burgers_inverse_data(2000, noise=0.1, seed=0, dtype=F64)
    torch.testing.assert_close(tx, tx_n)
    ratio = (u_n - u).std() / u.std()
    assert 0.09 < ratio < 0.11, ratio


def _short_forward_run(seed):
    cfg = PINNConfig(depth=4, width=20, n_u=60, n_f=400, adam_steps=20, adam_lr=3e-3, lbfgs_steps=150, seed=seed)
    torch.manual_seed(seed)
    data = burgers_forward_data(cfg, nx=64, nt=20)
    model = BurgersPINN(cfg, data.lb, data.ub)
    history = train_pinn(model, data.tx_u, data.u, data.tx_f, cfg, every=10)
    return model, data, history


def test_short_forward_training_learns():
    model, data, history = _short_forward_run(seed=0)
    # 170 steps on a small network: the loss falls by at least 10x and the solution is no longer flat
    assert history["loss"][-1] < history["loss"][0] / 10, (history["loss"][0], history["loss"][-1])
    err = relative_l2(predict(model, data.tx_grid), data.u_grid)
    assert err < 0.6, err  # an untrained network is at about 1.0


def test_history_ends_with_the_trained_model():
    model, data, history = _short_forward_run(seed=0)
    final = pinn_loss(model, data.tx_u, data.u, data.tx_f)
    assert history["loss"][-1] == final["loss"].item()  # the returned model
    steps, iterations = history["step"], history["iteration"]
    assert steps == sorted(steps), steps
    assert iterations == sorted(iterations) and iterations[-1] <= 20 + 150
    assert iterations[-1] > 20  # L-BFGS iterations follow the 20 Adam steps
    assert steps[-1] >= iterations[-1]  # at least one evaluation per iteration


def test_seeded_training_repeats_exactly():
    _, _, h1 = _short_forward_run(seed=5)
    _, _, h2 = _short_forward_run(seed=5)
    assert h1["loss"] == h2["loss"]


def test_inverse_problem_moves_the_coefficients():
    cfg = PINNConfig(depth=4, width=20, adam_steps=0, lbfgs_steps=300, seed=0)
    torch.manual_seed(0)
    tx, u = burgers_inverse_data(600, noise=0.0, seed=0)
    model = BurgersPINN(cfg, [0.0, -1.0], [0.99, 1.0], learn_coefficients=True)
    assert {n for n, p in model.named_parameters() if "lambda" in n} == {"lambda_1_raw", "log_lambda_2"}
    assert model.lambda_1.item() == 0.0
    train_pinn(model, tx, u, tx, cfg)
    assert abs(model.lambda_1.item() - 1.0) < 0.5, model.lambda_1.item()  # from 0 towards the true 1


def test_known_coefficients_are_not_trained():
    model = _small_model()
    names = {n for n, _ in model.named_parameters()}
    assert not any("lambda" in n for n in names)
    assert model.lambda_2.item() == pytest.approx(NU_RAISSI)


@pytest.mark.parametrize("call, match", [
    (lambda m, tx, u: pinn_loss(m, tx, torch.full_like(u, float("nan")), tx), "u must be finite"),
    (lambda m, tx, u: pinn_loss(m, tx, u[:-1], tx), r"u must have shape \(8, 1\)"),
    (lambda m, tx, u: pinn_loss(m, tx[:, :1], u, tx), r"shape \(N, 2\)"),
    (lambda m, tx, u: pinn_loss(m, tx, u, tx.clone().fill_(float("inf"))), "tx_f must be finite"),
    (lambda m, tx, u: relative_l2(torch.zeros(3), torch.ones(4)), "same number of entries"),
    (lambda m, tx, u: MLP([0.0, 1.0], [1.0, 1.0]), "ub > lb"),
    (lambda m, tx, u: burgers_forward_data(PINNConfig(n_u=10_000, n_f=10)), "n_u must be between 1 and"),
    (lambda m, tx, u: burgers_inverse_data(10, noise=-0.1), "noise must be a finite number >= 0"),
    (lambda m, tx, u: latin_hypercube(0, [0.0], [1.0]), "n must be a positive integer"),
])
def test_bad_inputs_are_named(call, match):
    model = _small_model(dtype=torch.float32)
    tx, u = torch.rand(8, 2), torch.rand(8, 1)
    with pytest.raises(ValueError, match=match):
        call(model, tx, u)

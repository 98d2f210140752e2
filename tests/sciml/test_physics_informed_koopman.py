"""Physics-informed Koopman autoencoder: spectral derivatives, the JVP time derivative and its
gradients, the residual of exact solutions, short training runs, and bad inputs."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from dlbook.sciml.burgers import heat_mode_solution, periodic_grid
from dlbook.sciml.physics_informed_koopman import (
    KoopmanAutoencoder, KoopmanConfig, burgers_residual, burgers_trajectories, data_size_sweep, flow_matrices,
    koopman_losses, latent_residual, precondition, prediction_error, spectral_derivatives, train_koopman,
)

F64 = torch.float64



def _model(dtype=F64, **kw):
    cfg = KoopmanConfig(n=32, latent=4, width=16, modes=8, **kw)
    torch.manual_seed(cfg.seed)
    return KoopmanAutoencoder(cfg, dtype=dtype), cfg


def test_spectral_derivatives_are_exact_for_trigonometric_polynomials():
    length = 3.0
    x = torch.tensor(periodic_grid(48, length), dtype=F64)
    w = 2 * math.pi / length
    u = torch.sin(3 * w * x) + 0.5 * torch.cos(7 * w * x)
    u_x, u_xx = spectral_derivatives(u[None], length)
    torch.testing.assert_close(u_x[0], 3 * w * torch.cos(3 * w * x) - 3.5 * w * torch.sin(7 * w * x))
    torch.testing.assert_close(u_xx[0], -9 * w**2 * torch.sin(3 * w * x) - 24.5 * w**2 * torch.cos(7 * w * x))


def test_decoder_output_is_a_trigonometric_polynomial():
    model, cfg = _model()
    z = torch.randn(5, cfg.latent, dtype=F64)
    c = model.decoder(z)
    x = torch.tensor(periodic_grid(cfg.n), dtype=F64)
    k = torch.arange(1, cfg.modes + 1, dtype=F64)
    ref = c[:, : cfg.modes] @ torch.cos(k[:, None] * x) + c[:, cfg.modes:] @ torch.sin(k[:, None] * x)
    torch.testing.assert_close(model.decode(z), ref)
    torch.testing.assert_close(model.decode(z).mean(-1), torch.zeros(5, dtype=F64), atol=1e-12, rtol=0)


def test_residual_of_an_exact_solution_is_zero():
    nu, n, t = 0.1, 128, 0.7
    x = periodic_grid(n)
    u = torch.tensor(heat_mode_solution(x, t, nu, k=2), dtype=F64)
    h = 1e-5
    u_t = torch.tensor((heat_mode_solution(x, t + h, nu, k=2) - heat_mode_solution(x, t - h, nu, k=2)) / (2 * h), dtype=F64)
    r = burgers_residual(u, u_t, nu, 2 * math.pi)
    assert r.abs().max() < 1e-8 * u_t.abs().max()
    assert burgers_residual(u, u_t, 2 * nu, 2 * math.pi).abs().max() > 0.1 * u_t.abs().max()


def test_residual_of_the_training_trajectories_is_small():
    """Residual with u_t by central differences in time, on data made as the chapter makes it."""
    cfg, dt = KoopmanConfig(), 1e-3
    u = burgers_trajectories(4, [0.0, 1.0 - dt, 1.0, 1.0 + dt], cfg, seed=0, dtype=F64)
    assert u.shape == (4, 4, cfg.n)
    u_t = (u[:, 3] - u[:, 1]) / (2 * dt)
    r = burgers_residual(u[:, 2], u_t, cfg.nu, cfg.length)
    assert r.pow(2).mean() < 1e-6 * u_t.pow(2).mean()
    assert burgers_residual(u[:, 2], u_t, 1.5 * cfg.nu, cfg.length).pow(2).mean() > 1e-3 * u_t.pow(2).mean()


def test_advance_is_a_semigroup():
    model, cfg = _model()
    z0 = torch.randn(3, cfg.latent, dtype=F64)
    t = torch.tensor([0.0, 0.3, 0.8], dtype=F64)
    z = model.advance(z0, t)
    torch.testing.assert_close(z[:, 0], z0)
    torch.testing.assert_close(model.advance(z[:, 1], torch.tensor([0.5], dtype=F64))[:, 0], z[:, 2])


@pytest.mark.parametrize("dtype, rtol", [(F64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("T", [3, 5, 11, 17])
def test_flows_on_a_uniform_grid_equal_the_matrix_exponential(dtype, rtol, T):
    """Powers of exp(h L) = exp(t_k L) for t = 0, h, 2h, ..., values and gradients."""
    torch.manual_seed(0)
    generator = (0.5 * torch.randn(6, 6, dtype=dtype)).requires_grad_()
    t = torch.linspace(0, 2, T, dtype=dtype)
    weight = torch.randn(T, 6, 6, dtype=dtype)  # a gradient that differs per time
    results = []
    for flows in (flow_matrices, lambda L, t: torch.linalg.matrix_exp(t[:, None, None] * L)):
        value = flows(generator, t)
        (grad,) = torch.autograd.grad((value * weight).sum(), generator)
        results.append((value.detach(), grad))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item())
    torch.testing.assert_close(ga, gb, rtol=10 * rtol, atol=10 * rtol * gb.abs().max().item())
    # any other grid: one exponential per time, exactly
    for other in (torch.tensor([0.0, 0.3, 0.5], dtype=dtype), t + 0.1, t[:2]):
        torch.testing.assert_close(flow_matrices(generator, other),
                                   torch.linalg.matrix_exp(other[:, None, None] * generator), rtol=0, atol=0)


def test_jvp_time_derivative_equals_finite_differences():
    model, cfg = _model()
    with torch.no_grad():
        model.generator.copy_(0.5 * torch.randn(cfg.latent, cfg.latent, dtype=F64))
    z0 = torch.randn(3, cfg.latent, dtype=F64)
    t, h = 0.4, 1e-5
    z = model.advance(z0, torch.tensor([t], dtype=F64))[:, 0]
    u, u_t = torch.func.jvp(model.decode, (z,), (z @ model.generator.T,))
    around = model.decode(model.advance(z0, torch.tensor([t - h, t + h], dtype=F64)))
    torch.testing.assert_close(u_t, (around[:, 1] - around[:, 0]) / (2 * h), atol=1e-7, rtol=1e-6)
    r = latent_residual(model, z, cfg.nu, cfg.length)
    torch.testing.assert_close(r, burgers_residual(u, u_t, cfg.nu, cfg.length))


def test_decode_jvp_equals_torch_func_jvp_with_its_gradients():
    model, cfg = _model()
    z = torch.randn(5, cfg.latent, dtype=F64)
    v = torch.randn(5, cfg.latent, dtype=F64)
    u, u_t = model.decode_jvp(z, v)
    u_ref, u_t_ref = torch.func.jvp(model.decode, (z,), (v,))
    torch.testing.assert_close(u, u_ref, atol=1e-13, rtol=1e-12)
    torch.testing.assert_close(u_t, u_t_ref, atol=1e-13, rtol=1e-12)
    params = list(model.decoder.parameters())
    grads = torch.autograd.grad((u_t**2).sum() + u.sum(), params)
    refs = torch.autograd.grad((u_t_ref**2).sum() + u_ref.sum(), params)
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-10)


def test_batched_losses_equal_the_terms_computed_one_by_one():
    """koopman_losses batches its network calls; each term is the formula."""
    model, cfg = _model()
    with torch.no_grad():
        model.generator.copy_(0.3 * torch.randn(cfg.latent, cfg.latent, dtype=F64))
    u = torch.randn(3, 5, cfg.n, dtype=F64)
    t = torch.linspace(0, 1, 5, dtype=F64)
    col = torch.randn(4, cfg.n, dtype=F64)
    tau = torch.tensor([0.2, 0.9], dtype=F64)
    out = koopman_losses(model, u, t, col, tau, cfg)
    scale = col.pow(2).mean()
    z_obs = model.encode(u)
    z_lin = model.advance(z_obs[:, 0], t)
    rec = ((model.decode(model.encode(col)) - col).pow(2).mean()
           + (model.decode(z_obs) - u).pow(2).mean()) / 2 / scale
    z = model.advance(model.encode(col), tau).reshape(-1, cfg.latent)
    _, u_t = torch.func.jvp(model.decode, (z,), (z @ model.generator.T,))
    r = precondition(burgers_residual(model.decode(z), u_t, cfg.nu, cfg.length), cfg.nu, cfg.length)
    ref = {
        "pred": (model.decode(z_lin) - u).pow(2).mean() / scale,
        "lin": (z_obs - z_lin).pow(2).mean() / z_obs.pow(2).mean(),
        "rec": rec,
        "phys": r.pow(2).mean() / scale,
    }
    for name, value in ref.items():
        torch.testing.assert_close(out[name], value)
    total = ref["pred"] + ref["rec"] + cfg.w_lin * ref["lin"] + cfg.w_phys * ref["phys"]
    torch.testing.assert_close(out["loss"], total)
    physics_only = koopman_losses(model, None, t, col, tau, cfg)
    torch.testing.assert_close(physics_only["phys"], ref["phys"])
    assert set(physics_only) == {"rec", "phys", "loss"}


def test_residual_gradients_equal_finite_differences():
    """The physics loss is differentiated through the JVP: gradcheck compares with finite differences."""
    model, cfg = _model()
    z = torch.randn(2, cfg.latent, dtype=F64)

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, z_):
            return latent_residual(self.model, z_, cfg.nu, cfg.length)

    wrapper = Residual()

    def loss(generator, weight):
        params = {"model.generator": generator, "model.decoder.0.weight": weight}
        return torch.func.functional_call(wrapper, params, (z,)).pow(2).sum()

    g = (0.3 * torch.randn(cfg.latent, cfg.latent, dtype=F64)).requires_grad_()
    w = model.decoder[0].weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(loss, (g, w))
    # and the gradient is not trivially zero
    assert loss(g, w) > 0 and torch.autograd.grad(loss(g, w), g)[0].abs().max() > 1e-6


def test_precondition_divides_each_mode():
    length, nu = 2 * math.pi, 0.2
    x = torch.tensor(periodic_grid(32, length), dtype=F64)
    r = torch.sin(3 * x) + 2 * torch.cos(5 * x)
    torch.testing.assert_close(precondition(r, nu, length), torch.sin(3 * x) / (1 + 9 * nu) + 2 * torch.cos(5 * x) / (1 + 25 * nu))


def _small_problem():
    cfg = KoopmanConfig(n=32, latent=4, width=16, modes=8, iters=60)
    t = torch.linspace(0, 1, 6)
    u = burgers_trajectories(6, t.numpy(), cfg, seed=1)
    colloc = burgers_trajectories(16, [0.0], cfg, seed=2)[:, 0]
    return cfg, t, u, colloc


@pytest.mark.parametrize("with_data", [True, False])
def test_short_training_learns(with_data):
    cfg, t, u, colloc = _small_problem()
    cfg = dataclasses.replace(cfg, w_phys=0.0 if with_data else 1.0)
    model = KoopmanAutoencoder(cfg)
    before = prediction_error(model, u, t)
    h = train_koopman(model, u if with_data else None, t, colloc, cfg, every=5)
    # 60 L-BFGS iterations: the loss falls by at least 10x and the prediction error by half
    assert h["loss"][-1] < h["loss"][0] / 10, (h["loss"][0], h["loss"][-1])
    assert prediction_error(model, u, t) < before / 2
    assert ("pred" in h) == with_data and ("phys" in h) != with_data


def test_seeded_training_repeats_exactly():
    cfg, t, u, colloc = _small_problem()
    runs = [train_koopman(KoopmanAutoencoder(cfg), u, t, colloc, cfg)["loss"] for _ in range(2)]
    assert runs[0] == runs[1]


def test_data_size_sweep_rows():
    cfg, t, u, colloc = _small_problem()
    cfg = dataclasses.replace(cfg, iters=5)
    rows = data_size_sweep(u, u, t, colloc, sizes=[0, 2], seeds=[0], cfg=cfg)
    assert [(r["method"], r["trajectories"]) for r in rows] == [
        ("physics-informed", 0), ("data only", 2), ("physics-informed", 2)]
    assert all(np.isfinite(r["test_error"]) and isinstance(r["model"], KoopmanAutoencoder) for r in rows)
    with pytest.raises(ValueError, match="sizes must lie between 0 and len"):
        data_size_sweep(u, u, t, colloc, sizes=[7], seeds=[0], cfg=cfg)


@pytest.mark.parametrize("call, match", [
    (lambda m, c, u, t, col: koopman_losses(m, u.masked_fill(u > 0.5, float("nan")), t, col, t, c), "u must be finite"),
    (lambda m, c, u, t, col: koopman_losses(m, u[..., :-1], t, col, t, c), "u must have 3 dimensions with last size 32"),
    (lambda m, c, u, t, col: koopman_losses(m, u, t[:-1], col, t, c), "u has 4 time steps but t has 3"),
    (lambda m, c, u, t, col: koopman_losses(m, u, t, col[None], t, c), "u0_colloc must have 2 dimensions"),
    (lambda m, c, u, t, col: burgers_residual(u[0], u[0, :2], 0.1, 1.0), "same shape"),
    (lambda m, c, u, t, col: KoopmanAutoencoder(KoopmanConfig(n=32, modes=16)), "modes must be between 1 and n // 2 - 1 = 15"),
])
def test_bad_inputs_are_named(call, match):
    model, cfg = _model(dtype=torch.float32)
    u, t = torch.rand(2, 4, 32), torch.linspace(0, 1, 4)
    with pytest.raises(ValueError, match=match):
        call(model, cfg, u, t, torch.rand(3, 32))

"""The Koopman autoencoder of Lusch et al. (2018): blocks, losses against direct formulas, and a training run."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dlbook.sciml.deep_koopman import (
    DISCRETE_SPECTRUM, PENDULUM, AuxiliaryNetwork, BlockMLP, DeepKoopman, DeepKoopmanConfig, DeepKoopmanLoss,
    koopman_step, mlp, train, trajectory_data,
)
from dlbook.sciml import deep_koopman as dk
from dlbook.sciml.systems import Pendulum, SlowManifold

SMALL = dict(widths=(16,), aux_widths=(8, 8), num_shifts=5, num_shifts_middle=8)
CONFIGS = {
    "real": replace(DISCRETE_SPECTRUM, **SMALL),
    "complex": replace(PENDULUM, **SMALL),
    "mixed": replace(PENDULUM, num_real=1, num_complex_pairs=2, **SMALL),
    "constant": replace(PENDULUM, num_real=1, auxiliary=False, **SMALL),
    "log-radius": replace(PENDULUM, log_radius=True, **SMALL),
}


def _generator_blocks(mu, omega, P, R):
    """The continuous-time generator: [[mu, -omega], [omega, mu]] per pair, mu per real eigenvalue."""
    G = torch.zeros(2 * P + R, 2 * P + R, dtype=mu.dtype)
    for j in range(P):
        G[2 * j:2 * j + 2, 2 * j:2 * j + 2] = torch.stack([torch.stack([mu[j], -omega[j]]), torch.stack([omega[j], mu[j]])])
    for i in range(R):
        G[2 * P + i, 2 * P + i] = mu[P + i]
    return G


@pytest.mark.parametrize("P, R", [(1, 0), (0, 2), (2, 1)])
def test_koopman_step_is_the_exponential_of_the_block_generator(P, R):
    g = torch.Generator().manual_seed(0)
    B, dt = 4, 0.1
    y = torch.randn(B, 2 * P + R, generator=g, dtype=torch.float64)
    mu = torch.randn(B, P + R, generator=g, dtype=torch.float64)
    omega = torch.cat([torch.randn(B, P, generator=g, dtype=torch.float64) * 3, torch.zeros(B, R, dtype=torch.float64)], 1)
    out = koopman_step(y, mu, omega, dt, P)
    for b in range(B):
        K = torch.linalg.matrix_exp(dt * _generator_blocks(mu[b], omega[b], P, R))
        torch.testing.assert_close(out[b], K @ y[b])


def test_block_mlp_equals_independent_mlps_and_keeps_them_apart():
    torch.manual_seed(0)
    net = BlockMLP([1, 1, 1], (5, 4), [2, 1, 1])
    x = torch.randn(7, 3)
    out = net(x)
    # rebuild network g from its diagonal blocks and run it alone
    rows, cols = [[0, 1, 2], [0, 5, 10], [0, 4, 8]], [[0, 5, 10], [0, 4, 8], [0, 2, 3]]
    ins, outs = [[1, 1, 1], [5, 5, 5], [4, 4, 4]], [[5, 5, 5], [4, 4, 4], [2, 1, 1]]
    for g in range(3):
        h = x[:, g:g + 1]
        for layer, (W, b) in enumerate(zip(net.weights, net.biases)):
            r, c = rows[layer][g], cols[layer][g]
            h = h @ W[r:r + ins[layer][g], c:c + outs[layer][g]] + b[c:c + outs[layer][g]]
            h = torch.relu(h) if layer < 2 else h
        torch.testing.assert_close(out[:, [0, 2, 3][g]:[0, 2, 3][g] + outs[2][g]], h)
    out.sum().backward()
    for i, W in enumerate(net.weights):  # no gradient leaks across blocks
        assert (W.grad * (1 - getattr(net, f"mask{i}"))).abs().max() == 0


def test_complex_eigenvalues_depend_only_on_the_radius():
    torch.manual_seed(0)
    aux = AuxiliaryNetwork(CONFIGS["mixed"])
    y = torch.randn(6, 5)
    angle = torch.tensor(0.7)
    rot = torch.tensor([[torch.cos(angle), -torch.sin(angle)], [torch.sin(angle), torch.cos(angle)]])
    y_rot = y.clone()
    y_rot[:, 0:2], y_rot[:, 2:4] = y[:, 0:2] @ rot.T, y[:, 2:4] @ rot.T
    for a, b in zip(aux(y), aux(y_rot)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_shapes(name):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = DeepKoopman(cfg)
    x = torch.randn(3, 10, 2)
    out = model(x)
    k = cfg.latent_dim
    assert out.x_recon.shape == (3, 2) and out.x_pred.shape == (3, 5, 2)
    assert out.y.shape == (3, 10, k) and out.y_adv.shape == (3, 8, k) and out.weight_norm.ndim == 0
    assert model.predict(x[:, 0], 25).shape == (3, 25, 2)
    assert model.eigenvalues(x[:, 0]).shape == (3, cfg.num_eigenvalues)
    # the forward pass and predict advance the latent state the same way
    torch.testing.assert_close(model.predict(x[:, 0], 6)[:, 1:], out.x_pred)


def test_constant_eigenvalues_closed_form_equals_stepping():
    torch.manual_seed(0)
    model = DeepKoopman(CONFIGS["constant"])
    with torch.no_grad():
        model.aux.mu.copy_(torch.tensor([-0.3, -1.2]))
        model.aux.omega.copy_(torch.tensor([2.5]))
    y0 = torch.randn(4, 3)
    stepped, y = [], y0
    for _ in range(12):
        y = model.step(y)
        stepped.append(y)
    torch.testing.assert_close(model.advance(y0, 12), torch.stack(stepped, 1))


@pytest.mark.parametrize("relative", [False, True])
def test_loss_terms_equal_their_definitions(relative):
    cfg = replace(CONFIGS["mixed"], alpha1=0.3, alpha2=0.01, alpha3=1e-3, relative_loss=relative)
    torch.manual_seed(1)
    model, loss = DeepKoopman(cfg), DeepKoopmanLoss(cfg)
    x = torch.randn(4, 10, 2)
    out = model(x)
    y = model.encode(x)
    adv = [y[:, 0]]
    for _ in range(8):
        adv.append(model.step(adv[-1]))
    eps = 1e-5
    msq = (lambda t: (t**2).mean() + eps) if relative else (lambda t: 1.0)
    big = (lambda t: t.abs().max() + eps) if relative else (lambda t: 1.0)
    recon = ((model.decode(y[:, 0]) - x[:, 0]) ** 2).mean() / msq(x[:, 0])
    pred = sum(((model.decode(adv[m]) - x[:, m]) ** 2).mean() / msq(x[:, m]) for m in range(1, 6)) / 5
    lin = sum(((adv[m] - y[:, m]) ** 2).mean() / msq(y[:, m]) for m in range(1, 9)) / 8
    inf = ((model.decode(y[:, 0]) - x[:, 0]).abs().max() / big(x[:, 0])
           + (model.decode(adv[1]) - x[:, 1]).abs().max() / big(x[:, 1]))
    l2 = sum((p**2).sum() for n, p in model.named_parameters() if "bias" not in n) / 2
    c = loss.components(out, x)
    for name, value in dict(recon=recon, pred=pred, lin=lin, inf=inf, l2=l2).items():
        torch.testing.assert_close(c[name], value, msg=name)
    torch.testing.assert_close(loss(out, x), 0.3 * (recon + pred) + lin + 0.01 * inf + 1e-3 * l2)


def test_relative_loss_does_not_reward_shrinking_the_coordinates():
    cfg = replace(CONFIGS["constant"], relative_loss=True)  # constant eigenvalues: K does not depend on the scale
    torch.manual_seed(2)
    model, loss = DeepKoopman(cfg), DeepKoopmanLoss(cfg)
    x = torch.randn(4, 10, 2)
    before = loss.components(model(x), x)["lin"]
    absolute_before = DeepKoopmanLoss(replace(cfg, relative_loss=False)).components(model(x), x)["lin"]
    with torch.no_grad():  # halve the coordinates; the decoder undoes it
        model.encoder[-1].weight.mul_(0.5), model.encoder[-1].bias.mul_(0.5), model.decoder[0].weight.mul_(2)
    after = loss.components(model(x), x)["lin"]
    torch.testing.assert_close(after, before, rtol=1e-2, atol=0)  # up to the 1e-5 guard in the denominators
    absolute = DeepKoopmanLoss(replace(cfg, relative_loss=False)).components(model(x), x)["lin"]
    torch.testing.assert_close(absolute, absolute_before / 4)  # without it, linearity looks 4 times better


def _train(cfg, x, steps, seed=0):
    torch.manual_seed(seed)
    model, loss = DeepKoopman(cfg), DeepKoopmanLoss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        value = loss(model(x), x)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    return model, losses


def test_training_learns_the_slow_manifold():
    cfg = replace(DISCRETE_SPECTRUM, widths=(20,), aux_widths=(10,), num_shifts=5, num_shifts_middle=15)
    x = trajectory_data(SlowManifold(), 100, [-0.5, -0.5], [0.5, 0.5], len_time=16, seed=0)
    model, losses = _train(cfg, x, 100)
    assert losses[-1] < losses[0] / 20, (losses[0], losses[-1])  # the loss falls by more than 20x
    mu = model.eigenvalues(x[:, 0]).real.mean(0)
    assert (mu < 0).all()  # both learned eigenvalues decay, as the true ones (-0.05, -1) do
    # and seeded CPU training is reproducible
    assert _train(cfg, x, 5)[1] == _train(cfg, x, 5)[1]


def test_train_runs_fit_with_the_paper_loss():
    cfg = replace(DISCRETE_SPECTRUM, widths=(16,), aux_widths=(8,), num_shifts=5, num_shifts_middle=10)
    x = trajectory_data(SlowManifold(), 64, [-0.5, -0.5], [0.5, 0.5], len_time=11, seed=0)
    torch.manual_seed(0)
    history = train(DeepKoopman(cfg), x, steps=24, batch_size=16, lr=3e-3, x_val=x[:16])
    assert len(history) == 6  # 4 steps per epoch
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["lr"][-1] < 3e-3 / 10  # the cosine has decayed
    for key in ("train_recon", "train_pred", "train_lin", "val_lin"):
        assert key in history
    with pytest.raises(ValueError, match="larger than the 64 training trajectories"):
        train(DeepKoopman(cfg), x, steps=5, batch_size=100)


def test_trajectory_data_follows_the_paper_sampling():
    x = trajectory_data(Pendulum(), 40, [-3.1, -2.0], [3.1, 2.0], seed=0, max_energy=0.99)
    assert x.shape == (40, 51, 2) and x.dtype == torch.float32
    energy = Pendulum.energy(x.double().numpy())
    assert energy[:, 0].max() <= 0.99
    np.testing.assert_allclose(energy, energy[:, :1] * np.ones(51), atol=1e-5)  # float32 rounding


def test_bad_inputs_give_clear_errors():
    model = DeepKoopman(CONFIGS["real"])
    with pytest.raises(ValueError, match=r"shape \(B, T, 2\) with T > 8"):
        model(torch.randn(3, 8, 2))  # too short for 8 linearity steps
    with pytest.raises(ValueError, match=r"shape \(B, T, 2\)"):
        model(torch.randn(3, 20, 3))
    with pytest.raises(ValueError, match="at least one eigenvalue"):
        DeepKoopmanConfig(num_real=0, num_complex_pairs=0)
    with pytest.raises(ValueError, match="num_shifts must be a positive integer"):
        DeepKoopmanConfig(num_shifts=0)
    with pytest.raises(ValueError, match="dt must be positive"):
        DeepKoopmanConfig(dt=0.0)
    with pytest.raises(ValueError, match="len_time"):
        trajectory_data(SlowManifold(), 5, [0, 0], [1, 1], len_time=1)
    x = trajectory_data(SlowManifold(), 8, [0, 0], [1, 1], len_time=12)
    with pytest.raises(ValueError, match="x_train must be finite, but 1 of its"):
        train(model, torch.where(torch.arange(x.numel()).reshape(x.shape) == 5, torch.nan, x), steps=1, batch_size=4)
    with pytest.raises(ValueError, match=r"x_val must be trajectories of shape \(N, T, 2\), got \(8, 3\)"):
        train(model, x, steps=1, batch_size=4, x_val=x[:, :3, 0])


def test_mlp_initialisation():
    torch.manual_seed(0)
    net = mlp([4, 50, 3])
    assert isinstance(net[1], torch.nn.ReLU) and len(net) == 3
    assert net[0].weight.abs().max() <= 0.5 and net[0].bias.abs().max() == 0  # 1 / sqrt(4)


@pytest.mark.parametrize("name", ["real", "complex", "mixed", "log-radius"])
def test_rollout_equals_stepping_with_autograd(name):
    """advance (one hand-differentiated node) = step after step, values and gradients."""
    torch.manual_seed(0)
    model = DeepKoopman(CONFIGS[name]).double()
    y0 = torch.randn(5, CONFIGS[name].latent_dim, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, 7, CONFIGS[name].latent_dim, dtype=torch.float64)

    def stepped():
        ys, y = [], y0
        for _ in range(7):
            y = model.step(y)
            ys.append(y)
        return torch.stack(ys, 1)

    results = []
    for rollout in (lambda: model.advance(y0, 7), stepped):
        model.zero_grad()
        y0.grad = None
        ys = rollout()
        (ys * target).sum().backward()  # a gradient that differs per step
        results.append((ys.detach(), y0.grad, [p.grad.clone() for p in model.aux.parameters()]))
    (a, ga, pa), (b, gb, pb) = results
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same forward arithmetic
    torch.testing.assert_close(ga, gb)
    for p, q in zip(pa, pb):
        torch.testing.assert_close(p, q)
    assert all(p.abs().sum() > 0 for p in pa)  # every parameter gets a gradient


def test_rollout_passes_gradcheck():
    torch.manual_seed(0)
    cfg = replace(CONFIGS["mixed"], log_radius=True)
    model = DeepKoopman(cfg).double()
    net = model.aux.net
    y0 = torch.randn(3, cfg.latent_dim, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in (*net.masked_weights(), *net.biases)]

    def rollout(y0, *params):
        return dk._Rollout.apply(y0, 4, cfg.dt, cfg.num_complex_pairs, True, *params)

    assert torch.autograd.gradcheck(rollout, (y0, *params))

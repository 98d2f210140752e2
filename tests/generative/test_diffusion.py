"""DDPM and DDIM: schedules, posterior variances, single steps and whole
sampling loops against diffusers' DDPMScheduler and DDIMScheduler; the forward
process q(x_t | x_0) against its closed form; the timestep embedding against
diffusers'; a short run that must learn; bad input."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import get_timestep_embedding
from torch.utils.data import DataLoader, TensorDataset

from dlbook.config import seed_everything
from dlbook.generative.diffusion import (
    DenoisingObjective,
    NoiseSchedule,
    ScheduleConfig,
    UNet,
    UNetConfig,
    epsilon_loss,
    sample,
    spaced_timesteps,
    timestep_embedding,
)
from dlbook.train import fit

KINDS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
# diffusers keeps its schedule in float32, ours in float64: values of order 1
# agree to a few float32 roundings (differences seen: up to 3e-6)
F32 = dict(rtol=1e-5, atol=1e-5)


def schedulers(kind: str, T: int = 1000):
    ours = NoiseSchedule(ScheduleConfig(timesteps=T, kind=kind))
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=KINDS[kind])
    return ours, theirs


def in_float64(theirs):
    """diffusers' scheduler with its linear schedule recomputed in float64,
    so that a step compares formulas, not float32 roundings (1 − ᾱₜ ≈ 0 at
    small t alone differs by up to 5e-4 relative in float32)."""
    c = theirs.config  # its linear schedule, as diffusers builds it
    assert c.beta_schedule == "linear"
    theirs.betas = torch.linspace(
        c.beta_start, c.beta_end, c.num_train_timesteps, dtype=torch.float64
    )
    theirs.alphas = 1 - theirs.betas
    theirs.alphas_cumprod = torch.cumprod(theirs.alphas, 0)
    theirs.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(theirs, "final_alpha_cumprod"):
        theirs.final_alpha_cumprod = theirs.one
    return theirs


F64 = dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_equals_ddpm_scheduler(kind):
    ours, theirs = schedulers(kind)
    torch.testing.assert_close(ours.betas.float(), theirs.betas, **F32)
    torch.testing.assert_close(
        ours.alpha_bars.float(), theirs.alphas_cumprod, **F32
    )
    variance = torch.stack([theirs._get_variance(t) for t in range(1000)])
    # diffusers clamps the variance at 1e-20; ours is exactly 0 at t = 0
    torch.testing.assert_close(
        ours.posterior_variance.float().clamp(min=1e-20), variance, **F32
    )


def test_posterior_mean_coefficients_equal_ddpm_scheduler():
    """diffusers computes μ̃ = c₁ x̂₀ + c₂ xₜ inside step(); probe it with
    x̂₀ = 0, xₜ = 1 (gives c₂) and x̂₀ = 1, xₜ = 0 (gives c₁), its noise
    reproduced from the same seed and subtracted."""
    ours, theirs = schedulers("linear")
    theirs = in_float64(theirs)
    theirs.config.clip_sample = False

    def mean(eps, t, x):
        gen = torch.Generator().manual_seed(t)
        out = theirs.step(eps, t, x, generator=gen).prev_sample
        if t == 0:
            return out
        gen = torch.Generator().manual_seed(t)
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        return out - theirs._get_variance(t).sqrt() * z

    c1, c2 = [], []
    ts = [*range(0, 1000, 9), 999]
    for t in ts:
        a = ours.alpha_bar(t)
        one = torch.ones(1, 1, dtype=torch.float64)  # (N, C) for diffusers
        c2.append(mean(one / math.sqrt(1 - a), t, one))
        c1.append(mean(-one * math.sqrt(a / (1 - a)), t, 0 * one))
    torch.testing.assert_close(
        ours.posterior_mean_coef1[ts], torch.cat(c1).flatten(), **F64
    )
    torch.testing.assert_close(
        ours.posterior_mean_coef2[ts],
        torch.cat(c2).flatten(),
        rtol=1e-10,
        atol=1e-8,  # the probe x̂₀ = (1 − √(1 − ᾱ) ε̂) / √ᾱ = 0 rounds
    )


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("steps", [None, 50])
def test_ddpm_step_equals_ddpm_scheduler(clip, steps):
    ours, theirs = schedulers("linear")
    theirs = in_float64(theirs)
    theirs.config.clip_sample = clip
    if steps is None:  # every step is compared alone: a sample of them
        ts = [999, 998, *range(960, 10, -37), 3, 2, 1, 0]
    else:
        theirs.set_timesteps(steps)
        ts = spaced_timesteps(1000, steps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64) * 1.5
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        gen = torch.Generator().manual_seed(i)
        expected = theirs.step(eps, t, x, generator=gen).prev_sample
        gen = torch.Generator().manual_seed(i)
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        got = ours.ddpm_step(eps, t, x, z, t_prev if steps else None, clip)
        torch.testing.assert_close(got, expected, **F64)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_step_equals_ddim_scheduler(eta, clip):
    ours = NoiseSchedule()
    theirs = in_float64(
        DDIMScheduler(num_train_timesteps=1000, clip_sample=clip)
    )
    theirs.set_timesteps(10)
    ts = spaced_timesteps(1000, 10)
    assert ts == theirs.timesteps.tolist()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64) * 1.5
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        z = torch.randn(x.shape, generator=g, dtype=x.dtype)
        expected = theirs.step(
            eps,
            t,
            x,
            eta=eta,
            use_clipped_model_output=clip,
            variance_noise=z,
        ).prev_sample
        got = ours.ddim_step(eps, t, t_prev, x, eta, z, clip)
        torch.testing.assert_close(got, expected, **F64)


class Tiny(torch.nn.Module):
    """A fixed, cheap stand-in for ε_θ: depends on x and t."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x, t):
        return self.w * torch.tanh(x) + 1e-3 * t.float()[:, None, None, None]


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_sampling_loop_equals_diffusers_loop(method):
    ours, model = NoiseSchedule(), Tiny()
    steps = 20
    got = sample(
        model,
        ours,
        3,
        steps=steps,
        method=method,
        generator=torch.Generator().manual_seed(5),
    )
    if method == "ddpm":
        theirs = DDPMScheduler(num_train_timesteps=1000)
    else:
        theirs = DDIMScheduler(num_train_timesteps=1000)
    theirs.set_timesteps(steps)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 1, 28, 28, generator=g)
    for t in theirs.timesteps:
        eps = model(x, torch.full((3,), int(t)))
        if method == "ddpm":
            x = theirs.step(eps, t, x, generator=g).prev_sample
        else:
            torch.randn(x.shape, generator=g)  # ours draws z, unused at η = 0
            x = theirs.step(eps, t, x, use_clipped_model_output=True)
            x = x.prev_sample
    torch.testing.assert_close(got, ((x + 1) / 2).clamp(0, 1), **F32)


def test_forward_process_statistics():
    """xₜ = √ᾱₜ x₀ + √(1 − ᾱₜ) ε has mean √ᾱₜ x₀ and variance 1 − ᾱₜ, and
    equals diffusers' add_noise given the same ε."""
    ours, theirs = schedulers("linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4).expand(4000, 1, 4, 4)
    for t in [0, 100, 500, 999]:
        steps = torch.full((4000,), t)
        noise = torch.randn(x0.shape, generator=g)
        xt = ours.q_sample(x0, steps, noise)
        torch.testing.assert_close(
            xt, theirs.add_noise(x0, noise, steps), **F32
        )
        a = ours.alpha_bar(t)
        se = math.sqrt((1 - a) / 4000)  # standard error of the mean
        torch.testing.assert_close(
            xt.mean(0), math.sqrt(a) * x0[0], rtol=0, atol=5 * se + 1e-7
        )
        torch.testing.assert_close(
            xt.var(0),
            torch.full_like(x0[0], 1 - a),
            rtol=0.1,
            atol=1e-7,
        )
    assert ours.alpha_bar(999) < 1e-4  # nothing of x₀ is left at T


def test_timestep_embedding_equals_diffusers():
    t = torch.tensor([0, 1, 17, 500, 999])
    expected = get_timestep_embedding(
        t, 64, flip_sin_to_cos=False, downscale_freq_shift=0
    )
    torch.testing.assert_close(timestep_embedding(t, 64), expected)


def test_unet_shapes_and_time_dependence():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=8, t_dim=16))
    x = torch.randn(3, 1, 28, 28)
    out = model(x, torch.tensor([0, 10, 999]))
    assert out.shape == (3, 1, 28, 28)
    other = model(x, torch.tensor([999, 10, 0]))
    assert not torch.allclose(out[0], other[0])  # the step matters
    torch.testing.assert_close(out[1], other[1])


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert spaced_timesteps(1000, 4) == [750, 500, 250, 0]
    assert spaced_timesteps(10, 3) == [6, 3, 0]


def test_a_short_run_learns():
    """Noise prediction on a small set of bars must fall well below its
    start (≈ 1, the variance of ε)."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(192, 1, 28, 28)
    rows = torch.randint(4, 24, (192,), generator=g)
    for i, r in enumerate(rows):
        x[i, 0, r : r + 4, 4:24] = 1.0  # a horizontal bar
    schedule = NoiseSchedule()

    seed_everything(0)
    model = UNet(UNetConfig(channels=8, t_dim=16))
    objective = DenoisingObjective(model, schedule)
    losses = []

    def loss_fn(out, y):
        loss = epsilon_loss(out, y)
        losses.append(loss.item())
        return loss

    loader = DataLoader(
        TensorDataset(x, x),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    fit(objective, loader, opt, epochs=6, loss_fn=loss_fn, metrics={})
    assert losses[0] > 0.8
    assert sum(losses[-6:]) / 6 < 0.5 * losses[0]


def test_samples_are_deterministic_and_in_range():
    model = UNet(UNetConfig(channels=4, t_dim=8))
    a = sample(
        model,
        NoiseSchedule(),
        2,
        steps=3,
        generator=torch.Generator().manual_seed(0),
    )
    b = sample(
        model,
        NoiseSchedule(),
        2,
        steps=3,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (2, 1, 28, 28) and 0 <= a.min() and a.max() <= 1


def test_bad_input():
    with pytest.raises(ValueError, match="timesteps"):
        ScheduleConfig(timesteps=1)
    with pytest.raises(ValueError, match="beta_end"):
        ScheduleConfig(beta_start=0.02, beta_end=1e-4)
    with pytest.raises(ValueError, match="beta_start"):
        ScheduleConfig(beta_start=0.0)
    with pytest.raises(ValueError, match="kind"):
        ScheduleConfig(kind="quadratic")
    with pytest.raises(ValueError, match="channels"):
        UNetConfig(channels=10)
    with pytest.raises(ValueError, match="t_dim"):
        UNetConfig(t_dim=7)
    schedule = NoiseSchedule()
    with pytest.raises(ValueError, match="t must hold steps"):
        schedule.q_sample(
            torch.zeros(1, 1, 2, 2), torch.tensor([1000]), torch.zeros(1)
        )
    with pytest.raises(ValueError, match="steps"):
        spaced_timesteps(10, 11)
    model = UNet(UNetConfig(channels=4, t_dim=8))
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(1, 1, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match="x"):  # images must lie in [0, 1]
        DenoisingObjective(model, schedule)(torch.full((1, 1, 28, 28), 2.0))
    with pytest.raises(ValueError, match="method"):
        sample(model, schedule, 1, steps=2, method="euler")
    with pytest.raises(ValueError, match="n"):
        sample(model, schedule, 0)
    with pytest.raises(ValueError, match="noise"):
        schedule.ddpm_step(torch.zeros(1), 5, torch.zeros(1), None)
    with pytest.raises(ValueError, match="eta"):
        schedule.ddim_step(torch.zeros(1), 5, 4, torch.zeros(1), eta=-1.0)

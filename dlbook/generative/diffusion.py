"""Denoising diffusion: DDPM (Ho et al. 2020) and DDIM (Song et al. 2021).

The forward process adds Gaussian noise in T small steps until nothing of the
image is left; a network learns to predict the noise that was added, and
sampling runs the process backwards, from pure noise to an image. DDPM's
sampler is ancestral (a fresh noise draw at every step); DDIM's deterministic
sampler reuses the same trained network with far fewer steps.

The network is a small U-Net (Ronneberger et al. 2015, as adapted by Ho et
al.): residual blocks with group normalization and a sinusoidal time
embedding, one downsampling and one upsampling stage with a skip connection.
To fit a CPU budget it works at 14 x 14: an invertible pixel unshuffle folds
each 2 x 2 patch of the 28 x 28 image into 4 channels first, and a pixel
shuffle unfolds the output (the "patching" of Hoogeboom et al. 2023).

Checked in ``tests/generative/test_diffusion.py``: the noise schedules (linear
and cosine), the posterior variances and mean coefficients, the DDPM and DDIM
steps and whole sampling loops equal those of ``diffusers``' ``DDPMScheduler``
and ``DDIMScheduler``. Chapter: ``book/generative/diffusion.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_in_range,
    check_int,
    check_number,
    check_tensor,
)

# --- the noise schedule and the two samplers --------------------------------


@dataclass
class ScheduleConfig:
    """The forward process: T steps with variances β₁ ... β_T."""

    timesteps: int = 1000  # T
    beta_start: float = 1e-4  # β₁ of the linear schedule (Ho et al.)
    beta_end: float = 0.02  # β_T of the linear schedule
    kind: str = "linear"  # "linear" or "cosine" (Nichol & Dhariwal 2021)

    def __post_init__(self):
        check_int("timesteps", self.timesteps, low=2)
        check_number(
            "beta_start", self.beta_start, low=0, high=1, low_open=True
        )
        check_number("beta_end", self.beta_end, low=0, high=1, low_open=True)
        if self.beta_end < self.beta_start:
            raise ValueError(
                f"beta_end must be >= beta_start, got {self.beta_end} < "
                f"{self.beta_start}"
            )
        check_choice("kind", self.kind, ("linear", "cosine"))


class NoiseSchedule:
    """βₜ, αₜ = 1 − βₜ, ᾱₜ = Πₛ≤ₜ αₛ and the posterior q(xₜ₋₁ | xₜ, x₀).

    Time steps are 0-based, t = 0 ... T − 1, as in diffusers: step t turns
    x_t into x_{t+1} in the forward direction. Values are float64 tensors.

        q(xₜ | x₀) = N(√ᾱₜ x₀, (1 − ᾱₜ) I),
        q(xₜ₋₁ | xₜ, x₀) = N(c₁ₜ x₀ + c₂ₜ xₜ, β̃ₜ I),
        c₁ₜ = √ᾱₜ₋₁ βₜ / (1 − ᾱₜ),   c₂ₜ = √αₜ (1 − ᾱₜ₋₁) / (1 − ᾱₜ),
        β̃ₜ = (1 − ᾱₜ₋₁) / (1 − ᾱₜ) βₜ,   ᾱ₋₁ = 1.
    """

    def __init__(self, config: ScheduleConfig | None = None):
        self.config = config = config or ScheduleConfig()
        T = config.timesteps
        if config.kind == "linear":
            betas = torch.linspace(
                config.beta_start, config.beta_end, T, dtype=torch.float64
            )
        else:  # ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2), β capped at 0.999

            def f(s):
                return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

            betas = torch.tensor(
                [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)],
                dtype=torch.float64,
            )
        self.betas = betas
        self.alphas = 1 - betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars])
        self.alpha_bars_prev = prev[:-1]
        self.posterior_variance = (
            (1 - self.alpha_bars_prev) / (1 - self.alpha_bars) * betas
        )
        # μ̃ₜ(xₜ, x₀) = coef1 · x₀ + coef2 · xₜ, the mean of q(xₜ₋₁ | xₜ, x₀)
        self.posterior_mean_coef1 = (
            self.alpha_bars_prev.sqrt() * betas / (1 - self.alpha_bars)
        )
        self.posterior_mean_coef2 = (
            self.alphas.sqrt()
            * (1 - self.alpha_bars_prev)
            / (1 - self.alpha_bars)
        )

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def alpha_bar(self, t: int) -> float:
        """ᾱₜ, with ᾱ₋₁ = 1 (no noise before the first step)."""
        return 1.0 if t < 0 else float(self.alpha_bars[t])

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """xₜ = √ᾱₜ x₀ + √(1 − ᾱₜ) ε: a draw of q(xₜ | x₀) in one step.

        Shapes:
            x0, noise: (N, C, H, W); t: (N,) integer steps in [0, T).
        """
        check_tensor("t", t, ndim=1, floating=False)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.timesteps):
            raise ValueError(
                f"t must hold steps in [0, {self.timesteps}), got values from "
                f"{int(t.min())} to {int(t.max())}"
            )
        a = self.alpha_bars.to(x0.device)[t].to(x0.dtype)[:, None, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(
        self, eps: torch.Tensor, t: int, x_t: torch.Tensor, clip: bool = False
    ) -> torch.Tensor:
        """x̂₀ = (xₜ − √(1 − ᾱₜ) ε̂) / √ᾱₜ, optionally clipped to [−1, 1]."""
        a = self.alpha_bar(t)
        x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
        return x0.clamp(-1, 1) if clip else x0

    def ddpm_step(
        self,
        eps: torch.Tensor,
        t: int,
        x_t: torch.Tensor,
        noise: torch.Tensor | None,
        t_prev: int | None = None,
        clip: bool = False,
    ) -> torch.Tensor:
        """One ancestral step of DDPM from xₜ to x_{t_prev} (default t − 1).

        The mean is the posterior mean of q(x_{t−1} | xₜ, x₀) at x₀ = x̂₀,

            μ̃ = √ᾱₜ₋₁ βₜ / (1 − ᾱₜ) · x̂₀ + √αₜ (1 − ᾱₜ₋₁) / (1 − ᾱₜ) · xₜ,

        which equals Ho et al.'s (xₜ − βₜ / √(1 − ᾱₜ) ε̂) / √αₜ; the noise is
        scaled by √β̃ₜ. With t_prev < t − 1 the steps in between are skipped
        and βₜ is replaced by 1 − ᾱₜ / ᾱ_{t_prev}, as in diffusers. No noise
        is added at t = 0.
        """
        t_prev = t - 1 if t_prev is None else t_prev
        a, a_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        beta = 1 - a / a_prev
        x0 = self.predict_x0(eps, t, x_t, clip)
        mean = (math.sqrt(a_prev) * beta / (1 - a)) * x0 + (
            math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)
        ) * x_t
        if t == 0:
            return mean
        if noise is None:
            raise ValueError("noise must be given for t > 0, got None")
        variance = max((1 - a_prev) / (1 - a) * beta, 1e-20)
        return mean + math.sqrt(variance) * noise

    def ddim_step(
        self,
        eps: torch.Tensor,
        t: int,
        t_prev: int,
        x_t: torch.Tensor,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        clip: bool = False,
    ) -> torch.Tensor:
        """One DDIM step from xₜ to x_{t_prev} (Song et al. 2021, eq. 12).

            x_{t_prev} = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z,
            σ = η √((1 − ᾱ_prev) / (1 − ᾱₜ)) √(1 − ᾱₜ / ᾱ_prev).

        η = 0 is deterministic (DDIM); η = 1 is DDPM's ancestral step. With
        ``clip``, ε̂ is recomputed from the clipped x̂₀ (diffusers'
        ``use_clipped_model_output=True``).
        """
        check_number("eta", eta, low=0)
        a, a_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        x0 = self.predict_x0(eps, t, x_t, clip)
        if clip:  # the ε consistent with the clipped x̂₀
            eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        out = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("noise must be given when eta > 0, got None")
            out = out + sigma * noise
        return out


def spaced_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` of the T training steps, evenly spaced, largest first.

    diffusers' "leading" spacing: t = k · (T // steps), k = steps − 1 ... 0.
    """
    check_int("timesteps", timesteps, low=1)
    check_int("steps", steps, low=1, high=timesteps)
    ratio = timesteps // steps
    return [k * ratio for k in range(steps - 1, -1, -1)]


# --- the network -----------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps (Vaswani et al.; Ho et al.).

    Shapes:
        t: (N,); returns (N, dim) with dim even.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000) * torch.arange(half, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv, plus the time embedding, twice, and a skip."""

    def __init__(self, c_in: int, c_out: int, t_dim: int, groups: int = 4):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = (
            nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]  # (N, C, 1, 1)
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


@dataclass
class UNetConfig:
    """A two-level U-Net for 1 x 28 x 28 images."""

    channels: int = 32  # channels at 14 x 14; twice as many at 7 x 7
    t_dim: int = 64  # size of the time embedding

    def __post_init__(self):
        check_int("channels", self.channels, low=4)
        if self.channels % 4:
            raise ValueError(
                f"channels must be a multiple of 4 (group normalization in 4 "
                f"groups), got {self.channels}"
            )
        check_int("t_dim", self.t_dim, low=2)
        if self.t_dim % 2:
            raise ValueError(f"t_dim must be even, got {self.t_dim}")


class UNet(nn.Module):
    """ε̂ = ε_θ(xₜ, t): predicts the noise in xₜ at step t.

    28 x 28 -> pixel unshuffle -> 14 x 14 (c channels, one ResBlock) -> down
    -> 7 x 7 (2c, two ResBlocks) -> up -> 14 x 14 (concatenated with the
    skip, one ResBlock) -> pixel shuffle -> 28 x 28.

    Shapes:
        x: (N, 1, 28, 28); t: (N,) integer steps; returns (N, 1, 28, 28).
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        c, td = config.channels, config.t_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(td, td), nn.SiLU(), nn.Linear(td, td)
        )
        self.unshuffle, self.shuffle = nn.PixelUnshuffle(2), nn.PixelShuffle(2)
        self.conv_in = nn.Conv2d(4, c, 3, padding=1)
        self.down = ResBlock(c, c, td)
        self.downsample = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.mid1 = ResBlock(2 * c, 2 * c, td)
        self.mid2 = ResBlock(2 * c, 2 * c, td)
        self.upsample = nn.ConvTranspose2d(2 * c, c, 4, 2, 1)  # 7 -> 14
        self.up = ResBlock(2 * c, c, td)
        self.norm_out = nn.GroupNorm(4, c)
        self.conv_out = nn.Conv2d(c, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, 1, 28, 28), floating=True)
        temb = self.time_mlp(timestep_embedding(t, self.config.t_dim))
        h = self.conv_in(self.unshuffle(x))  # (N, c, 14, 14)
        skip = self.down(h, temb)
        h = self.downsample(skip)  # (N, 2c, 7, 7)
        h = self.mid2(self.mid1(h, temb), temb)
        h = self.upsample(h)  # (N, c, 14, 14)
        h = self.up(torch.cat([h, skip], dim=1), temb)
        return self.shuffle(self.conv_out(F.silu(self.norm_out(h))))


# --- training and sampling --------------------------------------------------


class DenoisingObjective(nn.Module):
    """Wraps ε_θ for training with dlbook.train.fit (Ho et al.'s Algorithm 1).

    forward(x) scales images from [0, 1] to [−1, 1], draws t uniformly and
    ε ~ N(0, I), and returns (ε̂, ε); ``epsilon_loss`` is ‖ε − ε̂‖² averaged
    over pixels, the "simple" loss.
    """

    def __init__(self, model: nn.Module, schedule: NoiseSchedule):
        super().__init__()
        self.model, self.schedule = model, schedule

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_in_range("x", x, low=0.0, high=1.0)
        x0 = 2 * x - 1
        t = torch.randint(self.schedule.timesteps, (len(x),), device=x.device)
        noise = torch.randn_like(x0)
        return self.model(self.schedule.q_sample(x0, t, noise), t), noise


def epsilon_loss(out: tuple[torch.Tensor, torch.Tensor], _=None):
    """The mean squared error between predicted and true noise."""
    eps_hat, eps = out
    return F.mse_loss(eps_hat, eps)


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    *,
    steps: int | None = None,
    method: str = "ddpm",
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip: bool = True,
    batch_size: int = 500,
) -> torch.Tensor:
    """n images from pure noise, in [0, 1].

    Runs ``steps`` evenly spaced steps of the T training steps (all T by
    default) with DDPM's ancestral update (``method="ddpm"``, a fresh noise
    draw at every step) or DDIM's (``method="ddim"``, deterministic for
    η = 0). x̂₀ is clipped to [−1, 1] at each step, as in Ho et al.'s
    sampler.

    Shapes:
        returns (n, 1, 28, 28).
    """
    check_int("n", n, low=1)
    check_int("batch_size", batch_size, low=1)
    check_choice("method", method, ("ddpm", "ddim"))
    T = schedule.timesteps
    ts = spaced_timesteps(T, T if steps is None else steps)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        x = torch.randn(m, 1, 28, 28, generator=generator, device=device)
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            eps = model(x, torch.full((m,), t, device=device))
            z = torch.randn(x.shape, generator=generator, device=device)
            if method == "ddpm":
                x = schedule.ddpm_step(eps, t, x, z, t_prev, clip)
            else:
                x = schedule.ddim_step(eps, t, t_prev, x, eta, z, clip)
        out.append(((x + 1) / 2).clamp(0, 1))
    model.train(was_training)
    return torch.cat(out)

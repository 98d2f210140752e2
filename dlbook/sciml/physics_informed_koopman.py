"""Physics-informed Koopman autoencoders for Burgers' equation.

A Koopman autoencoder (Lusch, Kutz & Brunton 2018) learns an encoder ``phi`` from states to
a ``p``-dimensional latent space, a decoder ``psi`` back, and a linear latent dynamics; here
a continuous-time generator ``L``, so that

    u(t) ~ psi(exp(t L) phi(u(0))).

Burgers' equation has such a linearization in closed form: the Cole--Hopf transform maps it
to the heat equation, and Gin, Lusch, Brunton & Kutz (2021) showed that an autoencoder
trained on trajectories finds a transform of that kind. A *physics-informed* Koopman model
(Liu, Sholokhov, Mansour & Nabi 2022) also asks the decoded latent trajectory to satisfy the
governing equation: with ``z(t) = exp(t L) z_0`` and ``u = psi(z)``,

    r = d/dt psi(z) + u u_x - nu u_xx,   d/dt psi(z) = J_psi(z) L z,

where the time derivative is a Jacobian-vector product (forward-mode autodiff, by hand in
``KoopmanAutoencoder.decode_jvp``, equal to ``torch.func.jvp``) and the space derivatives
are spectral; the residual is measured after dividing its Fourier modes by ``1 + nu k^2``
(:func:`precondition`), so that it weights every wavenumber like the data loss. The residual needs no simulated trajectory: it can be imposed
on initial conditions for which no data were ever computed, which is what lets physics
replace data. Models are trained with full-batch L-BFGS, as the PINNs of ``pinn.py``.

Checked against: the residual of exact solutions (the Cole--Hopf heat-mode solution, the
solver's trajectories) is zero to the accuracy of the data, the JVP equals finite differences
in time, gradients through it pass ``torch.autograd.gradcheck``, and the spectral derivatives
equal the analytic ones (``tests/sciml/test_physics_informed_koopman.py``). The exact linear
model to compare with is :func:`dlbook.sciml.burgers.cole_hopf_periodic`.

Chapter: ``book/sciml/physics-informed-koopman.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlbook.sciml.burgers import random_initial_conditions, solve_periodic
from dlbook.train import History


@dataclass
class KoopmanConfig:
    """Problem, model, physics and optimizer settings of :class:`KoopmanAutoencoder` and :func:`train_koopman`."""

    n: int = 64  # grid points of the periodic state u
    length: float = 2 * math.pi  # period of the domain
    nu: float = 0.2  # viscosity of Burgers' equation
    latent: int = 24  # Koopman latent dimension p
    width: int = 64  # neurons per hidden layer of encoder and decoder
    depth: int = 2  # hidden layers of encoder and decoder
    modes: int = 12  # Fourier modes of the decoded state: band-limited, so its derivatives are exact
    iters: int = 300  # L-BFGS iterations (full batch)
    w_lin: float = 0.1  # weight of the latent linearity loss
    w_phys: float = 1.0  # weight of the physics residual (0 = data only)
    precondition: bool = True  # divide the residual's Fourier modes by 1 + nu k^2, eq. (pik-precondition)
    colloc_times: int = 4  # collocation times per collocation initial condition, drawn once in [0, t_max]
    seed: int = 0  # initial weights and collocation times


def _mlp(sizes: list[int], dtype) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(
                nn.Tanh()
            )  # smooth, so that the decoder's Jacobian is too
    return nn.Sequential(*layers)


class KoopmanAutoencoder(nn.Module):
    """Encoder ``phi``, decoder ``psi`` and latent generator ``L``: ``u(t) ~ psi(exp(t L) phi(u_0))``.

    The generator starts at zero plus a small random part, so that ``exp(t L)`` starts near the
    identity (a model that predicts no change).

    Shapes:
        u: ``(B, n)``; z: ``(B, p)``; :meth:`forward` maps ``(B, n)`` and ``(T,)`` to ``(B, T, n)``.
    """

    def __init__(self, cfg: KoopmanConfig, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(
            cfg.seed
        )  # the layers' default initialization draws from the global generator
        self.encoder = _mlp(
            [cfg.n] + [cfg.width] * cfg.depth + [cfg.latent], dtype
        )
        if not 1 <= cfg.modes <= cfg.n // 2 - 1:
            raise ValueError(
                f"modes must be between 1 and n // 2 - 1 = {cfg.n // 2 - 1}, got {cfg.modes}"
            )
        self.n, self.modes = cfg.n, cfg.modes
        self.decoder = _mlp(
            [cfg.latent] + [cfg.width] * cfg.depth + [2 * cfg.modes], dtype
        )
        self.generator = nn.Parameter(
            0.01
            * torch.randn(cfg.latent, cfg.latent, generator=g, dtype=dtype)
        )

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        return self.encoder(u)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """ψ(z): the decoder gives the cosine and sine coefficients of modes
        1 to `modes` of the state, and `synthesize` sums the series."""
        return self.synthesize(self.decoder(z))

    def synthesize(self, c: torch.Tensor) -> torch.Tensor:
        """The state whose modes 1 to `modes` have cosine and sine
        coefficients c, a linear map.

        Mode 0 is left at zero (Burgers' equation conserves the mean, zero
        here), and so are the modes above `modes`: the decoded state is a
        trigonometric polynomial.
        """
        spectrum = torch.complex(
            c[..., : self.modes], -c[..., self.modes :]
        ) * (self.n / 2)
        spectrum = torch.nn.functional.pad(
            spectrum, (1, self.n // 2 - self.modes)
        )  # (..., n // 2 + 1)
        return torch.fft.irfft(spectrum, n=self.n)

    def decode_jvp(
        self, z: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ψ(z) and the Jacobian-vector product J_ψ(z) v, in one forward
        pass.

        Forward-mode differentiation by hand: the tangent dh = J v travels
        with each activation h, through a linear layer as dh W^T and through
        tanh as dh (1 - h²); the synthesis is linear, so it maps the tangent
        like the state. Equal to torch.func.jvp(self.decode, (z,), (v,)),
        several times faster for these small networks.
        """
        h, dh = z, v
        for layer in self.decoder:
            if isinstance(layer, nn.Linear):
                h, dh = layer(h), dh @ layer.weight.T
            else:  # nn.Tanh: tanh' = 1 - tanh²
                h = torch.tanh(h)
                dh = dh * (1 - h * h)
        u, u_t = self.synthesize(torch.stack([h, dh]))
        return u, u_t

    def advance(self, z0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """exp(t_k L) z_0 for every time: (B, p), (T,) -> (B, T, p)."""
        flows = torch.linalg.matrix_exp(
            t[:, None, None] * self.generator
        )  # (T, p, p)
        return torch.einsum("tij,bj->bti", flows, z0)

    def forward(self, u0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.decode(self.advance(self.encode(u0), t))

    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of the learned generator ``L`` (continuous-time Koopman eigenvalues)."""
        return torch.linalg.eigvals(self.generator.detach().double())


def burgers_trajectories(
    n_traj: int,
    t,
    cfg: KoopmanConfig,
    seed: int,
    amplitude: float = 1.0,
    oversample: int = 4,
    dtype=torch.float32,
) -> torch.Tensor:
    """``n_traj`` Burgers trajectories from random initial conditions (:func:`random_initial_conditions`).

    They are simulated on a grid ``oversample`` times finer than ``cfg.n`` and then subsampled,
    so that the 2/3-rule truncation of the solver does not show on the training grid (the
    residual of the subsampled data is below 1e-6 of ``u_t^2``; ``tests/sciml/test_physics_informed_koopman.py``).

    Shapes:
        returns ``(n_traj, len(t), cfg.n)``.
    """
    u0 = random_initial_conditions(
        n_traj,
        cfg.n * oversample,
        amplitude=amplitude,
        seed=seed,
        length=cfg.length,
    )
    u = solve_periodic(
        u0, np.asarray(t, dtype=float), cfg.nu, length=cfg.length
    )
    return torch.as_tensor(u[..., ::oversample], dtype=dtype)


# --- physics ----------------------------------------------------------------------------------------


def spectral_derivatives(
    u: torch.Tensor, length: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``u_x`` and ``u_xx`` of periodic ``u`` on a uniform grid, by FFT; exact for band-limited ``u``.

    The Nyquist mode is dropped from ``u_x`` (its derivative is not real-valued on the grid).

    Shapes:
        u: ``(..., n)``; returns two ``(..., n)``.
    """
    n = u.shape[-1]
    k = 2 * math.pi * torch.fft.rfftfreq(n, d=length / n, dtype=u.dtype)
    ik = 1j * k
    if n % 2 == 0:
        ik[-1] = 0
    u_hat = torch.fft.rfft(u)
    return torch.fft.irfft(ik * u_hat, n=n), torch.fft.irfft(
        -(k**2) * u_hat, n=n
    )


def burgers_residual(
    u: torch.Tensor, u_t: torch.Tensor, nu: float, length: float
) -> torch.Tensor:
    """``u_t + u u_x - nu u_xx`` with spectral space derivatives. Shapes: ``(..., n)`` each."""
    if u.shape != u_t.shape:
        raise ValueError(
            f"u and u_t must have the same shape, got {tuple(u.shape)} and {tuple(u_t.shape)}"
        )
    u_x, u_xx = spectral_derivatives(u, length)
    return u_t + u * u_x - nu * u_xx


def latent_residual(
    model: KoopmanAutoencoder, z: torch.Tensor, nu: float, length: float
) -> torch.Tensor:
    """Burgers' residual of the decoded state along the latent flow.

    u = ψ(z) and u_t = J_ψ(z) L z come from one forward-mode pass
    (KoopmanAutoencoder.decode_jvp), which stays differentiable with
    respect to the model's parameters.

    Shapes:
        z: (B, p); returns (B, n).
    """
    u, u_t = model.decode_jvp(z, z @ model.generator.T)
    return burgers_residual(u, u_t, nu, length)


def precondition(r: torch.Tensor, nu: float, length: float) -> torch.Tensor:
    """Divide each Fourier mode of the residual by 1 + ν k².

    An error δ in mode k of the decoded state changes the residual by about
    ν k² δ through the viscous term, so the plain mean square of r weights
    the high modes hundreds of times more than the data loss does; after
    this division every mode counts like its error in u. (The norm of the
    result is an H⁻¹-type norm of r; it vanishes exactly when r does.)

    Shapes:
        r: (..., n); returns (..., n).
    """
    n = r.shape[-1]
    k = 2 * math.pi * torch.fft.rfftfreq(n, d=length / n, dtype=r.dtype)
    return torch.fft.irfft(torch.fft.rfft(r) / (1 + nu * k**2), n=n)


# --- losses and training ----------------------------------------------------------------------------


def flow_matrices(generator: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """exp(t_k L) for every time t_k: (T,) and (p, p) -> (T, p, p).

    On a uniform grid that starts at 0, t_k = k h (how trajectories are
    sampled), exp(t_k L) = exp(h L)^k: one matrix exponential and its
    powers by repeated doubling (about log2 T batched products) replace T
    exponentials, whose backward pass is the costly part of a loss
    evaluation. The two agree to rounding (tested). Any other grid gets
    one exponential per time, as KoopmanAutoencoder.advance computes.
    """
    T = len(t)
    if T > 2 and bool(t[0] == 0) and bool(t[1] > 0):
        steps = torch.diff(t)
        if torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-5, atol=0):
            eye = torch.eye(
                len(generator), dtype=generator.dtype, device=generator.device
            )
            powers = torch.stack(
                [eye, torch.linalg.matrix_exp(t[1] * generator)]
            )
            while len(powers) < T:  # E^n times E^1 .. E^n: E^(n+1) .. E^(2n)
                n = len(powers) - 1
                more = powers[-1] @ powers[1 : 1 + min(n, T - 1 - n)]
                powers = torch.cat([powers, more])
            return powers
    return torch.linalg.matrix_exp(t[:, None, None] * generator)


def _check(
    name: str, value: torch.Tensor, ndim: int, n: int | None = None
) -> None:
    if value.ndim != ndim or (n is not None and value.shape[-1] != n):
        want = f"{ndim} dimensions" + (
            f" with last size {n}" if n is not None else ""
        )
        raise ValueError(
            f"{name} must have {want}, got shape {tuple(value.shape)}"
        )
    if not torch.isfinite(value).all():
        raise ValueError(
            f"{name} must be finite; it has {int((~torch.isfinite(value)).sum())} NaN or infinite values"
        )


def koopman_losses(
    model: KoopmanAutoencoder,
    u: torch.Tensor | None,
    t: torch.Tensor,
    u0_colloc: torch.Tensor,
    tau: torch.Tensor,
    cfg: KoopmanConfig,
) -> dict[str, torch.Tensor]:
    """The terms of the training loss, eq. (pik-loss), each relative to the mean square of the states.

    * ``pred``: trajectories predicted from their first state, ``psi(exp(t L) phi(u_0))`` vs ``u(t)``;
    * ``lin``: the latent linearity ``phi(u(t))`` vs ``exp(t L) phi(u_0)``, relative to ``|phi(u)|^2``;
    * ``rec``: autoencoding of every training state and of the collocation initial conditions
      (these need no simulation, so the data-only and the physics-informed model both get them);
    * ``phys``: the residual :func:`latent_residual` at the times ``tau`` for every collocation
      initial condition, :func:`precondition`-ed if ``cfg.precondition`` (computed only if
      ``cfg.w_phys > 0``).

    Args:
        u: training trajectories, or ``None`` when there are none (physics only).
        t: their times, starting at 0.
        u0_colloc: initial conditions with no trajectory, for ``rec`` and ``phys``.
        tau: collocation times.

    Shapes:
        u: ``(B, T, n)``; t: ``(T,)``; u0_colloc: ``(C, n)``; tau: ``(K,)``.
    """
    _check("t", t, 1)
    _check("u0_colloc", u0_colloc, 2, cfg.n)
    scale = u0_colloc.pow(2).mean()
    out: dict[str, torch.Tensor] = {}
    C, n, p = len(u0_colloc), cfg.n, cfg.latent
    has_data = u is not None and len(u) > 0
    if has_data:
        _check("u", u, 3, cfg.n)
        if u.shape[1] != len(t):
            raise ValueError(
                f"u has {u.shape[1]} time steps but t has {len(t)}"
            )
    # The network calls are batched: one encoder pass over the collocation
    # states and every training state, one decoder pass over every latent
    # state the data terms need. These are small networks whose cost is
    # the number of calls, not their size; the terms are unchanged. The
    # data times are a uniform grid, whose flows are powers of one
    # exponential (flow_matrices); the collocation times get their own.
    B, T = (u.shape[0], u.shape[1]) if has_data else (0, 0)
    states = (
        torch.cat([u0_colloc, u.reshape(-1, n)]) if has_data else u0_colloc
    )
    z_all = model.encode(states)
    z_colloc, z_obs = z_all[:C], z_all[C:].reshape(B, T, p)  # (B, T, p)
    to_decode = [z_colloc]
    if has_data:
        flows = flow_matrices(model.generator, t)  # (T, p, p)
        z_lin = torch.einsum("tij,bj->bti", flows, z_obs[:, 0])
        to_decode += [z_lin.reshape(-1, p), z_obs.reshape(-1, p)]
    decoded = model.decode(torch.cat(to_decode))
    rec = [(decoded[:C] - u0_colloc).pow(2).mean()]
    if has_data:
        u_lin, u_obs = decoded[C:].reshape(2, B, T, n)
        out["pred"] = (u_lin - u).pow(2).mean() / scale
        out["lin"] = (z_obs - z_lin).pow(2).mean() / z_obs.detach().pow(
            2
        ).mean().clamp_min(1e-8)
        rec.append((u_obs - u).pow(2).mean())
    out["rec"] = sum(rec) / len(rec) / scale
    if cfg.w_phys > 0:
        z = model.advance(z_colloc, tau).reshape(-1, p)  # (C * K, p)
        r = latent_residual(model, z, cfg.nu, cfg.length)
        if cfg.precondition:
            r = precondition(r, cfg.nu, cfg.length)
        out["phys"] = r.pow(2).mean() / scale
    out["loss"] = (
        out.get("pred", 0)
        + out["rec"]
        + cfg.w_lin * out.get("lin", 0)
        + cfg.w_phys * out.get("phys", 0)
    )
    return out


def train_koopman(
    model: KoopmanAutoencoder,
    u: torch.Tensor | None,
    t: torch.Tensor,
    u0_colloc: torch.Tensor,
    cfg: KoopmanConfig,
    every: int = 25,
    callback=None,
) -> History:
    """Minimize :func:`koopman_losses` with full-batch L-BFGS (strong-Wolfe line search).

    The collocation times are drawn once, uniformly in ``[0, t[-1]]``, so that the loss is a
    fixed function of the weights, as L-BFGS needs.

    Returns:
        A :class:`dlbook.train.History` of the loss terms (and ``callback(model)``'s numbers)
        every ``every`` loss evaluations, with ``step`` and ``seconds`` (CPU time).
    """
    tau = t[-1] * torch.rand(
        cfg.colloc_times,
        generator=torch.Generator().manual_seed(cfg.seed),
        dtype=t.dtype,
    )
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=cfg.iters,
        history_size=50,
        tolerance_grad=0.0,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
    history, start, count = History(), time.process_time(), [0]

    def closure():
        opt.zero_grad()
        parts = koopman_losses(model, u, t, u0_colloc, tau, cfg)
        parts["loss"].backward()
        count[0] += 1
        if count[0] % every == 0 or count[0] == 1:
            row = {k: float(v.detach()) for k, v in parts.items()}
            row.update(step=count[0], seconds=time.process_time() - start)
            if callback is not None:
                row.update(callback(model))
            history.append(row)
        return parts["loss"]

    opt.step(closure)
    return history


@torch.no_grad()
def prediction_error(
    model: KoopmanAutoencoder,
    u: torch.Tensor,
    t: torch.Tensor,
    per_trajectory: bool = False,
):
    """Relative L2 error of the trajectories predicted from their first state, over all later times.

    Shapes:
        u: ``(B, T, n)``; t: ``(T,)``. Returns a number, or ``(B,)`` errors with ``per_trajectory``.
    """
    _check("u", u, 3)
    pred = model(u[:, 0], t)
    if per_trajectory:
        return torch.linalg.vector_norm(
            pred[:, 1:] - u[:, 1:], dim=(1, 2)
        ) / torch.linalg.vector_norm(u[:, 1:], dim=(1, 2))
    return (
        torch.linalg.vector_norm(pred[:, 1:] - u[:, 1:])
        / torch.linalg.vector_norm(u[:, 1:])
    ).item()


def data_size_sweep(
    pool: torch.Tensor,
    test: torch.Tensor,
    t: torch.Tensor,
    u0_colloc: torch.Tensor,
    sizes,
    seeds,
    cfg: KoopmanConfig,
) -> list[dict]:
    """Train data-only and physics-informed models on m trajectories of pool.

    For every m in `sizes` and every seed, both models see the first m
    trajectories of pool and the same collocation initial conditions
    (u0_colloc plus the training initial states); they differ only in
    w_phys (0 or cfg.w_phys). m = 0 is trained with physics only.

    Returns:
        One dict per model: method, trajectories, seed, test_error
        (relative L2 error on `test`), train_error, seconds (CPU time) and
        the trained model.
    """
    rows = []
    for m in sizes:
        if not 0 <= m <= len(pool):
            raise ValueError(
                f"sizes must lie between 0 and len(pool) = {len(pool)}, "
                f"got {m}"
            )
        for seed in seeds:
            for method, w in (
                ("data only", 0.0),
                ("physics-informed", cfg.w_phys),
            ):
                if m == 0 and w == 0:
                    continue  # nothing to learn from
                c = dataclasses.replace(cfg, w_phys=w, seed=seed)
                model = KoopmanAutoencoder(c)
                start = time.process_time()
                train_koopman(
                    model,
                    pool[:m] if m else None,
                    t,
                    torch.cat([pool[:m, 0], u0_colloc]),
                    c,
                )
                rows.append(
                    dict(
                        method=method,
                        trajectories=m,
                        seed=seed,
                        test_error=prediction_error(model, test, t),
                        train_error=prediction_error(model, pool[:m], t)
                        if m
                        else float("nan"),
                        seconds=time.process_time() - start,
                        model=model,
                    )
                )
    return rows

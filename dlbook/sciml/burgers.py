"""Reference solutions of the viscous Burgers equation, to test learned models against.

The equation is

    u_t + u u_x = nu u_xx.

Three solvers, each exact or spectrally accurate, and tested against each other and against
closed forms (``tests/sciml/test_burgers.py``):

* :func:`cole_hopf_sine` -- the benchmark of Raissi, Perdikaris & Karniadakis (2019):
  ``u(0, x) = -sin(pi x)`` on ``[-1, 1]`` with ``u(t, +-1) = 0``. The Cole--Hopf transform
  (Hopf 1950, Cole 1951) ``u = -2 nu phi_x / phi`` turns Burgers into the heat equation, whose
  solution is a Gaussian convolution; we evaluate the convolution by Gauss--Hermite
  quadrature, as Basdevant et al. (1986) did for their reference solution, in log space so
  that the ``exp(1 / (2 pi nu))`` factors cannot overflow.
* :func:`solve_periodic` -- a Fourier pseudo-spectral solver with exponential time
  differencing (ETDRK4, Cox & Matthews 2002, in the contour-integral form of Kassam &
  Trefethen 2005) and 2/3-rule dealiasing, for any periodic initial condition and for a batch
  of them at once (the Koopman chapters train on its trajectories).
* :func:`cole_hopf_periodic` -- the Cole--Hopf transform on a periodic grid: the heat equation
  solved exactly mode by mode; an independent check of :func:`solve_periodic` and the exact
  linear (Koopman) model of Burgers' equation.

Closed forms used in the tests: :func:`heat_mode_solution` (Cole--Hopf of one heat-equation
mode), :func:`traveling_wave` (the viscous shock) and :func:`sine_series` (the
Fourier--Bessel series of the sine benchmark, well conditioned only for larger ``nu``).

Chapters: ``book/sciml/pinn.md`` and ``book/sciml/physics-informed-koopman.md``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ive, roots_hermite

NU_RAISSI = 0.01 / math.pi
"""The viscosity of the benchmark of Raissi et al. (2019)."""


def _finite(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(
            f"{name} must be finite; it has {bad} NaN or infinite values"
        )
    return arr


def _positive(name: str, value: float) -> float:
    if not (
        isinstance(value, (int, float, np.floating))
        and math.isfinite(value)
        and value > 0
    ):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


# --- closed forms ------------------------------------------------------------------------------


def traveling_wave(
    x, t, nu: float, c: float = 0.0, a: float = 1.0
) -> np.ndarray:
    """The viscous shock ``u = c - a tanh(a (x - c t) / (2 nu))``, an exact solution on the line.

    It joins ``c + a`` (left) to ``c - a`` (right) over a width of about ``2 nu / a`` and moves
    at speed ``c``. ``x`` and ``t`` broadcast against each other.
    """
    nu = _positive("nu", nu)
    x, t = _finite("x", x), _finite("t", t)
    return c - a * np.tanh(a * (x - c * t) / (2 * nu))


def heat_mode_solution(
    x, t, nu: float, k: int = 1, a: float = 2.0, b: float = 1.0
) -> np.ndarray:
    """Cole--Hopf image of one heat mode: an exact, smooth, ``2 pi / k``-periodic Burgers solution.

    ``phi = a + b exp(-nu k^2 t) cos(k x)`` solves ``phi_t = nu phi_xx``, so
    ``u = -2 nu phi_x / phi = 2 nu k b e sin(k x) / (a + b e cos(k x))`` with
    ``e = exp(-nu k^2 t)`` solves Burgers' equation. Needs ``a > |b|`` so that ``phi > 0``.
    """
    nu = _positive("nu", nu)
    if not a > abs(b):
        raise ValueError(
            f"need a > |b| so that phi stays positive, got a={a}, b={b}"
        )
    x, t = _finite("x", x), _finite("t", t)
    e = np.exp(-nu * k**2 * t)
    return 2 * nu * k * b * e * np.sin(k * x) / (a + b * e * np.cos(k * x))


def sine_series(x, t, nu: float, n_terms: int | None = None) -> np.ndarray:
    """The sine benchmark as a Fourier--Bessel series; exact, but only well conditioned for large ``nu``.

    ``phi(x, 0) = exp(-cos(pi x) / (2 pi nu))`` expands as
    ``I_0(r) + 2 sum_k (-1)^k I_k(r) cos(k pi x)`` with ``r = 1 / (2 pi nu)`` (the generating
    function of the modified Bessel functions ``I_k``); each mode then decays by
    ``exp(-nu k^2 pi^2 t)``. Near the shock ``phi`` is ``exp(-r)``-times smaller than its
    coefficients, so for ``nu = 0.01 / pi`` the sum cancels catastrophically there: use it
    as a check at ``nu`` of about ``0.1 / pi`` or more, and :func:`cole_hopf_sine` otherwise.
    """
    nu = _positive("nu", nu)
    x, t = np.broadcast_arrays(_finite("x", x), _finite("t", t))
    r = 1 / (2 * math.pi * nu)
    n_terms = n_terms or int(
        2 * r + 60
    )  # I_k(r) is negligible once k is well past r
    k = np.arange(1, n_terms + 1)
    coef = (-1.0) ** k * ive(
        k, r
    )  # scaled by exp(-r), which cancels in the ratio
    decay = np.exp(-nu * (k * math.pi) ** 2 * t[..., None])
    phi = ive(0, r) + 2 * (
        coef * decay * np.cos(k * math.pi * x[..., None])
    ).sum(-1)
    phi_x = -2 * (
        coef * decay * k * math.pi * np.sin(k * math.pi * x[..., None])
    ).sum(-1)
    return -2 * nu * phi_x / phi


# --- the Raissi et al. benchmark by Cole--Hopf and Gauss--Hermite ------------------------------


def cole_hopf_sine(
    x, t, nu: float = NU_RAISSI, n_quad: int = 200
) -> np.ndarray:
    """Burgers' equation with u(0, x) = -sin(πx) (Raissi et al.), exactly.

    With φ0(y) = exp(-cos(πy) / (2πν)) and the substitution η = sqrt(4νt) z
    in the heat kernel,

        u(t, x) = -∫ sin(π(x - η)) φ0(x - η) exp(-z²) dz
                  / ∫ φ0(x - η) exp(-z²) dz,

    which Gauss-Hermite quadrature with n_quad nodes evaluates. With
    n_quad = 200 the result agrees with adaptive quadrature and with 1,000
    nodes to about 1e-14 for ν = 0.01/π and t <= 1
    (tests/sciml/test_burgers.py). The solution is odd about x = 0 and
    x = 1, so u(t, ±1) = 0 holds without being imposed.

    Args:
        x, t: positions and times; they broadcast against each other;
            t >= 0.
        nu: the viscosity ν.
        n_quad: number of Gauss-Hermite nodes.

    Shapes:
        x, t: any shapes that broadcast to S; returns S.
    """
    nu = _positive("nu", nu)
    if not (isinstance(n_quad, int) and n_quad >= 2):
        raise ValueError(f"n_quad must be an integer >= 2, got {n_quad!r}")
    x, t = np.broadcast_arrays(_finite("x", x), _finite("t", t))
    if np.any(t < 0):
        raise ValueError(f"t must be >= 0, got a minimum of {t.min()}")
    z, w = roots_hermite(n_quad)
    keep = w > 0  # the outermost weights underflow to 0 for large n_quad
    z, logw = z[keep], np.log(w[keep])
    y = x[..., None] - np.sqrt(4 * nu * t)[..., None] * z  # (S, n_quad)
    logf = logw - np.cos(math.pi * y) / (2 * math.pi * nu)
    # log-sum-exp: exp(1/(2 pi nu)) = e^50 otherwise
    f = np.exp(logf - logf.max(-1, keepdims=True))
    return -(np.sin(math.pi * y) * f).sum(-1) / f.sum(-1)


def raissi_grid(
    nx: int = 256, nt: int = 100, t_max: float = 0.99, nu: float = NU_RAISSI
):
    """The benchmark on the grid of Raissi et al.'s ``burgers_shock.mat``, computed here.

    Returns:
        ``(x, t, u)``: ``x`` is ``(nx,)`` uniform on ``[-1, 1]``, ``t`` is ``(nt,)`` uniform on
        ``[0, t_max]`` and ``u[i, j] = u(t_i, x_j)`` is ``(nt, nx)``.
    """
    x = np.linspace(-1.0, 1.0, nx)
    t = np.linspace(0.0, t_max, nt)
    return x, t, cole_hopf_sine(x[None, :], t[:, None], nu)


# --- periodic problems: pseudo-spectral ETDRK4 and exact Cole--Hopf ---------------------------


def periodic_grid(
    n: int, length: float = 2 * math.pi, start: float = 0.0
) -> np.ndarray:
    """The ``n`` points ``start + j length / n``, ``j = 0..n-1``, of a periodic grid."""
    if not (isinstance(n, (int, np.integer)) and n >= 4):
        raise ValueError(f"n must be an integer >= 4, got {n!r}")
    return start + np.arange(n) * (_positive("length", length) / n)


def wavenumbers(n: int, length: float) -> np.ndarray:
    """Angular wavenumbers ``2 pi m / length`` of ``numpy.fft.rfft`` on ``n`` points, ``(n // 2 + 1,)``."""
    return 2 * math.pi * np.fft.rfftfreq(n, d=length / n)


def _etdrk4_coefficients(lin: np.ndarray, dt: float, n_contour: int = 32):
    """ETDRK4 coefficients of Kassam & Trefethen (2005), eq. (2.5), by their contour integral."""
    r = np.exp(1j * math.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    lr = (
        dt * lin[:, None] + r[None, :]
    )  # (K, M): a circle around each dt * L avoids 0/0
    q = dt * np.mean((np.exp(lr / 2) - 1) / lr, axis=1).real
    f1 = (
        dt
        * np.mean(
            (-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1
        ).real
    )
    f2 = dt * np.mean((2 + lr + np.exp(lr) * (lr - 2)) / lr**3, axis=1).real
    f3 = (
        dt
        * np.mean(
            (-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1
        ).real
    )
    return np.exp(dt * lin), np.exp(dt * lin / 2), q, f1, f2, f3


def solve_periodic(
    u0, t, nu: float, length: float = 2 * math.pi, dt: float | None = None
) -> np.ndarray:
    """Burgers' equation on a periodic domain by Fourier pseudo-spectral ETDRK4.

    In Fourier space ``u_hat' = -nu k^2 u_hat - (i k / 2) F[u^2]``: the stiff linear part is
    integrated exactly by the exponential, the nonlinear part by the fourth-order
    Runge--Kutta-like ETDRK4 stages; products are dealiased by the 2/3 rule.

    Args:
        u0: initial values on :func:`periodic_grid` ``(n, length)``; one state or a batch.
        t: output times, increasing, ``t[0] = 0`` (the initial state is returned first).
        nu: viscosity.
        length: period of the domain.
        dt: largest time step; default ``0.5 / (k_max max|u0|)``, a safe advective CFL number.

    Shapes:
        u0: ``(n,)`` or ``(B, n)``; returns ``(len(t), n)`` or ``(B, len(t), n)``.
    """
    nu, length = _positive("nu", nu), _positive("length", length)
    u0 = _finite("u0", u0)
    t = _finite("t", t)
    if u0.ndim not in (1, 2) or u0.shape[-1] < 4:
        raise ValueError(
            f"u0 must have shape (n,) or (B, n) with n >= 4, got {u0.shape}"
        )
    if t.ndim != 1 or len(t) < 1 or t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError(
            f"t must be a 1-D increasing array starting at 0, got {t[:5]}..."
        )
    single = u0.ndim == 1
    u0 = np.atleast_2d(u0)
    n = u0.shape[-1]
    k = wavenumbers(n, length)
    lin = -nu * k**2
    keep = np.abs(np.fft.rfftfreq(n, 1 / n)) < n / 3  # 2/3 rule
    g = -0.5j * k * keep
    nonlinear = lambda v: g * np.fft.rfft(np.fft.irfft(v, n=n) ** 2)  # noqa: E731
    if dt is None:
        dt = 0.5 / (k[keep].max() * max(np.abs(u0).max(), 1e-3))
    dt = _positive("dt", dt)

    v = np.fft.rfft(u0) * keep
    out = np.empty((len(t),) + u0.shape)
    out[0] = u0
    cache = {}
    for i in range(1, len(t)):
        span = t[i] - t[i - 1]
        steps = math.ceil(span / dt - 1e-9)
        h = span / steps
        if h not in cache:
            cache = {h: _etdrk4_coefficients(lin, h)}
        e, e2, q, f1, f2, f3 = cache[h]
        for _ in range(steps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        out[i] = np.fft.irfft(v, n=n)
    out = np.moveaxis(out, 0, 1)  # (B, nt, n)
    return out[0] if single else out


def cole_hopf_periodic(
    u0, t, nu: float, length: float = 2 * math.pi
) -> np.ndarray:
    """Burgers' equation solved exactly through the heat equation, on a periodic grid.

    ``phi = exp(-(1 / 2 nu) int_0^x u)`` is periodic when ``u`` has zero mean; its Fourier modes
    evolve independently as ``exp(-nu k^2 t)``, and ``u = -2 nu phi_x / phi`` (derivative taken
    spectrally). This is Burgers' Koopman operator made explicit: the observables
    ``phi_hat_k / phi_hat_0`` are eigenfunctions with eigenvalues ``-nu k^2``. Its accuracy is
    that of ``phi`` on the grid, which needs ``max |int u| / (2 nu)`` to stay moderate.

    Shapes:
        u0: ``(n,)`` or ``(B, n)`` on :func:`periodic_grid`; returns ``(len(t), n)`` or ``(B, len(t), n)``.
    """
    nu, length = _positive("nu", nu), _positive("length", length)
    u0, t = _finite("u0", u0), _finite("t", t)
    if u0.ndim not in (1, 2):
        raise ValueError(f"u0 must have shape (n,) or (B, n), got {u0.shape}")
    mean = np.abs(u0.mean(-1)).max()
    if mean > 1e-8 * max(np.abs(u0).max(), 1.0):
        raise ValueError(
            f"u0 must have zero mean for phi to be periodic, got a mean of {mean:.3g}"
        )
    if t.ndim != 1 or np.any(t < 0):
        raise ValueError(
            f"t must be a 1-D array of times >= 0, got shape {t.shape}"
        )
    n = u0.shape[-1]
    k = wavenumbers(n, length)
    with np.errstate(divide="ignore", invalid="ignore"):
        integrate = np.where(
            k > 0, 1 / (1j * k), 0
        )  # antiderivative of a zero-mean function
    potential = np.fft.irfft(
        np.fft.rfft(u0) * integrate, n=n
    )  # int_0^x u, up to a constant
    log_phi = -potential / (2 * nu)
    log_phi = log_phi - log_phi.max(
        -1, keepdims=True
    )  # phi in (0, 1]: no overflow
    phi_hat = np.fft.rfft(np.exp(log_phi))[..., None, :] * np.exp(
        -nu * k**2 * t[:, None]
    )  # (..., nt, K)
    phi = np.fft.irfft(phi_hat, n=n)
    phi_x = np.fft.irfft(1j * k * phi_hat, n=n)
    return -2 * nu * phi_x / phi


def koopman_eigenfunctions(
    u, nu: float, k_max: int, length: float = 2 * math.pi
) -> np.ndarray:
    """Burgers' Koopman eigenfunctions ``g_k(u) = phi_hat_k / phi_hat_0``, ``k = 1..k_max``, from Cole--Hopf.

    ``phi = exp(-(1 / 2 nu) int_0^x u)`` solves the heat equation up to a factor that depends on
    time only, so each Fourier coefficient ``phi_hat_k`` decays as ``exp(-nu k^2 t)`` relative to
    ``phi_hat_0``: along any trajectory ``g_k(u(t)) = exp(-nu (2 pi k / length)^2 t) g_k(u(0))``.
    They are nonlinear functions of the state that evolve linearly; ``u`` needs zero mean.

    Shapes:
        u: ``(..., n)`` on :func:`periodic_grid`; returns complex ``(..., k_max)``.
    """
    u = _finite("u", u)
    n = u.shape[-1]
    if not 1 <= k_max <= n // 2:
        raise ValueError(
            f"k_max must be between 1 and n // 2 = {n // 2}, got {k_max}"
        )
    k = wavenumbers(n, length)
    with np.errstate(divide="ignore", invalid="ignore"):
        integrate = np.where(k > 0, 1 / (1j * k), 0)
    log_phi = -np.fft.irfft(np.fft.rfft(u) * integrate, n=n) / (
        2 * _positive("nu", nu)
    )
    phi_hat = np.fft.rfft(np.exp(log_phi - log_phi.max(-1, keepdims=True)))
    return phi_hat[..., 1 : k_max + 1] / phi_hat[..., :1]


def random_initial_conditions(
    n_samples: int,
    n: int = 64,
    n_modes: int = 3,
    amplitude: float = 1.0,
    seed: int = 0,
    length: float = 2 * math.pi,
) -> np.ndarray:
    """Smooth zero-mean random periodic initial conditions: a few Fourier modes with random phases.

    ``u0(x) = sum_{m=1}^{n_modes} (c_m / m) sin(2 pi m x / length + theta_m)``, ``c_m`` standard
    normal and ``theta_m`` uniform, rescaled so that ``max |u0| = amplitude``.

    Shapes:
        returns ``(n_samples, n)`` on :func:`periodic_grid` ``(n, length)``.
    """
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 1):
        raise ValueError(
            f"n_samples must be a positive integer, got {n_samples!r}"
        )
    rng = np.random.default_rng(seed)
    x = periodic_grid(n, length)
    m = np.arange(1, n_modes + 1)
    c = rng.standard_normal((n_samples, n_modes)) / m
    theta = rng.uniform(0, 2 * math.pi, (n_samples, n_modes))
    u0 = (
        c[:, :, None]
        * np.sin(
            2 * math.pi * m[None, :, None] * x / length + theta[:, :, None]
        )
    ).sum(1)
    return amplitude * u0 / np.abs(u0).max(-1, keepdims=True)

"""Dynamical systems for the scientific-machine-learning chapters, simulated and solved exactly.

Every data set of the Koopman chapters comes from here, so every data set can be checked:

* :func:`rk4` integrates ``x' = f(x)`` for a batch of initial conditions at once with the
  classical fourth-order Runge-Kutta method;
* :class:`LinearSystem` ``x' = A x``, with the closed form ``x(t) = exp(tA) x(0)`` and a
  constructor that builds ``A`` from the eigenvalues you want it to have;
* :class:`SlowManifold` ``x' = mu x, y' = lam (y - x^2)``, the system of Brunton et al. (2016)
  and Lusch et al. (2018), whose Koopman operator has the finite invariant subspace
  ``span{x, y, x^2}`` and whose solution is known in closed form;
* :class:`Pendulum` ``theta'' = -sin(theta)``, whose oscillations (energy below 1) are solved
  by Jacobi elliptic functions, with a period that grows with the amplitude: the continuous
  Koopman spectrum of Lusch et al. (2018).

Checked against: the closed forms themselves (``tests/sciml/test_systems.py`` integrates each
system with :func:`rk4` and compares with its exact solution, and checks that the pendulum
conserves energy and has the period ``4 K(k)``).

Chapters: ``book/sciml/koopman.md`` and ``book/sciml/deep-koopman.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm
from scipy.special import ellipj, ellipk, ellipkinc

Array = np.ndarray


# --- checks ---------------------------------------------------------------------------------


def _finite(name: str, value) -> Array:
    """``value`` as a float64 array; a clear error if it holds NaN or infinity."""
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise ValueError(
            f"{name} must be finite, but {bad} of its {arr.size} values are NaN or infinite"
        )
    return arr


def _times(t) -> Array:
    t = _finite("t", t)
    if t.ndim != 1 or len(t) < 1:
        raise ValueError(
            f"t must be a 1-D array of times, got shape {t.shape}"
        )
    if len(t) > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("t must be strictly increasing")
    return t


def _states(x0, d: int) -> Array:
    x0 = _finite("x0", x0)
    if x0.ndim == 0 or x0.shape[-1] != d:
        raise ValueError(
            f"x0 must have shape (..., {d}) for this {d}-dimensional system, got {x0.shape}"
        )
    return x0


# --- the integrator -------------------------------------------------------------------------


def rk4(f: Callable[[Array], Array], x0, t, substeps: int = 10) -> Array:
    """Integrate ``x' = f(x)`` with the classical Runge-Kutta method, for many initial states at once.

    Between consecutive output times ``t[k]`` and ``t[k+1]`` it takes ``substeps`` equal steps
    of size ``h``; each step is

    .. math:: k_1 = f(x),\\ k_2 = f(x + \\tfrac h2 k_1),\\ k_3 = f(x + \\tfrac h2 k_2),\\
              k_4 = f(x + h k_3),\\quad x \\leftarrow x + \\tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4),

    with a global error of order ``h^4``.

    Args:
        f: the vector field, vectorised over leading dimensions: ``(..., d) -> (..., d)``.
        x0: initial states at time ``t[0]``.
        t: increasing output times.
        substeps: Runge-Kutta steps between two output times.

    Shapes:
        x0: ``(..., d)``; t: ``(T,)``; returns ``(..., T, d)`` with ``x[..., 0, :] = x0``.
    """
    t = _times(t)
    x = _finite("x0", x0)
    if x.ndim == 0:
        raise ValueError("x0 must have at least one dimension (the state)")
    if not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise ValueError(
            f"substeps must be a positive integer, got {substeps!r}"
        )
    out = np.empty(x.shape[:-1] + (len(t), x.shape[-1]))
    out[..., 0, :] = x
    for k in range(len(t) - 1):
        h = (t[k + 1] - t[k]) / substeps
        for _ in range(substeps):
            k1 = f(x)
            k2 = f(x + 0.5 * h * k1)
            k3 = f(x + 0.5 * h * k2)
            k4 = f(x + h * k3)
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        out[..., k + 1, :] = x
    return out


def sample_box(
    n: int,
    low: Sequence[float],
    high: Sequence[float],
    rng: np.random.Generator,
    accept: Callable[[Array], Array] | None = None,
) -> Array:
    """``n`` points drawn uniformly from the box ``[low, high]``, keeping only those ``accept`` allows.

    Lusch et al. (2018) draw the initial conditions of their data sets this way (for the
    pendulum, only those with energy below 0.99, so that every trajectory oscillates).

    Shapes:
        returns ``(n, d)`` with ``d = len(low)``.
    """
    low, high = _finite("low", low), _finite("high", high)
    if low.shape != high.shape or low.ndim != 1 or np.any(high <= low):
        raise ValueError(
            f"low and high must be 1-D of the same length with low < high, got {low} and {high}"
        )
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    kept, total, tries = [], 0, 0
    while total < n:
        x = rng.uniform(low, high, size=(2 * n, len(low)))
        if accept is not None:
            x = x[accept(x)]
        kept.append(x)
        total += len(x)
        tries += 1
        if tries > 100 and total == 0:
            raise ValueError("accept rejected every point drawn from the box")
    return np.concatenate(kept)[:n]


# --- systems --------------------------------------------------------------------------------


class System:
    """A system ``x' = f(x)``: subclasses define ``dim`` and ``rhs``."""

    dim: int

    def rhs(self, x: Array) -> Array:
        raise NotImplementedError

    def simulate(self, x0, t, substeps: int = 10) -> Array:
        """Trajectories from ``x0`` at the times ``t`` by :func:`rk4`; shape ``(..., T, d)``."""
        return rk4(self.rhs, _states(x0, self.dim), t, substeps)


@dataclass(frozen=True)
class LinearSystem(System):
    """``x' = A x``, solved exactly by the matrix exponential.

    .. math:: x(t) = e^{(t - t_0) A}\\, x(t_0)

    The eigenvalues ``omega_j`` of ``A`` are the system's continuous-time eigenvalues; sampled
    every ``dt`` the system is the map ``x_{k+1} = e^{dt A} x_k`` with eigenvalues
    ``exp(omega_j dt)``, which exact DMD must recover.

    Args:
        A: the ``(d, d)`` real system matrix.
    """

    A: Array

    def __post_init__(self):
        A = _finite("A", self.A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be a square matrix, got shape {A.shape}")
        object.__setattr__(self, "A", A)

    @property
    def dim(self) -> int:
        return self.A.shape[0]

    @property
    def eigenvalues(self) -> Array:
        """Continuous-time eigenvalues of ``A``, sorted by imaginary then real part."""
        w = np.linalg.eigvals(self.A)
        return w[np.lexsort((w.real, w.imag))]

    def rhs(self, x: Array) -> Array:
        return x @ self.A.T

    def exact(self, x0, t) -> Array:
        """The closed-form solution at the times ``t`` (``x0`` is the state at ``t[0]``); ``(..., T, d)``."""
        x0, t = _states(x0, self.dim), _times(t)
        props = np.stack([expm((s - t[0]) * self.A) for s in t])  # (T, d, d)
        return np.einsum("tij,...j->...ti", props, x0)

    @classmethod
    def from_eigenvalues(
        cls, eigenvalues: Sequence[complex], seed: int = 0
    ) -> LinearSystem:
        """A real system whose ``A`` has exactly these eigenvalues.

        Complex eigenvalues must come in conjugate pairs; each pair ``s +- i w`` becomes the
        real block ``[[s, -w], [w, s]]`` and each real one a 1x1 block; the block-diagonal
        matrix is then rotated by a random orthogonal matrix (seeded), so that ``A`` is dense
        but its eigenvalues are unchanged and well conditioned.
        """
        eigs = np.asarray(eigenvalues, dtype=np.complex128)
        if eigs.ndim != 1 or len(eigs) == 0 or not np.all(np.isfinite(eigs)):
            raise ValueError(
                f"eigenvalues must be a non-empty 1-D list of finite numbers, got {eigenvalues!r}"
            )
        upper = np.sort_complex(eigs[eigs.imag > 0])
        lower = np.sort_complex(np.conj(eigs[eigs.imag < 0]))
        if len(upper) != len(lower) or not np.allclose(upper, lower):
            raise ValueError(
                f"complex eigenvalues must come in conjugate pairs, got {eigenvalues!r}"
            )
        blocks = [np.array([[z.real]]) for z in eigs[eigs.imag == 0]]
        blocks += [
            np.array([[z.real, -z.imag], [z.imag, z.real]]) for z in upper
        ]
        B = np.zeros((len(eigs), len(eigs)))
        i = 0
        for b in blocks:
            B[i : i + len(b), i : i + len(b)] = b
            i += len(b)
        Q, _ = np.linalg.qr(
            np.random.default_rng(seed).standard_normal((len(eigs), len(eigs)))
        )
        return cls(Q @ B @ Q.T)


@dataclass(frozen=True)
class SlowManifold(System):
    """The slow-manifold system of Brunton et al. (2016) and Lusch et al. (2018).

    .. math:: \\dot x = \\mu x, \\qquad \\dot y = \\lambda (y - x^2).

    For ``lam << mu < 0`` trajectories fall quickly onto the slow manifold
    ``y = b x^2``, ``b = lam / (lam - 2 mu)``, and then decay slowly along it. The closed form is

    .. math:: x(t) = x_0 e^{\\mu t}, \\qquad
              y(t) = (y_0 - b x_0^2)\\, e^{\\lambda t} + b x_0^2 e^{2\\mu t},

    which shows three Koopman eigenfunctions: ``x`` (eigenvalue ``mu``), ``y - b x^2``
    (``lam``) and ``x^2`` (``2 mu``). ``span{x, y, x^2}`` is invariant under the Koopman
    operator, so EDMD with that dictionary is exact.

    Args:
        mu: the slow rate (default -0.05, as in Lusch et al.).
        lam: the fast rate (default -1).
    """

    mu: float = -0.05
    lam: float = -1.0
    dim = 2

    def __post_init__(self):
        for name in ("mu", "lam"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(
                    f"{name} must be finite, got {getattr(self, name)!r}"
                )
        if self.lam == 2 * self.mu:
            raise ValueError(
                f"lam must differ from 2 mu (resonance), got mu={self.mu}, lam={self.lam}"
            )

    @property
    def b(self) -> float:
        """The slow manifold ``y = b x^2``."""
        return self.lam / (self.lam - 2 * self.mu)

    @property
    def eigenvalues(self) -> Array:
        """The eigenvalues of the invariant subspace ``span{x, y, x^2}``: ``(mu, lam, 2 mu)``."""
        return np.array([self.mu, self.lam, 2 * self.mu])

    def eigenfunctions(self, x) -> Array:
        """``(x, y - b x^2, x^2)`` at the states ``x``: shape ``(..., 3)``, eigenvalues :attr:`eigenvalues`."""
        x = _states(x, 2)
        return np.stack(
            [x[..., 0], x[..., 1] - self.b * x[..., 0] ** 2, x[..., 0] ** 2],
            axis=-1,
        )

    def rhs(self, x: Array) -> Array:
        return np.stack(
            [self.mu * x[..., 0], self.lam * (x[..., 1] - x[..., 0] ** 2)],
            axis=-1,
        )

    def exact(self, x0, t) -> Array:
        """The closed-form solution at the times ``t`` (``x0`` at ``t[0]``); ``(..., T, 2)``."""
        x0, t = _states(x0, 2), _times(t)
        s = t - t[0]
        a, c = x0[..., :1], x0[..., 1:]  # (..., 1)
        x = a * np.exp(self.mu * s)
        y = (c - self.b * a**2) * np.exp(
            self.lam * s
        ) + self.b * a**2 * np.exp(2 * self.mu * s)
        return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class Pendulum(System):
    """The frictionless pendulum ``theta'' = -sin(theta)``, state ``(theta, theta')``.

    Its energy ``H = theta'^2 / 2 - cos(theta)`` is conserved. Below the separatrix
    (``H < 1``) it oscillates with amplitude ``theta_max = arccos(-H)``, and with
    ``k = sin(theta_max / 2)`` the solution is

    .. math:: \\sin\\frac{\\theta(t)}{2} = k\\,\\mathrm{sn}(t + u_0 \\mid k^2), \\qquad
              \\theta'(t) = 2k\\,\\mathrm{cn}(t + u_0 \\mid k^2),

    with period ``T = 4 K(k^2)`` (``K`` the complete elliptic integral of the first kind). The
    frequency ``2 pi / T`` falls from 1 at small amplitude towards 0 at the separatrix: every
    energy level has its own frequency, a continuous spectrum.
    """

    dim = 2

    def rhs(self, x: Array) -> Array:
        return np.stack([x[..., 1], -np.sin(x[..., 0])], axis=-1)

    @staticmethod
    def energy(x) -> Array:
        """``H = theta'^2 / 2 - cos(theta)`` at the states ``x``; shape ``(...)``."""
        x = _states(x, 2)
        return 0.5 * x[..., 1] ** 2 - np.cos(x[..., 0])

    @staticmethod
    def _modulus(energy) -> Array:
        energy = _finite("energy", energy)
        if np.any(energy >= 1) or np.any(energy < -1):
            raise ValueError(
                f"energy must lie in [-1, 1) (oscillations below the separatrix), got values in "
                f"[{energy.min():.4g}, {energy.max():.4g}]"
            )
        return np.sqrt(
            (1 + energy) / 2
        )  # k = sin(theta_max / 2), since cos(theta_max) = -energy

    @classmethod
    def period(cls, energy) -> Array:
        """The oscillation period ``4 K(k^2)`` at energy ``H`` in ``[-1, 1)``."""
        return 4 * ellipk(cls._modulus(energy) ** 2)

    @classmethod
    def frequency(cls, energy) -> Array:
        """The angular frequency ``2 pi / T`` at energy ``H``: 1 at the bottom, 0 at the separatrix."""
        return 2 * np.pi / cls.period(energy)

    def exact(self, x0, t) -> Array:
        """The closed-form (elliptic-function) solution at the times ``t``; ``(..., T, 2)``.

        Raises:
            ValueError: if a state has energy 1 or more (it rotates or sits on the separatrix).
        """
        x0, t = _states(x0, 2), _times(t)
        k = self._modulus(self.energy(x0))[..., None]  # (..., 1)
        m = k**2
        # u0 solves k sn(u0) = sin(theta0 / 2), 2k cn(u0) = theta0'
        ratio = np.clip(
            np.sin(x0[..., :1] / 2) / np.where(k > 0, k, 1.0), -1.0, 1.0
        )
        u0 = ellipkinc(np.arcsin(ratio), m)
        u0 = np.where(
            x0[..., 1:] < 0, 2 * ellipk(m) - u0, u0
        )  # cn(2K - u) = -cn(u)
        sn, cn, _, _ = ellipj(u0 + (t - t[0]), m)  # (..., T)
        return np.stack(
            [2 * np.arcsin(np.clip(k * sn, -1.0, 1.0)), 2 * k * cn], axis=-1
        )

"""The Burgers reference solvers against closed forms, adaptive quadrature and each other."""

import math

import numpy as np
import pytest

from dlbook.sciml.burgers import (
    NU_RAISSI, cole_hopf_periodic, cole_hopf_sine, heat_mode_solution, koopman_eigenfunctions, periodic_grid, raissi_grid,
    random_initial_conditions, sine_series, solve_periodic, traveling_wave,
)


def _fd_residual(u, x, t, nu, h=1e-4):
    """Burgers residual of a closed form ``u(x, t)`` by central differences."""
    u_t = (u(x, t + h) - u(x, t - h)) / (2 * h)
    u_x = (u(x + h, t) - u(x - h, t)) / (2 * h)
    u_xx = (u(x + h, t) - 2 * u(x, t) + u(x - h, t)) / h**2
    return u_t + u(x, t) * u_x - nu * u_xx, np.abs(u_t).max()


@pytest.mark.parametrize("form", ["traveling_wave", "heat_mode"])
def test_closed_forms_solve_burgers(form):
    nu = 0.1
    x, t = np.meshgrid(np.linspace(-2, 2, 41), np.linspace(0.1, 1.0, 10))
    u = (lambda x, t: traveling_wave(x, t, nu, c=0.3, a=0.8)) if form == "traveling_wave" else \
        (lambda x, t: heat_mode_solution(x, t, nu, k=2, a=1.5, b=1.0))
    r, scale = _fd_residual(u, x, t, nu)
    assert np.abs(r).max() < 1e-6 * max(scale, 1.0)
    # and a wrong viscosity leaves a residual far above that
    r_wrong, _ = _fd_residual(u, x, t, 2 * nu)
    assert np.abs(r_wrong).max() > 1e-3


def test_cole_hopf_sine_initial_boundary_and_symmetry():
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(cole_hopf_sine(x, 0.0), -np.sin(np.pi * x), atol=1e-14)
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(cole_hopf_sine(np.array([-1.0, 1.0])[:, None], t), 0.0, atol=1e-12)
    np.testing.assert_allclose(cole_hopf_sine(x, 0.7), -cole_hopf_sine(-x, 0.7), atol=1e-13)  # odd in x


def _trapezoid_reference(x, t, nu=NU_RAISSI, m=40001):
    """The Cole-Hopf integrals in the original variable eta by the trapezoid rule on a fine grid.

    The integrands are smooth and decay like a Gaussian, so the trapezoid rule converges
    exponentially (Trefethen & Weideman 2014); it shares nothing with Gauss-Hermite but the formula.
    """
    s = math.sqrt(4 * nu * t)
    eta = np.linspace(-12 * s, 12 * s, m)
    expo = -np.cos(np.pi * (x - eta)) / (2 * np.pi * nu) - (eta / s) ** 2
    w = np.exp(expo - expo.max())
    return -(np.sin(np.pi * (x - eta)) * w).sum() / w.sum()


@pytest.mark.parametrize("t", [0.05, 0.3, 0.99])
def test_cole_hopf_sine_equals_trapezoid_reference(t):
    xs = np.array([-0.7, -0.05, -0.004, 0.0, 0.002, 0.01, 0.4, 0.95])
    ref = np.array([_trapezoid_reference(x, t) for x in xs])
    np.testing.assert_allclose(cole_hopf_sine(xs, t), ref, atol=1e-13, rtol=0)


def test_cole_hopf_sine_quadrature_converged():
    x = np.linspace(-1, 1, 801)
    for t in (0.25, 0.99):
        np.testing.assert_allclose(cole_hopf_sine(x, t, n_quad=200), cole_hopf_sine(x, t, n_quad=600), atol=1e-12, rtol=0)
    # too few nodes miss the steep integrand near the shock: the test can see a wrong answer
    assert np.abs(cole_hopf_sine(x, 0.99, n_quad=20) - cole_hopf_sine(x, 0.99)).max() > 1e-3


@pytest.mark.parametrize("nu", [0.2 / math.pi, 0.1 / math.pi])
def test_cole_hopf_sine_equals_fourier_bessel_series(nu):
    x, t = np.linspace(-1, 1, 201), np.linspace(0, 1, 11)[:, None]
    np.testing.assert_allclose(cole_hopf_sine(x, t, nu), sine_series(x, t, nu), atol=1e-10, rtol=0)


@pytest.mark.parametrize("n, tol", [(1024, 1e-4), (2048, 1e-8)])
def test_spectral_solver_equals_cole_hopf_on_the_benchmark(n, tol):
    x = periodic_grid(n, 2.0, -1.0)
    t = np.linspace(0, 1, 6)
    u = solve_periodic(-np.sin(np.pi * x), t, NU_RAISSI, length=2.0)
    np.testing.assert_allclose(u, cole_hopf_sine(x[None], t[:, None]), atol=tol, rtol=0)


def test_spectral_solver_equals_heat_mode_closed_form():
    nu, x, t = 0.1, periodic_grid(128), np.linspace(0, 3, 7)  # 2/3 of 128 modes resolve it to 1e-12
    u = solve_periodic(heat_mode_solution(x, 0.0, nu, k=2), t, nu, dt=2e-3)
    np.testing.assert_allclose(u, heat_mode_solution(x[None], t[:, None], nu, k=2), atol=1e-11, rtol=0)


def test_spectral_and_cole_hopf_periodic_agree_on_random_states():
    nu, t = 0.1, np.linspace(0, 2, 5)
    u0 = random_initial_conditions(6, 256, seed=3)
    spectral = solve_periodic(u0, t, nu)
    assert spectral.shape == (6, 5, 256)
    np.testing.assert_allclose(spectral, cole_hopf_periodic(u0, t, nu), atol=1e-7, rtol=0)
    np.testing.assert_allclose(solve_periodic(u0[2], t, nu), spectral[2], atol=1e-12)  # batch == single


def test_koopman_eigenfunctions_evolve_linearly():
    nu, length, t = 0.2, 3.0, np.linspace(0, 2, 5)
    u = solve_periodic(random_initial_conditions(3, 128, seed=4, length=length), t, nu, length=length)  # (3, 5, 128)
    g = koopman_eigenfunctions(u, nu, k_max=4, length=length)  # (3, 5, 4)
    k = 2 * np.pi * np.arange(1, 5) / length
    np.testing.assert_allclose(g, g[:, :1] * np.exp(-nu * k**2 * t[:, None]), rtol=1e-6, atol=1e-9)
    # the Fourier coefficients of u itself do not: Burgers is nonlinear
    u_hat = np.fft.rfft(u)[..., 1:5]
    assert np.abs(u_hat - u_hat[:, :1] * np.exp(-nu * k**2 * t[:, None])).max() > 0.05 * np.abs(u_hat).max()


def test_raissi_grid_shapes_and_values():
    x, t, u = raissi_grid()
    assert x.shape == (256,) and t.shape == (100,) and u.shape == (100, 256)
    assert t[-1] == pytest.approx(0.99) and np.abs(u).max() <= 1.0
    np.testing.assert_allclose(u[0], -np.sin(np.pi * x), atol=1e-14)


def test_random_initial_conditions():
    u0 = random_initial_conditions(10, 32, amplitude=0.7, seed=1)
    assert u0.shape == (10, 32)
    np.testing.assert_allclose(np.abs(u0).max(1), 0.7)
    np.testing.assert_allclose(u0.mean(1), 0.0, atol=1e-12)
    np.testing.assert_array_equal(u0, random_initial_conditions(10, 32, amplitude=0.7, seed=1))


@pytest.mark.parametrize("call, match", [
    (lambda: solve_periodic(np.array([0.0, np.nan, 1.0, 0.0]), [0, 1], 0.1), "u0 must be finite"),
    (lambda: solve_periodic(np.zeros(8), [0.5, 1.0], 0.1), "starting at 0"),
    (lambda: solve_periodic(np.zeros(8), [0.0, 1.0, 0.5], 0.1), "increasing"),
    (lambda: solve_periodic(np.zeros((2, 3, 8)), [0.0], 0.1), r"shape \(n,\) or \(B, n\)"),
    (lambda: solve_periodic(np.zeros(8), [0.0, 1.0], -0.1), "nu must be a positive number"),
    (lambda: cole_hopf_periodic(np.ones(8), [0.0], 0.1), "zero mean"),
    (lambda: cole_hopf_sine(0.0, -1.0), "t must be >= 0"),
    (lambda: cole_hopf_sine(np.inf, 0.5), "x must be finite"),
    (lambda: heat_mode_solution(0.0, 0.0, 0.1, a=1.0, b=1.0), "a > |b|"),
    (lambda: periodic_grid(2), "n must be an integer >= 4"),
])
def test_bad_inputs_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""The simulators against their closed forms: linear systems, the slow manifold, the pendulum."""

import numpy as np
import pytest
from scipy.special import ellipk

from dlbook.sciml.systems import LinearSystem, Pendulum, SlowManifold, rk4, sample_box

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("eigenvalues", [[-0.5, -2.0], [-0.1 + 2j, -0.1 - 2j, -0.3], [0.5j, -0.5j, -0.05 + 3j, -0.05 - 3j]])
def test_linear_system_has_the_requested_eigenvalues(eigenvalues):
    system = LinearSystem.from_eigenvalues(eigenvalues, seed=3)
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(system.A)), np.sort_complex(np.array(eigenvalues)), atol=1e-12)
    assert np.isrealobj(system.A) and system.dim == len(eigenvalues)


def test_linear_system_rk4_equals_matrix_exponential():
    system = LinearSystem.from_eigenvalues([-0.1 + 2j, -0.1 - 2j, -0.5, 0.3j, -0.3j])
    t = np.linspace(0, 10, 201)
    x0 = RNG.standard_normal((4, 5))
    exact = system.exact(x0, t)
    assert exact.shape == (4, 201, 5)
    np.testing.assert_allclose(exact[:, 0], x0)
    np.testing.assert_allclose(system.simulate(x0, t, substeps=10), exact, atol=1e-8)


def test_rk4_is_fourth_order():
    system = SlowManifold(mu=-0.3, lam=-2.0)
    x0, t = np.array([0.8, -0.4]), np.array([0.0, 2.0])
    errors = [np.abs(system.simulate(x0, t, substeps=n)[-1] - system.exact(x0, t)[-1]).max() for n in (10, 20)]
    assert 12 < errors[0] / errors[1] < 20  # halving h divides the error by ~2^4 = 16


def test_slow_manifold_closed_form_and_eigenfunctions():
    system = SlowManifold()
    t = np.arange(101) * 0.05
    x0 = sample_box(20, [-0.5, -0.5], [0.5, 0.5], RNG)
    exact = system.exact(x0, t)
    np.testing.assert_allclose(system.simulate(x0, t, substeps=4), exact, atol=1e-10)
    # each eigenfunction evolves as exp(eigenvalue * t) along every trajectory
    phi0, phi = system.eigenfunctions(x0), system.eigenfunctions(exact)  # (N, 3), (N, T, 3)
    np.testing.assert_allclose(phi, phi0[:, None, :] * np.exp(np.outer(t, system.eigenvalues))[None], atol=1e-12)
    np.testing.assert_allclose(system.eigenvalues, [-0.05, -1.0, -0.1])


def test_pendulum_closed_form_energy_and_period():
    system = Pendulum()
    x0 = sample_box(30, [-3.1, -2.0], [3.1, 2.0], RNG, accept=lambda x: Pendulum.energy(x) <= 0.99)
    assert (Pendulum.energy(x0) <= 0.99).all()
    t = np.arange(1001) * 0.02
    exact = system.exact(x0, t)
    np.testing.assert_allclose(exact[:, 0], x0, atol=1e-12)
    np.testing.assert_allclose(system.simulate(x0, t, substeps=5), exact, atol=1e-7)
    np.testing.assert_allclose(Pendulum.energy(exact), Pendulum.energy(x0)[:, None] * np.ones(len(t)), atol=1e-12)
    # small oscillations have period 2 pi; theta_max = pi/2 has period 4 K(1/2) = 7.416...
    assert Pendulum.period(-1 + 1e-10) == pytest.approx(2 * np.pi, rel=1e-8)
    assert Pendulum.period(0.0) == pytest.approx(4 * ellipk(0.5), rel=1e-12)
    # the exact solution returns to its start after one period
    x_start = np.array([[1.2, 0.3]])
    T = Pendulum.period(Pendulum.energy(x_start))[0]
    np.testing.assert_allclose(system.exact(x_start, np.array([0.0, T]))[0, -1], x_start[0], atol=1e-9)


def test_frequency_falls_with_energy():
    energies = np.linspace(-0.99, 0.99, 50)
    freq = Pendulum.frequency(energies)
    assert np.all(np.diff(freq) < 0) and freq[0] == pytest.approx(1, abs=0.01) and freq[-1] < 0.6


@pytest.mark.parametrize("bad, message", [
    (dict(x0=[np.nan, 0.0]), "x0 must be finite"),
    (dict(x0=[0.1, 0.2, 0.3]), r"x0 must have shape \(\.\.\., 2\)"),
    (dict(t=[0.0, 1.0, 0.5]), "strictly increasing"),
    (dict(t=[[0.0, 1.0]]), "1-D array of times"),
    (dict(substeps=0), "substeps must be a positive integer"),
])
def test_bad_inputs_give_clear_errors(bad, message):
    args = dict(x0=[0.1, 0.2], t=[0.0, 0.5, 1.0], substeps=2) | bad
    with pytest.raises(ValueError, match=message):
        SlowManifold().simulate(**args)


def test_bad_system_parameters():
    with pytest.raises(ValueError, match="conjugate pairs"):
        LinearSystem.from_eigenvalues([-1 + 1j, -2.0])
    with pytest.raises(ValueError, match="square matrix"):
        LinearSystem(np.ones((2, 3)))
    with pytest.raises(ValueError, match="resonance"):
        SlowManifold(mu=-0.5, lam=-1.0)
    with pytest.raises(ValueError, match="below the separatrix"):
        Pendulum().exact([[0.0, 3.0]], [0.0, 1.0])  # energy 3.5: the pendulum rotates
    with pytest.raises(ValueError, match="low < high"):
        sample_box(3, [1.0], [0.0], RNG)


def test_rk4_accepts_any_batch_shape():
    out = rk4(lambda x: -x, np.ones((3, 4, 2)), np.linspace(0, 1, 6), substeps=4)
    assert out.shape == (3, 4, 6, 2)
    np.testing.assert_allclose(out[..., -1, :], np.exp(-1.0), rtol=1e-6)

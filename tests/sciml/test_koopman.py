"""Exact DMD against known eigenvalues and PyDMD; EDMD against the slow manifold's exact spectrum and PyKoopman."""

import warnings

import numpy as np
import pytest
import torch
from pydmd import DMD

from dlbook.sciml.koopman import Dictionary, dmd, edmd, import_pykoopman, truncated_svd
from dlbook.sciml.systems import LinearSystem, SlowManifold, sample_box

EIGS = np.array([-0.1 + 2j, -0.1 - 2j, -0.3 + 5j, -0.3 - 5j, -0.02 + 0.7j, -0.02 - 0.7j])
DT = 0.05


def _sensor_data(eigs=EIGS, n_sensors=64, n_snapshots=150, noise=0.0, seed=0):
    """A linear system with known eigenvalues, observed through n_sensors smooth sensor profiles."""
    rng = np.random.default_rng(seed)
    system = LinearSystem.from_eigenvalues(eigs, seed=seed)
    z = system.exact(rng.standard_normal(len(eigs)), np.arange(n_snapshots) * DT)  # (T, r)
    C = np.linalg.qr(rng.standard_normal((n_sensors, len(eigs))))[0]  # (n, r)
    return C @ z.T + noise * rng.standard_normal((n_sensors, n_snapshots))


def _slow_manifold_pairs(n=60, steps=40, dt=0.02, seed=0):
    system = SlowManifold()
    x0 = sample_box(n, [-0.5, -0.5], [0.5, 0.5], np.random.default_rng(seed))
    traj = system.exact(x0, np.arange(steps + 1) * dt)
    return traj[:, :-1].reshape(-1, 2), traj[:, 1:].reshape(-1, 2), system


def _pykoopman_edmd(X, Y, dt):
    pk = import_pykoopman()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = pk.observables.CustomObservables([lambda x, y: x**2])  # [x, y, x^2]
        return pk.Koopman(observables=obs, regressor=pk.regression.EDMD()).fit(X, y=Y, dt=dt)


def _match(a, b):
    """Pair each eigenvalue of b with the nearest of a; the largest distance."""
    return max(np.abs(a - z).min() for z in b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dmd_recovers_known_eigenvalues(seed):
    result = dmd(_sensor_data(seed=seed), rank=6, dt=DT)
    assert result.rank == 6 and result.modes.shape == (64, 6)
    assert _match(result.continuous_eigenvalues.numpy(), EIGS) < 1e-8
    assert _match(result.eigenvalues.numpy(), np.exp(EIGS * DT)) < 1e-10


def test_dmd_equals_pydmd():
    X = _sensor_data()
    ours = dmd(X, rank=6, dt=DT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyDMD warns about the condition number of rank-6 data
        ref = DMD(svd_rank=6, exact=True).fit(X)
    order = [int(np.argmin(np.abs(ref.eigs - z))) for z in ours.eigenvalues.numpy()]
    torch.testing.assert_close(ours.eigenvalues, torch.from_numpy(ref.eigs[order]), atol=1e-12, rtol=0)
    # modes agree up to a complex scale (PyDMD's exact modes omit Tu et al.'s 1/lambda, and both are free in scale)
    for j, k in enumerate(order):
        a, b = ours.modes[:, j].numpy(), ref.modes[:, k]
        scale = np.vdot(b, a) / np.vdot(b, b)
        np.testing.assert_allclose(a, scale * b, atol=1e-10 * np.abs(a).max())
    np.testing.assert_allclose(ours.reconstruct(X.shape[1]).numpy(), ref.reconstructed_data.real, atol=1e-10)
    np.testing.assert_allclose(ours.reconstruct(X.shape[1]).numpy(), X, atol=1e-10)


def test_dmd_with_explicit_pairs_and_projected_modes():
    X = _sensor_data()
    a = dmd(X, rank=6, dt=DT)
    b = dmd(X[:, :-1], X[:, 1:], rank=6, dt=DT, exact=False)
    torch.testing.assert_close(a.eigenvalues, b.eigenvalues)
    # on noise-free data in the range of U, projected and exact modes span the same space
    P = torch.linalg.lstsq(b.modes, a.modes).solution
    torch.testing.assert_close(b.modes @ P, a.modes, atol=1e-10, rtol=0)


def test_dmd_predicts_from_a_new_initial_state():
    system = LinearSystem.from_eigenvalues(EIGS[:4], seed=5)
    t = np.arange(80) * DT
    X = system.exact(np.ones(4), t).T  # the full state is observed: (4, 80)
    result = dmd(X, dt=DT)
    x_new = np.array([0.3, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(result.predict(x_new, 80).numpy(), system.exact(x_new, t).T, atol=1e-9)


def test_rank_truncation_with_noise():
    X = _sensor_data(noise=1e-3)
    s = truncated_svd(torch.from_numpy(X), None)[3]
    assert s[5] / s[6] > 20  # six directions carry the signal, the rest is noise
    result = dmd(X, rank=6, dt=DT)
    assert _match(result.continuous_eigenvalues.numpy(), EIGS) < 0.05
    assert dmd(X, rank=0.999, dt=DT).rank == 6  # 99.9% of the energy: the signal, not the noise


def test_edmd_recovers_slow_manifold_eigenvalues():
    X, Y, system = _slow_manifold_pairs()
    result = edmd(X, Y, Dictionary.polynomial([(1, 0), (0, 1), (2, 0)]), dt=0.02)
    np.testing.assert_allclose(np.sort(result.continuous_eigenvalues.real.numpy()), np.sort(system.eigenvalues), atol=1e-8)
    assert np.abs(result.continuous_eigenvalues.imag.numpy()).max() < 1e-10
    # the eigenfunction of lam is y - b x^2: its coefficients are proportional to (0, 1, -b)
    xi = result.eigenvectors[:, np.argmin(np.abs(result.continuous_eigenvalues.numpy() - system.lam))].real.numpy()
    np.testing.assert_allclose(xi / xi[1], [0.0, 1.0, -system.b], atol=1e-8)
    # and the model predicts whole trajectories
    x0 = np.array([[0.4, -0.3], [-0.2, 0.5]])
    exact = system.exact(x0, np.arange(200) * 0.02)
    np.testing.assert_allclose(result.predict(x0, 200).numpy(), exact, atol=1e-8)


def test_edmd_equals_pykoopman():
    X, Y, _ = _slow_manifold_pairs()
    ours = edmd(X, Y, Dictionary.polynomial([(1, 0), (0, 1), (2, 0)]), dt=0.02)
    ref = _pykoopman_edmd(X, Y, dt=0.02)
    theirs = np.linalg.eigvals(ref.A)
    assert _match(ours.eigenvalues.numpy(), theirs) < 1e-12
    # PyKoopman stores A in the basis of the left singular vectors U of the lifted data: K^T = U A U^T
    torch.testing.assert_close(ours.K.T, torch.from_numpy(ref.ur @ ref.A @ ref.ur.T), atol=1e-12, rtol=0)
    torch.testing.assert_close(ours.predict(X[:10], 2)[:, 1], torch.from_numpy(ref.predict(X[:10])), atol=1e-12, rtol=0)


def test_state_only_dictionary_is_plain_dmd_and_misses_the_spectrum():
    X, Y, system = _slow_manifold_pairs()
    lin = edmd(X, Y, Dictionary.polynomial([(1, 0), (0, 1)]), dt=0.02)
    assert torch.allclose(lin.eigenvalues, dmd(X.T, Y.T, dt=0.02).eigenvalues)
    assert _match(lin.continuous_eigenvalues.real.numpy(), [system.mu, system.lam]) > 1e-3  # x^2 is missing


def test_monomials_dictionary():
    d = Dictionary.monomials(2, constant=True)
    assert d.names == ["1", "x", "y", "x^2", "x y", "y^2"]
    x = torch.tensor([[2.0, 3.0]])
    torch.testing.assert_close(d(x), torch.tensor([[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]], dtype=torch.float64))


@pytest.mark.parametrize("call, message", [
    (lambda X: dmd(np.where(np.arange(X.size).reshape(X.shape) == 17, np.nan, X)), "X must be finite"),
    (lambda X: dmd(X, np.inf * X), "Y must be finite"),
    (lambda X: dmd(X[:, :-1], X[:, 1:-1]), "same shape"),
    (lambda X: dmd(X, rank=200), "larger than the data allow"),
    (lambda X: dmd(X, rank=7), "larger than the numerical rank"),
    (lambda X: dmd(X, rank=0), "larger than the data allow"),
    (lambda X: dmd(X, rank=1.5), "fraction"),
    (lambda X: dmd(X[:, :1]), "at least 2 snapshots"),
    (lambda X: dmd(X[0]), "2-D matrix"),
    (lambda X: dmd(X, dt=0.0), "dt must be a positive number"),
    (lambda X: dmd(np.zeros_like(X)), "is zero"),
])
def test_dmd_bad_inputs_give_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(_sensor_data())


def test_edmd_bad_inputs_give_clear_errors():
    X, Y, _ = _slow_manifold_pairs()
    d = Dictionary.polynomial([(1, 0), (0, 1), (2, 0)])
    with pytest.raises(ValueError, match="same shape"):
        edmd(X, Y[:-1], d)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        edmd(np.ones((5, 3)), np.ones((5, 3)), d)
    with pytest.raises(ValueError, match="Y must be finite"):
        edmd(X, np.where(Y > 0.4, np.inf, Y), d)
    with pytest.raises(ValueError, match="numerical rank of Psi_X"):
        edmd(X, Y, Dictionary.polynomial([(1, 0), (0, 1), (1, 0)]), rank=3)  # x twice: rank 2
    with pytest.raises(ValueError, match="dictionary produced NaN"):
        edmd(X, Y, Dictionary([lambda s: torch.log(s[:, 0])], ["log x"], 2))

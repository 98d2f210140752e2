"""Property-based test (Hypothesis): exact DMD of random linear systems recovers their spectrum,
agrees with PyDMD, and reconstructs the data."""

import cmath
import warnings

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydmd import DMD

from dlbook.sciml.koopman import dmd


# Eigenvalues of magnitude 0.05 to 0.95 (0 itself is appended on purpose
# below); no subnormal floats, whose powers underflow in one step.
_real_eigenvalue = st.floats(-0.95, 0.95).filter(lambda x: abs(x) >= 0.05)


@st.composite
def linear_systems(draw):
    """A real n x n map with known, well-separated eigenvalues (conjugate pairs and reals, maybe 0)."""
    pairs = draw(st.integers(0, 2))
    reals = draw(st.lists(_real_eigenvalue, min_size=0 if pairs else 1, max_size=3))
    if draw(st.booleans()):
        reals.append(0.0)
    eigs = [complex(x) for x in reals]
    blocks = []
    for _ in range(pairs):
        z = cmath.rect(draw(st.floats(0.5, 1.0)), draw(st.floats(0.2, 2.8)))
        eigs += [z, z.conjugate()]
        blocks.append(np.array([[z.real, -z.imag], [z.imag, z.real]]))
    gaps = [abs(a - b) for i, a in enumerate(eigs) for b in eigs[i + 1:]]
    assume(min(gaps, default=1.0) > 0.1)
    n = len(eigs)
    D = np.zeros((n, n))
    k = 0
    for b in blocks:
        D[k:k + 2, k:k + 2] = b
        k += 2
    for x in reals:
        D[k, k] = x
        k += 1
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    V = rng.standard_normal((n, n))
    assume(np.linalg.cond(V) < 50)
    return V @ D @ np.linalg.inv(V), np.array(eigs), rng.standard_normal(n)


def _match(found, expected):
    return max(min(abs(f - e) for f in found) for e in expected)


@settings(max_examples=25)
@given(linear_systems())
def test_dmd_recovers_the_spectrum_agrees_with_pydmd_and_reconstructs(system):
    A, eigs, x0 = system
    n = len(eigs)
    snaps = [x0]
    for _ in range(2 * n + 2):
        snaps.append(A @ snaps[-1])
    X = np.stack(snaps, axis=1)
    result = dmd(X)
    found = result.eigenvalues.numpy()
    nonzero = eigs[np.abs(eigs) > 0]  # a zero eigenvalue leaves the data after one step
    if len(nonzero):
        assert _match(found, nonzero) < 1e-7
    np.testing.assert_allclose(result.reconstruct(X.shape[1]).numpy(), X, atol=1e-8 * np.abs(X).max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = DMD(svd_rank=result.rank, exact=True).fit(X)
    if len(nonzero):
        assert _match(found[np.abs(found) > 1e-8], ref.eigs[np.abs(ref.eigs) > 1e-8]) < 1e-8

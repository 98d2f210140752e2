"""DMD on data with an exact zero eigenvalue, and what it refuses (reliability probe, issue 13)."""

import pytest
import torch

from dlbook.sciml.koopman import dmd


def test_an_exact_zero_eigenvalue_gives_finite_modes_and_an_exact_reconstruction():
    """Probe: exact modes divided by lambda = 0, and lstsq then hit an internal assert."""
    X = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])  # x1 = 0: the system forgets in one step
    result = dmd(X)
    assert result.eigenvalues.abs().max() == 0
    assert torch.isfinite(torch.view_as_real(result.modes)).all()
    torch.testing.assert_close(result.reconstruct(3), X.double())


def test_a_zero_eigenvalue_beside_others_keeps_them_exact():
    A = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    V = torch.tensor([[1.0, 0.3, 0.2], [0.1, 1.0, 0.4], [0.5, 0.2, 1.0]], dtype=torch.float64)
    M = V @ A @ torch.linalg.inv(V)
    x = [torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)]
    for _ in range(6):
        x.append(M @ x[-1])
    X = torch.stack(x, dim=1)
    result = dmd(X[:, :-1], X[:, 1:])
    torch.testing.assert_close(result.reconstruct(7), X, atol=1e-10, rtol=0)
    eigs = sorted(result.eigenvalues.real.tolist())
    assert eigs[0] == pytest.approx(0.0, abs=1e-10) and eigs[1:] == pytest.approx([0.5, 0.9], abs=1e-10)


@pytest.mark.parametrize("value, exc, match", [
    (None, TypeError, "X must be a matrix of numbers"),  # was "Could not infer dtype of NoneType"
    ("abc", TypeError, "X must be a matrix of numbers"),
    (torch.ones(2, 3, dtype=torch.bool), TypeError, "X must hold numbers, got dtype torch.bool"),
])
def test_dmd_refuses_what_is_not_a_matrix_of_numbers(value, exc, match):
    with pytest.raises(exc, match=match):
        dmd(value)

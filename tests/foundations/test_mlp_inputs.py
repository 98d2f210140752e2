"""What the MLP chapter's functions refuse (reliability probe, issue 13)."""

import pytest
import torch
import torch.nn.functional as F

from dlbook.foundations.mlp import (
    GDConfig, MLP, MLPConfig, count_params, fit_logistic_regression, fit_softmax_regression, relu, softmax,
    softmax_nll, width_for_budget,
)


def test_relu_keeps_nan_as_torch_does():
    """Probe: relu(NaN) was 0, which hides a diverging network."""
    x = torch.tensor([float("nan"), -1.0, 0.0, 2.0, float("-inf"), float("inf")])
    out = relu(x)
    assert torch.equal(out.isnan(), F.relu(x).isnan())
    torch.testing.assert_close(out, F.relu(x), equal_nan=True)


def test_softmax_refuses_none_and_empty():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got None"):  # was AttributeError
        softmax(None)
    with pytest.raises(ValueError, match="at least one entry along dim=-1"):
        softmax(torch.zeros(2, 0))
    with pytest.raises(TypeError, match="floating"):
        softmax(torch.tensor([1, 2]))


def test_softmax_nll_refuses_labels_outside_the_classes():
    X, W, b = torch.randn(3, 2), torch.zeros(2, 2), torch.zeros(2)
    for y in ([0, 1, 5], [0, -1, 1]):
        with pytest.raises(ValueError, match=r"y must hold labels in \[0, 2\)"):
            softmax_nll(W, b, X, torch.tensor(y))


def test_fits_refuse_empty_and_non_finite_data():
    with pytest.raises(ValueError, match="X must not be empty"):
        fit_softmax_regression(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    X = torch.randn(6, 2)
    X[0, 0] = float("nan")
    with pytest.raises(ValueError, match="X must be finite, but 1 of its 12 entries"):
        fit_logistic_regression(X, torch.tensor([0, 1, 0, 1, 0, 1]))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lr=float("nan")), ValueError, "lr must be a finite number > 0"),
    (dict(lr=0.0), ValueError, "lr must be a finite number > 0"),
    (dict(steps=-1), ValueError, "steps must be an integer >= 0"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
])
def test_gd_config_is_validated(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GDConfig(**kwargs)


def test_count_params_refuses_negative_widths():
    """Probe: count_params(4, [-5], 3) returned a negative parameter count."""
    with pytest.raises(ValueError, match=r"hidden\[0\] must be an integer >= 1, got -5"):
        count_params(4, [-5], 3)
    with pytest.raises(TypeError, match="d_in must be an integer"):
        count_params(4.5, [5], 3)
    assert count_params(4, [5], 3) == 5 * 5 + 6 * 3


def test_mlp_config_and_budget_are_validated():
    with pytest.raises(ValueError, match="d_in must be an integer >= 1"):
        MLP(MLPConfig(d_in=0))
    with pytest.raises(TypeError, match=r"hidden\[0\] must be an integer"):
        MLPConfig(hidden=(2.5,))
    with pytest.raises(TypeError, match="depth must be an integer"):
        width_for_budget(10_000, 1.5)

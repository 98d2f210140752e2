"""What k-NN, the penalties, FISTA, early stopping and the MLP refuse (reliability probe, issue 13: defect 17)."""

import numpy as np
import pytest
import torch

from dlbook.regularization.regularization import (
    EarlyStopping, MLP, MLPConfig, Penalty, knn_predict, l1_logistic_regression, soft_threshold, weight_stats,
)

NAN = float("nan")


def _knn_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(20, 3, generator=g), torch.arange(20) % 3


def test_knn_refuses_nan_queries_and_nan_training_points():
    """Probe: a NaN query got a label, and a NaN training row was silently never a neighbour."""
    x, y = _knn_data()
    q = torch.randn(2, 3)
    q[1, 0] = NAN
    with pytest.raises(ValueError, match="x_query must be finite, but 1 of its 6 entries"):
        knn_predict(x, y, q, 3)
    x[4, 2] = NAN
    with pytest.raises(ValueError, match="x_train must be finite"):
        knn_predict(x, y, torch.randn(2, 3), 3)


@pytest.mark.parametrize("k", [np.int64(3), torch.tensor(3)])
def test_knn_takes_numpy_and_tensor_integers(k):
    """Probe: knn_predict(k=np.int64(3)) failed with "'numpy.int64' object is not iterable"."""
    x, y = _knn_data()
    q = torch.randn(4, 3)
    assert torch.equal(knn_predict(x, y, q, k), knn_predict(x, y, q, 3))
    assert knn_predict(x, y, q, [np.int64(1), 3]).shape == (2, 4)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(x_train=None), TypeError, "x_train must be a torch.Tensor, got None"),
    (dict(chunk=0), ValueError, "chunk must be an integer >= 1"),
    (dict(y_train=torch.arange(20.0) % 3), TypeError, "y_train must hold integer class labels"),
    (dict(y_train=torch.arange(20) % 3 - 1), ValueError, "y_train must hold labels in"),
    (dict(k=True), ValueError, "k must be an integer"),
    (dict(x_query=torch.ones(2, 3, dtype=torch.long)), TypeError, "x_query must have a floating dtype"),
])
def test_knn_checks_its_arguments(kwargs, exc, match):
    x, y = _knn_data()
    args = dict(x_train=x, y_train=y, x_query=torch.randn(2, 3), k=3) | kwargs
    with pytest.raises(exc, match=match):
        knn_predict(**args)


def test_soft_threshold_refuses_a_negative_threshold():
    """Probe: soft_threshold(w, -1) grew every weight by 1."""
    with pytest.raises(ValueError, match="t must be a finite number >= 0, got -1"):
        soft_threshold(torch.tensor([0.5, -2.0]), -1)
    assert soft_threshold(torch.tensor([0.5, -2.0]), np.float32(1.0)).tolist() == [0.0, -1.0]


def test_l1_logistic_regression_checks_its_data():
    x = torch.randn(20, 3, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    with pytest.raises(ValueError, match="x and y must have the same length, but x has 20, y has 1"):
        l1_logistic_regression(x, y[:1], 0.1)  # was broadcast: one label for 20 rows
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        l1_logistic_regression(x, y, 0.1, steps=0)
    x[0, 0] = NAN
    with pytest.raises(ValueError, match="x must be finite"):
        l1_logistic_regression(x, y, 0.1)


def test_early_stopping_refuses_a_nan_min_delta():
    """Probe: min_delta=NaN stopped a run that improved every epoch."""
    with pytest.raises(ValueError, match="min_delta must be a finite number >= 0, got nan"):
        EarlyStopping(min_delta=NAN)
    assert not EarlyStopping(patience=1).should_stop([1.0, 0.5, 0.2, 0.1])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Penalty(l2="a"), TypeError, "l2 must be a real number, got 'a'"),
    (lambda: Penalty(l1=NAN), ValueError, "l1"),
    (lambda: weight_stats([]), ValueError, "weights must hold at least one tensor"),
    (lambda: MLP(MLPConfig(in_features=0)), ValueError, "in_features must be an integer >= 1"),
    (lambda: MLP(MLPConfig(hidden=(2.5,))), TypeError, r"hidden\[0\] must be an integer"),
    (lambda: MLP(MLPConfig(input_dropout=1.5)), ValueError, "input_dropout"),
])
def test_bad_settings_are_refused(make, exc, match):
    with pytest.raises(exc, match=match):
        make()

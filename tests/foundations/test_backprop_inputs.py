"""What the backpropagation module refuses, and its gradients in any memory layout
(reliability probe, issue 13: defects 3, 8 and 10)."""

import numpy as np
import pytest

from dlbook.foundations.backprop import (
    MLP, SGDConfig, Tensor, accuracy, cross_entropy, gradient_check, mlp_backward, numerical_gradient, train,
)


@pytest.mark.parametrize("layout", ["transposed", "fortran", "strided"])
def test_numerical_gradient_of_a_non_contiguous_array(layout):
    """Probe defect 3: a reshape of a non-contiguous array is a copy; the result was garbage."""
    base = np.arange(12.0).reshape(3, 4) / 7
    x = {"transposed": base.T, "fortran": np.asfortranarray(base), "strided": base[:, ::2]}[layout]
    assert not x.flags.c_contiguous
    grad = numerical_gradient(lambda: float((x**3).sum()), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-7)


def test_gradient_check_of_a_parameter_with_non_contiguous_data():
    """Probe defect 3: gradient_check reported 0.33 for a correct gradient."""
    W = Tensor(np.arange(6.0).reshape(2, 3).T / 5, requires_grad=True)
    assert not W.data.flags.c_contiguous
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)))
    (err,) = gradient_check(lambda: ((x @ W).tanh() ** 2).sum(), [W])
    assert err < 1e-8


def test_numerical_gradient_refuses_what_it_cannot_perturb():
    with pytest.raises(TypeError, match="x must be a NumPy array, got"):
        numerical_gradient(lambda: 0.0, [1.0, 2.0])
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        numerical_gradient(lambda: 0.0, ro)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        numerical_gradient(lambda: 0.0, np.zeros(3), eps=0.0)


def _mlp_args():
    return [np.eye(3)], [np.zeros(3)], np.eye(3)[:2] * 5


def test_mlp_backward_refuses_negative_labels():
    """Probe defect 10: -1 was read as the last class by NumPy's negative indexing."""
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\), got values from -1 to 0"):
        mlp_backward(*_mlp_args(), np.array([-1, 0]))


@pytest.mark.parametrize("weights, biases, x, y, exc, match", [
    ([np.eye(3), np.eye(3)], [np.zeros(3)], np.eye(3), np.arange(3), ValueError, "2 weights and 1 biases"),
    ([np.eye(3)], [np.zeros(3)], np.eye(3), np.array([0, 1, 7]), ValueError, "from 0 to 7"),
    ([np.eye(3)], [np.zeros(3)], np.eye(3), np.array([0.0, 1.0, 2.0]), TypeError, "integer class labels"),
    ([np.eye(3)], [np.zeros(3)], np.eye(3), np.arange(2), ValueError, "x and y must have the same length"),
    ([np.eye(3)], [np.zeros(3)], np.eye(3, dtype=int), np.arange(3), TypeError, "x must have a floating dtype"),
    ([np.ones((4, 3))], [np.zeros(3)], np.eye(3), np.arange(3), ValueError, r"weights\[0\] must have shape \(3, \*\)"),
    ([np.eye(3)], [np.zeros(1)], np.eye(3), np.arange(3), ValueError, r"biases\[0\] must have shape \(3\)"),
])
def test_mlp_backward_checks_its_arguments(weights, biases, x, y, exc, match):
    with pytest.raises(exc, match=match):
        mlp_backward(weights, biases, x, y)


def _data(n=10):
    x = np.random.default_rng(0).standard_normal((n, 4))
    return x, np.arange(n) % 3


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(batch_size=-1), ValueError, "batch_size must be an integer >= 1"),  # trained nothing, loss 0.0
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an integer"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number >= 0"),
    (dict(epochs=-1), ValueError, "epochs must be an integer >= 0"),
])
def test_sgd_config_is_validated(kwargs, exc, match):
    """Probe defect 8: SGDConfig(batch_size=-1) took no step and reported a loss of 0.0."""
    with pytest.raises(exc, match=match):
        SGDConfig(**kwargs)


def test_train_refuses_empty_data_and_labels_the_model_cannot_output():
    model = MLP((4, 3))
    with pytest.raises(ValueError, match="x must not be empty"):  # was ZeroDivisionError
        train(model, np.zeros((0, 4)), np.zeros(0, dtype=int), SGDConfig(epochs=1))
    x, y = _data()
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\)"):
        train(model, x, y + 1, SGDConfig(epochs=1))
    cfg = SGDConfig(epochs=1)
    cfg.batch_size = -1  # changed after construction: train checks again
    with pytest.raises(ValueError, match="batch_size"):
        train(model, x, y, cfg)


def test_accuracy_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="x must not be empty"):  # was ZeroDivisionError
        accuracy(MLP((4, 3)), np.zeros((0, 4)), np.zeros(0, dtype=int))


def test_mlp_widths_must_be_integers():
    """Probe: MLP(sizes=(4, 2.7, 2)) truncated the width to 2."""
    with pytest.raises(ValueError, match="positive integer widths"):
        MLP((4, 2.7, 2))
    assert MLP((4, np.int64(3), 2)).sizes == (4, 3, 2)


@pytest.mark.parametrize("data", [None, "abc", 1 + 2j, np.array([1 + 1j])])
def test_tensor_holds_real_numbers_only(data):
    """Probe: Tensor(None) was a NaN scalar and Tensor(1+2j) dropped the imaginary part."""
    with pytest.raises(TypeError, match="data must be real numbers"):
        Tensor(data)


def test_cross_entropy_refuses_float_targets_and_empty_batches():
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        cross_entropy(Tensor(np.zeros((2, 3))), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets must not be empty"):
        cross_entropy(Tensor(np.zeros((0, 3))), np.zeros(0, dtype=int))

"""The shared argument checks: what they accept, what they refuse, and how they say it."""

import math

import numpy as np
import pytest
import torch

from dlbook.checks import (
    check_array,
    check_choice,
    check_int,
    check_labels,
    check_nonempty,
    check_number,
    check_probability,
    check_same_length,
    check_same_shape,
    check_tensor,
)


@pytest.mark.parametrize("value", [0.1, 1, np.float32(0.1), np.int64(2), torch.tensor(0.5)])
def test_number_accepts_python_numpy_and_0d_tensors(value):
    out = check_number("lr", value, low=0)
    assert isinstance(out, float) and math.isclose(out, float(value), rel_tol=1e-6)


@pytest.mark.parametrize(
    "value, kw, exc, match",
    [
        (-0.1, dict(low=0), ValueError, r"lr must be a finite number >= 0, got -0.1"),
        (float("nan"), dict(low=0), ValueError, "got nan"),
        (float("inf"), {}, ValueError, "finite"),
        (0.0, dict(low=0, low_open=True), ValueError, r"> 0"),
        ("abc", {}, TypeError, "lr must be a real number, got 'abc'"),
        (True, {}, TypeError, "real number"),
        (None, {}, TypeError, "got None"),
        (torch.ones(2), {}, TypeError, "shape"),
    ],
)
def test_number_refuses_with_the_name_and_the_value(value, kw, exc, match):
    with pytest.raises(exc, match=match):
        check_number("lr", value, **kw)


def test_infinity_only_where_asked():
    assert check_number("clip", float("inf"), low=0, finite=False) == float("inf")


@pytest.mark.parametrize("value", [3, np.int64(3), torch.tensor(3)])
def test_int_accepts_integers(value):
    assert check_int("k", value, low=1) == 3 and type(check_int("k", value)) is int


@pytest.mark.parametrize("value, exc", [(2.7, TypeError), (3.0, TypeError), (True, TypeError), (0, ValueError)])
def test_int_refuses_floats_bools_and_out_of_range(value, exc):
    with pytest.raises(exc, match="k must be an integer"):
        check_int("k", value, low=1)


def test_probability_bounds():
    assert check_probability("p", 1.0) == 1.0
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\)"):
        check_probability("dropout", 1.0, allow_one=False)
    with pytest.raises(ValueError, match="got -0.5"):
        check_probability("p", -0.5)


def test_choice_lists_the_choices():
    assert check_choice("mode", "fan_in", ("fan_in", "fan_out")) == "fan_in"
    with pytest.raises(ValueError, match="mode must be one of 'fan_in', 'fan_out', got 'FAN_IN'"):
        check_choice("mode", "FAN_IN", ("fan_in", "fan_out"))


def test_tensor_shape_dtype_and_finiteness():
    x = torch.zeros(2, 3, 4, 4)
    assert check_tensor("x", x, ndim=4, shape=(None, 3, None, None), floating=True) is x
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 1, \*, \*\), got \(2, 3, 4, 4\)"):
        check_tensor("x", x, shape=(None, 1, None, None))
    with pytest.raises(ValueError, match="x must have 2 or 3 dimensions"):
        check_tensor("x", x, ndim=(2, 3))
    with pytest.raises(TypeError, match="floating dtype.*truncated"):
        check_tensor("x", x.long(), floating=True)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got None"):
        check_tensor("x", None)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 of its 96 entries are NaN"):
        check_tensor("x", x, finite=True)
    with pytest.raises(ValueError, match="must not be empty"):
        check_tensor("x", torch.zeros(0, 3), nonempty=True)


@pytest.mark.parametrize("make", [torch.tensor, np.array])
def test_labels_in_range_and_integer(make):
    check_labels("y", make([0, 2, 1]), 3)
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\), got values from -1 to 2"):
        check_labels("y", make([-1, 2]), 3)
    with pytest.raises(ValueError, match="from 0 to 3"):
        check_labels("y", make([0, 3]), 3)
    with pytest.raises(TypeError, match="integer class labels"):
        check_labels("y", make([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="1 dimension"):
        check_labels("y", make([[0, 1]]), 3)


def test_nonempty_and_same_length():
    with pytest.raises(ValueError, match="loader must not be empty, got \\[\\]"):
        check_nonempty("loader", [])
    assert check_same_length(x=torch.zeros(4, 2), y=np.zeros(4)) == 4
    with pytest.raises(ValueError, match="x and y must have the same length, but x has 4, y has 1"):
        check_same_length(x=torch.zeros(4, 2), y=torch.zeros(1))


def test_same_shape_refuses_broadcastable_shapes():
    assert check_same_shape(a=torch.zeros(4, 3), b=np.zeros((4, 3))) == (4, 3)
    with pytest.raises(ValueError, match=r"logits and target must have the same shape, but logits has \(4, 3\), "
                                         r"target has \(1, 3\)"):
        check_same_shape(logits=torch.zeros(4, 3), target=torch.zeros(1, 3))


def test_array_checks_read_like_the_tensor_checks():
    x = np.zeros((2, 3))
    assert check_array("x", x, ndim=2, shape=(None, 3), floating=True, finite=True, nonempty=True) is x
    with pytest.raises(TypeError, match="x must be a NumPy array, got a tensor of shape"):
        check_array("x", torch.zeros(2))
    with pytest.raises(TypeError, match="x must have a floating dtype, got int64.*truncated"):
        check_array("x", np.zeros(3, dtype=np.int64), floating=True)
    with pytest.raises(TypeError, match="y must have an integer dtype, got float64"):
        check_array("y", np.zeros(3), floating=False)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 4\), got \(2, 3\)"):
        check_array("x", x, shape=(None, 4))
    with pytest.raises(ValueError, match="x must have 1 dimensions"):
        check_array("x", x, ndim=1)
    with pytest.raises(ValueError, match="must not be empty"):
        check_array("x", np.zeros((0, 3)), nonempty=True)
    x[1, 1] = np.inf
    with pytest.raises(ValueError, match="1 of its 6 entries are NaN or infinite"):
        check_array("x", x, finite=True)


def test_in_range_accepts_the_closed_interval_and_refuses_the_rest():
    from dlbook.checks import check_in_range

    x = torch.tensor([0.0, 0.5, 1.0])
    assert check_in_range("x", x, low=0, high=1) is x
    with pytest.raises(ValueError, match=r"x must hold values in \[0, 1\], got values from -0.1 to 1"):
        check_in_range("x", torch.tensor([-0.1, 1.0]), low=0, high=1)
    with pytest.raises(ValueError, match="NaN"):
        check_in_range("x", torch.tensor([0.5, float("nan")]), low=0, high=1)
    with pytest.raises(TypeError, match="floating dtype"):
        check_in_range("x", torch.tensor([0, 1]), low=0, high=1)

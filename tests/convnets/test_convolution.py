"""Convolution from scratch against PyTorch (values, gradients) and Keras."""

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook.convnets.convolution import (
    Conv,
    Conv2d,
    Dense,
    Flatten,
    Pool,
    avg_pool2d,
    col2im,
    conv2d,
    conv_cost,
    conv_output_size,
    im2col,
    input_grad_by_full_convolution,
    keras_summary,
    layer_table,
    max_pool2d,
    numerical_gradient,
    quiet_native_stderr,
    same_padding,
    to_keras,
    to_torch,
    torch_shapes,
    weight_grad_by_correlation,
)

# --- sizes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, k, s, p, d, expected",
    [
        (28, 5, 1, 0, 1, 24),
        (28, 5, 1, 2, 1, 28),
        (28, 3, 2, 1, 1, 14),
        (7, 3, 2, 1, 1, 4),
        (32, 3, 1, 2, 2, 32),
        (5, 5, 1, 0, 1, 1),
    ],
)
def test_output_size_formula(n, k, s, p, d, expected):
    assert conv_output_size(n, k, s, p, d) == expected
    conv = nn.Conv2d(1, 1, k, s, p, d)
    assert conv(torch.zeros(1, 1, n, n)).shape[-1] == expected


def test_ceil_mode_matches_pytorch_pooling():
    for n in range(3, 20):
        for k, s, p in [(3, 2, 1), (2, 2, 0), (3, 3, 0), (3, 2, 0)]:
            pool = nn.MaxPool2d(k, s, p, ceil_mode=True)
            want = pool(torch.zeros(1, 1, n, n)).shape[-1]
            assert conv_output_size(n, k, s, p, ceil_mode=True) == want


@pytest.mark.parametrize("k, d", [(3, 1), (5, 1), (3, 2), (3, 4), (2, 2)])
def test_same_padding_keeps_the_size(k, d):
    p = same_padding(k, d)
    y = nn.Conv2d(1, 1, k, padding=p, dilation=d)(torch.zeros(1, 1, 11, 11))
    assert y.shape[-2:] == (11, 11)


def test_same_padding_refuses_even_extents():
    with pytest.raises(ValueError, match="no symmetric padding"):
        same_padding(4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(size=5, kernel_size=7), ValueError, "spans 7 pixels"),
        (dict(size=5, kernel_size=3, dilation=3), ValueError, "spans 7"),
        (dict(size=5, kernel_size=3, padding=-1), ValueError, "padding must"),
        (dict(size=5, kernel_size=3, stride=0), ValueError, "stride must"),
        (dict(size=0, kernel_size=1), ValueError, "size must"),
        (dict(size=5, kernel_size=2.0), TypeError, "kernel_size must"),
    ],
)
def test_sizes_reject_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        conv_output_size(**kwargs)


def test_conv_cost_in_2d_and_3d_matches_pytorch_layers():
    for dims, layer in [(2, nn.Conv2d), (3, nn.Conv3d)]:
        shape = (3,) + (16,) * dims
        out, params, macs = conv_cost(shape, 8, 3, 2, 1, groups=1)
        conv = layer(3, 8, 3, 2, 1)
        assert params == sum(p.numel() for p in conv.parameters())
        y = conv.to("meta")(torch.empty(1, *shape, device="meta"))
        assert out == tuple(y.shape[1:])
        assert macs == 8 * 8**dims * 3 * 3**dims


# --- im2col / col2im ---------------------------------------------------------


@pytest.mark.parametrize(
    "k, s, p, d", [(3, 1, 0, 1), (3, 2, 1, 1), (2, 1, 2, 2)]
)
def test_im2col_and_col2im_equal_unfold_and_fold(k, s, p, d):
    x = torch.randn(2, 3, 9, 8)
    cols = im2col(x, k, s, p, d)
    torch.testing.assert_close(cols, F.unfold(x, k, d, p, s))
    back = col2im(cols, (9, 8), k, s, p, d)
    torch.testing.assert_close(back, F.fold(cols, (9, 8), k, d, p, s))


# --- conv2d ------------------------------------------------------------------


def _compare_conv(x, w, b, s, p, d, g):
    x1 = x.clone().requires_grad_()
    w1 = w.clone().requires_grad_()
    b1 = None if b is None else b.clone().requires_grad_()
    x2, w2 = x.clone().requires_grad_(), w.clone().requires_grad_()
    b2 = None if b is None else b.clone().requires_grad_()
    y1 = conv2d(x1, w1, b1, s, p, d, g)
    y2 = F.conv2d(x2, w2, b2, s, p, d, g)
    torch.testing.assert_close(y1, y2)
    gy = torch.randn_like(y2)
    inputs1 = [t for t in (x1, w1, b1) if t is not None]
    inputs2 = [t for t in (x2, w2, b2) if t is not None]
    for a, c in zip(
        torch.autograd.grad(y1, inputs1, gy),
        torch.autograd.grad(y2, inputs2, gy),
        strict=True,
    ):
        torch.testing.assert_close(a, c)


@pytest.mark.parametrize(
    "s, p, d, g, bias",
    [
        (1, 0, 1, 1, True),
        (2, 1, 1, 1, False),
        (1, 2, 2, 1, True),
        (2, 1, 1, 2, True),
        (1, 1, 1, 4, False),
        ((2, 1), (0, 1), (1, 2), 1, True),
    ],
)
def test_conv2d_equals_pytorch_with_gradients(s, p, d, g, bias):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10, 9)
    w = torch.randn(8, 4 // g, 3, 3)
    _compare_conv(x, w, torch.randn(8) if bias else None, s, p, d, g)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 3]),
    per_group_in=st.integers(1, 2),
    per_group_out=st.integers(1, 2),
    h=st.integers(4, 9),
    w=st.integers(4, 9),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_conv2d_property_against_pytorch(
    n,
    groups,
    per_group_in,
    per_group_out,
    h,
    w,
    k,
    stride,
    padding,
    dilation,
    bias,
    seed,
):
    if dilation * (k - 1) + 1 > min(h, w) + 2 * padding:
        return  # the kernel does not fit: tested with the errors below
    g = torch.Generator().manual_seed(seed)
    c_in, c_out = groups * per_group_in, groups * per_group_out
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(
        c_out, per_group_in, k, k, generator=g, dtype=torch.float64
    )
    b = torch.randn(c_out, generator=g, dtype=torch.float64) if bias else None
    _compare_conv(x, wt, b, stride, padding, dilation, groups)


def test_conv2d_passes_a_numerical_gradient_check():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: conv2d(x, w, None, 2, 1, 1, 1), (x, w)
    )
    loss = lambda w_: (conv2d(x, w_, stride=2, padding=1) ** 2).sum()
    (auto,) = torch.autograd.grad(loss(w), w)
    torch.testing.assert_close(numerical_gradient(loss, w), auto)


@pytest.mark.parametrize(
    "s, p, d, h",
    [(1, 0, 1, 9), (2, 1, 1, 9), (2, 0, 1, 10), (1, 2, 2, 9), (3, 1, 2, 11)],
)
def test_backward_pass_as_full_convolution_and_correlation(s, p, d, h):
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, h - 1, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, w, None, s, p, d)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    ours_x = input_grad_by_full_convolution(
        gy, w.detach(), (h, h - 1), s, p, d
    )
    torch.testing.assert_close(ours_x, gx)
    extra = (h + 2 * p - d * 2 - 1) % s, (h - 1 + 2 * p - d * 2 - 1) % s
    transposed = F.conv_transpose2d(gy, w.detach(), None, s, p, extra, 1, d)
    torch.testing.assert_close(ours_x, transposed)
    ours_w = weight_grad_by_correlation(x.detach(), gy, 3, s, p, d)
    torch.testing.assert_close(ours_w, gw)


def test_conv2d_module_equals_nn_conv2d():
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    ours = Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 8, 8)
    torch.testing.assert_close(ours(x), ref(x))
    with pytest.raises(ValueError, match="padding must be an integer"):
        Conv2d(1, 1, 3, padding="same")
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(1, 1, 3, padding_mode="circular")


@pytest.mark.parametrize(
    "x, w, kwargs, error, match",
    [
        (
            torch.randn(3, 8, 8),
            torch.randn(2, 3, 3, 3),
            {},
            ValueError,
            "x must have 4 dimensions",
        ),
        (
            torch.randn(1, 3, 8, 8),
            torch.randn(2, 4, 3, 3),
            {},
            ValueError,
            r"weight must have shape \(C_out, 3",
        ),
        (
            torch.randn(1, 3, 8, 8),
            torch.randn(2, 1, 3, 3),
            dict(groups=2),
            ValueError,
            "groups=2 must divide",
        ),
        (
            torch.randn(1, 3, 4, 4),
            torch.randn(2, 3, 5, 5),
            {},
            ValueError,
            "spans 5 pixels, more than the input of size 4",
        ),
        (
            torch.randn(1, 3, 8, 8),
            torch.randn(2, 3, 3, 3),
            dict(padding=-1),
            ValueError,
            "padding must be an integer >= 0",
        ),
        (
            torch.randn(1, 3, 8, 8),
            torch.randn(2, 3, 3, 3),
            dict(stride=0),
            ValueError,
            "stride must be an integer >= 1",
        ),
        (
            torch.randn(1, 3, 8, 8),
            torch.randn(2, 3, 3, 3),
            dict(bias=torch.randn(3)),
            ValueError,
            "bias must have shape",
        ),
        (
            torch.ones(1, 3, 8, 8, dtype=torch.long),
            torch.randn(2, 3, 3, 3),
            {},
            TypeError,
            "x must have a floating dtype",
        ),
        (
            torch.randn(0, 3, 8, 8),
            torch.randn(2, 3, 3, 3),
            {},
            ValueError,
            "x must not be empty",
        ),
    ],
)
def test_conv2d_rejects_bad_input(x, w, kwargs, error, match):
    with pytest.raises(error, match=match):
        conv2d(x, w, **kwargs)


# --- pooling -----------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    k=st.integers(1, 3),
    stride=st.one_of(st.none(), st.integers(1, 3)),
    padding=st.integers(0, 1),
    dilation=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_pooling_property_against_pytorch(
    h, w, k, stride, padding, dilation, seed
):
    if padding > k // 2 or dilation * (k - 1) + 1 > min(h, w) + 2 * padding:
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1 = max_pool2d(x1, k, stride, padding, dilation)
    y2 = F.max_pool2d(x2, k, stride, padding, dilation)
    torch.testing.assert_close(y1, y2)
    gy = torch.randn_like(y2)
    torch.testing.assert_close(
        torch.autograd.grad(y1, x1, gy)[0], torch.autograd.grad(y2, x2, gy)[0]
    )
    if dilation == 1:
        y1 = avg_pool2d(x1, k, stride, padding)
        y2 = F.avg_pool2d(x2, k, stride, padding)
        torch.testing.assert_close(y1, y2)
        torch.testing.assert_close(
            torch.autograd.grad(y1, x1, gy)[0],
            torch.autograd.grad(y2, x2, gy)[0],
        )


def test_max_pool_ties_go_to_the_first_entry_like_pytorch():
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    (ours,) = torch.autograd.grad(max_pool2d(x, 2).sum(), x)
    (ref,) = torch.autograd.grad(F.max_pool2d(x, 2).sum(), x)
    torch.testing.assert_close(ours, ref)


def test_pooling_rejects_bad_input():
    x = torch.randn(1, 1, 6, 6)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="spans 8 pixels"):
        avg_pool2d(x, 8)
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        max_pool2d(x, 3, padding=-1)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        max_pool2d(x[0], 2)


# --- the layer table ---------------------------------------------------------

STACK = [
    Conv(16, 3, padding=1),
    Pool(2),
    Conv(16, 3, padding=2, dilation=2),
    Conv(16, 3, padding=1, groups=16),
    Conv(32, 1),
    Conv(32, 3, stride=2, padding=1),
    Pool(2, kind="avg"),
    Flatten(),
    Dense(10),
]


def test_layer_table_matches_pytorch_layers():
    rows = layer_table((1, 28, 28), STACK)
    got = torch_shapes(to_torch((1, 28, 28), STACK), (1, 28, 28))
    assert [(r.output_shape, r.params) for r in rows] == got
    assert rows[2].output_shape == (16, 14, 14)  # "same" for a dilated kernel
    assert rows[3].params == 16 * 9 + 16  # depthwise: k² per channel
    assert rows[-1].output_shape == (10,)


def test_layer_table_rejects_bad_stacks():
    with pytest.raises(ValueError, match="add Flatten"):
        layer_table((1, 8, 8), [Conv(4, 3), Dense(10)])
    with pytest.raises(ValueError, match="spans 9 pixels"):
        layer_table((1, 8, 8), [Conv(4, 9)])
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        layer_table((8, 8), [Conv(4, 3)])
    with pytest.raises(ValueError, match="layers must not be empty"):
        layer_table((1, 8, 8), [])
    with pytest.raises(ValueError, match="kind must be one of"):
        layer_table((1, 8, 8), [Pool(2, kind="median")])


def test_layer_table_matches_keras_summary():
    # a 3x3 kernel with padding 2 and a strided padded conv: Keras needs a
    # ZeroPadding2D for both, which keras_summary folds into the next row
    stack = STACK[:6] + [Conv(8, 3, padding=2)] + STACK[6:]
    rows = layer_table((1, 28, 28), stack)
    model = to_keras((1, 28, 28), stack)
    assert keras_summary(model) == [(r.output_shape, r.params) for r in rows]
    assert sum(r.params for r in rows) == model.count_params()


def test_quiet_native_stderr_hides_descriptor_writes(capfd):
    with quiet_native_stderr():
        os.write(2, b"native noise\n")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"

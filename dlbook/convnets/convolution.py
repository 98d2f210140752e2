"""Convolution from scratch: sizes, im2col, conv2d and its gradients, pooling.

A convolutional layer slides a small kernel over an image. Written as im2col
(Chellapilla et al. 2006; Caffe's ``im2col``), every patch the kernel visits is
unrolled into a column, and the layer becomes one matrix product; its backward
pass is two more (LeCun et al. 1998 derive the gradients of weight-shared
layers). Output sizes follow Dumoulin & Visin (2016), "A guide to convolution
arithmetic for deep learning".

Checked against ``torch.nn.functional.conv2d``, ``max_pool2d``, ``avg_pool2d``
and ``conv_transpose2d`` (values and autograd gradients, over stride, padding,
dilation and groups), a numerical gradient, the shapes of ``torch.nn`` layers
and Keras's ``model.summary()``: ``tests/convnets/test_convolution.py``. The
speed of our ``conv2d`` against PyTorch's is measured in
``benchmarks/convolution.py``. Chapter: ``book/convnets/convolution.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import check_choice, check_int, check_number, check_tensor

Pair = int | tuple[int, int]


def _pair(name: str, value: Pair, low: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= low, as a pair (height, width)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{name} must be an integer or a pair of integers, "
                f"got {value!r}"
            )
        return (
            check_int(f"{name}[0]", value[0], low=low),
            check_int(f"{name}[1]", value[1], low=low),
        )
    v = check_int(name, value, low=low)
    return v, v


# --- sizes -------------------------------------------------------------------


def conv_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """The output length of a convolution or pooling along one axis.

    o = ⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1, where d(k − 1) + 1 is the extent of
    the dilated kernel. With ``ceil_mode`` (pooling only) the floor becomes a
    ceiling, as in PyTorch, except that a last window starting in the right
    padding is dropped.

    Raises:
        ValueError: a size, kernel, stride or dilation below 1, negative
            padding, or a kernel that does not fit in the padded input.
    """
    n = check_int("size", size, low=1)
    k = check_int("kernel_size", kernel_size, low=1)
    s = check_int("stride", stride, low=1)
    p = check_int("padding", padding, low=0)
    d = check_int("dilation", dilation, low=1)
    extent = d * (k - 1) + 1
    if extent > n + 2 * p:
        raise ValueError(
            f"kernel_size={k} with dilation={d} spans {extent} pixels, more "
            f"than the input of size {n} with padding {p} ({n + 2 * p} pixels)"
        )
    span = n + 2 * p - extent
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + p:  # the last window would start in the padding
        out -= 1
    return out


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """The padding that keeps the size at stride 1: p = d(k − 1) / 2.

    Raises:
        ValueError: if d(k − 1) is odd, so that no symmetric padding keeps the
            size (an even kernel without dilation, for instance).
    """
    k = check_int("kernel_size", kernel_size, low=1)
    d = check_int("dilation", dilation, low=1)
    if d * (k - 1) % 2:
        raise ValueError(
            f"kernel_size={k} with dilation={d} has extent {d * (k - 1) + 1}, "
            "an even number: no symmetric padding keeps the size"
        )
    return d * (k - 1) // 2


def conv_cost(
    input_shape: Sequence[int],
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> tuple[tuple[int, ...], int, int]:
    """Output shape, parameters and multiply-adds of one convolution, any dims.

    A layer with C_in input and C_out output channels in g groups and a kernel
    of k^D cells (D = 1, 2, 3 spatial dimensions) has
    C_out · (C_in / g) · k^D weights (+ C_out biases) and costs
    C_out · (C_in / g) · k^D multiply-adds per output position.

    Args:
        input_shape: (C_in, *spatial), without the batch dimension.

    Returns:
        (output shape (C_out, *spatial_out), parameters, multiply-adds).
    """
    if len(input_shape) < 2:
        raise ValueError(
            "input_shape must be (channels, *spatial) with at least one "
            f"spatial dimension, got {tuple(input_shape)}"
        )
    c_in = check_int("input_shape[0]", input_shape[0], low=1)
    c_out = check_int("out_channels", out_channels, low=1)
    g = check_int("groups", groups, low=1)
    if c_in % g or c_out % g:
        raise ValueError(
            f"groups={g} must divide both in_channels={c_in} and "
            f"out_channels={c_out}"
        )
    spatial = tuple(
        conv_output_size(n, kernel_size, stride, padding, dilation)
        for n in input_shape[1:]
    )
    per_output = (c_in // g) * kernel_size ** len(spatial)
    params = c_out * per_output + (c_out if bias else 0)
    macs = c_out * math.prod(spatial) * per_output
    return (c_out, *spatial), params, macs


# --- im2col and col2im -------------------------------------------------------


def im2col(
    x: torch.Tensor,
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Unroll every patch the kernel visits into a column (like ``F.unfold``).

    Row c·k_h·k_w + i·k_w + j of column l holds input channel c at kernel
    offset (i, j) of the l-th window, windows in row-major order. One loop
    runs over the k_h·k_w kernel offsets; each step copies a strided slice.

    Shapes:
        x: (N, C, H, W) -> (N, C·k_h·k_w, H_out·W_out)
    """
    check_tensor("x", x, ndim=4)
    (kh, kw), (sh, sw) = (
        _pair("kernel_size", kernel_size, 1),
        _pair("stride", stride, 1),
    )
    (ph, pw), (dh, dw) = (
        _pair("padding", padding, 0),
        _pair("dilation", dilation, 1),
    )
    n, c, h, w = x.shape
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    xp = F.pad(x, (pw, pw, ph, ph), value=pad_value)
    cols = x.new_empty(n, c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            cols[:, :, i, j] = xp[
                :,
                :,
                top : top + sh * (oh - 1) + 1 : sh,
                left : left + sw * (ow - 1) + 1 : sw,
            ]
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im(
    cols: torch.Tensor,
    input_size: tuple[int, int],
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> torch.Tensor:
    """The adjoint of im2col: add every column back where it came from.

    Where windows overlap, their entries are summed; that sum is what the
    backward pass needs (like ``F.fold``).

    Shapes:
        cols: (N, C·k_h·k_w, H_out·W_out) -> (N, C, H, W), (H, W) = input_size
    """
    check_tensor("cols", cols, ndim=3)
    (kh, kw), (sh, sw) = (
        _pair("kernel_size", kernel_size, 1),
        _pair("stride", stride, 1),
    )
    (ph, pw), (dh, dw) = (
        _pair("padding", padding, 0),
        _pair("dilation", dilation, 1),
    )
    h, w = _pair("input_size", input_size, 1)
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    n, rows, length = cols.shape
    if rows % (kh * kw) or length != oh * ow:
        raise ValueError(
            f"cols must have shape (N, C*{kh * kw}, {oh * ow}) for this "
            f"kernel and input size, got {tuple(cols.shape)}"
        )
    c = rows // (kh * kw)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    xp = cols.new_zeros(n, c, h + 2 * ph, w + 2 * pw)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            xp[
                :,
                :,
                top : top + sh * (oh - 1) + 1 : sh,
                left : left + sw * (ow - 1) + 1 : sw,
            ] += cols[:, :, i, j]
    return xp[:, :, ph : ph + h, pw : pw + w]


# --- conv2d ------------------------------------------------------------------


def conv2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Y = W · im2col(X) + b, one matrix product per group.

    Shapes:
        x: (N, C_in, H, W), weight: (C_out, C_in / g, k_h, k_w),
        bias: (C_out,) -> (N, C_out, H_out, W_out)
    """
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    cols = im2col(x, (kh, kw), stride, padding, dilation)  # (N, C_in·kh·kw, L)
    oh = conv_output_size(h, kh, *_axis(stride, padding, dilation, 0))
    ow = conv_output_size(w, kw, *_axis(stride, padding, dilation, 1))
    cols = cols.view(n, groups, -1, oh * ow)  # (N, g, C_in/g·kh·kw, L)
    wg = weight.reshape(
        groups, c_out // groups, -1
    )  # (g, C_out/g, C_in/g·kh·kw)
    y = torch.matmul(wg, cols)  # (N, g, C_out/g, L)
    y = y.reshape(n, c_out, oh, ow)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def conv2d_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂L/∂X, ∂L/∂W and ∂L/∂b from ∂L/∂Y, with the same two unrollings.

    ∂L/∂W = Σ_n ∂L/∂Y_n · im2col(X_n)ᵀ (a correlation of the input with the
    output gradient); ∂L/∂X = col2im(Wᵀ · ∂L/∂Y) (a full convolution of the
    output gradient with the flipped kernel); ∂L/∂b sums ∂L/∂Y over the batch
    and positions.

    Shapes:
        grad_y: (N, C_out, H_out, W_out)
        -> (x's shape, weight's shape, (C_out,))
    """
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    cols = im2col(x, (kh, kw), stride, padding, dilation)
    length = cols.shape[-1]
    cols = cols.view(n, groups, -1, length)  # (N, g, C_in/g·kh·kw, L)
    gy = grad_y.reshape(
        n, groups, c_out // groups, length
    )  # (N, g, C_out/g, L)
    grad_w = torch.matmul(gy, cols.transpose(-1, -2)).sum(0)
    wg = weight.reshape(groups, c_out // groups, -1)
    grad_cols = torch.matmul(
        wg.transpose(-1, -2), gy
    )  # (N, g, C_in/g·kh·kw, L)
    grad_x = col2im(
        grad_cols.reshape(n, -1, length),
        (h, w),
        (kh, kw),
        stride,
        padding,
        dilation,
    )
    return grad_x, grad_w.reshape(weight.shape), grad_y.sum((0, 2, 3))


def _axis(stride: Pair, padding: Pair, dilation: Pair, axis: int):
    """(stride, padding, dilation) along one axis (0: height, 1: width)."""
    return (
        _pair("stride", stride, 1)[axis],
        _pair("padding", padding, 0)[axis],
        _pair("dilation", dilation, 1)[axis],
    )


class _Conv2dFunction(torch.autograd.Function):
    """Plugs conv2d_forward/conv2d_backward into autograd.

    Like Caffe, the backward pass unrolls X again instead of keeping the
    unrolled copy, which is k_h·k_w times the size of X.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, bias is not None)
        return conv2d_forward(
            x, weight, bias, stride, padding, dilation, groups
        )

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        gx, gw, gb = conv2d_backward(
            grad_y, x, weight, stride, padding, dilation, groups
        )
        return gx, gw, gb if has_bias else None, None, None, None, None


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """A 2-D convolution (a cross-correlation, as in deep-learning libraries).

    Y[n, o, y, x] = b[o] + Σ_c Σ_i Σ_j W[o, c, i, j] · X[n, g(o)·C_in/g + c,
    s·y + d·i − p, s·x + d·j − p], zero outside the image, where g(o) is the
    group of output channel o. Same arguments as ``F.conv2d``, with a
    from-scratch backward pass.

    Shapes:
        x: (N, C_in, H, W), weight: (C_out, C_in / groups, k_h, k_w),
        bias: (C_out,) -> (N, C_out, H_out, W_out)
    """
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    check_tensor("weight", weight, ndim=4, floating=True, nonempty=True)
    g = check_int("groups", groups, low=1)
    c_in, c_out = x.shape[1], weight.shape[0]
    if c_in % g or c_out % g:
        raise ValueError(
            f"groups={g} must divide both x's {c_in} channels and weight's "
            f"{c_out} output channels"
        )
    if weight.shape[1] * g != c_in:
        raise ValueError(
            f"weight must have shape (C_out, {c_in // g}, k_h, k_w) for x "
            f"with {c_in} channels and groups={g}, got {tuple(weight.shape)}"
        )
    if bias is not None:
        check_tensor("bias", bias, shape=(c_out,), floating=True)
    for axis in (0, 1):  # refuses a kernel larger than the padded input
        conv_output_size(
            x.shape[2 + axis],
            weight.shape[2 + axis],
            *_axis(stride, padding, dilation, axis),
        )
    return _Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, g)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with our conv2d as its forward pass: same parameters.

    Only zero padding is supported (``padding_mode="zeros"``), with an integer
    or a pair, not the strings "same" or "valid".
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_choice("padding_mode", self.padding_mode, ("zeros",))
        if isinstance(self.padding, str):
            raise ValueError(
                "padding must be an integer or a pair for this Conv2d, got "
                f"{self.padding!r} (use same_padding(kernel_size, dilation))"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


# --- the backward pass as convolutions ---------------------------------------


def input_grad_by_full_convolution(
    grad_y: torch.Tensor,
    weight: torch.Tensor,
    input_size: tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """∂L/∂X as a full convolution of ∂L/∂Y with the flipped kernel.

    Spread ∂L/∂Y out with s − 1 zeros between its entries (stride s) over
    the size of the padded input minus the kernel's extent, n + 2p − d(k − 1)
    (the last s − 1 rows or columns stay zero where the windows stopped short
    of the edge), pad it by d(k − 1) − p, and correlate it with the kernel
    flipped in both spatial axes, its input and output channels swapped.
    This is what ``F.conv_transpose2d`` computes (groups = 1 here).

    Shapes:
        grad_y: (N, C_out, H_out, W_out), weight: (C_out, C_in, k, k)
        -> (N, C_in, H, W), (H, W) = input_size
    """
    n, c_out, oh, ow = grad_y.shape
    k, s, p, d = weight.shape[-1], stride, padding, dilation
    if p > d * (k - 1):
        raise ValueError(
            f"padding={p} exceeds d(k - 1) = {d * (k - 1)}: the full "
            "convolution would need negative padding"
        )
    h, w = input_size
    up = grad_y.new_zeros(
        n, c_out, h + 2 * p - d * (k - 1), w + 2 * p - d * (k - 1)
    )
    up[:, :, : s * (oh - 1) + 1 : s, : s * (ow - 1) + 1 : s] = grad_y
    flipped = weight.flip(-1, -2).transpose(0, 1)  # (C_in, C_out, k, k)
    return conv2d_forward(up, flipped, padding=d * (k - 1) - p, dilation=d)


def weight_grad_by_correlation(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """∂L/∂W as a correlation of the input with ∂L/∂Y.

    ∂L/∂W[o, c, i, j] = Σ_n Σ_y Σ_x ∂L/∂Y[n, o, y, x] · X[n, c, s·y + d·i − p,
    s·x + d·j − p]: a convolution of X (channels as the batch, the batch as
    channels) with ∂L/∂Y as the kernel, where stride and dilation swap roles.

    Shapes:
        x: (N, C_in, H, W), grad_y: (N, C_out, H_out, W_out)
        -> (C_out, C_in, k, k)
    """
    k = kernel_size
    xt = x.transpose(0, 1)  # (C_in, N, H, W)
    gt = grad_y.transpose(0, 1)  # (C_out, N, H_out, W_out) used as a kernel
    g = conv2d_forward(
        xt, gt, padding=padding, stride=dilation, dilation=stride
    )
    return g[:, :, :k, :k].transpose(0, 1)  # (C_out, C_in, k, k)


def numerical_gradient(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Central differences (f(x + ε e_i) − f(x − ε e_i)) / 2ε of a scalar fn.

    Use float64: in float32 the rounding error of f swamps ε.
    """
    check_number("eps", eps, low=0, low_open=True)
    x = x.detach().clone()
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            up = float(fn(x))
            flat[i] = old - eps
            down = float(fn(x))
            flat[i] = old
            gflat[i] = (up - down) / (2 * eps)
    return grad


# --- pooling -----------------------------------------------------------------


def _pool_args(x, kernel_size, stride, padding, dilation):
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    k = _pair("kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("stride", stride, 1)
    p = _pair("padding", padding, 0)
    d = _pair("dilation", dilation, 1)
    for axis in (0, 1):
        if p[axis] > k[axis] // 2:  # PyTorch's rule: no window all padding
            raise ValueError(
                f"padding={padding!r} must be at most half of kernel_size="
                f"{kernel_size!r}"
            )
        conv_output_size(x.shape[2 + axis], k[axis], s[axis], p[axis], d[axis])
    return k, s, p, d


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1):
    """Y = the largest entry of each window, and where it was.

    Padding counts as −∞, so it is never the maximum. Ties go to the first
    entry in row-major order, as in PyTorch.

    Shapes:
        x: (N, C, H, W) -> Y: (N, C, H_out, W_out), argmax: (N·C, H_out·W_out)
        (the offset i·k_w + j of the maximum inside its window)
    """
    k, s, p, d = _pool_args(x, kernel_size, stride, padding, dilation)
    n, c, h, w = x.shape
    cols = im2col(x.reshape(n * c, 1, h, w), k, s, p, d, pad_value=-math.inf)
    y, argmax = cols.max(dim=1)  # (N·C, L) each
    oh = conv_output_size(h, k[0], s[0], p[0], d[0])
    return y.view(n, c, oh, -1), argmax


def max_pool2d_backward(
    grad_y,
    argmax,
    input_shape,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
):
    """∂L/∂X: each window's gradient goes to its maximum, the others get 0.

    Where windows overlap, an entry that is the maximum of several windows
    receives the sum of their gradients.
    """
    n, c, h, w = input_shape
    k = _pair("kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("stride", stride, 1)
    grad_cols = grad_y.new_zeros(n * c, k[0] * k[1], argmax.shape[-1])
    grad_cols.scatter_(1, argmax[:, None], grad_y.reshape(n * c, 1, -1))
    gx = col2im(grad_cols, (h, w), k, s, padding, dilation)
    return gx.view(n, c, h, w)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Y = the mean of each window, padding counted as zeros (as in PyTorch).

    Shapes:
        x: (N, C, H, W) -> (N, C, H_out, W_out)
    """
    k, s, p, _ = _pool_args(x, kernel_size, stride, padding, 1)
    n, c, h, w = x.shape
    cols = im2col(x.reshape(n * c, 1, h, w), k, s, p)
    oh = conv_output_size(h, k[0], s[0], p[0])
    return cols.mean(dim=1).view(n, c, oh, -1)


def avg_pool2d_backward(
    grad_y, input_shape, kernel_size, stride=None, padding=0
):
    """∂L/∂X: each window shares its gradient equally among its cells."""
    n, c, h, w = input_shape
    k = _pair("kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("stride", stride, 1)
    share = grad_y.reshape(n * c, 1, -1) / (k[0] * k[1])
    grad_cols = share.expand(-1, k[0] * k[1], -1)
    return col2im(grad_cols, (h, w), k, s, padding).view(n, c, h, w)


class _MaxPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation):
        y, argmax = max_pool2d_forward(
            x, kernel_size, stride, padding, dilation
        )
        ctx.save_for_backward(argmax)
        ctx.conf = (x.shape, kernel_size, stride, padding, dilation)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (argmax,) = ctx.saved_tensors
        gx = max_pool2d_backward(grad_y, argmax, *ctx.conf)
        return gx, None, None, None, None


class _AvgPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        ctx.conf = (x.shape, kernel_size, stride, padding)
        return avg_pool2d_forward(x, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx, grad_y):
        return avg_pool2d_backward(grad_y, *ctx.conf), None, None, None


def max_pool2d(
    x: torch.Tensor,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> torch.Tensor:
    """Max pooling with a from-scratch backward pass (as ``F.max_pool2d``).

    Shapes:
        x: (N, C, H, W) -> (N, C, H_out, W_out)
    """
    _pool_args(x, kernel_size, stride, padding, dilation)
    return _MaxPool2dFunction.apply(x, kernel_size, stride, padding, dilation)


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
) -> torch.Tensor:
    """Average pooling with a from-scratch backward pass (as ``F.avg_pool2d``).

    Shapes:
        x: (N, C, H, W) -> (N, C, H_out, W_out)
    """
    _pool_args(x, kernel_size, stride, padding, 1)
    return _AvgPool2dFunction.apply(x, kernel_size, stride, padding)


# --- a table of layers: our formulas, PyTorch's shapes, Keras's summary ------


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution in a layer table (square kernel)."""

    out_channels: int  # C_out
    kernel_size: int  # k
    stride: int = 1  # s
    padding: int = 0  # p, zeros on every side
    dilation: int = 1  # d
    groups: int = 1  # g; g = C_in = C_out is a depthwise convolution
    bias: bool = True


@dataclass(frozen=True)
class Pool:
    """Max or average pooling in a layer table."""

    kernel_size: int  # k
    stride: int | None = None  # default: k
    kind: str = "max"  # "max" or "avg"


@dataclass(frozen=True)
class Flatten:
    """Flatten (C, H, W) to one vector before a dense layer."""


@dataclass(frozen=True)
class Dense:
    """A fully connected layer in a layer table."""

    out_features: int
    bias: bool = True


Layer = Conv | Pool | Flatten | Dense


@dataclass(frozen=True)
class LayerRow:
    """One row of a layer table: output shape (C, H, W) or (F,), sizes."""

    layer: str  # a short description, e.g. "conv 3x3/1, 16, d=2"
    output_shape: tuple[int, ...]
    params: int
    macs: int  # multiply-adds per example


def describe_layer(layer: Layer) -> str:
    """A short name: "conv 3x3/2, 16", "max pool 2x2/2", "dense 10"."""
    if isinstance(layer, Conv):
        text = (
            f"conv {layer.kernel_size}x{layer.kernel_size}/{layer.stride}, "
            f"{layer.out_channels}"
        )
        extras = [f"p={layer.padding}"] if layer.padding else []
        extras += [f"d={layer.dilation}"] if layer.dilation > 1 else []
        extras += [f"g={layer.groups}"] if layer.groups > 1 else []
        return text + (" (" + ", ".join(extras) + ")" if extras else "")
    if isinstance(layer, Pool):
        stride = layer.stride or layer.kernel_size
        k = layer.kernel_size
        return f"{layer.kind} pool {k}x{k}/{stride}"
    if isinstance(layer, Flatten):
        return "flatten"
    if isinstance(layer, Dense):
        return f"dense {layer.out_features}"
    raise TypeError(
        "layers must be Conv, Pool, Flatten or Dense, got "
        f"{type(layer).__name__}"
    )


def layer_table(
    input_shape: Sequence[int], layers: Sequence[Layer]
) -> list[LayerRow]:
    """Output shape, parameters and multiply-adds of each layer, by formula.

    Args:
        input_shape: (C, H, W) of one example.
        layers: Conv, Pool, Flatten and Dense specs, applied in order.
    """
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (C, H, W), got {tuple(input_shape)}"
        )
    for i, n in enumerate(input_shape):
        check_int(f"input_shape[{i}]", n, low=1)
    if not layers:
        raise ValueError("layers must not be empty, got []")
    shape, rows = tuple(input_shape), []
    for i, layer in enumerate(layers):
        name = describe_layer(layer)
        if isinstance(layer, Dense) and len(shape) != 1:
            raise ValueError(
                f"layers[{i}] ({name}) needs a vector; add Flatten() before it"
            )
        if isinstance(layer, (Conv, Pool)) and len(shape) != 3:
            raise ValueError(
                f"layers[{i}] ({name}) needs a (C, H, W) input, got {shape}"
            )
        if isinstance(layer, Conv):
            shape, params, macs = conv_cost(
                shape,
                layer.out_channels,
                layer.kernel_size,
                layer.stride,
                layer.padding,
                layer.dilation,
                layer.groups,
                layer.bias,
            )
        elif isinstance(layer, Pool):
            check_choice("kind", layer.kind, ("max", "avg"))
            s = layer.stride or layer.kernel_size
            c, h, w = shape
            size = [conv_output_size(n, layer.kernel_size, s) for n in (h, w)]
            shape, params, macs = (c, *size), 0, 0
        elif isinstance(layer, Flatten):
            shape, params, macs = (math.prod(shape),), 0, 0
        else:
            f_in = shape[0]
            f_out = check_int("out_features", layer.out_features, low=1)
            shape = (f_out,)
            params = f_in * f_out + (f_out if layer.bias else 0)
            macs = f_in * f_out
        rows.append(LayerRow(name, shape, params, macs))
    return rows


def to_torch(
    input_shape: Sequence[int], layers: Sequence[Layer]
) -> nn.Sequential:
    """The same stack as ``torch.nn`` layers (input channels filled in)."""
    rows = layer_table(input_shape, layers)  # validates the stack
    shapes = [tuple(input_shape)] + [r.output_shape for r in rows]
    modules: list[nn.Module] = []
    for layer, shape in zip(layers, shapes[:-1], strict=True):
        if isinstance(layer, Conv):
            modules.append(
                nn.Conv2d(
                    shape[0],
                    layer.out_channels,
                    layer.kernel_size,
                    layer.stride,
                    layer.padding,
                    layer.dilation,
                    layer.groups,
                    layer.bias,
                )
            )
        elif isinstance(layer, Pool):
            pool = nn.MaxPool2d if layer.kind == "max" else nn.AvgPool2d
            modules.append(pool(layer.kernel_size, layer.stride))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
        else:
            modules.append(nn.Linear(shape[0], layer.out_features, layer.bias))
    return nn.Sequential(*modules)


def torch_shapes(
    model: nn.Sequential, input_shape: Sequence[int]
) -> list[tuple[tuple[int, ...], int]]:
    """(output shape, parameters) of each layer of a ``nn.Sequential``.

    Runs one example of zeros through the layers, without gradients.
    """
    x = torch.zeros(1, *input_shape)
    out = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            n_params = sum(p.numel() for p in module.parameters())
            out.append((tuple(x.shape[1:]), n_params))
    return out


@contextlib.contextmanager
def quiet_native_stderr():
    """Send what C/C++ code writes to file descriptor 2 to /dev/null.

    TensorFlow's runtime logs (absl, before TF_CPP_MIN_LOG_LEVEL takes effect)
    that it found no GPU; a notebook kernel forwards the descriptor's output to
    the page. Python's own warnings (``sys.stderr``) are not affected.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def to_keras(input_shape: Sequence[int], layers: Sequence[Layer]):
    """The same stack as a Keras ``Sequential`` model (channels last).

    Layer i is named "L{i}"; explicit padding other than 0 or "same" becomes a
    ``ZeroPadding2D`` named "L{i}_pad" before it. A depthwise convolution
    (groups = C_in) becomes ``DepthwiseConv2D``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr():
        import keras

    rows = layer_table(input_shape, layers)
    shapes = [tuple(input_shape)] + [r.output_shape for r in rows]
    c, h, w = input_shape
    model = [keras.Input((h, w, c))]
    L = keras.layers
    for i, (layer, shape) in enumerate(zip(layers, shapes[:-1], strict=True)):
        name = f"L{i}"
        if isinstance(layer, Conv):
            k, p, s, d = (
                layer.kernel_size,
                layer.padding,
                layer.stride,
                layer.dilation,
            )
            same = s == 1 and d * (k - 1) % 2 == 0 and p == d * (k - 1) // 2
            if p and not same:
                model.append(L.ZeroPadding2D(p, name=f"{name}_pad"))
            mode = "same" if same and p else "valid"
            if layer.groups == shape[0] and layer.groups > 1:
                model.append(
                    L.DepthwiseConv2D(
                        k,
                        s,
                        mode,
                        depth_multiplier=layer.out_channels // shape[0],
                        dilation_rate=d,
                        use_bias=layer.bias,
                        name=name,
                    )
                )
            else:
                model.append(
                    L.Conv2D(
                        layer.out_channels,
                        k,
                        s,
                        mode,
                        dilation_rate=d,
                        groups=layer.groups,
                        use_bias=layer.bias,
                        name=name,
                    )
                )
        elif isinstance(layer, Pool):
            pool = (
                L.MaxPooling2D if layer.kind == "max" else L.AveragePooling2D
            )
            model.append(pool(layer.kernel_size, layer.stride, name=name))
        elif isinstance(layer, Flatten):
            model.append(L.Flatten(name=name))
        else:
            model.append(
                L.Dense(layer.out_features, use_bias=layer.bias, name=name)
            )
    with quiet_native_stderr():
        return keras.Sequential(model)


_SUMMARY_ROW = re.compile(
    r"^\W*(L\d+)(_pad)?\s+\((\w+)\)\W+\(None, ([\d, ]+)\)\W+([\d,]+)\W*$"
)


def keras_summary(model) -> list[tuple[tuple[int, ...], int]]:
    """(output shape, parameters) of each layer "L{i}" in ``model.summary()``.

    Shapes are returned channels first, (C, H, W), to compare with PyTorch's; a
    layer's padding row ("L{i}_pad") adds its parameters (none) to layer i.
    """
    text: list[str] = []
    model.summary(print_fn=lambda line, **_: text.append(line))
    found: dict[str, tuple[tuple[int, ...], int]] = {}
    for line in "\n".join(text).splitlines():
        m = _SUMMARY_ROW.match(line)
        if m is None:
            continue
        name, pad, _, shape_text, params_text = m.groups()
        shape = tuple(int(v) for v in shape_text.split(",") if v.strip())
        if len(shape) == 3:
            shape = (shape[2], shape[0], shape[1])  # (H, W, C) -> (C, H, W)
        params = int(params_text.replace(",", ""))
        if pad:
            continue
        found[name] = (shape, params)
    if not found:
        raise ValueError(
            "model.summary() printed no rows named L0, L1, ...: build the "
            "model with to_keras"
        )
    return [found[f"L{i}"] for i in range(len(found))]

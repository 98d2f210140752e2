"""Convolutional networks: LeNet, translation, receptive fields, CoordConv.

* ``LeNet``: the network of LeCun et al. (1998), "Gradient-based learning
  applied to document recognition", in today's form (ReLU, max pooling), with
  the pooling and dropout the chapter ablates.
* ``mlp_like``: the multilayer perceptron of ``dlbook.foundations.mlp`` with
  the same number of parameters as a given network.
* ``shift`` and ``shifted_accuracy``: test images moved by k pixels.
* ``receptive_field`` (the recurrence of Araujo et al. 2019, "Computing
  receptive fields of convolutional neural networks") and
  ``gradient_receptive_field``, the pixels that one output unit's gradient
  reaches, which must agree with it.
* ``AddCoords`` and ``PositionNet``: CoordConv (Liu et al. 2018, "An
  intriguing failing of convolutional neural networks and the CoordConv
  solution") on their supervised coordinate-regression task.

The layers are PyTorch's; training goes through ``dlbook.train.fit``. Tests:
``tests/convnets/test_cnn.py`` (the receptive field against gradients and
against torchvision-free hand counts, CoordConv's channels, shapes, and short
runs that must learn). Chapter: ``book/convnets/cnn.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_probability,
    check_same_length,
    check_tensor,
)
from dlbook.convnets.convolution import conv_output_size
from dlbook.foundations.mlp import MLP, MLPConfig, width_for_budget


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters (weights and biases)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- LeNet -------------------------------------------------------------------


@dataclass(frozen=True)
class LeNetConfig:
    """A LeNet-5-style network: two convolutions, two poolings, three dense."""

    in_channels: int = 1  # 1 for grey-scale images
    image_size: int = 28  # H = W; LeNet-5 read 32 x 32, i.e. 28 + 2 padding
    channels: tuple[int, int] = (6, 16)  # feature maps of C1 and C3
    hidden: tuple[int, int] = (120, 84)  # units of F5 and F6
    kernel_size: int = 5  # 5 x 5 convolutions, as in the paper
    pooling: str = "max"  # "max", "avg", or "stride" (stride-2 convs instead)
    dropout: float = 0.0  # drop probability before each dense layer
    num_classes: int = 10


class LeNet(nn.Module):
    """conv 5x5 → ReLU → pool 2 → conv 5x5 → ReLU → pool 2 → 3 dense layers.

    h₁ = pool(ReLU(W₁ ⋆ x + b₁)), h₂ = pool(ReLU(W₂ ⋆ h₁ + b₂)),
    logits = W₅ ReLU(W₄ ReLU(W₃ vec(h₂) + b₃) + b₄) + b₅, where ⋆ is the
    convolution and every weight W₁, W₂ is shared across positions. With
    ``pooling="stride"`` the convolutions move by 2 instead of pooling; with
    ``dropout`` p, the flattened features and both hidden layers are dropped
    with probability p during training.

    Shapes:
        x: (N, in_channels, image_size, image_size) -> (N, num_classes)
    """

    def __init__(self, cfg: LeNetConfig = LeNetConfig()):
        super().__init__()
        check_choice("pooling", cfg.pooling, ("max", "avg", "stride"))
        check_probability("dropout", cfg.dropout, allow_one=False)
        size = check_int("image_size", cfg.image_size, low=12)
        k = check_int("kernel_size", cfg.kernel_size, low=1)
        c1, c2 = cfg.channels
        stride = 2 if cfg.pooling == "stride" else 1
        self.cfg = cfg
        if cfg.pooling == "stride":
            pool = nn.Identity
        else:
            pool = nn.MaxPool2d if cfg.pooling == "max" else nn.AvgPool2d
        # registered in the order of the forward pass (see receptive_field)
        self.conv1 = nn.Conv2d(cfg.in_channels, c1, k, stride, padding=k // 2)
        self.pool1 = pool(2) if cfg.pooling != "stride" else pool()
        self.conv2 = nn.Conv2d(c1, c2, k, stride)
        self.pool2 = pool(2) if cfg.pooling != "stride" else pool()
        pooled = cfg.pooling != "stride"  # pooling halves the size
        size = conv_output_size(size, k, stride, k // 2) // (
            2 if pooled else 1
        )
        size = conv_output_size(size, k, stride) // (2 if pooled else 1)
        self.feature_shape = (c2, size, size)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc1 = nn.Linear(c2 * size * size, cfg.hidden[0])
        self.fc2 = nn.Linear(cfg.hidden[0], cfg.hidden[1])
        self.fc3 = nn.Linear(cfg.hidden[1], cfg.num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps after each convolution's ReLU (before pooling)."""
        a1 = F.relu(self.conv1(x))  # (N, c1, H, W)
        a2 = F.relu(self.conv2(self.pool1(a1)))  # (N, c2, H', W')
        return [a1, a2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(
            "x",
            x,
            shape=(None, self.cfg.in_channels, None, None),
            floating=True,
        )
        _, a2 = self.features(x)
        h = self.drop(self.pool2(a2).flatten(1))  # (N, c2·h·w)
        h = self.drop(F.relu(self.fc1(h)))
        h = self.drop(F.relu(self.fc2(h)))
        return self.fc3(h)


def mlp_like(
    model: nn.Module,
    depth: int = 2,
    d_in: int = 784,
    num_classes: int = 10,
) -> MLP:
    """An MLP with ``depth`` equal hidden layers and about as many parameters.

    The width comes from ``dlbook.foundations.mlp.width_for_budget``: the
    integer whose parameter count is closest to the model's.
    """
    budget = count_parameters(model)
    width = width_for_budget(budget, depth, d_in, num_classes)
    return MLP(MLPConfig(d_in, (width,) * depth, num_classes))


# --- translation -------------------------------------------------------------


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move images dy pixels down and dx right: what leaves is lost, 0 enters.

    Shapes:
        x: (N, C, H, W) -> (N, C, H, W)
    """
    check_tensor("x", x, ndim=4)
    h, w = x.shape[-2:]
    dy = check_int("dy", dy, low=-h + 1, high=h - 1)
    dx = check_int("dx", dx, low=-w + 1, high=w - 1)
    out = torch.zeros_like(x)
    out[
        ...,
        max(dy, 0) : h + min(dy, 0),
        max(dx, 0) : w + min(dx, 0),
    ] = x[..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def shift_randomly(
    x: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """Move each image k pixels up, down, left or right (drawn per image)."""
    check_int("k", k, low=0)
    directions = torch.randint(0, 4, (len(x),), generator=generator)
    moves = [(-k, 0), (k, 0), (0, -k), (0, k)]
    out = torch.empty_like(x)
    for d, (dy, dx) in enumerate(moves):
        chosen = directions == d
        out[chosen] = shift(x[chosen], dy, dx)
    return out


@torch.no_grad()
def shifted_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    shifts: Sequence[int],
    seed: int = 0,
    batch_size: int = 1000,
) -> list[float]:
    """Accuracy on the images moved by k pixels in a random direction, per k.

    The directions are drawn once per k from a generator seeded with ``seed``,
    so every model sees the same shifted images.
    """
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    check_tensor("y", y, ndim=1, floating=False)
    check_same_length(x=x, y=y)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for k in shifts:
        xs = shift_randomly(x, k, torch.Generator().manual_seed(seed + k))
        correct = 0
        for i in range(0, len(xs), batch_size):
            logits = model(xs[i : i + batch_size].to(device))
            correct += int(
                (logits.argmax(1).cpu() == y[i : i + batch_size]).sum()
            )
        out.append(correct / len(x))
    return out


# --- receptive fields --------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """What one unit of a layer sees: r × r input pixels, units j apart.

    The unit at (0, 0) of the layer is centred on input pixel ``start``
    (negative when it lies in the padding).
    """

    layer: str
    size: int  # r
    jump: int  # j: input pixels between neighbouring units
    start: float  # centre of unit 0 in input coordinates


def receptive_field(model: nn.Module) -> list[ReceptiveField]:
    """The receptive field after each convolution and pooling layer, in order.

    r_l = r_{l−1} + d_l (k_l − 1) j_{l−1},  j_l = j_{l−1} s_l,
    start_l = start_{l−1} + (d_l (k_l − 1) / 2 − p_l) j_{l−1},
    from r_0 = j_0 = 1, start_0 = 0 (the input pixels). Activation, dropout
    and normalization layers do not change it; layers are visited in the
    order ``named_modules`` lists them, which must be the order of the
    forward pass.
    """
    r, j, start, out = 1, 1, 0.0, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = (
                _first(m.kernel_size),
                _first(m.stride),
                _first(m.padding),
            )
            d = _first(getattr(m, "dilation", 1))
            start += (d * (k - 1) / 2 - p) * j
            r += d * (k - 1) * j
            j *= s
            out.append(ReceptiveField(name, r, j, start))
    if not out:
        raise ValueError("model has no Conv2d, MaxPool2d or AvgPool2d layer")
    return out


def _first(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def gradient_receptive_field(
    features: nn.Module,
    input_shape: Sequence[int],
    unit: tuple[int, int, int],
    samples: int = 32,
    seed: int = 0,
) -> torch.Tensor:
    """The input pixels that can change one unit: its gradient is nonzero.

    Max pooling and ReLU route the gradient of one input to a subset of the
    pixels, so the mask is the union over ``samples`` random inputs (one batch:
    the examples of a batch do not interact in eval mode).

    Args:
        features: maps (N, *input_shape) to (N, C, H', W').
        unit: (channel, row, column) of the unit in that output.

    Returns:
        A boolean (H, W) mask.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, *input_shape, generator=g, requires_grad=True)
    was_training = features.training
    features.eval()
    c, row, col = unit
    try:
        out = features(x)
        (grad,) = torch.autograd.grad(out[:, c, row, col].sum(), x)
    finally:
        features.train(was_training)
    return grad.abs().sum(dim=(0, 1)) > 0


# --- CoordConv ---------------------------------------------------------------


class AddCoords(nn.Module):
    """Append two channels: each pixel's row and column, scaled to [−1, 1].

    Liu et al.'s CoordConv is this layer followed by an ordinary convolution:
    the convolution can then compute functions of absolute position.

    Shapes:
        x: (N, C, H, W) -> (N, C + 2, H, W)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4, floating=True)
        n, _, h, w = x.shape
        rows = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device)
        cols = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device)
        ii = rows.view(1, 1, h, 1).expand(n, 1, h, w)
        jj = cols.view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, ii, jj], dim=1)


@dataclass(frozen=True)
class PositionNetConfig:
    """A small fully convolutional regressor of (row, column)."""

    coords: bool = False  # CoordConv: AddCoords before the first convolution
    head: str = "pool"  # "pool": global max pooling; "dense": flatten
    channels: int = 8  # feature maps of both convolutions
    image_size: int = 12  # H = W, needed by the dense head


class PositionNet(nn.Module):
    """conv 3×3 → ReLU → conv 1×1 → ReLU → global max pool (or dense) → 2.

    Without coordinates, convolutions are translation-equivariant and global
    pooling is invariant, so the pooled network cannot say where a pattern
    is (except near the zero-padded border). The dense head can, for the
    positions it was trained on. CoordConv gives the convolutions the
    position as two more input channels.

    Shapes:
        x: (N, 1, H, W) -> (N, 2), the predicted (row, column) in [−1, 1]
    """

    def __init__(self, cfg: PositionNetConfig = PositionNetConfig()):
        super().__init__()
        check_choice("head", cfg.head, ("pool", "dense"))
        width = check_int("channels", cfg.channels, low=1)
        self.cfg = cfg
        c_in = 1 + 2 * cfg.coords
        self.body = nn.Sequential(
            *([AddCoords()] if cfg.coords else []),
            nn.Conv2d(c_in, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 1),
            nn.ReLU(),
        )
        if cfg.head == "pool":
            self.head = nn.Sequential(
                nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(width, 2)
            )
        else:
            size = check_int("image_size", cfg.image_size, low=1)
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(width * size * size, 2)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, 1, None, None), floating=True)
        return self.head(self.body(x))


def one_hot_positions(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every one-pixel image of a size × size canvas, and its (row, col).

    Liu et al.'s supervised coordinate regression: the input is an image with
    one pixel on, the target its coordinates, scaled to [−1, 1].

    Returns:
        images (size², 1, size, size) and targets (size², 2).
    """
    size = check_int("size", size, low=2)
    idx = torch.arange(size * size)
    images = torch.zeros(size * size, 1, size, size)
    images.view(size * size, -1)[idx, idx] = 1.0
    rows, cols = idx // size, idx % size
    targets = torch.stack([rows, cols], dim=1).float() / (size - 1) * 2 - 1
    return images, targets


def quadrant_split(targets: torch.Tensor) -> torch.Tensor:
    """True for positions in the bottom-right quadrant (Liu et al.'s test)."""
    check_tensor("targets", targets, shape=(None, 2))
    return (targets[:, 0] > 0) & (targets[:, 1] > 0)


def pixel_error(
    pred: torch.Tensor, targets: torch.Tensor, size: int
) -> torch.Tensor:
    """Euclidean distance in pixels between predicted and true positions."""
    return ((pred - targets) * (size - 1) / 2).norm(dim=1)

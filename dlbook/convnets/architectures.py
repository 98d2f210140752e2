"""1×1 convolutions, Inception, residual networks, separable convolutions.

* ``pointwise_as_linear`` and ``ReductionNet``: the 1×1 convolution of Lin et
  al. (2014), "Network in network", as a linear layer at every pixel, and the
  bottleneck it makes possible.
* ``Inception``: the block of Szegedy et al. (2015), "Going deeper with
  convolutions", named as torchvision's ``googlenet.Inception`` so that its
  state dict loads into ours.
* ``BasicBlock``, ``Bottleneck``, ``ResNet`` and ``resnet18``: He et al.
  (2016), "Deep residual learning for image recognition", named as
  torchvision's ``resnet`` so that ``torchvision.models.resnet18()``'s state
  dict loads into ours and gives the same outputs.
* ``DepthwiseSeparableConv``: the MobileNet layer of Howard et al. (2017).
* ``CifarResNet``: He et al.'s CIFAR-10 networks of depth 6n + 2, with or
  without shortcuts (the plain networks of the degradation experiment), and
  ``AugmentedLoader``, their 4-pixel-shift and flip augmentation.

Checked against torchvision (``Inception``, ``resnet18``, ``resnet50``),
Keras's ``SeparableConv2D`` and ``torch.utils.flop_counter`` in
``tests/convnets/test_architectures.py``. Training goes through
``dlbook.train.fit``. Chapter: ``book/convnets/architectures.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_same_length,
    check_tensor,
)
from dlbook.convnets.convolution import conv_cost, conv_output_size

# --- 1x1 convolutions --------------------------------------------------------


def pointwise_as_linear(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1×1 convolution computed as a linear layer applied at every pixel.

    y[n, :, i, j] = W x[n, :, i, j] + b: the same matrix W (C_out × C_in) at
    every position, a "network in network" of one layer.

    Shapes:
        x: (N, C_in, H, W) -> (N, C_out, H, W)
    """
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        raise ValueError(
            "conv must be a 1x1 convolution with stride 1 and one group, got "
            f"kernel_size={conv.kernel_size}, stride={conv.stride}, "
            f"groups={conv.groups}"
        )
    check_tensor("x", x, shape=(None, conv.in_channels, None, None))
    w = conv.weight[:, :, 0, 0]  # (C_out, C_in)
    pixels = x.permute(0, 2, 3, 1)  # (N, H, W, C_in): one vector per pixel
    return F.linear(pixels, w, conv.bias).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class ReductionNetConfig:
    """A small CNN whose middle layer is a 3×3 conv, with or without 1×1s."""

    width: int = 64  # C: channels of the stem and of the block's output
    reduce: int | None = None  # r: 1x1 reduction to r channels; None: plain
    in_channels: int = 1
    image_size: int = 14  # H = W of the input
    num_classes: int = 10


def _conv_bn_relu(c_in: int, c_out: int, k: int, stride: int = 1):
    return [
        nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


class ReductionNet(nn.Module):
    """stem 3×3/2 → block → max pool 2 → linear; batch norm after each conv.

    The block is a 3×3 convolution C → C (9C² weights), or, with ``reduce``
    r, the bottleneck 1×1 (C → r) → 3×3 (r → r) → 1×1 (r → C), with
    2rC + 9r² weights: for r = C/4 about 8.5 times fewer, and as many times
    fewer multiply-adds. Each convolution is followed by batch norm and a
    ReLU.

    Shapes:
        x: (N, in_channels, image_size, image_size) -> (N, num_classes)
    """

    def __init__(self, cfg: ReductionNetConfig = ReductionNetConfig()):
        super().__init__()
        c = check_int("width", cfg.width, low=1)
        self.cfg = cfg
        self.stem = nn.Sequential(*_conv_bn_relu(cfg.in_channels, c, 3, 2))
        if cfg.reduce is None:
            layers = _conv_bn_relu(c, c, 3)
        else:
            r = check_int("reduce", cfg.reduce, low=1, high=c)
            layers = (
                _conv_bn_relu(c, r, 1)
                + _conv_bn_relu(r, r, 3)
                + _conv_bn_relu(r, c, 1)
            )
        self.block = nn.Sequential(*layers)
        size = conv_output_size(cfg.image_size, 3, 2, 1) // 2
        self.head = nn.Sequential(
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c * size * size, cfg.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.cfg.image_size
        check_tensor("x", x, shape=(None, self.cfg.in_channels, size, size))
        return self.head(self.block(self.stem(x)))


def conv_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of every Conv2d and Linear for one example, by formula.

    Uses ``conv_cost`` on the input shape each convolution sees (recorded with
    forward hooks on one example of zeros); a linear layer costs in × out.
    """
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(module, inputs, output):
        shapes[module] = tuple(inputs[0].shape[1:])

    layers = [
        m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    hooks = [m.register_forward_hook(record) for m in layers]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = 0
    for m, shape in shapes.items():
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        else:
            total += conv_cost(
                shape,
                m.out_channels,
                m.kernel_size[0],
                m.stride[0],
                m.padding[0],
                m.dilation[0],
                m.groups,
            )[2]
    return total


# --- Inception ---------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Convolution (no bias) → batch norm (ε = 0.001) → ReLU (torchvision)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four branches side by side, concatenated along the channels.

    y = [b₁(x), b₂(x), b₃(x), b₄(x)]: a 1×1 conv; a 1×1 reduction then a 3×3
    conv; a 1×1 reduction then a 5×5 conv; a 3×3 max pool then a 1×1
    projection. Every branch keeps H × W, so the outputs stack. Szegedy et
    al.'s third branch is 5×5; torchvision's port uses 3×3 there (its issue
    906), so ``branch3_kernel=3`` reproduces torchvision's block.

    Shapes:
        x: (N, in_channels, H, W)
        -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        branch3_kernel: int = 5,
    ):
        super().__init__()
        k = check_choice("branch3_kernel", branch3_kernel, (3, 5))
        self.in_channels = check_int("in_channels", in_channels, low=1)
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=k, padding=k // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, self.in_channels, None, None))
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        return torch.cat([b(x) for b in branches], dim=1)


def inception_branch_sizes(size: int, stride: int) -> dict[str, int]:
    """The output size of each Inception branch, its first layer at stride s.

    The convolutions pad to keep the size (p = (k − 1)/2), giving
    ⌊(n − 1)/s⌋ + 1 for every kernel; the pool branch rounds up
    (``ceil_mode``, as GoogLeNet's pools do), giving ⌈(n − 1)/s⌉ + 1. For
    odd n − 1 and s = 2 the branches disagree by one and cannot be
    concatenated: GoogLeNet downsamples between blocks instead.
    """
    return {
        "1x1": conv_output_size(size, 1, stride, 0),
        "3x3": conv_output_size(size, 3, stride, 1),
        "5x5": conv_output_size(size, 5, stride, 2),
        "pool": conv_output_size(size, 3, stride, 1, ceil_mode=True),
    }


# --- residual networks -------------------------------------------------------


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """A 3×3 convolution that keeps the size at stride 1, without bias."""
    return nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """y = ReLU(F(x) + shortcut(x)), F = conv3×3 → BN → ReLU → conv3×3 → BN.

    The shortcut is the identity, or a 1×1 convolution with batch norm when
    the stride or the number of channels changes (He et al.'s option B).

    Shapes:
        x: (N, in_planes, H, W) -> (N, planes, H / stride, W / stride)
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """y = ReLU(F(x) + shortcut(x)), F = 1×1 (reduce) → 3×3 → 1×1 (expand ×4).

    Each convolution is followed by batch norm, the first two by a ReLU. As
    in torchvision ("ResNet v1.5"), the stride sits on the 3×3 convolution;
    He et al. put it on the first 1×1.

    Shapes:
        x: (N, in_planes, H, W) -> (N, 4·planes, H / stride, W / stride)
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = _projection(in_planes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _projection(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """1×1 conv + BN where the shortcut must change shape, else None."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
    )


class ResNet(nn.Module):
    """The ImageNet ResNet: a 7×7 stem, 4 stages of residual blocks, a linear.

    conv 7×7/2 → BN → ReLU → max pool 3×3/2 → stage 1 (64 channels) → stage 2
    (128, stride 2) → stage 3 (256, stride 2) → stage 4 (512, stride 2) →
    global average pool → linear. Parameter names follow torchvision, and so
    does the initialization (He normal for convolutions).

    Args:
        block: BasicBlock or Bottleneck.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.

    Shapes:
        x: (N, 3, H, W) -> (N, num_classes)
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(
                f"layers must give the blocks of 4 stages, got {tuple(layers)}"
            )
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        in_planes, stages = 64, []
        for i, (planes, n) in enumerate(
            zip((64, 128, 256, 512), layers, strict=True)
        ):
            n = check_int(f"layers[{i}]", n, low=1)
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, 3, None, None), floating=True)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))  # (N, num_classes)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18: basic blocks, (2, 2, 2, 2), 11.7 million parameters."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50: bottleneck blocks, (3, 4, 6, 3), 25.6 million parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


# --- depthwise-separable convolutions ----------------------------------------


class DepthwiseSeparableConv(nn.Module):
    """A k×k convolution per channel (depthwise), then a 1×1 across channels.

    depthwise: k² C_in weights (groups = C_in); pointwise: C_in C_out. Against
    k² C_in C_out for a full convolution the ratio is 1/C_out + 1/k². Each is
    followed by batch norm and a ReLU, as in MobileNet.

    Shapes:
        x: (N, C_in, H, W) -> (N, C_out, H', W'), H' = ⌊(H − 1)/s⌋ + 1
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
    ):
        super().__init__()
        c_in = check_int("in_channels", in_channels, low=1)
        c_out = check_int("out_channels", out_channels, low=1)
        k = check_int("kernel_size", kernel_size, low=1)
        self.depthwise = nn.Conv2d(
            c_in, c_in, k, stride, padding=k // 2, groups=c_in, bias=False
        )
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.depthwise(x)))
        return F.relu(self.bn2(self.pointwise(x)))


def separable_params(
    in_channels: int, out_channels: int, kernel_size: int, bias: bool = False
) -> dict[str, int]:
    """Weights of a full k×k convolution and of its separable version."""
    c_in = check_int("in_channels", in_channels, low=1)
    c_out = check_int("out_channels", out_channels, low=1)
    k = check_int("kernel_size", kernel_size, low=1)
    b = c_out if bias else 0
    return {
        "full": k * k * c_in * c_out + b,
        "separable": k * k * c_in + c_in * c_out + b,
    }


# --- CIFAR ResNets and their plain twins -------------------------------------


class CifarBlock(nn.Module):
    """Two 3×3 convolutions with batch norm; with ``residual``, plus x.

    The CIFAR networks of He et al. use option A: the shortcut subsamples x
    with the stride and pads the new channels with zeros, so it adds no
    parameters, and a plain network has exactly as many as its residual twin.

    Shapes:
        x: (N, c_in, H, W) -> (N, c_out, ⌈H / stride⌉, ⌈W / stride⌉)
    """

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.residual, self.stride, self.extra = residual, stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            out = out + F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return F.relu(out)


@dataclass(frozen=True)
class CifarResNetConfig:
    """He et al.'s CIFAR-10 network: 6n + 2 layers in three stages."""

    depth: int = 20  # 6n + 2: 20, 32, 44, 56, 110
    residual: bool = True  # False: the plain network (no shortcuts)
    widths: tuple[int, int, int] = (16, 32, 64)  # channels of the 3 stages
    in_channels: int = 3
    num_classes: int = 10


class CifarResNet(nn.Module):
    """conv 3×3 → 3 stages of n blocks (stride 2 between) → pool → linear.

    Stage i has n blocks of two 3×3 convolutions with ``widths[i]`` channels;
    the first block of stages 2 and 3 halves the size. With the stem and the
    classifier that makes 6n + 2 weighted layers.

    Shapes:
        x: (N, in_channels, H, W) -> (N, num_classes)
    """

    def __init__(self, cfg: CifarResNetConfig = CifarResNetConfig()):
        super().__init__()
        depth = check_int("depth", cfg.depth, low=8)
        if (depth - 2) % 6:
            raise ValueError(
                f"depth must be 6n + 2 (8, 14, 20, ...), got {depth}"
            )
        n = (depth - 2) // 6
        self.cfg = cfg
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(
            conv3x3(cfg.in_channels, w0), nn.BatchNorm2d(w0), nn.ReLU()
        )
        blocks, c = [], w0
        for i, w in enumerate(cfg.widths):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(CifarBlock(c, w, stride, cfg.residual))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, self.cfg.in_channels, None, None))
        x = self.blocks(self.stem(x))  # (N, widths[-1], H/4, W/4)
        return self.fc(x.mean(dim=(2, 3)))


class AugmentedLoader:
    """Shuffled batches, each image shifted by up to ``padding`` and flipped.

    He et al.'s CIFAR augmentation: pad by 4 with zeros, crop a random
    H × W window, flip left-right with probability 1/2. Done on whole batches
    (on their device), so it is cheap on a GPU. One pass is one epoch.

    Shapes:
        yields (x: (B, C, H, W), y: (B,))
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = 128,
        padding: int = 4,
        flip: bool = True,
        seed: int = 0,
    ):
        check_tensor("x", x, ndim=4, floating=True, nonempty=True)
        check_tensor("y", y, ndim=1, floating=False)
        check_same_length(x=x, y=y)
        self.x, self.y = x, y
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.padding = check_int("padding", padding, low=0)
        self.flip = flip
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.augment(self.x[idx]), self.y[idx]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Shift (crop the zero-padded image) and flip each image."""
        b, _, h, w = x.shape
        p, g = self.padding, self.generator
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), generator=g).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=g).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[
            :, None, :, None
        ]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[
            :, None, None, :
        ]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        out = xp[batch, chan, rows, cols]  # (B, C, H, W)
        if self.flip:
            flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        return out

"""Capsule networks: the CapsNet of Sabour, Frosst and Hinton (2017).

Sabour et al., "Dynamic routing between capsules" (NeurIPS 2017). A capsule
is a group of neurons whose output is a vector: its length is the probability
that an entity is present, its direction the entity's pose (position, size,
stroke thickness...).

* ``squash``: the non-linearity that shrinks a vector's length into [0, 1).
* ``PrimaryCapsules``: a convolution whose output channels are grouped into
  capsules, one per position and capsule type.
* ``dynamic_routing`` (vectorized) and ``dynamic_routing_loop`` (the paper's
  Procedure 1 written with loops, the reference the tests compare it with).
* ``DigitCapsules`` and ``CapsNet``: one pose prediction per (primary capsule,
  class), routed by agreement into one 16-D capsule per class; a decoder
  reconstructs the image from the capsule of one class.
* ``CapsuleLoss``: the margin loss plus the scaled-down reconstruction loss,
  the ``loss_fn`` of ``dlbook.train.fit``; ``capsule_accuracy`` its metric.
* ``perturbed_reconstructions``: the paper's figure 4, one capsule dimension
  moved at a time; ``lenet_like``: a LeNet with a given parameter budget,
  the CNN baseline.
* ``affine``/``random_affine``: rotated, scaled, sheared and shifted test
  digits, a home-made version of the paper's affNIST experiment.

There is no capsule layer in PyTorch or torchvision to compare with; the
vectorized routing is checked against the loop version, the margin loss
against its per-class definition, and the architecture's parameter count
against the paper's 8.2M (``tests/convnets/test_capsules.py``). Chapter:
``book/convnets/capsules.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbook.checks import (
    check_int,
    check_labels,
    check_number,
    check_same_length,
    check_tensor,
)
from dlbook.convnets.cnn import LeNet, LeNetConfig
from dlbook.convnets.convolution import conv_output_size
from dlbook.train import accuracy

# --- building blocks ---------------------------------------------------------


def squash(s: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """Shrink each vector's length into [0, 1), keeping its direction.

    v = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖ (Sabour et al., eq. 1): short vectors
    shrink to almost zero, long ones to just under unit length. ``eps`` keeps
    the gradient finite at s = 0.

    Shapes:
        s: (..., D) -> (..., D), along ``dim``
    """
    check_tensor("s", s, floating=True)
    sq = (s * s).sum(dim, keepdim=True)
    return sq / (1 + sq) * s / torch.sqrt(sq + eps)


class PrimaryCapsules(nn.Module):
    """A convolution whose channels are read as capsules, then squashed.

    The convolution has ``types · dim`` output channels; at every position
    of its (H', W') output each group of ``dim`` channels is one capsule, so
    there are ``types · H' · W'`` capsules (32 · 6 · 6 = 1,152 in the paper).

    Shapes:
        x: (N, in_channels, H, W) -> (N, types · H' · W', dim)
    """

    def __init__(
        self,
        in_channels: int,
        types: int,
        dim: int,
        kernel_size: int = 9,
        stride: int = 2,
    ):
        super().__init__()
        self.types = check_int("types", types, low=1)
        self.dim = check_int("dim", dim, low=1)
        self.conv = nn.Conv2d(
            check_int("in_channels", in_channels, low=1),
            types * dim,
            check_int("kernel_size", kernel_size, low=1),
            check_int("stride", stride, low=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x, shape=(None, self.conv.in_channels, None, None))
        u = self.conv(x)  # (N, types·dim, H', W')
        n, _, h, w = u.shape
        u = u.view(n, self.types, self.dim, h, w)
        u = u.permute(0, 1, 3, 4, 2).reshape(n, -1, self.dim)  # (N, I, D)
        return squash(u)


def _check_routing(u_hat: Tensor, iterations: int) -> int:
    check_tensor("u_hat", u_hat, ndim=4, floating=True, nonempty=True)
    return check_int("iterations", iterations, low=1)


def dynamic_routing(
    u_hat: Tensor, iterations: int = 3
) -> tuple[Tensor, Tensor]:
    """Routing by agreement (Sabour et al., Procedure 1), for a whole batch.

    Capsule i of the layer below predicts the output of capsule j above as
    û_{j|i}. The logits b_ij start at 0; each iteration computes

        c_ij = softmax_j(b_ij),  s_j = Σ_i c_ij û_{j|i},  v_j = squash(s_j),
        b_ij ← b_ij + û_{j|i} · v_j,

    so a capsule sends more of its output to the parents whose output agrees
    with its prediction. The last update of b would not change v and is
    skipped.

    Args:
        u_hat: the predictions û_{j|i}.
        iterations: r ≥ 1; r = 1 gives every parent the same coupling 1/J.

    Returns:
        v (N, J, D), the output capsules, and c (N, I, J), the couplings of
        the last iteration.

    Shapes:
        u_hat: (N, I, J, D)
    """
    r = _check_routing(u_hat, iterations)
    b = u_hat.new_zeros(u_hat.shape[:3])  # (N, I, J)
    for it in range(r):
        c = b.softmax(dim=2)  # each child's couplings sum to 1 over parents
        s = torch.einsum("nij,nijd->njd", c, u_hat)  # (N, J, D)
        v = squash(s)
        if it < r - 1:
            b = b + torch.einsum("nijd,njd->nij", u_hat, v)  # agreement
    return v, c


def dynamic_routing_loop(
    u_hat: Tensor, iterations: int = 3
) -> tuple[Tensor, Tensor]:
    """Procedure 1 line by line, one example and one (i, j) pair at a time.

    Slow; it exists so that the tests can check ``dynamic_routing``, which
    computes the same thing with two ``einsum`` per iteration.
    """
    r = _check_routing(u_hat, iterations)
    n_batch, n_in, n_out, dim = u_hat.shape
    vs, cs = [], []
    for n in range(n_batch):
        b = [[0.0] * n_out for _ in range(n_in)]
        for it in range(r):
            c = []
            for i in range(n_in):
                z = sum(math.exp(b[i][k]) for k in range(n_out))
                c.append([math.exp(b[i][j]) / z for j in range(n_out)])
            v = []
            for j in range(n_out):
                s = sum(c[i][j] * u_hat[n, i, j] for i in range(n_in))
                norm2 = (s * s).sum().item()
                v.append(norm2 / (1 + norm2) * s / math.sqrt(norm2 + 1e-8))
            if it < r - 1:
                for i in range(n_in):
                    for j in range(n_out):
                        b[i][j] += (u_hat[n, i, j] * v[j]).sum().item()
        vs.append(torch.stack(v))
        cs.append(torch.tensor(c, dtype=u_hat.dtype))
    return torch.stack(vs), torch.stack(cs)


class DigitCapsules(nn.Module):
    """One capsule per class, routed from every primary capsule.

    Each pair (i, j) has its own transformation matrix W_ij, which turns
    the pose u_i of primary capsule i into a prediction û_{j|i} = W_ij u_i
    of the pose of class capsule j (eq. 2); routing combines them.

    Shapes:
        u: (N, in_capsules, in_dim) -> v (N, out_capsules, out_dim) and
        the couplings c (N, in_capsules, out_capsules)
    """

    def __init__(
        self,
        in_capsules: int,
        in_dim: int,
        out_capsules: int,
        out_dim: int,
        iterations: int = 3,
    ):
        super().__init__()
        shape = (
            check_int("in_capsules", in_capsules, low=1),
            check_int("out_capsules", out_capsules, low=1),
            check_int("out_dim", out_dim, low=1),
            check_int("in_dim", in_dim, low=1),
        )
        self.iterations = check_int("iterations", iterations, low=1)
        # small weights: every prediction starts short, squash near linear
        self.W = nn.Parameter(0.05 * torch.randn(shape))  # (I, J, D', D)

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        i, _, _, d = self.W.shape
        check_tensor("u", u, shape=(None, i, d), floating=True)
        u_hat = torch.einsum("ijed,nid->nije", self.W, u)  # (N, I, J, D')
        return dynamic_routing(u_hat, self.iterations)


# --- the network -------------------------------------------------------------


@dataclass(frozen=True)
class CapsNetConfig:
    """The architecture; the defaults are the paper's MNIST network."""

    in_channels: int = 1  # 1 for grey-scale digits
    image_size: int = 28  # H = W
    conv_channels: int = 256  # Conv1: 9 x 9, stride 1, ReLU
    kernel_size: int = 9  # of Conv1 and of the primary capsules
    primary_types: int = 32  # capsule types (channel groups) of PrimaryCaps
    primary_dim: int = 8  # dimensions of a primary capsule
    primary_stride: int = 2  # stride of the PrimaryCaps convolution
    num_classes: int = 10  # one digit capsule per class
    digit_dim: int = 16  # dimensions of a digit capsule
    iterations: int = 3  # routing iterations r
    decoder: tuple[int, ...] = (512, 1024)  # hidden widths of the decoder


class CapsNetOutput(NamedTuple):
    """What :class:`CapsNet` returns; the loss needs all three."""

    lengths: Tensor  # (N, J): ‖v_j‖, the probability that class j is present
    poses: Tensor  # (N, J, D): the class capsules v_j
    inputs: Tensor  # (N, C, H, W): the images, the reconstruction's target


class CapsNet(nn.Module):
    """Conv1 → PrimaryCaps → DigitCaps (routing), and a decoder.

    h = ReLU(Conv1 ⋆ x), u = squash(PrimaryCaps ⋆ h) regrouped into
    capsules, v = routing(W u): the class is the longest v_j. The decoder,
    three dense layers ending in a sigmoid, reconstructs the image from the
    poses with every capsule but one set to zero (``reconstruct``).

    Shapes:
        x: (N, in_channels, image_size, image_size) -> CapsNetOutput
    """

    def __init__(self, cfg: CapsNetConfig = CapsNetConfig()):
        super().__init__()
        k = check_int("kernel_size", cfg.kernel_size, low=1)
        size = check_int("image_size", cfg.image_size, low=1)
        stride = check_int("primary_stride", cfg.primary_stride, low=1)
        check_int("conv_channels", cfg.conv_channels, low=1)
        check_int("num_classes", cfg.num_classes, low=2)
        grid = conv_output_size(size, k, 1)
        grid = conv_output_size(grid, k, stride) if grid >= k else 0
        if grid < 1:
            raise ValueError(
                f"image_size {size} is too small for two {k} x {k} "
                "convolutions: the primary capsule grid would be empty"
            )
        for name in ("primary_types", "primary_dim", "digit_dim"):
            check_int(name, getattr(cfg, name), low=1)
        check_int("iterations", cfg.iterations, low=1)
        for width in cfg.decoder:
            check_int("decoder widths", width, low=1)
        self.cfg = cfg
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.conv_channels, k)
        self.primary = PrimaryCapsules(
            cfg.conv_channels, cfg.primary_types, cfg.primary_dim, k, stride
        )
        self.num_primary = cfg.primary_types * grid * grid
        self.digits = DigitCapsules(
            self.num_primary,
            cfg.primary_dim,
            cfg.num_classes,
            cfg.digit_dim,
            cfg.iterations,
        )
        widths = [cfg.digit_dim * cfg.num_classes, *cfg.decoder]
        layers: list[nn.Module] = []
        for a, b in pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        pixels = cfg.in_channels * size * size
        self.decoder = nn.Sequential(
            *layers, nn.Linear(widths[-1], pixels), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> CapsNetOutput:
        cfg = self.cfg
        shape = (None, cfg.in_channels, cfg.image_size, cfg.image_size)
        check_tensor("x", x, shape=shape, floating=True)
        h = F.relu(self.conv1(x))  # (N, C1, H - k + 1, W - k + 1)
        u = self.primary(h)  # (N, I, D)
        v, _ = self.digits(u)  # (N, J, D')
        return CapsNetOutput(v.norm(dim=-1), v, x)

    def reconstruct(self, poses: Tensor, labels: Tensor) -> Tensor:
        """Decode the image from the capsule of ``labels``, others masked.

        The paper masks with the true class in training and with the
        longest capsule at test time.

        Shapes:
            poses: (N, J, D'), labels: (N,) -> (N, C, H, W)
        """
        cfg = self.cfg
        check_tensor(
            "poses",
            poses,
            shape=(None, cfg.num_classes, cfg.digit_dim),
            floating=True,
        )
        check_labels("labels", labels, cfg.num_classes)
        if len(labels) != len(poses):
            raise ValueError(
                f"labels has {len(labels)} rows for the {len(poses)} rows of "
                "poses: one label per example is expected"
            )
        mask = F.one_hot(labels, cfg.num_classes).to(poses.dtype)
        flat = (poses * mask.unsqueeze(-1)).flatten(1)  # (N, J·D')
        size = cfg.image_size
        return self.decoder(flat).view(-1, cfg.in_channels, size, size)


# --- the loss ----------------------------------------------------------------


def margin_loss(
    lengths: Tensor,
    labels: Tensor,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
) -> Tensor:
    """The margin loss of eq. 4, summed over classes, averaged over examples.

    L_k = T_k max(0, m⁺ − ‖v_k‖)² + λ (1 − T_k) max(0, ‖v_k‖ − m⁻)², with
    T_k = 1 for the true class: its capsule must be longer than m⁺, every
    other one shorter than m⁻. λ < 1 keeps the absent classes from
    shrinking all capsules early in training.

    Shapes:
        lengths: (N, J), labels: (N,) -> ()
    """
    check_tensor("lengths", lengths, ndim=2, floating=True, nonempty=True)
    check_labels("labels", labels, lengths.shape[1])
    if len(labels) != len(lengths):
        raise ValueError(
            f"labels has {len(labels)} rows for the {len(lengths)} rows of "
            "lengths: one label per example is expected"
        )
    check_number("m_plus", m_plus, low=0, high=1)
    check_number("m_minus", m_minus, low=0, high=m_plus)
    check_number("lam", lam, low=0)
    t = F.one_hot(labels, lengths.shape[1]).to(lengths.dtype)
    present = t * F.relu(m_plus - lengths) ** 2
    absent = lam * (1 - t) * F.relu(lengths - m_minus) ** 2
    return (present + absent).sum(1).mean()


class CapsuleLoss:
    """Margin loss + ``weight`` · reconstruction loss: a ``loss_fn`` for fit.

    The reconstruction loss is the sum of squared pixel errors of the image
    decoded from the true class's capsule (``CapsNet.reconstruct``); the
    paper scales it by 0.0005 so that it does not dominate the margin loss.
    ``weight=0`` trains without the decoder.
    """

    def __init__(self, model: CapsNet, weight: float = 0.0005):
        if not isinstance(model, CapsNet):
            raise TypeError(
                f"model must be a CapsNet, got {type(model).__name__}"
            )
        self.model = model
        self.weight = check_number("weight", weight, low=0)

    def reconstruction(self, out: CapsNetOutput, labels: Tensor) -> Tensor:
        """Σ over pixels of the squared error, averaged over examples."""
        images = self.model.reconstruct(out.poses, labels)
        return (images - out.inputs).pow(2).flatten(1).sum(1).mean()

    def __call__(self, out: CapsNetOutput, labels: Tensor) -> Tensor:
        loss = margin_loss(out.lengths, labels)
        if self.weight > 0:
            loss = loss + self.weight * self.reconstruction(out, labels)
        return loss


def capsule_accuracy(out: CapsNetOutput, labels: Tensor) -> Tensor:
    """Fraction of examples whose longest capsule is the true class."""
    return accuracy(out.lengths, labels)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted classes of a CapsNet (longest capsule) or a classifier.

    In eval mode, ``batch_size`` images at a time, on the model's device.
    """
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    check_int("batch_size", batch_size, low=1)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for xb in x.split(batch_size):
        o = model(xb.to(device))
        scores = o.lengths if isinstance(o, CapsNetOutput) else o
        out.append(scores.argmax(1).cpu())
    return torch.cat(out)


@torch.no_grad()
def perturbed_reconstructions(
    model: CapsNet,
    pose: Tensor,
    label: int,
    dims: Sequence[int],
    deltas: Sequence[float],
) -> Tensor:
    """Decode one class capsule with one dimension moved at a time.

    The paper's figure 4: pose[d] + δ for each d in ``dims`` and δ in
    ``deltas`` (it used δ from −0.25 to 0.25 in steps of 0.05).

    Shapes:
        pose: (D',) -> (len(dims), len(deltas), C, H, W)
    """
    cfg = model.cfg
    check_tensor("pose", pose, shape=(cfg.digit_dim,), floating=True)
    label = check_int("label", label, low=0, high=cfg.num_classes - 1)
    for d in dims:
        check_int("dims entries", d, low=0, high=cfg.digit_dim - 1)
    delta = torch.as_tensor(deltas, dtype=pose.dtype, device=pose.device)
    check_tensor("deltas", delta, ndim=1, nonempty=True, finite=True)
    idx = torch.as_tensor(list(dims), dtype=torch.long)
    k, m = len(idx), len(delta)
    poses = pose.repeat(k, m, 1)  # (K, M, D')
    poses[torch.arange(k), :, idx] += delta  # dimension idx[a], all deltas
    full = poses.new_zeros(k * m, cfg.num_classes, cfg.digit_dim)
    full[:, label] = poses.view(k * m, -1)
    labels = torch.full((k * m,), label, dtype=torch.long)
    model.eval()
    images = model.reconstruct(full, labels)  # (K·M, C, H, W)
    return images.view(k, m, *images.shape[1:])


# --- the baseline ------------------------------------------------------------


def lenet_like(
    budget: int,
    channels: tuple[int, int] = (16, 32),
    dropout: float = 0.25,
) -> LeNet:
    """A LeNet with about ``budget`` parameters: dense layers 2h and h wide.

    The convolutional baseline of the robustness experiment: two 5 x 5
    convolutions with max pooling and dropout, as the paper's baseline had,
    and the hidden width h whose parameter count is closest to ``budget``.
    """
    budget = check_int("budget", budget, low=1)
    c1, c2 = channels
    check_int("channels[0]", c1, low=1)
    check_int("channels[1]", c2, low=1)

    def count(h: int) -> int:
        conv = c1 * 26 + c2 * (25 * c1 + 1)
        flat = c2 * 5 * 5  # 28 -> conv pad 2 -> pool -> conv -> pool: 5 x 5
        return conv + (flat + 1) * 2 * h + (2 * h + 1) * h + (h + 1) * 10

    h = min(range(1, 10_000), key=lambda h: abs(count(h) - budget))
    return LeNet(
        LeNetConfig(channels=(c1, c2), hidden=(2 * h, h), dropout=dropout)
    )


# --- affine test digits ------------------------------------------------------


def affine(
    x: Tensor,
    rotation: Tensor,
    scale: Tensor | None = None,
    shear: Tensor | None = None,
    shift: Tensor | None = None,
) -> Tensor:
    """Rotate, scale, shear and shift each image about its centre.

    Each image n is resampled (bilinear, zeros outside) through the map
    p ↦ R(θ_n) S(σ_n) H(η_n) p + t_n, in pixels: R rotates by ``rotation``
    degrees (counter-clockwise), S scales the two axes by ``scale``
    (σ_x, σ_y), H shears x by η·y, and t shifts by ``shift`` (dx, dy)
    pixels, +y downwards. The default scale is 1, the default shear and
    shift are 0.

    Shapes:
        x: (N, C, H, W); rotation, shear: (N,); scale, shift: (N, 2)
        -> (N, C, H, W)
    """
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    n, _, h, w = x.shape
    check_tensor("rotation", rotation, shape=(n,), floating=True)
    if h != w:
        raise ValueError(f"x must hold square images, got shape {x.shape}")
    zeros = x.new_zeros(n)
    scale = x.new_ones(n, 2) if scale is None else scale
    shear = zeros if shear is None else shear
    shift = x.new_zeros(n, 2) if shift is None else shift
    check_tensor("scale", scale, shape=(n, 2), floating=True)
    check_tensor("shear", shear, shape=(n,), floating=True)
    check_tensor("shift", shift, shape=(n, 2), floating=True)
    theta = torch.deg2rad(rotation.to(x.dtype))
    cos, sin = theta.cos(), theta.sin()
    # forward map A = R S H on centred coordinates (y down, so a CCW turn
    # on screen is a clockwise one in these coordinates)
    rot = torch.stack([cos, sin, -sin, cos], 1).view(n, 2, 2)
    sc = torch.diag_embed(scale.to(x.dtype))
    sh = torch.eye(2, dtype=x.dtype).repeat(n, 1, 1)
    sh[:, 0, 1] = shear.to(x.dtype)
    a = rot @ sc @ sh  # (N, 2, 2)
    # grid_sample pulls: output p samples the input at A⁻¹ (p − t)
    inv = torch.linalg.inv(a)
    t = shift.to(x.dtype) * 2 / w  # pixels -> [-1, 1] units
    offset = -(inv @ t.unsqueeze(-1))  # (N, 2, 1)
    grid = F.affine_grid(
        torch.cat([inv, offset], 2), list(x.shape), align_corners=False
    )
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@dataclass(frozen=True)
class AffineRanges:
    """Ranges of random_affine, each drawn uniformly and independently."""

    rotation: float = 0.0  # degrees: θ ∈ [−rotation, rotation]
    scale: tuple[float, float] = (1.0, 1.0)  # per axis: σ ∈ [low, high]
    shear: float = 0.0  # η ∈ [−shear, shear]
    shift: float = 0.0  # pixels: dx, dy ∈ [−shift, shift]


def random_affine(
    x: Tensor, ranges: AffineRanges, generator: torch.Generator
) -> Tensor:
    """``affine`` with parameters drawn per image from ``ranges``."""
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    check_number("rotation", ranges.rotation, low=0, high=180)
    lo, hi = ranges.scale
    check_number("scale low", lo, low=0, low_open=True)
    check_number("scale high", hi, low=lo)
    check_number("shear", ranges.shear, low=0)
    check_number("shift", ranges.shift, low=0)
    n = len(x)

    def uniform(shape, a, b):
        return a + (b - a) * torch.rand(shape, generator=generator)

    rotation = uniform(n, -ranges.rotation, ranges.rotation)
    scale = uniform((n, 2), lo, hi)
    shear = uniform(n, -ranges.shear, ranges.shear)
    shift = uniform((n, 2), -ranges.shift, ranges.shift)
    return affine(x, rotation, scale, shear, shift)


def accuracy_under(
    models: dict[str, nn.Module],
    x: Tensor,
    y: Tensor,
    transforms: Sequence[AffineRanges],
    seed: int = 0,
) -> dict[str, list[float]]:
    """Each model's accuracy on the same transformed images, per setting.

    The images of setting k are drawn once, from a generator seeded with
    ``seed + k``, and shown to every model.
    """
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    check_tensor("y", y, ndim=1, floating=False)
    check_same_length(x=x, y=y)
    out: dict[str, list[float]] = {name: [] for name in models}
    for k, ranges in enumerate(transforms):
        g = torch.Generator().manual_seed(seed + k)
        xt = random_affine(x, ranges, g)
        for name, model in models.items():
            acc = (predict(model, xt) == y).float().mean().item()
            out[name].append(acc)
    return out

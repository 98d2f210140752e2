"""Data augmentation from scratch: flips, crops, rotations, colour, mixing.

Each augmentation of ``book/transfer/augmentation.md`` is a pair: ``sample``
draws its random parameters for a batch, ``apply`` applies given parameters
to the batch. Keeping the two apart lets a test draw the parameters once and
hand the same ones to the library. The image augmentations
(`RandomFlip`, `RandomResizedCrop`, `RandomRotation`, `ColorJitter`,
`Cutout`) act on images (B, C, H, W) in [0, 1] and draw their parameters
from torch's random numbers in the order ``torchvision.transforms.v2``
draws them image by image, so after the same ``torch.manual_seed`` our
batched transform and v2's per-image one give equal outputs. `MixUp` and
`CutMix` act on a batch and its labels.

References: DeVries & Taylor (2017), "Improved regularization of
convolutional neural networks with Cutout"; Zhang et al. (2018), "mixup:
beyond empirical risk minimization"; Yun et al. (2019), "CutMix:
regularization strategy to train strong classifiers with localizable
features"; Szegedy et al. (2015), "Going deeper with convolutions" (random
resized crops). Every transform is checked against
``torchvision.transforms.v2`` (``RandomHorizontalFlip``,
``RandomResizedCrop``, ``RandomRotation``, ``ColorJitter``,
``RandomErasing`` / ``functional.erase``, ``MixUp``, ``CutMix``) in
``tests/transfer/test_augmentation.py``; training goes through
`dlbook.train.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_labels,
    check_number,
    check_probability,
    check_tensor,
)
from dlbook.train import fit


def check_images(name: str, x) -> torch.Tensor:
    """A batch of images: a floating tensor (B, C, H, W), C = 1 or 3."""
    check_tensor(name, x, ndim=4, floating=True, nonempty=True)
    if x.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels (B, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    return x


def _check_range(name: str, pair, low: float, high: float | None = None):
    """A (min, max) pair with low <= min <= max (<= high)."""
    if not isinstance(pair, Sequence) or len(pair) != 2:
        raise ValueError(f"{name} must be a pair (min, max), got {pair!r}")
    a = check_number(f"{name}[0]", pair[0], low=low, high=high)
    b = check_number(f"{name}[1]", pair[1], low=low, high=high)
    if a > b:
        raise ValueError(
            f"{name} must be (min, max) with min <= max, got {tuple(pair)}"
        )
    return a, b


class Augmentation:
    """An image augmentation: ``sample`` parameters, then ``apply`` them.

    ``aug(x)`` draws one set of parameters per image and applies them;
    ``generator`` (default: torch's global one) supplies the random numbers.
    """

    def sample(self, x: torch.Tensor, generator=None) -> dict:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_images("x", x)
        return self.apply(x, self.sample(x, generator))


# --- geometry ----------------------------------------------------------------


class RandomFlip(Augmentation):
    """Mirror each image with probability ``p``, left-right or upside down.

    Args:
        p: the probability of flipping an image.
        axis: ``"horizontal"`` (mirror left-right) or ``"vertical"``.
    """

    def __init__(self, p: float = 0.5, axis: str = "horizontal"):
        self.p = check_probability("p", p)
        self.axis = check_choice("axis", axis, ("horizontal", "vertical"))

    def sample(self, x, generator=None):
        # v2 draws torch.rand(1) per image and flips when it is < p
        return {"flip": torch.rand(len(x), generator=generator) < self.p}

    def apply(self, x, params):
        flipped = x.flip(-1 if self.axis == "horizontal" else -2)
        return torch.where(params["flip"][:, None, None, None], flipped, x)


class RandomResizedCrop(Augmentation):
    """Crop a random box of random area and shape, resized to ``size``.

    The box covers a fraction s ~ U(scale) of the image with aspect ratio
    r = w / h, log r ~ U(log ratio); ten tries, then a central crop.

    Args:
        size: the output's side, pixels.
        scale: (min, max) of the fraction of the area kept, in (0, 1].
        ratio: (min, max) of the box's width / height, > 0.

    Shapes:
        x: (B, C, H, W) -> (B, C, size, size)
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        self.size = check_int("size", size, low=1)
        self.scale = _check_range("scale", scale, 0.0, 1.0)
        if self.scale[1] == 0:
            raise ValueError(f"scale must keep some area, got {scale!r}")
        self.ratio = _check_range("ratio", ratio, 1e-6)

    def sample(self, x, generator=None):
        h_img, w_img = x.shape[-2:]
        boxes = [self._box(h_img, w_img, generator) for _ in range(len(x))]
        return {"boxes": torch.tensor(boxes)}  # (B, 4): top, left, h, w

    def _box(self, height, width, g):
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            u = torch.empty(1).uniform_(*self.scale, generator=g).item()
            log_r = torch.empty(1).uniform_(*log_ratio, generator=g)
            target, aspect = area * u, torch.exp(log_r).item()
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, (1,), generator=g)
                j = torch.randint(0, width - w + 1, (1,), generator=g)
                return int(i), int(j), h, w
        # fallback: the largest central box whose ratio is within range
        h, w = height, width
        if width / height < self.ratio[0]:
            h = int(round(width / self.ratio[0]))
        elif width / height > self.ratio[1]:
            w = int(round(height * self.ratio[1]))
        return (height - h) // 2, (width - w) // 2, h, w

    def apply(self, x, params):
        out = []
        for image, (i, j, h, w) in zip(
            x, params["boxes"].tolist(), strict=True
        ):
            crop = image[None, :, i : i + h, j : j + w]  # (1, C, h, w)
            out.append(
                F.interpolate(
                    crop,
                    size=(self.size, self.size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,  # average, not skip, when shrinking
                )
            )
        return torch.cat(out)


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Turn each image counter-clockwise about its centre by ``angle`` degrees.

    Each output pixel reads the input at its position turned back by the
    angle (bilinear interpolation); positions outside the image read 0.

    Shapes:
        x: (B, C, H, W), angle: (B,) -> (B, C, H, W)
    """
    check_images("x", x)
    check_tensor("angle", angle, shape=(len(x),), floating=True)
    b, _, h, w = x.shape
    a = torch.deg2rad(angle.to(x.dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    # pixel centres relative to the image centre, in pixels
    xs = torch.arange(w, dtype=x.dtype) - (w - 1) / 2
    ys = torch.arange(h, dtype=x.dtype) - (h - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    # source = R(-angle) applied to the target, with y pointing down
    src_x = cos[:, None, None] * gx - sin[:, None, None] * gy  # (B, H, W)
    src_y = sin[:, None, None] * gx + cos[:, None, None] * gy
    # grid_sample wants [-1, 1] with -1, 1 at the outer pixel edges
    grid = torch.stack([src_x / (w / 2), src_y / (h / 2)], -1)  # (B,H,W,2)
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


class RandomRotation(Augmentation):
    """Rotate each image by an angle drawn uniformly from ``degrees``.

    Args:
        degrees: the largest angle d (angles in [-d, d]) or a pair (min, max).
    """

    def __init__(self, degrees: float | tuple[float, float]):
        if isinstance(degrees, Sequence):
            self.degrees = _check_range("degrees", degrees, -360.0, 360.0)
        else:
            d = check_number("degrees", degrees, low=0, high=360)
            self.degrees = (-d, d)

    def sample(self, x, generator=None):
        angle = torch.empty(len(x))
        return {"angle": angle.uniform_(*self.degrees, generator=generator)}

    def apply(self, x, params):
        return rotate(x, params["angle"])


# --- colour ------------------------------------------------------------------


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma Y = 0.2989 R + 0.587 G + 0.114 B (ITU-R 601), (B, 1, H, W)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b)[:, None]


def _blend(x, y, factor):
    """factor x + (1 - factor) y, per image, kept in [0, 1]."""
    f = factor[:, None, None, None]
    return (f * x + (1 - f) * y).clamp(0, 1)


def adjust_brightness(x, factor):
    """Multiply the image by ``factor`` (B,): 0 is black, 1 unchanged."""
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x, factor):
    """Blend with the image's mean grey: 0 is flat grey, 1 unchanged."""
    return _blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x, factor):
    """Blend with the image's grey version: 0 is grey, 1 unchanged."""
    return x if x.shape[1] == 1 else _blend(x, grey(x), factor)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """Hue in [0, 1), saturation and value, per pixel, (B, 3, H, W)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    c = v - x.min(1).values  # chroma
    s = torch.where(v > 0, c / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = c.clamp_min(1e-12)
    h = torch.where(
        v == r,
        ((g - b) / safe) % 6,
        torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = torch.where(c > 0, h / 6, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_hsv`: channel n of (5, 3, 1) is R, G, B."""
    h, s, v = x.unbind(1)
    out = []
    for n in (5, 3, 1):
        k = (n + 6 * h) % 6
        ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
        out.append(v - v * s * ramp)
    return torch.stack(out, 1).clamp(0, 1)


def adjust_hue(x, shift):
    """Turn the colour wheel by ``shift`` (B,) of a turn, in [-0.5, 0.5]."""
    if x.shape[1] == 1:
        return x
    hsv = rgb_to_hsv(x)
    hue = (hsv[:, 0] + shift[:, None, None]) % 1.0
    return hsv_to_rgb(torch.cat([hue[:, None], hsv[:, 1:]], 1))


class ColorJitter(Augmentation):
    """Random brightness, contrast, saturation and hue, in a random order.

    Factors are drawn uniformly from [1 - b, 1 + b] (brightness, contrast,
    saturation) and [-h, h] (hue), and the four changes are applied in an
    order drawn per image. Grey images have no saturation or hue.

    Args:
        brightness, contrast, saturation: b >= 0; 0 leaves it unchanged.
        hue: h in [0, 0.5], a fraction of a turn of the colour wheel.
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
        self.ranges = {}
        for name, b in [
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ]:
            b = check_number(name, b, low=0)
            self.ranges[name] = (max(0.0, 1 - b), 1 + b) if b else None
        h = check_number("hue", hue, low=0, high=0.5)
        self.ranges["hue"] = (-h, h) if h else None
        self.ops = [
            adjust_brightness,
            adjust_contrast,
            adjust_saturation,
            adjust_hue,
        ]

    def sample(self, x, generator=None):
        b = len(x)
        order = torch.empty(b, 4, dtype=torch.long)
        factors = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(b, 1)
        for n in range(b):  # v2's draws for one image: order, then factors
            order[n] = torch.randperm(4, generator=generator)
            for k, rng in enumerate(self.ranges.values()):
                if rng is not None:
                    u = torch.empty(1).uniform_(*rng, generator=generator)
                    factors[n, k] = u.item()
        return {"order": order, "factors": factors}  # (B, 4) each

    def apply(self, x, params):
        order, factors = params["order"], params["factors"]
        for step in range(4):
            x = x.clone()
            for k, op in enumerate(self.ops):
                rows = order[:, step] == k  # images whose step is op k
                if rows.any() and list(self.ranges.values())[k] is not None:
                    x[rows] = op(x[rows], factors[rows, k])
        return x


# --- occlusion and mixing ---------------------------------------------------


class Cutout(Augmentation):
    """Erase a ``size`` x ``size`` square around a random centre (DeVries).

    The centre is uniform over the image, so the square may hang over the
    edge and erase less; with probability 1 - ``p`` the image is kept.

    Args:
        size: the side of the square, pixels.
        p: the probability of erasing.
        value: what the erased pixels become.
    """

    def __init__(self, size: int, p: float = 1.0, value: float = 0.0):
        self.size = check_int("size", size, low=1)
        self.p = check_probability("p", p)
        self.value = check_number("value", value)

    def sample(self, x, generator=None):
        b, _, h, w = x.shape
        cy = torch.randint(0, h, (b,), generator=generator)
        cx = torch.randint(0, w, (b,), generator=generator)
        keep = torch.rand(b, generator=generator) >= self.p
        top = (cy - self.size // 2).clamp(0, h)
        left = (cx - self.size // 2).clamp(0, w)
        bottom = (cy - self.size // 2 + self.size).clamp(0, h)
        right = (cx - self.size // 2 + self.size).clamp(0, w)
        # (top, left, height, width), as v2.functional.erase takes them
        box = torch.stack([top, left, bottom - top, right - left], 1)
        box[keep, 2:] = 0  # an empty box erases nothing
        return {"boxes": box}

    def apply(self, x, params):
        return erase(x, params["boxes"], self.value)


def erase(x: torch.Tensor, boxes: torch.Tensor, value: float = 0.0):
    """Set a box (top, left, height, width) of each image to ``value``.

    Shapes:
        x: (B, C, H, W), boxes: (B, 4) integers -> (B, C, H, W)
    """
    check_images("x", x)
    check_tensor("boxes", boxes, shape=(len(x), 4), floating=False)
    _, _, h, w = x.shape
    i, j, bh, bw = boxes.unbind(1)
    rows = torch.arange(h)[None, :]  # (1, H)
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= i[:, None]) & (rows < (i + bh)[:, None])  # (B, H)
    in_cols = (cols >= j[:, None]) & (cols < (j + bw)[:, None])  # (B, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return x.masked_fill(mask, value)


class BatchMix:
    """Mix each image of a batch with a partner, and its label likewise.

    ``mix(x, y)`` draws λ ~ Beta(α, α) (from torch's global random numbers:
    its Beta sampler takes no generator) and a random pairing, then returns
    the mixed images and soft labels (B, num_classes). Subclasses define
    how two images are mixed.

    Args:
        alpha: α of the Beta distribution, > 0.
        num_classes: the number of classes, for the one-hot labels.
    """

    def __init__(self, alpha: float = 1.0, num_classes: int = 10):
        self.alpha = check_number("alpha", alpha, low=0, low_open=True)
        self.num_classes = check_int("num_classes", num_classes, low=2)
        self._beta = torch.distributions.Beta(
            torch.tensor(self.alpha), torch.tensor(self.alpha)
        )

    def sample_lam(self) -> float:
        return float(self._beta.sample())

    def soft_labels(self, y, perm, lam):
        """λ one_hot(y) + (1 - λ) one_hot(y[perm])  (Zhang et al., eq. 1)."""
        one = F.one_hot(y, self.num_classes).float()
        return lam * one + (1 - lam) * one[perm]

    def _check(self, x, y, perm):
        check_images("x", x)
        check_labels("y", y, self.num_classes)
        if len(y) != len(x):
            raise ValueError(
                f"y must hold one label per image ({len(x)}), got {len(y)}"
            )
        if perm is None:
            return torch.randperm(len(x))
        check_tensor("perm", perm, shape=(len(x),), floating=False)
        if not torch.equal(perm.sort().values, torch.arange(len(x))):
            raise ValueError("perm must be a permutation of 0 ... B-1")
        return perm


class MixUp(BatchMix):
    """x̃ = λ x_i + (1 - λ) x_j, ỹ likewise (Zhang et al. 2018, eq. 1)."""

    def __call__(self, x, y, lam: float | None = None, perm=None):
        perm = self._check(x, y, perm)
        lam = (
            self.sample_lam() if lam is None else check_probability("lam", lam)
        )
        mixed = lam * x + (1 - lam) * x[perm]
        return mixed, self.soft_labels(y, perm, lam)


class CutMix(BatchMix):
    """Paste a box of each partner image; λ becomes the kept area.

    The box has sides sqrt(1 - λ) H and sqrt(1 - λ) W around a uniform
    centre, clipped to the image (Yun et al. 2019, eq. 1-2).
    """

    def sample_box(self, height, width, lam):
        # v2's arithmetic and draws: centre x, then y; half-sides rounded down
        r_x = int(torch.randint(width, size=(1,)))
        r_y = int(torch.randint(height, size=(1,)))
        r = 0.5 * math.sqrt(1.0 - lam)
        half_w, half_h = int(r * width), int(r * height)
        x1, y1 = max(r_x - half_w, 0), max(r_y - half_h, 0)
        x2, y2 = min(r_x + half_w, width), min(r_y + half_h, height)
        return x1, y1, x2, y2

    def __call__(self, x, y, lam: float | None = None, perm=None, box=None):
        perm = self._check(x, y, perm)
        h, w = x.shape[-2:]
        if lam is None:
            lam = self.sample_lam()
        lam = check_probability("lam", lam)
        x1, y1, x2, y2 = self.sample_box(h, w, lam) if box is None else box
        mixed = x.clone()
        mixed[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
        kept = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)  # the true λ
        return mixed, self.soft_labels(y, perm, kept)


# --- training with augmentation ----------------------------------------------


class AugmentedLoader:
    """Yields a loader's batches augmented on the fly, new draws each epoch.

    Args:
        loader: yields (x, y) batches of images and integer labels.
        augment: an `Augmentation`, a `BatchMix`, or ``None`` (no change).
    """

    def __init__(self, loader: Iterable, augment=None):
        if augment is not None and not isinstance(
            augment, (Augmentation, BatchMix)
        ):
            raise TypeError(
                "augment must be an Augmentation, a BatchMix or None, got "
                f"{type(augment).__name__}"
            )
        self.loader, self.augment = loader, augment

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            if isinstance(self.augment, BatchMix):
                yield self.augment(x, y)
            elif self.augment is not None:
                yield self.augment(x), y
            else:
                yield x, y


@dataclass
class TrainConfig:
    """How the small CNN is trained on the few labelled images."""

    epochs: int = 20  # passes over the labelled images
    lr: float = 2e-3  # Adam's learning rate
    batch_size: int = 50  # images per step
    seed: int = 0  # seeds the weights, the batch order and the draws


def train_augmented(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    augment=None,
    cfg: TrainConfig | None = None,
) -> nn.Module:
    """Train ``model`` on (x, y), each batch augmented by ``augment``.

    Soft labels (MixUp, CutMix) go to the same cross-entropy: its targets
    may be class probabilities. ``cfg`` defaults to ``TrainConfig()``.
    """
    from torch.utils.data import DataLoader, TensorDataset

    cfg = TrainConfig() if cfg is None else cfg

    check_images("x", x)
    check_tensor("y", y, shape=(len(x),), floating=False)
    check_number("lr", cfg.lr, low=0, low_open=True)
    check_int("batch_size", cfg.batch_size, low=1)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=g,
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fit(
        model,
        AugmentedLoader(loader, augment),
        opt,
        epochs=cfg.epochs,
        metrics={},
        progress=False,
    )
    return model.eval()


@torch.no_grad()
def predict_tta(
    model: nn.Module,
    x: torch.Tensor,
    views: Sequence = (None,),
    batch_size: int = 1000,
) -> torch.Tensor:
    """Class probabilities averaged over views of each image.

    Test-time augmentation: each view is a function of a batch of images
    (``None``: the image itself); the softmax outputs are averaged.

    Shapes:
        x: (N, C, H, W) -> (N, num_classes)
    """
    check_images("x", x)
    if not len(views):
        raise ValueError("views must hold at least one view, got none")
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        p = [F.softmax(model(xb if v is None else v(xb)), -1) for v in views]
        out.append(torch.stack(p).mean(0))
    return torch.cat(out)


def confusion(pred: torch.Tensor, y: torch.Tensor, num_classes: int = 10):
    """Counts (true class, predicted class), an array (C, C)."""
    m = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(m, (y.numpy(), pred.numpy()), 1)
    return m

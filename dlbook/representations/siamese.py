"""Siamese networks: twin embeddings, contrastive and triplet losses, mining.

Two copies of one network with shared weights map two images to two points;
their distance says whether the images show the same thing
(Bromley et al. 1993, signatures; Koch et al. 2015, Omniglot characters).
This module builds it from scratch, top to bottom:

* ``EmbeddingNet``: a small CNN that maps an image to a point on the unit
  sphere; ``Siamese`` runs it twice (the same weights) on a pair;
* ``pairwise_distances``: Euclidean distances between two sets of points;
* ``contrastive_loss`` (Hadsell et al. 2006) on pairs and
  ``triplet_margin_loss`` (Schroff et al. 2015) on triplets, and
  ``ContrastiveLoss`` / ``TripletLoss`` that form the pairs or triplets of a
  labelled batch;
* ``batch_hard_triplets`` (Hermans et al. 2017) and ``semihard_triplets``
  (Schroff et al. 2015): which triplets of a batch to learn from;
* ``PKSampler``: batches of P characters with K drawings each, so that every
  batch holds positives and negatives;
* ``one_shot_error``: the 20-way one-shot task of Lake et al. (2015) by
  nearest neighbour in the embedding, and ``modified_hausdorff`` /
  ``hausdorff_one_shot_error``: the Modified Hausdorff Distance baseline
  (Dubuisson & Jain 1994) of the dataset's demo, vectorized with distance
  transforms.

Checked against ``torch.nn.TripletMarginLoss`` and pytorch-metric-learning's
``ContrastiveLoss``, ``TripletMarginLoss``, ``BatchHardMiner`` and
``TripletMarginMiner`` (values and gradients), and against a plain loop of
the dataset demo's Hausdorff distance, in
``tests/representations/test_siamese.py``. Training goes through
``dlbook.train.fit`` (the loss takes embeddings and labels). Chapter:
``book/representations/siamese.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
    check_same_shape,
    check_tensor,
)

# ---------------------------------------------------------------- the twins


@dataclass
class EmbeddingConfig:
    """Hyperparameters of ``EmbeddingNet``."""

    embedding_dim: int = 64  # size of the embedding
    channels: tuple[int, ...] = (32, 64, 64)  # one conv block per entry
    in_channels: int = 1  # grey-level images


class EmbeddingNet(nn.Module):
    """A small CNN that maps an image to a unit vector, f(x) with ‖f(x)‖ = 1.

    Each block is conv 3x3 -> batch norm -> ReLU -> max-pool 2x2; a global
    average pool and a linear layer give the embedding, which is divided by
    its norm so that distances lie in [0, 2] and one margin fits all scales.

    Args:
        config: the sizes (``EmbeddingConfig``).

    Shapes:
        x: (N, C, H, W) -> (N, embedding_dim).
    """

    def __init__(self, config: EmbeddingConfig | None = None):
        super().__init__()
        config = config or EmbeddingConfig()
        check_int("embedding_dim", config.embedding_dim, low=1)
        check_int("in_channels", config.in_channels, low=1)
        if len(config.channels) == 0:
            raise ValueError("channels must list at least one block, got ()")
        for i, c in enumerate(config.channels):
            check_int(f"channels[{i}]", c, low=1)
        self.config = config
        blocks, c_in = [], config.in_channels
        for c_out in config.channels:
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, config.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4, floating=True)
        h = self.features(x).mean(dim=(2, 3))  # (N, C)
        return F.normalize(self.head(h), dim=1)  # (N, D)


class Siamese(nn.Module):
    """Twin networks: one embedding for both inputs, d = ‖f(x₁) − f(x₂)‖.

    There is one set of weights; the "twins" are two calls. Gradients from
    both branches add up in the same parameters.

    Shapes:
        x1, x2: (N, C, H, W) -> d: (N,).
    """

    def __init__(self, embedding: nn.Module):
        super().__init__()
        self.embedding = embedding

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        check_same_shape(x1=x1, x2=x2)
        z1, z2 = self.embedding(x1), self.embedding(x2)
        return (z1 - z2).pow(2).sum(dim=1).sqrt()


# ----------------------------------------------------------------- distances


def pairwise_distances(
    x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float = 1e-12
) -> torch.Tensor:
    """Euclidean distances D[i, j] = ‖x_i − y_j‖ (``y`` defaults to ``x``).

    Computed from the differences, not from ‖x‖² + ‖y‖² − 2xᵀy, which loses
    precision for close points; the squared distance is clamped at ``eps``
    before the square root so that the gradient at D = 0 is finite.

    Shapes:
        x: (N, D), y: (M, D) -> (N, M).
    """
    check_tensor("x", x, ndim=2, floating=True)
    y = x if y is None else y
    check_tensor("y", y, ndim=2, shape=(None, x.shape[1]), floating=True)
    diff = x[:, None, :] - y[None, :, :]  # (N, M, D)
    return diff.pow(2).sum(dim=-1).clamp_min(eps).sqrt()


def _check_margin(margin: float) -> float:
    return check_number("margin", margin, low=0, low_open=True)


def _check_batch(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    check_tensor("embeddings", embeddings, ndim=2, floating=True)
    check_tensor("labels", labels, floating=False)
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"labels must have shape ({len(embeddings)},), one label per row "
            f"of embeddings {tuple(embeddings.shape)}, got "
            f"{tuple(labels.shape)}"
        )
    if len(labels):
        check_labels("labels", labels, int(labels.max()) + 1)


# ------------------------------------------------------------------- losses


def contrastive_loss(
    distance: torch.Tensor,
    same: torch.Tensor,
    margin: float = 1.0,
    *,
    squared: bool = True,
) -> torch.Tensor:
    """Per-pair contrastive loss of Hadsell et al. (2006).

    With y = 1 for a pair of the same class and y = 0 otherwise,

        L = ½ y d² + ½ (1 − y) max(0, m − d)²     (``squared=True``, the paper)
        L = y d + (1 − y) max(0, m − d)           (``squared=False``)

    Same-class pairs are pulled together; different-class pairs are pushed
    apart until they are at least the margin m apart, and then left alone.
    The second form is pytorch-metric-learning's ``ContrastiveLoss`` with
    ``pos_margin=0``.

    Shapes:
        distance: (P,) pair distances; same: (P,) bool -> (P,).
    """
    check_tensor("distance", distance, ndim=1, floating=True)
    check_tensor("same", same, shape=distance.shape)
    margin = _check_margin(margin)
    same = same.to(distance.dtype)
    push = F.relu(margin - distance)
    if squared:
        return 0.5 * same * distance**2 + 0.5 * (1 - same) * push**2
    return same * distance + (1 - same) * push


def triplet_margin_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 1.0,
    *,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> torch.Tensor:
    """Triplet loss of Schroff et al. (2015) on given triplets.

        L = max(0, ‖a − p‖ − ‖a − n‖ + m)

    The anchor must be closer to the positive (same class) than to the
    negative by the margin m. As in ``torch.nn.TripletMarginLoss``, ``eps``
    is added to the differences, ‖a − p + eps‖, so that the gradient stays
    finite when two points coincide.

    Shapes:
        anchor, positive, negative: (N, D) -> () or (N,) for ``"none"``.
    """
    check_tensor("anchor", anchor, ndim=2, floating=True)
    check_same_shape(anchor=anchor, positive=positive, negative=negative)
    margin = _check_margin(margin)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    d_ap = (anchor - positive + eps).pow(2).sum(dim=1).sqrt()
    d_an = (anchor - negative + eps).pow(2).sum(dim=1).sqrt()
    loss = F.relu(d_ap - d_an + margin)
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean over all terms, or over the non-zero ones (as pytorch-metric-
    learning's ``AvgNonZeroReducer``: easy pairs do not dilute the mean)."""
    if reduction == "mean":
        return losses.mean() if len(losses) else losses.sum()
    active = losses[losses > 0]
    return active.mean() if len(active) else losses.sum() * 0


class ContrastiveLoss(nn.Module):
    """The contrastive loss over every ordered pair (i, j), i ≠ j, of a batch.

    ``reduction="mean"`` averages over all pairs; ``"nonzero"`` averages the
    positive pairs' and the negative pairs' non-zero losses separately and
    adds the two means, as pytorch-metric-learning does.

    Args:
        margin: m, how far apart different classes are pushed.
        squared: Hadsell et al.'s squared form (see ``contrastive_loss``).
        reduction: ``"mean"`` or ``"nonzero"``.

    Shapes:
        embeddings: (B, D), labels: (B,) -> ().
    """

    def __init__(
        self,
        margin: float = 1.0,
        *,
        squared: bool = True,
        reduction: str = "mean",
    ):
        super().__init__()
        self.margin = _check_margin(margin)
        self.squared = squared
        self.reduction = check_choice(
            "reduction", reduction, ("mean", "nonzero")
        )

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        _check_batch(embeddings, labels)
        dist = pairwise_distances(embeddings)
        i, j = torch.where(~torch.eye(len(labels), dtype=torch.bool))
        same = labels[i] == labels[j]
        loss = contrastive_loss(
            dist[i, j], same, self.margin, squared=self.squared
        )
        if self.reduction == "mean":
            return loss.mean()
        return _reduce(loss[same], "nonzero") + _reduce(loss[~same], "nonzero")


def batch_hard_triplets(
    distances: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-hard mining (Hermans et al. 2017): one triplet per anchor, with
    its farthest positive and its nearest negative in the batch.

    Anchors without a positive or without a negative are left out.

    Shapes:
        distances: (B, B), labels: (B,) -> three index tensors (T,).
    """
    check_tensor("distances", distances, ndim=2, floating=True)
    check_tensor("labels", labels, shape=(distances.shape[0],))
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    inf = torch.tensor(float("inf"), dtype=distances.dtype)
    p = torch.where(pos, distances, -inf).argmax(dim=1)
    n = torch.where(neg, distances, inf).argmin(dim=1)
    (a,) = torch.where(pos.any(dim=1) & neg.any(dim=1))
    return a, p[a], n[a]


def semihard_triplets(
    distances: torch.Tensor, labels: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All semi-hard triplets (Schroff et al. 2015): the negative is farther
    than the positive, but by no more than the margin,

        d(a, p) < d(a, n) ≤ d(a, p) + m.

    Such triplets have a non-zero loss but do not pull towards the collapsed
    solution that the hardest negatives favour early in training.

    Shapes:
        distances: (B, B), labels: (B,) -> three index tensors (T,), in the
        order (a, p, n) of the flattened B x B x B grid.
    """
    check_tensor("distances", distances, ndim=2, floating=True)
    check_tensor("labels", labels, shape=(distances.shape[0],))
    margin = _check_margin(margin)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye)[:, :, None] & ~same[:, None, :]  # (B, B, B)
    gap = distances[:, None, :] - distances[:, :, None]  # d_an - d_ap
    a, p, n = torch.where(valid & (gap > 0) & (gap <= margin))
    return a, p, n


class TripletLoss(nn.Module):
    """The triplet loss over the triplets a miner picks from a labelled batch.

    Args:
        margin: m.
        mining: ``"all"`` (every valid triplet), ``"hard"`` (batch-hard) or
            ``"semihard"``.
        reduction: ``"mean"`` over the mined triplets, or ``"nonzero"``
            (the mean over those with a positive loss, as in
            pytorch-metric-learning).

    Shapes:
        embeddings: (B, D), labels: (B,) -> ().
    """

    def __init__(
        self,
        margin: float = 0.2,
        *,
        mining: str = "hard",
        reduction: str = "mean",
    ):
        super().__init__()
        self.margin = _check_margin(margin)
        self.mining = check_choice(
            "mining", mining, ("all", "hard", "semihard")
        )
        self.reduction = check_choice(
            "reduction", reduction, ("mean", "nonzero")
        )

    def mine(self, distances: torch.Tensor, labels: torch.Tensor):
        """The (anchor, positive, negative) indices to learn from."""
        with torch.no_grad():  # mining picks indices; no gradient flows here
            if self.mining == "hard":
                return batch_hard_triplets(distances, labels)
            if self.mining == "semihard":
                return semihard_triplets(distances, labels, self.margin)
            same = labels[:, None] == labels[None, :]
            eye = torch.eye(len(labels), dtype=torch.bool)
            return torch.where((same & ~eye)[:, :, None] & ~same[:, None, :])

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        _check_batch(embeddings, labels)
        dist = pairwise_distances(embeddings)
        a, p, n = self.mine(dist.detach(), labels)
        losses = F.relu(dist[a, p] - dist[a, n] + self.margin)
        return _reduce(losses, self.reduction)


# ------------------------------------------------------------------ batches


class PKSampler(torch.utils.data.Sampler):
    """Batches of P classes with K examples each (Hermans et al. 2017).

    Each epoch shuffles the classes, and for each class draws K of its
    examples without replacement; the classes are cut into batches of P.
    Every batch then holds positives for every anchor, which mining needs.

    Args:
        labels: (N,) the class of each example; every class needs ≥ K.
        p: classes per batch. k: examples per class.
        generator: a seeded ``torch.Generator`` for reproducible epochs.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        p: int,
        k: int,
        generator: torch.Generator | None = None,
    ):
        check_tensor("labels", labels, ndim=1, floating=False, nonempty=True)
        self.p = check_int("p", p, low=2)
        self.k = check_int("k", k, low=2)
        classes, counts = labels.unique(return_counts=True)
        if len(classes) < self.p:
            raise ValueError(
                f"p must be at most the number of classes ({len(classes)}), "
                f"got {p}"
            )
        if counts.min() < self.k:
            raise ValueError(
                f"k must be at most the smallest class size "
                f"({int(counts.min())}), got {k}"
            )
        self.members = [torch.where(labels == c)[0] for c in classes]
        self.generator = generator

    def __len__(self) -> int:
        return len(self.members) // self.p

    def __iter__(self) -> Iterator[list[int]]:
        g = self.generator
        order = torch.randperm(len(self.members), generator=g)
        for b in range(len(self)):
            batch = []
            for c in order[b * self.p : (b + 1) * self.p]:
                m = self.members[c]
                pick = torch.randperm(len(m), generator=g)[: self.k]
                batch += m[pick].tolist()
            yield batch


# --------------------------------------------------------- one-shot tasks


def _check_runs(runs: Sequence) -> None:
    if len(runs) == 0:
        raise ValueError("runs must hold at least one one-shot run, got []")
    for r, run in enumerate(runs):
        check_tensor(f"runs[{r}].train", run.train, ndim=4, floating=True)
        n = len(run.train)
        shape = (n, *run.train.shape[1:])
        check_tensor(f"runs[{r}].test", run.test, shape=shape, floating=True)
        check_tensor(f"runs[{r}].answers", run.answers, shape=(n,))
        if sorted(run.answers.tolist()) != list(range(n)):
            raise ValueError(
                f"runs[{r}].answers must pair each of the {n} test images "
                "with a different training image (a permutation of "
                f"0..{n - 1}), got {run.answers.tolist()}"
            )


@torch.no_grad()
def embed(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 512,
) -> torch.Tensor:
    """The embeddings of ``images`` on the CPU, computed in batches on the
    device of ``model`` (a module in eval mode, or any function)."""
    check_tensor("images", images, ndim=4, floating=True)
    check_int("batch_size", batch_size, low=1)
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    dev = params[0].device if params else images.device
    parts = [
        model(images[i : i + batch_size].to(dev)).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def one_shot_predictions(
    model: Callable[[torch.Tensor], torch.Tensor], runs: Sequence
) -> list[torch.Tensor]:
    """For each run, the training image nearest to each test image in the
    embedding of ``model``: ŷ_i = argmin_j ‖f(test_i) − f(train_j)‖."""
    _check_runs(runs)
    out = []
    for run in runs:
        dist = pairwise_distances(
            embed(model, run.test), embed(model, run.train)
        )
        out.append(dist.argmin(dim=1))
    return out


def one_shot_error(
    model: Callable[[torch.Tensor], torch.Tensor], runs: Sequence
) -> float:
    """The error of nearest-neighbour one-shot classification over ``runs``
    (each an ``OneShotRun``: 20 training images, one per class, 20 tests)."""
    preds = one_shot_predictions(model, runs)
    wrong = sum(
        int((p != r.answers).sum()) for p, r in zip(preds, runs, strict=True)
    )
    return wrong / sum(len(r.answers) for r in runs)


def modified_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """The Modified Hausdorff Distance (Dubuisson & Jain 1994) between two
    point sets, as the Omniglot demo computes it on the ink pixels:

        MHD(A, B) = max( mean_a min_b ‖a − b‖, mean_b min_a ‖a − b‖ ).

    The plain O(|A| |B|) form, kept as the reference for the vectorized one.

    Shapes:
        a: (n, 2), b: (m, 2) point coordinates.
    """
    for name, pts in (("a", a), ("b", b)):
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
            raise ValueError(
                f"{name} must be a non-empty (n, 2) array of points, got "
                f"shape {pts.shape}"
            )
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float(max(d.min(1).mean(), d.min(0).mean()))


def centred_ink(images: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Ink masks moved so that each drawing's centre of mass lies on the
    centre pixel of a canvas twice the image's size (no ink falls off).

    The demo subtracts each drawing's mean ink position from its points; we
    shift by that mean rounded to a whole pixel, so that a distance
    transform on the pixel grid applies. Rounding moves a drawing by at most
    √2/2 pixel, so an MHD differs from the demo's by at most √2 pixels.

    Shapes:
        images: (N, 1, H, W) -> (N, 2H, 2W) bool.
    """
    check_tensor("images", images, ndim=4, shape=(None, 1, None, None))
    ink = (images[:, 0] > threshold).numpy()
    n, h, w = ink.shape
    empty = np.where(~ink.reshape(n, -1).any(1))[0]
    if len(empty):
        raise ValueError(
            f"images[{int(empty[0])}] has no ink above threshold="
            f"{threshold}: the Hausdorff distance needs points"
        )
    out = np.zeros((n, 2 * h, 2 * w), dtype=bool)
    for i, m in enumerate(ink):
        rows, cols = np.nonzero(m)
        r0 = h - int(np.rint(rows.mean()))  # centre of mass -> (h, w)
        c0 = w - int(np.rint(cols.mean()))
        out[i, rows + r0, cols + c0] = True
    return out


def hausdorff_matrix(
    test: torch.Tensor, train: torch.Tensor, *, threshold: float = 0.5
) -> torch.Tensor:
    """MHD between every test and training image, all at once.

    The distance from each pixel to the nearest ink pixel of an image is its
    Euclidean distance transform DT; the mean over the ink of A of DT_B is
    mean_a min_b ‖a − b‖. With the drawings centred (``centred_ink``), the
    mean for all pairs is one matrix product:

        M[i, j] = Σ_pixels ink_i · DT_j / Σ_pixels ink_i,

    and the MHD is the larger of M[i, j] and the same with roles swapped.

    Shapes:
        test: (T, 1, H, W), train: (S, 1, H, W), ink > threshold -> (T, S).
    """
    from scipy.ndimage import distance_transform_edt

    check_tensor("train", train, shape=(None, *test.shape[1:]))
    ink = [centred_ink(x, threshold) for x in (test, train)]
    flat = [m.reshape(len(m), -1).astype(np.float64) for m in ink]
    dts = [
        np.stack([distance_transform_edt(~x) for x in m]).reshape(len(m), -1)
        for m in ink
    ]
    t_to_s = flat[0] @ dts[1].T / flat[0].sum(1, keepdims=True)  # (T, S)
    s_to_t = (flat[1] @ dts[0].T / flat[1].sum(1, keepdims=True)).T
    return torch.from_numpy(np.maximum(t_to_s, s_to_t))


def hausdorff_one_shot_error(runs: Sequence) -> float:
    """The dataset demo's baseline: each test image takes the class of the
    training image at the smallest Modified Hausdorff Distance."""
    _check_runs(runs)
    wrong = total = 0
    for run in runs:
        pred = hausdorff_matrix(run.test, run.train).argmin(dim=1)
        wrong += int((pred != run.answers).sum())
        total += len(run.answers)
    return wrong / total

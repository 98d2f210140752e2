"""Semi-supervised learning with a generative model: Kingma et al.'s M2.

The class y is a second latent variable of a VAE, observed for a few images
and inferred for all others:

    p(y) = Cat(1/C),  p(z) = N(0, I),  p(x | y, z) = Bernoulli(g(y, z)),
    q(y | x) = Cat(π(x)),  q(z | x, y) = N(μ(x, y), diag σ²(x, y)).

A labelled image contributes the ELBO of p(x, y); an unlabelled one the ELBO of
p(x), which sums the labelled bound over the classes weighted by q(y | x).
Because q(y | x) appears in the unlabelled bound, every unlabelled image trains
the classifier; a cross-entropy term weighted by α trains it on the labels too
(Kingma, Rezende, Mohamed & Welling 2014, eqs. 6 to 9).

Unlabelled examples carry the label -1, the convention of scikit-learn's
semi-supervised estimators, so that a batch is an ordinary (x, y) pair and the
model trains with ``dlbook.train.fit``. ``MixedBatchSampler`` puts a fixed
number of labelled images in every batch, as the paper's implementation does;
``M2Loss`` weighs each kind by its share of the data set, so the batch loss
estimates the paper's objective with α = 0.1 · N whatever the mix.

Checked in ``tests/generative/test_semi_supervised_vae.py``: the labelled
bound against ``torch.distributions`` term by term, the unlabelled bound
against its definition, the loss against J^α computed by hand, and a short
run that must beat chance. Chapter:
``book/generative/semi-supervised-vae.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

from dlbook.checks import check_choice, check_int, check_number, check_tensor
from dlbook.generative.vae import (
    bernoulli_log_likelihood,
    gaussian_kl,
    reparameterize,
)


@dataclass
class M2Config:
    """Sizes of M2's three networks and its likelihood."""

    in_features: int = 784  # pixels of one image
    classes: int = 10  # number of classes C
    latent: int = 50  # size of z (the paper's 50)
    hidden: int = 500  # one hidden layer per network (the paper's 500)
    likelihood: str = "bernoulli"  # p(x | y, z): "bernoulli" for pixels in
    # [0, 1], "gaussian" for real features such as M1's codes (M1 + M2)

    def __post_init__(self):
        check_int("in_features", self.in_features, low=1)
        check_int("classes", self.classes, low=2)
        check_int("latent", self.latent, low=1)
        check_int("hidden", self.hidden, low=1)
        check_choice("likelihood", self.likelihood, ("bernoulli", "gaussian"))


@dataclass
class M2Output:
    """The classifier's logits and the labelled bound for every class."""

    class_logits: torch.Tensor  # (N, C) logits of q(y | x)
    bound: torch.Tensor  # (N, C) one-sample estimate of −L(x, y), y = 0..C-1


class M2(nn.Module):
    """Kingma et al.'s M2: a classifier q(y | x), an encoder q(z | x, y), and a
    decoder p(x | y, z), each with one softplus hidden layer.

    The labelled bound (the paper's eq. 6), for every class y at once:

        −L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y)
                   − KL(q(z | x, y) ‖ p(z)).

    Args:
        config: sizes and likelihood.

    Shapes:
        x: (N, *) with prod(*) = in_features, values in [0, 1];
        forward(x): M2Output with two (N, C) tensors.
    """

    def __init__(self, config: M2Config):
        super().__init__()
        self.config = config
        d, c, h, k = (
            config.in_features,
            config.classes,
            config.hidden,
            config.latent,
        )
        self.classifier = nn.Sequential(
            nn.Linear(d, h), nn.Softplus(), nn.Linear(h, c)
        )
        # the first layer of q(z | x, y) is W_x x + W_y y: W_x x is computed
        # once and shared by all C classes
        self.enc_x = nn.Linear(d, h)
        self.enc_y = nn.Linear(c, h, bias=False)
        self.to_mu = nn.Linear(h, k)
        self.to_logvar = nn.Linear(h, k)
        self.dec_z = nn.Linear(k, h)
        self.dec_y = nn.Linear(c, h, bias=False)
        gaussian = config.likelihood == "gaussian"
        self.dec_out = nn.Linear(h, 2 * d if gaussian else d)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True)
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.config.in_features:
            raise ValueError(
                f"x must have {self.config.in_features} features per example, "
                f"got shape {tuple(x.shape)}"
            )
        return flat

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), shape (N, C)."""
        return self.classifier(self._flat(x))

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Parameters of p(x | y, z), one-hot y (..., C), z (..., latent).

        Bernoulli: logits (..., D); Gaussian: means and log-variances
        concatenated, (..., 2D).
        """
        return self.dec_out(F.softplus(self.dec_z(z) + self.dec_y(y)))

    def log_likelihood(
        self, params: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """log p(x | y, z) summed over features, from decode's output."""
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_likelihood(params, x)
        mean, logvar = params.chunk(2, dim=-1)
        return (
            -0.5
            * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp())
        ).sum(-1)

    def forward(self, x: torch.Tensor) -> M2Output:
        flat = self._flat(x)
        c = self.config.classes
        # row y of the identity is the one-hot code of class y
        onehot = torch.eye(c, device=flat.device, dtype=flat.dtype)
        h = F.softplus(self.enc_x(flat)[:, None, :] + self.enc_y(onehot))
        mu, logvar = self.to_mu(h), self.to_logvar(h)  # (N, C, latent)
        z = reparameterize(mu, logvar)
        params = self.decode(onehot.expand(len(flat), c, c), z)  # (N, C, D)
        log_px = self.log_likelihood(params, flat[:, None, :])
        bound = log_px - math.log(c) - gaussian_kl(mu, logvar)
        return M2Output(self.classifier(flat), bound)


def unlabelled_bound(out: M2Output) -> torch.Tensor:
    """The unlabelled bound of the paper's eq. 7, per image, shape (N,):

    −U(x) = Σ_y q(y | x) (−L(x, y)) + H(q(y | x)).
    """
    log_q = F.log_softmax(out.class_logits, dim=1)
    q = log_q.exp()
    return (q * (out.bound - log_q)).sum(1)


class M2Loss:
    """The paper's objective J^α (eq. 9), per image, from one mixed batch.

        J^α = Σ_labelled L(x, y) + Σ_unlabelled U(x)
              + α · E_labelled[−log q(y | x)],

    with α = 0.1 · N in the paper, N = N_l + N_u the size of the training
    set. Labelled rows carry y ≥ 0, unlabelled rows y = −1, in any
    proportion: each kind's batch mean is scaled by its share of the data
    set, so that however the sampler mixes them the loss estimates J^α / N
    without bias:

        (N_l / N) mean_l L + (N_u / N) mean_u U + (α / N) mean_l (−log q).

    A batch with no rows of one kind leaves that kind's terms out.

    ``labelled_weight`` λ multiplies both labelled terms, as if every
    labelled image were seen λ times: λ = 1 is the paper's J^α; λ = N_u / N_l
    makes the labelled images weigh as much as the unlabelled ones, what a
    batch of equal halves averaged as one mean does in several
    reimplementations.

    Args:
        alpha: the weight α of the classification term, in the paper's units.
        n_labelled: N_l, the labelled images in the training set.
        n_unlabelled: N_u, the unlabelled ones.
        labelled_weight: λ > 0, the weight of the labelled terms (1: the
            paper's objective).
    """

    def __init__(
        self,
        alpha: float,
        n_labelled: int,
        n_unlabelled: int,
        labelled_weight: float = 1.0,
    ):
        self.alpha = check_number("alpha", alpha, low=0)
        self.n_labelled = check_int("n_labelled", n_labelled, low=1)
        self.n_unlabelled = check_int("n_unlabelled", n_unlabelled, low=0)
        self.labelled_weight = check_number(
            "labelled_weight", labelled_weight, low=0, low_open=True
        )

    def __call__(self, out: M2Output, y: torch.Tensor) -> torch.Tensor:
        check_semi_supervised_labels("y", y, out.class_logits.shape[1])
        n = self.n_labelled + self.n_unlabelled
        labelled = y >= 0
        loss = out.bound.new_zeros(())
        if labelled.any():
            yl = y[labelled]
            bound = out.bound[labelled].gather(1, yl[:, None]).squeeze(1)
            ce = F.cross_entropy(out.class_logits[labelled], yl)
            lam = self.labelled_weight
            loss = loss - lam * self.n_labelled / n * bound.mean()
            loss = loss + lam * self.alpha / n * ce
        if (~labelled).any():
            rows = M2Output(out.class_logits[~labelled], out.bound[~labelled])
            loss = loss - self.n_unlabelled / n * unlabelled_bound(rows).mean()
        return loss


def check_semi_supervised_labels(name: str, y, classes: int):
    """Labels in [0, classes) or −1 for "unlabelled"; nothing else."""
    check_tensor(name, y, ndim=1, floating=False)
    if y.numel() and (int(y.min()) < -1 or int(y.max()) >= classes):
        raise ValueError(
            f"{name} must hold labels in [0, {classes}) or -1 for unlabelled "
            f"examples, got values from {int(y.min())} to {int(y.max())}"
        )
    return y


def m2_accuracy(out: M2Output, y: torch.Tensor) -> torch.Tensor:
    """Accuracy of q(y | x) on the labelled rows (metric for fit/evaluate)."""
    labelled = y >= 0
    pred = out.class_logits.argmax(1)
    return (pred[labelled] == y[labelled]).float().mean()


def labelled_subset(
    labels: torch.Tensor, n_labels: int, seed: int = 0
) -> torch.Tensor:
    """Indices of n_labels examples, n_labels / C per class, seeded.

    Shapes:
        labels: (N,) int64; returns (n_labels,) sorted indices.
    """
    check_tensor("labels", labels, ndim=1, floating=False, nonempty=True)
    classes = int(labels.max()) + 1
    check_int("n_labels", n_labels, low=classes)
    if n_labels % classes:
        raise ValueError(
            f"n_labels must be a multiple of the {classes} classes, "
            f"got {n_labels}"
        )
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    picks = []
    for c in range(classes):
        pool = np.flatnonzero(y == c)
        if len(pool) < n_labels // classes:
            raise ValueError(
                f"class {c} has {len(pool)} examples, fewer than the "
                f"{n_labels // classes} to label"
            )
        picks.append(rng.choice(pool, n_labels // classes, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(picks)))


def hide_labels(
    labels: torch.Tensor, labelled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unlabelled indices and the labels as M2 sees them.

    Returns ``(unlabelled, observed)``: the indices not in ``labelled``, in
    order, and a copy of ``labels`` with -1 everywhere but at ``labelled``.

    Shapes:
        labels: (N,) int64; labelled: (L,) indices -> (N - L,), (N,).
    """
    check_tensor("labels", labels, ndim=1, floating=False, nonempty=True)
    check_tensor("labelled", labelled, ndim=1, floating=False)
    if labelled.numel() and (
        int(labelled.min()) < 0 or int(labelled.max()) >= len(labels)
    ):
        raise ValueError(
            f"labelled must hold indices in [0, {len(labels)}), got values "
            f"from {int(labelled.min())} to {int(labelled.max())}"
        )
    is_unlabelled = torch.ones(len(labels), dtype=torch.bool)
    is_unlabelled[labelled] = False
    unlabelled = torch.nonzero(is_unlabelled).squeeze(1)
    observed = torch.full_like(labels, -1)  # -1: no label
    observed[labelled] = labels[labelled]
    return unlabelled, observed


def train_on_labels(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float = 1e-3,
) -> nn.Module:
    """The labels-only baseline: ``steps`` full-batch Adam steps of
    cross-entropy on the labelled ``(x, y)``; returns ``classifier``."""
    check_int("steps", steps, low=1)
    check_number("lr", lr, low=0.0, low_open=True)
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(classifier(x), y).backward()
        opt.step()
    return classifier


@torch.no_grad()
def error_rate(
    classifier: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Share of the examples ``x`` whose most likely class is not ``y``."""
    return (classifier(x).argmax(1) != y).float().mean().item()


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of ``labelled_per_batch`` labelled and the rest unlabelled.

    One epoch is one pass over the unlabelled indices in a random order; the
    few labelled indices are cycled, reshuffled each time they run out, so
    every batch sees some labels however rare they are.

    Args:
        labelled: indices of labelled examples.
        unlabelled: indices of unlabelled examples.
        batch_size: examples per batch.
        labelled_per_batch: how many of them are labelled.
        generator: the seeded generator that decides the order.
    """

    def __init__(
        self,
        labelled: torch.Tensor,
        unlabelled: torch.Tensor,
        batch_size: int,
        labelled_per_batch: int,
        generator: torch.Generator | None = None,
    ):
        check_int("batch_size", batch_size, low=2)
        check_int(
            "labelled_per_batch",
            labelled_per_batch,
            low=1,
            high=batch_size - 1,
        )
        if len(labelled) == 0 or len(unlabelled) == 0:
            raise ValueError(
                f"labelled and unlabelled must both be non-empty, got "
                f"{len(labelled)} and {len(unlabelled)} indices"
            )
        self.labelled, self.unlabelled = labelled, unlabelled
        self.k = labelled_per_batch
        self.u = batch_size - labelled_per_batch
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.unlabelled) / self.u)

    def __iter__(self) -> Iterator[list[int]]:
        g = self.generator
        order_u = self.unlabelled[
            torch.randperm(len(self.unlabelled), generator=g)
        ]
        pool: list[int] = []
        for i in range(len(self)):
            while len(pool) < self.k:
                perm = torch.randperm(len(self.labelled), generator=g)
                pool += self.labelled[perm].tolist()
            batch_l, pool = pool[: self.k], pool[self.k :]
            yield batch_l + order_u[i * self.u : (i + 1) * self.u].tolist()

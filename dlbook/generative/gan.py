"""Generative adversarial networks, DCGAN, and how to score generated samples.

A generator G maps noise z to samples; a discriminator D tells them from real
data; the two are trained against each other (Goodfellow et al. 2014). DCGAN
(Radford et al. 2016) makes both convolutional: strided convolutions, batch
normalization, ReLU in G and LeakyReLU in D, Adam with lr 2e-4 and β₁ = 0.5.

The training loop is written here rather than with ``dlbook.train.fit``: each
step is two updates of two networks against two different losses, the
discriminator's then the generator's, and that alternation is the algorithm
itself; ``fit``'s one-model, one-loss step cannot express it.

Sample quality is measured in the features of a classifier trained on the same
data (``FeatureClassifier``): the Fréchet distance between Gaussians fitted to
real and generated features (Heusel et al. 2017, who use Inception-v3 features
instead, hence "FID") and the precision and recall of Kynkäänniemi et al.
(2019). Checked in ``tests/generative/test_gan.py``: the Fréchet distance
equals ``torchmetrics``' ``FrechetInceptionDistance`` given the same feature
extractor (a ``FeatureExtractor`` of a ``FeatureClassifier``); precision and
recall equal a direct, loop-by-loop computation of the paper's definition.
Chapter: ``book/generative/gan.md``; the diffusion chapter reuses the measures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_in_range,
    check_int,
    check_number,
    check_tensor,
)
from dlbook.train import History

# --- the losses -----------------------------------------------------------


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor:
    """−E[log D(x)] − E[log(1 − D(G(z)))], with D = sigmoid(logit).

    Shapes:
        real_logits: (N,), fake_logits: (M,); returns a scalar.
    """
    real = F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    )
    fake = F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )
    return real + fake


def generator_loss(
    fake_logits: torch.Tensor, kind: str = "non-saturating"
) -> torch.Tensor:
    """The generator's loss on D's logits for its samples.

    ``"saturating"``: E[log(1 − D(G(z)))], the minimax game's own term, which
    G minimises. ``"non-saturating"``: −E[log D(G(z))], Goodfellow et al.'s
    replacement, with the same fixed point and strong gradients when D
    rejects the samples confidently.
    """
    check_choice("kind", kind, ("saturating", "non-saturating"))
    if kind == "saturating":  # log(1 − sigmoid(a)) = −softplus(a)
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()  # −log sigmoid(a)


# --- networks -------------------------------------------------------------


class MLPGenerator(nn.Module):
    """G(z) = an MLP from noise of size ``z_dim`` to ``out_features``."""

    def __init__(self, z_dim: int = 16, hidden: int = 128, out_features=2):
        super().__init__()
        self.z_dim = check_int("z_dim", z_dim, low=1)
        check_int("hidden", hidden, low=1)
        check_int("out_features", out_features, low=1)
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_features),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """D(x) = sigmoid of an MLP's one output; forward returns the logit."""

    def __init__(self, in_features: int = 2, hidden: int = 128):
        super().__init__()
        check_int("in_features", in_features, low=1)
        check_int("hidden", hidden, low=1)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(-1)


@dataclass
class DCGANConfig:
    """A small DCGAN for 28 x 28 grey images (Radford et al.'s rules)."""

    z_dim: int = 32  # size of the noise z
    width: int = 16  # channels of D's first layer and G's last hidden one

    def __post_init__(self):
        check_int("z_dim", self.z_dim, low=1)
        check_int("width", self.width, low=1)


class DCGANGenerator(nn.Module):
    """z -> 2w x 7 x 7 -> w x 14 x 14 -> 1 x 28 x 28, pixels in [0, 1].

    A linear layer, then two transposed convolutions (4 x 4, stride 2) that
    double the resolution; batch normalization and ReLU between, a sigmoid at
    the end (the images of this book lie in [0, 1]).

    Shapes:
        z: (N, z_dim); returns (N, 1, 28, 28).
    """

    def __init__(self, config: DCGANConfig):
        super().__init__()
        w = config.width
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(config.z_dim, 2 * w * 7 * 7, bias=False),
            nn.Unflatten(1, (2 * w, 7, 7)),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),  # 14 x 14
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, 2, 1),  # 28 x 28
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """1 x 28 x 28 -> w x 14 x 14 -> 2w x 7 x 7 -> one logit.

    Strided 4 x 4 convolutions instead of pooling, LeakyReLU(0.2), batch
    normalization on the second layer (not the first, as in the paper).

    Shapes:
        x: (N, 1, 28, 28); returns (N,) logits.
    """

    def __init__(self, config: DCGANConfig):
        super().__init__()
        w = config.width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1),  # 14 x 14
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),  # 7 x 7
            nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * w * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s init: weights N(0, 0.02²), BN scales N(1, 0.02²)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# --- training -------------------------------------------------------------


@dataclass
class GANTrainConfig:
    """Optimisation of both players (DCGAN's Adam settings by default)."""

    lr_g: float = 2e-4  # generator learning rate
    lr_d: float = 2e-4  # discriminator learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's β₁, β₂
    loss: str = "non-saturating"  # the generator's loss, see generator_loss

    def __post_init__(self):
        check_number("lr_g", self.lr_g, low=0, low_open=True)
        check_number("lr_d", self.lr_d, low=0, low_open=True)
        check_choice("loss", self.loss, ("saturating", "non-saturating"))


class GAN:
    """A generator, a discriminator and their two Adam optimisers.

    ``step(real)`` makes one alternating update: first D on a batch of real
    and generated samples, then G on fresh noise through the updated D.

    Args:
        generator: maps (N, z_dim) noise to samples; has a ``z_dim`` or
            ``config.z_dim`` attribute.
        discriminator: maps samples to (N,) logits.
        config: learning rates, Adam's betas and the generator's loss.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        config: GANTrainConfig | None = None,
    ):
        self.G, self.D = generator, discriminator
        self.config = config or GANTrainConfig()
        self.z_dim = (
            getattr(generator, "z_dim", None) or generator.config.z_dim
        )
        c = self.config
        self.opt_g = torch.optim.Adam(generator.parameters(), c.lr_g, c.betas)
        self.opt_d = torch.optim.Adam(
            discriminator.parameters(), c.lr_d, c.betas
        )

    def noise(self, n: int, generator=None) -> torch.Tensor:
        device = next(self.G.parameters()).device
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def step_discriminator(self, real: torch.Tensor) -> dict[str, float]:
        """One Adam step of D on real and generated samples (G held fixed)."""
        fake = self.G(self.noise(len(real))).detach()  # no gradient into G
        real_logits, fake_logits = self.D(real), self.D(fake)
        d_loss = discriminator_loss(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return {
            "d_loss": d_loss.item(),
            "d_real": torch.sigmoid(real_logits).mean().item(),
        }

    def step_generator(self, n: int) -> dict[str, float]:
        """One Adam step of G on n fresh samples, through the current D."""
        fake_logits = self.D(self.G(self.noise(n)))
        g_loss = generator_loss(fake_logits, self.config.loss)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()  # D's gradients are computed too, never applied
        self.opt_g.step()
        return {
            "g_loss": g_loss.item(),
            "d_fake": torch.sigmoid(fake_logits).mean().item(),
        }

    def step(self, real: torch.Tensor) -> dict[str, float]:
        """One update of D, then one of G; returns the losses and D's outputs.

        ``d_real`` is the mean of D(x) on the real batch, ``d_fake`` that of
        D(G(z)) on the generator's batch, after D's update.
        """
        return self.step_discriminator(real) | self.step_generator(len(real))

    @torch.no_grad()
    def sample(self, n: int, generator=None) -> torch.Tensor:
        """n samples of G in evaluation mode (batch norm: running stats)."""
        check_int("n", n, low=1)
        was_training = self.G.training
        self.G.eval()
        out = self.G(self.noise(n, generator))
        self.G.train(was_training)
        return out


def train_gan(
    gan: GAN,
    loader: Iterable,
    *,
    epochs: int,
    callbacks: Sequence[Callable[[GAN, History], None]] = (),
) -> History:
    """Alternate D and G updates over ``loader`` for ``epochs`` epochs.

    The loader yields batches of real samples (a tensor, or a tuple whose
    first item is the tensor). The history holds, per epoch, the mean of
    ``d_loss``, ``g_loss``, ``d_real`` = D(x) and ``d_fake`` = D(G(z)), and
    the CPU time spent training, ``seconds``; each callback runs after each
    epoch as ``callback(gan, history)``.
    """
    check_int("epochs", epochs, low=1)
    history = History()
    device = next(gan.G.parameters()).device
    elapsed = 0.0
    for _ in range(epochs):
        gan.G.train()
        gan.D.train()
        totals: dict[str, float] = {}
        count = 0
        start = time.process_time()
        for batch in loader:
            real = batch[0] if isinstance(batch, (tuple, list)) else batch
            for key, value in gan.step(real.to(device)).items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
        if count == 0:
            raise ValueError("loader is empty: nothing to train on")
        elapsed += time.process_time() - start
        history.append({k: v / count for k, v in totals.items()})
        history.append({"seconds": elapsed})
        for callback in callbacks:
            callback(gan, history)
    return history


def generator_gradient_norm(
    gan: GAN, n: int, kind: str, generator=None
) -> float:
    """‖∇_θ L_G‖ over the generator's parameters for one batch of n samples."""
    z = gan.noise(n, generator)
    loss = generator_loss(gan.D(gan.G(z)), kind)
    grads = torch.autograd.grad(loss, list(gan.G.parameters()))
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads))


# --- a 2-D mixture and mode coverage ---------------------------------------


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The means of ``modes`` Gaussians evenly spaced on a circle."""
    check_int("modes", modes, low=1)
    check_number("radius", radius, low=0, low_open=True)
    angle = torch.arange(modes) * 2 * math.pi / modes
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def ring_of_gaussians(
    n: int,
    modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n points from an equal mixture of Gaussians on a ring.

    The 2-D benchmark of mode collapse of Metz et al. (2017).
    """
    check_int("n", n, low=1)
    check_number("std", std, low=0, low_open=True)
    centers = ring_centers(modes, radius)
    which = torch.randint(modes, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator)
    return centers[which] + std * noise


def mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    min_share: float = 0.01,
) -> tuple[int, float]:
    """Modes covered and the share of high-quality samples.

    A sample is of high quality if it lies within 3 standard deviations of
    its nearest mode (Srivastava et al. 2017). A mode is covered if at
    least ``min_share`` of all samples are high-quality samples of that
    mode: stricter than Srivastava et al.'s one sample, so that a few
    stray points do not count as a mode.

    Shapes:
        samples: (N, 2); centers: (modes, 2). Returns (modes covered, share).
    """
    check_tensor("samples", samples, ndim=2, floating=True, nonempty=True)
    check_tensor("centers", centers, ndim=2, floating=True, nonempty=True)
    check_number("std", std, low=0, low_open=True)
    dist = torch.cdist(samples, centers)
    nearest = dist.argmin(1)
    good = dist.min(1).values <= 3 * std
    counts = torch.bincount(nearest[good], minlength=len(centers))
    covered = int((counts >= min_share * len(samples)).sum())
    return covered, float(good.float().mean())


# --- the quality measure ---------------------------------------------------


class FeatureClassifier(nn.Module):
    """A small CNN whose penultimate layer serves as the feature space.

    conv 3x3 stride 2 (16) -> conv 3x3 stride 2 (32) -> linear (64) -> 10
    classes, ReLU between. ``features(x)`` is the 64-dimensional activation
    after the last ReLU; ``num_features`` tells torchmetrics its size.

    Shapes:
        x: (N, 1, 28, 28) in [0, 1]; forward: (N, classes) logits;
        features: (N, num_features).
    """

    def __init__(self, classes: int = 10, num_features: int = 64):
        super().__init__()
        self.num_features = check_int("num_features", num_features, low=1)
        check_int("classes", classes, low=2)
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1),  # 14 x 14
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1),  # 7 x 7
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(num_features, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, 1, 28, 28), floating=True)
        check_in_range("x", x, low=0.0, high=1.0)  # the data's pixel range
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """The classifier's feature map as a module, in evaluation mode, no grad.

    What torchmetrics' FrechetInceptionDistance takes as ``feature``.
    """

    def __init__(self, classifier: FeatureClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        was_training = self.classifier.training
        self.classifier.eval()
        out = torch.cat([self.classifier.features(c) for c in x.split(1000)])
        self.classifier.train(was_training)
        return out


def gaussian_statistics(
    features: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of feature vectors, in float64.

    Needs more samples than dimensions, so that the covariance has full rank.

    Shapes:
        features: (N, d) with N > d; returns (d,) and (d, d).
    """
    check_tensor("features", features, ndim=2, floating=True, finite=True)
    n, d = features.shape
    if n <= d:
        raise ValueError(
            f"features must hold more samples than dimensions for a "
            f"full-rank covariance: got {n} samples of dimension {d}"
        )
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (n - 1)


def frechet_distance(
    mu1: torch.Tensor,
    sigma1: torch.Tensor,
    mu2: torch.Tensor,
    sigma2: torch.Tensor,
) -> float:
    """The squared Fréchet (2-Wasserstein) distance between two Gaussians.

        d² = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁ Σ₂)^½)

    (Dowson & Landau 1982). Σ₁ Σ₂ is not symmetric, but it has the same
    eigenvalues as the symmetric S Σ₂ S with S = Σ₁^½, so the trace of its
    square root is Σᵢ √λᵢ(S Σ₂ S), computed with symmetric eigensolvers only.

    Shapes:
        mu1, mu2: (d,); sigma1, sigma2: (d, d), symmetric positive
        semi-definite.
    """
    d = check_tensor("mu1", mu1, ndim=1, floating=True, finite=True).shape[0]
    for name, t, shape in [
        ("sigma1", sigma1, (d, d)),
        ("mu2", mu2, (d,)),
        ("sigma2", sigma2, (d, d)),
    ]:
        check_tensor(name, t, shape=shape, floating=True, finite=True)
    s1, s2 = sigma1.double(), sigma2.double()
    lam, vec = torch.linalg.eigh(s1)
    root = vec * lam.clamp(min=0).sqrt() @ vec.T  # Σ₁^½
    inner = torch.linalg.eigvalsh(root @ s2 @ root).clamp(min=0)
    diff = (mu1 - mu2).double()
    trace_term = s1.trace() + s2.trace() - 2 * inner.sqrt().sum()
    return float(diff @ diff + trace_term)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3
) -> tuple[float, float]:
    """Kynkäänniemi et al.'s improved precision and recall of samples.

    Each real feature vector gets a ball reaching its k-th nearest real
    neighbour; the union of the balls estimates the support of the real data.
    Precision is the share of generated samples inside that support; recall
    the share of real samples inside the support estimated the same way from
    the generated ones.

    Shapes:
        real: (N, d), fake: (M, d), both with more than k rows.
    """
    check_int("k", k, low=1)
    for name, t in [("real", real), ("fake", fake)]:
        check_tensor(name, t, ndim=2, floating=True, finite=True)
        if len(t) <= k:
            raise ValueError(
                f"{name} must hold more than k = {k} samples, got {len(t)}"
            )
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake must have the same dimension, got {real.shape[1]}"
            f" and {fake.shape[1]}"
        )

    def radii(x):  # distance to the k-th nearest neighbour, self excluded
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values

    def inside(points, centres, r):  # is each point in some ball?
        return (torch.cdist(points, centres) <= r[None, :]).any(1)

    real, fake = real.double(), fake.double()
    precision = inside(fake, real, radii(real)).double().mean()
    recall = inside(real, fake, radii(fake)).double().mean()
    return float(precision), float(recall)


@dataclass
class SampleQuality:
    """The three numbers by which this part scores a generator."""

    fd: float  # Fréchet distance in classifier features (lower is better)
    precision: float  # share of samples that look real
    recall: float  # share of the real data the samples cover


def sample_quality(
    extractor: FeatureExtractor,
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = 3,
) -> SampleQuality:
    """Fréchet distance, precision and recall of ``fake`` against ``real``.

    Shapes:
        real, fake: images (N, 1, 28, 28) in [0, 1].
    """
    fr, ff = extractor(real), extractor(fake)
    fd = frechet_distance(*gaussian_statistics(fr), *gaussian_statistics(ff))
    p, r = precision_recall(fr, ff, k)
    return SampleQuality(fd, p, r)

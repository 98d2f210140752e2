"""GANs and the quality measures: losses against their formulas, DCGAN
shapes, the Fréchet distance against torchmetrics and closed forms, precision
and recall against a loop-by-loop computation, mode coverage, short runs that
must learn, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from dlbook.generative.gan import (
    GAN,
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
    FeatureClassifier,
    FeatureExtractor,
    GANTrainConfig,
    MLPDiscriminator,
    MLPGenerator,
    discriminator_loss,
    frechet_distance,
    gaussian_statistics,
    generator_gradient_norm,
    generator_loss,
    mode_coverage,
    precision_recall,
    ring_centers,
    ring_of_gaussians,
    sample_quality,
    train_gan,
)


def test_losses_equal_their_formulas():
    a_real = torch.tensor([2.0, -1.0, 0.5])
    a_fake = torch.tensor([-3.0, 0.0])
    d = torch.sigmoid
    expected_d = -torch.log(d(a_real)).mean() - torch.log(1 - d(a_fake)).mean()
    torch.testing.assert_close(discriminator_loss(a_real, a_fake), expected_d)
    torch.testing.assert_close(
        generator_loss(a_fake, "saturating"), torch.log(1 - d(a_fake)).mean()
    )
    torch.testing.assert_close(
        generator_loss(a_fake, "non-saturating"), -torch.log(d(a_fake)).mean()
    )


def test_saturating_loss_has_vanishing_gradient_when_d_rejects():
    logits = torch.full((4,), -8.0, requires_grad=True)  # D(G(z)) ≈ 3e-4
    (g_sat,) = torch.autograd.grad(
        generator_loss(logits, "saturating"), logits
    )
    (g_ns,) = torch.autograd.grad(
        generator_loss(logits, "non-saturating"), logits
    )
    assert g_sat.abs().max() < 1e-3 * g_ns.abs().min()


def test_dcgan_shapes_and_range():
    cfg = DCGANConfig(z_dim=8, width=4)
    G, D = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    x = G(torch.randn(3, 8))
    assert x.shape == (3, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert D(x).shape == (3,)


def _random_stats(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    b = torch.randn(d, d, generator=g, dtype=torch.float64)
    mu1 = torch.randn(d, generator=g, dtype=torch.float64)
    mu2 = torch.randn(d, generator=g, dtype=torch.float64)
    return mu1, a @ a.T / d, mu2, b @ b.T / d


@given(d=st.integers(1, 12), seed=st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_frechet_distance_equals_torchmetrics_compute_fid(d, seed):
    from torchmetrics.image.fid import _compute_fid

    mu1, s1, mu2, s2 = _random_stats(d, seed)
    expected = float(_compute_fid(mu1, s1, mu2, s2))
    assert math.isclose(
        frechet_distance(mu1, s1, mu2, s2),
        expected,
        rel_tol=1e-6,
        abs_tol=1e-8,
    )


def test_frechet_distance_closed_forms():
    d = 4
    eye = torch.eye(d, dtype=torch.float64)
    mu = torch.zeros(d, dtype=torch.float64)
    # same Gaussian: 0; shifted means: the squared shift; scaled covariance:
    # Tr(I + 4I − 2·2I) = d
    assert abs(frechet_distance(mu, eye, mu, eye)) < 1e-12
    assert math.isclose(frechet_distance(mu, eye, mu + 3, eye), 9 * d)
    assert math.isclose(frechet_distance(mu, eye, mu, 4 * eye), d)


class _Pixels(torch.nn.Module):
    """A fixed feature map: 6 weighted pixel sums (with num_features)."""

    num_features = 6

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(784, 6, generator=g)

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_frechet_distance_equals_torchmetrics_fid_with_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 1, 28, 28, generator=g)
    fake = torch.rand(150, 1, 28, 28, generator=g) ** 2
    features = _Pixels()
    metric = FrechetInceptionDistance(feature=features)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = float(metric.compute())
    ours = frechet_distance(
        *gaussian_statistics(features(real)),
        *gaussian_statistics(features(fake)),
    )
    assert math.isclose(ours, theirs, rel_tol=1e-6), (ours, theirs)


def test_frechet_distance_equals_torchmetrics_fid_with_our_classifier():
    """The chapter's own feature map, FeatureExtractor(FeatureClassifier)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(0)
    extractor = FeatureExtractor(FeatureClassifier())
    g = torch.Generator().manual_seed(1)
    real = torch.rand(300, 1, 28, 28, generator=g)
    fake = torch.rand(200, 1, 28, 28, generator=g) ** 3
    metric = FrechetInceptionDistance(feature=extractor)
    for chunk in real.split(128):  # torchmetrics accumulates over batches
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    theirs = float(metric.compute())  # returned in the features' float32
    ours = sample_quality(extractor, real, fake).fd
    assert theirs > 1e-3  # the two sets do differ
    assert math.isclose(ours, theirs, rel_tol=1e-6), (ours, theirs)


def _precision_recall_by_loops(real, fake, k):
    def radius(points, i):
        dists = sorted(
            float((points[i] - points[j]).norm())
            for j in range(len(points))
            if j != i
        )
        return dists[k - 1]

    def covered(p, centres):
        return any(
            float((p - c).norm()) <= radius(centres, j)
            for j, c in enumerate(centres)
        )

    precision = sum(covered(f, real) for f in fake) / len(fake)
    recall = sum(covered(r, fake) for r in real) / len(real)
    return precision, recall


@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_equal_a_direct_computation(k):
    g = torch.Generator().manual_seed(k)
    real = torch.randn(25, 3, generator=g)
    fake = 0.7 * torch.randn(20, 3, generator=g) + 0.8
    ours = precision_recall(real, fake, k)
    expected = _precision_recall_by_loops(real.double(), fake.double(), k)
    assert ours == pytest.approx(expected)


def test_precision_and_recall_tell_fidelity_from_diversity():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 2, generator=g)
    collapsed = 0.05 * torch.randn(
        500, 2, generator=g
    )  # all at one point of the support
    p, r = precision_recall(real, collapsed)
    assert p > 0.95 and r < 0.2
    far = torch.randn(500, 2, generator=g) + 10
    assert precision_recall(real, far) == (0.0, 0.0)


def test_mode_coverage_counts_modes_and_good_samples():
    centers = ring_centers(8, 2.0)
    samples = ring_of_gaussians(
        4000, std=0.02, generator=torch.Generator().manual_seed(0)
    )
    assert mode_coverage(samples, centers, 0.02) == (
        8,
        pytest.approx(1.0, abs=0.01),
    )
    one = centers[3] + 0.02 * torch.randn(100, 2)
    covered, good = mode_coverage(
        torch.cat([one, torch.zeros(100, 2)]), centers, 0.02
    )
    assert covered == 1 and good == pytest.approx(0.5, abs=0.03)


def test_gan_learns_a_one_dimensional_gaussian():
    torch.manual_seed(0)
    G, D = (
        MLPGenerator(z_dim=2, hidden=16, out_features=1),
        MLPDiscriminator(1, 16),
    )
    gan = GAN(G, D, GANTrainConfig(lr_g=2e-3, lr_d=2e-3))
    data = 3 + 0.5 * torch.randn(1024, 1)
    loader = DataLoader(TensorDataset(data), batch_size=128, shuffle=True)
    before = gan.sample(1000).mean().item()
    history = train_gan(gan, loader, epochs=25)
    after = gan.sample(1000)
    assert abs(before - 3) > 1.5
    assert (
        abs(after.mean().item() - 3) < 0.3 and 0.2 < after.std().item() < 1.0
    )
    assert len(history["d_loss"]) == 25 and history["seconds"][-1] > 0


def test_gradient_norm_of_the_two_generator_losses():
    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=2, hidden=8), MLPDiscriminator(2, 8)
    with torch.no_grad():  # a discriminator that rejects everything
        D.net[-1].bias.fill_(-10.0)
    gan = GAN(G, D)
    sat = generator_gradient_norm(gan, 64, "saturating")
    ns = generator_gradient_norm(gan, 64, "non-saturating")
    assert sat < 1e-3 * ns


def test_feature_classifier_and_sample_quality():
    torch.manual_seed(0)
    clf = FeatureClassifier()
    x = torch.rand(100, 1, 28, 28)
    assert clf(x).shape == (100, 10) and FeatureExtractor(clf)(x).shape == (
        100,
        64,
    )
    q = sample_quality(FeatureExtractor(clf), x, x.clone())
    assert abs(q.fd) < 1e-6 and q.precision == 1.0 and q.recall == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="more samples than dimensions"):
        gaussian_statistics(torch.rand(10, 10))
    with pytest.raises(ValueError, match="more samples than dimensions"):
        gaussian_statistics(torch.rand(1, 3))
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        frechet_distance(
            torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3)
        )
    with pytest.raises(
        ValueError, match="fake must hold more than k = 3 samples"
    ):
        precision_recall(torch.rand(10, 2), torch.rand(3, 2))
    with pytest.raises(ValueError, match="same dimension"):
        precision_recall(torch.rand(10, 2), torch.rand(10, 3))
    with pytest.raises(ValueError, match="loss must be one of"):
        GANTrainConfig(loss="wasserstein")
    with pytest.raises(
        ValueError, match="z_dim must be an integer >= 1, got 0"
    ):
        DCGANConfig(z_dim=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        generator_loss(torch.zeros(2), "minimax")
    with pytest.raises(
        ValueError, match=r"x must have shape \(\*, 1, 28, 28\)"
    ):
        FeatureClassifier()(torch.rand(2, 3, 28, 28))
    with pytest.raises(
        ValueError, match=r"x must hold values in \[0.0, 1.0\]"
    ):
        FeatureClassifier()(torch.rand(2, 1, 28, 28) * 2)
    extractor = FeatureExtractor(FeatureClassifier())
    with pytest.raises(ValueError, match="values in"):
        sample_quality(
            extractor,
            torch.rand(80, 1, 28, 28),
            torch.rand(80, 1, 28, 28) - 0.5,
        )
    with pytest.raises(ValueError, match="more samples than dimensions"):
        sample_quality(
            extractor, torch.rand(80, 1, 28, 28), torch.rand(40, 1, 28, 28)
        )  # 40 <= 64 features
    with pytest.raises(ValueError, match="z_dim must be an integer >= 1"):
        MLPGenerator(z_dim=-2)
    gan = GAN(MLPGenerator(), MLPDiscriminator())
    with pytest.raises(ValueError, match="loader is empty"):
        train_gan(gan, [], epochs=1)

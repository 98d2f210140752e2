"""Siamese networks: losses and miners equal to PyTorch and
pytorch-metric-learning, the Hausdorff baseline equal to the Omniglot demo's,
a short training run that learns, and the bad inputs each function refuses."""

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance
from torch import nn
from torch.testing import assert_close

from dlbook.representations.siamese import (
    ContrastiveLoss,
    EmbeddingConfig,
    EmbeddingNet,
    PKSampler,
    Siamese,
    TripletLoss,
    batch_hard_triplets,
    centred_ink,
    contrastive_loss,
    embed,
    hausdorff_matrix,
    hausdorff_one_shot_error,
    modified_hausdorff,
    one_shot_error,
    pairwise_distances,
    semihard_triplets,
    triplet_margin_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = dict(rtol=1e-5, atol=1e-6)


def batch(seed=0, n=24, d=8, classes=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.arange(n) % classes
    return x, y


def grad_of(loss_fn, x, *args):
    x = x.clone().requires_grad_(True)
    value = loss_fn(x, *args)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def lp():
    # our losses take embeddings as given: no normalization inside PML
    return LpDistance(normalize_embeddings=False)


# ------------------------------------------------------------------ twins


def test_embedding_shapes_and_unit_norm():
    net = EmbeddingNet(EmbeddingConfig(embedding_dim=16, channels=(4, 8)))
    z = net(torch.rand(5, 1, 28, 28))
    assert z.shape == (5, 16)
    assert_close(z.norm(dim=1), torch.ones(5))


def test_siamese_shares_weights_and_is_symmetric():
    torch.manual_seed(0)
    net = Siamese(
        EmbeddingNet(EmbeddingConfig(embedding_dim=8, channels=(4,)))
    )
    net.eval()
    a, b = torch.rand(3, 1, 12, 12), torch.rand(3, 1, 12, 12)
    d = net(a, b)
    assert d.shape == (3,)
    assert_close(d, net(b, a))
    assert_close(net(a, a), torch.zeros(3), atol=1e-6, rtol=0)
    # one set of weights: both branches' gradients land in the same tensor
    net.train()
    d = net(a, b).sum()
    w = net.embedding.head.weight
    (g_both,) = torch.autograd.grad(d, w)
    assert g_both.abs().sum() > 0
    assert len(list(net.parameters())) == len(list(net.embedding.parameters()))


def test_embed_in_batches_equals_one_call():
    torch.manual_seed(0)
    net = EmbeddingNet(EmbeddingConfig(embedding_dim=8, channels=(4,))).eval()
    x = torch.rand(7, 1, 12, 12)
    with torch.no_grad():
        assert_close(embed(net, x, batch_size=3), net(x))
    with pytest.raises(ValueError, match="batch_size"):
        embed(net, x, batch_size=0)


def test_pairwise_distances_equal_cdist():
    x, _ = batch()
    y = torch.randn(7, x.shape[1], dtype=x.dtype)
    assert_close(pairwise_distances(x, y), torch.cdist(x, y), **TOL)
    d, g = grad_of(lambda t: pairwise_distances(t).sum(), x)
    assert torch.isfinite(g).all()  # the diagonal (d = 0) has a gradient


# ----------------------------------------------------------------- losses


@pytest.mark.parametrize("margin", [0.2, 1.0, 3.0])
def test_triplet_margin_loss_equals_torch(margin):
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(10, 6, generator=g) for _ in range(3))
    ref = nn.TripletMarginLoss(margin=margin)
    for args in [(a, p, n), (a, a.clone(), n)]:  # coinciding points too
        xs = [t.clone().requires_grad_(True) for t in args]
        ys = [t.clone().requires_grad_(True) for t in args]
        ours, theirs = triplet_margin_loss(*xs, margin), ref(*ys)
        assert_close(ours, theirs, **TOL)
        ours.backward()
        theirs.backward()
        for u, v in zip(xs, ys, strict=False):
            assert_close(u.grad, v.grad, **TOL)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    margin=st.floats(0.01, 5.0),
    reduction=st.sampled_from(["mean", "sum", "none"]),
)
def test_triplet_margin_loss_property(seed, margin, reduction):
    g = torch.Generator().manual_seed(seed)
    a, p, n = (
        torch.randn(7, 3, generator=g, dtype=torch.float64) * 2
        for _ in range(3)
    )
    ref = nn.functional.triplet_margin_loss(
        a, p, n, margin=margin, reduction=reduction
    )
    assert_close(
        triplet_margin_loss(a, p, n, margin, reduction=reduction), ref
    )


def test_contrastive_loss_by_hand():
    d = torch.tensor([0.5, 0.5, 2.0])
    same = torch.tensor([True, False, False])
    # ½·0.5², ½·(1 − 0.5)², ½·max(0, 1 − 2)²
    assert_close(
        contrastive_loss(d, same, 1.0), torch.tensor([0.125, 0.125, 0.0])
    )
    assert_close(
        contrastive_loss(d, same, 1.0, squared=False),
        torch.tensor([0.5, 0.5, 0.0]),
    )


@pytest.mark.parametrize("margin", [0.5, 2.0, 4.0])
def test_contrastive_loss_equals_pml(margin):
    x, y = batch(seed=2)
    ref = pml_losses.ContrastiveLoss(
        pos_margin=0, neg_margin=margin, distance=lp()
    )
    ours = ContrastiveLoss(margin, squared=False, reduction="nonzero")
    v1, g1 = grad_of(ours, x, y)
    v2, g2 = grad_of(ref, x, y)
    assert v1 > 0
    assert_close(v1, v2, **TOL)
    assert_close(g1, g2, **TOL)


def test_contrastive_mean_is_hadsell_over_all_pairs():
    x, y = batch(seed=3, n=6, classes=2)
    loss = ContrastiveLoss(1.5)(x, y)
    terms = [
        (0.5 * (x[i] - x[j]).norm() ** 2)
        if y[i] == y[j]
        else 0.5 * torch.clamp(1.5 - (x[i] - x[j]).norm(), min=0) ** 2
        for i in range(6)
        for j in range(6)
        if i != j
    ]
    assert_close(loss, torch.stack(terms).mean())


@pytest.mark.parametrize("margin", [0.1, 0.5, 2.0])
def test_all_triplets_loss_equals_pml(margin):
    x, y = batch(seed=4)
    ref = pml_losses.TripletMarginLoss(margin=margin, distance=lp())
    ours = TripletLoss(margin, mining="all", reduction="nonzero")
    v1, g1 = grad_of(ours, x, y)
    v2, g2 = grad_of(ref, x, y)
    assert v1 > 0
    assert_close(v1, v2, **TOL)
    assert_close(g1, g2, **TOL)


def test_batch_hard_miner_equals_pml():
    x, y = batch(seed=5)
    miner = pml_miners.BatchHardMiner(distance=lp())
    a, p, n = batch_hard_triplets(pairwise_distances(x), y)
    ra, rp, rn = miner(x, y)
    assert len(a) == len(x)
    for u, v in zip((a, p, n), (ra, rp, rn), strict=False):
        assert torch.equal(u, v)
    # and the loss over them, values and gradients
    ref = pml_losses.TripletMarginLoss(margin=0.5, distance=lp())
    v1, g1 = grad_of(
        TripletLoss(0.5, mining="hard", reduction="nonzero"), x, y
    )
    v2, g2 = grad_of(lambda t, yy: ref(t, yy, miner(t, yy)), x, y)
    assert_close(v1, v2, **TOL)
    assert_close(g1, g2, **TOL)


@pytest.mark.parametrize("margin", [0.3, 1.0])
def test_semihard_miner_equals_pml(margin):
    x, y = batch(seed=6)
    miner = pml_miners.TripletMarginMiner(
        margin=margin, type_of_triplets="semihard", distance=lp()
    )
    ours = semihard_triplets(pairwise_distances(x), y, margin)
    theirs = miner(x, y)
    assert len(ours[0]) > 10
    for u, v in zip(ours, theirs, strict=False):
        assert torch.equal(u, v)
    d = pairwise_distances(x)
    a, p, n = ours
    gap = d[a, n] - d[a, p]
    assert (gap > 0).all() and (gap <= margin).all()
    ref = pml_losses.TripletMarginLoss(margin=margin, distance=lp())
    v1, g1 = grad_of(
        TripletLoss(margin, mining="semihard", reduction="nonzero"), x, y
    )
    v2, g2 = grad_of(lambda t, yy: ref(t, yy, miner(t, yy)), x, y)
    assert_close(v1, v2, **TOL)
    assert_close(g1, g2, **TOL)


def test_loss_gradient_matches_finite_differences():
    x, y = batch(seed=7, n=9, d=3, classes=3)
    for loss in (ContrastiveLoss(2.0), TripletLoss(1.0, mining="all")):
        assert torch.autograd.gradcheck(
            lambda t, loss=loss: loss(t, y), (x.clone().requires_grad_(True),)
        )


def test_miners_skip_anchors_without_positives():
    x = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 2])
    a, p, n = batch_hard_triplets(pairwise_distances(x), y)
    assert a.tolist() == [0, 1] and p.tolist() == [1, 0]
    assert all(y[n] != y[a])


# ------------------------------------------------------------- sampler


def test_pk_sampler_batches_and_determinism():
    labels = torch.arange(60) % 12
    s1 = PKSampler(labels, 4, 3, torch.Generator().manual_seed(0))
    s2 = PKSampler(labels, 4, 3, torch.Generator().manual_seed(0))
    b1, b2 = list(s1), list(s2)
    assert b1 == b2 and len(b1) == 3
    for b in b1:
        counts = torch.bincount(labels[b], minlength=12)
        assert sorted(counts[counts > 0].tolist()) == [3, 3, 3, 3]
        assert len(set(b)) == len(b)


# ---------------------------------------------------- Hausdorff baseline


def test_modified_hausdorff_by_hand():
    a = np.array([[0.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 0.0]])
    # A -> B: mean(0, 2) = 1; B -> A: 0
    assert modified_hausdorff(a, b) == 1.0


def _demo_points(image):
    """The Omniglot demo's LoadImgAsPoints: ink coordinates minus their
    mean."""
    pts = np.argwhere(image[0].numpy() > 0.5).astype(float)
    return pts - pts.mean(0)


def test_hausdorff_matrix_within_rounding_of_the_demo():
    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(6, 1, 30, 30, generator=g) > 0.85).float()
    m = hausdorff_matrix(imgs[:3], imgs[3:]).numpy()
    demo = np.array(
        [
            [
                modified_hausdorff(_demo_points(s), _demo_points(t))
                for t in imgs[3:]
            ]
            for s in imgs[:3]
        ]
    )
    assert np.abs(m - demo).max() <= math.sqrt(2) + 1e-9
    # on drawings whose centre of mass is a whole pixel, the two are equal
    img = torch.zeros(2, 1, 21, 21)
    img[0, 0, 5:16, 10] = 1  # a vertical bar, centred on (10, 10)
    img[1, 0, 10, 7:14] = 1  # a horizontal bar, centred on (10, 10)
    exact = modified_hausdorff(_demo_points(img[0]), _demo_points(img[1]))
    assert_close(hausdorff_matrix(img[:1], img[1:])[0, 0].item(), exact)
    assert centred_ink(img).shape == (2, 42, 42)


@dataclass
class Run:
    train: torch.Tensor
    test: torch.Tensor
    answers: torch.Tensor


def toy_runs(n=5, size=16, seed=0):
    """Runs whose test images are the training images, shuffled."""
    g = torch.Generator().manual_seed(seed)
    train = (torch.rand(n, 1, size, size, generator=g) > 0.7).float()
    answers = torch.randperm(n, generator=g)
    return [Run(train, train[answers], answers)]


def test_one_shot_errors_on_a_solvable_run():
    runs = toy_runs()
    assert hausdorff_one_shot_error(runs) == 0.0
    assert one_shot_error(lambda x: x.flatten(1), runs) == 0.0
    # a constant embedding is always wrong but for the first class
    assert one_shot_error(lambda x: torch.zeros(len(x), 2), runs) == 0.8


def test_training_learns_omniglot(data_home):
    from torch.utils.data import DataLoader, TensorDataset

    from dlbook.data import load_omniglot
    from dlbook.train import fit

    torch.manual_seed(0)
    bg = load_omniglot("small1", image_size=20)
    first = bg.labels < 40
    x, y = bg.images[first], bg.labels[first]
    train, held = bg.drawers[first] <= 15, bg.drawers[first] > 15
    net = EmbeddingNet(EmbeddingConfig(embedding_dim=16, channels=(8, 16)))

    def nn_accuracy():
        net.eval()
        with torch.no_grad():
            d = pairwise_distances(net(x[held]), net(x[train]))
        net.train()
        return (y[train][d.argmin(1)] == y[held]).float().mean().item()

    before = nn_accuracy()
    sampler = PKSampler(y[train], 8, 4, torch.Generator().manual_seed(0))
    loader = DataLoader(
        TensorDataset(x[train], y[train]), batch_sampler=sampler
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    h = fit(
        net,
        loader,
        opt,
        epochs=6,
        loss_fn=TripletLoss(0.2, mining="all"),
        metrics={},
        progress=False,
    )
    after = nn_accuracy()
    assert h["train_loss"][-1] < 0.8 * h["train_loss"][0]
    # chance is 1/40; the untrained net is at about 0.12, after: about 0.3
    assert after > before + 0.1 and after > 0.2


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize("dim", [0, -3])
def test_embedding_size_must_be_positive(dim):
    with pytest.raises(ValueError, match="embedding_dim"):
        EmbeddingNet(EmbeddingConfig(embedding_dim=dim))


@pytest.mark.parametrize("margin", [0, -0.5, float("nan"), float("inf")])
def test_margin_must_be_positive(margin):
    x, y = batch()
    for make in (
        lambda: ContrastiveLoss(margin),
        lambda: TripletLoss(margin),
        lambda: triplet_margin_loss(x, x, x, margin),
        lambda: contrastive_loss(
            torch.ones(3), torch.ones(3, dtype=torch.bool), margin
        ),
        lambda: semihard_triplets(pairwise_distances(x), y, margin),
    ):
        with pytest.raises(ValueError, match="margin"):
            make()


def test_labels_of_wrong_shape_or_kind():
    x, y = batch()
    for loss in (ContrastiveLoss(), TripletLoss()):
        with pytest.raises(ValueError, match="labels must have shape"):
            loss(x, y[:-1])
        with pytest.raises(ValueError, match="labels must have shape"):
            loss(x, y[:, None])
        with pytest.raises(TypeError, match="labels"):
            loss(x, y.float())
        with pytest.raises(ValueError, match="labels"):
            loss(x, y - 1)  # -1 is not a class
    with pytest.raises(ValueError, match="same"):
        contrastive_loss(torch.ones(3), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="k must be"):
        PKSampler(torch.tensor([0, 0, 1]), 2, 2)


def test_one_shot_run_with_a_missing_file():
    (run,) = toy_runs()
    short = Run(run.train[:-1], run.test, run.answers)  # a training image lost
    with pytest.raises(ValueError, match=r"runs\[1\]\.test must have shape"):
        one_shot_error(lambda t: t.flatten(1), [run, short])
    bad = Run(run.train, run.test, torch.zeros_like(run.answers))
    with pytest.raises(ValueError, match="permutation"):
        hausdorff_one_shot_error([bad])
    with pytest.raises(ValueError, match="at least one"):
        one_shot_error(lambda t: t.flatten(1), [])
    blank = Run(run.train * 0, run.test, run.answers)
    with pytest.raises(ValueError, match="no ink"):
        hausdorff_one_shot_error([blank])

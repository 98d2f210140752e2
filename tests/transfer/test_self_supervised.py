"""SimCLR's NT-Xent against pytorch-metric-learning, views, rotations.

pytorch-metric-learning's NTXentLoss takes one batch of embeddings and a
label per row: rows with equal labels are positives, all others negatives.
SimCLR's pairing is the view pair of an image, so the reference gets the
2N rows cat(z1, z2) with labels (0, ..., N-1, 0, ..., N-1): each row then
has exactly one positive and 2N - 2 negatives, and the reference's mean
over positive pairs (a, p) is the mean over the 2N views of eq. (1).
"""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.losses import NTXentLoss as PmlNTXent
from torch.testing import assert_close

from dlbook.transfer.augmentation import RandomFlip
from dlbook.transfer.self_supervised import (
    NTXentLoss,
    PretrainConfig,
    RandomApply,
    RotationBatches,
    SimCLR,
    TwoViewBatches,
    ViewPipeline,
    alignment,
    encode,
    knn_accuracy,
    negative_weights,
    nt_xent,
    pretrain_rotation,
    pretrain_simclr,
    rotations,
    simclr_views,
    small_resnet,
    uniformity,
    view_geometry,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def pair(n=6, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, d, generator=g, dtype=dtype),
        torch.randn(n, d, generator=g, dtype=dtype),
    )


def reference(z1, z2, tau):
    labels = torch.arange(len(z1)).repeat(2)
    return PmlNTXent(temperature=tau)(torch.cat([z1, z2]), labels)


@pytest.mark.parametrize("tau", [0.07, 0.5, 2.0])
@pytest.mark.parametrize("n, d, seed", [(2, 3, 0), (6, 5, 1), (17, 8, 2)])
def test_nt_xent_equals_pml_values_and_gradients(tau, n, d, seed):
    a1, a2 = pair(n, d, seed)
    b1, b2 = (t.clone().requires_grad_() for t in (a1, a2))
    c1, c2 = (t.clone().requires_grad_() for t in (a1, a2))
    ours, ref = nt_xent(b1, b2, tau), reference(c1, c2, tau)
    ours.backward()
    ref.backward()
    assert ours > 0
    assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert_close(b1.grad, c1.grad, rtol=1e-8, atol=1e-12)
    assert_close(b2.grad, c2.grad, rtol=1e-8, atol=1e-12)


def test_nt_xent_by_hand():
    # two images in 2-d: u = (e1, e2) then (e1, -e2); tau = 1
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    e = torch.exp(torch.tensor(1.0, dtype=torch.float64))
    # views 0 and 2 (= e1): positive cos 1, others cos 0 and 0
    l_02 = -torch.log(e / (e + 2))
    # views 1 (e2) and 3 (-e2): positive cos -1, others cos 0 and 0
    l_13 = -torch.log(1 / e / (1 / e + 2))
    assert_close(nt_xent(z1, z2, 1.0), (2 * l_02 + 2 * l_13) / 4)


def test_nt_xent_is_lowest_for_aligned_and_spread_views():
    z = torch.eye(4, dtype=torch.float64)
    aligned = nt_xent(z, 3 * z, 0.1)  # scale does not matter
    swapped = nt_xent(z, z.roll(1, 0), 0.1)  # wrong partners
    assert aligned < 0.01 < 3 < swapped


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf")])
def test_nt_xent_refuses_bad_temperature(tau):
    z1, z2 = pair()
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z1, z2, tau)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(tau)


def test_nt_xent_refuses_bad_shapes():
    z1, z2 = pair(6, 5)
    with pytest.raises(ValueError, match="z1 and z2 must have the same"):
        nt_xent(z1, z2[:5])
    with pytest.raises(ValueError, match="z1 and z2 must have the same"):
        nt_xent(z1, z2[:, :4])
    with pytest.raises(ValueError, match="z1"):
        nt_xent(z1[0], z2[0])
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(z1[:1], z2[:1])
    with pytest.raises(TypeError, match="z2"):
        nt_xent(z1, torch.ones(6, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="z"):
        NTXentLoss()(z1, None)  # not (B, 2, D)


def test_views_are_images_and_differ():
    x = torch.rand(8, 1, 28, 28)
    views = simclr_views(28)
    v = views.pair(x, torch.Generator().manual_seed(0))
    assert v.shape == (8, 2, 1, 28, 28)
    assert 0 <= v.min() and v.max() <= 1
    assert not torch.equal(v[:, 0], v[:, 1])
    again = views.pair(x, torch.Generator().manual_seed(0))
    assert torch.equal(v, again)  # seeded: the same draws


def test_view_pipeline_refuses_what_is_not_images():
    views = simclr_views(28)
    with pytest.raises(ValueError, match="x"):
        views(torch.rand(8, 28, 28))  # no channel axis
    with pytest.raises(ValueError, match="channels"):
        views(torch.rand(8, 5, 28, 28))
    with pytest.raises(TypeError, match="floating"):
        views(torch.zeros(8, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        views(torch.rand(8, 1, 28, 28) * 255)
    with pytest.raises(TypeError, match="x"):
        views([[0.5]])
    with pytest.raises(ValueError, match="at least one"):
        ViewPipeline([])
    with pytest.raises(TypeError, match=r"augmentations\[0\]"):
        ViewPipeline([lambda x: x])


def test_random_apply_keeps_the_images_it_skips():
    x = torch.rand(200, 1, 4, 4)
    flip = RandomApply(RandomFlip(1.0), p=0.3)
    params = flip.sample(x, torch.Generator().manual_seed(0))
    out = flip.apply(x, params)
    on = params["on"]
    assert torch.equal(out[on], x[on].flip(-1))
    assert torch.equal(out[~on], x[~on])
    assert 0.2 < on.float().mean() < 0.4
    with pytest.raises(ValueError, match="p"):
        RandomApply(RandomFlip(), 1.5)


def test_simclr_shapes_and_two_view_batches():
    x = torch.rand(10, 1, 28, 28)
    batches = TwoViewBatches(x, 4, simclr_views(28))
    got = list(batches)
    assert len(got) == len(batches) == 2  # whole batches only
    v, i = got[0]
    assert v.shape == (4, 2, 1, 28, 28) and i.shape == (4,)
    model = SimCLR(small_resnet(1, (4, 8, 8)), proj_dim=6)
    assert model(v).shape == (4, 2, 6)
    with pytest.raises(ValueError, match="x"):
        model(v[:, 0])  # one view: not (B, 2, C, H, W)
    with pytest.raises(TypeError, match="out_features"):
        SimCLR(torch.nn.Conv2d(1, 4, 3))
    with pytest.raises(ValueError, match="batch_size"):
        TwoViewBatches(x, 1, simclr_views(28))
    with pytest.raises(ValueError, match="batch_size"):
        TwoViewBatches(x, 11, simclr_views(28))


def test_rotations_turn_each_image_four_ways():
    x = torch.rand(3, 1, 5, 5)
    r, y = rotations(x)
    assert r.shape == (12, 1, 5, 5)
    assert y.tolist() == [0, 1, 2, 3] * 3
    assert torch.equal(r[0], x[0])
    assert torch.equal(r[2], x[0].flip(-1).flip(-2))  # 180 degrees
    assert torch.equal(r[5], torch.rot90(x[1], 1, (1, 2)))
    with pytest.raises(ValueError, match="square"):
        rotations(torch.rand(3, 1, 5, 6))
    with pytest.raises(ValueError, match="x"):
        rotations(torch.rand(5, 5))


def test_knn_alignment_uniformity():
    h = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    y = torch.tensor([0, 0, 1, 1])
    assert knn_accuracy(h, y, h, y, k=1) == 1.0
    assert knn_accuracy(h, y, h, 1 - y, k=1) == 0.0
    z = torch.eye(3)
    assert alignment(z, z).item() == 0.0
    assert_close(alignment(z, z.roll(1, 0)), torch.tensor(2.0))
    # three orthonormal vectors: every squared distance is 2
    assert_close(uniformity(z), torch.tensor(-4.0))
    assert uniformity(torch.ones(3, 2)).item() == 0.0  # collapsed
    with pytest.raises(ValueError, match="k"):
        knn_accuracy(h, y, h, y, k=5)
    with pytest.raises(ValueError, match="test_y"):
        knn_accuracy(h, y, h, y[:3])


def blobs(n=256, seed=0):
    """Images of two kinds: a bright bar, left-right or up-down, at random."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.1 * torch.rand(n, 1, 12, 12, generator=g)
    pos = torch.randint(2, 10, (n,), generator=g)
    for k in range(n):
        if y[k]:
            x[k, 0, 2:10, pos[k]] = 1.0
        else:
            x[k, 0, pos[k], 2:10] = 1.0
    return x, y


def test_simclr_pretraining_lowers_the_loss_and_spreads_the_views():
    # a random encoder maps every image to nearly the same direction
    # (uniformity near 0); training must spread them over the sphere while
    # keeping an image's two views together, and keep the kinds apart
    x, y = blobs()
    views = ViewPipeline([RandomFlip(0.5)])
    xt, yt = blobs(seed=1)
    torch.manual_seed(0)
    before = view_geometry(SimCLR(small_resnet(1, (4, 8, 8)), 8), xt, views)
    cfg = PretrainConfig(epochs=6, batch_size=32, lr=3e-3, proj_dim=8)
    model, history = pretrain_simclr(small_resnet(1, (4, 8, 8)), x, views, cfg)
    loss = history["train_loss"]
    assert loss[-1] < loss[0] - 0.3, loss
    after = view_geometry(model, xt, views)
    assert before["uniformity"] > -0.1, before
    assert after["uniformity"] < before["uniformity"] - 0.5, (before, after)
    assert after["alignment"] < 0.5, after
    h = encode(model.encoder, x)
    assert knn_accuracy(h, y, encode(model.encoder, xt), yt, k=5) > 0.9


def test_rotation_pretraining_learns_the_turns():
    x, _ = blobs(seed=2)
    x[:, 0, 0:3, 0:3] = 1.0  # a corner mark: each turn is recognisable
    assert len(RotationBatches(x, 100)) == 3
    cfg = PretrainConfig(epochs=4, batch_size=16, lr=3e-3)
    model, history = pretrain_rotation(small_resnet(1, (4, 8, 8)), x, cfg)
    assert history["train_acc"][0] < 0.8, history["train_acc"]
    assert history["train_acc"][-1] > 0.9, history["train_acc"]
    x2, _ = blobs(64, seed=3)
    x2[:, 0, 0:3, 0:3] = 1.0
    r, t = rotations(x2)
    with torch.no_grad():
        acc = (model(r).argmax(1) == t).float().mean()
    assert acc > 0.9, acc


def test_negative_weights_are_the_softmax_over_negatives():
    z1, z2 = pair(5, 4, seed=7)
    w = negative_weights(z1, z2, 0.3)
    assert w.shape == (10, 10)
    assert_close(w.sum(1), torch.ones(10, dtype=torch.float64))
    i = torch.arange(10)
    assert (w[i, i] == 0).all() and (w[i, i.roll(5)] == 0).all()
    u = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    e = torch.exp(u[0] @ u.T / 0.3)
    e[0] = e[5] = 0
    assert_close(w[0], e / e.sum())
    # a lower temperature puts more weight on the hardest negative
    assert (
        w.max(1).values.mean() > negative_weights(z1, z2, 3).max(1)[0].mean()
    )
    with pytest.raises(ValueError, match="temperature"):
        negative_weights(z1, z2, 0)

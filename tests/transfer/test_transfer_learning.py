"""Tests for dlbook.transfer.transfer_learning: the staged forward pass against
the package's own EfficientNet forward, the feature cache, freezing,
discriminative learning rates, the few-label sampler and bad input."""

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.pretrained import efficientnet_lite0
from dlbook.transfer.transfer_learning import (
    STAGES,
    FeatureCache,
    FineTuneNet,
    ProbeConfig,
    TopBlocks,
    backbone_stages,
    discriminative_groups,
    few_shot_indices,
    freeze,
    linear_probe,
    small_cnn,
    train_classifier,
)


@pytest.fixture(scope="module")
def net():
    return efficientnet_lite0().model


@pytest.fixture(scope="module")
def images():
    return torch.randn(
        3, 3, 64, 64, generator=torch.Generator().manual_seed(0)
    )


def test_stages_equal_the_package(net, images):
    with torch.no_grad():
        ours = backbone_stages(net, images, ["head"], pool=False)["head"]
        ref = net.extract_features(images)
    torch.testing.assert_close(ours, ref)


def test_top_blocks_from_cache_equal_the_whole_network(net, images):
    top = TopBlocks(net, "blocks.13", num_classes=1000).eval()
    top.fc.load_state_dict(net._fc.state_dict())
    with torch.no_grad():
        h = backbone_stages(net, images, ["blocks.13"], pool=False)
        out = top(h["blocks.13"])
        torch.testing.assert_close(out, net(images), atol=1e-4, rtol=1e-4)
        # the backbone given to TopBlocks is not modified
        assert net._conv_stem is not None and not isinstance(
            net._blocks[0], nn.Identity
        )


def test_feature_cache_computes_once(net, images):
    cache = FeatureCache(net, ["blocks.5", "head"], ["blocks.5"], 2)
    first = cache("a", images)
    assert cache.computed == 2  # two batches
    again = cache("a", images * 0)  # a known key: no new forward pass
    assert cache.computed == 2 and again["head"] is first["head"]
    assert first["blocks.5"].shape == (3, 80) and first["head"].shape == (
        3,
        1280,
    )
    with torch.no_grad():
        direct = backbone_stages(net, images, ["blocks.5"])["blocks.5"]
    torch.testing.assert_close(first["blocks.5"], direct)
    torch.testing.assert_close(first["blocks.5/map"].mean((2, 3)), direct)
    cache("b", images[:1])
    assert cache.computed == 3


def test_freeze_trains_only_named_modules():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    kept = freeze(model, ["2"])
    assert kept == ["2.weight", "2.bias"]
    assert [p.requires_grad for p in model.parameters()] == [
        False,
        False,
        True,
        True,
    ]
    assert freeze(model) == [] and not any(
        p.requires_grad for p in model.parameters()
    )
    # "1" must not match "10...": prefixes are whole module names
    deep = nn.Sequential(*[nn.Linear(1, 1) for _ in range(11)])
    assert freeze(deep, ["1"]) == ["1.weight", "1.bias"]


def test_fine_tune_net_keeps_batch_norm_in_eval(net):
    model = FineTuneNet(net, 10).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.fc.training and model.training


def test_discriminative_learning_rates():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 2))
    groups = discriminative_groups(model, [["0"], ["1"], ["2"]], 0.1, 2.0)
    assert [g["lr"] for g in groups] == pytest.approx([0.025, 0.05, 0.1])
    assert [g["names"] for g in groups] == [
        ["0.weight", "0.bias"],
        ["1.weight", "1.bias"],
        ["2.weight", "2.bias"],
    ]
    opt = torch.optim.SGD(groups, lr=1.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [0.025, 0.05, 0.1]
    )
    # a frozen parameter belongs to no group
    freeze(model, ["1", "2"])
    groups = discriminative_groups(model, [["1"], ["2"]], 0.1)
    assert [g["lr"] for g in groups] == pytest.approx([0.1 / 2.6, 0.1])


def test_discriminative_steps_move_early_layers_less():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(
        discriminative_groups(model, [["0"], ["1"]], 0.1, factor=10.0)
    )
    model(torch.randn(8, 4)).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, b, g, lr in zip(
        model.parameters(), before, grads, [0.01, 0.01, 0.1, 0.1], strict=True
    ):
        torch.testing.assert_close(b - p.detach(), lr * g)


def test_few_shot_indices_exact_seeded_nested():
    targets = np.repeat(np.arange(4), [5, 7, 9, 6])
    idx = few_shot_indices(targets, 5, seed=3)
    assert len(np.unique(idx)) == 20
    assert (np.bincount(targets[idx], minlength=4) == 5).all()
    np.testing.assert_array_equal(idx, few_shot_indices(targets, 5, seed=3))
    assert not np.array_equal(idx, few_shot_indices(targets, 5, seed=4))
    small = few_shot_indices(targets, 2, seed=3)
    assert set(small) <= set(idx)  # nested: 2 per class inside 5 per class


def test_linear_probe_learns_separable_features():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 3
    y = torch.arange(3).repeat(20)
    x = centres[y] + torch.randn(60, 16, generator=g)
    acc = linear_probe(x[:30], y[:30], x[30:], y[30:], ProbeConfig(epochs=50))
    assert acc > 0.9
    shuffled = linear_probe(
        x[:30],
        y[:30][torch.randperm(30, generator=g)],
        x[30:],
        y[30:],
        ProbeConfig(epochs=50),
    )
    assert shuffled < 0.7  # labels unrelated to the features: no transfer


def test_small_cnn_learns():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32)
    y = (x[:, 0].mean((1, 2)) > x[:, 2].mean((1, 2))).long()
    x[y == 1, 0] += 0.5
    model = small_cnn(2, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    hist = train_classifier(model, x, y, opt, epochs=15, batch_size=16)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]


@pytest.mark.parametrize("shots", [0, -1, 6])
def test_bad_shots(shots):
    targets = np.repeat(np.arange(3), [5, 8, 9])
    with pytest.raises(ValueError, match="shots"):
        few_shot_indices(targets, shots)


def test_bad_layer_names(net, images):
    with pytest.raises(ValueError, match="layers must be one of"):
        backbone_stages(net, images, ["blocks.16"])
    with pytest.raises(ValueError, match="layers must be one of"):
        FeatureCache(net, ["conv5"])
    with pytest.raises(ValueError, match="start must be one of"):
        TopBlocks(net, "block13", 10)
    with pytest.raises(ValueError, match="trainable must name"):
        freeze(nn.Linear(2, 2), ["fc"])
    with pytest.raises(ValueError, match="names no trainable"):
        discriminative_groups(nn.Linear(2, 2), [["fc"]], 0.1)
    with pytest.raises(ValueError, match="cover every"):
        model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        discriminative_groups(model, [["1"]], 0.1)


@pytest.mark.parametrize("lr", [0, -0.1, float("nan")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="lr must be"):
        discriminative_groups(nn.Linear(2, 2), [["weight", "bias"]], lr)
    with pytest.raises(ValueError, match="lr must be"):
        linear_probe(
            torch.randn(4, 2),
            torch.tensor([0, 1, 0, 1]),
            torch.randn(2, 2),
            torch.tensor([0, 1]),
            ProbeConfig(lr=lr),
        )


def test_bad_factor():
    with pytest.raises(ValueError, match="factor must be"):
        discriminative_groups(nn.Linear(2, 2), [["weight", "bias"]], 0.1, 0.5)


def test_stage_names():
    assert STAGES[0] == "stem" and STAGES[-1] == "head" and len(STAGES) == 18

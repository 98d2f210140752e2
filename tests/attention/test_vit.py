"""Tests of dlbook.attention.vit: equal to torchvision's ViT; rollout."""

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer as TVViT

from dlbook.attention.vit import (
    TrainSettings,
    VisionTransformer,
    ViTConfig,
    attention_rollout,
    learning_curve,
    load_torchvision_weights,
    one_against_rest,
    rollout_matrix,
    torchvision_names,
    train_classifier,
)
from dlbook.train import evaluate, fit
from dlbook.transfer.augmentation import RandomFlip

# a tiny configuration of both: image 32, patch 8, 2 layers, 2 heads, width 32
TINY = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2)
TINY.update(hidden_dim=32, mlp_dim=64, num_classes=5)


def _pair(dtype=torch.float64):
    """torchvision's tiny ViT with every tensor random, and ours copied."""
    torch.manual_seed(0)
    theirs = TVViT(**TINY)
    with torch.no_grad():
        # torchvision starts the head and class token at zero: randomize
        # every tensor so that a mis-copied one cannot hide
        for p in theirs.parameters():
            p.normal_(0, 0.3)
    ours = VisionTransformer(ViTConfig(in_channels=3, **TINY))
    load_torchvision_weights(ours, theirs)
    return ours.to(dtype).eval(), theirs.to(dtype).eval()


def test_every_tensor_of_both_models_is_mapped_exactly_once():
    ours, theirs = _pair()
    names = torchvision_names(TINY["num_layers"])
    assert set(names) == {n for n, _ in ours.named_parameters()}
    assert sorted(names.values()) == sorted(
        n for n, _ in theirs.named_parameters()
    )
    assert len(set(names.values())) == len(names)
    # no buffers either side that the map could have missed
    assert not list(ours.buffers()) and not list(theirs.buffers())


def test_outputs_and_gradients_equal_torchvision():
    ours, theirs = _pair(torch.float64)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = ours(xa), theirs(xb)
    assert out_a.abs().max() > 0.1  # the comparison is not between zeros
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-12)
    w = torch.randn_like(out_a)  # a random linear loss: all outputs count
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=1e-12)
    mine = dict(ours.named_parameters())
    other = dict(theirs.named_parameters())
    for a, b in torchvision_names(TINY["num_layers"]).items():
        assert mine[a].grad.abs().max() > 0, a
        torch.testing.assert_close(
            mine[a].grad, other[b].grad, rtol=0, atol=1e-12, msg=a
        )


def test_outputs_equal_torchvision_in_float32():
    ours, theirs = _pair(torch.float32)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_a_miscopied_weight_breaks_the_equality():
    ours, theirs = _pair()
    with torch.no_grad():
        ours.blocks[1].fc1.bias[0] += 1e-3
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert (ours(x) - theirs(x)).abs().max() > 1e-9


def test_load_refuses_a_different_configuration():
    theirs = TVViT(**{**TINY, "num_layers": 3})
    with pytest.raises(ValueError, match="names differ"):
        load_torchvision_weights(
            VisionTransformer(ViTConfig(in_channels=3, **TINY)), theirs
        )
    theirs = TVViT(**{**TINY, "mlp_dim": 48})
    with pytest.raises(ValueError, match="cannot take"):
        load_torchvision_weights(
            VisionTransformer(ViTConfig(in_channels=3, **TINY)), theirs
        )
    with pytest.raises(TypeError, match="tv_model must be"):
        load_torchvision_weights(
            VisionTransformer(ViTConfig(in_channels=3, **TINY)),
            nn.Linear(1, 1),
        )


@pytest.mark.parametrize(
    "size, patch, channels", [(28, 7, 1), (28, 4, 1), (12, 4, 3), (16, 16, 2)]
)
def test_shapes_for_any_size_divisible_by_the_patch(size, patch, channels):
    torch.manual_seed(0)
    cfg = ViTConfig(size, patch, channels, num_classes=3)
    model = VisionTransformer(cfg)
    x = torch.randn(2, channels, size, size)
    logits, maps = model(x, return_attention=True)
    g = size // patch  # patches per side
    n = g**2 + 1
    assert logits.shape == (2, 3)
    assert [m.shape for m in maps] == [(2, cfg.num_heads, n, n)] * 2
    assert attention_rollout(model, x).shape == (2, g, g)


def test_return_attention_does_not_change_the_output():
    ours, _ = _pair()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    logits, maps = ours(x, return_attention=True)
    torch.testing.assert_close(logits, ours(x), rtol=0, atol=0)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones_like(m[..., 0]))


def test_rollout_matrix_by_hand():
    # two tokens, two heads in layer 1 (mean: all 1/2), one head in layer 2
    head1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    head2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    layer1 = torch.stack([head1, head2])[None]  # (1, 2, 2, 2)
    layer2 = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # (1, 1, 2, 2)
    # Â1 = ([[.5, .5], [.5, .5]] + I) / 2, Â2 = ([[0, 1], [0, 1]] + I) / 2
    a1 = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    a2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    got = rollout_matrix([layer1, layer2])
    torch.testing.assert_close(got[0], a2 @ a1)
    torch.testing.assert_close(
        got[0], torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    )


def test_rollout_rows_sum_to_one():
    ours, _ = _pair()
    _, maps = ours(torch.randn(2, 3, 32, 32, dtype=torch.float64), True)
    r = rollout_matrix(maps)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 17, dtype=r.dtype))
    assert (r >= 0).all()


def test_rollout_of_a_model_with_uniform_attention():
    # zero queries and keys: each layer attends uniformly, Ā = 1/T, so
    # Â = (1/T + I) / 2, and the class token's row over the patches is
    # 1/(2T) after one layer
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(28, 7, 1, num_layers=1))
    with torch.no_grad():
        model.blocks[0].attn.in_proj.weight[:128].zero_()  # W^Q, W^K
        model.blocks[0].attn.in_proj.bias[:128].zero_()
    got = attention_rollout(model, torch.randn(3, 1, 28, 28))
    torch.testing.assert_close(got, torch.full((3, 4, 4), 1 / (2 * 17)))


def test_rollout_follows_a_model_that_attends_to_one_patch():
    # a huge key bias along the query direction of patch 5 only (through its
    # position embedding) makes every token attend to patch 5 in each layer
    torch.manual_seed(0)
    model = VisionTransformer(
        ViTConfig(28, 7, 1, num_layers=2, num_heads=1, hidden_dim=8, mlp_dim=8)
    )
    with torch.no_grad():
        for block in model.blocks:
            attn = block.attn
            attn.in_proj.weight.zero_()
            attn.in_proj.bias.zero_()
            attn.in_proj.bias[0] = 1.0  # every query is e_0 (after LN)
            attn.in_proj.weight[8, 0] = 1e3  # key_0 = 1e3 · LN(z)_0
            block.fc2.weight.zero_()  # values are 0 and the MLP adds 0:
            block.fc2.bias.zero_()  # the stream, so layer 2, is layer 1
        model.pos_embedding.zero_()
        model.pos_embedding[0, 1 + 5, 0] = 1e3  # patch 5 stands out on dim 0
    got = attention_rollout(model, torch.zeros(1, 1, 28, 28))[0].flatten()
    # each layer: Â = (e_5-attention + I) / 2; two layers: class row puts
    # 1/2 + 1/4 on patch 5, 1/4 on itself
    assert got.argmax() == 5
    torch.testing.assert_close(got[5], torch.tensor(0.75), atol=1e-4, rtol=0)


def test_errors_name_the_argument():
    with pytest.raises(
        ValueError, match="hidden_dim must be divisible by num_heads=3"
    ):
        VisionTransformer(ViTConfig(num_heads=3, hidden_dim=64))
    with pytest.raises(
        ValueError, match="image_size must be divisible by patch_size=8"
    ):
        VisionTransformer(ViTConfig(image_size=28, patch_size=8))
    with pytest.raises(ValueError, match="patch_size"):
        VisionTransformer(ViTConfig(patch_size=0))
    model = VisionTransformer(ViTConfig(28, 7, 1))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 1, 28, 28"):
        model(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 1, 28, 28"):
        model(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        model(torch.zeros(1, 28, 28))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="maps must be a non-empty list"):
        rollout_matrix([])


def _blob_images(n, seed):
    """1×8×8 noise with one bright 2×2 patch; label: is it in the left half."""
    g = torch.Generator().manual_seed(seed)
    x = 0.02 * torch.randn(n, 1, 8, 8, generator=g)
    where = torch.randint(0, 16, (n,), generator=g)  # a patch of the 4×4 grid
    row, col = where // 4, where % 4
    for i in range(n):
        x[i, 0, 2 * row[i] : 2 * row[i] + 2, 2 * col[i] : 2 * col[i] + 2] += 1
    return x, (col < 2).long()


def test_a_tiny_vit_learns_where_a_blob_is():
    # the label depends on the blob's position only: the patch tokens are
    # the same wherever it is, so the model must use its position embeddings
    torch.manual_seed(0)
    model = VisionTransformer(
        ViTConfig(8, 2, 1, 1, num_heads=2, hidden_dim=32, mlp_dim=64)
    )
    train = torch.utils.data.TensorDataset(*_blob_images(512, 0))
    val = torch.utils.data.TensorDataset(*_blob_images(256, 1))
    history = fit(
        model,
        torch.utils.data.DataLoader(train, batch_size=32, shuffle=True),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        epochs=25,
        val_loader=torch.utils.data.DataLoader(val, batch_size=256),
        progress=False,
    )
    acc = history["val_acc"]
    # without positions the class token sees a set of patches: chance (0.5)
    assert acc[0] < 0.8 and sum(acc[-3:]) / 3 > 0.95, acc


# --- the chapter's experiment helpers ----------------------------------------


def test_one_against_rest_is_balanced_and_spreads_the_negatives():
    y = torch.arange(10).repeat(30)  # 30 of each class
    index, label = one_against_rest(y, 6, 40, seed=0)
    assert len(index) == 40 and (index.diff() > 0).all()  # sorted, unique
    assert label.sum() == 20 and (y[index][label == 1] == 6).all()
    counts = torch.bincount(y[index][label == 0], minlength=10)
    # 20 negatives over 9 classes: 3 for the first two, 2 for the others
    assert (
        counts[6] == 0
        and sorted(counts[counts > 0].tolist()) == [2] * 7 + [3] * 2
    )
    again, _ = one_against_rest(y, 6, 40, seed=0)
    other, _ = one_against_rest(y, 6, 40, seed=1)
    assert torch.equal(index, again) and not torch.equal(index, other)


def test_one_against_rest_refuses_bad_input():
    y = torch.arange(10).repeat(3)
    with pytest.raises(ValueError, match="n must be even"):
        one_against_rest(y, 0, 7, 0)
    with pytest.raises(ValueError, match="positive=10 is not a class of y"):
        one_against_rest(y, 10, 8, 0)
    with pytest.raises(ValueError, match="needs 5 examples of class 2"):
        one_against_rest(y, 2, 10, 0)
    with pytest.raises(TypeError, match="y must have an integer dtype"):
        one_against_rest(y.float(), 2, 4, 0)


def _stripes(n, seed):
    """8×8 images with a bright row (label 0) or a bright column (1)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, 8, (n,), generator=g)
    for i in range(n):
        if y[i]:
            x[i, 0, :, where[i]] += 1
        else:
            x[i, 0, where[i], :] += 1
    return x, y


def test_train_classifier_learns_and_repeats_itself():
    x, y = _stripes(256, 0)
    xt, yt = _stripes(256, 1)
    settings = TrainSettings(steps=60, batch_size=32, lr=3e-3)
    cfg = ViTConfig(8, 2, 1, 1, num_heads=2, hidden_dim=16, mlp_dim=32)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = VisionTransformer(cfg)
        augment = [RandomFlip(0.5), RandomFlip(0.5, "vertical")]
        history = train_classifier(model, x, y, settings, augment, seed=3)
        assert len(history) == 8  # 8 batches an epoch: 60 steps ≈ 8 epochs
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    acc = evaluate(model, [(xt, yt)])["acc"]
    assert acc > 0.9, acc  # chance is 0.5; flips keep rows rows
    with pytest.raises(TypeError, match="augment must be an Augmentation"):
        train_classifier(model, x, y, settings, augment="flip")
    with pytest.raises(ValueError, match="steps must be an integer"):
        train_classifier(model, x, y, TrainSettings(steps=0))


def test_learning_curve_gives_one_row_per_model_size_and_seed():
    x, y = _stripes(200, 0)
    labels = torch.arange(200) % 4  # four "classes"; class 1 vs the rest
    rows = learning_curve(
        {"a": lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2))},
        (x, labels, x, labels),
        positive=1,
        sizes=(20, 40),
        seeds=(0, 1),
        settings=TrainSettings(steps=5),
        test_size=60,
        device="cpu",
    )
    assert [(r["n"], r["seed"]) for r in rows] == [
        (20, 0),
        (20, 1),
        (40, 0),
        (40, 1),
    ]
    assert all(0 <= r["acc"] <= 1 and r["model"] == "a" for r in rows)
    assert all(r["train_loss"] > 0 for r in rows)
    with pytest.raises(ValueError, match="builders must be a non-empty"):
        learning_curve({}, (x, labels, x, labels), 1, (20,), (0,), None)

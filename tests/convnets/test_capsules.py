"""CapsNet: squash, routing against the loop version, the loss, the affine
test digits, bad input, and a short run that must learn."""

import pytest
import torch
import torch.nn.functional as F

from dlbook.config import seed_everything
from dlbook.convnets.capsules import (
    AffineRanges,
    CapsNet,
    CapsNetConfig,
    CapsuleLoss,
    DigitCapsules,
    PrimaryCapsules,
    accuracy_under,
    affine,
    capsule_accuracy,
    dynamic_routing,
    dynamic_routing_loop,
    lenet_like,
    margin_loss,
    perturbed_reconstructions,
    predict,
    random_affine,
    squash,
)
from dlbook.convnets.cnn import count_parameters, shift
from dlbook.train import fit

TINY = CapsNetConfig(
    image_size=12,
    conv_channels=8,
    kernel_size=5,
    primary_types=4,
    primary_dim=4,
    num_classes=3,
    digit_dim=6,
    decoder=(32,),
)


def test_squash_length_and_direction():
    s = torch.randn(50, 7, dtype=torch.float64) * 3
    v = squash(s)
    n = s.norm(dim=-1)
    torch.testing.assert_close(v.norm(dim=-1), n**2 / (1 + n**2))
    cos = F.cosine_similarity(v, s, dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))
    z = torch.zeros(2, 3, requires_grad=True)
    squash(z).sum().backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_vectorized_routing_equals_the_loop(iterations):
    g = torch.Generator().manual_seed(iterations)
    u_hat = torch.randn(3, 7, 4, 5, generator=g, dtype=torch.float64)
    v, c = dynamic_routing(u_hat, iterations)
    v_loop, c_loop = dynamic_routing_loop(u_hat, iterations)
    assert v.shape == (3, 4, 5) and c.shape == (3, 7, 4)
    torch.testing.assert_close(v, v_loop, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(c, c_loop, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(c.sum(2), torch.ones(3, 7, dtype=c.dtype))


def test_one_iteration_couples_uniformly_and_more_route_to_agreement():
    torch.manual_seed(0)
    n, i, j, d = 4, 20, 3, 8
    u_hat = 0.3 * torch.randn(n, i, j, d)
    u_hat[:, :, 0] = 0.5 + 0.05 * torch.randn(n, i, d)  # all agree on 0
    _, c1 = dynamic_routing(u_hat, 1)
    torch.testing.assert_close(c1, torch.full_like(c1, 1 / j))
    _, c3 = dynamic_routing(u_hat, 3)
    assert (c3[:, :, 0] > 0.6).all()  # from 1/3 towards the agreeing parent


def test_primary_capsules_group_channels_per_position():
    torch.manual_seed(0)
    layer = PrimaryCapsules(2, types=3, dim=4, kernel_size=3, stride=2)
    x = torch.randn(2, 2, 9, 9)
    u = layer(x)
    assert u.shape == (2, 3 * 4 * 4, 4)
    raw = layer.conv(x)  # (2, 12, 4, 4)
    t, row, col = 2, 1, 3  # capsule type, position
    expected = squash(raw[:, t * 4 : (t + 1) * 4, row, col])
    torch.testing.assert_close(u[:, t * 16 + row * 4 + col], expected)


def test_digit_capsules_predict_with_one_matrix_per_pair():
    torch.manual_seed(0)
    layer = DigitCapsules(5, 3, 2, 4, iterations=2).double()
    u = torch.randn(2, 5, 3, dtype=torch.float64)
    u_hat = torch.stack(
        [
            torch.stack(
                [
                    torch.stack([layer.W[i, j] @ u[n, i] for j in range(2)])
                    for i in range(5)
                ]
            )
            for n in range(2)
        ]
    )
    v, _ = layer(u)
    torch.testing.assert_close(v, dynamic_routing_loop(u_hat, 2)[0])


def test_the_papers_capsnet_has_its_parameter_count():
    model = CapsNet()
    assert model.num_primary == 1152  # 32 types on a 6 x 6 grid
    total = count_parameters(model)
    assert total == 8_215_568  # the paper: 8.2M
    assert total - count_parameters(model.decoder) == 6_804_224  # 6.8M
    out = model(torch.rand(2, 1, 28, 28))
    assert out.lengths.shape == (2, 10) and out.poses.shape == (2, 10, 16)
    assert ((out.lengths >= 0) & (out.lengths < 1)).all()


def test_margin_loss_per_class_definition():
    torch.manual_seed(0)
    lengths = torch.rand(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    total = 0.0
    for n in range(6):
        for k in range(4):
            if k == labels[n]:
                total += max(0.0, 0.9 - lengths[n, k]) ** 2
            else:
                total += 0.5 * max(0.0, lengths[n, k] - 0.1) ** 2
    torch.testing.assert_close(
        margin_loss(lengths, labels), (total / 6).double()
    )
    perfect = F.one_hot(labels, 4).double() * 0.95
    assert margin_loss(perfect, labels) == 0


def test_reconstruction_uses_only_the_masked_capsule():
    torch.manual_seed(0)
    model = CapsNet(TINY)
    poses = torch.randn(2, 3, 6)
    labels = torch.tensor([1, 2])
    other = poses.clone()
    other[0, 0], other[0, 2], other[1, 0] = 5.0, -5.0, 3.0
    a = model.reconstruct(poses, labels)
    assert a.shape == (2, 1, 12, 12)
    torch.testing.assert_close(a, model.reconstruct(other, labels))
    assert not torch.allclose(a, model.reconstruct(poses, labels.flip(0)))


def test_capsule_loss_adds_the_weighted_reconstruction():
    torch.manual_seed(0)
    model = CapsNet(TINY)
    x, y = torch.rand(4, 1, 12, 12), torch.tensor([0, 1, 2, 1])
    out = model(x)
    loss = CapsuleLoss(model, weight=0.01)
    recon = model.reconstruct(out.poses, y)
    expected = margin_loss(out.lengths, y) + 0.01 * (recon - x).pow(2).sum(
        (1, 2, 3)
    ).mean(0)
    torch.testing.assert_close(loss(out, y), expected)
    torch.testing.assert_close(
        CapsuleLoss(model, 0.0)(out, y), margin_loss(out.lengths, y)
    )


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="iterations must be an integer"):
        CapsNet(CapsNetConfig(iterations=0))
    with pytest.raises(
        ValueError, match="primary_dim must be an integer >= 1, got 0"
    ):
        CapsNet(CapsNetConfig(primary_dim=0))
    with pytest.raises(ValueError, match="digit_dim must be an integer >= 1"):
        CapsNet(CapsNetConfig(digit_dim=-1))
    with pytest.raises(ValueError, match="too small"):
        CapsNet(CapsNetConfig(image_size=16))
    with pytest.raises(ValueError, match="iterations must be"):
        dynamic_routing(torch.randn(1, 2, 2, 2), 0)
    model = CapsNet(TINY)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 1, 12"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        model(torch.zeros(2, 1, 12, 12, dtype=torch.uint8))
    out = model(torch.rand(2, 1, 12, 12))
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match=r"labels must hold labels in"):
            CapsuleLoss(model)(out, torch.tensor(bad))
    with pytest.raises(ValueError, match="labels has 1 rows"):
        margin_loss(out.lengths, torch.tensor([0]))
    with pytest.raises(ValueError, match="weight must be"):
        CapsuleLoss(model, weight=-1.0)
    with pytest.raises(TypeError, match="model must be a CapsNet"):
        CapsuleLoss(torch.nn.Linear(2, 2))


def test_affine_identity_shift_and_rotation():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 10, 10)
    zero = torch.zeros(3)
    torch.testing.assert_close(affine(x, zero), x)
    moved = affine(x, zero, shift=torch.tensor([[2.0, -1.0]] * 3))
    torch.testing.assert_close(moved, shift(x, -1, 2))  # dy = -1, dx = 2
    turned = affine(x, torch.full((3,), 90.0))
    torch.testing.assert_close(turned, torch.rot90(x, 1, (2, 3)))
    big = affine(x, zero, scale=torch.full((3, 2), 2.0))
    # scaling by 2 about the centre: the centre 2 x 2 covers the middle 4 x 4
    torch.testing.assert_close(
        big[..., 3:7, 3:7].mean(), x[..., 4:6, 4:6].mean(), atol=0.05, rtol=0
    )


def test_random_affine_is_seeded_and_within_its_ranges():
    x = torch.zeros(20, 1, 15, 15)
    x[:, :, 7, 7] = 1.0
    ranges = AffineRanges(shift=3.0)
    a = random_affine(x, ranges, torch.Generator().manual_seed(1))
    b = random_affine(x, ranges, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    rows = (a.sum(3).squeeze(1) * torch.arange(15.0)).sum(1)  # mean row
    assert ((rows - 7).abs() <= 3 + 1e-5).all() and rows.std() > 0.5
    with pytest.raises(ValueError, match="scale low must be"):
        random_affine(x, AffineRanges(scale=(0.0, 1.0)), torch.Generator())
    with pytest.raises(ValueError, match="y must have 1 dimensions"):
        accuracy_under({}, x, torch.zeros(20, 1, dtype=torch.long), [ranges])


def _bars(n, size=12, seed=0):
    """Images of one bar: horizontal (0), vertical (1) or diagonal (2)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.zeros(n, 1, size, size)
    pos = torch.randint(3, size - 3, (n,), generator=g)
    for k in range(n):
        p = int(pos[k])
        if y[k] == 0:
            x[k, 0, p, 2:-2] = 1
        elif y[k] == 1:
            x[k, 0, 2:-2, p] = 1
        else:
            x[k, 0].fill_diagonal_(1)
            x[k, 0] = torch.roll(x[k, 0], p - size // 2, 1)
    return x, y


def test_a_small_capsnet_learns_bar_orientations():
    seed_everything(0)
    x, y = _bars(300)
    xt, yt = _bars(200, seed=1)
    model = CapsNet(TINY)
    loss = CapsuleLoss(model, weight=0.0005)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 300, 50)]
    history = fit(
        model,
        batches,
        opt,
        epochs=15,
        loss_fn=loss,
        metrics={"acc": capsule_accuracy},
    )
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert (predict(model, xt) == yt).float().mean() > 0.9


def test_lenet_like_matches_the_budget():
    for budget, channels in [(227_136, (16, 32)), (6_804_224, (64, 128))]:
        model = lenet_like(budget, channels)
        assert abs(count_parameters(model) - budget) < 0.01 * budget
        assert model.cfg.channels == channels
    assert lenet_like(227_136)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_perturbed_reconstructions_move_one_dimension():
    torch.manual_seed(0)
    model = CapsNet(TINY)
    pose = torch.randn(6)
    images = perturbed_reconstructions(model, pose, 2, [0, 4], [-0.1, 0, 0.1])
    assert images.shape == (2, 3, 1, 12, 12)
    poses = torch.zeros(1, 3, 6)
    poses[0, 2] = pose
    poses[0, 2, 4] += 0.1
    expected = model.reconstruct(poses, torch.tensor([2]))[0]
    torch.testing.assert_close(images[1, 2], expected)
    torch.testing.assert_close(images[0, 1], images[1, 1])  # delta 0
    with pytest.raises(ValueError, match="dims entries must be"):
        perturbed_reconstructions(model, pose, 2, [6], [0.1])


def test_accuracy_under_shows_every_model_the_same_images():
    class Brightest(torch.nn.Module):
        """Class 1 when the image's centre is brighter than its border."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            centre = x[:, 0, 5:10, 5:10].mean((1, 2))
            score = centre - x[:, 0].mean((1, 2)) + 0 * self.w
            return torch.stack([-score, score], 1)

    x = torch.zeros(40, 1, 15, 15)
    x[:20, :, 6:9, 6:9] = 1.0  # a centred square: class 1
    x[20:, :, 0:3, 0:3] = 1.0  # a square in the corner: class 0
    y = torch.tensor([1] * 20 + [0] * 20)
    ranges = [AffineRanges(), AffineRanges(shift=6.0)]
    acc = accuracy_under({"a": Brightest(), "b": Brightest()}, x, y, ranges)
    assert acc["a"] == acc["b"]
    assert acc["a"][0] == 1.0 and acc["a"][1] < 1.0

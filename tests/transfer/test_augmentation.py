"""Our augmentations against torchvision.transforms.v2, with the same draws.

After the same torch.manual_seed, our batched transform and v2's transform
applied image by image draw the same random numbers, so their outputs must be
equal; MixUp and CutMix are compared with v2's after the same seed too (v2
pairs each image with the previous one: perm = roll by 1).
"""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlbook.transfer.augmentation import (
    AugmentedLoader,
    ColorJitter,
    CutMix,
    Cutout,
    MixUp,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation,
    TrainConfig,
    erase,
    hsv_to_rgb,
    predict_tta,
    rgb_to_hsv,
    rotate,
    train_augmented,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def images(b=6, c=3, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


def per_image(transform, x):
    return torch.stack([transform(image) for image in x])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (RandomFlip(0.5), v2.RandomHorizontalFlip(0.5)),
        (RandomFlip(0.3, "vertical"), v2.RandomVerticalFlip(0.3)),
        (RandomResizedCrop(16), v2.RandomResizedCrop(16)),
        (
            RandomResizedCrop(12, scale=(0.5, 1.0), ratio=(0.5, 2.0)),
            v2.RandomResizedCrop(12, scale=(0.5, 1.0), ratio=(0.5, 2.0)),
        ),
        (
            RandomRotation(40),
            v2.RandomRotation(
                40, interpolation=v2.InterpolationMode.BILINEAR, fill=None
            ),
        ),
        (
            ColorJitter(0.4, 0.4, 0.4, 0.1),
            v2.ColorJitter(0.4, 0.4, 0.4, 0.1),
        ),
    ],
    ids=["hflip", "vflip", "crop", "crop-ratio", "rotation", "jitter"],
)
def test_same_seed_same_output_as_v2(ours, theirs, seed):
    x = images()
    torch.manual_seed(seed)
    expected = per_image(theirs, x)
    torch.manual_seed(seed)
    got = ours(x)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


def test_jitter_on_grey_images_matches_v2():
    x = images(c=1)
    torch.manual_seed(3)
    expected = per_image(v2.ColorJitter(0.5, 0.5), x)
    torch.manual_seed(3)
    torch.testing.assert_close(ColorJitter(0.5, 0.5)(x), expected)


def test_crop_fallback_is_v2s_central_crop():
    # a scale no 10 tries can fit: a box larger than a thin image
    x = images(h=8, w=40)
    ours = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    theirs = v2.RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.manual_seed(0)
    expected = per_image(theirs, x)
    torch.manual_seed(0)
    params = ours.sample(x)
    assert params["boxes"][0].tolist() == [0, 16, 8, 8]
    torch.testing.assert_close(ours.apply(x, params), expected)


@pytest.mark.parametrize("angle", [0.0, 90.0, 180.0, -33.3, 271.0])
def test_rotate_equals_v2_rotate(angle):
    x = images(h=17, w=17)
    expected = TF.rotate(x, angle, interpolation=v2.InterpolationMode.BILINEAR)
    got = rotate(x, torch.full((len(x),), angle))
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


def test_hsv_round_trip_and_hue_of_pure_colours():
    x = images()
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x)
    red_green_blue = torch.eye(3)[:, :, None, None]  # (3, 3, 1, 1)
    hue = rgb_to_hsv(red_green_blue)[:, 0].flatten()
    torch.testing.assert_close(hue, torch.tensor([0.0, 1 / 3, 2 / 3]))


@pytest.mark.parametrize("seed", [0, 1])
def test_cutout_boxes_erase_as_v2_erase(seed):
    x = images()
    torch.manual_seed(seed)
    cut = Cutout(10, p=0.7)
    params = cut.sample(x)
    got = cut.apply(x, params)
    boxes = params["boxes"].tolist()
    for image, out, (i, j, h, w) in zip(x, got, boxes, strict=True):
        if h and w:
            expected = TF.erase(image, i, j, h, w, torch.tensor(0.0))
        else:
            expected = image
        torch.testing.assert_close(out, expected)
    erased = (got == 0).float().mean().item()
    assert 0 < erased < 10 * 10 / (20 * 24) + 1e-6


def test_cutout_square_may_leave_the_image():
    x = images(b=200)
    boxes = Cutout(10).sample(x)["boxes"]
    assert (boxes[:, 2] < 10).any() and (boxes[:, 2] == 10).any()
    assert ((boxes[:, 0] + boxes[:, 2]) <= 20).all()


def test_random_erasing_is_erase_with_its_drawn_box():
    # v2.RandomErasing draws a box, then calls erase: our erase, same box
    x = images(b=1)
    torch.manual_seed(0)
    t = v2.RandomErasing(p=1.0, value=0.0)
    params = t.make_params([x[0]])
    i, j, h, w = (params[k] for k in ("i", "j", "h", "w"))
    expected = TF.erase(x[0], i, j, h, w, params["v"])
    got = erase(x, torch.tensor([[i, j, h, w]]))
    torch.testing.assert_close(got[0], expected)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_equals_v2_with_the_same_lambda_and_pairing(alpha):
    x, y = images(), torch.tensor([0, 3, 1, 9, 3, 2])
    torch.manual_seed(1)
    ex, ey = v2.MixUp(alpha=alpha, num_classes=10)(x, y)
    torch.manual_seed(1)
    mix = MixUp(alpha, 10)
    roll = torch.arange(6).roll(1)  # v2 pairs image n with image n - 1
    got_x, got_y = mix(x, y, perm=roll)
    torch.testing.assert_close(got_x, ex)
    torch.testing.assert_close(got_y, ey)
    assert torch.allclose(got_y.sum(1), torch.ones(6))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cutmix_equals_v2_with_the_same_draws(seed):
    x, y = images(), torch.tensor([0, 3, 1, 9, 3, 2])
    torch.manual_seed(seed)
    ex, ey = v2.CutMix(alpha=1.0, num_classes=10)(x, y)
    torch.manual_seed(seed)
    got_x, got_y = CutMix(1.0, 10)(x, y, perm=torch.arange(6).roll(1))
    torch.testing.assert_close(got_x, ex)
    torch.testing.assert_close(got_y, ey)


def test_cutmix_label_weight_is_the_pasted_area():
    x, y = images(b=2), torch.tensor([0, 1])
    mixed, soft = CutMix(1.0, 2)(
        x, y, lam=0.5, perm=torch.tensor([1, 0]), box=(0, 0, 12, 10)
    )
    pasted = (mixed[0] == x[1]).all(0).float().mean().item()
    assert soft[0, 1].item() == pytest.approx(pasted)
    assert soft[0, 1].item() == pytest.approx(120 / 480)


def test_augmentations_keep_shapes_and_range():
    x = images(b=4, c=1, h=28, w=28)
    for aug in [
        RandomFlip(),
        RandomResizedCrop(28, (0.5, 1)),
        RandomRotation(15),
        ColorJitter(0.4, 0.4),
        Cutout(8),
    ]:
        out = aug(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_generator_makes_draws_repeatable():
    x = images()
    for aug in [
        RandomFlip(),
        RandomResizedCrop(8),
        RandomRotation(30),
        ColorJitter(0.3, 0.3, 0.3, 0.2),
        Cutout(5),
    ]:
        a = aug(x, torch.Generator().manual_seed(5))
        b = aug(x, torch.Generator().manual_seed(5))
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RandomFlip(1.5), "p must be"),
        (lambda: RandomFlip(-0.1), "p must be"),
        (lambda: Cutout(8, p=float("nan")), "p must be"),
        (lambda: RandomFlip(axis="diagonal"), "axis must be"),
        (lambda: RandomResizedCrop(8, scale=(1.0, 0.5)), "scale must be"),
        (lambda: RandomResizedCrop(8, scale=(0.2, 1.5)), r"scale\[1\]"),
        (lambda: RandomResizedCrop(8, ratio=(2.0, 0.5)), "ratio must be"),
        (lambda: RandomResizedCrop(0), "size must be"),
        (lambda: RandomRotation((30, -30)), "degrees must be"),
        (lambda: ColorJitter(hue=0.7), "hue must be"),
        (lambda: ColorJitter(brightness=-1), "brightness must be"),
        (lambda: MixUp(alpha=0), "alpha must be"),
        (lambda: Cutout(0), "size must be"),
    ],
)
def test_bad_settings_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(3, 8, 8), ValueError, "x must have 4 dimensions"),
        (torch.randint(0, 255, (2, 3, 8, 8)), TypeError, "floating dtype"),
        (torch.rand(2, 5, 8, 8), ValueError, "1 or 3 channels"),
        ([[0.5]], TypeError, "x must be a torch.Tensor"),
    ],
)
def test_non_images_are_refused(x, error, match):
    for aug in [RandomFlip(), RandomRotation(10), Cutout(2)]:
        with pytest.raises(error, match=match):
            aug(x)


def test_mix_refuses_bad_labels_and_pairings():
    x = images(b=3)
    with pytest.raises(ValueError, match="y"):
        MixUp(1.0, 10)(x, torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="y must hold one label"):
        MixUp(1.0, 10)(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="perm must be a permutation"):
        CutMix(1.0, 10)(
            x, torch.tensor([0, 1, 2]), perm=torch.tensor([0, 0, 1])
        )
    with pytest.raises(ValueError, match="lam must be"):
        MixUp(1.0, 10)(x, torch.tensor([0, 1, 2]), lam=1.5)
    with pytest.raises(TypeError, match="augment must be"):
        AugmentedLoader([], augment=lambda x: x)


def test_training_refuses_bad_settings():
    from dlbook.convnets.cnn import LeNet, LeNetConfig

    x, y = _two_class_stripes(10, 0)
    model = LeNet(LeNetConfig(image_size=12, num_classes=2))
    with pytest.raises(ValueError, match="lr must be"):
        train_augmented(model, x, y, cfg=TrainConfig(lr=0.0))
    with pytest.raises(ValueError, match="batch_size must be"):
        train_augmented(model, x, y, cfg=TrainConfig(batch_size=0))
    with pytest.raises(ValueError, match="epochs must be"):
        train_augmented(model, x, y, cfg=TrainConfig(epochs=0))
    with pytest.raises(ValueError, match="y must have shape"):
        train_augmented(model, x, y[:5])


def _two_class_stripes(n, seed):
    """Vertical stripes (class 0) or horizontal ones (class 1), with noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    stripes = (torch.arange(12) % 4 < 2).float()
    vertical = stripes[None, :].expand(12, 12)
    images = torch.where(y[:, None, None] == 0, vertical, vertical.T)
    noise = 0.2 * torch.rand(n, 12, 12, generator=g)
    return (0.8 * images + noise)[:, None], y


@pytest.mark.parametrize(
    "augment", [None, RandomFlip(), Cutout(4), MixUp(1.0, 2), CutMix(1.0, 2)]
)
def test_training_with_augmentation_learns(augment):
    from dlbook.convnets.cnn import LeNet, LeNetConfig

    x, y = _two_class_stripes(100, 0)
    xt, yt = _two_class_stripes(200, 1)
    model = LeNet(LeNetConfig(image_size=12, num_classes=2, hidden=(16, 16)))
    cfg = TrainConfig(epochs=6, lr=5e-3, batch_size=20)
    train_augmented(model, x, y, augment, cfg)
    acc = (predict_tta(model, xt).argmax(1) == yt).float().mean()
    assert acc > 0.9, acc


def test_tta_averages_the_views():
    from dlbook.convnets.cnn import LeNet, LeNetConfig

    model = LeNet(LeNetConfig(image_size=12)).eval()
    x = images(b=5, c=1, h=12, w=12)
    flip = lambda b: b.flip(-1)  # noqa: E731
    both = predict_tta(model, x, [None, flip])
    one = predict_tta(model, x)
    mirrored = predict_tta(model, x, [flip])
    torch.testing.assert_close(both, (one + mirrored) / 2)
    with pytest.raises(ValueError, match="views"):
        predict_tta(model, x, [])

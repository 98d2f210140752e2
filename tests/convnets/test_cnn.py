"""LeNet, the equal-budget MLP, shifts, receptive fields and CoordConv."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.config import seed_everything
from dlbook.convnets.cnn import (
    AddCoords,
    LeNet,
    LeNetConfig,
    PositionNet,
    PositionNetConfig,
    count_parameters,
    gradient_receptive_field,
    mlp_like,
    one_hot_positions,
    pixel_error,
    quadrant_split,
    receptive_field,
    shift,
    shift_randomly,
    shifted_accuracy,
)
from dlbook.train import evaluate, fit


@pytest.mark.parametrize("pooling", ["max", "avg", "stride"])
def test_lenet_shapes_and_parameters(pooling):
    model = LeNet(LeNetConfig(pooling=pooling, dropout=0.25))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert model.feature_shape == (16, 5, 5)
    assert count_parameters(model) == 61_706  # LeNet-5's F5-F6-output on 5x5


def test_lenet_rejects_bad_configs_and_input():
    with pytest.raises(ValueError, match="pooling must be one of"):
        LeNet(LeNetConfig(pooling="median"))
    with pytest.raises(ValueError, match="dropout must be"):
        LeNet(LeNetConfig(dropout=1.0))
    with pytest.raises(
        ValueError, match=r"x must have shape \(\*, 1, \*, \*\)"
    ):
        LeNet()(torch.zeros(2, 3, 28, 28))


def test_mlp_like_has_the_same_budget():
    lenet = LeNet()
    mlp = mlp_like(lenet)
    assert abs(count_parameters(mlp) - count_parameters(lenet)) < 800
    assert mlp(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_shift_moves_and_zero_fills():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = shift(x, 1, -2)
    assert y[0, 0, 1, 0] == x[0, 0, 0, 2] and y[0, 0, 0].abs().sum() == 0
    assert y[0, 0, :, 2:].abs().sum() == 0
    torch.testing.assert_close(shift(x, 0, 0), x)
    with pytest.raises(ValueError, match="dy must be an integer in"):
        shift(x, 4, 0)


def test_shift_randomly_moves_each_image_by_k():
    x = torch.zeros(50, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    y = shift_randomly(x, 3, g)
    pos = y.flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert ((rows - 4).abs() + (cols - 4).abs() == 3).all()
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == 4


def test_shifted_accuracy_at_zero_is_the_accuracy():
    torch.manual_seed(0)
    model = LeNet().eval()
    x, y = torch.rand(40, 1, 28, 28), torch.randint(0, 10, (40,))
    acc = shifted_accuracy(model, x, y, [0, 2])
    plain = evaluate(model, [(x, y)])["acc"]
    assert acc[0] == pytest.approx(plain)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        shifted_accuracy(model, x[0], y, [0])


def test_receptive_field_of_lenet_by_hand():
    rf = receptive_field(LeNet())
    assert [(r.layer, r.size, r.jump) for r in rf] == [
        ("conv1", 5, 1),
        ("pool1", 6, 2),
        ("conv2", 14, 2),
        ("pool2", 16, 4),
    ]


@pytest.mark.parametrize(
    "layers",
    [
        [
            nn.Conv2d(1, 2, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2, 3, 5),
        ],
        [
            nn.Conv2d(1, 2, 3, dilation=2),
            nn.Conv2d(2, 2, 3, stride=2),
            nn.AvgPool2d(2),
            nn.Conv2d(2, 2, 3, padding=1),
        ],
        [
            nn.Conv2d(1, 2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2, 2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2, 2, 3, padding=1),
        ],
    ],
)
def test_receptive_field_equals_the_gradient_support(layers):
    torch.manual_seed(0)
    net = nn.Sequential(*layers)
    rf = receptive_field(net)[-1]
    out = net(torch.zeros(1, 1, 40, 40))
    row, col = out.shape[-2] // 2, out.shape[-1] // 2
    mask = gradient_receptive_field(net, (1, 40, 40), (0, row, col))
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert rows.max() - rows.min() + 1 == rf.size
    assert cols.max() - cols.min() + 1 == rf.size
    centre = rf.start + rf.jump * row  # the formula's centre of this unit
    assert (rows.max() + rows.min()) / 2 == pytest.approx(centre)


def test_receptive_field_needs_a_spatial_layer():
    with pytest.raises(ValueError, match="no Conv2d"):
        receptive_field(nn.Linear(3, 3))


def test_add_coords_appends_rows_and_columns():
    out = AddCoords()(torch.zeros(2, 1, 3, 5))
    assert out.shape == (2, 3, 3, 5)
    torch.testing.assert_close(out[0, 1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out[1, 2, 0], torch.linspace(-1, 1, 5))


def test_one_hot_positions_and_quadrant():
    x, t = one_hot_positions(12)
    assert x.shape == (144, 1, 12, 12) and (x.sum((1, 2, 3)) == 1).all()
    pos = x.flatten(1).argmax(1)
    torch.testing.assert_close(
        (t + 1) / 2 * 11, torch.stack([pos // 12, pos % 12], 1).float()
    )
    assert quadrant_split(t).sum() == 36
    assert pixel_error(t, t, 12).abs().max() == 0


@pytest.mark.parametrize("head", ["pool", "dense"])
def test_position_net_shapes(head):
    for coords in (False, True):
        net = PositionNet(PositionNetConfig(coords=coords, head=head))
        assert net(torch.zeros(4, 1, 12, 12)).shape == (4, 2)
    with pytest.raises(ValueError, match="head must be one of"):
        PositionNet(PositionNetConfig(head="flatten"))


def test_coordconv_learns_the_positions():
    x, t = one_hot_positions(8)
    seed_everything(0)
    net = PositionNet(PositionNetConfig(coords=True, image_size=8))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    fit(net, [(x, t)], opt, epochs=100, loss_fn=F.mse_loss, metrics={})
    with torch.no_grad():
        assert pixel_error(net(x), t, 8).mean() < 0.7


def test_lenet_learns_mnist(data_home):
    from dlbook.data import load_mnist

    d = load_mnist(n_train=600, n_test=500)
    seed_everything(0)
    model = LeNet()
    loader = DataLoader(
        TensorDataset(d.x_train, d.y_train),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    fit(model, loader, opt, epochs=2)
    acc = evaluate(model, [(d.x_test, d.y_test)])["acc"]
    assert acc > 0.7  # chance is 0.1

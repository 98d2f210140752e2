"""1x1 convs, Inception, ResNets, separable convs: torchvision and Keras."""

import os

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.googlenet import Inception as TorchvisionInception

from dlbook.config import seed_everything
from dlbook.convnets.architectures import (
    AugmentedLoader,
    BasicBlock,
    CifarResNet,
    CifarResNetConfig,
    DepthwiseSeparableConv,
    Inception,
    ReductionNet,
    ReductionNetConfig,
    ResNet,
    conv_macs,
    inception_branch_sizes,
    pointwise_as_linear,
    resnet18,
    resnet50,
    separable_params,
)
from dlbook.convnets.convolution import quiet_native_stderr
from dlbook.train import fit


def _randomize_batch_norms(model):
    """Non-trivial running statistics and affine parameters (eval mode)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def test_pointwise_convolution_is_a_linear_layer_per_pixel():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 1)
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(pointwise_as_linear(x, conv), conv(x))
    linear = nn.Linear(6, 4)
    linear.weight.data = conv.weight.data[:, :, 0, 0]
    linear.bias.data = conv.bias.data
    pixel = linear(x[1, :, 3, 2])
    torch.testing.assert_close(conv(x)[1, :, 3, 2], pixel)
    with pytest.raises(ValueError, match="must be a 1x1 convolution"):
        pointwise_as_linear(x, nn.Conv2d(6, 4, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 6"):
        pointwise_as_linear(x[:, :3], conv)


def test_reduction_net_saves_parameters_and_multiply_adds():
    plain = ReductionNet(ReductionNetConfig(width=64))
    reduced = ReductionNet(ReductionNetConfig(width=64, reduce=16))
    block = lambda m: sum(p.numel() for p in m.block.parameters())
    # 9 C² weights against 2 r C + 9 r², plus batch norm's 2 per channel
    assert block(plain) == 9 * 64**2 + 2 * 64
    assert block(reduced) == 2 * 16 * 64 + 9 * 16**2 + 2 * (16 + 16 + 64)
    assert plain(torch.zeros(2, 1, 14, 14)).shape == (2, 10)
    with pytest.raises(
        ValueError, match=r"x must have shape \(\*, 1, 14, 14\)"
    ):
        plain(torch.zeros(2, 1, 28, 28))


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: ReductionNet(), (1, 14, 14)),
        (lambda: ReductionNet(ReductionNetConfig(reduce=16)), (1, 14, 14)),
        (lambda: resnet18(num_classes=10), (3, 32, 32)),
        (lambda: CifarResNet(CifarResNetConfig(depth=14)), (3, 16, 16)),
    ],
)
def test_conv_macs_equals_pytorchs_flop_counter(make, shape):
    model = make()
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *shape))
    assert conv_macs(model, shape) * 2 == counter.get_total_flops()


@pytest.mark.parametrize("train", [False, True])
def test_inception_equals_torchvisions_with_copied_weights(train):
    torch.manual_seed(0)
    ref = TorchvisionInception(192, 64, 96, 128, 16, 32, 32)  # GoogLeNet 3a
    _randomize_batch_norms(ref)
    ours = Inception(192, 64, 96, 128, 16, 32, 32, branch3_kernel=3)
    ours.load_state_dict(ref.state_dict())
    ref.train(train)
    ours.train(train)
    x = torch.randn(2, 192, 12, 12)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_inception_with_the_papers_5x5_branch():
    block = Inception(32, 8, 8, 16, 4, 8, 8)
    assert block.branch3[1].conv.kernel_size == (5, 5)
    assert block(torch.zeros(1, 32, 9, 9)).shape == (1, 40, 9, 9)
    with pytest.raises(ValueError, match="branch3_kernel must be one of"):
        Inception(32, 8, 8, 16, 4, 8, 8, branch3_kernel=7)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 32"):
        block(torch.zeros(1, 16, 9, 9))


@pytest.mark.parametrize("size", [7, 8, 27, 28])
@pytest.mark.parametrize("stride", [1, 2])
def test_inception_branch_sizes_match_layers_with_a_stride(size, stride):
    x = torch.zeros(1, 1, size, size)
    got = {
        "1x1": nn.Conv2d(1, 1, 1, stride)(x),
        "3x3": nn.Conv2d(1, 1, 3, stride, 1)(x),
        "5x5": nn.Conv2d(1, 1, 5, stride, 2)(x),
        "pool": nn.MaxPool2d(3, stride, 1, ceil_mode=True)(x),
    }
    assert inception_branch_sizes(size, stride) == {
        k: v.shape[-1] for k, v in got.items()
    }


@pytest.mark.parametrize("train", [False, True])
def test_resnet18_loads_torchvisions_state_dict_with_identical_outputs(train):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18()  # random init: nothing downloaded
    _randomize_batch_norms(ref)
    ours = resnet18()
    ours.load_state_dict(ref.state_dict())  # strict: every name and shape
    assert sum(p.numel() for p in ours.parameters()) == 11_689_512
    ref.train(train)
    ours.train(train)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_resnet50_bottlenecks_load_torchvisions_state_dict():
    torch.manual_seed(0)
    ref = torchvision.models.resnet50().eval()
    ours = resnet50().eval()
    ours.load_state_dict(ref.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == 25_557_032
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_resnet_rejects_bad_input():
    with pytest.raises(ValueError, match="layers must give the blocks of 4"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3"):
        resnet18()(torch.zeros(1, 1, 32, 32))


def test_separable_conv_counts_and_equals_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr():
        import keras

        layer = keras.layers.SeparableConv2D(
            16, 3, padding="same", use_bias=False
        )
        layer.build((None, 9, 9, 8))
    counts = separable_params(8, 16, 3)
    assert layer.count_params() == counts["separable"] == 9 * 8 + 8 * 16
    assert counts["full"] == 9 * 8 * 16
    ours = DepthwiseSeparableConv(8, 16, 3)
    assert (
        sum(p.numel() for p in ours.depthwise.parameters())
        + sum(p.numel() for p in ours.pointwise.parameters())
        == counts["separable"]
    )
    # the same weights: Keras stores (k, k, C_in, 1) and (1, 1, C_in, C_out)
    depthwise, pointwise = (w.numpy() for w in layer.weights)
    ours.depthwise.weight.data = torch.from_numpy(depthwise).permute(
        2, 3, 0, 1
    )
    ours.pointwise.weight.data = torch.from_numpy(pointwise).permute(
        3, 2, 0, 1
    )
    x = torch.randn(2, 8, 9, 9)
    with quiet_native_stderr():
        theirs = layer(x.permute(0, 2, 3, 1).numpy())
    theirs = torch.from_numpy(keras.ops.convert_to_numpy(theirs))
    mine = ours.pointwise(ours.depthwise(x)).permute(0, 2, 3, 1)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "depth, params", [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6)]
)
def test_cifar_resnets_have_the_papers_sizes(depth, params):
    res = CifarResNet(CifarResNetConfig(depth=depth))
    plain = CifarResNet(CifarResNetConfig(depth=depth, residual=False))
    n = sum(p.numel() for p in res.parameters())
    assert n == sum(p.numel() for p in plain.parameters())  # option A: free
    assert abs(n - params) < 0.01e6  # He et al. (2016), Table 6
    convs = [m for m in res.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # plus the classifier
    assert res(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_shortcut_pads_channels_and_subsamples():
    net = CifarResNet(CifarResNetConfig(depth=8, widths=(2, 4, 8)))
    block = net.blocks[1]  # 2 -> 4 channels, stride 2
    for m in (block.conv1, block.conv2):
        nn.init.zeros_(m.weight)
    _randomize_batch_norms(block)
    block.bn2.weight.data.zero_()
    block.bn2.bias.data.zero_()
    block.eval()
    x = torch.rand(1, 2, 6, 6)
    y = block(x)
    torch.testing.assert_close(y[:, :2], x[:, :, ::2, ::2])
    assert y[:, 2:].abs().max() == 0
    with pytest.raises(ValueError, match="depth must be 6n"):
        CifarResNet(CifarResNetConfig(depth=21))


def test_plain_and_residual_cifar_nets_learn():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    for residual in (False, True):
        seed_everything(0)
        net = CifarResNet(
            CifarResNetConfig(8, residual, (4, 8, 8), in_channels=1)
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        loader = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
        h = fit(net, loader, opt, epochs=8)
        assert h["train_loss"][-1] < 0.6 * h["train_loss"][0]


def test_augmented_loader_shifts_and_flips():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 2] = 1.0
    y = torch.arange(64)
    loader = AugmentedLoader(x, y, batch_size=16, padding=2, seed=0)
    assert len(loader) == 4
    seen = set()
    for xb, yb in loader:
        assert xb.shape == (len(yb), 1, 8, 8)
        pos = xb.flatten(1).argmax(1)
        rows, cols = pos // 8, pos % 8
        assert (xb.flatten(1).sum(1) == 1).all()  # the pixel stays inside
        assert ((rows - 3).abs() <= 2).all()
        dist = torch.minimum((cols - 2).abs(), (cols - 5).abs())  # 5 = flip
        assert (dist <= 2).all()
        seen |= set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert len(seen) > 10
    first, second = (
        next(iter(AugmentedLoader(x, y, batch_size=16, padding=2, seed=0)))
        for _ in range(2)
    )
    torch.testing.assert_close(first, second)  # seeded: the same batches
    with pytest.raises(ValueError, match="x and y must have the same length"):
        AugmentedLoader(x, y[:3])
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        AugmentedLoader(x, y, padding=-1)

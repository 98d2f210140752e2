"""Grad-CAM, Grad-CAM++ and guided backpropagation against pytorch-grad-cam."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM as RefGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchvision.models import resnet18

from dlbook.interpretability.gradcam import (
    BaseCAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM, SmallCNN, cascading_randomization, guided_backprop,
    guided_relus, rank_correlation, resolve_layer,
)

PAIRS = [(GradCAM, RefGradCAM), (GradCAMPlusPlus, RefGradCAMPlusPlus)]


def _small_cnn(seed=0):
    torch.manual_seed(seed)
    model = SmallCNN(width=8).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _resnet(seed=0):
    torch.manual_seed(seed)
    return resnet18(weights=None, num_classes=10).eval()


def _reference(Ref, model, layer, x, targets):
    with Ref(model=model, target_layers=[layer]) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]))


@pytest.mark.parametrize("Ours, Ref", PAIRS)
@pytest.mark.parametrize("target", [None, 3, [0, 9, 4]])
def test_small_cnn_equals_pytorch_grad_cam(Ours, Ref, target):
    model = _small_cnn()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    ours = Ours(model, "features.relu4")(x, target)
    theirs = _reference(Ref, model, model.features.relu4, x, ours.targets)
    torch.testing.assert_close(ours.maps, theirs, atol=1e-5, rtol=1e-4)
    if target is not None:
        assert ours.targets.tolist() == (list(target) if isinstance(target, list) else [target] * 3)


@pytest.mark.parametrize("Ours, Ref", PAIRS)
@pytest.mark.parametrize("layer", ["layer4", "layer3.1.conv2"])
def test_resnet_equals_pytorch_grad_cam(Ours, Ref, layer):
    model = _resnet()
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    ours = Ours(model, layer)(x)
    theirs = _reference(Ref, model, model.get_submodule(layer), x, ours.targets)
    assert ours.maps.shape == (2, 64, 80)
    torch.testing.assert_close(ours.maps, theirs, atol=1e-5, rtol=1e-4)


def test_batch_is_the_same_as_one_image_at_a_time():
    model = _small_cnn()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    cam = GradCAM(model, "features.relu4")
    batch = cam(x, [1, 2, 3, 4])
    for i in range(4):
        single = cam(x[i:i + 1], i + 1)
        torch.testing.assert_close(batch.maps[i], single.maps[0])
        torch.testing.assert_close(batch.weights[i], single.weights[0])


def test_result_shapes_and_ranges():
    model = _small_cnn()
    r = GradCAMPlusPlus(model, model.features.relu4)(torch.rand(5, 1, 28, 28))
    assert r.maps.shape == (5, 28, 28) and r.raw.shape == (5, 7, 7)
    assert r.weights.shape == (5, 32) and r.targets.shape == (5,) and r.logits.shape == (5, 10)
    assert r.maps.min() >= 0 and r.maps.max() <= 1 and (r.raw >= 0).all()
    assert r.guided is None


def test_gradcam_weights_are_the_mean_gradient():
    """Equation (1) of Selvaraju et al., checked by hand with autograd."""
    model = _small_cnn()
    x = torch.rand(1, 1, 28, 28)
    r = GradCAM(model, "features.relu4")(x, 7)
    feats = model.features(x)
    feats.retain_grad()
    model.classifier(feats.mean(dim=(2, 3)))[0, 7].backward()
    torch.testing.assert_close(r.weights[0], feats.grad[0].mean(dim=(1, 2)))
    # and, with global average pooling, they equal the classifier's weights / Z
    torch.testing.assert_close(r.weights[0], model.classifier.weight[7].detach() / 49)


def test_parameters_get_no_gradient():
    model = _small_cnn()
    GradCAM(model, "features.relu4")(torch.rand(2, 1, 28, 28))
    assert all(p.grad is None for p in model.parameters())


def test_hooks_are_removed_even_after_an_error():
    model = _small_cnn()
    cam = GradCAM(model, "features.relu4")
    with pytest.raises(ValueError):
        cam(torch.rand(2, 1, 28, 28), target=12)
    assert not model.features.relu4._forward_hooks
    cam(torch.rand(2, 1, 28, 28))
    assert not model.features.relu4._forward_hooks


def test_bad_layer_name_lists_conv_layers():
    with pytest.raises(ValueError, match=r"'features\.relu9' is not a layer of SmallCNN.*features\.conv4"):
        GradCAM(_small_cnn(), "features.relu9")


def test_module_from_another_model_is_rejected():
    with pytest.raises(ValueError, match="not a submodule"):
        GradCAM(_small_cnn(), _small_cnn().features.conv4)
    with pytest.raises(TypeError, match="nn.Module or a dotted name"):
        GradCAM(_small_cnn(), 3)


def test_non_convolutional_target_is_a_clear_error():
    model = _small_cnn()
    with pytest.raises(ValueError, match=r"'classifier' \(Linear\) outputs \(2, 10\).*\(B, K, H, W\)"):
        GradCAM(model, "classifier")(torch.rand(2, 1, 28, 28))


def test_layer_run_twice_is_a_clear_error():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(1, 4, 3), relu, nn.Conv2d(4, 4, 3), relu, nn.Flatten(), nn.LazyLinear(3))
    model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="more than once"):
        GradCAM(model, "1")(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("target, match", [(10, r"\[0, 10\)"), ([1, 2], "one per image"), (-1, r"\[0, 10\)")])
def test_bad_targets(target, match):
    with pytest.raises(ValueError, match=match):
        GradCAM(_small_cnn(), "features.relu4")(torch.rand(3, 1, 28, 28), target)


def test_input_must_be_a_batch():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        GradCAM(_small_cnn(), "features.relu4")(torch.rand(1, 28, 28))


def test_frozen_model_still_works():
    model = _small_cnn()
    model.requires_grad_(False)
    assert GradCAM(model, "features.relu4")(torch.rand(2, 1, 28, 28)).maps.shape == (2, 28, 28)


def test_guided_backprop_equals_pytorch_grad_cam():
    model = _resnet()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    ours = guided_backprop(model, x, 5)[0].permute(1, 2, 0)
    theirs = torch.from_numpy(GuidedBackpropReLUModel(model, device="cpu")(x.clone(), target_category=5))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-4)
    # their model swaps ReLU modules back; ours never swapped anything
    assert all(type(m) is not nn.ReLU or not m._forward_hooks for m in model.modules())


def test_guided_backprop_differs_from_the_plain_gradient():
    model = _small_cnn()
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    model(x)[0, 2].backward()
    guided = guided_backprop(model, x.detach(), 2)
    assert not torch.allclose(guided, x.grad)


def test_guided_relus_inplace_and_not_agree():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 3, 3), nn.ReLU6(), nn.Flatten(), nn.Linear(48, 3))
    b = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.ReLU) and not isinstance(m, nn.ReLU6) else m for m in a])
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(guided_backprop(a, x, 1), guided_backprop(b, x, 1))
    with guided_relus(a) as gates:
        assert gates.count == 2
    assert not any(m._forward_hooks for m in a.modules())


def test_guided_backprop_needs_relu_modules():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)

        def forward(self, x):
            return torch.relu(self.conv(x)).mean(dim=(2, 3))

    with pytest.raises(ValueError, match="no nn.ReLU"):
        guided_backprop(Functional(), torch.rand(1, 1, 8, 8))


def test_guided_gradcam_is_the_product():
    model = _small_cnn()
    x = torch.rand(2, 1, 28, 28)
    r = GuidedGradCAM(model, "features.relu4")(x)
    assert r.guided.shape == (2, 1, 28, 28)
    torch.testing.assert_close(r.guided, guided_backprop(model, x, r.targets) * r.maps[:, None])


def test_guided_gradcam_one_forward_pass_equals_two():
    # the plain backward pass to the maps and the guided one to the input share
    # one forward pass; each equals its own separate computation
    model = _resnet()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    r = GuidedGradCAM(model, "layer4")(x, [1, 7])
    torch.testing.assert_close(r.maps, GradCAM(model, "layer4")(x, [1, 7]).maps, atol=0, rtol=0)
    torch.testing.assert_close(r.backprop, guided_backprop(model, x, [1, 7]), atol=0, rtol=0)
    assert not any(m._forward_hooks for m in model.modules())


def test_open_gates_leave_the_gradient_plain():
    model = _small_cnn()
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    model(x)[:, 3].sum().backward()
    with guided_relus(model, guided=False) as gates:
        assert gates.count == 4 and not gates.guided
        (g,) = torch.autograd.grad(model(x)[:, 3].sum(), x)
    torch.testing.assert_close(g, x.grad, atol=0, rtol=0)


def test_subclass_overrides_only_the_weights():
    class Uniform(BaseCAM):
        def weights(self, activations, grads):
            return torch.ones(activations.shape[:2])

    model = _small_cnn()
    x = torch.rand(1, 1, 28, 28)
    r = Uniform(model, "features.relu4")(x)
    torch.testing.assert_close(r.raw[0], model.features(x)[0].sum(0).detach())


def test_cascading_randomization_changes_gradcam_not_the_model():
    model = _small_cnn()
    before = [p.clone() for p in model.state_dict().values()]
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    stages = [["classifier"], ["features.conv4", "features.bn4"], ["features.conv3", "features.bn3"]]
    run = cascading_randomization(model, stages, x, lambda m, x, t: GradCAM(m, "features.relu4")(x, t).maps)
    assert [s for s, _ in run] == ["original", "classifier", "features.conv4+features.bn4", "features.conv3+features.bn3"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))
    torch.testing.assert_close(run[0][1], GradCAM(model, "features.relu4")(x).maps)
    rho = np.nan_to_num(rank_correlation(run[0][1], run[-1][1]), nan=0.0)  # a vanished map shares no ranking
    assert rho.mean() < 0.9 and not torch.allclose(run[0][1], run[-1][1])


def test_rank_correlation():
    a = torch.rand(2, 5, 5)
    np.testing.assert_allclose(rank_correlation(a, a), [1.0, 1.0])
    np.testing.assert_allclose(rank_correlation(a, -a), [-1.0, -1.0])
    assert np.isnan(rank_correlation(a, torch.zeros(2, 5, 5))).all()


def test_resolve_layer_accepts_module_or_name():
    model = _small_cnn()
    assert resolve_layer(model, "features.conv2") == ("features.conv2", model.features.conv2)
    assert resolve_layer(model, model.features.conv2)[0] == "features.conv2"


def test_small_cnn_shapes():
    assert SmallCNN()(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert SmallCNN(num_classes=4, width=4).features(torch.rand(1, 1, 28, 28)).shape == (1, 16, 7, 7)

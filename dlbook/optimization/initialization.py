"""Weight initialization and depth: Xavier and He from scratch, per-layer signal statistics, deep MLPs.

Glorot & Bengio (2010) choose the variance of each layer's weights so that the variance of
the activations (forward) and of the gradients (backward) stays the same from layer to
layer: :math:`\\mathrm{Var}[W] = 2 / (n_\\text{in} + n_\\text{out})` for a linear or tanh
network. He et al. (2015) redo the forward computation for ReLU, which zeroes half of its
input: :math:`\\mathrm{Var}[W] = 2 / n_\\text{in}`. :func:`layer_statistics` measures what
each scheme does to a deep network, layer by layer, and :class:`DeepMLP` is the network of
the chapter: a stack of equal-width layers, with optional batch normalization (Ioffe &
Szegedy 2015) and residual connections (He et al. 2016).

Checked against: ``torch.nn.init.calculate_gain``, ``xavier_uniform_``, ``xavier_normal_``,
``kaiming_uniform_`` and ``kaiming_normal_``: the same numbers from the same random generator,
and the variances the derivation predicts (``tests/optimization/test_initialization.py``).

Chapter: ``book/optimization/initialization.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import check_int, check_number

# --- the initializers -----------------------------------------------------------------------


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: inputs and outputs per unit, counting a kernel's area.

    A linear weight has shape (out, in); a convolution's (out, in, *kernel), and each of its
    outputs sees ``in * prod(kernel)`` inputs.
    """
    if weight.ndim < 2:
        raise ValueError(
            f"weight must have at least 2 dimensions (out, in, ...), got shape {tuple(weight.shape)}"
        )
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which a nonlinearity's output standard deviation must be restored.

    ReLU keeps half of a symmetric input, so :math:`E[\\phi(y)^2] = \\mathrm{Var}[y]/2` and the
    gain is :math:`\\sqrt 2`; leaky ReLU with slope :math:`a` keeps :math:`(1 + a^2)/2`; tanh's
    5/3 and SELU's 3/4 are PyTorch's conventions.

    Args:
        nonlinearity: ``"linear"``, ``"conv2d"``, ``"sigmoid"``, ``"tanh"``, ``"relu"``,
            ``"leaky_relu"`` or ``"selu"``.
        param: the negative slope of ``leaky_relu`` (default 0.01).
    """
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(
        f"nonlinearity must be one of linear, conv2d, sigmoid, tanh, relu, leaky_relu, selu; "
        f"got {nonlinearity!r}"
    )


def xavier_std(weight: torch.Tensor, gain_: float = 1.0) -> float:
    r"""Glorot & Bengio's standard deviation: :math:`g \sqrt{2 / (n_\text{in} + n_\text{out})}`."""
    fan_in, fan_out = fans(weight)
    return gain_ * math.sqrt(2.0 / (fan_in + fan_out))


def he_std(
    weight: torch.Tensor,
    nonlinearity: str = "relu",
    param: float | None = None,
    mode: str = "fan_in",
) -> float:
    r"""He et al.'s standard deviation: :math:`g / \sqrt{n}`, with :math:`n` the fan-in (or fan-out)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(
            f"mode must be 'fan_in' (preserve the forward signal) or 'fan_out' (the backward one), got {mode!r}"
        )
    fan_in, fan_out = fans(weight)
    return gain(nonlinearity, param) / math.sqrt(
        fan_in if mode == "fan_in" else fan_out
    )


@torch.no_grad()
def xavier_uniform_(
    weight: torch.Tensor,
    gain_: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``weight`` from :math:`U(-a, a)`, :math:`a = \sqrt 3\,\sigma_\text{Xavier}` (a uniform's variance is :math:`a^2/3`)."""
    a = math.sqrt(3.0) * xavier_std(weight, gain_)
    return weight.uniform_(-a, a, generator=generator)


@torch.no_grad()
def xavier_normal_(
    weight: torch.Tensor,
    gain_: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``weight`` from :math:`N(0, \sigma_\text{Xavier}^2)`."""
    return weight.normal_(0.0, xavier_std(weight, gain_), generator=generator)


@torch.no_grad()
def kaiming_uniform_(
    weight: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``weight`` from :math:`U(-b, b)`, :math:`b = \sqrt 3\,\sigma_\text{He}`; ``a`` is the leaky slope."""
    bound = math.sqrt(3.0) * he_std(weight, nonlinearity, a, mode)
    return weight.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def kaiming_normal_(
    weight: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``weight`` from :math:`N(0, \sigma_\text{He}^2)`; ``a`` is the leaky slope."""
    return weight.normal_(
        0.0, he_std(weight, nonlinearity, a, mode), generator=generator
    )


# --- the network of the chapter --------------------------------------------------------------


@dataclass
class MLPConfig:
    """A deep MLP of equal-width layers (see :class:`DeepMLP`)."""

    depth: int = 10  # number of hidden width -> width layers (blocks), between the input layer and the head
    width: int = 128  # units per hidden layer
    in_features: int = 784  # input size (a flattened 28 x 28 digit)
    num_classes: int = 10  # output size
    activation: str = "relu"  # "relu" or "tanh"
    init: str = "he"  # "he", "xavier", or "normal" (N(0, init_std^2), the same for every layer)
    init_std: float = 0.01  # the standard deviation of the "normal" scheme
    norm: bool = False  # batch normalization before each activation
    residual: bool = False  # add each block's input to its output

    def __post_init__(self):
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(
                f"depth must be a positive integer, got {self.depth!r}"
            )
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(
                f"width must be a positive integer, got {self.width!r}"
            )
        if self.activation not in ("relu", "tanh"):
            raise ValueError(
                f"activation must be 'relu' or 'tanh', got {self.activation!r}"
            )
        if self.init not in ("he", "xavier", "normal"):
            raise ValueError(
                f"init must be 'he', 'xavier' or 'normal', got {self.init!r}"
            )
        if not self.init_std > 0:  # NaN fails this
            raise ValueError(
                f"init_std must be positive, got {self.init_std!r}"
            )
        check_number("init_std", self.init_std, low=0, low_open=True)
        check_int("in_features", self.in_features, low=1)
        check_int("num_classes", self.num_classes, low=1)


class Block(nn.Module):
    r"""One hidden layer in pre-activation form (He et al. 2016b): :math:`f(h) = W\,\phi(N(h)) + b`.

    The block returns :math:`f(h)` (plain) or :math:`h + f(h)` (residual); :math:`N` is batch
    normalization or the identity.
    """

    def __init__(
        self, width: int, activation: str, norm: bool, residual: bool
    ):
        super().__init__()
        self.norm = nn.BatchNorm1d(width) if norm else nn.Identity()
        self.act = nn.ReLU() if activation == "relu" else nn.Tanh()
        self.linear = nn.Linear(width, width)
        self.residual = residual

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.linear(self.act(self.norm(h)))
        return h + out if self.residual else out


class DeepMLP(nn.Module):
    r"""An input layer, ``depth`` equal-width blocks and a classifier (see :class:`MLPConfig`).

    .. math::

        h_0 = W_0 x + b_0, \qquad h_l = [h_{l-1} +]\; W_l\, \phi(N(h_{l-1})) + b_l, \qquad
        \text{logits} = W_{L+1}\, \phi(N(h_L)) + b_{L+1}.

    Every linear layer is initialized by the chosen scheme, biases at zero: ``"he"`` uses
    :func:`kaiming_normal_` for the activation, ``"xavier"`` uses :func:`xavier_normal_` with
    gain 1 (Glorot & Bengio's choice), ``"normal"`` a fixed standard deviation. With He
    initialization and no normalization, :math:`E[h_l^2]` is the same for every plain layer
    and doubles at every residual one.

    Shapes:
        x: (B, in_features) or (B, C, H, W) with C*H*W = in_features; output: (B, num_classes).
    """

    def __init__(
        self, config: MLPConfig, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.config = c = config
        self.stem = nn.Linear(c.in_features, c.width)
        self.blocks = nn.ModuleList(
            Block(c.width, c.activation, c.norm, c.residual)
            for _ in range(c.depth)
        )
        self.head_norm = nn.BatchNorm1d(c.width) if c.norm else nn.Identity()
        self.head_act = nn.ReLU() if c.activation == "relu" else nn.Tanh()
        self.head = nn.Linear(c.width, c.num_classes)
        for i, layer in enumerate(self.linears()):
            if c.init == "he":
                # the input layer sees pixels, not activations: it is linear
                kaiming_normal_(
                    layer.weight,
                    nonlinearity="linear" if i == 0 else c.activation,
                    generator=generator,
                )
            elif c.init == "xavier":
                xavier_normal_(layer.weight, generator=generator)
            else:
                with torch.no_grad():
                    layer.weight.normal_(0.0, c.init_std, generator=generator)
            nn.init.zeros_(layer.bias)

    def linears(self) -> list[nn.Linear]:
        """The linear layers, input to output."""
        return [self.stem] + [b.linear for b in self.blocks] + [self.head]

    def layers(self) -> list[nn.Module]:
        """The modules whose outputs are the hidden representations h_0 .. h_L."""
        return [self.stem, *self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        if h.shape[1] != self.config.in_features:
            raise ValueError(
                f"x has {h.shape[1]} features per example, the model expects {self.config.in_features}"
            )
        h = self.stem(h)
        for block in self.blocks:
            h = block(h)
        return self.head(self.head_act(self.head_norm(h)))


# --- measuring the signal, layer by layer ---------------------------------------------------


@dataclass
class LayerStats:
    """Per-layer statistics of one forward and backward pass (index 0 is the input layer's output h_0).

    Shapes:
        activation_std: (L + 1,), the standard deviation of each hidden representation h_l.
        backward_std: (L + 1,), the standard deviation of dL/dh_l, the gradient reaching it.
        weight_grad_norm: (L + 2,), the Frobenius norm of dL/dW for every linear layer, head last.
    """

    activation_std: torch.Tensor
    backward_std: torch.Tensor
    weight_grad_norm: torch.Tensor


@contextmanager
def recording(
    modules: list[nn.Module],
) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor | None]]]:
    """Record each module's output, and the gradient that reaches it; the hooks are removed on exit."""
    outputs: list[torch.Tensor] = [None] * len(modules)  # type: ignore[list-item]
    grads: list[torch.Tensor | None] = [None] * len(modules)

    def make_hook(i: int) -> Callable:
        def hook(module, inputs, output):
            outputs[i] = output.detach()
            if output.requires_grad:
                output.register_hook(
                    lambda g: grads.__setitem__(i, g.detach())
                )

        return hook

    handles = [
        m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)
    ]
    try:
        yield outputs, grads
    finally:
        for h in handles:
            h.remove()


def layer_statistics(
    model: DeepMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[
        [torch.Tensor, torch.Tensor], torch.Tensor
    ] = F.cross_entropy,
) -> LayerStats:
    """One forward and backward pass on ``(x, y)``, recording every layer (see :class:`LayerStats`).

    The model's ``.grad`` fields are overwritten; the model is left in the mode it was in.
    """
    model.zero_grad(set_to_none=True)
    with recording(model.layers()) as (outputs, grads):
        loss_fn(model(x), y).backward()
    if any(g is None for g in grads):
        raise RuntimeError(
            "a hidden layer received no gradient; is the loss connected to every layer?"
        )
    return LayerStats(
        activation_std=torch.stack([o.float().std() for o in outputs]),
        backward_std=torch.stack([g.float().std() for g in grads]),
        weight_grad_norm=torch.stack(
            [lin.weight.grad.norm() for lin in model.linears()]
        ),
    )

"""Weight initialization and depth: Xavier, He, signal statistics, deep MLPs.

Glorot & Bengio (2010) choose the variance of each layer's weights so that
the variance of the activations (forward) and of the gradients (backward)
stays the same from layer to layer: Var[W] = 2 / (n_in + n_out) for a
linear or tanh network. He et al. (2015) redo the forward computation for
ReLU, which zeroes half of its input: Var[W] = 2 / n_in.
``layer_statistics`` measures what each scheme does to a deep network, layer
by layer, and ``DeepMLP`` is the network of the chapter: a stack of
equal-width layers, with optional batch normalization (Ioffe & Szegedy 2015)
and residual connections (He et al. 2016).

Checked against: ``torch.nn.init.calculate_gain``, ``xavier_uniform_``,
``xavier_normal_``, ``kaiming_uniform_`` and ``kaiming_normal_``: the same
numbers from the same random generator, and the variances the derivation
predicts (``tests/optimization/test_initialization.py``).

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

# --- the initializers -------------------------------------------------------


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: the inputs and outputs per unit.

    A linear weight has shape (out, in); a convolution's (out, in, *kernel),
    and each of its outputs sees ``in * prod(kernel)`` inputs.
    """
    if weight.ndim < 2:
        raise ValueError(
            "weight must have at least 2 dimensions (out, in, ...), got "
            f"shape {tuple(weight.shape)}"
        )
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that restores a nonlinearity's output standard deviation.

    ReLU keeps half of a symmetric input, so E[φ(y)²] = Var[y] / 2 and the
    gain is √2; leaky ReLU with slope a keeps (1 + a²)/2; tanh's 5/3 and
    SELU's 3/4 are PyTorch's conventions.

    Args:
        nonlinearity: ``"linear"``, ``"conv2d"``, ``"sigmoid"``, ``"tanh"``,
            ``"relu"``, ``"leaky_relu"`` or ``"selu"``.
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
        "nonlinearity must be one of linear, conv2d, sigmoid, tanh, relu, "
        f"leaky_relu, selu; got {nonlinearity!r}"
    )


def xavier_std(weight: torch.Tensor, gain_: float = 1.0) -> float:
    """Glorot & Bengio's standard deviation: g √(2 / (n_in + n_out))."""
    fan_in, fan_out = fans(weight)
    return gain_ * math.sqrt(2.0 / (fan_in + fan_out))


def he_std(
    weight: torch.Tensor,
    nonlinearity: str = "relu",
    param: float | None = None,
    mode: str = "fan_in",
) -> float:
    """He et al.'s standard deviation g / √n, n the fan-in (or the fan-out)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(
            "mode must be 'fan_in' (preserve the forward signal) or "
            f"'fan_out' (the backward one), got {mode!r}"
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
    """Fill ``weight`` from U(−a, a), a = √3 σ_Xavier.

    A uniform distribution on (−a, a) has variance a²/3.
    """
    a = math.sqrt(3.0) * xavier_std(weight, gain_)
    return weight.uniform_(-a, a, generator=generator)


@torch.no_grad()
def xavier_normal_(
    weight: torch.Tensor,
    gain_: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``weight`` from N(0, σ_Xavier²)."""
    return weight.normal_(0.0, xavier_std(weight, gain_), generator=generator)


@torch.no_grad()
def kaiming_uniform_(
    weight: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``weight`` from U(−b, b), b = √3 σ_He; ``a`` is the leaky slope."""
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
    """Fill ``weight`` from N(0, σ_He²); ``a`` is the leaky slope."""
    return weight.normal_(
        0.0, he_std(weight, nonlinearity, a, mode), generator=generator
    )


# --- the network of the chapter ---------------------------------------------


@dataclass
class MLPConfig:
    """A deep MLP of equal-width layers (see ``DeepMLP``)."""

    # hidden width -> width layers (blocks) between the input layer and head
    depth: int = 10
    width: int = 128  # units per hidden layer
    in_features: int = 784  # input size (a flattened 28 x 28 digit)
    num_classes: int = 10  # output size
    activation: str = "relu"  # "relu" or "tanh"
    # "he", "xavier", or "normal" (N(0, init_std^2), the same in every layer)
    init: str = "he"
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
    """One hidden layer in pre-activation form (He et al. 2016b).

        f(h) = W φ(N(h)) + b

    The block returns f(h) (plain) or h + f(h) (residual); N is batch
    normalization or the identity, φ the activation.
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
    """An input layer, ``depth`` equal-width blocks and a classifier.

        h_0 = W_0 x + b_0,
        h_l = W_l φ(N(h_{l−1})) + b_l          (plain), or
        h_l = h_{l−1} + W_l φ(N(h_{l−1})) + b_l (residual), l = 1, ..., D,
        logits = W_{D+1} φ(N(h_D)) + b_{D+1}.

    Every linear layer is initialized by the chosen scheme (``MLPConfig``),
    biases at zero: ``"he"`` uses ``kaiming_normal_`` for the activation,
    ``"xavier"`` uses ``xavier_normal_`` with gain 1 (Glorot & Bengio's
    choice), ``"normal"`` a fixed standard deviation. With He initialization
    and no normalization, E[h_l²] is the same for every plain layer and
    doubles at every residual one.

    Shapes:
        x: (B, in_features), or (B, C, H, W) with C*H*W = in_features.
        output: (B, num_classes).
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
        """The modules whose outputs are the hidden representations h_0..D."""
        return [self.stem, *self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        if h.shape[1] != self.config.in_features:
            raise ValueError(
                f"x has {h.shape[1]} features per example, the model expects "
                f"{self.config.in_features}"
            )
        h = self.stem(h)
        for block in self.blocks:
            h = block(h)
        return self.head(self.head_act(self.head_norm(h)))


# --- measuring the signal, layer by layer -----------------------------------


@dataclass
class LayerStats:
    """Per-layer statistics of one forward and backward pass, in float64.

    Index 0 is the input layer's output h_0. The statistics are computed in
    float64 from the float32 tensors: a float32 gradient of 1e-30 is a
    perfectly good number, but its square (1e-60) is below float32's range,
    so a float32 norm or standard deviation of it would underflow to 0.

    Shapes:
        activation_std: (D + 1,), the standard deviation of each hidden
            representation h_l.
        backward_std: (D + 1,), the standard deviation of ∂ℒ/∂h_l, the
            gradient reaching it.
        weight_grad_norm: (D + 2,), the Frobenius norm of ∂ℒ/∂W for every
            linear layer, head last.
        weight_grad_nonzero: (D + 2,), the fraction of the entries of each
            ∂ℒ/∂W that are not exactly zero.
    """

    activation_std: torch.Tensor
    backward_std: torch.Tensor
    weight_grad_norm: torch.Tensor
    weight_grad_nonzero: torch.Tensor


@contextmanager
def recording(
    modules: list[nn.Module],
) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor | None]]]:
    """Record each module's output and the gradient that reaches it.

    The hooks are removed on exit.
    """
    outputs: list[torch.Tensor] = [None] * len(modules)  # type: ignore
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
    """One forward and backward pass on ``(x, y)``, recording every layer.

    Returns a ``LayerStats``. The model's ``.grad`` fields are overwritten;
    the model is left in the mode it was in.
    """
    model.zero_grad(set_to_none=True)
    with recording(model.layers()) as (outputs, grads):
        loss_fn(model(x), y).backward()
    if any(g is None for g in grads):
        raise RuntimeError(
            "a hidden layer received no gradient; is the loss connected to "
            "every layer?"
        )
    weight_grads = [lin.weight.grad for lin in model.linears()]
    # float64: the squares inside a std or norm of tiny values underflow
    return LayerStats(
        activation_std=torch.stack([o.double().std() for o in outputs]),
        backward_std=torch.stack([g.double().std() for g in grads]),
        weight_grad_norm=torch.stack(
            [g.double().norm() for g in weight_grads]
        ),
        weight_grad_nonzero=torch.stack(
            [(g != 0).double().mean() for g in weight_grads]
        ),
    )

"""From logistic regression to the multilayer perceptron.

The building blocks of every classifier in the book, written out so that
each line can be read against an equation of the chapter:

* activation functions (sigmoid, tanh, ReLU, leaky ReLU, GELU, softmax) and
  their derivatives, in closed form;
* logistic regression (Cox 1958) and softmax regression as maximum
  likelihood: the mean negative log-likelihood, its gradient in closed form,
  and full-batch gradient descent;
* the multilayer perceptron (Rumelhart, Hinton and Williams 1986), its
  parameter count, and the width that gives a network of a given depth a
  given parameter budget, for the deep-versus-wide comparison, whose seeds
  are trained side by side as one batched network (``ParallelMLP``).

Checked against: ``torch.nn.functional`` (every activation and its autograd
derivative, ``binary_cross_entropy_with_logits``, ``cross_entropy``) and
scikit-learn's ``LogisticRegression`` (the L2-regularised fits give the same
probabilities), and ``ParallelMLP`` against separate runs of ``MLP``, in
``tests/foundations/test_mlp.py``.

Chapter: ``book/foundations/mlp.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    TensorDataset,
)

from dlbook.checks import check_int, check_labels, check_number, check_tensor

# --- activation functions and their derivatives ---------------------------


def sigmoid(x: Tensor) -> Tensor:
    """The logistic function σ(x) = 1 / (1 + exp(−x)).

    Computed from e = exp(−|x|), which never overflows: 1 / (1 + e) for
    x ≥ 0 and the equal form e / (1 + e) for x < 0.
    """
    e = torch.exp(-x.abs())
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(x: Tensor) -> Tensor:
    """σ′(x) = σ(x) (1 − σ(x)), at most 1/4 (at 0)."""
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x: Tensor) -> Tensor:
    """tanh x = (1 − exp(−2x)) / (1 + exp(−2x)), evaluated at |x| and signed.

    ``expm1`` keeps the relative precision for tiny x, where 1 − exp(−2x)
    would cancel.
    """
    e = torch.exp(-2 * x.abs())
    return torch.sign(x) * -torch.expm1(-2 * x.abs()) / (1 + e)


def tanh_grad(x: Tensor) -> Tensor:
    """tanh′(x) = 1 − tanh² x, at most 1 (at 0)."""
    return 1 - tanh(x) ** 2


def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(0, x); NaN stays NaN, as in PyTorch."""
    return torch.where(x < 0, torch.zeros_like(x), x)


def relu_grad(x: Tensor) -> Tensor:
    """1 for x > 0, else 0; at the kink x = 0 we take 0, as PyTorch does."""
    return (x > 0).to(x.dtype)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU (Maas et al. 2013): x for x > 0, a·x otherwise.

    The slope a is ``negative_slope``.
    """
    return torch.where(x > 0, x, negative_slope * x)


def leaky_relu_grad(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """1 for x > 0, else a (the left value at the kink, as in PyTorch)."""
    return torch.where(
        x > 0, torch.ones_like(x), torch.full_like(x, negative_slope)
    )


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = (
    0.044715  # Hendrycks and Gimpel (2016), eq. for the tanh approximation
)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def _normal_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _check_approximate(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(
            f"approximate must be 'none' or 'tanh', got {approximate!r}"
        )


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU (Hendrycks and Gimpel 2016): x Φ(x), Φ the standard normal CDF.

    Args:
        x: any tensor.
        approximate: ``"none"`` for the exact form, ``"tanh"`` for
            ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))), as in
            ``torch.nn.functional.gelu``.
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        return 0.5 * x * (1 + tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)))
    return x * _normal_cdf(x)


def gelu_grad(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU′(x) = Φ(x) + x φ(x) (exact), or the derivative of the tanh form.

    Φ and φ are the standard normal CDF and density.
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        u = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)
        t = tanh(u)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * _SQRT_2_OVER_PI * (
            1 + 3 * _GELU_CUBIC * x**2
        )
    return _normal_cdf(x) + x * _normal_pdf(x)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """softmax(x)_k = exp(x_k) / Σ_j exp(x_j), along ``dim``.

    The maximum m is subtracted first: the result is unchanged (numerator and
    denominator are multiplied by the same exp(−m)) and no exponential can
    overflow.
    """
    check_tensor("x", x, floating=True)
    if x.ndim == 0 or x.shape[dim] == 0:
        raise ValueError(
            f"x must have at least one entry along dim={dim}, got shape "
            f"{tuple(x.shape)}"
        )
    z = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_jacobian(x: Tensor) -> Tensor:
    """The Jacobian of softmax over the last dimension: J = diag(s) − s sᵀ.

    Shapes:
        x: (..., K) -> (..., K, K), with ``J[..., k, j]`` = ∂s_k / ∂x_j.
    """
    s = softmax(x, dim=-1)
    return torch.diag_embed(s) - s[..., :, None] * s[..., None, :]


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)) = max(x, 0) + log(1 + exp(−|x|)).

    The second form neither overflows nor loses x to rounding.
    """
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


class Activation(NamedTuple):
    """An element-wise activation and its derivative (``Tensor -> Tensor``)."""

    name: str
    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("sigmoid", sigmoid, sigmoid_grad),
        Activation("tanh", tanh, tanh_grad),
        Activation("relu", relu, relu_grad),
        Activation("leaky_relu", leaky_relu, leaky_relu_grad),
        Activation("gelu", gelu, gelu_grad),
    ]
}
"""The element-wise activations by name (softmax acts on a vector)."""


def activation(name: str) -> Activation:
    """Look up an element-wise activation by name, a key of ``ACTIVATIONS``."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation {name!r} is not known; expected one of: "
            f"{', '.join(ACTIVATIONS)}"
        ) from None


# --- logistic and softmax regression --------------------------------------


def _check_xy(X: Tensor, y: Tensor, finite: bool = False) -> None:
    if not isinstance(X, Tensor) or X.ndim != 2:
        raise ValueError(
            "X must be a (n, d) tensor of features, got "
            f"{getattr(X, 'shape', type(X).__name__)}"
        )
    if not isinstance(y, Tensor) or y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"y must be a ({len(X)},) tensor of labels, one per row of X, got "
            f"{getattr(y, 'shape', type(y).__name__)}"
        )
    check_tensor("X", X, floating=True, finite=finite, nonempty=True)


def logistic_nll(
    w: Tensor, b: Tensor, X: Tensor, y: Tensor, weight_decay: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Logistic regression's mean negative log-likelihood and its gradient.

    With z_i = wᵀx_i + b and p_i = σ(z_i), in closed form:

        loss   = (1/n) Σ_i [log(1 + exp(z_i)) − y_i z_i] + (λ/2) ‖w‖²
        grad_w = (1/n) Xᵀ(p − y) + λ w
        grad_b = (1/n) Σ_i (p_i − y_i)

    Args:
        w: weights (d,); b: bias, a scalar tensor.
        X: features (n, d); y: labels (n,) in {0, 1} (any float or int dtype).
        weight_decay: λ; the bias is not penalised.

    Returns:
        ``(loss, grad_w, grad_b)``.
    """
    _check_xy(X, y)
    y = y.to(X.dtype)
    z = X @ w + b  # (n,)
    loss = (softplus(z) - y * z).mean() + 0.5 * weight_decay * (w @ w)
    r = (sigmoid(z) - y) / len(y)  # (n,): the residual p - y, averaged
    return loss, X.T @ r + weight_decay * w, r.sum()


def softmax_nll(
    W: Tensor, b: Tensor, X: Tensor, y: Tensor, weight_decay: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Softmax regression's mean cross-entropy and its gradient.

    With logits Z = XW + b, P = softmax(Z) row by row and Y the one-hot
    labels, in closed form:

        loss   = (1/n) Σ_i [log Σ_k exp(Z_ik) − Z_iy_i] + (λ/2) ‖W‖²
        grad_W = (1/n) Xᵀ(P − Y) + λ W
        grad_b = (1/n) 1ᵀ(P − Y)

    Shapes:
        W: (d, K), b: (K,), X: (n, d), y: (n,) integer classes in [0, K).

    Returns:
        ``(loss, grad_W, grad_b)``.
    """
    _check_xy(X, y)
    check_labels("y", y, W.shape[-1])
    # XW and Xᵀ(P − Y) are computed as (WᵀXᵀ)ᵀ and ((P − Y)ᵀX)ᵀ: the same
    # products, which BLAS does several times faster for a few classes K
    Z = (W.T @ X.T).T + b  # (n, K)
    m = Z.amax(dim=1, keepdim=True)
    logsumexp = (m + torch.log(torch.exp(Z - m).sum(dim=1, keepdim=True)))[
        :, 0
    ]  # (n,)
    loss = (
        logsumexp - Z.gather(1, y[:, None])[:, 0]
    ).mean() + 0.5 * weight_decay * (W * W).sum()
    R = softmax(Z, dim=1)  # (n, K): P - Y, built in place below
    R[torch.arange(len(y)), y] -= 1
    R /= len(y)
    return loss, (R.T @ X).T + weight_decay * W, R.sum(dim=0)


def smoothness(
    X: Tensor, multiclass: bool = False, weight_decay: float = 0.0
) -> float:
    """An upper bound β on the curvature (Hessian eigenvalues) of the losses.

    The Hessian of ``logistic_nll`` is (1/n) XᵀSX + λI with
    S = diag(p_i (1 − p_i)) ⪯ I/4; that of ``softmax_nll`` is bounded by
    ½ (1/n) XᵀX ⊗ I + λI (Böhning 1992). So

        β = c · λ_max((1/n) XᵀX) + λ,  c = 1/4 (logistic), 1/2 (softmax),

    and gradient descent with step η ≤ 1/β decreases the loss at every step.
    The bias acts as a constant feature: X gets a column of ones.
    """
    X = X.flatten(1)
    X1 = torch.cat([X, X.new_ones(len(X), 1)], dim=1)
    # the Gram matrix in the data's precision, its eigenvalues in float64
    gram = (X1.T @ X1).double() / len(X1)
    lam_max = float(torch.linalg.eigvalsh(gram)[-1])
    return (0.5 if multiclass else 0.25) * lam_max + weight_decay


@dataclass
class GDConfig:
    """Full-batch gradient descent."""

    lr: float = 0.5  # step size eta
    steps: int = 200  # number of gradient steps
    # lambda of the L2 penalty (lambda / 2) ||w||^2; the bias is not penalised
    weight_decay: float = 0.0

    def __post_init__(self):
        check_number("lr", self.lr, low=0, low_open=True)
        check_int("steps", self.steps, low=0)
        check_number("weight_decay", self.weight_decay, low=0)


def gradient_descent(
    loss_and_grad: Callable[..., tuple],
    params: Sequence[Tensor],
    cfg: GDConfig,
) -> list[float]:
    """Minimise by θ ← θ − η ∇ℒ(θ), updating ``params`` in place.

    Args:
        loss_and_grad: ``loss_and_grad(*params) -> (loss, *grads)``, one
            gradient per parameter.
        params: the starting point; overwritten with the result.
        cfg: step size and number of steps.

    Returns:
        The loss before each step and after the last (``cfg.steps + 1``).
    """
    if cfg.lr <= 0 or cfg.steps < 0:
        raise ValueError(
            f"GDConfig needs lr > 0 and steps >= 0, got lr={cfg.lr}, "
            f"steps={cfg.steps}"
        )
    losses = []
    for _ in range(cfg.steps):
        loss, *grads = loss_and_grad(*params)
        losses.append(float(loss))
        for p, g in zip(params, grads):
            p.sub_(cfg.lr * g)
    losses.append(float(loss_and_grad(*params)[0]))
    return losses


@dataclass
class LinearClassifier:
    """A fitted logistic or softmax regression.

    Shapes:
        weight: (d,) for logistic, (d, K) for softmax regression.
        predict_proba: (n, d) -> (n,), the probability of class 1
            (logistic), or (n, K) (softmax).
    """

    weight: Tensor
    bias: Tensor
    losses: list[float] = field(
        default_factory=list
    )  # training loss before each step, and at the end

    @property
    def multiclass(self) -> bool:
        return self.weight.ndim == 2

    def logits(self, X: Tensor) -> Tensor:
        return X.flatten(1) @ self.weight + self.bias

    def predict_proba(self, X: Tensor) -> Tensor:
        z = self.logits(X)
        return softmax(z, dim=1) if self.multiclass else sigmoid(z)

    def predict(self, X: Tensor) -> Tensor:
        z = self.logits(X)
        return z.argmax(dim=1) if self.multiclass else (z > 0).long()


def fit_logistic_regression(
    X: Tensor, y: Tensor, cfg: GDConfig = GDConfig()
) -> LinearClassifier:
    """Fit logistic regression by gradient descent on ``logistic_nll``.

    The weights start at zero.

    Args:
        X: features (n, d) (images are flattened); y: labels (n,) in {0, 1}.
    """
    X = X.flatten(1)
    _check_xy(X, y, finite=True)
    labels = set(torch.unique(y).tolist())
    if not labels <= {0, 1}:
        raise ValueError(
            "y must hold the labels 0 and 1 for logistic regression, got "
            f"{sorted(labels)}"
        )
    w, b = X.new_zeros(X.shape[1]), X.new_zeros(())
    losses = gradient_descent(
        lambda w, b: logistic_nll(w, b, X, y, cfg.weight_decay), [w, b], cfg
    )
    return LinearClassifier(w, b, losses)


def fit_softmax_regression(
    X: Tensor,
    y: Tensor,
    cfg: GDConfig = GDConfig(),
    num_classes: int | None = None,
) -> LinearClassifier:
    """Fit softmax regression by gradient descent on ``softmax_nll``.

    The weights start at zero.

    Args:
        X: features (n, d) (images are flattened); y: integer classes (n,)
            in [0, K).
        num_classes: K; default: ``y.max() + 1``.
    """
    X = X.flatten(1)
    _check_xy(X, y, finite=True)
    K = int(y.max()) + 1 if num_classes is None else num_classes
    if y.dtype != torch.long or int(y.min()) < 0 or int(y.max()) >= K:
        raise ValueError(
            f"y must hold int64 classes in [0, {K}), got dtype {y.dtype} and "
            f"range [{int(y.min())}, {int(y.max())}]"
        )
    W, b = X.new_zeros(X.shape[1], K), X.new_zeros(K)
    losses = gradient_descent(
        lambda W, b: softmax_nll(W, b, X, y, cfg.weight_decay), [W, b], cfg
    )
    return LinearClassifier(W, b, losses)


# --- the multilayer perceptron --------------------------------------------


@dataclass
class MLPConfig:
    """The shape of a multilayer perceptron."""

    d_in: int = 784  # input features (28 x 28 pixels for MNIST)
    hidden: tuple[int, ...] = (
        256,
    )  # width of each hidden layer; () gives softmax regression
    d_out: int = 10  # outputs: one logit per class
    activation: str = "relu"  # a key of ACTIVATIONS

    def __post_init__(self):
        check_int("d_in", self.d_in, low=1)
        check_int("d_out", self.d_out, low=1)
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, low=1)


class MLP(nn.Module):
    """A multilayer perceptron: affine maps with an activation f between them.

        h⁽⁰⁾ = x,  h⁽ˡ⁾ = f(W⁽ˡ⁾ h⁽ˡ⁻¹⁾ + b⁽ˡ⁾) for l = 1, ..., D,
        logits = W⁽ᴰ⁺¹⁾ h⁽ᴰ⁾ + b⁽ᴰ⁺¹⁾.

    The output is a vector of logits; the softmax lives in the loss
    (``F.cross_entropy``), where it can be computed stably. Weights start as
    ``nn.Linear`` initialises them.

    Args:
        cfg: sizes and activation.

    Shapes:
        input: (B, d_in), or (B, C, H, W) with C*H*W = d_in (flattened).
        output: (B, d_out).
    """

    def __init__(self, cfg: MLPConfig = MLPConfig()):
        super().__init__()
        if any(h < 1 for h in cfg.hidden):
            raise ValueError(
                f"hidden widths must be positive, got {cfg.hidden}"
            )
        self.cfg = cfg
        self.act = activation(cfg.activation)
        sizes = [cfg.d_in, *cfg.hidden, cfg.d_out]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)  # (B, d_in)
        if h.shape[1] != self.cfg.d_in:
            raise ValueError(
                f"input has {h.shape[1]} features per example, the MLP "
                f"expects d_in={self.cfg.d_in}"
            )
        for layer in self.layers[:-1]:
            h = self.act.fn(layer(h))  # (B, width)
        return self.layers[-1](h)  # (B, d_out)


class ParallelMLP(nn.Module):
    """Several MLPs of one shape, trained side by side as one batched network.

    Network s computes exactly what ``MLP`` computes, with its own weights:
    the layers are batched matrix products, h ← f(h W_s + b_s), one slice s
    per network, so S small networks cost about as many operations as one.
    The networks never interact. Trained with the loss ``summed_cross_entropy``
    (the sum over networks of each one's mean cross-entropy), each network's
    gradient is that of its own loss, and an element-wise optimizer such as
    Adam or SGD then makes S independent runs on the same batches.

    Args:
        nets: the ``MLP``s to start from (their weights are copied); all of
            one shape and activation.

    Shapes:
        input: (B, d_in) or (B, C, H, W); output: (B, S, d_out), the logits
        of every network.
    """

    def __init__(self, nets: Sequence[MLP]):
        super().__init__()
        if not nets:
            raise ValueError("nets must hold at least one MLP, got none")
        cfg = nets[0].cfg
        for i, net in enumerate(nets):
            if net.cfg != cfg:
                raise ValueError(
                    f"nets[{i}] has config {net.cfg}, nets[0] has {cfg}: "
                    "all networks must have one shape"
                )
        self.cfg, self.act = cfg, activation(cfg.activation)
        layers = range(len(nets[0].layers))
        # weights (S, n_in, n_out): the transpose of nn.Linear's, per network
        self.weights = nn.ParameterList(
            nn.Parameter(
                torch.stack([n.layers[i].weight.detach().T for n in nets])
            )
            for i in layers
        )
        self.biases = nn.ParameterList(
            nn.Parameter(
                torch.stack([n.layers[i].bias.detach() for n in nets])
            )
            for i in layers
        )

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)  # (B, d_in)
        if h.shape[1] != self.cfg.d_in:
            raise ValueError(
                f"input has {h.shape[1]} features per example, the MLPs "
                f"expect d_in={self.cfg.d_in}"
            )
        h = h.expand(len(self.weights[0]), -1, -1)  # (S, B, d_in)
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b[:, None, :], h, W)  # (S, B, n_out)
            if i < last:
                h = self.act.fn(h)
        return h.transpose(0, 1)  # (B, S, d_out)

    def split(self) -> list[MLP]:
        """The networks as separate ``MLP``s, with the current weights."""
        nets = []
        first = self.weights[0]
        for s in range(len(first)):
            net = MLP(self.cfg).to(dtype=first.dtype, device=first.device)
            with torch.no_grad():
                for layer, W, b in zip(net.layers, self.weights, self.biases):
                    layer.weight.copy_(W[s].T)
                    layer.bias.copy_(b[s])
            nets.append(net)
        return nets


class SideBySide(nn.Module):
    """Networks that read one input, their outputs side by side.

    ``ParallelMLP``s of several shapes (one per depth) become one model,
    trained by one loop: each step makes one backward pass and one optimizer
    update for all of them instead of one per shape. With the loss
    ``summed_cross_entropy`` the networks still never interact: each one's
    gradient is that of its own loss.

    Args:
        parts: the networks, each mapping (B, ...) to (B, S_j, d_out).

    Shapes:
        output: (B, S_1 + S_2 + ..., d_out), the parts' outputs in order.
    """

    def __init__(self, parts: Sequence[nn.Module]):
        super().__init__()
        if not parts:
            raise ValueError("parts must hold at least one network, got none")
        self.parts = nn.ModuleList(parts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([part(x) for part in self.parts], dim=1)


def summed_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Σ_s mean_i CE(logits[i, s], y_i): one mean cross-entropy per network.

    Shapes:
        logits: (B, S, K) from ``ParallelMLP``; y: (B,) integer classes.
    """
    B, S, K = logits.shape
    # cross_entropy takes the classes in dimension 1: (B, K, S) against (B, S)
    mean = nn.functional.cross_entropy(
        logits.transpose(1, 2), y[:, None].expand(B, S)
    )
    return mean * S


def count_params(d_in: int, hidden: Sequence[int], d_out: int) -> int:
    """Weights and biases of an MLP: Σ_l (n_{l−1} + 1) n_l."""
    sizes = [d_in, *hidden, d_out]
    names = ["d_in", *(f"hidden[{i}]" for i in range(len(hidden))), "d_out"]
    for name, size in zip(names, sizes):
        check_int(name, size, low=1)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def width_for_budget(
    budget: int, depth: int, d_in: int = 784, d_out: int = 10
) -> int:
    """The width h of ``depth`` hidden layers for a budget of parameters.

    For D = ``depth`` equal hidden layers the count is quadratic in h,

        P(h) = (D − 1) h² + (d_in + D + d_out) h + d_out.

    We solve P(h) = ``budget`` and return the neighbouring integer whose
    count comes closer.

    Raises:
        ValueError: ``depth`` < 1, or a budget too small for even one unit
            per layer.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1 hidden layer, got {depth}")
    check_int("depth", depth)
    check_int("budget", budget, low=1)
    smallest = count_params(d_in, [1] * depth, d_out)
    if budget < smallest:
        raise ValueError(
            f"budget={budget} is too small for {depth} hidden layers (one "
            f"unit each needs {smallest})"
        )
    a, b, c = depth - 1, d_in + depth + d_out, d_out - budget
    h = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    candidates = [w for w in (math.floor(h), math.ceil(h)) if w >= 1]
    return min(
        candidates,
        key=lambda w: abs(count_params(d_in, [w] * depth, d_out) - budget),
    )


@dataclass
class BudgetStudyConfig:
    """Deep versus wide: MLPs of several depths at one parameter budget."""

    budget: int = 100_000  # parameters of every network (weights and biases)
    depths: tuple[int, ...] = (1, 2, 4, 8)  # numbers of hidden layers
    seeds: tuple[int, ...] = (0, 1, 2)  # one network per seed and depth
    epochs: int = 10  # passes over the training set
    batch_size: int = 256  # examples per gradient step
    lr: float = 3e-3  # Adam's step size (Adam: a later chapter)
    activation: str = "relu"  # a key of ACTIVATIONS
    batch_seed: int = 0  # seeds the order of the batches, the same for all


def deep_vs_wide(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    cfg: BudgetStudyConfig = BudgetStudyConfig(),
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Train one MLP per depth and seed at an equal parameter budget.

    The seed decides a network's initial weights; every network sees the
    same batches in the same order. The seeds of one depth are trained side
    by side as one ``ParallelMLP``, and the depths side by side in one
    training loop (``SideBySide``): independent runs, batched to save time.
    Returns one record per network, with ``depth``, ``width``, ``params``,
    ``seed``, ``steps``, and the final ``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc``.
    """
    from dlbook.config import seed_everything
    from dlbook.train import evaluate, fit

    d_in, d_out = x_train[0].numel(), int(y_train.max()) + 1
    # evaluation batches: plain slices (a DataLoader would index example by
    # example, which costs more than the forward pass of these small MLPs)
    test = list(zip(x_test.split(2048), y_test.split(2048)))
    train_eval = list(zip(x_train.split(2048), y_train.split(2048)))
    parts = []
    for depth in cfg.depths:
        width = width_for_budget(cfg.budget, depth, d_in, d_out)
        shape = MLPConfig(d_in, (width,) * depth, d_out, cfg.activation)
        nets = []
        for seed in cfg.seeds:
            seed_everything(seed)
            nets.append(MLP(shape))
        parts.append(ParallelMLP(nets))
    # every depth and seed in one training loop, on the same batches
    model = SideBySide(parts).to(device)
    data = TensorDataset(x_train, y_train)
    # whole batches by one indexing (no per-example collation)
    order = RandomSampler(
        data, generator=torch.Generator().manual_seed(cfg.batch_seed)
    )
    loader = DataLoader(
        data,
        sampler=BatchSampler(order, cfg.batch_size, drop_last=False),
        batch_size=None,
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    fit(
        model,
        loader,
        opt,
        epochs=cfg.epochs,
        loss_fn=summed_cross_entropy,
        metrics={},
    )
    steps = cfg.epochs * len(loader)
    records = []
    for depth, part in zip(cfg.depths, model.parts, strict=True):
        for seed, net in zip(cfg.seeds, part.split()):
            tr, te = evaluate(net, train_eval), evaluate(net, test)
            records.append(
                dict(
                    depth=depth,
                    width=net.cfg.hidden[0],
                    params=sum(p.numel() for p in net.parameters()),
                    seed=seed,
                    steps=steps,
                    train_loss=tr["loss"],
                    train_acc=tr["acc"],
                    test_loss=te["loss"],
                    test_acc=te["acc"],
                )
            )
    return records

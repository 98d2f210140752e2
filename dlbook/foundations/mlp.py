"""From logistic regression to the multilayer perceptron.

The building blocks of every classifier in the book, written out so that each line can be
read against an equation of the chapter:

* activation functions (sigmoid, tanh, ReLU, leaky ReLU, GELU, softmax) and their
  derivatives, in closed form;
* logistic regression (Cox 1958) and softmax regression as maximum likelihood: the mean
  negative log-likelihood, its gradient in closed form, and full-batch gradient descent;
* the multilayer perceptron (Rumelhart, Hinton and Williams 1986), its parameter count, and
  the width that gives a network of a given depth a given parameter budget, for the
  deep-versus-wide comparison.

Checked against: ``torch.nn.functional`` (every activation and its autograd derivative,
``binary_cross_entropy_with_logits``, ``cross_entropy``) and scikit-learn's
``LogisticRegression`` (the L2-regularised fits give the same probabilities), in
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
from torch.utils.data import DataLoader, TensorDataset

from dlbook.checks import check_int, check_labels, check_number, check_tensor

# --- activation functions and their derivatives ---------------------------------------------


def sigmoid(x: Tensor) -> Tensor:
    """The logistic function :math:`\\sigma(x) = 1 / (1 + e^{-x})`.

    Computed from :math:`e^{-|x|}`, which never overflows: for :math:`x < 0` the equivalent
    form :math:`e^{x} / (1 + e^{x})` is used.
    """
    e = torch.exp(-x.abs())
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(x: Tensor) -> Tensor:
    """:math:`\\sigma'(x) = \\sigma(x)(1 - \\sigma(x))`, at most 1/4 (at 0)."""
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x: Tensor) -> Tensor:
    """:math:`\\tanh x = (1 - e^{-2x}) / (1 + e^{-2x})`, evaluated at :math:`|x|` and signed.

    ``expm1`` keeps the relative precision for tiny :math:`x`, where :math:`1 - e^{-2x}`
    would cancel.
    """
    e = torch.exp(-2 * x.abs())
    return torch.sign(x) * -torch.expm1(-2 * x.abs()) / (1 + e)


def tanh_grad(x: Tensor) -> Tensor:
    """:math:`\\tanh'(x) = 1 - \\tanh^2 x`, at most 1 (at 0)."""
    return 1 - tanh(x) ** 2


def relu(x: Tensor) -> Tensor:
    """:math:`\\mathrm{ReLU}(x) = \\max(0, x)`; NaN stays NaN, as in PyTorch."""
    return torch.where(x < 0, torch.zeros_like(x), x)


def relu_grad(x: Tensor) -> Tensor:
    """1 for :math:`x > 0`, else 0; at the kink :math:`x = 0` we take 0, as PyTorch does."""
    return (x > 0).to(x.dtype)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """:math:`x` for :math:`x > 0`, :math:`a x` otherwise (Maas et al. 2013); ``negative_slope`` is :math:`a`."""
    return torch.where(x > 0, x, negative_slope * x)


def leaky_relu_grad(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """1 for :math:`x > 0`, else :math:`a` (again the left value at the kink, as PyTorch)."""
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
    """GELU (Hendrycks and Gimpel 2016): :math:`x\\,\\Phi(x)`, :math:`\\Phi` the standard normal CDF.

    Args:
        x: any tensor.
        approximate: ``"none"`` for the exact form, ``"tanh"`` for
            :math:`\\tfrac12 x\\,(1 + \\tanh(\\sqrt{2/\\pi}\\,(x + 0.044715\\,x^3)))`, as in
            ``torch.nn.functional.gelu``.
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        return 0.5 * x * (1 + tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)))
    return x * _normal_cdf(x)


def gelu_grad(x: Tensor, approximate: str = "none") -> Tensor:
    """:math:`\\Phi(x) + x\\,\\varphi(x)` (exact), or the derivative of the tanh form."""
    _check_approximate(approximate)
    if approximate == "tanh":
        u = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)
        t = tanh(u)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * _SQRT_2_OVER_PI * (
            1 + 3 * _GELU_CUBIC * x**2
        )
    return _normal_cdf(x) + x * _normal_pdf(x)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """:math:`\\mathrm{softmax}(x)_k = e^{x_k} / \\sum_j e^{x_j}` along ``dim``.

    The maximum is subtracted first: the result is unchanged (numerator and denominator are
    multiplied by the same :math:`e^{-m}`) and no exponential can overflow.
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
    """The Jacobian of softmax over the last dimension: :math:`J = \\mathrm{diag}(s) - s s^\\top`.

    Shapes:
        x: (..., K) -> (..., K, K), with ``J[..., k, j]`` = :math:`\\partial s_k / \\partial x_j`.
    """
    s = softmax(x, dim=-1)
    return torch.diag_embed(s) - s[..., :, None] * s[..., None, :]


def softplus(x: Tensor) -> Tensor:
    """:math:`\\log(1 + e^x) = \\max(x, 0) + \\log(1 + e^{-|x|})`, which neither overflows nor loses :math:`x`."""
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


class Activation(NamedTuple):
    """An element-wise activation function and its derivative, both ``Tensor -> Tensor``."""

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
"""The element-wise activations by name (softmax acts on a vector, so it is not among them)."""


def activation(name: str) -> Activation:
    """Look up an element-wise activation by name (a key of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation {name!r} is not known; expected one of: {', '.join(ACTIVATIONS)}"
        ) from None


# --- logistic and softmax regression --------------------------------------------------------


def _check_xy(X: Tensor, y: Tensor, finite: bool = False) -> None:
    if not isinstance(X, Tensor) or X.ndim != 2:
        raise ValueError(
            f"X must be a (n, d) tensor of features, got {getattr(X, 'shape', type(X).__name__)}"
        )
    if not isinstance(y, Tensor) or y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"y must be a ({len(X)},) tensor of labels, one per row of X, got {getattr(y, 'shape', type(y).__name__)}"
        )
    check_tensor("X", X, floating=True, finite=finite, nonempty=True)


def logistic_nll(
    w: Tensor, b: Tensor, X: Tensor, y: Tensor, weight_decay: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Logistic regression's mean negative log-likelihood and its gradient, in closed form.

    With :math:`z_i = w^\\top x_i + b` and :math:`p_i = \\sigma(z_i)`,

    .. math::
        L = \\frac1n \\sum_i \\big[\\log(1 + e^{z_i}) - y_i z_i\\big] + \\frac\\lambda2 \\lVert w \\rVert^2,
        \\qquad \\nabla_w L = \\frac1n X^\\top (p - y) + \\lambda w, \\qquad
        \\frac{\\partial L}{\\partial b} = \\frac1n \\sum_i (p_i - y_i).

    Args:
        w: weights (d,); b: bias, a scalar tensor.
        X: features (n, d); y: labels (n,) in {0, 1} (any float or integer dtype).
        weight_decay: :math:`\\lambda`; the bias is not penalised.

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
    """Softmax regression's mean negative log-likelihood (cross-entropy) and its gradient.

    With logits :math:`Z = XW + b` and :math:`P = \\mathrm{softmax}(Z)` row by row, and
    :math:`Y` the one-hot labels,

    .. math::
        L = \\frac1n \\sum_i \\Big[\\log \\sum_k e^{Z_{ik}} - Z_{i y_i}\\Big] + \\frac\\lambda2 \\lVert W \\rVert_F^2,
        \\qquad \\nabla_W L = \\frac1n X^\\top (P - Y) + \\lambda W, \\qquad
        \\nabla_b L = \\frac1n \\mathbf 1^\\top (P - Y).

    Shapes:
        W: (d, K), b: (K,), X: (n, d), y: (n,) integer classes in [0, K).

    Returns:
        ``(loss, grad_W, grad_b)``.
    """
    _check_xy(X, y)
    check_labels("y", y, W.shape[-1])
    Z = X @ W + b  # (n, K)
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
    return loss, X.T @ R + weight_decay * W, R.sum(dim=0)


def smoothness(
    X: Tensor, multiclass: bool = False, weight_decay: float = 0.0
) -> float:
    """An upper bound :math:`L` on the curvature (Hessian eigenvalues) of the regression losses.

    The Hessian of :func:`logistic_nll` is :math:`\\frac1n X^\\top S X + \\lambda I` with
    :math:`S = \\mathrm{diag}(p_i(1-p_i)) \\preceq \\tfrac14 I`; that of :func:`softmax_nll` is
    bounded by :math:`\\tfrac12 \\frac1n X^\\top X \\otimes I + \\lambda I` (Böhning 1992). So

    .. math:: L = c\\,\\lambda_{\\max}\\big(\\tfrac1n X^\\top X\\big) + \\lambda, \\qquad c = \\tfrac14 \\text{ (logistic)}, \\tfrac12 \\text{ (softmax)},

    and gradient descent with step :math:`\\eta \\le 1/L` decreases the loss at every step.
    The bias acts as a constant feature, so it is included as a column of ones.
    """
    X = X.flatten(1)
    X1 = torch.cat([X, X.new_ones(len(X), 1)], dim=1).double()
    lam_max = float(torch.linalg.eigvalsh(X1.T @ X1 / len(X1))[-1])
    return (0.5 if multiclass else 0.25) * lam_max + weight_decay


@dataclass
class GDConfig:
    """Full-batch gradient descent."""

    lr: float = 0.5  # step size eta
    steps: int = 200  # number of gradient steps
    weight_decay: float = 0.0  # lambda of the L2 penalty (lambda / 2) ||w||^2; the bias is not penalised

    def __post_init__(self):
        check_number("lr", self.lr, low=0, low_open=True)
        check_int("steps", self.steps, low=0)
        check_number("weight_decay", self.weight_decay, low=0)


def gradient_descent(
    loss_and_grad: Callable[..., tuple],
    params: Sequence[Tensor],
    cfg: GDConfig,
) -> list[float]:
    """Minimise by :math:`\\theta \\leftarrow \\theta - \\eta \\nabla L(\\theta)`, updating ``params`` in place.

    Args:
        loss_and_grad: ``loss_and_grad(*params) -> (loss, *grads)``, one gradient per parameter.
        params: the starting point; overwritten with the result.
        cfg: step size and number of steps.

    Returns:
        The loss before each step and after the last (``cfg.steps + 1`` values).
    """
    if cfg.lr <= 0 or cfg.steps < 0:
        raise ValueError(
            f"GDConfig needs lr > 0 and steps >= 0, got lr={cfg.lr}, steps={cfg.steps}"
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
    """A fitted logistic (``weight`` (d,)) or softmax (``weight`` (d, K)) regression.

    Shapes:
        predict_proba: (n, d) -> (n,) probability of class 1 (logistic) or (n, K) (softmax).
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
    """Fit logistic regression by gradient descent on :func:`logistic_nll`, from zero weights.

    Args:
        X: features (n, d) (images are flattened); y: labels (n,) in {0, 1}.
    """
    X = X.flatten(1)
    _check_xy(X, y, finite=True)
    labels = set(torch.unique(y).tolist())
    if not labels <= {0, 1}:
        raise ValueError(
            f"y must hold the labels 0 and 1 for logistic regression, got {sorted(labels)}"
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
    """Fit softmax regression by gradient descent on :func:`softmax_nll`, from zero weights.

    Args:
        X: features (n, d) (images are flattened); y: integer classes (n,) in [0, K).
        num_classes: K; default: ``y.max() + 1``.
    """
    X = X.flatten(1)
    _check_xy(X, y, finite=True)
    K = int(y.max()) + 1 if num_classes is None else num_classes
    if y.dtype != torch.long or int(y.min()) < 0 or int(y.max()) >= K:
        raise ValueError(
            f"y must hold int64 classes in [0, {K}), got dtype {y.dtype} and range [{int(y.min())}, {int(y.max())}]"
        )
    W, b = X.new_zeros(X.shape[1], K), X.new_zeros(K)
    losses = gradient_descent(
        lambda W, b: softmax_nll(W, b, X, y, cfg.weight_decay), [W, b], cfg
    )
    return LinearClassifier(W, b, losses)


# --- the multilayer perceptron --------------------------------------------------------------


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
    """A multilayer perceptron: affine maps with an element-wise activation :math:`f` between them.

    .. math::
        h^{(0)} = x, \\qquad h^{(l)} = f\\big(W^{(l)} h^{(l-1)} + b^{(l)}\\big), \\; l = 1, \\dots, L,
        \\qquad \\text{logits} = W^{(L+1)} h^{(L)} + b^{(L+1)}.

    The output is a vector of logits; the softmax lives in the loss (``F.cross_entropy``),
    where it can be computed stably. Weights start as ``nn.Linear`` initialises them.

    Args:
        cfg: sizes and activation.

    Shapes:
        input: (B, d_in) or (B, C, H, W) with C*H*W = d_in (flattened); output: (B, d_out).
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
                f"input has {h.shape[1]} features per example, the MLP expects d_in={self.cfg.d_in}"
            )
        for layer in self.layers[:-1]:
            h = self.act.fn(layer(h))  # (B, width)
        return self.layers[-1](h)  # (B, d_out)


def count_params(d_in: int, hidden: Sequence[int], d_out: int) -> int:
    """Weights and biases of an MLP: :math:`\\sum_l (n_{l-1} + 1)\\, n_l`."""
    sizes = [d_in, *hidden, d_out]
    names = ["d_in", *(f"hidden[{i}]" for i in range(len(hidden))), "d_out"]
    for name, size in zip(names, sizes):
        check_int(name, size, low=1)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def width_for_budget(
    budget: int, depth: int, d_in: int = 784, d_out: int = 10
) -> int:
    """The width :math:`h` of ``depth`` equal hidden layers whose MLP has about ``budget`` parameters.

    The count is quadratic in :math:`h`:
    :math:`P(h) = (L - 1)\\,h^2 + (d_{in} + L + d_{out})\\,h + d_{out}` for :math:`L` hidden layers.
    We solve :math:`P(h) = ` ``budget`` and return whichever neighbouring integer comes closer.

    Raises:
        ValueError: ``depth`` < 1, or a budget too small for even one unit per layer.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1 hidden layer, got {depth}")
    check_int("depth", depth)
    check_int("budget", budget, low=1)
    smallest = count_params(d_in, [1] * depth, d_out)
    if budget < smallest:
        raise ValueError(
            f"budget={budget} is too small for {depth} hidden layers (one unit each needs {smallest})"
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
    """Deep versus wide: MLPs of several depths, each as wide as the parameter budget allows."""

    budget: int = 100_000  # parameters of every network (weights and biases)
    depths: tuple[int, ...] = (
        1,
        2,
        4,
        8,
    )  # numbers of hidden layers to compare
    seeds: tuple[int, ...] = (0, 1, 2)  # one training run per seed and depth
    epochs: int = 10  # passes over the training set
    batch_size: int = 256  # examples per gradient step
    lr: float = (
        3e-3  # Adam's step size (Adam is the subject of a later chapter)
    )
    activation: str = "relu"  # a key of ACTIVATIONS


def deep_vs_wide(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    cfg: BudgetStudyConfig = BudgetStudyConfig(),
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Train one MLP per depth and seed at an equal parameter budget; return one record per run.

    Every run sees the same data; the seed decides the initial weights and the batch order.
    Each record holds ``depth``, ``width``, ``params``, ``seed``, and the final ``train_loss``,
    ``train_acc``, ``test_loss``, ``test_acc``.
    """
    from dlbook.config import seed_everything
    from dlbook.train import evaluate, fit

    d_in, d_out = x_train[0].numel(), int(y_train.max()) + 1
    test = DataLoader(TensorDataset(x_test, y_test), batch_size=2048)
    train_eval = DataLoader(TensorDataset(x_train, y_train), batch_size=2048)
    records = []
    for depth in cfg.depths:
        width = width_for_budget(cfg.budget, depth, d_in, d_out)
        for seed in cfg.seeds:
            seed_everything(seed)
            model = MLP(
                MLPConfig(d_in, (width,) * depth, d_out, cfg.activation)
            ).to(device)
            loader = DataLoader(
                TensorDataset(x_train, y_train),
                batch_size=cfg.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(seed),
            )
            fit(
                model,
                loader,
                torch.optim.Adam(model.parameters(), lr=cfg.lr),
                epochs=cfg.epochs,
            )
            tr, te = evaluate(model, train_eval), evaluate(model, test)
            records.append(
                dict(
                    depth=depth,
                    width=width,
                    params=sum(p.numel() for p in model.parameters()),
                    seed=seed,
                    train_loss=tr["loss"],
                    train_acc=tr["acc"],
                    test_loss=te["loss"],
                    test_acc=te["acc"],
                )
            )
    return records

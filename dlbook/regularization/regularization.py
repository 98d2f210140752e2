"""Regularization: k-NN's bias and variance, L1 and L2 penalties, inverted dropout, early stopping.

* :func:`knn_predict` and :func:`bias_variance`: k-nearest neighbours and the decomposition of
  its expected squared error into noise, bias and variance (Hastie, Tibshirani & Friedman 2009,
  "The Elements of Statistical Learning", sections 2.3 and 7.3), the intuition for the rest.
* :class:`Penalty`: the L1 and L2 penalties on a network's weights, added to the training loss
  (``dlbook.train.fit(..., penalty=...)``); :func:`l1_logistic_regression` solves the convex
  L1 problem exactly with FISTA (Beck & Teboulle 2009), whose soft-thresholding step is where
  the exact zeros of the lasso come from (Tibshirani 1996).
* :class:`Dropout`: inverted dropout (Hinton et al. 2012; Srivastava et al. 2014).
* :class:`EarlyStopping`: stop when the validation metric has not improved for ``patience``
  epochs (Prechelt 1998), as a callback of ``dlbook.train.fit``.
* :class:`MLP`: the multilayer perceptron the chapter regularizes.

Checked against (``tests/regularization/test_regularization.py``): scikit-learn's
``KNeighborsClassifier``/``KNeighborsRegressor`` and ``LogisticRegression(l1_ratio=1,
solver="saga")``; ``torch.optim.SGD(weight_decay=...)`` for the L2 penalty; ``nn.Dropout``
(the same mask from the same generator state, and the same distribution); Keras's
``EarlyStopping`` (the same stopping epoch on the same metric sequences).

Chapter: ``book/regularization/regularization.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_int,
    check_labels,
    check_number,
    check_probability,
    check_tensor,
)
from dlbook.train import History

# --- k-nearest neighbours ---------------------------------------------------------------------


def _check_knn(x_train, y_train, x_query, k, regression, chunk):
    """The list of ``k`` values and whether one was given; clear errors otherwise."""
    check_tensor("x_train", x_train, floating=True, finite=True, nonempty=True)
    check_tensor("x_query", x_query, floating=True, finite=True)
    check_tensor("y_train", y_train, ndim=1)
    check_int("chunk", chunk, low=1)
    x_train, x_query = x_train.flatten(1), x_query.flatten(1)
    n = len(x_train)
    single = isinstance(k, (int, np.integer)) or (
        isinstance(k, torch.Tensor) and k.ndim == 0
    )
    ks = [k] if single else list(k)
    if not ks or not all(
        isinstance(j, (int, np.integer, torch.Tensor))
        and not isinstance(j, bool)
        and 1 <= int(j) <= n
        for j in ks
    ):
        raise ValueError(
            f"k must be an integer (or a list of them) between 1 and the {n} training points, got {k!r}"
        )
    ks = [check_int("k", j) for j in ks]
    if len(y_train) != n:
        raise ValueError(
            f"y_train has {len(y_train)} targets for {n} training points"
        )
    if regression:
        check_tensor("y_train", y_train, finite=True)
    else:
        # Any number of classes, but integer labels >= 0 (-1 is no class).
        check_labels("y_train", y_train, int(y_train.max()) + 1)
    if x_query.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"x_query has {x_query.shape[1]} features, x_train has {x_train.shape[1]}"
        )
    return ks, single


def knn_predict(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_query: torch.Tensor,
    k: int | Sequence[int],
    *,
    regression: bool = False,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predict with the k nearest training points in Euclidean distance.

    For regression the prediction is the neighbours' mean target,
    f̂(x) = (1/k) Σ y_i over the k nearest x_i; for classification it is the
    most frequent label among them (ties go to the smallest label, as in
    scikit-learn).

    Args:
        x_train: training inputs, flattened to (N, D).
        y_train: targets (N,): class indices, or real values if `regression`.
        x_query: inputs to predict, flattened to (M, D).
        k: number of neighbours, 1 <= k <= N; or a list of them, all
            predicted from one distance computation.
        regression: average the neighbours' targets instead of voting.
        chunk: queries per block, to bound the (chunk, N) distance matrix.

    Shapes:
        output: (M,) for one k, (len(k), M) for a list; the dtype of y_train
        for classification, floating point for regression.
    """
    ks, single = _check_knn(x_train, y_train, x_query, k, regression, chunk)
    x_train, x_query = x_train.flatten(1), x_query.flatten(1)
    sq_train = (x_train**2).sum(1)
    n_classes = None if regression else int(y_train.max()) + 1
    out = []
    for q in x_query.split(chunk):
        # ‖q - x‖² = ‖q‖² - 2 q·x + ‖x‖²; ‖q‖² does not change the order,
        # so it is left out.
        d2 = sq_train[None] - 2 * q @ x_train.T  # (chunk, N)
        # (chunk, max k): the indices of the nearest, nearest first
        idx = d2.topk(max(ks), dim=1, largest=False, sorted=True).indices
        neighbours = y_train[idx]
        if regression:
            values = (
                neighbours
                if neighbours.is_floating_point()
                else neighbours.to(torch.get_default_dtype())
            )
            out.append(torch.stack([values[:, :j].mean(1) for j in ks]))
        else:
            # (chunk, classes): the votes of the first j neighbours, for the
            # values of k in increasing order, counting only those in between
            votes = neighbours.new_zeros(len(q), n_classes)
            ones, done, by_k = torch.ones_like(neighbours), 0, {}
            for j in sorted(set(ks)):
                votes.scatter_add_(1, neighbours[:, done:j], ones[:, done:j])
                # argmax returns the first maximum: ties go to the smaller
                # label, as in scikit-learn
                by_k[j], done = votes.argmax(1), j
            out.append(torch.stack([by_k[j] for j in ks]))
    preds = torch.cat(out, dim=1)  # (len(ks), M)
    return preds[0] if single else preds


@dataclass
class BiasVariance:
    """Expected squared error at the test points, split as in :func:`bias_variance`.

    All values are averages over the test points; ``error`` is measured directly on fresh noisy
    targets, so ``error ~ noise + bias2 + variance`` up to Monte Carlo error.
    """

    noise: float
    bias2: float
    variance: float
    error: float


def bias_variance(
    fit_predict: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
    ],
    x_train: torch.Tensor,
    f_train: torch.Tensor,
    x_test: torch.Tensor,
    f_test: torch.Tensor,
    *,
    noise_std: float,
    repeats: int = 200,
    generator: torch.Generator | None = None,
) -> BiasVariance:
    """Monte Carlo bias-variance decomposition of squared error, for a fixed design.

    The training inputs stay fixed; each repeat draws new targets :math:`y = f(x) + \\varepsilon`,
    :math:`\\varepsilon \\sim \\mathcal N(0, \\sigma^2)`, fits, and predicts at the test inputs. At a
    test point :math:`x_0` with :math:`y_0 = f(x_0) + \\varepsilon_0`,

    .. math:: \\mathbb E\\,(y_0 - \\hat f(x_0))^2 = \\sigma^2
              + \\big(f(x_0) - \\mathbb E \\hat f(x_0)\\big)^2 + \\operatorname{Var} \\hat f(x_0).

    Args:
        fit_predict: ``fit_predict(x_train, y_train, x_test)`` -> predictions ``(M,)``.
        x_train, f_train: training inputs ``(N, ...)`` and the true function there ``(N,)``.
        x_test, f_test: test inputs ``(M, ...)`` and the true function there ``(M,)``.
        noise_std: :math:`\\sigma`, the standard deviation of the target noise.
        repeats: how many training sets to draw.
        generator: the random-number generator for the noise.
    """
    if repeats < 2:
        raise ValueError(
            f"repeats must be at least 2 to estimate a variance, got {repeats}"
        )
    check_int("repeats", repeats)
    check_number("noise_std", noise_std, low=0)
    preds = []
    for _ in range(repeats):
        y = f_train + noise_std * torch.randn(
            f_train.shape, generator=generator, dtype=f_train.dtype
        )
        preds.append(fit_predict(x_train, y, x_test).to(f_test.dtype))
    preds = torch.stack(preds)  # (repeats, M)
    y_test = f_test + noise_std * torch.randn(
        preds.shape, generator=generator, dtype=f_test.dtype
    )
    return BiasVariance(
        noise=noise_std**2,
        bias2=((preds.mean(0) - f_test) ** 2).mean().item(),
        variance=preds.var(0, unbiased=False).mean().item(),
        error=((y_test - preds) ** 2).mean().item(),
    )


# --- L1 and L2 penalties ----------------------------------------------------------------------


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters a weight penalty applies to: matrices and kernels, not biases or norm scales."""
    return [p for p in model.parameters() if p.ndim > 1]


@dataclass
class Penalty:
    """The elastic-net penalty on a model's weights (biases are not penalized):

        Ω(w) = λ₁ ‖w‖₁ + (λ₂/2) ‖w‖₂².

    Its gradient λ₁ sign(w) + λ₂ w is, for the L2 part, exactly what
    torch.optim.SGD(weight_decay=l2) adds to every gradient. Call it on a model
    to get the scalar to add to the loss: fit(..., penalty=Penalty(l2=1e-4)).
    """

    l1: float = 0.0  # lambda_1, the weight of the L1 norm
    l2: float = 0.0  # lambda_2, the weight of half the squared L2 norm

    def __post_init__(self):
        for name in ("l1", "l2"):
            check_number(name, getattr(self, name), low=0)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        weights = weight_parameters(model)
        if not weights:
            raise ValueError(
                f"{type(model).__name__} has no weight matrices to penalize"
            )
        total = weights[0].new_zeros(())
        for w in weights:
            if self.l1:
                total = total + self.l1 * w.abs().sum()
            if self.l2:
                total = total + 0.5 * self.l2 * (w * w).sum()
        return total


def soft_threshold(w: torch.Tensor, t: float) -> torch.Tensor:
    """The proximal operator of :math:`t\\lVert w \\rVert_1`: shrink every entry towards 0 by ``t``.

    .. math:: \\operatorname{prox}_{t\\lVert\\cdot\\rVert_1}(w)_i = \\operatorname{sign}(w_i)\\max(|w_i| - t, 0)

    Entries smaller than ``t`` in magnitude become exactly zero: the source of L1's sparsity.
    ``t`` must be non-negative: a negative threshold would grow the weights.
    """
    check_number("t", t, low=0)
    return w.sign() * (w.abs() - t).clamp(min=0)


@dataclass
class L1LogisticResult:
    """A fitted L1-regularized logistic regression.

    Shapes:
        weight: (D,); bias: () (not penalized); objective: (steps,), per iteration.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    objective: torch.Tensor


def l1_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, lam: float, *, steps: int = 2000
) -> L1LogisticResult:
    """Binary logistic regression with an L1 penalty, solved by FISTA (Beck & Teboulle 2009).

    Minimizes

    .. math:: \\frac{1}{n}\\sum_{i=1}^n \\log\\big(1 + e^{-s_i (w^\\top x_i + b)}\\big) + \\lambda \\lVert w \\rVert_1,
              \\qquad s_i = 2 y_i - 1 \\in \\{-1, 1\\},

    by a gradient step on the smooth loss followed by :func:`soft_threshold`, with Nesterov
    momentum. The step is :math:`1/L`, :math:`L = \\sigma_{\\max}([X, 1])^2 / (4n)` the Lipschitz
    constant of the loss's gradient. This is the problem scikit-learn solves with
    ``LogisticRegression(C=1 / (n * lam), l1_ratio=1)``.

    Args:
        x: inputs, flattened to ``(n, D)``; float64 recommended for a precise optimum.
        y: labels in {0, 1}, ``(n,)``.
        lam: :math:`\\lambda > 0`.
        steps: FISTA iterations.
    """
    check_tensor("x", x, floating=True, finite=True, nonempty=True)
    check_tensor("y", y, ndim=1)
    x = x.flatten(1)
    if len(y) != len(x):
        raise ValueError(
            f"x and y must have the same length, but x has {len(x)}, y has "
            f"{len(y)}"
        )
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam!r}")
    check_number("lam", lam, low=0, low_open=True)
    check_int("steps", steps, low=1)
    if not set(torch.unique(y).tolist()) <= {0, 1}:
        raise ValueError(
            f"y must hold labels 0 and 1, got values {torch.unique(y).tolist()}"
        )
    n, d = x.shape
    s = 2 * y.to(x.dtype) - 1
    xb = torch.cat([x, x.new_ones(n, 1)], 1)  # the bias is the last coordinate
    step = 4 * n / torch.linalg.matrix_norm(xb, 2) ** 2

    def smooth(theta):
        return F.softplus(-s * (xb @ theta)).mean()

    def grad(theta):
        return xb.T @ (-s * torch.sigmoid(-s * (xb @ theta))) / n

    theta = x.new_zeros(d + 1)
    z, t = theta.clone(), 1.0
    objective = []
    for _ in range(steps):
        new = z - step * grad(z)
        new[:d] = soft_threshold(
            new[:d], step * lam
        )  # the bias is not penalized
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = new + (t - 1) / t_next * (new - theta)
        theta, t = new, t_next
        objective.append(smooth(theta) + lam * theta[:d].abs().sum())
    return L1LogisticResult(theta[:d], theta[d], torch.stack(objective))


# --- dropout ----------------------------------------------------------------------------------


def dropout(
    x: torch.Tensor,
    p: float,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverted dropout: zero each entry with probability p, scale the rest.

        y = m ⊙ x / (1 - p),  m_i ~ Bernoulli(1 - p) independently,  E[y] = x.

    At evaluation (training=False) it is the identity: the scaling during
    training already made the expected activation equal to the un-dropped
    one, so nothing changes at test time. The mask is drawn as PyTorch's CPU
    kernel draws it (bernoulli_(1 - p), then x * (m / (1 - p))), so the same
    generator state gives the same output as F.dropout, bit for bit.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(
            f"dropout probability p must be between 0 and 1, got {p!r}"
        )
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0  # every unit dropped; 1/(1-p) would be infinite
    mask = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return x * (mask / (1 - p))


class Dropout(nn.Module):
    """Inverted dropout as a layer: :func:`dropout` in training mode, the identity in eval mode.

    Args:
        p: probability of zeroing an entry, in [0, 1].
        generator: where the masks' random bits come from; default PyTorch's global generator.

    Shapes:
        input: any; output: the same.
    """

    def __init__(
        self, p: float = 0.5, generator: torch.Generator | None = None
    ):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(
                f"dropout probability p must be between 0 and 1, got {p!r}"
            )
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# --- early stopping ---------------------------------------------------------------------------


class EarlyStopping:
    """Stop training once ``monitor`` has not improved for ``patience`` epochs; keep the best weights.

    A value improves on the best so far :math:`b` when it is below :math:`b - \\delta` (``mode="min"``)
    or above :math:`b + \\delta` (``mode="max"``), :math:`\\delta` = ``min_delta``. After epoch
    :math:`e` (counted from 0) training stops if :math:`e` was not an improvement, :math:`e > 0`,
    and :math:`e - e^\\star \\ge` ``patience``, with :math:`e^\\star` the last improving epoch. This
    is the rule of ``keras.callbacks.EarlyStopping`` (tested). The decision is a function of
    the history alone, so a run resumed from a checkpoint decides as the original would have.

    Use it as a callback: ``fit(..., callbacks=[stopper])``. With ``restore_best_weights`` the
    model gets the best epoch's weights back when training stops; if the epochs run out
    first, call :meth:`restore` yourself.

    Args:
        monitor: the history key to watch, e.g. ``"val_loss"`` or ``"val_acc"``.
        patience: epochs without improvement to tolerate.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"`` for losses, ``"max"`` for accuracies.
        restore_best_weights: load the best epoch's weights into the model on stopping.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best_weights: bool = True,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(
                f"patience must be a non-negative integer, got {patience!r}"
            )
        if min_delta < 0:
            raise ValueError(
                f"min_delta must be non-negative, got {min_delta!r}"
            )
        check_number("min_delta", min_delta, low=0)
        self.monitor, self.patience, self.min_delta, self.mode = (
            monitor,
            patience,
            min_delta,
            mode,
        )
        self.restore_best_weights = restore_best_weights
        self.best_epoch: int | None = None  # 0-based epoch of the best value
        self.stopped_epoch: int | None = (
            None  # 0-based epoch after which training stopped
        )
        self.best_state: dict[str, torch.Tensor] | None = None

    def improvements(self, values: Sequence[float]) -> list[bool]:
        """For each epoch, whether its value improved on the best before it."""
        best, out = None, []
        for v in values:
            better = best is None or (
                v < best - self.min_delta
                if self.mode == "min"
                else v > best + self.min_delta
            )
            if better:
                best = v
            out.append(better)
        return out

    def should_stop(self, values: Sequence[float]) -> bool:
        """The stopping rule applied after the last of `values`."""
        improved = self.improvements(values)
        e = len(values) - 1
        if e <= 0 or improved[-1]:
            return False
        last = max(i for i, flag in enumerate(improved) if flag)
        return e - last >= self.patience

    def __call__(self, model: nn.Module, history: History) -> bool:
        values = history[self.monitor]
        improved = self.improvements(values)
        if improved[-1]:
            self.best_epoch = len(values) - 1
            if self.restore_best_weights:
                self.best_state = copy.deepcopy(model.state_dict())
        if self.should_stop(values):
            self.stopped_epoch = len(values) - 1
            if self.restore_best_weights:
                self.restore(model)
            return True
        return False

    def restore(self, model: nn.Module) -> None:
        """Load the weights of the best epoch seen so far into ``model``."""
        if self.best_state is None:
            raise RuntimeError(
                "no best weights were recorded: was the stopper used as a callback of fit?"
            )
        model.load_state_dict(self.best_state)


# --- the model --------------------------------------------------------------------------------


@dataclass
class MLPConfig:
    """A multilayer perceptron for flattened images."""

    in_features: int = 784  # inputs per example (28 * 28 for MNIST)
    hidden: tuple[int, ...] = (256,)  # width of each hidden layer
    out_features: int = 10  # classes
    dropout: float = 0.0  # dropout probability after each hidden ReLU
    input_dropout: float = (
        0.0  # dropout probability on the inputs (0.2 in Srivastava et al.)
    )


class MLP(nn.Module):
    """``Flatten -> Dropout -> [Linear -> ReLU -> Dropout] x len(hidden) -> Linear``, with our :class:`Dropout`.

    Shapes:
        input: (B, ...) with ``in_features`` entries per example; output: (B, out_features) logits.
    """

    def __init__(self, cfg: MLPConfig | None = None):
        super().__init__()
        cfg = cfg or MLPConfig()
        if any(h < 1 for h in cfg.hidden):
            raise ValueError(
                f"hidden widths must be positive, got {cfg.hidden}"
            )
        check_int("in_features", cfg.in_features, low=1)
        check_int("out_features", cfg.out_features, low=1)
        for i, h in enumerate(cfg.hidden):
            check_int(f"hidden[{i}]", h, low=1)
        check_probability("input_dropout", cfg.input_dropout)
        self.cfg = cfg
        layers: list[nn.Module] = [nn.Flatten()]
        if cfg.input_dropout:
            layers.append(Dropout(cfg.input_dropout))
        width = cfg.in_features
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if cfg.dropout:
                layers.append(Dropout(cfg.dropout))
            width = h
        layers.append(nn.Linear(width, cfg.out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- reading a trained network's weights ------------------------------------------------------


@dataclass
class WeightStats:
    """What a weight distribution says about the penalty that shaped it.

    ``near_zero`` is the fraction of weights smaller in magnitude than ``tol`` times their
    standard deviation. A smooth, bell-shaped distribution puts little mass there (0.8% for a
    Gaussian and ``tol=0.01``); L1's soft thresholding piles weights up at zero, L2 does not.
    """

    std: float
    near_zero: float
    tol: float
    values: torch.Tensor = field(repr=False)


def weight_stats(
    weights: torch.Tensor | Iterable[torch.Tensor], tol: float = 0.01
) -> WeightStats:
    """:class:`WeightStats` of one tensor or of several, pooled."""
    if isinstance(weights, torch.Tensor):
        weights = [weights]
    weights = list(weights)
    if not weights:
        raise ValueError("weights must hold at least one tensor, got none")
    check_number("tol", tol, low=0)
    w = torch.cat([t.detach().flatten().double().cpu() for t in weights])
    if w.numel() < 2:
        raise ValueError(f"need at least 2 weights, got {w.numel()}")
    std = w.std(unbiased=False)
    return WeightStats(
        std.item(), (w.abs() < tol * std).double().mean().item(), tol, w
    )

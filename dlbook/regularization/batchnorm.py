"""Batch normalization and layer normalization in NumPy: forward, backward, running statistics.

Batch normalization (Ioffe & Szegedy 2015) standardizes each feature over the mini-batch and
then scales and shifts it with learned parameters; at evaluation it uses running averages
of the batch statistics instead. Layer normalization (Ba, Kiros & Hinton 2016) standardizes
each example over its features, so it behaves the same in training and evaluation and for
any batch size. The backward passes are derived by hand twice, as in Stanford's CS231n
assignment 2: stage by stage along the computational graph, and in closed form.

:class:`BatchNorm` and :class:`LayerNorm` are NumPy layers with ``forward``/``backward``;
:class:`TorchBatchNorm` puts our NumPy forward and backward inside a PyTorch network (a custom
``torch.autograd.Function``), so that the networks of the chapter train with our code.

Checked against (``tests/regularization/test_batchnorm.py``): a central-difference numerical
gradient in float64 (relative error at most 1e-8); ``torch.nn.BatchNorm1d`` and
``torch.nn.BatchNorm2d`` in training and evaluation mode, outputs, gradients and running
statistics over several steps; ``torch.nn.LayerNorm``.

Chapter: ``book/regularization/batchnorm.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlbook.checks import check_array, check_int, check_number, check_tensor

# --- the functions: 2-D input (M, C), statistics over axis 0 -------------------------------------


def _check_affine(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    axis: int = 0,
) -> None:
    """x (M, C) floating, gamma and beta (C,) each: no silent broadcasting.

    ``axis``: the one normalized over, which needs 2 values or more (one
    value has no spread: it would normalize to 0).
    """
    check_array("x", x, ndim=2, floating=True)
    if x.shape[axis] < 2:
        what = "per feature" if axis == 0 else "per example"
        raise ValueError(
            f"normalization needs more than 1 value {what}, got x of shape "
            f"{x.shape}, normalized over axis {axis}"
        )
    c = x.shape[1]
    check_array("gamma", np.asarray(gamma), shape=(c,))
    check_array("beta", np.asarray(beta), shape=(c,))
    check_number("eps", eps, low=0)


def _check_dout(dout: np.ndarray, shape: tuple[int, ...]) -> None:
    """The upstream gradient has exactly the forward output's shape."""
    check_array("dout", dout, floating=True)
    if dout.shape != tuple(shape):
        raise ValueError(
            f"dout must have the shape of the forward pass's output "
            f"{tuple(shape)}, got {dout.shape}"
        )


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, dict]:
    """Batch normalization in training mode, staged as a computational graph.

    For each feature (column), over the m rows of the batch:

        mu = Σᵢ xᵢ / m,                    var = Σᵢ (xᵢ - mu)² / m,
        xhatᵢ = (xᵢ - mu) / √(var + eps),  yᵢ = gamma · xhatᵢ + beta.

    Args:
        x: (m, C), m examples (or examples times positions) of C features.
        gamma, beta: (C,) scale and shift.
        eps: added to the variance before the square root.

    Returns:
        y (m, C) and the cache the backward pass needs (the batch mean
        and biased variance are in it, as "mu" and "var").
    """
    _check_affine(x, gamma, beta, eps)  # and M >= 2
    m = x.shape[0]
    mu = x.sum(0) / m
    xmu = x - mu
    sq = xmu**2
    var = sq.sum(0) / m
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    out = gamma * xhat + beta
    return out, dict(
        xmu=xmu,
        var=var,
        sqrtvar=sqrtvar,
        ivar=ivar,
        xhat=xhat,
        gamma=gamma,
        eps=eps,
        mu=mu,
    )


def batchnorm_backward(
    dout: np.ndarray, cache: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of batchnorm_forward, one node of the graph at a time.

    Each line is the chain rule through one line of the forward pass, read
    from the bottom up (as in CS231n).

    Returns:
        dx (m, C), dgamma (C,), dbeta (C,).
    """
    xmu, var, sqrtvar, ivar, xhat, gamma = (
        cache[k] for k in ("xmu", "var", "sqrtvar", "ivar", "xhat", "gamma")
    )
    _check_dout(dout, xhat.shape)
    m = dout.shape[0]
    dbeta = dout.sum(0)  # out = gamma * xhat + beta
    dgamma = (dout * xhat).sum(0)
    dxhat = dout * gamma
    divar = (dxhat * xmu).sum(0)  # xhat = xmu * ivar
    dxmu1 = dxhat * ivar
    dsqrtvar = -divar / sqrtvar**2  # ivar = 1 / sqrtvar
    # sqrtvar = sqrt(var + eps)
    dvar = 0.5 * dsqrtvar / np.sqrt(var + cache["eps"])
    dsq = np.ones_like(xmu) * dvar / m  # var = sum(sq) / m
    dxmu2 = 2 * xmu * dsq  # sq = xmu ** 2
    dx1 = dxmu1 + dxmu2  # xmu = x - mu: x's direct path ...
    dmu = -dx1.sum(0)
    dx2 = np.ones_like(xmu) * dmu / m  # ... and through mu = sum(x) / m
    return dx1 + dx2, dgamma, dbeta


def batchnorm_backward_alt(
    dout: np.ndarray, cache: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same gradients in closed form.

    With gᵢ = gamma · ∂L/∂yᵢ for each of the m rows,

        ∂L/∂xᵢ = (m gᵢ - Σⱼ gⱼ - xhatᵢ Σⱼ gⱼ xhatⱼ) / (m √(var + eps)).
    """
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    _check_dout(dout, xhat.shape)
    m = dout.shape[0]
    g = dout * gamma
    dx = ivar / m * (m * g - g.sum(0) - xhat * (g * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def layernorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, dict]:
    """Layer normalization: batchnorm_forward with the two axes swapped.

    Each row of x (m, C) is standardized over its C features, then scaled and
    shifted per feature by gamma and beta (C,). There are no running statistics.
    """
    _check_affine(x, gamma, beta, eps, axis=1)
    out_t, cache = batchnorm_forward(
        x.T, np.ones(x.shape[0], x.dtype), np.zeros(x.shape[0], x.dtype), eps
    )
    xhat = out_t.T
    cache.update(xhat_ln=xhat, gamma_ln=gamma)
    return gamma * xhat + beta, cache


def layernorm_backward(
    dout: np.ndarray, cache: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`layernorm_forward`: the batch-norm backward on the transpose."""
    _check_dout(dout, cache["xhat_ln"].shape)
    dxhat = dout * cache["gamma_ln"]
    dx_t, _, _ = batchnorm_backward_alt(
        dxhat.T, cache
    )  # cache's gamma is 1: dxhat is the incoming gradient
    return dx_t.T, (dout * cache["xhat_ln"]).sum(0), dout.sum(0)


# --- the layers ---------------------------------------------------------------------------------


def _to_2d(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(N, C)`` stays; ``(N, C, L)`` and ``(N, C, H, W)`` become ``(N * L, C)`` / ``(N * H * W, C)``."""
    if x.ndim == 2:
        return x, x.shape
    moved = np.moveaxis(x, 1, -1)  # (N, ..., C)
    return moved.reshape(-1, x.shape[1]), moved.shape


def _output_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The layer's input (and output) shape, from :func:`_to_2d`'s second result."""
    if len(shape) == 2:
        return tuple(shape)
    return (shape[0], shape[-1], *shape[1:-1])


def _from_2d(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 2:
        return y
    return np.moveaxis(y.reshape(shape), -1, 1)


@dataclass
class BatchNormConfig:
    """Hyperparameters of batch normalization, named and defaulted as in PyTorch."""

    num_features: int  # C, the number of features (channels)
    eps: float = 1e-5  # added to the variance: keeps the division finite
    momentum: float | None = (
        0.1  # running = (1 - momentum) * running + momentum * batch; None: cumulative average
    )


class BatchNorm:
    """Batch normalization as a NumPy layer, for ``(N, C)``, ``(N, C, L)`` and ``(N, C, H, W)`` input.

    Training mode normalizes with the batch's statistics (over every axis but the channel
    axis 1) and updates the running estimates

    .. math:: \\hat\\mu \\leftarrow (1-\\rho)\\hat\\mu + \\rho\\,\\mu_B, \\qquad
              \\hat\\sigma^2 \\leftarrow (1-\\rho)\\hat\\sigma^2 + \\rho \\frac{M}{M-1}\\sigma_B^2,

    :math:`\\rho` = ``momentum``, with the *unbiased* batch variance as PyTorch does (the
    normalization itself uses the biased one). Evaluation mode uses :math:`\\hat\\mu, \\hat\\sigma^2`:
    a fixed affine map of each feature.

    Args:
        cfg: the hyperparameters.
        dtype: of the parameters and statistics.

    Shapes:
        input: (N, C) or (N, C, L) or (N, C, H, W); output: the same.
    """

    def __init__(self, cfg: BatchNormConfig, dtype=np.float64):
        if cfg.num_features < 1:
            raise ValueError(
                f"num_features must be positive, got {cfg.num_features}"
            )
        if cfg.eps < 0:
            raise ValueError(f"eps must be non-negative, got {cfg.eps}")
        check_int("num_features", cfg.num_features, low=1)
        check_number("eps", cfg.eps, low=0)
        if cfg.momentum is not None:
            check_number("momentum", cfg.momentum, low=0, high=1)
        if cfg.momentum is not None and not 0 <= cfg.momentum <= 1:
            raise ValueError(
                f"momentum must be between 0 and 1 or None, got {cfg.momentum}"
            )
        self.cfg = cfg
        c = cfg.num_features
        self.gamma, self.beta = np.ones(c, dtype), np.zeros(c, dtype)
        self.running_mean, self.running_var = (
            np.zeros(c, dtype),
            np.ones(c, dtype),
        )
        self.num_batches_tracked = 0
        self.training = True
        self.dgamma = self.dbeta = None
        self._cache: dict | None = None

    def train(self, mode: bool = True) -> BatchNorm:
        self.training = mode
        return self

    def eval(self) -> BatchNorm:
        return self.train(False)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_array("x", x, floating=True)
        if x.ndim not in (2, 3, 4) or x.shape[1] != self.cfg.num_features:
            raise ValueError(
                f"expected input of shape (N, {self.cfg.num_features}"
                f"[, L | H, W]), got {tuple(x.shape)}"
            )
        # Statistics in float64, as PyTorch accumulates them on the CPU: in
        # float32 the mean of values far from 0 loses the spread's digits.
        x2, shape = _to_2d(x.astype(np.float64, copy=False))
        if self.training:
            m = x2.shape[0]
            if m < 2:
                raise ValueError(
                    "batch normalization needs more than 1 value per "
                    f"channel in training, got input {x.shape}"
                )
            out, cache = batchnorm_forward(
                x2, self.gamma, self.beta, self.cfg.eps
            )
            self.num_batches_tracked += 1
            rho = (
                1.0 / self.num_batches_tracked
                if self.cfg.momentum is None
                else self.cfg.momentum
            )
            dtype = self.running_mean.dtype  # the layer's, kept
            self.running_mean = (
                (1 - rho) * self.running_mean + rho * cache["mu"]
            ).astype(dtype)
            self.running_var = (
                (1 - rho) * self.running_var + rho * cache["var"] * m / (m - 1)
            ).astype(dtype)
            cache["mode"] = "train"
        else:
            ivar = 1.0 / np.sqrt(self.running_var + self.cfg.eps)
            xhat = (x2 - self.running_mean) * ivar
            out = self.gamma * xhat + self.beta
            cache = dict(xhat=xhat, ivar=ivar, gamma=self.gamma, mode="eval")
        self._cache = dict(cache, shape=shape)
        return _from_2d(out.astype(x.dtype, copy=False), shape)

    __call__ = forward

    def backward(
        self, dout: np.ndarray, closed_form: bool = True
    ) -> np.ndarray:
        """Gradient with respect to the input; ``dgamma`` and ``dbeta`` are stored on the layer."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        cache = self._cache
        _check_dout(dout, _output_shape(cache["shape"]))
        d2, _ = _to_2d(dout)
        if cache["mode"] == "train":
            dx, self.dgamma, self.dbeta = (
                batchnorm_backward_alt if closed_form else batchnorm_backward
            )(d2, cache)
        else:  # an affine map with fixed statistics
            dx = d2 * self.gamma * cache["ivar"]
            self.dgamma, self.dbeta = (d2 * cache["xhat"]).sum(0), d2.sum(0)
        return _from_2d(dx.astype(dout.dtype, copy=False), cache["shape"])


class LayerNorm:
    """Layer normalization over the last axis, as a NumPy layer (``nn.LayerNorm(C)``).

    .. math:: y = \\gamma \\frac{x - \\mu(x)}{\\sqrt{\\sigma^2(x) + \\epsilon}} + \\beta,
              \\quad \\mu, \\sigma^2 \\text{ over the } C \\text{ features of each example.}

    Shapes:
        input: (..., C); output: the same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, dtype=np.float64):
        if num_features < 1:
            raise ValueError(
                f"num_features must be positive, got {num_features}"
            )
        check_int("num_features", num_features, low=2)  # 1 would give beta
        check_number("eps", eps, low=0)
        self.num_features, self.eps = num_features, eps
        self.gamma, self.beta = (
            np.ones(num_features, dtype),
            np.zeros(num_features, dtype),
        )
        self.dgamma = self.dbeta = None
        self._cache: dict | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_array("x", x, ndim=range(1, 33), floating=True)
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"expected input of shape (..., {self.num_features}), got {tuple(x.shape)}"
            )
        out, cache = layernorm_forward(
            x.reshape(-1, self.num_features), self.gamma, self.beta, self.eps
        )
        self._cache = dict(cache, shape=x.shape)
        return out.reshape(x.shape).astype(x.dtype, copy=False)

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        _check_dout(dout, self._cache["shape"])
        dx, self.dgamma, self.dbeta = layernorm_backward(
            dout.reshape(-1, self.num_features), self._cache
        )
        return dx.reshape(self._cache["shape"]).astype(dout.dtype, copy=False)


# --- inside a PyTorch network -------------------------------------------------------------------


class _NumpyNorm(torch.autograd.Function):
    """Runs a NumPy layer's forward and backward as one autograd node."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        layer.gamma = weight.detach().cpu().numpy()
        layer.beta = bias.detach().cpu().numpy()
        ctx.layer = layer
        return torch.from_numpy(layer.forward(x.detach().cpu().numpy())).to(
            x.device
        )

    @staticmethod
    def backward(ctx, dout):
        layer = ctx.layer
        dx = torch.from_numpy(layer.backward(dout.detach().cpu().numpy())).to(
            dout.device
        )
        return (
            dx,
            torch.from_numpy(layer.dgamma).to(dout),
            torch.from_numpy(layer.dbeta).to(dout),
            None,
        )


class TorchBatchNorm(nn.Module):
    """Our NumPy :class:`BatchNorm` as a drop-in for ``nn.BatchNorm1d``/``nn.BatchNorm2d``.

    ``weight`` (:math:`\\gamma`) and ``bias`` (:math:`\\beta`) are PyTorch parameters, so any
    optimizer trains them; the running statistics are buffers, saved in the ``state_dict`` under
    PyTorch's names. Forward and backward run in NumPy on the CPU (and move back to the input's
    device), so this layer is for learning and checking, not for speed.

    Shapes:
        input: (N, C) or (N, C, L) or (N, C, H, W); output: the same.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ):
        super().__init__()
        self.cfg = BatchNormConfig(num_features, eps, momentum)
        BatchNorm(self.cfg)  # validates the configuration
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True)
        dtype = x.detach().cpu().numpy().dtype
        layer = BatchNorm(self.cfg, dtype=dtype).train(self.training)
        layer.running_mean = self.running_mean.cpu().numpy().astype(dtype)
        layer.running_var = self.running_var.cpu().numpy().astype(dtype)
        layer.num_batches_tracked = int(self.num_batches_tracked)
        out = _NumpyNorm.apply(
            x, self.weight.to(x.dtype), self.bias.to(x.dtype), layer
        )
        if self.training:
            with torch.no_grad():
                self.running_mean.copy_(torch.from_numpy(layer.running_mean))
                self.running_var.copy_(torch.from_numpy(layer.running_var))
                self.num_batches_tracked.fill_(layer.num_batches_tracked)
        return out

    def extra_repr(self) -> str:
        return f"{self.cfg.num_features}, eps={self.cfg.eps}, momentum={self.cfg.momentum} (NumPy)"


# --- checking gradients -------------------------------------------------------------------------


def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, h: float = 1e-3, order: int = 4
) -> np.ndarray:
    """Central-difference gradient of ``f`` with respect to every entry of ``x`` (perturbed in place).

    ``order=2``: :math:`(f(x+h) - f(x-h)) / 2h`, error :math:`O(h^2)`;
    ``order=4``: the five-point stencil :math:`(-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h`,
    error :math:`O(h^4)`, which allows a larger ``h`` and so less rounding error: what a
    relative error of 1e-8 on small gradient entries needs. ``f`` reads ``x`` (a closure over
    it); each entry is restored after use.
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]

        def at(delta, i=i, old=old):
            x[i] = old + delta
            return f()

        if order == 2:
            grad[i] = (at(h) - at(-h)) / (2 * h)
        else:
            grad[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (
                12 * h
            )
        x[i] = old
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """The largest elementwise relative error :math:`|a-b| / \\max(10^{-8}, |a| + |b|)` (as in CS231n)."""
    return float(
        np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))
    )


# --- the training data of the chapter ---------------------------------


class RandomBatches:
    """Mini-batches drawn with replacement, ``every`` of them per pass.

    A loader for ``dlbook.train.fit`` that evaluates every ``every`` steps:
    each pass over it (one ``fit`` epoch) yields the next ``every`` batches
    ``(x[i], y[i])`` of ``batch_size`` examples. The indices of all ``steps``
    come from one draw of a generator seeded with ``seed``, so a run depends
    on its seed alone, and a batch is one indexing operation, not a
    DataLoader's collation of ``batch_size`` single examples.

    Shapes:
        x: (N, ...); y: (N,); each batch: (batch_size, ...), (batch_size,).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        steps: int,
        every: int,
        batch_size: int,
        seed: int = 0,
    ):
        check_tensor("x", x, nonempty=True)
        check_tensor("y", y, shape=(len(x),))
        check_int("every", every, low=1)
        check_int("steps", steps, low=every)
        check_int("batch_size", batch_size, low=1)
        check_int("seed", seed, low=0)
        generator = torch.Generator().manual_seed(seed)
        shape = (steps // every, every, batch_size)
        self.x, self.y = x, y
        self.index = torch.randint(len(x), shape, generator=generator)
        self.passes = 0  # how many passes have been drawn

    def __len__(self) -> int:
        return self.index.shape[1]

    def __iter__(self):
        if self.passes == len(self.index):
            raise RuntimeError(
                f"all {len(self.index)} passes of {len(self)} batches have "
                "been drawn; make a new RandomBatches for more steps"
            )
        chunk = self.index[self.passes]
        self.passes += 1
        for i in chunk:
            yield self.x[i], self.y[i]


# --- the networks of the chapter ----------------------------------------------------------------


def deep_mlp(
    depth: int = 3,
    width: int = 100,
    norm: str | None = "ours",
    *,
    activation: type[nn.Module] = nn.Sigmoid,
    eps: float = 1e-5,
    in_features: int = 784,
    out_features: int = 10,
) -> nn.Sequential:
    """``depth`` hidden layers ``Linear -> norm -> activation`` and a linear classifier.

    The network of Ioffe & Szegedy's MNIST experiment is ``deep_mlp(3, 100)``: three hidden
    layers of 100 sigmoid units, normalized before the nonlinearity.

    Args:
        norm: ``None`` (no normalization), ``"ours"`` (:class:`TorchBatchNorm`), ``"torch"``
            (``nn.BatchNorm1d``) or ``"layer"`` (``nn.LayerNorm``).
        eps: the normalization's :math:`\\epsilon`.

    Shapes:
        input: (B, ...) with ``in_features`` entries per example; output: (B, out_features).
    """
    norms = {
        None: None,
        "ours": lambda: TorchBatchNorm(width, eps=eps),
        "torch": lambda: nn.BatchNorm1d(width, eps=eps),
        "layer": lambda: nn.LayerNorm(width, eps=eps),
    }
    if norm not in norms:
        raise ValueError(f"norm must be one of {list(norms)}, got {norm!r}")
    if depth < 1 or width < 1:
        raise ValueError(
            f"depth and width must be positive, got depth={depth}, width={width}"
        )
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers.append(nn.Linear(in_features if i == 0 else width, width))
        if norm is not None:
            layers.append(norms[norm]())
        layers.append(activation())
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)

"""Backpropagation from scratch: reverse-mode autodiff on NumPy arrays.

Three views of the same algorithm (Rumelhart, Hinton and Williams 1986;
Griewank and Walther 2008; Baydin et al. 2018):

* ``Tensor``: a small reverse-mode autodiff engine. Every operation on a
  ``Tensor`` records its inputs and a function that turns the gradient of its
  output into gradients of its inputs (a vector-Jacobian product);
  ``Tensor.backward`` replays them in reverse topological order. This is the
  design of ``torch.autograd`` in miniature.
* ``mlp_backward``: the layer-wise backpropagation equations of an MLP
  written out by hand, the δ recursion of the chapter.
* ``numerical_gradient`` and ``gradient_check``: central differences, the
  test every hand-written gradient has to pass.

``MLP`` and ``train`` use the engine to train a multilayer perceptron on
MNIST with minibatch stochastic gradient descent, in NumPy only.

Checked against: ``torch.autograd`` in float64 (every operation, the MLP's
gradients, and a whole SGD run step for step), and central differences with
relative error below 1e-7, in ``tests/foundations/test_backprop.py``.

Chapter: ``book/foundations/backprop.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dlbook.checks import (
    check_array,
    check_int,
    check_labels,
    check_nonempty,
    check_number,
    check_same_length,
)
from dlbook.train import History

# --- the engine -------------------------------------------------------------


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched.

    The result has ``shape``. If ``b`` of shape (K,) was added to every row
    of an (N, K) array, each entry of ``b`` influenced N outputs, and its
    gradient is the sum of theirs.
    """
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Tensor:
    """A NumPy array that remembers how it was computed.

    For an output y = f(x₁, ..., x_k) on the way to a scalar loss ℓ, each
    operation stores a function that receives ȳ = ∂ℓ/∂y and adds the
    vector-Jacobian products

        x̄_i += ȳ ∂y/∂x_i

    to its inputs' ``grad``. ``backward`` calls these functions from the loss
    back to the leaves. Gradients accumulate, as in PyTorch, until
    ``zero_grad``.

    Args:
        data: an array or a number; integers become float64, floating dtypes
            are kept.
        requires_grad: whether a gradient is wanted for this leaf. An
            operation's result requires a gradient if any of its inputs does;
            otherwise no graph is recorded.

    Shapes:
        ``data`` and ``grad`` always have the same shape.
    """

    __array_priority__ = 1000  # ndarray + Tensor defers to Tensor.__radd__

    def __init__(
        self,
        data,
        requires_grad: bool = False,
        _parents: tuple[Tensor, ...] = (),
        _op: str = "",
    ):
        _raw = data
        data = np.asarray(data)
        if not (
            np.issubdtype(data.dtype, np.floating)
            or np.issubdtype(data.dtype, np.integer)
            or data.dtype == np.bool_
        ):
            raise TypeError(
                f"data must be real numbers (an array, a number or a nested "
                f"list), got dtype {data.dtype} from {type(_raw).__name__}"
            )
        self.data = (
            data
            if np.issubdtype(data.dtype, np.floating)
            else data.astype(np.float64)
        )
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._parents = _parents
        self._op = _op
        self._backward: Callable[[np.ndarray], None] = lambda g: None

    # -- bookkeeping --

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def __repr__(self) -> str:
        op = f", op={self._op!r}" if self._op else ""
        return (
            f"Tensor(shape={self.shape}, dtype={self.data.dtype}{op}, "
            f"requires_grad={self.requires_grad})"
        )

    def numpy(self) -> np.ndarray:
        return self.data

    def zero_grad(self) -> None:
        self.grad = None

    def _accumulate(self, g: np.ndarray) -> None:
        if self.requires_grad:
            self.grad = g.copy() if self.grad is None else self.grad + g

    @staticmethod
    def _lift(other) -> Tensor:
        return other if isinstance(other, Tensor) else Tensor(other)

    def _result(
        self,
        data: np.ndarray,
        parents: tuple[Tensor, ...],
        op: str,
        backward: Callable[[np.ndarray], None],
    ) -> Tensor:
        """A new node; its backward is kept if a parent needs a gradient."""
        needs = any(p.requires_grad for p in parents)
        out = Tensor(
            data,
            requires_grad=needs,
            _parents=parents if needs else (),
            _op=op,
        )
        if needs:
            out._backward = backward
        return out

    # -- arithmetic (with NumPy broadcasting) --

    def __add__(self, other) -> Tensor:
        other = self._lift(other)

        def backward(g):
            self._accumulate(_unbroadcast(g, self.shape))
            other._accumulate(_unbroadcast(g, other.shape))

        return self._result(
            self.data + other.data, (self, other), "add", backward
        )

    def __mul__(self, other) -> Tensor:
        other = self._lift(other)

        def backward(g):
            self._accumulate(_unbroadcast(g * other.data, self.shape))
            other._accumulate(_unbroadcast(g * self.data, other.shape))

        return self._result(
            self.data * other.data, (self, other), "mul", backward
        )

    def __pow__(self, exponent: float) -> Tensor:
        if not isinstance(exponent, (int, float)):
            raise TypeError(
                f"exponent must be a number, got {type(exponent).__name__}"
            )

        def backward(g):
            self._accumulate(g * exponent * self.data ** (exponent - 1))

        return self._result(self.data**exponent, (self,), "pow", backward)

    def __neg__(self) -> Tensor:
        return self * -1.0

    def __sub__(self, other) -> Tensor:
        return self + (-self._lift(other))

    def __truediv__(self, other) -> Tensor:
        return self * self._lift(other) ** -1.0

    def __radd__(self, other) -> Tensor:
        return self + other

    def __rmul__(self, other) -> Tensor:
        return self * other

    def __rsub__(self, other) -> Tensor:
        return self._lift(other) - self

    def __rtruediv__(self, other) -> Tensor:
        return self._lift(other) / self

    def __matmul__(self, other) -> Tensor:
        """Matrix product of two 2-D tensors: (n, k) @ (k, m) -> (n, m)."""
        other = self._lift(other)
        if self.ndim != 2 or other.ndim != 2:
            raise ValueError(
                f"matmul takes two 2-D tensors, got shapes {self.shape} and "
                f"{other.shape}"
            )

        # Y = A B:  dA = dY Bᵀ,  dB = Aᵀ dY (each product only if it is needed)
        def backward(g):
            if self.requires_grad:
                self._accumulate(g @ other.data.T)
            if other.requires_grad:
                other._accumulate(self.data.T @ g)

        return self._result(
            self.data @ other.data, (self, other), "matmul", backward
        )

    # -- reductions and shapes --

    def sum(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            self._accumulate(np.broadcast_to(g, self.shape))

        return self._result(
            self.data.sum(axis=axis, keepdims=keepdims),
            (self,),
            "sum",
            backward,
        )

    def mean(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        n = self.data.size if axis is None else self.shape[axis]
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / n)

    def reshape(self, *shape: int) -> Tensor:
        def backward(g):
            self._accumulate(g.reshape(self.shape))

        return self._result(
            self.data.reshape(*shape), (self,), "reshape", backward
        )

    @property
    def T(self) -> Tensor:
        def backward(g):
            self._accumulate(g.T)

        return self._result(self.data.T, (self,), "transpose", backward)

    # -- element-wise functions: each backward multiplies by the derivative --

    def exp(self) -> Tensor:
        y = np.exp(self.data)
        return self._result(
            y, (self,), "exp", lambda g: self._accumulate(g * y)
        )

    def log(self) -> Tensor:
        return self._result(
            np.log(self.data),
            (self,),
            "log",
            lambda g: self._accumulate(g / self.data),
        )

    def tanh(self) -> Tensor:
        y = np.tanh(self.data)
        return self._result(
            y, (self,), "tanh", lambda g: self._accumulate(g * (1 - y * y))
        )

    def sigmoid(self) -> Tensor:
        # = 1 / (1 + exp(-x)), without overflow
        y = 0.5 * (1 + np.tanh(0.5 * self.data))
        return self._result(
            y, (self,), "sigmoid", lambda g: self._accumulate(g * y * (1 - y))
        )

    def relu(self) -> Tensor:
        # the derivative at 0 is taken to be 0, as in PyTorch
        active = self.data > 0
        return self._result(
            np.where(active, self.data, 0.0).astype(self.data.dtype),
            (self,),
            "relu",
            lambda g: self._accumulate(g * active),
        )

    def log_softmax(self, axis: int = -1) -> Tensor:
        """log softmax(z) = z − log Σ_j exp(z_j).

        Its vector-Jacobian product is ȳ − softmax(z) Σ_j ȳ_j.
        """
        z = self.data - self.data.max(axis=axis, keepdims=True)
        y = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))

        def backward(g):
            self._accumulate(g - np.exp(y) * g.sum(axis=axis, keepdims=True))

        return self._result(y, (self,), "log_softmax", backward)

    # -- the reverse sweep --

    def backward(self, grad: np.ndarray | None = None) -> None:
        """The gradient of this tensor with respect to every leaf needing one.

        Args:
            grad: ∂ℓ/∂``self``; may be left out only for a scalar (it is then
                1).

        Raises:
            ValueError: for a non-scalar without ``grad``, or a tensor that
                needs no gradient.
        """
        if not self.requires_grad:
            raise ValueError(
                "backward() on a tensor that does not require a gradient: no "
                "input had requires_grad=True"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    "backward() without grad needs a scalar, got shape "
                    f"{self.shape}"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(
                f"grad has shape {grad.shape}, expected {self.shape}"
            )
        order = topological_order(self)
        self._accumulate(grad)
        # reversed: every node comes after all the nodes that use it
        for node in reversed(order):
            if node.grad is not None:
                node._backward(node.grad)


def topological_order(root: Tensor) -> list[Tensor]:
    """The nodes of ``root``'s graph, each after all of its parents.

    An iterative depth-first search, so a long chain cannot overflow Python's
    recursion limit.
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node._parents if id(p) not in seen)
    return order


def cross_entropy(logits: Tensor, targets: np.ndarray) -> Tensor:
    """Mean cross-entropy −(1/n) Σ_i log softmax(z_i)_{y_i}, from engine ops.

    Shapes:
        logits: (n, K); targets: (n,) integer classes in [0, K).
    """
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(
            "cross_entropy needs logits (n, K) and targets (n,), got "
            f"{logits.shape} and {targets.shape}"
        )
    check_nonempty("targets", targets)
    check_array("targets", targets, floating=False)
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ValueError(
            f"targets must lie in [0, {logits.shape[1]}), got range "
            f"[{targets.min()}, {targets.max()}]"
        )
    one_hot = np.eye(logits.shape[1], dtype=logits.data.dtype)[
        targets
    ]  # (n, K)
    return -(logits.log_softmax(axis=1) * one_hot).sum(axis=1).mean()


# --- a multilayer perceptron on the engine ----------------------------------

_ACTIVATIONS = ("relu", "tanh", "sigmoid")


class MLP:
    """A multilayer perceptron whose parameters are engine ``Tensor``s.

        a⁽⁰⁾ = x,  z⁽ˡ⁾ = a⁽ˡ⁻¹⁾ W⁽ˡ⁾ + b⁽ˡ⁾,  a⁽ˡ⁾ = f(z⁽ˡ⁾),
        logits = z⁽ᴰ⁺¹⁾ for D hidden layers.

    Rows are examples, so a layer is ``x @ W + b`` with ``W`` of shape
    (in, out): the transpose of ``torch.nn.Linear.weight``. Weights and
    biases start uniform in ±1/√n_in, as ``nn.Linear`` draws them.

    Args:
        sizes: layer widths from input to output, e.g. ``(784, 128, 10)``.
        activation: ``"relu"``, ``"tanh"`` or ``"sigmoid"``.
        seed: seeds the initial weights.
        dtype: ``np.float64`` (default, for exact comparisons) or
            ``np.float32``.

    Shapes:
        input: (B, sizes[0]); output: (B, sizes[-1]).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        seed: int = 0,
        dtype=np.float64,
    ):
        if len(sizes) < 2 or any(
            isinstance(s, bool)
            or not isinstance(s, (int, np.integer))
            or int(s) < 1
            for s in sizes
        ):
            raise ValueError(
                "sizes must list at least two positive integer widths (input, ..., "
                f"output), got {tuple(sizes)}"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {_ACTIVATIONS}, got {activation!r}"
            )
        self.sizes, self.activation = tuple(int(s) for s in sizes), activation
        rng = np.random.default_rng(seed)
        self.params: list[Tensor] = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1 / np.sqrt(n_in)
            self.params.append(
                Tensor(
                    rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype),
                    requires_grad=True,
                )
            )
            self.params.append(
                Tensor(
                    rng.uniform(-bound, bound, n_out).astype(dtype),
                    requires_grad=True,
                )
            )

    def __call__(self, x) -> Tensor:
        h = Tensor(x) if not isinstance(x, Tensor) else x
        if h.ndim != 2 or h.shape[1] != self.sizes[0]:
            raise ValueError(
                f"input must have shape (B, {self.sizes[0]}), got {h.shape}"
            )
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            h = h @ self.params[2 * i] + self.params[2 * i + 1]  # (B, n_out)
            if i < n_layers - 1:
                h = getattr(h, self.activation)()
        return h

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def to_torch(self):
        """An equal ``torch.nn.Sequential`` of ``Linear`` layers (float64)."""
        import torch
        from torch import nn

        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[
            self.activation
        ]
        layers = []
        for i in range(len(self.params) // 2):
            W, b = self.params[2 * i].data, self.params[2 * i + 1].data
            lin = nn.Linear(*W.shape, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.astype(np.float64)))
                lin.bias.copy_(torch.from_numpy(b.astype(np.float64)))
            layers += [lin, act()]
        return nn.Sequential(*layers[:-1])


# --- backpropagation by hand ------------------------------------------------

_F = {
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "sigmoid": (
        lambda z: 0.5 * (1 + np.tanh(0.5 * z)),
        lambda z: 0.25 * (1 - np.tanh(0.5 * z) ** 2),
    ),
}


def _check_layers(weights, biases, x, y) -> None:
    """One (in, out) weight and (out,) bias per layer, chained; labels in range."""
    if len(weights) != len(biases) or not weights:
        raise ValueError(
            f"weights and biases must list one array per layer, got "
            f"{len(weights)} weights and {len(biases)} biases"
        )
    x = check_array("x", x, ndim=2, floating=True, nonempty=True)
    width = x.shape[1]
    for i, (W, b) in enumerate(zip(weights, biases)):
        check_array(f"weights[{i}]", W, shape=(width, None), floating=True)
        check_array(f"biases[{i}]", b, shape=(W.shape[1],), floating=True)
        width = W.shape[1]
    check_labels("y", np.asarray(y), width)
    check_same_length(x=x, y=y)


def mlp_backward(
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    activation: str = "relu",
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """An MLP's mean cross-entropy and its gradients, by backpropagation.

    Forward: z⁽ˡ⁾ = a⁽ˡ⁻¹⁾ W⁽ˡ⁾ + b⁽ˡ⁾, a⁽ˡ⁾ = f(z⁽ˡ⁾). Backward, with the
    error δ⁽ˡ⁾ = ∂ℒ/∂z⁽ˡ⁾ (one row per example) and D hidden layers:

        δ⁽ᴰ⁺¹⁾ = (P − Y) / n
        δ⁽ˡ⁾   = (δ⁽ˡ⁺¹⁾ W⁽ˡ⁺¹⁾ᵀ) ⊙ f′(z⁽ˡ⁾)
        ∂ℒ/∂W⁽ˡ⁾ = a⁽ˡ⁻¹⁾ᵀ δ⁽ˡ⁾,   ∂ℒ/∂b⁽ˡ⁾ = 1ᵀ δ⁽ˡ⁾

    Args:
        weights, biases: ``W`` (in, out) and ``b`` (out,) of each layer,
            input side first.
        x: inputs (n, d); y: integer classes (n,).
        activation: ``"relu"``, ``"tanh"`` or ``"sigmoid"``.

    Returns:
        ``(loss, grad_weights, grad_biases)``.
    """
    if activation not in _F:
        raise ValueError(
            f"activation must be one of {tuple(_F)}, got {activation!r}"
        )
    _check_layers(weights, biases, x, y)
    f, df = _F[activation]
    a, zs, acts = x, [], [x]
    for i, (W, b) in enumerate(zip(weights, biases)):
        z = a @ W + b
        zs.append(z)
        a = f(z) if i < len(weights) - 1 else z
        acts.append(a)
    logits = zs[-1]  # (n, K)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    delta = np.exp(logp)
    delta[np.arange(n), y] -= 1
    delta /= n  # delta^(L+1) = (P - Y) / n
    grad_W, grad_b = [None] * len(weights), [None] * len(weights)
    for i in reversed(range(len(weights))):
        grad_W[i] = acts[i].T @ delta
        grad_b[i] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ weights[i].T) * df(zs[i - 1])
    return float(loss), grad_W, grad_b


# --- the numerical gradient check -------------------------------------------


def _check_perturbable(x: np.ndarray, eps: float) -> None:
    """An array ``f`` can read and we can write, and a step ``eps`` > 0."""
    check_array("x", x)
    if not x.flags.writeable:
        raise ValueError("x must be writeable: it is perturbed in place")
    check_number("eps", eps, low=0, low_open=True)


def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Central differences (f(x + ε e_i) − f(x − ε e_i)) / 2ε for every x_i.

    ``x`` is perturbed in place (and restored), so ``f`` must read it: e.g. a
    closure over a parameter array. The truncation error is O(ε²), the
    rounding error O(u/ε) for the unit round-off u; in float64 ε = 1e-6
    balances them. It costs two evaluations of ``f`` per entry.
    """
    _check_perturbable(x, eps)
    if x.dtype != np.float64:
        raise ValueError(
            f"numerical gradients need float64 to be accurate, got {x.dtype}"
        )
    grad = np.zeros_like(x)
    # Index x itself, in any memory layout: a reshape of a transposed or
    # Fortran-ordered array is a copy, and perturbing a copy changes nothing.
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        f_plus = f()
        x[i] = old - eps
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / (‖a‖ + ‖b‖), and 0 when both are 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def gradient_check(
    loss_fn: Callable[[], Tensor], params: Sequence[Tensor], eps: float = 1e-6
) -> list[float]:
    """Relative error of backpropagated against numerical gradients.

    One error per parameter array, by ``relative_error`` against
    ``numerical_gradient``.

    Args:
        loss_fn: builds the scalar loss from ``params`` (called once for
            backpropagation and twice per parameter entry for the
            differences).
        params: float64 leaves with ``requires_grad=True``.
    """
    for p in params:
        p.zero_grad()
    loss_fn().backward()
    analytic = [p.grad.copy() for p in params]
    return [
        relative_error(
            g, numerical_gradient(lambda: float(loss_fn().data), p.data, eps)
        )
        for g, p in zip(analytic, params)
    ]


# --- training ---------------------------------------------------------------


@dataclass
class SGDConfig:
    """Minibatch stochastic gradient descent."""

    lr: float = 0.1  # step size eta
    batch_size: int = 64  # examples per step
    epochs: int = 10  # passes over the training set
    seed: int = 0  # seeds the order of the examples in each epoch

    def __post_init__(self):
        check_number("lr", self.lr, low=0)
        check_int("batch_size", self.batch_size, low=1)
        check_int("epochs", self.epochs, low=0)
        check_int("seed", self.seed, low=0)


def batches(
    n: int, batch_size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """One epoch's index arrays: a permutation of ``range(n)`` in batches."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def accuracy(
    model: MLP, x: np.ndarray, y: np.ndarray, batch_size: int = 4096
) -> float:
    """Fraction of examples whose largest logit is the label (no graph)."""
    check_nonempty("x", x)
    check_same_length(x=x, y=y)
    check_int("batch_size", batch_size, low=1)
    right = 0
    for start in range(0, len(x), batch_size):
        right += int(
            (
                model(x[start : start + batch_size]).data.argmax(axis=1)
                == y[start : start + batch_size]
            ).sum()
        )
    return right / len(x)


def _check_training(model, x, y, cfg, x_test, y_test) -> None:
    """Something to train on, labels the model can output, a valid config."""
    check_nonempty("x", x)
    cfg.__post_init__()  # the fields may have been changed since
    check_labels("y", np.asarray(y), model.sizes[-1])
    if x_test is not None:
        check_same_length(x_test=x_test, y_test=y_test)


def train(
    model: MLP,
    x: np.ndarray,
    y: np.ndarray,
    cfg: SGDConfig = SGDConfig(),
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> History:
    """Train ``model`` with SGD: θ ← θ − η ∇ℒ_batch(θ) for every batch.

    Records per epoch ``train_loss`` (the mean over the epoch's batches), and
    ``test_acc`` when a test set is given.

    Shapes:
        x: (n, d) in the model's dtype; y: (n,) integer classes.
    """
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same length, got {len(x)} and {len(y)}"
        )
    _check_training(model, x, y, cfg, x_test, y_test)
    rng = np.random.default_rng(cfg.seed)
    history = History()
    for _ in range(cfg.epochs):
        total = 0.0
        for idx in batches(len(x), cfg.batch_size, rng):
            loss = cross_entropy(model(x[idx]), y[idx])
            model.zero_grad()
            loss.backward()
            for p in model.params:
                p.data -= cfg.lr * p.grad
            total += float(loss.data) * len(idx)
        record = {"train_loss": total / len(x)}
        if x_test is not None:
            record["test_acc"] = accuracy(model, x_test, y_test)
        history.append(record)
    return history

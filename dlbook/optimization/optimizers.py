"""First-order optimizers from scratch: SGD, momentum, RMSprop, Adam, AdamW.

Each optimizer is a ``torch.optim.Optimizer`` subclass: the base class keeps
the parameter groups, the per-parameter state and ``state_dict``; the update
rule in ``step`` is ours, written from the papers' equations in the same
order of floating-point operations as PyTorch's single-tensor
(``foreach=False``) path, so a run on the CPU follows the same trajectory as
``torch.optim`` bit for bit. They plug into ``dlbook.train.fit`` and into
every ``torch.optim.lr_scheduler``.

Papers: Robbins & Monro (1951) for stochastic gradient descent; Polyak (1964)
for the heavy-ball momentum; Nesterov (1983) and Sutskever et al. (2013) for
Nesterov momentum; Tieleman & Hinton (2012, lecture 6.5) for RMSprop; Kingma
& Ba (2015) for Adam; Loshchilov & Hutter (2019) for AdamW's decoupled weight
decay.

Checked against: ``torch.optim.SGD``, ``RMSprop``, ``Adam`` and ``AdamW``:
the same parameters after 100 steps, with and without weight decay,
momentum, Nesterov, centring and AMSGrad
(``tests/optimization/test_optimizers.py``).

The module also holds the two-dimensional test surfaces of the chapter (a
saddle, Rosenbrock's valley, an ill-conditioned quadratic) and
``trajectory``, which runs any optimizer on them.

Chapter: ``book/optimization/optimizers.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from dlbook.checks import check_number, check_tensor


def _check(
    name: str,
    value: float,
    low: float = 0.0,
    high: float | None = None,
    *,
    strict_high: bool = True,
) -> float:
    """A hyperparameter in ``[low, high)`` (or ``[low, high]``), as a float.

    NumPy scalars and 0-d tensors are numbers, as for ``torch.optim``; NaN,
    strings and booleans are refused. Infinity passes where no upper bound
    is set (``torch.optim.SGD(lr=inf)`` does too).
    """
    return check_number(
        name,
        value,
        low=low,
        high=high,
        high_open=strict_high and high is not None,
        finite=high is not None,
    )


def _check_grad(p: torch.Tensor, optimizer: str) -> torch.Tensor:
    """The gradient of ``p``; sparse gradients are refused, as ``torch.optim`` does."""
    if p.grad.is_sparse:
        raise RuntimeError(
            f"{optimizer} does not support sparse gradients (as in "
            "torch.optim; use torch.optim.SparseAdam or a dense embedding)"
        )
    return p.grad


def _real(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Complex tensors as real views (..., 2), as ``torch.optim`` treats them.

    A complex parameter is two real ones: the moments of Adam and RMSprop are
    taken per real and imaginary part, never as complex squares ``g * g``.
    """
    return [
        torch.view_as_real(t) if t is not None and t.is_complex() else t
        for t in tensors
    ]


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (heavy ball or
    Nesterov).

    With the gradient g_t = ∇ℒ(θ_{t−1}) + λ θ_{t−1} (λ: the L2 weight decay),
    the momentum buffer b and the step d are

        b_t = μ b_{t−1} + (1 − τ) g_t,   b_1 = g_1,
        d_t = g_t + μ b_t (Nesterov)  or  d_t = b_t (heavy ball),
        θ_t = θ_{t−1} − η d_t,

    and d_t = g_t when μ = 0 (plain SGD). The buffer starts at the first
    gradient, not at zero, as in PyTorch; the Nesterov form is that of
    Sutskever et al. (2013, eq. 7) rewritten with the gradient at the
    current point.

    Args:
        params: the parameters (or parameter groups) to optimize.
        lr: the learning rate η.
        momentum: μ, 0 for plain SGD.
        dampening: τ, which scales the new gradient in the buffer.
        weight_decay: λ, added to the gradient as λθ.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and
            ``dampening == 0``).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        lr = _check("lr", lr)
        momentum = _check("momentum", momentum)
        dampening = _check("dampening", dampening)
        weight_decay = _check("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
            ),
        )

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """Take one step; an optional ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, tau, wd = (
                group["lr"],
                group["momentum"],
                group["dampening"],
                group["weight_decay"],
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd != 0:
                    g = _check_grad(p, "SGD with weight_decay").add(
                        p, alpha=wd
                    )  # L2 penalty: the gradient of (wd / 2) * ||p||^2
                if mu != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        b = state["momentum_buffer"] = g.clone()
                    else:
                        b = state["momentum_buffer"]
                        b.mul_(mu).add_(g, alpha=1 - tau)
                    g = g.add(b, alpha=mu) if group["nesterov"] else b
                p.add_(g, alpha=-lr)
        return loss


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012): divide by a running RMS of gradients.

        v_t = α v_{t−1} + (1 − α) g_t²,   θ_t = θ_{t−1} − η g_t / (√v_t + ε).

    With ``centered=True`` the denominator uses the variance estimate
    √(v_t − ḡ_t²) with ḡ_t = α ḡ_{t−1} + (1 − α) g_t (Graves 2013); with
    momentum μ the normalized gradient feeds a buffer
    b_t = μ b_{t−1} + g_t / (√v_t + ε), and θ_t = θ_{t−1} − η b_t. All state
    starts at zero.

    Args:
        params: the parameters (or parameter groups) to optimize.
        lr: the learning rate η.
        alpha: the decay α of the running average of squared gradients.
        eps: ε, added to the root for numerical stability.
        weight_decay: the L2 weight decay λ, added to the gradient as λθ.
        momentum: μ, 0 for none.
        centered: normalize by the estimated variance instead of the second
            moment.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        lr = _check("lr", lr)
        alpha = _check("alpha", alpha, 0.0, 1.0, strict_high=False)
        eps = _check("eps", eps)
        weight_decay = _check("weight_decay", weight_decay)
        momentum = _check("momentum", momentum)
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
            ),
        )

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """Take one step; an optional ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps, wd, mu = (
                group["lr"],
                group["alpha"],
                group["eps"],
                group["weight_decay"],
                group["momentum"],
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _check_grad(p, "RMSprop")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p)
                    if mu > 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p)
                state["step"] += 1
                if wd != 0:
                    g = g.add(p, alpha=wd)
                p_, g, v, b, g_bar = _real(
                    p,
                    g,
                    state["square_avg"],
                    state.get("momentum_buffer"),
                    state.get("grad_avg"),
                )
                v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
                if group["centered"]:
                    g_bar.lerp_(
                        g, 1 - alpha
                    )  # = alpha * g_bar + (1 - alpha) * g
                    denom = v.addcmul(g_bar, g_bar, value=-1).sqrt_()
                else:
                    denom = v.sqrt()
                denom.add_(eps)
                if mu > 0:
                    b.mul_(mu).addcdiv_(g, denom)
                    p_.add_(b, alpha=-lr)
                else:
                    p_.addcdiv_(g, denom, value=-lr)
        return loss


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, algorithm 1).

    Momentum on the gradient, RMSprop's scaling, and a bias correction:

        m_t = β₁ m_{t−1} + (1 − β₁) g_t,    v_t = β₂ v_{t−1} + (1 − β₂) g_t²,
        m̂_t = m_t / (1 − β₁ᵗ),             v̂_t = v_t / (1 − β₂ᵗ),
        θ_t = θ_{t−1} − η m̂_t / (√v̂_t + ε),   with m_0 = v_0 = 0.

    Weight decay λ is the L2 penalty, added to the gradient
    (g_t ← g_t + λ θ_{t−1}), so it is rescaled by 1/√v̂_t like the rest of
    the gradient; ``AdamW`` decouples it. With ``amsgrad=True`` (Reddi et
    al. 2018) the denominator uses the running maximum of v_t.

    Args:
        params: the parameters (or parameter groups) to optimize.
        lr: the learning rate η.
        betas: (β₁, β₂), the decays of the first and second moment
            estimates.
        eps: ε, added to √v̂_t.
        weight_decay: λ.
        amsgrad: normalize by the maximum of all v̂ so far.
    """

    # AdamW sets True: decay the weights, not the gradient
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        lr = _check("lr", lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(
                f"betas must be a pair (beta1, beta2), got {betas!r}"
            )
        betas = (
            _check("betas[0]", betas[0], 0.0, 1.0),
            _check("betas[1]", betas[1], 0.0, 1.0),
        )
        eps = _check("eps", eps)
        weight_decay = _check("weight_decay", weight_decay)
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=tuple(betas),
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
            ),
        )

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """Take one step; an optional ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = (
                group["lr"],
                group["betas"],
                group["eps"],
                group["weight_decay"],
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _check_grad(p, type(self).__name__)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    if self.decoupled_weight_decay:
                        # Loshchilov & Hutter, algorithm 2, line 12
                        p.mul_(1 - lr * wd)
                    else:
                        g = g.add(p, alpha=wd)
                p_, g, m, v, v_max = _real(
                    p,
                    g,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    state.get("max_exp_avg_sq"),
                )
                m.lerp_(g, 1 - beta1)  # = beta1 * m + (1 - beta1) * g
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                if group["amsgrad"]:
                    torch.maximum(v_max, v, out=v_max)
                    v = v_max
                # The bias corrections folded into two scalars:
                #   m̂ / (√v̂ + ε) = (m / (1 − β₁ᵗ)) / (√v / √(1 − β₂ᵗ) + ε)
                step_size = lr / (1 - beta1**t)
                denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
                p_.addcdiv_(m, denom, value=-step_size)
        return loss


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

        θ_t = (1 − ηλ) θ_{t−1} − η m̂_t / (√v̂_t + ε),

    with m̂_t and v̂_t from the raw gradient. Every weight shrinks at the same
    rate ηλ, whatever its gradient history: what L2 regularization does for
    plain SGD, and what Adam's L2 penalty does not.

    Args: as ``Adam``; ``weight_decay`` defaults to 0.01, as in PyTorch.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
        )


# --- two-dimensional test surfaces -----------------------------------------


def saddle(p: torch.Tensor) -> torch.Tensor:
    """A saddle with two minima: f(x, y) = x² + y⁴/4 − y²/2.

    The origin is a saddle point (curvature +2 along x, −1 along y); the
    minima are (0, ±1), where f = −1/4.

    Shapes:
        p: (..., 2); output: (...).
    """
    x, y = p[..., 0], p[..., 1]
    return x**2 + y**4 / 4 - y**2 / 2


def rosenbrock(
    p: torch.Tensor, a: float = 1.0, b: float = 100.0
) -> torch.Tensor:
    """Rosenbrock's banana valley (1960): f(x, y) = (a − x)² + b (y − x²)².

    The minimum is at (a, a²).

    Shapes:
        p: (..., 2); output: (...).
    """
    x, y = p[..., 0], p[..., 1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


def quadratic(
    p: torch.Tensor, kappa: float = 25.0, angle: float = 0.0
) -> torch.Tensor:
    """An ill-conditioned quadratic f(p) = ½ pᵀ R A Rᵀ p, A = diag(1, κ).

    R rotates by ``angle`` radians; at 0 the valley is aligned with the axes.
    The condition number is κ = ``kappa``; the minimum is the origin.

    Shapes:
        p: (..., 2); output: (...).
    """
    if kappa < 1:
        raise ValueError(
            f"kappa must be >= 1 (the condition number), got {kappa}"
        )
    c, s = math.cos(angle), math.sin(angle)
    u = c * p[..., 0] + s * p[..., 1]  # coordinates in the eigenbasis
    w = -s * p[..., 0] + c * p[..., 1]
    return 0.5 * (u**2 + kappa * w**2)


def trajectory(
    f: Callable[[torch.Tensor], torch.Tensor],
    start: tuple[float, float],
    optimizer: type[Optimizer],
    steps: int,
    **hyper: Any,
) -> torch.Tensor:
    """Run ``optimizer(**hyper)`` on a function ``f`` of two variables.

    Args:
        f: a function of a point (2,) returning a scalar (``rosenbrock``).
        start: the starting point ``(x, y)``.
        optimizer: an optimizer class (ours or ``torch.optim``'s).
        steps: the number of steps.
        hyper: the optimizer's hyperparameters (``lr=...``, ``momentum=...``).

    Returns:
        The path, shape (steps + 1, 2), in float64; it starts at ``start``.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(
            f"steps must be a non-negative integer, got {steps!r}"
        )
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    check_tensor("start", p, shape=(2,), finite=True)  # a point (x, y)
    opt = optimizer([p], **hyper)
    path = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        f(p).backward()
        opt.step()
        path.append(p.detach().clone())
    return torch.stack(path)


def first_step_below(values: torch.Tensor, threshold: float) -> int | None:
    """The first index where ``values`` (1-D) is below ``threshold``.

    None if they never are.
    """
    hits = torch.nonzero(values < threshold).flatten()
    return int(hits[0]) if len(hits) else None

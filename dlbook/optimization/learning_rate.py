"""Learning-rate schedules and the learning-rate range test, from scratch.

A schedule is a small dataclass holding its hyperparameters, with ``lr(t)``
(and, for the cyclical policies, ``momentum(t)``) in closed form: the
learning rate to use at optimizer step t = 0, 1, 2, ... ``Scheduled`` turns
any schedule into a ``torch.optim.lr_scheduler.LRScheduler``, so it plugs
into ``dlbook.train.fit`` and into checkpoints like PyTorch's own schedulers.

* ``StepDecay`` and ``ExponentialDecay``: the classic decays;
* ``WarmupCosine``: linear warm-up (Goyal et al. 2017) then cosine annealing
  (Loshchilov & Hutter 2017, without restarts);
* ``Cyclical``: Smith's cyclical learning rates (2017), triangular,
  triangular2 and exp_range;
* ``OneCycle``: Smith & Topin's one-cycle policy (2019), with the momentum
  cycled inversely.

``lr_range_test`` is Smith's learning-rate range test (2017, section 3.3):
train for a few hundred mini-batches while the rate grows exponentially,
smooth the loss, stop when it diverges, and read a good rate off the curve.

Checked against: ``torch.optim.lr_scheduler.StepLR``, ``ExponentialLR``,
``SequentialLR(LinearLR, CosineAnnealingLR)``, ``CyclicLR`` and
``OneCycleLR`` (the same learning-rate and momentum sequences), and the
range test against ``torch-lr-finder`` (``LRFinder.range_test``: the same
rates and smoothed losses), in ``tests/optimization/test_learning_rate.py``.

Chapter: ``book/optimization/learning-rate.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from dlbook.checks import check_nonempty, check_number


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """A finite number > 0 (>= 0 with ``allow_zero``); NaN, infinity, strings refused."""
    if (
        not isinstance(value, (int, float, np.floating, np.integer))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ValueError(
            f"{name} must be a finite "
            f"{'non-negative' if allow_zero else 'positive'} number, "
            f"got {value!r}"
        )


def _step_index(t: int) -> int:
    if not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(
            f"the step t must be a non-negative integer, got {t!r}"
        )
    return int(t)


class Schedule:
    """A learning rate as a function of the step; subclasses define ``lr``."""

    def lr(self, t: int) -> float:
        """The learning rate for step ``t`` (0 is the first step)."""
        raise NotImplementedError

    def momentum(self, t: int) -> float | None:
        """The momentum (or Adam's β₁) for step ``t``; None: leave it alone."""
        return None

    def __call__(self, t: int) -> float:
        return self.lr(t)

    def sequence(self, steps: int) -> list[float]:
        """The rates of steps ``0 .. steps - 1``, for plotting."""
        return [self.lr(t) for t in range(steps)]


@dataclass
class Constant(Schedule):
    """The same rate at every step."""

    lr0: float  # the learning rate

    def __post_init__(self):
        _positive("lr0", self.lr0, allow_zero=True)

    def lr(self, t: int) -> float:
        _step_index(t)
        return self.lr0


@dataclass
class StepDecay(Schedule):
    """Multiply the rate by γ every s steps: η_t = η₀ γ^⌊t/s⌋.

    s is ``step_size``.
    """

    lr0: float  # the initial learning rate eta_0
    step_size: int  # s: steps between two decays
    gamma: float = 0.1  # the factor of each decay

    def __post_init__(self):
        _positive("lr0", self.lr0)
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise ValueError(
                f"step_size must be a positive integer, got {self.step_size!r}"
            )
        _positive("gamma", self.gamma)

    def lr(self, t: int) -> float:
        return self.lr0 * self.gamma ** (_step_index(t) // self.step_size)


@dataclass
class ExponentialDecay(Schedule):
    """Multiply the rate by γ every step: η_t = η₀ γᵗ."""

    lr0: float  # the initial learning rate eta_0
    gamma: float  # the factor per step, a little below 1

    def __post_init__(self):
        _positive("lr0", self.lr0)
        _positive("gamma", self.gamma)

    def lr(self, t: int) -> float:
        return self.lr0 * self.gamma ** _step_index(t)


@dataclass
class WarmupCosine(Schedule):
    """Linear warm-up for W steps, then a cosine down to η_min at step T.

        η_t = η₀ (f + (1 − f) t / W)                        for t < W,
        η_t = η_min + ½ (η₀ − η_min) (1 + cos(π (t − W) / (T − W)))
                                                            for W ≤ t ≤ T,

    with f the starting fraction of the warm-up (``start_factor``). After T
    the cosine continues (it rises again), as PyTorch's
    ``CosineAnnealingLR`` does.
    """

    lr0: float  # the peak rate eta_0, reached at the end of the warm-up
    total_steps: int  # T: the step at which the rate reaches min_lr
    warmup_steps: int = 0  # W: steps of linear warm-up
    start_factor: float = 0.01  # f: the warm-up starts at f * lr0
    min_lr: float = 0.0  # eta_min, the final rate

    def __post_init__(self):
        _positive("lr0", self.lr0)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(
                "warmup_steps must be a non-negative integer, got "
                f"{self.warmup_steps!r}"
            )
        if (
            not isinstance(self.total_steps, int)
            or self.total_steps <= self.warmup_steps
        ):
            raise ValueError(
                "total_steps must be an integer larger than "
                f"warmup_steps={self.warmup_steps}, "
                f"got {self.total_steps!r}"
            )
        if not 0 < self.start_factor <= 1:
            raise ValueError(
                f"start_factor must be in (0, 1], got {self.start_factor!r}"
            )
        _positive("min_lr", self.min_lr, allow_zero=True)
        if self.min_lr > self.lr0:
            raise ValueError(
                f"min_lr must be at most lr0={self.lr0}, got {self.min_lr!r}"
            )

    def lr(self, t: int) -> float:
        t = _step_index(t)
        if t < self.warmup_steps:
            return self.lr0 * (
                self.start_factor
                + (1 - self.start_factor) * t / self.warmup_steps
            )
        progress = (t - self.warmup_steps) / (
            self.total_steps - self.warmup_steps
        )
        return (
            self.min_lr
            + (self.lr0 - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
        )


@dataclass
class Cyclical(Schedule):
    """Cyclical learning rates (Smith 2017): triangles from base to max rate.

    With cycle length 2s (``step_size_up`` + ``step_size_down``, equal by
    default), cycle number c = ⌊1 + t/2s⌋ and position x in the cycle,

        η_t = η_base + (η_max − η_base) h(x) a(c, t),

    where h rises linearly from 0 to 1 and falls back, and the amplitude a is
    1 (``triangular``), 2^−(c−1) (``triangular2``) or γᵗ (``exp_range``).
    If ``cycle_momentum``, the momentum moves the other way, from
    ``max_momentum`` at the bottom of the triangle to ``base_momentum`` at
    the top.
    """

    base_lr: float  # the lower rate, at the start of each cycle
    max_lr: float  # the upper rate, at the top of the triangle
    step_size_up: int  # steps from base_lr up to max_lr
    step_size_down: int | None = (
        None  # steps back down; None: the same as step_size_up
    )
    mode: str = "triangular"  # "triangular", "triangular2" or "exp_range"
    gamma: float = 1.0  # exp_range only: the amplitude decays as gamma ** t
    cycle_momentum: bool = (
        False  # also cycle the momentum, inversely to the rate
    )
    base_momentum: float = 0.8  # the momentum at the top of the triangle
    max_momentum: float = 0.9  # the momentum at the bottom

    def __post_init__(self):
        _positive("base_lr", self.base_lr, allow_zero=True)
        _positive("max_lr", self.max_lr)
        if self.mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(
                "mode must be 'triangular', 'triangular2' or 'exp_range', "
                f"got {self.mode!r}"
            )
        for name in ("step_size_up", "step_size_down"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"{name} must be a positive integer, got {value!r}"
                )
        _positive("gamma", self.gamma)
        if self.mode == "exp_range" and self.gamma > 1:
            raise ValueError(
                f"gamma must be at most 1 in exp_range (a decaying amplitude), "
                f"got {self.gamma!r}"
            )
        if self.cycle_momentum:
            for name in ("base_momentum", "max_momentum"):
                check_number(name, getattr(self, name), low=0)

    def _phase(self, t: int) -> tuple[int, float]:
        """(cycle number c, height h in [0, 1]) at step t."""
        up = float(self.step_size_up)
        down = (
            float(self.step_size_down)
            if self.step_size_down is not None
            else up
        )
        total = up + down
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle  # position in the cycle, in [0, 1)
        ratio = up / total
        height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        return cycle, height

    def _amplitude(self, cycle: int, t: int) -> float:
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (cycle - 1))
        return self.gamma**t

    def lr(self, t: int) -> float:
        t = _step_index(t)
        cycle, height = self._phase(t)
        return self.base_lr + (
            self.max_lr - self.base_lr
        ) * height * self._amplitude(cycle, t)

    def momentum(self, t: int) -> float | None:
        if not self.cycle_momentum:
            return None
        t = _step_index(t)
        cycle, height = self._phase(t)
        return self.max_momentum - (
            self.max_momentum - self.base_momentum
        ) * height * self._amplitude(cycle, t)


@dataclass
class OneCycle(Schedule):
    """The one-cycle policy (Smith & Topin 2019): one rise and one long fall.

    The rate rises from η_max/d to η_max over the first fraction p of the T
    steps, then falls to η_max/(d d_f) at step T − 1; each phase is a half
    cosine (or a straight line),

        anneal(a, b, u) = b + ½ (a − b) (1 + cos πu),   u in [0, 1].

    The momentum does the opposite: ``max_momentum`` -> ``base_momentum`` ->
    ``max_momentum``. With ``three_phase`` the fall mirrors the rise and a
    third phase annihilates the rate.
    """

    max_lr: float  # the peak rate, e.g. from the range test
    total_steps: int  # T: the number of optimizer steps of the whole run
    pct_start: float = 0.3  # p: the fraction of steps spent rising
    anneal: str = "cos"  # "cos" or "linear"
    div_factor: float = 25.0  # d: the run starts at max_lr / d
    final_div_factor: float = 1e4  # d_f: the run ends at max_lr / (d * d_f)
    three_phase: bool = (
        False  # fall back to max_lr / d symmetrically, then annihilate
    )
    cycle_momentum: bool = (
        True  # cycle the momentum (or Adam's beta1) inversely to the rate
    )
    base_momentum: float = 0.85  # the momentum at the peak rate
    max_momentum: float = 0.95  # the momentum at the start and the end

    def __post_init__(self):
        _positive("max_lr", self.max_lr)
        if not isinstance(self.total_steps, int) or self.total_steps < 2:
            raise ValueError(
                "total_steps must be an integer >= 2, got "
                f"{self.total_steps!r}"
            )
        if not 0 < self.pct_start < 1:
            raise ValueError(
                f"pct_start must be in (0, 1), got {self.pct_start!r}"
            )
        if self.anneal not in ("cos", "linear"):
            raise ValueError(
                f"anneal must be 'cos' or 'linear', got {self.anneal!r}"
            )
        _positive("div_factor", self.div_factor)
        _positive("final_div_factor", self.final_div_factor)
        if self.cycle_momentum:
            for name in ("base_momentum", "max_momentum"):
                check_number(name, getattr(self, name), low=0)

    def _phases(self) -> list[tuple[float, str, str]]:
        """(last step of the phase, start key, end key) for each phase."""
        T, p = self.total_steps, self.pct_start
        if self.three_phase:
            return [
                (p * T - 1, "initial", "max"),
                (2 * p * T - 2, "max", "initial"),
                (T - 1, "initial", "min"),
            ]
        return [(p * T - 1, "initial", "max"), (T - 1, "max", "min")]

    def _anneal(self, a: float, b: float, u: float) -> float:
        if self.anneal == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * u) + 1)
        return (b - a) * u + a

    def _locate(self, t: int) -> tuple[int, float]:
        """(phase index, progress u in the phase) at step t."""
        t = _step_index(t)
        if t > self.total_steps:
            raise ValueError(
                f"step {t} is past the schedule's "
                f"total_steps={self.total_steps}"
            )
        start = 0.0
        phases = self._phases()
        for i, (end, _, _) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                # t = total_steps is the scheduler's step after the last
                # optimizer step: the rate stays at its final value there
                # (torch extrapolates, linearly below zero; never used).
                return i, min(1.0, (t - start) / (end - start))
            start = end
        raise AssertionError("unreachable")

    def lr(self, t: int) -> float:
        initial = self.max_lr / self.div_factor
        value = {
            "initial": initial,
            "max": self.max_lr,
            "min": initial / self.final_div_factor,
        }
        i, u = self._locate(t)
        _, a, b = self._phases()[i]
        return self._anneal(value[a], value[b], u)

    def momentum(self, t: int) -> float | None:
        if not self.cycle_momentum:
            return None
        i, u = self._locate(t)
        high, low = self.max_momentum, self.base_momentum
        ends = (
            [(high, low), (low, high), (high, high)]
            if self.three_phase
            else [(high, low), (low, high)]
        )
        return self._anneal(*ends[i], u)


class Scheduled(LRScheduler):
    """Drive an optimizer with one of our schedules (an ``LRScheduler``).

    Call ``step()`` after every ``optimizer.step()``, as with PyTorch's
    schedulers. At construction the optimizer gets the rate of step 0; after
    the k-th call it has the rate of step k. A schedule that returns a
    momentum sets ``momentum`` (SGD, RMSprop) or Adam's β₁.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedule: one ``Schedule`` for every parameter group, or a list, one
            per group.
        last_epoch: the index of the last step taken, −1 to start from the
            beginning.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Schedule | list[Schedule],
        last_epoch: int = -1,
    ):
        schedules = (
            schedule
            if isinstance(schedule, (list, tuple))
            else [schedule] * len(optimizer.param_groups)
        )
        if len(schedules) != len(optimizer.param_groups):
            raise ValueError(
                f"schedule: got {len(schedules)} schedules for "
                f"{len(optimizer.param_groups)} parameter groups"
            )
        for s in schedules:
            if not isinstance(s, Schedule):
                raise TypeError(
                    "schedule must be a Schedule (e.g. OneCycle), got "
                    f"{type(s).__name__}"
                )
            if s.momentum(0) is not None and not any(
                k in optimizer.defaults for k in ("momentum", "betas")
            ):
                raise ValueError(
                    f"{type(s).__name__} cycles the momentum but "
                    f"{type(optimizer).__name__} has none; "
                    "set cycle_momentum=False"
                )
        self.schedules = list(schedules)
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict:
        """The scheduler's state, schedules as plain values.

        Plain values, so that checkpoints load with ``weights_only``.
        """
        state = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "schedules")
        }
        state["schedules"] = [
            (type(s).__name__, dict(vars(s))) for s in self.schedules
        ]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the step count.

        The schedules are the ones given at construction, and must equal the
        saved ones.
        """
        state = dict(state_dict)
        saved = state.pop("schedules")
        mine = [(type(s).__name__, dict(vars(s))) for s in self.schedules]
        if [tuple(x) for x in saved] != mine:
            raise ValueError(
                f"the checkpoint was saved with schedules {saved}, this "
                f"scheduler has {mine}"
            )
        self.__dict__.update(state)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        for group, s in zip(self.optimizer.param_groups, self.schedules):
            m = s.momentum(t)
            if m is not None:
                if "betas" in group:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m
        # A schedule of one's own must not give the optimizer a negative or
        # NaN rate (gradient ascent), which the optimizer itself refuses.
        return [
            check_number(
                f"the rate of {type(s).__name__} at step {t}", s.lr(t), low=0
            )
            for s in self.schedules
        ]


# --- curvature: the largest stable rate --------------------------------------


def top_hessian_eigenvalue(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[
        [torch.Tensor, torch.Tensor], torch.Tensor
    ] = F.cross_entropy,
    iters: int = 30,
    seed: int = 0,
) -> float:
    """The largest eigenvalue λ_max of the loss's Hessian, by power iteration.

    Each iteration is one Hessian-vector product Hv = ∇(∇ℒ · v) (Pearlmutter
    1994), so the Hessian is never formed. Gradient descent on a quadratic
    with this curvature is stable only for η < 2/λ_max. Power iteration finds
    the eigenvalue largest in magnitude; for the loss of a network at
    initialization that is the largest positive one.

    Args:
        model: the network (its parameters define the Hessian; ``.grad`` is
            not touched).
        x, y: the batch the loss is computed on.
        loss_fn: ``loss_fn(output, target)`` -> scalar.
        iters: power iterations.
        seed: seed of the random starting vector.
    """
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(
        loss_fn(model(x), y), params, create_graph=True
    )
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = [torch.randn(p.shape, generator=g).to(p) for p in params]
    eigenvalue = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((a * a).sum() for a in v))
        v = [a / norm for a in v]
        hv = torch.autograd.grad(grads, params, v, retain_graph=True)
        # the Rayleigh quotient vᵀHv
        eigenvalue = sum((a * b).sum() for a, b in zip(hv, v)).item()
        v = [h.detach() for h in hv]
    return eigenvalue


# --- the learning-rate range test --------------------------------------------


@dataclass
class RangeTestConfig:
    """The settings of ``lr_range_test`` (defaults as torch-lr-finder's)."""

    start_lr: float = 1e-7  # the rate of the first mini-batch
    end_lr: float = 10.0  # the rate the test would reach at its last batch
    num_iter: int = 100  # batches over which the rate goes from start to end
    # the weight of the new loss in the moving average; 0: no smoothing
    smooth_f: float = 0.05
    # stop once the smoothed loss exceeds diverge_th times the best so far
    diverge_th: float = 5.0

    def __post_init__(self):
        _positive("start_lr", self.start_lr)
        if (
            not isinstance(self.end_lr, (int, float))
            or self.end_lr <= self.start_lr
        ):
            raise ValueError(
                f"end_lr must be larger than start_lr={self.start_lr}, got "
                f"{self.end_lr!r}"
            )
        if not isinstance(self.num_iter, int) or self.num_iter < 2:
            raise ValueError(
                f"num_iter must be an integer >= 2, got {self.num_iter!r}"
            )
        if not 0 <= self.smooth_f < 1:
            raise ValueError(
                f"smooth_f must be in [0, 1), got {self.smooth_f!r}"
            )
        if not self.diverge_th > 1:  # NaN fails this
            raise ValueError(
                f"diverge_th must be larger than 1, got {self.diverge_th!r}"
            )
        check_number("end_lr", self.end_lr)
        check_number("diverge_th", self.diverge_th, low=1, low_open=True)


@dataclass
class RangeTest:
    """The result of ``lr_range_test``: one entry per mini-batch trained.

    ``lrs[i]`` is the rate used on mini-batch i, ``raw_losses[i]`` its
    training loss and ``losses[i]`` the smoothed loss. ``diverged`` says
    whether the test stopped early.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    raw_losses: list[float] = field(default_factory=list)
    diverged: bool = False

    def steepest(self, skip_start: int = 10, skip_end: int = 5) -> float:
        """The rate where the smoothed loss falls fastest (torch-lr-finder).

        The slope is taken per mini-batch (``np.gradient`` of the loss),
        which on the exponential grid is the slope against log η up to a
        constant.
        """
        lrs, losses = self._trim(skip_start, skip_end)
        return float(lrs[int(np.gradient(losses).argmin())])

    def min_divided(
        self, divisor: float = 10.0, skip_start: int = 10, skip_end: int = 5
    ) -> float:
        """The rate of the lowest smoothed loss, divided by ``divisor``.

        The fastai rule of thumb.
        """
        lrs, losses = self._trim(skip_start, skip_end)
        return float(lrs[int(np.argmin(losses))] / divisor)

    def _trim(
        self, skip_start: int, skip_end: int
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.lrs)
        if n < skip_start + skip_end + 2:
            raise ValueError(
                f"the test ran {n} mini-batches; at least skip_start + "
                "skip_end + 2 = "
                f"{skip_start + skip_end + 2} are needed to suggest a rate"
            )
        end = n - skip_end
        return np.asarray(self.lrs[skip_start:end]), np.asarray(
            self.losses[skip_start:end]
        )


def lr_range_test(
    model: nn.Module,
    loader: Iterable,
    optimizer: Optimizer,
    loss_fn: Callable[
        [torch.Tensor, torch.Tensor], torch.Tensor
    ] = F.cross_entropy,
    config: RangeTestConfig | None = None,
    device: torch.device | str | None = None,
) -> RangeTest:
    """Smith's learning-rate range test; the model and optimizer are restored.

    Mini-batch i = 0, 1, ... is trained at the rate
    η_i = η_start (η_end / η_start)^(i / (n − 1)); the loss is smoothed as
    ℓ̄_i = s ℓ_i + (1 − s) ℓ̄_{i−1}, ℓ̄_0 = ℓ_0, and the test stops after the
    first mini-batch whose smoothed loss exceeds ``diverge_th`` times the
    lowest so far. The loader is restarted if it runs out.

    Args:
        model: the network, in its initial state.
        loader: yields ``(x, y)`` mini-batches.
        optimizer: the optimizer to be used for training (its rate is
            overwritten during the test, and restored with the rest of its
            state afterwards).
        loss_fn: ``loss_fn(output, target)`` -> scalar.
        config: the test's settings; default ``RangeTestConfig()``.
        device: where to train; default: where the model's parameters are.

    Returns:
        A ``RangeTest`` with the rates, smoothed and raw losses.
    """
    cfg = config or RangeTestConfig()
    params = list(model.parameters())
    check_nonempty("the model's parameters", params)
    device = torch.device(device) if device is not None else params[0].device
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())
    result = RangeTest()
    batches = iter(loader)
    was_training = model.training
    model.train()
    try:
        for i in range(cfg.num_iter):
            lr = cfg.start_lr * (cfg.end_lr / cfg.start_lr) ** (
                i / (cfg.num_iter - 1)
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                try:
                    x, y = next(batches)
                except StopIteration:
                    raise ValueError(
                        "loader is empty: the range test has no batch to "
                        "train on"
                    ) from None
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            raw = loss.item()
            smooth = (
                raw
                if i == 0 or cfg.smooth_f == 0
                else cfg.smooth_f * raw
                + (1 - cfg.smooth_f) * result.losses[-1]
            )
            best = smooth if i == 0 else min(best, smooth)
            result.lrs.append(lr)
            result.raw_losses.append(raw)
            result.losses.append(smooth)
            if smooth > cfg.diverge_th * best or not math.isfinite(smooth):
                result.diverged = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
        model.train(was_training)
    return result

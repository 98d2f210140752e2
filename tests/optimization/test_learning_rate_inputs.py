"""What the schedules, the scheduler and the range test refuse (reliability probe, issue 13: defect 9)."""

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.optimization.initialization import MLPConfig
from dlbook.optimization.learning_rate import (
    Constant, Cyclical, ExponentialDecay, OneCycle, RangeTestConfig, Schedule, Scheduled, StepDecay, WarmupCosine,
    lr_range_test,
)

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("make, match", [
    (lambda: Constant(-1.0), "lr0 must be a finite non-negative number, got -1.0"),  # was gradient ascent
    (lambda: Constant("abc"), "lr0 must be a finite non-negative number, got 'abc'"),
    (lambda: Constant(NAN), "lr0"),
    (lambda: StepDecay(NAN, 10), "lr0 must be a finite positive number, got nan"),
    (lambda: StepDecay(0.1, 10, gamma=INF), "gamma"),
    (lambda: ExponentialDecay(0.1, gamma=INF), "gamma must be a finite positive number, got inf"),
    (lambda: ExponentialDecay(0.1, gamma=NAN), "gamma"),
    (lambda: OneCycle(1.0, 100, div_factor=0), "div_factor must be a finite positive number"),  # ZeroDivisionError
    (lambda: OneCycle(1.0, 100, div_factor=-25), "div_factor"),  # negative rates
    (lambda: OneCycle(1.0, 100, final_div_factor=NAN), "final_div_factor"),
    (lambda: OneCycle(1.0, 100, max_momentum=NAN), "max_momentum"),
    (lambda: Cyclical(0.1, 1.0, 10, mode="exp_range", gamma=-1), "gamma must be a finite positive number"),
    (lambda: Cyclical(0.1, 1.0, 10, mode="exp_range", gamma=1.5), "gamma must be at most 1"),
    (lambda: WarmupCosine(0.1, 10, min_lr=NAN), "min_lr"),
    (lambda: WarmupCosine(0.1, 10, min_lr=0.5), "min_lr must be at most lr0"),
    (lambda: RangeTestConfig(diverge_th=NAN), "diverge_th must be larger than 1, got nan"),  # never diverged
    (lambda: RangeTestConfig(end_lr=INF), "end_lr"),
])
def test_bad_schedules_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_rates_are_rates():
    assert Constant(np.float32(0.5)).lr(3) == pytest.approx(0.5)
    assert StepDecay(np.float64(0.1), 2).lr(2) == pytest.approx(0.01)


class _Negative(Schedule):
    def lr(self, t):
        return 0.1 - 0.05 * t


def test_scheduled_never_gives_the_optimizer_a_bad_rate():
    """Probe: Scheduled(opt, Constant(-1.0)) set the optimizer's lr to -1 past its own check."""
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    sched = Scheduled(opt, _Negative())
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    opt.step()
    with pytest.raises(ValueError, match="the rate of _Negative at step 3 must be a finite number >= 0"):
        sched.step()


def test_range_test_refuses_an_empty_loader_and_a_model_without_parameters():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="loader is empty"):  # was a bare StopIteration
        lr_range_test(model, [], opt)
    with pytest.raises(ValueError, match="the model's parameters must not be empty"):
        lr_range_test(nn.ReLU(), [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))], opt)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(init_std=NAN), ValueError, "init_std must be positive, got nan"),
    (dict(in_features=-1), ValueError, "in_features must be an integer >= 1"),
    (dict(num_classes=0), ValueError, "num_classes must be an integer >= 1"),
])
def test_initialization_config_is_validated(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLPConfig(**kwargs)

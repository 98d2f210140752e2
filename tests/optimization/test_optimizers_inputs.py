"""What the optimizers accept and refuse; complex and sparse parameters (reliability probe,
issue 13: defects 11 and 19)."""

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.optimization.optimizers import SGD, Adam, AdamW, RMSprop, rosenbrock, trajectory


@pytest.mark.parametrize("lr", [np.float32(0.1), np.float64(0.1), torch.tensor(0.1), 1])
def test_numpy_scalars_and_0d_tensors_are_rates(lr):
    """Probe: SGD(lr=np.float32(0.1)) was refused, although torch.optim accepts it."""
    p = nn.Parameter(torch.ones(2))
    for cls in (SGD, Adam, RMSprop):
        opt = cls([p], lr=lr)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 if lr != 1 else 1.0)
        assert torch.optim.SGD([p], lr=lr)  # as torch.optim does


@pytest.mark.parametrize("make, exc, match", [
    (lambda p: SGD(p, lr=float("nan")), ValueError, "lr must be a number >= 0"),
    (lambda p: SGD(p, lr=-0.1), ValueError, "lr must be a number >= 0.0, got -0.1"),
    (lambda p: SGD(p, lr="0.1"), TypeError, "lr must be a real number"),
    (lambda p: SGD(p, lr=None), TypeError, "lr must be a real number, got None"),
    (lambda p: SGD(p, lr=True), TypeError, "lr must be a real number"),
    (lambda p: Adam(p, betas=(float("nan"), 0.9)), ValueError, r"betas\[0\]"),
    (lambda p: Adam(p, eps=float("nan")), ValueError, "eps"),
    (lambda p: RMSprop(p, alpha=float("inf")), ValueError, "alpha"),
    (lambda p: AdamW(p, weight_decay=float("nan")), ValueError, "weight_decay"),
])
def test_bad_hyperparameters_are_refused(make, exc, match):
    with pytest.raises(exc, match=match):
        make([nn.Parameter(torch.ones(2))])


def test_infinite_lr_is_accepted_as_torch_does():
    SGD([nn.Parameter(torch.ones(1))], lr=float("inf"))


def _run_complex(ours_cls, theirs_cls, steps=6, **hyper):
    z1 = nn.Parameter(torch.tensor([1 + 2j, -0.5 + 0.3j], dtype=torch.complex128))
    z2 = nn.Parameter(z1.detach().clone())
    o1, o2 = ours_cls([z1], **hyper), theirs_cls([z2], **hyper)
    for _ in range(steps):
        for z, o in ((z1, o1), (z2, o2)):
            o.zero_grad()
            ((z.abs() ** 2).sum() + (z.real * z.imag).sum()).backward()
            o.step()
    return z1, z2


@pytest.mark.parametrize("cls, hyper", [
    (Adam, dict(lr=0.1)),
    (Adam, dict(lr=0.1, amsgrad=True, weight_decay=0.1)),
    (AdamW, dict(lr=0.1, weight_decay=0.1)),
    (RMSprop, dict(lr=0.05)),
    (RMSprop, dict(lr=0.05, centered=True, momentum=0.9, weight_decay=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
])
def test_complex_parameters_follow_torch_optim(cls, hyper):
    """Probe defect 11: Adam/RMSprop squared the complex gradient (g * g) instead of |g|^2 per part."""
    z1, z2 = _run_complex(cls, getattr(torch.optim, cls.__name__), **hyper)
    torch.testing.assert_close(z1, z2, rtol=0, atol=0)


def test_sparse_gradients_are_refused_clearly():
    emb = nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    for cls in (Adam, RMSprop):
        with pytest.raises(RuntimeError, match=f"{cls.__name__} does not support sparse gradients"):
            cls(emb.parameters(), lr=0.1).step()
    SGD(emb.parameters(), lr=0.1).step()  # plain SGD handles them, as torch.optim's


def test_trajectory_start_must_be_a_point():
    """Probe: a third start coordinate was silently ignored."""
    with pytest.raises(ValueError, match=r"start must have shape \(2\), got \(3,\)"):
        trajectory(rosenbrock, (1.0, 2.0, 3.0), SGD, 3, lr=1e-3)
    with pytest.raises(ValueError, match="start must be finite"):
        trajectory(rosenbrock, (float("nan"), 2.0), SGD, 3, lr=1e-3)

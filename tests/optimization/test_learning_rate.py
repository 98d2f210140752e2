"""Schedules against torch.optim.lr_scheduler, the range test against torch-lr-finder, and training with both."""

import contextlib
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler as L
from torch.utils.data import DataLoader, TensorDataset
from torch_lr_finder import LRFinder

from dlbook.optimization.learning_rate import (
    Constant, Cyclical, ExponentialDecay, OneCycle, RangeTestConfig, Scheduled, StepDecay, WarmupCosine,
    lr_range_test, top_hessian_eigenvalue,
)
from dlbook.optimization.optimizers import SGD
from dlbook.train import fit

N = 250
PAIRS = {
    "step": (StepDecay(0.1, 30, 0.5), lambda o: L.StepLR(o, step_size=30, gamma=0.5)),
    "exponential": (ExponentialDecay(0.1, 0.98), lambda o: L.ExponentialLR(o, gamma=0.98)),
    "warmup-cosine": (
        WarmupCosine(0.1, total_steps=N, warmup_steps=25, start_factor=0.01, min_lr=1e-4),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.01, total_iters=25),
                                     L.CosineAnnealingLR(o, T_max=N - 25, eta_min=1e-4)], milestones=[25]),
    ),
    "cosine-no-warmup": (WarmupCosine(0.1, total_steps=N), lambda o: L.CosineAnnealingLR(o, T_max=N)),
    "triangular": (Cyclical(1e-3, 0.1, 20), lambda o: L.CyclicLR(o, 1e-3, 0.1, 20, cycle_momentum=False)),
    "triangular2-asym": (Cyclical(1e-3, 0.1, 15, 35, mode="triangular2"),
                         lambda o: L.CyclicLR(o, 1e-3, 0.1, 15, 35, mode="triangular2", cycle_momentum=False)),
    "exp_range-momentum": (Cyclical(1e-3, 0.1, 20, mode="exp_range", gamma=0.99, cycle_momentum=True),
                           lambda o: L.CyclicLR(o, 1e-3, 0.1, 20, mode="exp_range", gamma=0.99)),
    "one-cycle": (OneCycle(0.1, N), lambda o: L.OneCycleLR(o, 0.1, total_steps=N)),
    "one-cycle-linear-3phase": (OneCycle(0.1, N, pct_start=0.25, anneal="linear", three_phase=True, div_factor=10),
                                lambda o: L.OneCycleLR(o, 0.1, total_steps=N, pct_start=0.25, anneal_strategy="linear",
                                                       three_phase=True, div_factor=10)),
}


def _sequence(make_scheduler, opt_cls=torch.optim.SGD, steps=N, **hyper):
    """The (lr, momentum) of every step, as the optimizer sees them."""
    p = nn.Parameter(torch.zeros(3))
    opt = opt_cls([p], lr=0.1, **hyper)
    sched = make_scheduler(opt)
    lrs, moms = [], []
    for _ in range(steps):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if "betas" in g else g.get("momentum"))
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
    return torch.tensor(lrs, dtype=torch.float64), moms


@pytest.mark.parametrize("name", list(PAIRS))
def test_schedule_equals_torch_scheduler(name):
    ours, theirs = PAIRS[name]
    a, am = _sequence(lambda o: Scheduled(o, ours), momentum=0.9)
    b, bm = _sequence(theirs, momentum=0.9)
    assert a.max() > a.min()  # the rate really changes
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.tensor(am), torch.tensor(bm), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.tensor(ours.sequence(N), dtype=torch.float64), b, rtol=1e-12, atol=1e-15)


def test_one_cycle_sets_adams_beta1_like_torch():
    a, am = _sequence(lambda o: Scheduled(o, OneCycle(0.01, N)), torch.optim.Adam)
    b, bm = _sequence(lambda o: L.OneCycleLR(o, 0.01, total_steps=N), torch.optim.Adam)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert am == bm and min(am) == pytest.approx(0.85) and am[0] == pytest.approx(0.95)


def test_schedule_shapes():
    oc = OneCycle(1.0, 100, pct_start=0.3)
    seq = oc.sequence(100)
    assert seq[0] == pytest.approx(1 / 25) and max(seq) == pytest.approx(1.0, rel=1e-3)
    assert seq[-1] == pytest.approx(1 / 25 / 1e4) and seq.index(max(seq)) == 29
    wc = WarmupCosine(2.0, total_steps=110, warmup_steps=10, start_factor=0.1, min_lr=0.0)
    assert wc.lr(0) == pytest.approx(0.2) and wc.lr(10) == 2.0 and wc.lr(60) == pytest.approx(1.0)
    assert wc.lr(110) == pytest.approx(0.0, abs=1e-15)
    assert StepDecay(1.0, 10, 0.1).lr(25) == pytest.approx(0.01)
    assert Constant(0.3).sequence(4) == [0.3] * 4
    tri = Cyclical(0.0, 1.0, 10)
    assert tri.lr(0) == 0.0 and tri.lr(10) == 1.0 and tri.lr(5) == 0.5 and tri.lr(20) == 0.0


def test_scheduled_plugs_into_fit_and_resumes_from_state_dict(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=g)
    y = (x[:, 0] > 0).long()

    def run(epochs, checkpoint=None):
        torch.manual_seed(0)
        model = nn.Linear(5, 2)
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = Scheduled(opt, OneCycle(0.5, total_steps=4 * 8))
        loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))
        h = fit(model, loader, opt, epochs=epochs, scheduler=sched, scheduler_step="batch", checkpoint=checkpoint,
                progress=False)
        return model, h, opt

    straight, h, opt = run(4)
    assert h["train_loss"][-1] < h["train_loss"][0] / 2
    # fit stepped the schedule 32 times: the momentum is that of step 32, back near the start's 0.95
    momentum = opt.param_groups[0]["momentum"]
    assert momentum == pytest.approx(OneCycle(0.5, total_steps=32).momentum(32)) and momentum > 0.94
    ckpt = tmp_path / "ckpt.pt"
    run(2, ckpt)
    resumed, _, _ = run(4, ckpt)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("make, message", [
    (lambda: StepDecay(0.1, 0), "step_size"),
    (lambda: WarmupCosine(0.1, total_steps=10, warmup_steps=10), "total_steps"),
    (lambda: Cyclical(0.0, 1.0, 10, mode="sine"), "mode"),
    (lambda: OneCycle(0.1, 100, pct_start=1.5), "pct_start"),
    (lambda: OneCycle(0.1, 100).lr(101), "total_steps"),
    (lambda: Constant(0.1).lr(-1), "non-negative"),
    (lambda: RangeTestConfig(start_lr=1.0, end_lr=0.1), "end_lr"),
    (lambda: Scheduled(torch.optim.Adagrad([nn.Parameter(torch.zeros(1))]), OneCycle(0.1, 10)), "cycle_momentum"),
])
def test_bad_arguments_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- the range test -----------------------------------------------------------------------------


def _problem(seed=0, n=512):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = (x @ torch.randn(20, 4, generator=g)).argmax(1)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))
    return model, loader, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


@pytest.mark.parametrize("smooth_f, num_iter", [(0.05, 60), (0.0, 40), (0.2, 100)])
def test_range_test_equals_torch_lr_finder(smooth_f, num_iter):
    cfg = RangeTestConfig(start_lr=1e-5, end_lr=10.0, num_iter=num_iter, smooth_f=smooth_f)
    model, loader, opt = _problem()
    ours = lr_range_test(model, loader, opt, config=cfg)
    model, loader, opt = _problem()
    finder = LRFinder(model, opt, F.cross_entropy, device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        finder.range_test(loader, start_lr=cfg.start_lr, end_lr=cfg.end_lr, num_iter=cfg.num_iter,
                          smooth_f=cfg.smooth_f, diverge_th=cfg.diverge_th)
    assert len(ours.lrs) == len(finder.history["lr"]) > 20  # num_iter=40 wraps around the 16-batch loader
    torch.testing.assert_close(torch.tensor(ours.lrs), torch.tensor(finder.history["lr"]), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.tensor(ours.losses), torch.tensor(finder.history["loss"]), rtol=1e-6, atol=1e-7)
    if len(ours.lrs) >= 17:
        with contextlib.redirect_stdout(io.StringIO()):
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots()
            _, suggested = finder.plot(ax=ax)
            plt.close(fig)
        assert ours.steepest() == pytest.approx(suggested)


def test_range_test_stops_at_divergence_and_restores_everything():
    model, loader, opt = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    opt_before = opt.state_dict()["param_groups"][0]["lr"]
    result = lr_range_test(model, loader, opt, config=RangeTestConfig(start_lr=1e-4, end_lr=100.0, num_iter=200))
    assert result.diverged and len(result.lrs) < 200
    assert result.losses[-1] > 5 * min(result.losses)
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))  # the rate only grows
    ratio = result.lrs[1] / result.lrs[0]
    assert ratio == pytest.approx((100.0 / 1e-4) ** (1 / 199))
    for a, b in zip(model.parameters(), before):
        assert torch.equal(a.detach(), b)
    assert opt.param_groups[0]["lr"] == opt_before and not opt.state  # momentum buffers gone too
    assert 1e-4 < result.min_divided() < result.lrs[-1]


def test_the_suggested_rate_trains_and_a_much_larger_one_does_not():
    model, loader, opt = _problem(n=1024)
    result = lr_range_test(model, loader, opt, config=RangeTestConfig(start_lr=1e-5, end_lr=100.0, num_iter=100))
    suggestion = result.min_divided()  # (the steepest point, 5x larger, diverges here after an epoch: see the chapter)
    losses = {}
    for lr in (suggestion, 30 * result.lrs[-1]):
        model, loader, _ = _problem(n=1024)
        h = fit(model, loader, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), epochs=4, progress=False)
        losses[lr] = h["train_loss"]
    good, bad = losses[suggestion], losses[30 * result.lrs[-1]]
    assert good[-1] < good[0] / 3 and good[-1] < 0.4
    assert not (bad[-1] < 0.4), bad  # far past the divergence point training fails (or is NaN)
    assert math.isfinite(good[-1])


def test_range_test_needs_enough_points_to_suggest():
    model, loader, opt = _problem()
    result = lr_range_test(model, loader, opt, config=RangeTestConfig(num_iter=10))
    with pytest.raises(ValueError, match="at least"):
        result.steepest()


def test_top_hessian_eigenvalue_equals_the_exact_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randint(0, 2, (32,), generator=g)
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().flatten() for p in params])

    def loss_of(theta):
        chunks, i = [], 0
        for s in shapes:
            chunks.append(theta[i:i + math.prod(s)].view(s))
            i += math.prod(s)
        h = torch.tanh(x @ chunks[0].T + chunks[1])
        return F.cross_entropy(h @ chunks[2].T + chunks[3], y)

    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))
    top = exact[exact.abs().argmax()].item()
    assert top_hessian_eigenvalue(model, x, y, iters=300) == pytest.approx(top, rel=1e-4)


def test_gradient_descent_on_a_quadratic_diverges_just_above_two_over_lambda_max():
    """For a quadratic loss the rule eta < 2 / lambda_max is exact."""
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g) * torch.tensor([1.0, 1, 1, 1, 4])
    y = torch.randn(64, 1, generator=g)
    lam = top_hessian_eigenvalue(model, x, y, F.mse_loss, iters=200)
    finals = {}
    for factor in (0.95, 1.05):
        m = nn.Linear(5, 1, bias=False)
        m.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=factor * 2 / lam)
        for _ in range(300):
            opt.zero_grad()
            F.mse_loss(m(x), y).backward()
            opt.step()
        finals[factor] = F.mse_loss(m(x), y).item()
    assert finals[0.95] < 10 and finals[1.05] > 1e3, finals


def test_scheduler_state_refuses_a_different_schedule():
    p = nn.Parameter(torch.zeros(1))
    sched = Scheduled(torch.optim.SGD([p], lr=0.1, momentum=0.9), OneCycle(0.1, 100))
    state = sched.state_dict()
    other = Scheduled(torch.optim.SGD([p], lr=0.1, momentum=0.9), OneCycle(0.2, 100))
    with pytest.raises(ValueError, match="schedules"):
        other.load_state_dict(state)
    same = Scheduled(torch.optim.SGD([p], lr=0.1, momentum=0.9), OneCycle(0.1, 100))
    same.load_state_dict(state)
    assert same.last_epoch == sched.last_epoch

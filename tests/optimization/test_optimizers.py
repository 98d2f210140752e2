"""Our SGD, RMSprop, Adam and AdamW against torch.optim, the test surfaces, and short training runs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.optimization import optimizers as ours
from dlbook.optimization.optimizers import (
    SGD, Adam, AdamW, RMSprop, first_step_below, quadratic, rosenbrock, saddle, trajectory,
)
from dlbook.train import fit

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, weight_decay=1e-2)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _run(opt_cls, hyper, steps=100, groups=False):
    """Parameters of a small network after ``steps`` mini-batch steps; the same batches every call."""
    model = _net()
    params = ([{"params": model[0].parameters(), "lr": hyper["lr"] / 2}, {"params": model[2:].parameters()}]
              if groups else model.parameters())
    opt = opt_cls(params, **hyper)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("name, hyper", CASES, ids=[f"{n}-{'-'.join(map(str, h.items()))}" for n, h in CASES])
def test_same_trajectory_as_torch_optim(name, hyper):
    theirs, _ = _run(getattr(torch.optim, name), hyper)
    mine, _ = _run(getattr(ours, name), hyper)
    start, _ = _run(getattr(ours, name), hyper, steps=0)
    assert max((a - b).abs().max() for a, b in zip(mine, start)) > 1e-2  # the parameters really moved
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name, hyper", [CASES[5], CASES[8], CASES[13]])
def test_parameter_groups_and_state_dict_match_torch(name, hyper):
    theirs, t_opt = _run(getattr(torch.optim, name), hyper, steps=30, groups=True)
    mine, m_opt = _run(getattr(ours, name), hyper, steps=30, groups=True)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b)
    ts, ms = t_opt.state_dict()["state"], m_opt.state_dict()["state"]
    buffers = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "momentum_buffer"}
    for i in ts:
        for key in buffers & set(ts[i]):
            torch.testing.assert_close(ms[i][key], ts[i][key])


@pytest.mark.parametrize("name, hyper", [CASES[3], CASES[9]])
def test_resuming_from_state_dict_is_exact(name, hyper):
    straight, _ = _run(getattr(ours, name), hyper, steps=40)
    model = _net()
    opt = getattr(ours, name)(model.parameters(), **hyper)
    g = torch.Generator().manual_seed(1)
    for step in range(40):
        if step == 20:  # rebuild the optimizer from its state, as after a restart
            state = opt.state_dict()
            opt = getattr(ours, name)(model.parameters(), **hyper)
            opt.load_state_dict(state)
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for a, b in zip(model.parameters(), straight):
        assert torch.equal(a.detach(), b)


def test_closure_is_evaluated_and_returned():
    p = torch.tensor([3.0], requires_grad=True)
    opt = SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 9.0
    assert p.item() == pytest.approx(3.0 - 0.25 * 6.0)


def test_parameters_without_gradient_are_left_alone():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    for opt in (SGD([a, b], lr=0.1, momentum=0.9), Adam([a, b]), RMSprop([a, b])):
        opt.zero_grad()
        a.sum().backward()
        opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and (a.detach() < 1).all()


def test_adamw_decays_weights_without_gradient_scaling():
    """With a zero gradient, Adam's L2 term moves a weight by lr (sign-like), AdamW's by lr * wd * w."""
    for cls, expected in [(AdamW, 2.0 * (1 - 0.1 * 0.5)), (Adam, 2.0 - 0.1)]:
        w = torch.tensor([2.0], requires_grad=True)
        opt = cls([w], lr=0.1, weight_decay=0.5)
        w.grad = torch.zeros(1)
        opt.step()
        assert w.item() == pytest.approx(expected, rel=1e-6), cls.__name__


@pytest.mark.parametrize("make, message", [
    (lambda p: SGD(p, lr=-1), "lr"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: RMSprop(p, alpha=1.5), "alpha"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda p: Adam(p, betas=0.9), "betas"),
    (lambda p: AdamW(p, weight_decay=-0.1), "weight_decay"),
])
def test_bad_hyperparameters_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make([torch.zeros(1, requires_grad=True)])


# --- test surfaces ---------------------------------------------------------------------------


@pytest.mark.parametrize("f, point", [(saddle, (0.0, 1.0)), (saddle, (0.0, -1.0)), (saddle, (0.0, 0.0)),
                                      (rosenbrock, (1.0, 1.0)), (quadratic, (0.0, 0.0))])
def test_stationary_points_have_zero_gradient(f, point):
    p = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    f(p).backward()
    torch.testing.assert_close(p.grad, torch.zeros(2, dtype=torch.float64))


def test_surfaces_match_their_formulas_and_hessians():
    p = torch.tensor([0.3, -0.7], dtype=torch.float64)
    assert saddle(p).item() == pytest.approx(0.09 + 0.7**4 / 4 - 0.49 / 2)
    assert rosenbrock(p).item() == pytest.approx(0.49 + 100 * (-0.7 - 0.09) ** 2)
    h = torch.autograd.functional.hessian(lambda q: quadratic(q, kappa=40.0, angle=0.6), p)
    torch.testing.assert_close(torch.linalg.eigvalsh(h), torch.tensor([1.0, 40.0], dtype=torch.float64))
    h0 = torch.autograd.functional.hessian(saddle, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(h0, torch.diag(torch.tensor([2.0, -1.0], dtype=torch.float64)))


def test_trajectory_of_torch_and_ours_agree_on_rosenbrock():
    a = trajectory(rosenbrock, (-1.5, 2.0), Adam, 200, lr=0.05)
    b = trajectory(rosenbrock, (-1.5, 2.0), torch.optim.Adam, 200, lr=0.05)
    assert a.shape == (201, 2) and a[0].tolist() == [-1.5, 2.0]
    torch.testing.assert_close(a, b)


def test_gradient_descent_on_a_quadratic_converges_at_the_predicted_rate():
    """Optimal step 2/(1+kappa): each step multiplies the error by (kappa-1)/(kappa+1), f by its square."""
    kappa = 20.0
    path = trajectory(lambda p: quadratic(p, kappa), (1.0, 1.0), SGD, 60, lr=2 / (1 + kappa))
    f = quadratic(path, kappa)
    rate = (f[60] / f[40]).item() ** (1 / 20)
    assert rate == pytest.approx(((kappa - 1) / (kappa + 1)) ** 2, rel=1e-6)


def test_adam_escapes_the_saddle_much_faster_than_sgd():
    """The chapter's claim: SGD's escape is geometric in the tiny offset, Adam's step is ~lr from the start."""
    lr, y0 = 0.05, 1e-4
    steps = {}
    for name, cls in [("sgd", SGD), ("adam", Adam)]:
        path = trajectory(saddle, (1.0, y0), cls, 400, lr=lr)
        steps[name] = first_step_below(saddle(path), -0.2)
    predicted_sgd = math.log(0.8 / y0) / math.log(1 + lr)  # |y| grows by (1 + lr) per step near the saddle
    assert steps["sgd"] == pytest.approx(predicted_sgd, rel=0.15)
    assert steps["adam"] < steps["sgd"] / 5


def test_first_step_below():
    assert first_step_below(torch.tensor([3.0, 2.0, 0.5, 0.1]), 1.0) == 2
    assert first_step_below(torch.tensor([3.0, 2.0]), 1.0) is None


# --- training -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, hyper", [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)), (RMSprop, dict(lr=3e-3)),
                                        (Adam, dict(lr=3e-3)), (AdamW, dict(lr=3e-3, weight_decay=0.05))])
def test_each_optimizer_trains_a_classifier_through_fit(cls, hyper):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 10, generator=g)
    y = (x @ torch.randn(10, 3, generator=g)).argmax(1)  # 3 linearly separable classes
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    history = fit(model, loader, cls(model.parameters(), **hyper), epochs=8, progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0] / 4
    assert history["train_acc"][-1] > 0.9  # chance is about 1/3

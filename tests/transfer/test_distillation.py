"""Tests for dlbook.transfer.distillation: the loss against PyTorch's kl_div
and cross_entropy, its gradient against autograd and gradcheck, the T² scaling,
jitter, the batch loader, the bias correction, a short distillation run that
must learn, and bad input."""

import pytest
import torch
import torch.nn.functional as F

from dlbook.train import fit
from dlbook.transfer.distillation import (
    Batches,
    DistillationLoss,
    NetConfig,
    bias_for_rate,
    count_errors,
    distillation_loss,
    jitter,
    logits_of,
    soft_target_grad,
    soft_targets,
    train_net,
)


def _logits(n=16, k=10, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    v = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, k, (n,), generator=g)
    return z, v, y


@pytest.mark.parametrize("T", [1.0, 2.5, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_equals_kl_div_and_cross_entropy(T, alpha):
    z, v, y = _logits()
    kl = F.kl_div(
        F.log_softmax(z / T, 1), F.softmax(v / T, 1), reduction="batchmean"
    )
    ref = alpha * kl * T**2 + (1 - alpha) * F.cross_entropy(z, y)
    torch.testing.assert_close(distillation_loss(z, v, y, T, alpha), ref)


def test_loss_is_zero_on_the_soft_term_when_student_equals_teacher():
    z, _, y = _logits()
    soft = distillation_loss(z, z.clone(), y, T=3.0, alpha=1.0)
    assert abs(soft.item()) < 1e-12
    # and positive otherwise (KL >= 0, = 0 only for equal distributions)
    assert distillation_loss(z, z.flip(1), y, T=3.0, alpha=1.0) > 1e-3


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
def test_gradcheck(T):
    z, v, y = _logits(n=4, k=5)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: distillation_loss(s, v, y, T, 0.6), (z,)
    )


@pytest.mark.parametrize("T", [1.0, 3.0, 30.0])
def test_hand_gradient_equals_autograd(T):
    z, v, y = _logits()
    z.requires_grad_(True)
    kl = distillation_loss(z, v, y, T, alpha=1.0) / T**2
    (auto,) = torch.autograd.grad(kl, z)
    torch.testing.assert_close(
        soft_target_grad(z.detach(), v, T) / len(z), auto
    )


def test_no_gradient_reaches_the_teacher():
    z, v, y = _logits()
    z.requires_grad_(True)
    v.requires_grad_(True)
    distillation_loss(z, v, y).backward()
    assert v.grad is None and z.grad is not None


def test_T_squared_keeps_the_gradient_size():
    z, v, y = _logits(n=64, scale=2.0)
    z.requires_grad_(True)
    norms = {}
    for T in (10.0, 100.0):
        (g,) = torch.autograd.grad(distillation_loss(z, v, y, T, 1.0), z)
        norms[T] = g.norm().item()
    # with T^2 the norm changes little between T = 10 and 100 ...
    assert 0.8 < norms[100.0] / norms[10.0] < 1.2, norms
    # ... without it, it would fall by about (100 / 10)^2
    assert (norms[10.0] / 100) / (norms[100.0] / 1e4) > 80


def test_soft_targets_are_distributions_and_soften_with_T():
    z, _, _ = _logits()
    p1, p10 = soft_targets(z, 1.0), soft_targets(z, 10.0)
    torch.testing.assert_close(p1.sum(1), torch.ones(16, dtype=torch.float64))
    torch.testing.assert_close(p1, F.softmax(z, 1))
    assert (p10.max(1).values < p1.max(1).values).all()
    assert (p10.argmax(1) == p1.argmax(1)).all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(T=0.0), "T must"),
        (dict(T=-1.0), "T must"),
        (dict(T=float("nan")), "T must"),
        (dict(alpha=1.5), "alpha must"),
        (dict(alpha=-0.1), "alpha must"),
        (dict(teacher_logits=torch.zeros(16, 9)), "teacher_logits"),
        (dict(target=torch.full((16,), 10)), "target must"),
        (dict(target=torch.zeros(15, dtype=torch.long)), "target"),
        (dict(student_logits=torch.zeros(16)), "student_logits must"),
    ],
)
def test_bad_input_names_the_argument(bad, match):
    z, v, y = _logits()
    args = dict(student_logits=z, teacher_logits=v, target=y) | bad
    with pytest.raises(ValueError, match=match):
        distillation_loss(**args)


def test_bad_input_of_the_other_functions():
    z, v, _ = _logits()
    with pytest.raises(ValueError, match="T must"):
        soft_targets(z, 0)
    with pytest.raises(ValueError, match="T must"):
        DistillationLoss(T=-2)
    with pytest.raises(ValueError, match="alpha must"):
        DistillationLoss(alpha=2)
    with pytest.raises(ValueError, match="same shape"):
        soft_target_grad(z, v[:, :3], 2.0)
    with pytest.raises(ValueError, match="rate must"):
        bias_for_rate(z, 3, 1.2)
    with pytest.raises(ValueError, match="cls must"):
        bias_for_rate(z, 10, 0.1)
    with pytest.raises(ValueError, match="max_shift must"):
        jitter(torch.zeros(2, 1, 4, 4), -1, torch.Generator())
    with pytest.raises(ValueError, match="same length"):
        Batches(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))


def test_jitter_shifts_each_image_within_range():
    x = torch.zeros(50, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0  # one bright pixel in the middle
    out = jitter(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.all(out.sum((1, 2, 3)) == 1)  # nothing lost off the edge
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert rows.min() == 2 and rows.max() == 6  # every shift in [-2, 2] ...
    assert cols.min() == 2 and cols.max() == 6  # ... is drawn
    # each output is one of the 25 zero-filled translations of its input
    img = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    out = jitter(img, 2, torch.Generator().manual_seed(2))
    padded = F.pad(img, (2, 2, 2, 2))
    shifts = [
        padded[:, :, a : a + 6, b : b + 6] for a in range(5) for b in range(5)
    ]
    for i in range(8):
        assert any(torch.equal(out[i], s[i]) for s in shifts)


def test_batches_cover_every_example_once_and_keep_pairs_aligned():
    x = torch.arange(23.0)[:, None]
    y = torch.arange(23)
    t = torch.arange(23.0)[:, None] * 10
    seen = []
    for xb, (yb, tb) in Batches(x, (y, t), batch_size=5, seed=1):
        assert torch.equal(xb[:, 0].long(), yb)
        assert torch.equal(tb[:, 0], xb[:, 0] * 10)
        seen += yb.tolist()
    assert sorted(seen) == list(range(23))
    assert len(Batches(x, y, batch_size=5)) == 5


def test_fit_averages_a_tuple_target_over_examples():
    """dlbook.train counts the rows of a (labels, logits) target, not 2."""
    torch.manual_seed(0)
    x = torch.randn(30, 4)
    y = torch.randint(0, 3, (30,))
    v = torch.randn(30, 3)
    net = torch.nn.Linear(4, 3)
    loss = DistillationLoss(T=2.0, alpha=0.5)
    batches = Batches(x, (y, v), batch_size=7)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    hist = fit(net, batches, opt, epochs=1, loss_fn=loss, metrics={})
    with torch.no_grad():
        whole = loss(net(x), (y, v)).item()
    assert abs(hist["train_loss"][0] - whole) < 1e-5


def test_bias_for_rate_gives_the_rate():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1000, 10, generator=g)
    z[:, 3] -= 5.0  # class 3 almost never wins
    for rate in (0.0, 0.1, 0.37, 1.0):
        d = bias_for_rate(z, 3, rate)
        z2 = z.clone()
        z2[:, 3] += d
        assert (z2.argmax(1) == 3).float().mean().item() == pytest.approx(
            rate, abs=1e-3
        )


def test_distillation_learns_from_a_teacher():
    """A tiny student on a 2-D three-class problem learns the teacher's
    rule from soft targets, with no labels (alpha = 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 1, 1, 2, generator=g)
    w = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    v = x.flatten(1) @ w.T * 3  # the teacher's logits: a linear rule
    y = v.argmax(1)
    cfg = NetConfig(
        hidden=(16,), num_classes=3, epochs=15, batch_size=50, lr=0.05
    )
    wrong = torch.randint(0, 3, (600,), generator=g)  # labels ignored
    student = train_net(x, (wrong, v), cfg, DistillationLoss(4.0, alpha=1.0))
    errors = count_errors(student, x, y)
    assert errors < 30, errors  # chance: about 400 of 600
    agree = (logits_of(student, x).argmax(1) == y).float().mean()
    assert agree > 0.95

"""Knowledge distillation: a small network trained on a large one's outputs.

The pieces of ``book/transfer/distillation.md``: soft targets at a
temperature (`soft_targets`), the distillation loss of Hinton et al. (2015),
a weighted sum of T² times the KL divergence between the softened outputs of
teacher and student and the cross-entropy with the true labels
(`distillation_loss`, `DistillationLoss`), its hand-derived gradient
(`soft_target_grad`), random translations of the input by a few pixels
(`jitter`), a batch loader whose targets may be a tuple of labels and teacher
logits (`Batches`), the training of teacher and student through
`dlbook.train.fit` (`train_net`), and the bias correction of a class the
student never saw (`bias_for_rate`).

Reference: Hinton, Vinyals & Dean (2015), "Distilling the knowledge in a neural
network", arXiv:1503.02531. The loss is checked against the expression built
from PyTorch's ``F.kl_div`` and ``F.cross_entropy``, and its gradient against
``torch.autograd`` (and ``torch.autograd.gradcheck``), in
``tests/transfer/test_distillation.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbook.checks import (
    check_int,
    check_labels,
    check_number,
    check_probability,
    check_same_length,
    check_same_shape,
    check_tensor,
)
from dlbook.regularization.regularization import MLP, MLPConfig
from dlbook.train import accuracy, evaluate, fit


def _check_logits(name: str, logits: Tensor) -> Tensor:
    return check_tensor(name, logits, ndim=2, floating=True, nonempty=True)


def _check_temperature(T) -> float:
    return check_number("T", T, low=0, low_open=True)


def soft_targets(logits: Tensor, T: float = 1.0) -> Tensor:
    """The softmax of the logits divided by the temperature ``T``.

    ``T = 1`` is the ordinary softmax; a larger ``T`` gives a softer
    distribution that shows how the network ranks the wrong classes.

    Shapes:
        logits: (N, C); output: (N, C), each row summing to one.
    """
    _check_logits("logits", logits)
    return F.softmax(logits / _check_temperature(T), dim=1)


def _check_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    check_same_shape(
        student_logits=student_logits, teacher_logits=teacher_logits
    )


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    T: float = 4.0,
    alpha: float = 0.5,
) -> Tensor:
    """Hinton et al.'s loss: alpha T² KL(p_T ‖ q_T) + (1 - alpha) CE(z, y).

    With student logits z, teacher logits v, p_T = softmax(v / T) and
    q_T = softmax(z / T), averaged over the batch:

        L = alpha · T² · Σ_k p_T,k (log p_T,k − log q_T,k)
            + (1 − alpha) · (−log softmax(z)_y).

    The KL divergence differs from the cross-entropy between p_T and q_T
    only by the teacher's entropy, which does not depend on z, so both give
    the gradient (q_T − p_T) / T of `soft_target_grad`; the factor T²
    keeps its size independent of T.

    Args:
        student_logits: the student's logits z.
        teacher_logits: the teacher's logits v (no gradient flows to them).
        target: the true class of each example.
        T: the temperature, > 0.
        alpha: the weight of the soft term, in [0, 1] (1: soft targets only,
            0: the labels only).

    Shapes:
        student_logits, teacher_logits: (N, C); target: (N,); output: ().
    """
    _check_pair(student_logits, teacher_logits)
    check_labels("target", target, student_logits.shape[1])
    check_same_length(student_logits=student_logits, target=target)
    T = _check_temperature(T)
    alpha = check_probability("alpha", alpha)
    log_q = F.log_softmax(student_logits / T, dim=1)  # (N, C)
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=1)  # (N, C)
    kl = (log_p.exp() * (log_p - log_q)).sum(1).mean()
    hard = F.cross_entropy(student_logits, target)
    return alpha * T**2 * kl + (1 - alpha) * hard


def soft_target_grad(
    student_logits: Tensor, teacher_logits: Tensor, T: float
) -> Tensor:
    """∂/∂z of the soft term KL(p_T ‖ q_T) of one example: (q_T − p_T) / T.

    Hinton et al.'s equation (2). Row i is the gradient for example i (the
    loss of the batch averages the rows, so its gradient is this over N).

    Shapes:
        student_logits, teacher_logits: (N, C); output: (N, C).
    """
    _check_pair(student_logits, teacher_logits)
    T = _check_temperature(T)
    q = F.softmax(student_logits / T, dim=1)
    p = F.softmax(teacher_logits / T, dim=1)
    return (q - p) / T


class DistillationLoss:
    """`distillation_loss` as the ``loss_fn`` of `dlbook.train.fit`.

    The target of each batch is the pair ``(labels, teacher_logits)``, as
    `Batches` yields it.
    """

    def __init__(self, T: float = 4.0, alpha: float = 0.5):
        self.T = _check_temperature(T)
        self.alpha = check_probability("alpha", alpha)

    def __call__(self, output: Tensor, target: tuple[Tensor, Tensor]):
        labels, teacher_logits = target
        return distillation_loss(
            output, teacher_logits, labels, self.T, self.alpha
        )


def label_accuracy(output: Tensor, target) -> Tensor:
    """Accuracy against the labels, whether ``target`` is labels or a pair."""
    labels = target[0] if isinstance(target, (tuple, list)) else target
    return accuracy(output, labels)


# --- data --------------------------------------------------------------------


def jitter(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image by up to ``max_shift`` pixels in each direction.

    The vacated border is filled with zeros (MNIST's background). Hinton et
    al. trained their MNIST teacher on inputs "jittered by up to two pixels
    in any direction".

    Shapes:
        x: (N, C, H, W); output: (N, C, H, W).
    """
    k = check_int("max_shift", max_shift, low=0)
    if k == 0:
        return x
    check_tensor("x", x, ndim=4, floating=True)
    n, _, h, w = x.shape
    padded = F.pad(x, (k, k, k, k))  # (N, C, H + 2k, W + 2k)
    dy, dx = torch.randint(0, 2 * k + 1, (2, n, 1), generator=generator)
    rows = dy + torch.arange(h)  # (N, H)
    cols = dx + torch.arange(w)  # (N, W)
    b = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # (N, C, H, W)


class Batches:
    """Shuffled mini-batches ``(x, target)`` of tensors, re-drawn each epoch.

    ``target`` is a tensor or a tuple of tensors with one row per example,
    such as ``(labels, teacher_logits)`` for distillation. With
    ``max_shift`` > 0 each batch's images are jittered (`jitter`). All
    randomness comes from ``self.generator``, which `dlbook.train` saves in a
    checkpoint.
    """

    def __init__(
        self,
        x: Tensor,
        target: Tensor | tuple[Tensor, ...],
        batch_size: int = 100,
        *,
        max_shift: int = 0,
        seed: int = 0,
    ):
        check_tensor("x", x, floating=True, nonempty=True)
        parts = target if isinstance(target, tuple) else (target,)
        for i, t in enumerate(parts):
            check_tensor(f"target[{i}]", t)
            check_same_length(x=x, target=t)
        self.x, self.target = x, target
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.max_shift = check_int("max_shift", max_shift, low=0)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | tuple]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            x = jitter(self.x[idx], self.max_shift, self.generator)
            if isinstance(self.target, tuple):
                yield x, tuple(t[idx] for t in self.target)
            else:
                yield x, self.target[idx]


# --- training ----------------------------------------------------------------


@dataclass
class NetConfig:
    """The shape of an MLP (`dlbook.regularization`) and its training."""

    hidden: tuple[int, ...] = (1200, 1200)  # Hinton et al.'s MNIST teacher
    num_classes: int = 10  # outputs (logits)
    dropout: float = 0.0  # after each hidden ReLU (0.5 for the teacher)
    input_dropout: float = 0.0  # on the pixels (0.2 for the teacher)
    max_shift: int = 0  # input jitter in pixels (2 for the teacher)
    epochs: int = 10  # passes over the training (transfer) set
    batch_size: int = 100  # examples per step
    lr: float = 0.1  # SGD learning rate, cosine-annealed to zero
    momentum: float = 0.9  # SGD momentum
    seed: int = 0  # initial weights and batch order


def train_net(
    x: Tensor,
    target: Tensor | tuple[Tensor, Tensor],
    cfg: NetConfig,
    loss_fn=F.cross_entropy,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Train an MLP on ``(x, target)`` with SGD and `dlbook.train.fit`.

    ``target`` is the labels (with the default cross-entropy), or the pair
    ``(labels, teacher_logits)`` with a `DistillationLoss`. The data stay
    where they are; each batch is moved to ``device`` (default: the CPU).
    Returns the network in eval mode, on ``device``.
    """
    torch.manual_seed(cfg.seed)
    net = MLP(
        MLPConfig(
            in_features=x[0].numel(),
            hidden=cfg.hidden,
            out_features=cfg.num_classes,
            dropout=cfg.dropout,
            input_dropout=cfg.input_dropout,
        )
    ).to(device or "cpu")
    loader = Batches(
        x, target, cfg.batch_size, max_shift=cfg.max_shift, seed=cfg.seed
    )
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=cfg.epochs * len(loader)
    )
    fit(
        net,
        loader,
        opt,
        epochs=cfg.epochs,
        loss_fn=loss_fn,
        metrics={"acc": label_accuracy},
        scheduler=sched,
        scheduler_step="batch",
    )
    return net.eval()


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """The model's logits on ``x`` (eval mode, in batches), on the CPU."""
    check_tensor("x", x, floating=True, nonempty=True)
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat(
        [
            model(x[i : i + batch_size].to(dev)).cpu()
            for i in range(0, len(x), batch_size)
        ]
    )


def count_errors(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """How many of the examples ``(x, y)`` the model misclassifies."""
    check_same_length(x=x, y=y)
    batches = [
        (x[i : i + 1000], y[i : i + 1000]) for i in range(0, len(x), 1000)
    ]
    acc = evaluate(model, batches, loss_fn=None)["acc"]
    return round((1 - acc) * len(y))


# --- a class the student never saw -------------------------------------------


def bias_for_rate(logits: Tensor, cls: int, rate: float) -> float:
    """The bias that makes a fraction ``rate`` of rows predicted as ``cls``.

    Example i is predicted as ``cls`` once the bias exceeds
    max_{j ≠ cls} z_ij − z_i,cls, so the bias is read off the sorted
    margins: no search, and no labels needed. Hinton et al. raised the bias of
    the omitted class by hand; here ``rate`` is chosen without labels, e.g.
    the fraction of unlabelled images the teacher assigns to ``cls``.

    Shapes:
        logits: (N, C); output: a float.
    """
    _check_logits("logits", logits)
    cls = check_int("cls", cls, low=0, high=logits.shape[1] - 1)
    rate = check_probability("rate", rate)
    others = logits.clone()
    others[:, cls] = -torch.inf
    need = torch.sort(others.max(1).values - logits[:, cls]).values  # (N,)
    k = round(rate * len(need))  # examples to predict as cls
    if k == 0:
        return float(need[0]) - 1.0
    if k == len(need):
        return float(need[-1]) + 1.0
    return float(need[k - 1] + need[k]) / 2

"""Re-run the reliability probe's reproducers and say what each one does now.

    python benchmarks/probe.py            # a table, then the counts per verdict
    python benchmarks/probe.py --failing  # only the rows that are not "good"

The probe (``../shared/reviews/2026-11-30-reliability-probe.md``, issue 13) ran 380 hostile but
fair calls against dlbook. This script repeats its ranked defects 1-20 and every probe-table
row that was not "good" outside the data layer (those rows are the integrator's, listed here as
"integrator" and not run), with the same inputs, and classifies the new behaviour as the probe
did:

* good: a clear error naming the argument or file (the expected message is checked), or the
  right answer (checked against the formula, the library or the expected value);
* weak: an error, but a generic one from torch/NumPy, or late;
* crash: an exception that does not say what was wrong (StopIteration, ZeroDivisionError,
  AttributeError, IndexError, EOFError, KeyError, an internal assert);
* silent-wrong: no error and a wrong result.

The exit status is 1 if any row is silent-wrong or a crash. CPU only; about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CRASHES = (StopIteration, ZeroDivisionError, AttributeError, IndexError, EOFError, KeyError, AssertionError,
           NotImplementedError)
NAN, INF = float("nan"), float("inf")


@dataclass
class Row:
    area: str
    probe: str
    was: str  # the probe's verdict on main (commit 93e7edc)
    run: Callable[[], object] | None
    raises: str | None = None  # the expected message (a regex), for rows that must fail clearly
    check: Callable[[object], bool] | None = None  # for rows that must give the right answer


ROWS: list[Row] = []


def row(area, probe, was, *, raises=None, check=None):
    def register(fn):
        ROWS.append(Row(area, probe, was, fn, raises, check))
        return fn

    return register


def integrator(area, probe, was):
    ROWS.append(Row(area, probe, was, None))


def classify(r: Row) -> tuple[str, str]:
    if r.run is None:
        return "integrator", "data layer: the integrator's (dlbook/data/)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = r.run()
        except Exception as err:  # noqa: BLE001 - classifying every failure is the point
            text = f"{type(err).__name__}: {err}".replace("\n", " ")
            if r.raises is not None and re.search(r.raises, str(err)) and not isinstance(err, CRASHES):
                return "good", text
            if isinstance(err, CRASHES) or "INTERNAL ASSERT" in str(err):
                return "crash", text
            return "weak", text
    warned = "; ".join(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    if r.check is not None:
        ok = bool(r.check(value))
        shown = f"returns {_short(value)}" + (f" (warns: {warned})" if warned else "")
        return ("good" if ok else "silent-wrong"), shown
    return "silent-wrong", f"no error; returned {_short(value)}"


def _short(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return f"tensor{tuple(value.shape)} {value.flatten()[:4].tolist()}"
    text = " ".join(repr(value).split())
    return text if len(text) < 80 else text[:77] + "..."


# --- the data layer: the integrator's -------------------------------------------------------------

for area, probe, was in [
    ("data", "DLBOOK_DATA under an untraversable folder", "crash"),
    ("data", "DLBOOK_OFFLINE=on (not 1/true/yes)", "weak"),
    ("data", "PPI: 12 files of garbage text", "crash"),
    ("data", "PPI: 12 empty files (interrupted unpack)", "crash"),
    ("data", "PPI: all-zero features/labels, no edges, right shapes", "silent-wrong"),
    ("data", "SIGKILL during archive fetch leaves .download-* folders (defect 14)", "weak"),
    ("data", "archive download prints pooch's known_hash hint", "weak"),
    ("data CLI", "listing: PPI size column overflows", "weak"),
    ("data CLI", "listing with a valid PPI folder says 'not downloaded' (defect 15)", "silent-wrong"),
    ("data CLI", "listing with a corrupt Cora file says 'not downloaded'", "weak"),
    ("data CLI", "listing and --fetch with an untraversable DLBOOK_DATA (defect 13)", "crash"),
    ("api: data", "fetch(123)", "crash"),
    ("api: data", "read_idx(truncated gzip)", "weak"),
]:
    integrator(area, probe, was)


# --- defect 1 and the graphs -------------------------------------------------------------------------

from dlbook.graphs.gat import GATConv, attention_entropy, collate, micro_f1, segment_softmax  # noqa: E402
from dlbook.graphs.gcn import GCN, GCNConfig, GCNConv, TrainConfig, gcn_norm, propagate  # noqa: E402
from dlbook.graphs.gcn import train_node_classifier  # noqa: E402
from dlbook.graphs.synthetic import csbm  # noqa: E402

EI = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


@row("property", "gcn_norm(improved=True) without edge weights == D^-1/2 (A + 2I) D^-1/2 (defect 1)", "silent-wrong",
     check=lambda w: torch.allclose(w, torch.tensor([1 / 6**0.5, 1.0, 2 / 3])))
def _():
    return gcn_norm(torch.tensor([[0], [1]]), 2, improved=True)[1]


@row("api: graphs", "gcn_norm(edge id >= num_nodes)", "crash", raises="node id 5")
def _():
    return gcn_norm(torch.tensor([[0], [5]]), 3)


@row("api: graphs", "gcn_norm(num_nodes=-1)", "crash", raises="num_nodes must be an integer >= 0")
def _():
    return gcn_norm(EI, -1)


@row("api: graphs", "gcn_norm(edge_weight wrong length)", "crash", raises="edge_weight must have shape")
def _():
    return gcn_norm(EI, 3, torch.ones(5))


@row("api: graphs", "propagate(edge_weight wrong length)", "weak", raises="one row per edge")
def _():
    return propagate(torch.randn(3, 2), EI, torch.ones(3))


@row("api: graphs", "propagate(edge_weight length 1: broadcast)", "silent-wrong", raises="one row per edge")
def _():
    return propagate(torch.randn(3, 2), EI, torch.ones(1))


@row("api: graphs", "GCNConv(in=4)(x with 5 features)", "weak", raises=r"x must have shape \(N, 4\)")
def _():
    return GCNConv(4, 2)(torch.randn(3, 5), EI)


@row("api: graphs", "GCNConv forward(x=None)", "crash", raises="x must be a torch.Tensor")
def _():
    return GCNConv(4, 2)(None, EI)


@row("api: graphs", "GCNConv(-3, 2)", "weak", raises="in_channels must be an integer >= 1")
def _():
    return GCNConv(-3, 2)


@row("api: graphs", "GCNConv forward(x 1-D)", "crash", raises="x must have 2 dimensions")
def _():
    return GCNConv(4, 2)(torch.randn(4), EI)


@row("api: graphs", "GCNConv forward(x float64, weights float32)", "weak", raises="layer's dtype")
def _():
    return GCNConv(4, 2)(torch.randn(3, 4, dtype=torch.float64), EI)


@row("api: graphs", "GCNConv forward(x int64)", "weak", raises="x must have a floating dtype")
def _():
    return GCNConv(4, 2)(torch.ones(3, 4, dtype=torch.long), EI)


@row("api: graphs", "GCNConv(cached=True) then a different, larger graph", "silent-wrong",
     raises="normalized another graph")
def _():
    conv = GCNConv(4, 2, cached=True)
    conv(torch.randn(3, 4), EI)
    return conv(torch.randn(5, 4), torch.tensor([[0, 3, 4], [3, 4, 0]]))


@row("api: graphs", "GCN(config hidden=-1)", "weak", raises="hidden must be an integer >= 1")
def _():
    return GCN(4, 3, GCNConfig(hidden=-1))


@row("api: graphs", "segment_softmax(index >= num_segments)", "weak", raises=r"index must hold segments in \[0, 2\)")
def _():
    return segment_softmax(torch.randn(4), torch.tensor([0, 1, 5, 1]), 2)


@row("api: graphs", "segment_softmax(index negative)", "weak", raises="from -1")
def _():
    return segment_softmax(torch.randn(4), torch.tensor([0, -1, 1, 1]), 2)


@row("api: graphs", "segment_softmax(index length != src length)", "weak", raises="one entry per row of src")
def _():
    return segment_softmax(torch.randn(4), torch.tensor([0, 1, 1]), 2)


@row("api: graphs", "segment_softmax(index float)", "weak", raises="index must have an integer dtype")
def _():
    return segment_softmax(torch.randn(3), torch.tensor([0.0, 1.0, 1.0]), 2)


@row("api: graphs", "segment_softmax(src int64)", "crash", raises="src must have a floating dtype")
def _():
    return segment_softmax(torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1]), 2)


@row("api: graphs", "GATConv forward(x wrong width)", "weak", raises=r"x must have shape \(N, 4\)")
def _():
    return GATConv(4, 2)(torch.randn(3, 7), EI)


@row("api: graphs", "micro_f1(shape mismatch)", "weak", raises="must have the same shape")
def _():
    return micro_f1(torch.randn(4, 3), torch.ones(4, 2))


@row("api: graphs", "micro_f1(broadcastable mismatch (4,3) vs (1,3))", "silent-wrong", raises="must have the same shape")
def _():
    return micro_f1(torch.randn(4, 3), torch.ones(1, 3))


@row("api: graphs", "micro_f1(empty)", "silent-wrong", raises="logits must not be empty")
def _():
    return micro_f1(torch.zeros(0, 3), torch.zeros(0, 3))


@row("api: graphs", "collate([])", "weak", raises="graphs must not be empty")
def _():
    return collate([])


@row("api: graphs", "attention_entropy(index >= num_nodes)", "weak", raises="index must hold segments")
def _():
    return attention_entropy(torch.rand(3, 1), torch.tensor([0, 1, 9]), 2)


@row("api: graphs", "csbm(avg_degree=-3)", "weak", raises="avg_degree must be a finite number >= 0")
def _():
    return csbm(avg_degree=-3)


@row("api: graphs", "csbm(num_classes=3.5)", "weak", raises="num_classes must be an integer")
def _():
    return csbm(num_classes=3.5)


def _tiny_graph():
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(12, dtype=torch.bool)
    return Data(x=torch.randn(12, 4, generator=g), edge_index=torch.randint(0, 12, (2, 30), generator=g),
                y=torch.randint(0, 3, (12,), generator=g), train_mask=mask.clone().index_fill_(0, torch.arange(4), 1),
                val_mask=mask.clone().index_fill_(0, torch.arange(4, 8), 1),
                test_mask=mask.clone().index_fill_(0, torch.arange(8, 12), 1))


@row("api: graphs", "train_node_classifier(TrainConfig(epochs=0)) (defect 7)", "crash",
     raises="epochs must be an integer >= 1")
def _():
    return train_node_classifier(GCN(4, 3), _tiny_graph(), TrainConfig(epochs=0))


@row("api: graphs", "train_node_classifier(window, patience=0) (defect 7)", "crash",
     raises="patience must be an integer >= 1")
def _():
    return train_node_classifier(GCN(4, 3), _tiny_graph(), TrainConfig(stopping="window", patience=0))


# --- defects 3, 8, 10 and the foundations -------------------------------------------------------------

from dlbook.foundations import backprop as bp  # noqa: E402
from dlbook.foundations import mlp as fm  # noqa: E402

W6 = np.arange(6.0).reshape(2, 3)


@row("api: foundations", "backprop.numerical_gradient(non-contiguous view) (defect 3)", "silent-wrong",
     check=lambda g: np.allclose(g, 2 * W6.T))
def _():
    W = W6.copy()
    return bp.numerical_gradient(lambda: float((W**2).sum()), W.T)


@row("api: foundations", "backprop.gradient_check(parameter with non-contiguous data) (defect 3)", "silent-wrong",
     check=lambda errs: max(errs) < 1e-8)
def _():
    W = bp.Tensor(W6.T / 5, requires_grad=True)
    x = bp.Tensor(np.random.default_rng(0).standard_normal((4, 3)))
    return bp.gradient_check(lambda: ((x @ W).tanh() ** 2).sum(), [W])


MLP_ARGS = ([np.eye(3)], [np.zeros(3)], np.eye(3)[:2] * 5)


@row("api: foundations", "mlp_backward(2 weights, 1 bias)", "weak", raises="2 weights and 1 biases")
def _():
    return bp.mlp_backward([np.eye(3), np.eye(3)], [np.zeros(3)], np.eye(3), np.arange(3))


@row("api: foundations", "mlp_backward(y out of range)", "weak", raises=r"y must hold labels in \[0, 3\)")
def _():
    return bp.mlp_backward(*MLP_ARGS, np.array([7, 0]))


@row("api: foundations", "mlp_backward(y negative) (defect 10)", "silent-wrong", raises=r"from -1")
def _():
    return bp.mlp_backward(*MLP_ARGS, np.array([-1, 0]))


X10 = np.random.default_rng(0).standard_normal((10, 4))
Y10 = np.arange(10) % 3


@row("api: foundations", "backprop.train(SGDConfig(batch_size=-1)) (defect 8)", "silent-wrong",
     raises="batch_size must be an integer >= 1")
def _():
    return bp.train(bp.MLP((4, 3)), X10, Y10, bp.SGDConfig(batch_size=-1, epochs=2)).metrics


@row("api: foundations", "backprop.train(SGDConfig(lr=nan))", "weak", raises="lr must be a finite number")
def _():
    return bp.train(bp.MLP((4, 3)), X10, Y10, bp.SGDConfig(lr=NAN, epochs=1))


@row("api: foundations", "backprop.train(empty data)", "crash", raises="x must not be empty")
def _():
    return bp.train(bp.MLP((4, 3)), np.zeros((0, 4)), np.zeros(0, dtype=int), bp.SGDConfig(epochs=1))


@row("api: foundations", "backprop.accuracy(empty)", "crash", raises="x must not be empty")
def _():
    return bp.accuracy(bp.MLP((4, 3)), np.zeros((0, 4)), np.zeros(0, dtype=int))


@row("api: foundations", "backprop.cross_entropy(float targets)", "weak", raises="targets must have an integer dtype")
def _():
    return bp.cross_entropy(bp.Tensor(np.zeros((2, 3))), np.array([0.0, 1.0]))


@row("api: foundations", "backprop.cross_entropy(empty batch)", "weak", raises="targets must not be empty")
def _():
    return bp.cross_entropy(bp.Tensor(np.zeros((0, 3))), np.zeros(0, dtype=int))


for _value, _name in [(None, "None"), ("abc", "'abc'"), (1 + 2j, "complex")]:
    row("api: foundations", f"backprop.Tensor({_name})", "weak", raises="data must be real numbers")(
        lambda v=_value: bp.Tensor(v))


@row("api: foundations", "backprop.MLP(sizes=(4, 2.7, 2))", "silent-wrong", raises="positive integer widths")
def _():
    return bp.MLP((4, 2.7, 2))


@row("api: foundations", "mlp.relu(NaN) vs torch.relu(NaN)", "silent-wrong", check=lambda v: bool(v.isnan()))
def _():
    return fm.relu(torch.tensor(NAN))


@row("api: foundations", "mlp.softmax(empty last dim)", "weak", raises="at least one entry along dim=-1")
def _():
    return fm.softmax(torch.zeros(2, 0))


@row("api: foundations", "mlp.softmax(None)", "crash", raises="x must be a torch.Tensor, got None")
def _():
    return fm.softmax(None)


for _y in ([0, 1, 5], [0, -1, 1]):
    row("api: foundations", f"mlp.softmax_nll(y={_y})", "weak", raises=r"y must hold labels in \[0, 2\)")(
        lambda y=_y: fm.softmax_nll(torch.zeros(2, 2), torch.zeros(2), torch.randn(3, 2), torch.tensor(y)))


@row("api: foundations", "mlp.fit_softmax_regression(empty)", "weak", raises="X must not be empty")
def _():
    return fm.fit_softmax_regression(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


@row("api: foundations", "mlp.fit_logistic_regression(X with NaN)", "weak", raises="X must be finite")
def _():
    X = torch.randn(6, 2)
    X[0, 0] = NAN
    return fm.fit_logistic_regression(X, torch.tensor([0, 1, 0, 1, 0, 1]))


@row("api: foundations", "mlp.gradient_descent(GDConfig(lr=nan))", "weak", raises="lr must be a finite number > 0")
def _():
    return fm.gradient_descent(lambda v: (v.sum(), torch.ones_like(v)), [torch.zeros(2)], fm.GDConfig(lr=NAN))


@row("api: foundations", "mlp.count_params(negative widths)", "silent-wrong", raises=r"hidden\[0\] must be an integer >= 1")
def _():
    return fm.count_params(4, [-5], 3)


# --- optimization: defects 9, 11 -----------------------------------------------------------------------

from dlbook.optimization import learning_rate as lr_  # noqa: E402
from dlbook.optimization.initialization import MLPConfig as InitConfig  # noqa: E402
from dlbook.optimization.optimizers import SGD, Adam, RMSprop, rosenbrock, trajectory  # noqa: E402


def _complex_run(ours_cls, steps=5):
    z1 = nn.Parameter(torch.tensor([1 + 2j]))
    z2 = nn.Parameter(z1.detach().clone())
    o1, o2 = ours_cls([z1], lr=0.1), getattr(torch.optim, ours_cls.__name__)([z2], lr=0.1)
    for _ in range(steps):
        for z, o in ((z1, o1), (z2, o2)):
            o.zero_grad()
            (z.abs() ** 2).sum().backward()
            o.step()
    return z1, z2


@row("api: optimization", "Adam on complex parameters vs torch.optim.Adam (defect 11)", "silent-wrong",
     check=lambda zz: torch.equal(zz[0], zz[1]))
def _():
    return _complex_run(Adam)


@row("api: optimization", "RMSprop on complex parameters vs torch.optim.RMSprop (defect 11)", "silent-wrong",
     check=lambda zz: torch.equal(zz[0], zz[1]))
def _():
    return _complex_run(RMSprop)


@row("api: optimization", "Adam on sparse gradients", "weak", raises="Adam does not support sparse gradients")
def _():
    emb = nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    return Adam(emb.parameters(), lr=0.1).step()


for _lr in (np.float32(0.1), torch.tensor(0.1)):
    row("api: optimization", f"SGD(lr={_lr!r}) accepted as torch.optim does (defect 19)", "crash",
        check=lambda opt: abs(opt.param_groups[0]["lr"] - 0.1) < 1e-7)(
        lambda v=_lr: SGD([nn.Parameter(torch.ones(1))], lr=v))


@row("api: optimization", "trajectory(start 3 coordinates)", "silent-wrong", raises=r"start must have shape \(2\)")
def _():
    return trajectory(rosenbrock, (1.0, 2.0, 3.0), SGD, 3, lr=1e-3)


@row("api: optimization", "StepDecay(lr0=nan) (defect 9)", "weak", raises="lr0 must be a finite positive number")
def _():
    return lr_.StepDecay(NAN, 10).lr(0)


@row("api: optimization", "ExponentialDecay(gamma=inf)", "weak", raises="gamma must be a finite positive number")
def _():
    return lr_.ExponentialDecay(0.1, INF)


@row("api: optimization", "Constant(lr0=-1.0) (defect 9)", "silent-wrong", raises="lr0 must be a finite non-negative")
def _():
    return lr_.Constant(-1.0).lr(0)


@row("api: optimization", "Constant('abc') (defect 9)", "silent-wrong", raises="lr0 must be a finite non-negative")
def _():
    return lr_.Constant("abc").lr(0)


class _Ascent(lr_.Schedule):
    def lr(self, t):
        return -1.0


@row("api: optimization", "Scheduled(opt, a schedule giving -1) -> optimizer lr (defect 9)", "silent-wrong",
     raises="must be a finite number >= 0")
def _():
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    lr_.Scheduled(opt, _Ascent())
    return opt.param_groups[0]["lr"]


@row("api: optimization", "Cyclical(exp_range, gamma=-1)", "silent-wrong", raises="gamma must be a finite positive")
def _():
    return lr_.Cyclical(0.1, 1.0, 10, mode="exp_range", gamma=-1).sequence(5)


@row("api: optimization", "OneCycle(div_factor=0)", "crash", raises="div_factor must be a finite positive number")
def _():
    return lr_.OneCycle(1.0, 100, div_factor=0).lr(0)


@row("api: optimization", "OneCycle(div_factor=-25) (defect 9)", "silent-wrong", raises="div_factor")
def _():
    return lr_.OneCycle(1.0, 100, div_factor=-25).lr(0)


@row("api: optimization", "RangeTestConfig(diverge_th=nan)", "silent-wrong", raises="diverge_th must be larger than 1")
def _():
    return lr_.RangeTestConfig(diverge_th=NAN)


@row("api: optimization", "lr_range_test(empty loader)", "crash", raises="loader is empty")
def _():
    model = nn.Linear(2, 2)
    return lr_.lr_range_test(model, [], torch.optim.SGD(model.parameters(), lr=0.1))


@row("api: optimization", "MLPConfig(init_std=nan)", "weak", raises="init_std must be positive")
def _():
    return InitConfig(init=("normal"), init_std=NAN)


@row("api: optimization", "MLPConfig(in_features=-1) -> DeepMLP", "weak", raises="in_features must be an integer >= 1")
def _():
    return InitConfig(in_features=-1)


# --- regularization: defects 12, 17, 20 ------------------------------------------------------------------

from dlbook.regularization import batchnorm as bn  # noqa: E402
from dlbook.regularization import regularization as reg  # noqa: E402

G = torch.Generator().manual_seed(0)
XK, YK = torch.randn(20, 3, generator=G), torch.arange(20) % 3


@row("api: regularization", "knn_predict(y_train float, classification)", "weak", raises="integer class labels")
def _():
    return reg.knn_predict(XK, YK.float(), torch.randn(2, 3), 3)


@row("api: regularization", "knn_predict(x_query with NaN row) (defect 17)", "silent-wrong", raises="x_query must be finite")
def _():
    q = torch.randn(2, 3)
    q[1, 0] = NAN
    return reg.knn_predict(XK, YK, q, 3)


@row("api: regularization", "knn_predict(x_train NaN row) (defect 17)", "silent-wrong", raises="x_train must be finite")
def _():
    x = XK.clone()
    x[4, 2] = NAN
    return reg.knn_predict(x, YK, torch.randn(2, 3), 3)


@row("api: regularization", "knn_predict(chunk=0)", "weak", raises="chunk must be an integer >= 1")
def _():
    return reg.knn_predict(XK, YK, torch.randn(2, 3), 3, chunk=0)


@row("api: regularization", "knn_predict(k=np.int64(3))", "crash",
     check=lambda p: torch.equal(p, reg.knn_predict(XK, YK, XK[:4], 3)))
def _():
    return reg.knn_predict(XK, YK, XK[:4], np.int64(3))


@row("api: regularization", "knn_predict(x_train None)", "crash", raises="x_train must be a torch.Tensor, got None")
def _():
    return reg.knn_predict(None, YK, torch.randn(2, 3), 3)


@row("api: regularization", "Penalty(l2='a')", "weak", raises="l2 must be a real number")
def _():
    return reg.Penalty(l2="a")


@row("api: regularization", "soft_threshold(w, t=-1) (defect 17)", "silent-wrong", raises="t must be a finite number >= 0")
def _():
    return reg.soft_threshold(torch.tensor([0.5, -2.0]), -1)


XL = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
YL = (XL[:, 0] > 0).long()


@row("api: regularization", "l1_logistic_regression(x with NaN)", "weak", raises="x must be finite")
def _():
    x = XL.clone()
    x[0, 0] = NAN
    return reg.l1_logistic_regression(x, YL, 0.1)


@row("api: regularization", "l1_logistic_regression(steps=0)", "weak", raises="steps must be an integer >= 1")
def _():
    return reg.l1_logistic_regression(XL, YL, 0.1, steps=0)


@row("api: regularization", "l1_logistic_regression(len(y) != len(x))", "weak", raises="must have the same length")
def _():
    return reg.l1_logistic_regression(XL, YL[:5], 0.1)


@row("api: regularization", "l1_logistic_regression(y of length 1, x of 20) (defect 17)", "silent-wrong",
     raises="must have the same length")
def _():
    return reg.l1_logistic_regression(XL, YL[:1], 0.1)


@row("api: regularization", "EarlyStopping(min_delta=nan).should_stop([1,0.5,0.2,0.1]) (defect 17)", "silent-wrong",
     raises="min_delta must be a finite number >= 0")
def _():
    return reg.EarlyStopping(min_delta=NAN, patience=1).should_stop([1, 0.5, 0.2, 0.1])


@row("api: regularization", "weight_stats([])", "weak", raises="weights must hold at least one tensor")
def _():
    return reg.weight_stats([])


R8 = np.random.default_rng(0).standard_normal((8, 3))


@row("api: batchnorm", "BatchNorm.forward(torch tensor instead of ndarray)", "weak", raises="x must be a NumPy array")
def _():
    return bn.BatchNorm(bn.BatchNormConfig(3)).forward(torch.ones(4, 3))


@row("api: batchnorm", "BatchNorm.forward(list)", "crash", raises="x must be a NumPy array")
def _():
    return bn.BatchNorm(bn.BatchNormConfig(2)).forward([[1.0, 2.0], [3.0, 4.0]])


@row("api: batchnorm", "BatchNorm.forward(int64 array) (defect 12)", "silent-wrong", raises="x must have a floating dtype")
def _():
    return bn.BatchNorm(bn.BatchNormConfig(2)).forward(np.array([[1, 2], [3, 5], [4, 9]]))


for _shape in ((1, 3), (8, 1)):
    def _dout(shape=_shape):
        layer = bn.BatchNorm(bn.BatchNormConfig(3))
        layer.forward(R8)
        return layer.backward(np.ones(shape))

    row("api: batchnorm", f"BatchNorm.backward(dout {_shape} after forward (8, 3)) (defect 12)", "silent-wrong",
        raises="dout must have the shape of the forward pass's output")(_dout)


@row("api: batchnorm", "batchnorm_forward(M=1)", "silent-wrong", raises="more than 1 value per feature")
def _():
    return bn.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3))


@row("api: batchnorm", "batchnorm_forward(gamma wrong length)", "weak", raises=r"gamma must have shape \(3\)")
def _():
    return bn.batchnorm_forward(R8, np.ones(2), np.zeros(3))


@row("api: batchnorm", "batchnorm_forward(gamma length 1: broadcast)", "silent-wrong", raises=r"gamma must have shape \(3\)")
def _():
    return bn.batchnorm_forward(R8, np.ones(1), np.zeros(3))


@row("api: batchnorm", "LayerNorm(eps=-1)", "weak", raises="eps must be a finite number >= 0")
def _():
    return bn.LayerNorm(3, eps=-1)


@row("api: batchnorm", "TorchBatchNorm(4)(x int64) (defect 12)", "silent-wrong", raises="x must have a floating dtype")
def _():
    return bn.TorchBatchNorm(2)(torch.tensor([[1, 2], [3, 5], [4, 9]]))


def _bn_errors():
    x64 = 1e3 + torch.randn(256, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x64.float()
    exact = (x.double() - x.double().mean(0)) / torch.sqrt(x.double().var(0, unbiased=False) + 1e-5)
    ours = (bn.TorchBatchNorm(4)(x).double() - exact).abs().max().item()
    theirs = (nn.BatchNorm1d(4)(x).double() - exact).abs().max().item()
    return ours, theirs


row("property", "TorchBatchNorm float32 error vs exact <= nn.BatchNorm1d's, |mean|/std ~ 1e3 (defect 20)", "weak",
    check=lambda e: e[0] <= 1.5 * e[1])(_bn_errors)


# --- plot (defect 6) and Grad-CAM ---------------------------------------------------------------------

from dlbook.interpretability.gradcam import GradCAM, SmallCNN, cascading_randomization, rank_correlation  # noqa: E402
from dlbook.plot import image_grid, overlay, plot_history  # noqa: E402


@row("api: plot", "overlay(float image with one pixel at 1.02) (defect 6)", "silent-wrong",
     check=lambda out: abs(out.mean() - 0.8) < 0.02)
def _():
    img = np.full((4, 4), 0.8)
    img[0, 0] = 1.02
    return overlay(img, np.zeros((4, 4)), alpha=0.0)


@row("api: plot", "overlay(heatmap NaN)", "silent-wrong", raises="heatmap must be finite")
def _():
    heat = np.zeros((4, 4))
    heat[1, 1] = NAN
    return overlay(np.zeros((4, 4)), heat)


@row("api: plot", "plot_history(None)", "weak", raises="history must be a History or a mapping")
def _():
    return plot_history(None)


@row("api: plot", "plot_history({} no losses)", "weak", raises="nothing to plot")
def _():
    return plot_history({})


@row("api: plot", "image_grid(ncols=0)", "crash", raises="ncols must be a positive integer")
def _():
    return image_grid([torch.rand(1, 4, 4)], ncols=0)


def _cam():
    torch.manual_seed(0)
    return GradCAM(SmallCNN().eval(), "features.conv4")


@row("api: gradcam", "GradCAM(target=2.7 float) (defect 17)", "silent-wrong", raises="target must be an integer class")
def _():
    return _cam()(torch.randn(1, 1, 28, 28), 2.7)


@row("api: gradcam", "GradCAM(target=True)", "weak", raises="target must be an integer class")
def _():
    return _cam()(torch.randn(1, 1, 28, 28), True)


@row("api: gradcam", "GradCAM(x uint8 image)", "weak", raises="x must be a floating batch of images")
def _():
    return _cam()(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


@row("api: gradcam", "rank_correlation(shape mismatch)", "weak", raises="must be batches of maps of the same shape")
def _():
    return rank_correlation(torch.rand(2, 4, 4), torch.rand(2, 3, 3))


@row("api: gradcam", "cascading_randomization(stage 'nope')", "weak", raises="stages must name layers of SmallCNN")
def _():
    return cascading_randomization(SmallCNN(), ["nope"], torch.randn(1, 1, 28, 28),
                                   explain=lambda m, x, t: torch.zeros(1, 28, 28))


# --- sciml -----------------------------------------------------------------------------------------------

from dlbook.sciml.koopman import dmd  # noqa: E402


@row("api: sciml", "dmd(None)", "weak", raises="X must be a matrix of numbers")
def _():
    return dmd(None)


@row("api: sciml", "dmd(X whose DMD eigenvalue is exactly 0)", "crash",
     check=lambda r: torch.allclose(r.reconstruct(3), torch.tensor([[1.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64)))
def _():
    return dmd(torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))


# --- train, checkpoints, practice: defects 2, 4 (checkpoints), 7, 16 ----------------------------------------

from dlbook.config import device, seed_everything  # noqa: E402
from dlbook.practice.checkpointing import CheckpointManager, RunConfig, build_run, train_run  # noqa: E402
from dlbook.train import accuracy, fit, load_checkpoint, save_checkpoint  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="dlbook-probe-"))


def _lin():
    return nn.Linear(3, 2)


@row("api: train", "fit(epochs=True)", "weak", raises="epochs must be a positive integer")
def _():
    m = _lin()
    return fit(m, [], torch.optim.SGD(m.parameters(), lr=0.1), epochs=True)


@row("api: train", "fit(empty loader) (defect 7)", "silent-wrong", raises="train_loader yielded no examples")
def _():
    m = _lin()
    return fit(m, [], torch.optim.SGD(m.parameters(), lr=0.1), epochs=2, progress=False).metrics


@row("api: train", "fit(model without parameters)", "crash", raises="has no parameters to train")
def _():
    return fit(nn.ReLU(), [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))],
               torch.optim.SGD(_lin().parameters(), lr=0.1), epochs=1, progress=False)


@row("api: train", "fit(batches as dicts)", "weak", raises=r"must yield \(x, y\) pairs, got a dict")
def _():
    m = _lin()
    return fit(m, [{"x": torch.randn(2, 3), "y": torch.zeros(2)}], torch.optim.SGD(m.parameters(), lr=0.1), epochs=1,
               progress=False)


@row("api: train", "fit(targets float for cross_entropy)", "weak", raises="targets of cross_entropy must be integer")
def _():
    m = _lin()
    return fit(m, [(torch.randn(2, 3), torch.zeros(2))], torch.optim.SGD(m.parameters(), lr=0.1), epochs=1,
               progress=False)


@row("api: train", "fit(optimizer over other params)", "weak", raises="updates none of the model's parameters")
def _():
    return fit(_lin(), [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))],
               torch.optim.SGD(_lin().parameters(), lr=0.1), epochs=1, progress=False)


@row("api: train", "accuracy(shape mismatch (4,3) vs (2,))", "weak", raises=r"target must have shape \(4,\)")
def _():
    return accuracy(torch.randn(4, 3), torch.zeros(2, dtype=torch.long))


@row("api: train", "accuracy(broadcast (4,3) vs (1,)) (defect 17)", "silent-wrong", raises=r"target must have shape \(4,\)")
def _():
    return accuracy(torch.randn(4, 3), torch.zeros(1, dtype=torch.long))


@row("api: train", "load_checkpoint(plain model.state_dict() file) (defect 16)", "crash", raises="plain state dict")
def _():
    torch.save(_lin().state_dict(), TMP / "sd.pt")
    return load_checkpoint(TMP / "sd.pt", model=_lin())


@row("api: train", "load_checkpoint({'model': sd} without rng) (defect 16)", "crash",
     raises="no random-number generator state")
def _():
    torch.save({"model": _lin().state_dict()}, TMP / "norng.pt")
    return load_checkpoint(TMP / "norng.pt", model=_lin())


@row("api: train", "save_checkpoint(model=None)", "crash", raises="model must be a torch.nn.Module")
def _():
    return save_checkpoint(TMP / "none.pt", model=None)


@row("api: train", "load_checkpoint('.') (defect 16)", "good", raises="is a folder")
def _():
    return load_checkpoint(".", model=_lin())


def _data(n=200):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 4, 4, generator=g) + y[:, None, None, None]
    return {"x_train": x[: n - 50], "y_train": y[: n - 50], "x_val": x[n - 50:], "y_val": y[n - 50:]}


DATA = TMP / "data.pt"
torch.save(_data(), DATA)


@row("api: practice", "build_run(y_train float)", "weak", raises="y_train must hold integer class labels")
def _():
    d = _data()
    return build_run({**d, "y_train": d["y_train"].float()}, RunConfig())


@row("api: practice", "RunConfig(epochs=-1) via build_run", "weak", raises="epochs must be an integer >= 1")
def _():
    return build_run(_data(), RunConfig(epochs=-1))


def _run3(name):
    """A finished 3-epoch run with every epoch kept; returns its folder."""
    folder = TMP / name
    train_run(DATA, folder, RunConfig(epochs=3, hidden=8, batch_size=50, keep_last=3))
    return folder


def _flip_weight_bit(path):
    data = bytearray(path.read_bytes())
    needle = torch.load(path, weights_only=True)["model"]["1.weight"].numpy().tobytes()[:16]
    at = bytes(data).index(needle)
    data[at + 2] ^= 0x10
    path.write_bytes(bytes(data))


def _resume(folder):
    """Resume the run (as a restart would), to 4 epochs; the warnings say what happened."""
    return train_run(DATA, folder, RunConfig(epochs=3, hidden=8, batch_size=50, keep_last=3))[1]


@row("checkpoint", "one bit flipped inside the tensor data of the newest checkpoint (defect 5)", "silent-wrong",
     raises="is corrupt: its content does not match the SHA-256")
def _():
    folder = _run3("flip")
    _flip_weight_bit(folder / "epoch-0003.pt")
    return load_checkpoint(folder / "epoch-0003.pt", model=build_run(_data(), RunConfig(hidden=8))[0])


def _falls_back(damage):
    folder = _run3(damage)
    newest = folder / "epoch-0003.pt"
    if damage == "fallback-flip":
        _flip_weight_bit(newest)
    elif damage == "fallback-trunc":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:
        newest.write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _resume(folder)
    said = [str(w.message) for w in caught if "resuming from" in str(w.message)]
    return len(history), said


for _damage, _was in [("fallback-flip", "silent-wrong"), ("fallback-trunc", "weak"), ("fallback-zero", "crash")]:
    row("checkpoint", f"newest checkpoint {_damage.split('-')[1]}, restart: falls back to epoch 2 with a warning",
        _was, check=lambda v: v[0] == 3 and any("epoch-0002.pt" in s and "epoch-0003.pt" in s for s in v[1]))(
        lambda d=_damage: _falls_back(d))


@row("checkpoint", "resume a finished 3-epoch run with epochs=6 (defect 2)", "silent-wrong",
     raises=r"other settings: scheduler_settings.T_max: saved 3, now 6")
def _():
    folder = _run3("extend")
    return train_run(DATA, folder, RunConfig(epochs=6, hidden=8, batch_size=50, keep_last=3))


@row("checkpoint", "Adam checkpoint loaded into an SGD optimizer (defect 16)", "crash",
     raises=r"different optimizer \(Adam\) than this SGD")
def _():
    model = build_run(_data(), RunConfig(hidden=8))[0]
    save_checkpoint(TMP / "adam.pt", model=model, optimizer=torch.optim.Adam(model.parameters()))
    return load_checkpoint(TMP / "adam.pt", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


@row("checkpoint", "checkpoint without scheduler state, loaded with a scheduler: weights untouched", "weak",
     raises="holds no scheduler state")
def _():
    model, opt, sched, *_ = build_run(_data(), RunConfig(hidden=8))
    save_checkpoint(TMP / "nosched.pt", model=model)
    fresh, opt, sched, *_ = build_run(_data(), RunConfig(hidden=8, seed=1))
    before = [p.detach().clone() for p in fresh.parameters()]
    try:
        return load_checkpoint(TMP / "nosched.pt", model=fresh, scheduler=sched)
    finally:
        if not all(torch.equal(a, b) for a, b in zip(before, fresh.parameters())):
            raise AssertionError("the weights were overwritten before the error")


# --- config: defect 18 -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _device(value):
    with _env(DLBOOK_DEVICE=value):
        return device()


row("config", "DLBOOK_DEVICE='  cpu '", "weak", check=lambda d: d == torch.device("cpu"))(lambda: _device("  cpu "))
for _dev in ("mps", "xpu"):
    row("config", f"DLBOOK_DEVICE={_dev} on a machine without it", "weak", raises="is not available on this machine")(
        lambda d=_dev: _device(d))
row("config", "DLBOOK_DEVICE=meta", "weak", raises="not a device to compute on")(lambda: _device("meta"))
row("config", "DLBOOK_DEVICE=cuda:<one more than there are>", "weak", raises="was requested but")(
    lambda: _device(f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"))
row("config", "seed_everything(2**64): refused before seeding anything", "weak",
    raises=r"seed must be a non-negative integer below 2\*\*64")(lambda: seed_everything(2**64))


# -----------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failing", action="store_true", help="show only the rows that are not good")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    counts, before = Counter(), Counter()
    width = max(len(r.probe) for r in ROWS)
    for r in ROWS:
        verdict, outcome = classify(r)
        counts[verdict] += 1
        before[r.was] += 1
        if not args.failing or verdict not in ("good", "integrator"):
            print(f"{r.area:<18} | {r.probe:<{min(width, 70)}.70} | {r.was:>12} -> {verdict:<12} | {outcome[:110]}")
    print()
    print(f"{len(ROWS)} rows. On main (the probe): " + ", ".join(f"{k} {v}" for k, v in sorted(before.items())))
    print("Now: " + ", ".join(f"{k} {counts[k]}" for k in ("good", "weak", "crash", "silent-wrong", "integrator")))
    return 1 if counts["silent-wrong"] or counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())

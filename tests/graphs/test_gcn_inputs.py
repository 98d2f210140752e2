"""What the GCN module refuses, and the improved (A + 2I) normalization (reliability probe, issue 13)."""

import pytest
import torch
from torch_geometric.data import Data

from dlbook.graphs.gcn import (
    GCN, GCNConfig, GCNConv, PatienceStop, TrainConfig, add_remaining_self_loops, gcn_norm, propagate,
    train_node_classifier,
)


def _dense(edge_index, n, weight=None, fill=1.0):
    """D^-1/2 (A + fill I) D^-1/2 with A[i, j] the weight of edge j -> i."""
    A = torch.zeros(n, n, dtype=torch.float64)
    w = torch.ones(edge_index.size(1), dtype=torch.float64) if weight is None else weight
    A.index_put_((edge_index[1], edge_index[0]), w, accumulate=True)
    A_hat = A + fill * torch.eye(n, dtype=torch.float64)
    d = A_hat.sum(1)
    return A_hat / torch.sqrt(d[:, None] * d[None, :])


def _as_dense(ei, w, n):
    return torch.zeros(n, n, dtype=w.dtype).index_put_((ei[1], ei[0]), w, accumulate=True)


def test_improved_without_edge_weights_is_a_plus_2i():
    """Probe defect 1: improved=True without edge weights used to compute A + I (as PyG 2.8.1 does)."""
    ei = torch.tensor([[0], [1]])
    _, w = gcn_norm(ei, 2, improved=True, dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([1 / 6**0.5, 1.0, 2 / 3], dtype=torch.float64))
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # a path, and node 4 alone
    ei, w = gcn_norm(edge_index, 5, improved=True, dtype=torch.float64)
    torch.testing.assert_close(_as_dense(ei, w, 5), _dense(edge_index, 5, fill=2.0))
    x = torch.randn(5, 3, dtype=torch.float64)
    conv = GCNConv(3, 2, improved=True).double()
    torch.testing.assert_close(conv(x, edge_index), _dense(edge_index, 5, fill=2.0) @ conv.lin(x) + conv.bias)


def test_improved_keeps_existing_self_loops_and_weights():
    edge_index = torch.tensor([[0, 1, 1], [1, 0, 1]])  # node 1 has a loop of weight 5
    ei, w = add_remaining_self_loops(edge_index, torch.tensor([1.0, 2.0, 5.0]), 3, fill_value=2.0)
    assert w.tolist() == [1.0, 2.0, 2.0, 5.0, 2.0]


@pytest.mark.parametrize("call, exc, match", [
    (lambda: gcn_norm(torch.tensor([[0], [5]]), 3), ValueError, "node id 5"),
    (lambda: gcn_norm(torch.tensor([[0], [1]]), -1), ValueError, "num_nodes must be an integer >= 0"),
    (lambda: gcn_norm(torch.tensor([[0, 1], [1, 0]]), 2, torch.ones(5)), ValueError, r"edge_weight must have shape \(2\)"),
    (lambda: gcn_norm(torch.tensor([[0, 1], [1, 0]]), 2.0), TypeError, "num_nodes must be an integer"),
    (lambda: add_remaining_self_loops(torch.tensor([[0], [9]]), None, 3), ValueError, "node id 9"),
    (lambda: propagate(torch.randn(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.ones(1)), ValueError,
     r"edge_weight must have one row per edge \(2\)"),
    (lambda: propagate(torch.randn(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.ones(3)), ValueError, "one row per edge"),
    (lambda: propagate(torch.randn(3, 2), torch.tensor([[0, 1], [1, 7]])), ValueError, "node id 7"),
    (lambda: propagate(torch.arange(6).view(3, 2), torch.tensor([[0], [1]])), TypeError, "floating"),
    (lambda: GCNConv(4, 2)(torch.randn(3, 5), torch.tensor([[0], [1]])), ValueError, r"x must have shape \(N, 4\)"),
    (lambda: GCNConv(4, 2)(None, torch.tensor([[0], [1]])), TypeError, "x must be a torch.Tensor, got None"),
    (lambda: GCNConv(4, 2)(torch.randn(4), torch.tensor([[0], [1]])), ValueError, "x must have 2 dimensions"),
    (lambda: GCNConv(4, 2)(torch.randn(3, 4).double(), torch.tensor([[0], [1]])), TypeError, "layer's dtype"),
    (lambda: GCNConv(4, 2)(torch.ones(3, 4, dtype=torch.long), torch.tensor([[0], [1]])), TypeError, "floating"),
    (lambda: GCNConv(-3, 2), ValueError, "in_channels must be an integer >= 1"),
    (lambda: GCN(4, 3, GCNConfig(hidden=-1)), ValueError, "hidden must be an integer >= 1"),
    (lambda: TrainConfig(epochs=0), ValueError, "epochs must be an integer >= 1"),
    (lambda: TrainConfig(patience=0), ValueError, "patience must be an integer >= 1"),
    (lambda: TrainConfig(lr=float("nan")), ValueError, "lr must be a finite number >= 0"),
    (lambda: TrainConfig(stopping="bogus"), ValueError, "stopping must be one of 'window', 'patience', 'accuracy', 'none'"),
    (lambda: PatienceStop(0), ValueError, "patience must be an integer >= 1"),
])
def test_bad_input_is_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_a_length_one_edge_weight_is_not_broadcast():
    """Probe: propagate(edge_weight of length 1) spread one weight over every edge."""
    with pytest.raises(ValueError, match="one row per edge"):
        propagate(torch.randn(3, 2), torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.tensor([2.0]))


def _tiny_graph():
    g = torch.Generator().manual_seed(0)
    n = 12
    mask = lambda idx: torch.zeros(n, dtype=torch.bool).index_fill_(0, torch.tensor(idx), True)
    return Data(x=torch.randn(n, 4, generator=g), edge_index=torch.randint(0, n, (2, 30), generator=g),
                y=torch.randint(0, 3, (n,), generator=g), train_mask=mask([0, 1, 2, 3]), val_mask=mask([4, 5, 6]),
                test_mask=mask([7, 8, 9, 10, 11]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs must be an integer >= 1"),  # was IndexError: list index out of range
    (dict(stopping="window", patience=0), "patience must be an integer >= 1"),  # was ZeroDivisionError
    (dict(stopping="patience", patience=0), "patience must be an integer >= 1"),  # never stopped
])
def test_train_node_classifier_refuses_to_learn_on_nothing(kwargs, match):
    config = TrainConfig()
    for k, v in kwargs.items():  # set after construction: the trainer checks again
        setattr(config, k, v)
    with pytest.raises(ValueError, match=match):
        train_node_classifier(GCN(4, 3), _tiny_graph(), config)


def test_train_node_classifier_needs_labelled_nodes():
    data = _tiny_graph()
    data.train_mask[:] = False
    with pytest.raises(ValueError, match="data.train_mask must not be empty"):
        train_node_classifier(GCN(4, 3), data, TrainConfig(epochs=2, stopping="none"))


def test_patience_zero_is_fine_without_a_stopping_rule():
    result = train_node_classifier(GCN(4, 3), _tiny_graph(), TrainConfig(epochs=3, stopping="none", patience=0))
    assert result.epochs == 3

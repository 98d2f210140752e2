"""The GCN layer, its normalization and training, against PyTorch Geometric's GCNConv."""

import pytest
import torch
from torch_geometric.nn import GCNConv as PyGGCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm as pyg_gcn_norm

from dlbook.config import seed_everything
from dlbook.graphs.gcn import (
    GCN, MLP, GCNConfig, GCNConv, PatienceStop, TrainConfig, add_remaining_self_loops, check_edge_index, feature_dropout,
    gcn_norm, propagate, sparse_features, train_node_classifier, train_seeds,
)


def _graph(n=30, e=120, seed=0, isolated=3):
    """A random directed graph with duplicate edges, some self-loops and `isolated` nodes with no edges."""
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n - isolated, (2, e), generator=g)
    edge_index = torch.cat([edge_index, edge_index[:, :5], torch.tensor([[1, 2], [1, 2]])], dim=1)  # duplicates, loops
    x = torch.randn(n, 6, generator=g)
    return x, edge_index


# --- edge_index checks ---------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0, 1], [1, 30]]), r"node id 30.*num_nodes=30.*\[0, 29\]"),
    (torch.tensor([[0, -1], [1, 2]]), r"node id -1"),
    (torch.zeros(3, 4, dtype=torch.long), r"shape \(2, num_edges\), got \(3, 4\)"),
    (torch.zeros(5, 2, dtype=torch.long), r"got \(5, 2\).*edge_index.t\(\)"),
    (torch.zeros(2, 4), r"integer node ids, got dtype torch.float32"),
    (torch.zeros(8, dtype=torch.long), r"shape \(2, num_edges\), got \(8,\)"),
])
def test_bad_edge_index_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        check_edge_index(bad, 30)
    with pytest.raises(ValueError, match=match):
        GCNConv(6, 4)(torch.randn(30, 6), bad)


def test_edge_index_must_be_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_edge_index([[0, 1], [1, 0]], 3)


def test_empty_graph_is_fine():
    out = GCNConv(6, 4)(torch.randn(5, 6), torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (5, 4)


# --- normalization and propagation ----------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("add_self_loops, improved", [(True, False), (True, True), (False, False)])
def test_gcn_norm_equals_pyg(weighted, add_self_loops, improved):
    x, edge_index = _graph()
    w = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(1)) if weighted else None
    ours = gcn_norm(edge_index, 30, w, add_self_loops=add_self_loops, improved=improved)
    # PyG 2.8.1 drops improved's loop weight 2 when edge_weight is None (A + I, not A + 2I):
    # compare with explicit ones there (test_improved_is_a_plus_2i checks the formula).
    w_pyg = torch.ones(edge_index.size(1)) if w is None and improved else w
    theirs = pyg_gcn_norm(edge_index, w_pyg, 30, improved, add_self_loops)
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1])


def test_renormalized_adjacency_is_the_dense_formula():
    """D^-1/2 (A + I) D^-1/2 of a small undirected graph, as a dense matrix."""
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # a path 0-1-2-3, and node 4 alone
    A = torch.zeros(5, 5)
    A[edge_index[1], edge_index[0]] = 1.0
    A_hat = A + torch.eye(5)
    d = A_hat.sum(1)
    dense = A_hat / torch.sqrt(d[:, None] * d[None, :])
    ei, w = gcn_norm(edge_index, 5)
    ours = torch.zeros(5, 5).index_put_((ei[1], ei[0]), w, accumulate=True)
    torch.testing.assert_close(ours, dense)
    x = torch.randn(5, 3)
    torch.testing.assert_close(propagate(x, ei, w), dense @ x)


def test_remaining_self_loops_keep_existing_weights():
    edge_index = torch.tensor([[0, 1, 1], [1, 0, 1]])
    ei, w = add_remaining_self_loops(edge_index, torch.tensor([1.0, 2.0, 5.0]), 3)
    assert ei.tolist() == [[0, 1, 0, 1, 2], [1, 0, 0, 1, 2]]
    assert w.tolist() == [1.0, 2.0, 1.0, 5.0, 1.0]


# --- the layer against PyG ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {}, {"improved": True}, {"bias": False}, {"add_self_loops": False}, {"add_self_loops": False, "normalize": False},
])
def test_gcnconv_equals_pyg_forward_and_gradients(kwargs):
    x, edge_index = _graph()
    torch.manual_seed(0)
    ours = GCNConv(6, 4, **kwargs)
    theirs = PyGGCNConv(6, 4, **kwargs)
    if ours.bias is not None:
        torch.nn.init.normal_(ours.bias)  # a non-zero bias, so that it is compared too
    theirs.load_state_dict(ours.state_dict())
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(2))
    out1, out2 = ours(x1, edge_index, w), theirs(x2, edge_index, w)
    torch.testing.assert_close(out1, out2)
    g = torch.randn_like(out1)
    (out1 * g).sum().backward()
    (out2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_same_seed_gives_the_same_initial_weights_as_pyg():
    torch.manual_seed(5)
    ours = GCNConv(7, 3)
    torch.manual_seed(5)
    theirs = PyGGCNConv(7, 3)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, theirs.state_dict()[k]), k


def test_isolated_nodes_keep_their_own_features():
    x, edge_index = _graph(isolated=3)
    conv = GCNConv(6, 4)
    torch.nn.init.normal_(conv.bias)
    out = conv(x, edge_index)
    torch.testing.assert_close(out[-3:], conv.lin(x[-3:]) + conv.bias)  # Â_ii = 1, d̂_i = 1
    bare = GCNConv(6, 4, add_self_loops=False)
    bare.load_state_dict(conv.state_dict())
    torch.testing.assert_close(bare(x, edge_index)[-3:], conv.bias.expand(3, 4))  # nothing flows in: bias only


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_features_give_the_same_result(layout):
    x, edge_index = _graph()
    x = torch.where(x > 1.0, x, torch.zeros_like(x))  # mostly zeros, like bag-of-words
    conv = GCNConv(6, 4)
    xs = sparse_features(x) if layout == "csr" else x.to_sparse()
    torch.testing.assert_close(conv(xs, edge_index), conv(x, edge_index))


def test_cached_normalization_is_reused():
    x, edge_index = _graph()
    conv = GCNConv(6, 4, cached=True)
    first = conv(x, edge_index)
    torch.testing.assert_close(conv(x, edge_index.clone()), first)  # the same graph: the cache
    with pytest.raises(ValueError, match="cached=True: this layer normalized another graph"):
        conv(x, edge_index[:, :10])  # a new graph is refused, not silently given the old weights
    conv.reset_parameters()
    assert conv._cache is None


@pytest.mark.parametrize("layout", ["dense", "csr", "coo"])
def test_feature_dropout(layout):
    torch.manual_seed(0)
    x = (torch.rand(200, 50) < 0.1).float()
    xs = {"dense": x, "csr": sparse_features(x), "coo": x.to_sparse()}[layout]
    assert feature_dropout(xs, 0.5, training=False) is xs
    out = feature_dropout(xs, 0.5, training=True)
    out = out.to_dense() if layout != "dense" else out
    kept = out != 0
    assert not (kept & (x == 0)).any()  # zeros stay zeros
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 2.0))  # kept values scaled by 1 / (1 - p)
    assert 0.4 < kept.sum() / (x != 0).sum() < 0.6


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2, 4])
def test_gcn_shapes_and_pyg_layers_give_the_same_model(num_layers):
    x, edge_index = _graph()
    cfg = GCNConfig(hidden=8, num_layers=num_layers)
    torch.manual_seed(0)
    ours = GCN(6, 3, cfg).eval()
    torch.manual_seed(0)
    theirs = GCN(6, 3, cfg, conv=PyGGCNConv).eval()
    assert len(ours.convs) == num_layers
    torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index))
    assert ours(x, edge_index).shape == (30, 3) and MLP(6, 3, cfg)(x, edge_index).shape == (30, 3)


def test_gcn_needs_a_layer():
    with pytest.raises(ValueError, match="num_layers"):
        GCN(6, 3, GCNConfig(num_layers=0))


def test_first_layer_only_is_decayed():
    model = GCN(6, 3)
    decayed, free = model.param_groups(5e-4)
    assert decayed["weight_decay"] == 5e-4 and free["weight_decay"] == 0.0
    assert [p.shape for p in decayed["params"]] == [(16, 6)]
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))


# --- training -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cora(mirror_copy):
    import os

    old = os.environ.get("DLBOOK_DATA"), os.environ.get("DLBOOK_OFFLINE")
    os.environ["DLBOOK_DATA"], os.environ["DLBOOK_OFFLINE"] = str(mirror_copy), "1"
    try:
        from dlbook.data import load_planetoid

        data = load_planetoid("Cora")
    finally:
        for key, value in zip(("DLBOOK_DATA", "DLBOOK_OFFLINE"), old):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    data.x = sparse_features(data.x)
    return data


def test_gcn_beats_a_feature_only_mlp_on_cora(cora):
    """The graph is worth about 25 points on Cora (Kipf & Welling: 81.5% against 55.1% for an MLP)."""
    config = TrainConfig(epochs=100, stopping="none")
    seed_everything(0)
    gcn = train_node_classifier(GCN(cora.num_features, 7), cora, config)
    seed_everything(0)
    mlp = train_node_classifier(MLP(cora.num_features, 7), cora, config)
    assert gcn.history["train_loss"][-1] < gcn.history["train_loss"][0] / 2  # it learns (with dropout on)
    assert gcn.test_acc > 0.75 and mlp.test_acc < 0.65 and gcn.test_acc > mlp.test_acc + 0.15, (gcn, mlp)


def test_seeded_runs_give_the_same_numbers(cora):
    runs = []
    for _ in range(2):
        seed_everything(3)
        runs.append(train_node_classifier(GCN(cora.num_features, 7), cora, TrainConfig(epochs=15, stopping="none")))
    assert runs[0].history == runs[1].history


def test_stopping_rules(cora):
    seed_everything(0)
    window = train_node_classifier(MLP(cora.num_features, 7), cora, TrainConfig(epochs=200, stopping="window"))
    assert window.epochs < 200 and window.kept_epoch == window.epochs  # the MLP over-fits fast and stops
    losses = window.history["val_loss"]
    assert losses[-1] > sum(losses[-11:-1]) / 10  # the rule that fired
    seed_everything(0)
    patient = train_node_classifier(GCN(cora.num_features, 7), cora,
                                    TrainConfig(epochs=60, stopping="patience", patience=5, lr=0.05))
    h = patient.history
    k = patient.kept_epoch - 1
    assert patient.test_acc == h["test_acc"][k]
    assert h["val_acc"][k] == max(h["val_acc"][: k + 1]) and h["val_loss"][k] == min(h["val_loss"][: k + 1])
    with pytest.raises(ValueError, match="stopping must be one of"):
        train_node_classifier(GCN(cora.num_features, 7), cora, TrainConfig(stopping="early"))


def test_patience_stop_keeps_epochs_good_on_both_and_stops_after_patience_flat_epochs():
    stop = PatienceStop(patience=2)
    # (score, loss) -> (keep, stop): both best -> keep; one best -> reset, not kept; neither -> count
    steps = [((0.5, 1.0), (True, False)), ((0.6, 1.1), (False, False)), ((0.6, 0.9), (True, False)),
             ((0.4, 1.5), (False, False)), ((0.55, 0.95), (False, True))]
    assert [stop.update(*args) for args, _ in steps] == [want for _, want in steps]
    again = PatienceStop(patience=2)
    assert [again.update(*a) for a in [(0.5, 1.0), (0.4, 2.0), (0.7, 2.0), (0.1, 3.0), (0.1, 3.0)]] == [
        (True, False), (False, False), (False, False), (False, False), (False, True)]  # an improvement resets the count


def test_train_seeds_repeats_with_each_seed_and_keeps_the_models(cora):
    config = TrainConfig(epochs=5, stopping="none")
    runs = train_seeds(lambda: GCN(cora.num_features, 7), cora, config, [0, 1, 0])
    assert runs[0].history == runs[2].history and runs[0].history != runs[1].history
    assert all(not r.model.training for r in runs)
    with torch.no_grad():
        acc = (runs[1].model(cora.x, cora.edge_index).argmax(1) == cora.y)[cora.test_mask].float().mean().item()
    assert acc == runs[1].test_acc


def test_accuracy_stopping_keeps_the_best_validation_epoch(cora):
    seed_everything(0)
    config = TrainConfig(epochs=80, stopping="accuracy", patience=5, lr=0.05)
    run = train_node_classifier(GCN(cora.num_features, 7), cora, config)
    h = run.history
    best = h["val_acc"].index(max(h["val_acc"]))  # the first best epoch
    assert run.kept_epoch == best + 1 and run.test_acc == h["test_acc"][best]
    # it stopped after `patience` epochs without a better validation accuracy
    assert run.epochs == best + 1 + 5 or run.epochs == 80, (run.epochs, best)
    assert max(h["val_acc"][best + 1 :], default=0) <= h["val_acc"][best]
    with torch.no_grad():  # the kept weights are restored
        out = run.model(cora.x, cora.edge_index)
    acc = (out.argmax(1) == cora.y)[cora.test_mask].float().mean().item()
    assert acc == run.test_acc


# --- SparseLinear: the fast gradient through sparse features --------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_sparse_linear_equals_nn_linear_to_the_bit(bias):
    """Same outputs and gradients as nn.Linear on a CSR input, step after step of dropout."""
    from dlbook.graphs.gcn import SparseLinear

    g = torch.Generator().manual_seed(0)
    x = sparse_features((torch.rand(40, 25, generator=g) < 0.15).float() * torch.rand(40, 25, generator=g))
    torch.manual_seed(0)
    ours = SparseLinear(25, 6, bias=bias)
    torch.manual_seed(0)
    ref = torch.nn.Linear(25, 6, bias=bias)
    for step in range(3):  # the transpose is cached after the first step
        torch.manual_seed(step)
        xd = feature_dropout(x, 0.5, training=True)
        upstream = torch.randn(40, 6)
        out1, out2 = ours(xd), ref(xd)
        assert torch.equal(out1, out2)
        grads = [torch.autograd.grad((o * upstream).sum(), list(m.parameters())) for o, m in ((out1, ours), (out2, ref))]
        for a, b in zip(*grads):
            assert torch.equal(a, b)
    assert ours._pattern is not None
    other = sparse_features((torch.rand(40, 25, generator=g) < 0.3).float())  # a new pattern: sorted anew
    torch.testing.assert_close(torch.autograd.grad(ours(other).sum(), ours.weight)[0],
                               torch.autograd.grad(ref(other).sum(), ref.weight)[0], rtol=0, atol=0)
    with torch.no_grad():  # evaluation and dense inputs: nn.Linear's path
        assert torch.equal(ours(xd), ref(xd))
    dense = torch.randn(5, 25)
    assert torch.equal(ours(dense), ref(dense))


def test_cached_layer_is_not_filled_in_inference_mode():
    """Tensors made in inference mode cannot enter autograd: the cache waits for a normal call."""
    x, edge_index = _graph()
    conv = GCNConv(6, 4, cached=True)
    with torch.inference_mode():
        conv(x, edge_index)
    assert conv._cache is None
    conv(x, edge_index).sum().backward()  # no error, and now cached
    assert conv._cache is not None


def test_sparse_adjacency_equals_propagate():
    """Â h with the CSR matrix built once: the sums of propagate (duplicates added), and Âᵀ is its transpose."""
    from dlbook.graphs.gcn import sparse_adjacency

    x, edge_index = _graph()
    w = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(1))
    a, a_t = sparse_adjacency(edge_index, w, 30)
    torch.testing.assert_close(a @ x, propagate(x, edge_index, w))
    torch.testing.assert_close(a_t.to_dense(), a.to_dense().T)


def test_cached_layer_equals_uncached_forward_and_backward():
    """The cached layer multiplies by the sparse Â; outputs and every gradient equal the edge-list path."""
    x, edge_index = _graph()
    fresh, cached = GCNConv(6, 4), GCNConv(6, 4, cached=True)
    cached.load_state_dict(fresh.state_dict())
    upstream = torch.randn(30, 4)
    for step in range(2):  # the first call builds the cache, the second reuses it
        x1, x2 = (x.clone().requires_grad_() for _ in range(2))
        out1, out2 = fresh(x1, edge_index), cached(x2, edge_index)
        (out1 * upstream).sum().backward()
        (out2 * upstream).sum().backward()
        torch.testing.assert_close(out2, out1)
        torch.testing.assert_close(x2.grad, x1.grad)
        torch.testing.assert_close(cached.lin.weight.grad, fresh.lin.weight.grad)
        assert cached._cache is not None

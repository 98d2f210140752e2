"""The GAT and GATv2 layers, the segment softmax and inductive training, against PyTorch Geometric."""

import pytest
import torch
from sklearn.metrics import f1_score
from torch_geometric.nn import GATConv as PyGGATConv
from torch_geometric.nn import GATv2Conv as PyGGATv2Conv
from torch_geometric.utils import softmax as pyg_softmax

from dlbook.config import seed_everything
from dlbook.graphs.gat import (
    GAT, GATConv, GATv2Conv, InductiveGAT, InductiveGATConfig, InductiveGCN, InductiveTrainConfig,
    _segment_softmax, attention_entropy, collate, micro_f1, segment_order, segment_softmax,
    train_inductive,
)
from dlbook.graphs.gcn import MLP, GCNConfig, sparse_features
from dlbook.graphs.synthetic import multilabel_graphs

PAIRS = [(GATConv, PyGGATConv), (GATv2Conv, PyGGATv2Conv)]


def _graph(n=30, e=150, seed=0, isolated=3):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n - isolated, (2, e), generator=g)
    edge_index = torch.cat([edge_index, torch.tensor([[4, 5], [4, 5]])], dim=1)  # two existing self-loops
    return torch.randn(n, 6, generator=g), edge_index


# --- segment softmax ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(200,), (200, 4), (200, 3, 2)])
def test_segment_softmax_equals_pyg_and_sums_to_one(shape):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(shape, generator=g) * 20  # large scores: the max shift must hold
    index = torch.randint(0, 25, (200,), generator=g)
    ours = segment_softmax(src, index, 30)
    torch.testing.assert_close(ours, pyg_softmax(src, index, num_nodes=30))
    sums = torch.zeros((30,) + shape[1:]).index_add_(0, index, ours)
    present = torch.zeros(30, dtype=torch.bool)
    present[index] = True
    torch.testing.assert_close(sums[present], torch.ones_like(sums[present]))


def test_segment_softmax_gradient_is_exact():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(40, 3, generator=g, dtype=torch.double, requires_grad=True)
    index = torch.randint(0, 7, (40,), generator=g)
    assert torch.autograd.gradcheck(lambda s: segment_softmax(s, index, 7), (src,))


@pytest.mark.parametrize("shape", [(200,), (200, 4), (200, 3, 2)])
def test_segment_softmax_with_sorted_segments_is_bitwise_the_same(shape):
    # segment_reduce's maxima (a layer's cached graph) against scatter_reduce_'s, with empty
    # segments (20..29), ties and a -0.0 beside a 0.0; values and gradients equal to the bit
    g = torch.Generator().manual_seed(2)
    src = (torch.randn(shape, generator=g) * 20).round()  # integers: many ties
    src[0], src[1] = 0.0, -0.0
    index = torch.randint(0, 20, (200,), generator=g)
    index[0] = index[1] = 3
    upstream = torch.randn(shape, generator=g)
    outs, grads = [], []
    for segments in (None, segment_order(index, 30)):
        s = src.clone().requires_grad_()
        out = _segment_softmax(s, index, 30, segments)
        (out * upstream).sum().backward()
        outs.append(out)
        grads.append(s.grad)
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
    order, lengths = segment_order(index, 30)
    assert torch.equal(index[order], index.sort(stable=True).values)
    assert lengths.tolist() == torch.bincount(index, minlength=30).tolist()


@pytest.mark.parametrize("Conv", [GATConv, GATv2Conv])
def test_layer_on_a_cached_graph_is_bitwise_the_uncached_layer(Conv):
    # from its second step on a graph, the layer takes the softmax's sorted-segments path
    x, edge_index = _graph()
    seed_everything(0)
    layer = Conv(6, 5, heads=3)
    fresh = Conv(6, 5, heads=3)
    fresh.load_state_dict(layer.state_dict())
    for step in range(3):
        x1, x2 = (x.clone().requires_grad_() for _ in range(2))
        out1 = layer(x1, edge_index)  # cached graph: segments from step 1 on
        fresh._edge_cache = None  # a graph seen once: scattered maxima
        out2 = fresh(x2, edge_index)
        out1.sum().backward()
        out2.sum().backward()
        assert torch.equal(out1, out2) and torch.equal(x1.grad, x2.grad)
    assert layer._edge_cache[4] is not None and fresh._edge_cache[4] is None


# --- the layers against PyG -----------------------------------------------------------------


@pytest.mark.parametrize("Ours, Theirs", PAIRS)
@pytest.mark.parametrize("heads, concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("kwargs", [{}, {"residual": True}, {"bias": False}, {"add_self_loops": False}])
def test_layer_equals_pyg_forward_attention_and_gradients(Ours, Theirs, heads, concat, kwargs):
    x, edge_index = _graph()
    ours = Ours(6, 5, heads=heads, concat=concat, **kwargs)
    theirs = Theirs(6, 5, heads=heads, concat=concat, **kwargs)
    with torch.no_grad():  # non-zero biases, so that they are compared too
        for name, p in ours.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    theirs.load_state_dict(ours.state_dict())
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1, (ei1, a1) = ours(x1, edge_index, return_attention_weights=True)
    out2, (ei2, a2) = theirs(x2, edge_index, return_attention_weights=True)
    assert out1.shape == (30, 5 * heads if concat else 5)
    torch.testing.assert_close(out1, out2)
    assert torch.equal(ei1, ei2)
    torch.testing.assert_close(a1, a2)
    g = torch.randn_like(out1)
    (out1 * g).sum().backward()
    (out2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs_grads[name].grad, msg=name)


@pytest.mark.parametrize("residual", [False, True])
def test_same_seed_gives_the_same_initial_weights_as_pyg(residual):
    torch.manual_seed(7)
    ours = GATConv(6, 4, heads=2, residual=residual)
    torch.manual_seed(7)
    theirs = PyGGATConv(6, 4, heads=2, residual=residual)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, theirs.state_dict()[k]), k


def test_attention_is_a_distribution_over_each_neighbourhood_with_self_loop():
    x, edge_index = _graph()
    _, (ei, alpha) = GATConv(6, 4, heads=2)(x, edge_index, return_attention_weights=True)
    assert ((ei[0] == ei[1]).sum()) == 30  # exactly one self-loop per node, old ones replaced
    sums = torch.zeros(30, 2).index_add_(0, ei[1], alpha)
    torch.testing.assert_close(sums, torch.ones(30, 2))
    assert (alpha > 0).all()


def test_isolated_nodes_attend_to_themselves_only():
    x, edge_index = _graph(isolated=3)
    conv = GATConv(6, 4, heads=2, concat=True)
    torch.nn.init.normal_(conv.bias)
    out = conv(x, edge_index)
    torch.testing.assert_close(out[-3:], conv.lin(x[-3:]) + conv.bias)


def test_attention_dropout_acts_in_training_only():
    x, edge_index = _graph()
    conv = GATConv(6, 4, heads=2, dropout=0.5)
    conv.eval()
    torch.testing.assert_close(conv(x, edge_index), conv(x, edge_index))
    conv.train()
    torch.manual_seed(0)
    a = conv(x, edge_index)
    assert not torch.allclose(a, conv.eval()(x, edge_index))


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0, 1], [1, 30]]), "node id 30"),
    (torch.zeros(3, 4, dtype=torch.long), r"shape \(2, num_edges\)"),
])
@pytest.mark.parametrize("Conv", [GATConv, GATv2Conv])
def test_bad_edge_index_is_a_clear_error(Conv, bad, match):
    with pytest.raises(ValueError, match=match):
        Conv(6, 4)(torch.randn(30, 6), bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="heads must be a positive integer"):
        GATConv(6, 4, heads=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        GATConv(6, 4, dropout=1.0)
    with pytest.raises(ValueError, match="one flag per layer"):
        InductiveGAT(6, 3, InductiveGATConfig(heads=(2, 2), residual=(False,)))


def test_sparse_input():
    x, edge_index = _graph()
    x = torch.where(x > 1.0, x, torch.zeros_like(x))
    conv = GATConv(6, 4, heads=2, residual=True)
    torch.testing.assert_close(conv(sparse_features(x), edge_index), conv(x, edge_index))


# --- models ---------------------------------------------------------------------------------


def test_gat_model_with_pyg_layers_is_the_same_model():
    x, edge_index = _graph()
    torch.manual_seed(0)
    ours = GAT(6, 3).eval()
    torch.manual_seed(0)
    theirs = GAT(6, 3, conv=PyGGATConv).eval()
    assert ours(x, edge_index).shape == (30, 3)
    torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index))
    att = ours.attention(x, edge_index)
    n_edges = int((edge_index[0] != edge_index[1]).sum()) + 30  # old self-loops dropped, one per node added
    assert [a.shape for _, a in att] == [(n_edges, 8), (n_edges, 1)]


def test_gat_weight_decay_skips_biases():
    decay, free = GAT(6, 3).param_groups(5e-4)
    assert all(p.dim() > 1 for p in decay["params"]) and all(p.dim() == 1 for p in free["params"])


@pytest.mark.parametrize("heads, residual", [((4, 4, 6), (False, True, False)), ((2, 3), (True, True))])
def test_inductive_models_shapes(heads, residual):
    x, edge_index = _graph()
    gat = InductiveGAT(6, 11, InductiveGATConfig(hidden=5, heads=heads, residual=residual))
    assert gat(x, edge_index).shape == (30, 11)
    assert [c.heads for c in gat.convs] == list(heads)
    assert [c.res is not None for c in gat.convs] == list(residual)
    assert InductiveGCN(6, 11, hidden=8)(x, edge_index).shape == (30, 11)


# --- multi-label training ---------------------------------------------------------------------


def test_micro_f1_equals_sklearn():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(50, 7, generator=g), (torch.rand(50, 7, generator=g) < 0.3).float()
    assert micro_f1(logits, target) == pytest.approx(f1_score(target.numpy(), (logits > 0).numpy(), average="micro"))
    assert micro_f1(target * 2 - 1, target) == 1.0


def test_collate_shifts_edges():
    graphs = multilabel_graphs(3, nodes=(5, 9), num_labels=4)
    x, edge_index, y = collate(graphs)
    sizes = [g.num_nodes for g in graphs]
    assert x.shape == (sum(sizes), 50) and y.shape == (sum(sizes), 4)
    assert edge_index.size(1) == sum(g.edge_index.size(1) for g in graphs)
    second = edge_index[:, graphs[0].edge_index.size(1):][:, : graphs[1].edge_index.size(1)]
    assert torch.equal(second - sizes[0], graphs[1].edge_index)


def test_attention_entropy_of_uniform_attention_is_log_degree():
    edge_index = torch.tensor([[0, 1, 2, 0, 1, 2, 3], [1, 1, 1, 2, 2, 3, 3]])  # in-degrees 0, 3, 2, 2
    alpha = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.5, 0.5, 1.0, 0.0])[:, None]
    entropy, uniform = attention_entropy(alpha, edge_index[1], 4)
    torch.testing.assert_close(entropy[:, 0], torch.tensor([0.0, torch.log(torch.tensor(3.0)), torch.log(torch.tensor(2.0)), 0.0]))
    torch.testing.assert_close(uniform[:, 0], torch.log(torch.tensor([1.0, 3.0, 2.0, 2.0])))


def test_inductive_gat_learns_unseen_graphs():
    """On new graphs of the generated multi-label data, a GAT reads the neighbourhoods an MLP cannot see."""
    kw = dict(nodes=(100, 200), num_labels=20)
    train, val, test = (multilabel_graphs(n, graph_seed=s, **kw) for n, s in ((8, 0), (2, 1), (2, 2)))
    config = InductiveTrainConfig(epochs=40, patience=40, batch_size=2)
    seed_everything(0)
    gat = train_inductive(InductiveGAT(50, 20, InductiveGATConfig(hidden=16, heads=(4, 4, 4))), train, val, test, config)
    seed_everything(0)
    mlp = train_inductive(MLP(50, 20, GCNConfig(hidden=64, num_layers=3, dropout=0.0)), train, val, test, config)
    assert gat.history["train_loss"][-1] < 0.75 * gat.history["train_loss"][0]
    assert gat.test_f1 > mlp.test_f1 + 0.03, (gat, mlp)
    assert gat.test_f1 == gat.history["test_f1"][gat.kept_epoch - 1]

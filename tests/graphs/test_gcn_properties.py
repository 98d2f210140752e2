"""Property-based tests (Hypothesis): the GCN normalization, the layer, the segment softmax and
micro-F1 on random graphs, against the dense formula, PyG and scikit-learn."""

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score
from torch_geometric.nn.conv.gcn_conv import gcn_norm as pyg_gcn_norm
from torch_geometric.utils import softmax as pyg_softmax

from dlbook.graphs.gat import micro_f1, segment_softmax
from dlbook.graphs.gcn import GCNConv, gcn_norm


@st.composite
def graphs(draw, self_loops=True):
    """(edge_index (2, E), num_nodes, edge_weight (E,) float64 or None): duplicates allowed."""
    n = draw(st.integers(1, 7))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
    if not self_loops:
        pairs = pairs.filter(lambda p: p[0] != p[1]) if n > 1 else st.nothing()
    edges = draw(st.lists(pairs, max_size=18)) if n > 1 or self_loops else []
    edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    weights = draw(st.none() | st.lists(st.floats(0.1, 3.0), min_size=len(edges), max_size=len(edges)))
    return edge_index, n, None if weights is None else torch.tensor(weights, dtype=torch.float64)


def _dense_from_edges(ei, w, n):
    return torch.zeros(n, n, dtype=torch.float64).index_put_((ei[1], ei[0]), w, accumulate=True)


@settings(max_examples=30)
@given(graphs(self_loops=False), st.booleans())
def test_gcn_norm_is_the_dense_formula(graph, improved):
    """D^-1/2 (A + fill I) D^-1/2, fill = 2 if improved, with and without edge weights."""
    edge_index, n, w = graph
    ei, norm = gcn_norm(edge_index, n, w, improved=improved, dtype=torch.float64)
    ones = torch.ones(edge_index.size(1), dtype=torch.float64)
    A_hat = _dense_from_edges(edge_index, ones if w is None else w, n) + (2.0 if improved else 1.0) * torch.eye(
        n, dtype=torch.float64)
    d = A_hat.sum(1)
    torch.testing.assert_close(_dense_from_edges(ei, norm, n), A_hat / torch.sqrt(d[:, None] * d[None, :]))


@settings(max_examples=30)
@given(graphs(), st.booleans(), st.booleans())
def test_gcn_norm_equals_pyg(graph, improved, add_self_loops):
    """Equal to PyG wherever PyG follows the formula (it gives A + I for improved without weights)."""
    edge_index, n, w = graph
    if w is None and improved:
        w_pyg = torch.ones(edge_index.size(1), dtype=torch.float64)
    else:
        w_pyg = w
    ours = gcn_norm(edge_index, n, w, improved=improved, add_self_loops=add_self_loops, dtype=torch.float64)
    theirs = pyg_gcn_norm(edge_index, w_pyg, n, improved, add_self_loops, dtype=torch.float64)
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1].to(torch.float64))


@settings(max_examples=25)
@given(graphs(self_loops=False), st.booleans(), st.integers(0, 2**31 - 1))
def test_gcnconv_is_the_dense_formula(graph, improved, seed):
    edge_index, n, w = graph
    torch.manual_seed(seed)
    conv = GCNConv(3, 2, improved=improved).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    ones = torch.ones(edge_index.size(1), dtype=torch.float64)
    A_hat = _dense_from_edges(edge_index, ones if w is None else w, n) + (2.0 if improved else 1.0) * torch.eye(
        n, dtype=torch.float64)
    d = A_hat.sum(1)
    expected = A_hat / torch.sqrt(d[:, None] * d[None, :]) @ x @ conv.lin.weight.T + conv.bias
    torch.testing.assert_close(conv(x, edge_index, w), expected)


@st.composite
def segments(draw):
    k = draw(st.integers(1, 5))
    e = draw(st.integers(0, 16))
    index = torch.tensor(draw(st.lists(st.integers(0, k - 1), min_size=e, max_size=e)), dtype=torch.long)
    heads = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1.0, 1e3, 1e30]))
    src = torch.tensor(draw(st.lists(st.floats(-1, 1), min_size=e * heads, max_size=e * heads)),
                       dtype=torch.float64).reshape(e, heads) * scale
    return src, index, k


@settings(max_examples=40)
@given(segments())
def test_segment_softmax_equals_pyg_and_a_loop(case):
    src, index, k = case
    ours = segment_softmax(src, index, k)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, pyg_softmax(src, index, num_nodes=k))
    for seg in range(k):
        rows = index == seg
        if rows.any():
            torch.testing.assert_close(ours[rows], torch.softmax(src[rows], dim=0))


@settings(max_examples=40)
@given(segments())
def test_segment_softmax_gradient_equals_autograd_of_a_loop(case):
    src, index, k = case
    assume(src.numel() > 0)
    a = src.clone().requires_grad_()
    b = src.clone().requires_grad_()
    g = torch.randn_like(src)
    (segment_softmax(a, index, k) * g).sum().backward()
    out = torch.zeros_like(src)
    for seg in range(k):
        rows = index == seg
        out = out.index_put((rows.nonzero().flatten(),), torch.softmax(b[rows], dim=0)) if rows.any() else out
    (out * g).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@settings(max_examples=40)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_micro_f1_equals_scikit_learn(n, labels, seed, density):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, labels, generator=g, dtype=torch.float64)
    target = (torch.rand(n, labels, generator=g) < density).double()
    # Micro-averaging pools every (node, label) pair: the binary F1 of the flattened arrays
    # (scikit-learn reads a one-column indicator as binary, so "micro" would mean accuracy there).
    expected = f1_score(target.numpy().astype(int).ravel(), (logits > 0).numpy().astype(int).ravel(),
                        average="binary", zero_division=1.0)
    if labels > 1:
        assert np.isclose(expected, f1_score(target.numpy().astype(int), (logits > 0).numpy().astype(int),
                                             average="micro", zero_division=1.0))
    assert np.isclose(micro_f1(logits, target), expected)

"""The generated graphs: the contextual stochastic block model and the PPI-shaped multi-label graphs."""

import pytest
import torch

from dlbook.graphs.synthetic import csbm, edge_homophily, multilabel_graphs


def _undirected_without_loops(edge_index):
    pairs = set(map(tuple, edge_index.t().tolist()))
    return all((j, i) in pairs for i, j in pairs) and all(i != j for i, j in pairs) and len(pairs) == edge_index.size(1)


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_csbm_has_the_requested_noise_and_split(noise, num_classes):
    d = csbm(1200, num_classes=num_classes, noise=noise, avg_degree=10, train_per_class=20, num_val=300, seed=1)
    assert d.x.shape == (1200, 16) and d.y.max() == num_classes - 1
    assert edge_homophily(d.edge_index, d.y) == pytest.approx(1 - noise, abs=0.03)
    assert d.edge_index.size(1) / 1200 == pytest.approx(10, rel=0.05)  # both directions of about N*d/2 edges
    assert _undirected_without_loops(d.edge_index)
    assert (d.train_mask.long() + d.val_mask.long() + d.test_mask.long() == 1).all()
    assert torch.bincount(d.y[d.train_mask]).tolist() == [20] * num_classes and int(d.val_mask.sum()) == 300


def test_csbm_signal_sets_how_separable_the_features_are():
    d = csbm(2000, signal=3.0, seed=0)
    means = torch.stack([d.x[d.y == c].mean(0) for c in range(2)])
    assert (means[0] - means[1]).norm() == pytest.approx(3.0 * 2 ** 0.5, rel=0.1)  # orthonormal means times signal


def test_csbm_is_deterministic_given_the_seed():
    a, b, c = csbm(300, num_val=100, seed=4), csbm(300, num_val=100, seed=4), csbm(300, num_val=100, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index) and torch.equal(a.train_mask, b.train_mask)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("kwargs, match", [
    ({"noise": 1.5}, r"noise must be in \[0, 1\]"),
    ({"num_classes": 1}, "num_classes >= 2"),
    ({"num_nodes": 100, "num_val": 90}, "no test nodes"),
])
def test_csbm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        csbm(**kwargs)


def test_multilabel_graphs_shapes_and_values():
    graphs = multilabel_graphs(4, nodes=(50, 80), num_features=20, num_labels=9)
    assert len(graphs) == 4
    for g in graphs:
        assert 50 <= g.num_nodes <= 80 and g.x.shape == (g.num_nodes, 20) and g.y.shape == (g.num_nodes, 9)
        assert set(g.x.unique().tolist()) <= {0.0, 1.0} and set(g.y.unique().tolist()) <= {0.0, 1.0}
        assert _undirected_without_loops(g.edge_index)
    rate = torch.cat([g.y for g in graphs]).mean()
    assert 0.15 < rate < 0.6, rate


def test_multilabel_graphs_share_rules_but_not_nodes():
    a = multilabel_graphs(2, graph_seed=0, nodes=(30, 40))
    b = multilabel_graphs(2, graph_seed=0, nodes=(30, 40))
    c = multilabel_graphs(2, graph_seed=1, nodes=(30, 40))
    assert all(torch.equal(g.x, h.x) and torch.equal(g.y, h.y) for g, h in zip(a, b))
    assert not torch.equal(a[0].x[:30], c[0].x[:30])


def test_multilabel_degrees_are_skewed_and_arguments_checked():
    """Hubs, as in protein networks (the labels' dependence on the graph is tested by training, in test_gat.py)."""
    graphs = multilabel_graphs(6, nodes=(200, 300))
    deg = torch.cat([torch.bincount(g.edge_index[1], minlength=g.num_nodes) for g in graphs]).float()
    assert deg.std() > 0.5 * deg.mean() and deg.max() > 4 * deg.mean()
    with pytest.raises(ValueError, match=r"homophily must be in \[0, 1\]"):
        multilabel_graphs(1, homophily=2.0)
    with pytest.raises(ValueError, match="nodes"):
        multilabel_graphs(2, nodes=(10, 5))

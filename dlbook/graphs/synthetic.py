"""Graphs with known structure, generated on the spot, for the experiments of the GAT chapter.

* :func:`csbm`: the contextual stochastic block model (Deshpande et al. 2018; Binkiewicz et
  al. 2017): class-dependent Gaussian features on a random graph whose edges join nodes of
  the same class with probability ``1 - noise``. Sweeping ``noise`` asks when a learned
  weighting of neighbours (attention) beats a fixed one (GCN).
* :func:`multilabel_graphs`: many small graphs with multi-label nodes, shaped like the PPI
  benchmark (Zitnik & Leskovec 2017): binary features, one 0/1 target per label, labels that
  depend on a node's own hidden type *and* on the types of its neighbours, so a model must
  read the graph. It lets the quick profile run the inductive PPI pipeline without PPI.

Both are deterministic given ``seed`` and return PyG ``Data`` objects.

Chapter: ``book/graphs/gat.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlbook.checks import check_int, check_number


def _undirected(src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """Both directions of every edge, without self-loops or duplicates, sorted (coalesced)."""
    keep = src != dst
    src, dst = src[keep], dst[keep]
    key = torch.cat([src * num_nodes + dst, dst * num_nodes + src]).unique()
    return torch.stack([key // num_nodes, key % num_nodes])


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    check_number(name, value, low=0, high=1)


def csbm(
    num_nodes: int = 1000,
    *,
    num_classes: int = 2,
    avg_degree: float = 10.0,
    noise: float = 0.2,
    num_features: int = 16,
    signal: float = 1.0,
    train_per_class: int = 20,
    num_val: int = 500,
    seed: int = 0,
):
    r"""A contextual stochastic block model with a given fraction of "noisy" (inter-class) edges.

    Node ``i`` has a class :math:`y_i`, uniform over ``num_classes``, and features
    :math:`x_i = \mu_{y_i} + \varepsilon_i`, :math:`\varepsilon_i \sim \mathcal N(0, I)`, with
    class means ``signal`` times orthonormal vectors. ``num_nodes * avg_degree / 2`` edges
    are drawn: a uniform endpoint ``i``, then ``j`` uniform among the other nodes of ``i``'s
    class with probability ``1 - noise``, or of another class with probability ``noise``.
    ``noise = 0`` gives a graph of disconnected classes; ``noise = 1 - 1/num_classes`` a graph
    that says nothing about the classes.

    Returns:
        ``Data(x, edge_index, y, train_mask, val_mask, test_mask)``: ``train_per_class`` labelled
        nodes per class, ``num_val`` validation nodes, the rest for testing; edges in both
        directions, no self-loops or duplicates.
    """
    from torch_geometric.data import Data

    _check_fraction("noise", noise)
    num_nodes = check_int("num_nodes", num_nodes)
    num_classes = check_int("num_classes", num_classes)
    num_features = check_int("num_features", num_features, low=1)
    check_number("avg_degree", avg_degree, low=0)
    check_number("signal", signal)
    check_int("train_per_class", train_per_class, low=0)
    check_int("num_val", num_val, low=0)
    if num_classes < 2 or num_features < num_classes:
        raise ValueError(
            f"need num_classes >= 2 and num_features >= num_classes, got {num_classes} and {num_features}"
        )
    if train_per_class * num_classes + num_val >= num_nodes:
        raise ValueError(
            f"num_nodes={num_nodes} leaves no test nodes after {train_per_class} per class and {num_val} validation"
        )
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(num_classes, (num_nodes,), generator=g)
    means = (
        torch.linalg.qr(torch.randn(num_features, num_classes, generator=g))[
            0
        ].T
        * signal
    )  # (K, F) orthonormal rows
    x = means[y] + torch.randn(num_nodes, num_features, generator=g)

    members = [torch.nonzero(y == c).flatten() for c in range(num_classes)]
    num_edges = int(num_nodes * avg_degree / 2)
    src = torch.randint(num_nodes, (num_edges,), generator=g)
    inter = torch.rand(num_edges, generator=g) < noise
    shift = torch.randint(
        1, num_classes, (num_edges,), generator=g
    )  # another class, uniformly
    target_class = torch.where(inter, (y[src] + shift) % num_classes, y[src])
    dst = torch.empty_like(src)
    for c in range(num_classes):
        pick = target_class == c
        dst[pick] = members[c][
            torch.randint(len(members[c]), (int(pick.sum()),), generator=g)
        ]
    edge_index = _undirected(src, dst, num_nodes)

    order = torch.randperm(num_nodes, generator=g)
    train = torch.cat(
        [order[y[order] == c][:train_per_class] for c in range(num_classes)]
    )
    rest = order[~torch.isin(order, train)]
    masks = [torch.zeros(num_nodes, dtype=torch.bool) for _ in range(3)]
    masks[0][train], masks[1][rest[:num_val]], masks[2][rest[num_val:]] = (
        True,
        True,
        True,
    )
    return Data(
        x=x,
        edge_index=edge_index,
        y=y,
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
    )


def edge_homophily(edge_index: Tensor, y: Tensor) -> float:
    """The fraction of edges whose two ends share a class (1 - the CSBM's ``noise``, measured).

    NaN for a graph without edges, as a mean of nothing.
    """
    return (y[edge_index[0]] == y[edge_index[1]]).float().mean().item()


def multilabel_graphs(
    num_graphs: int,
    *,
    seed: int = 0,
    graph_seed: int = 0,
    nodes: tuple[int, int] = (200, 400),
    num_features: int = 50,
    num_labels: int = 40,
    num_types: int = 8,
    avg_degree: float = 12.0,
    homophily: float = 0.3,
) -> list:
    r"""Graphs of nodes with 0/1 features and many 0/1 labels, like PPI; the same "biology" for every graph.

    The shared rules come from ``seed``; the graphs themselves from ``graph_seed``, so graphs
    drawn with other ``graph_seed`` values follow the same rules on new nodes (an inductive
    test set). Each node has a hidden type :math:`z_i` (one of ``num_types``) and

    * features :math:`x_{if} \sim \mathrm{Bernoulli}(\sigma(P_{z_i f}))`, a noisy view of its type;
    * edges: each node's edges go to a node of its own type with probability ``homophily``,
      otherwise to a uniform node, with endpoints drawn proportionally to a heavy-tailed
      (log-normal) activity, so degrees are skewed as in protein networks;
    * labels :math:`y_{il} = [A_{z_i l} + (c_i B)_l + \tfrac12 \varepsilon_{il} > 0]`, where :math:`c_i`
      is the fraction of each type among ``i``'s neighbours: a label depends on the node's type
      and on its neighbourhood, which a model can only estimate through the graph.

    Returns:
        ``num_graphs`` PyG ``Data(x (N, F), edge_index (2, E), y (N, L))``, float 0/1 ``x`` and ``y``,
        edges in both directions.
    """
    from torch_geometric.data import Data

    _check_fraction("homophily", homophily)
    check_int("num_graphs", num_graphs)
    check_int("num_features", num_features, low=1)
    check_int("num_labels", num_labels, low=1)
    check_int("num_types", num_types, low=1)
    check_number("avg_degree", avg_degree, low=0)
    if num_graphs < 1 or nodes[0] < 2 or nodes[1] < nodes[0]:
        raise ValueError(
            f"need num_graphs >= 1 and 2 <= nodes[0] <= nodes[1], got {num_graphs} and {nodes}"
        )
    rules = torch.Generator().manual_seed(seed)
    P = (
        torch.randn(num_types, num_features, generator=rules) * 2.5 - 1.5
    )  # (T, F) feature logits per type
    A = (
        torch.randn(num_types, num_labels, generator=rules) * 0.5 - 0.5
    )  # (T, L) own-type effect
    B = (
        torch.randn(num_types, num_labels, generator=rules) * 3.0
    )  # (T, L) neighbourhood effect

    g = torch.Generator().manual_seed(10_000 + graph_seed)
    graphs = []
    for _ in range(num_graphs):
        n = int(torch.randint(nodes[0], nodes[1] + 1, (1,), generator=g))
        z = torch.randint(num_types, (n,), generator=g)
        activity = torch.exp(
            torch.randn(n, generator=g)
        )  # log-normal: a few hubs
        m = int(n * avg_degree / 2)
        src = torch.multinomial(activity, m, replacement=True, generator=g)
        dst = torch.multinomial(
            activity, m, replacement=True, generator=g
        )  # uniform partner (by activity)
        same = torch.rand(m, generator=g) < homophily
        for t in range(num_types):  # partners of the same type, by activity
            pick = same & (z[src] == t)
            idx = torch.nonzero(z == t).flatten()
            if pick.any() and len(idx) > 0:
                dst[pick] = idx[
                    torch.multinomial(
                        activity[idx],
                        int(pick.sum()),
                        replacement=True,
                        generator=g,
                    )
                ]
        edge_index = _undirected(src, dst, n)
        onehot = torch.nn.functional.one_hot(z, num_types).float()
        deg = torch.zeros(n).index_add_(
            0, edge_index[1], torch.ones(edge_index.size(1))
        )
        c = (
            torch.zeros(n, num_types).index_add_(
                0, edge_index[1], onehot[edge_index[0]]
            )
            / deg.clamp_min(1)[:, None]
        )
        x = torch.bernoulli(torch.sigmoid(P[z]), generator=g)
        y = (
            A[z] + c @ B + 0.5 * torch.randn(n, num_labels, generator=g) > 0
        ).float()
        graphs.append(Data(x=x, edge_index=edge_index, y=y))
    return graphs

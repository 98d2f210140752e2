"""Graph attention networks (GAT), from scratch on edge lists.

Velickovic, Cucurull, Casanova, Romero, Liò & Bengio (2018), "Graph Attention Networks"
(ICLR). A GAT layer replaces the GCN's fixed edge weights by learned ones: each node ``i``
scores every neighbour ``j`` (and itself) with ``e_ij = LeakyReLU(a^T [W h_i || W h_j])``,
normalizes the scores with a softmax over its neighbourhood, and sums the transformed
neighbours with those weights. Several heads run in parallel; hidden layers concatenate
them, the output layer averages them.

Contents, in reading order: the softmax over each node's incoming edges
(:func:`segment_softmax`); the layer (:class:`GATConv`); the two-layer transductive model for
Cora and CiteSeer (:class:`GAT`); the three-layer inductive model for PPI
(:class:`InductiveGAT`) and a GCN of the same shape (:class:`InductiveGCN`); micro-F1 and
mini-batch training over many graphs (:func:`train_inductive`); attention entropy
(:func:`attention_entropy`).

Checked against: PyTorch Geometric's ``GATConv`` (same weights give the same outputs,
attention coefficients and gradients, ``tests/graphs/test_gat.py``) and PyG's ``softmax``.

Chapter: ``book/graphs/gat.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbook.checks import (
    check_int,
    check_nonempty,
    check_number,
    check_same_shape,
    check_tensor,
)
from dlbook.graphs.gcn import (
    GCNConv,
    PatienceStop,
    SparseLinear,
    TrainConfig,
    _check_features,
    check_edge_index,
    _propagate,
    feature_dropout,
)

# --- softmax over neighbourhoods -------------------------------------------------------------


def _check_segments(src: Tensor, index: Tensor, num_segments: int) -> None:
    """Floating ``src`` (E, *), integer ``index`` (E,) in [0, num_segments)."""
    check_int("num_segments", num_segments, low=0)
    check_tensor("src", src, floating=True)
    check_tensor("index", index, ndim=1, floating=False)
    if src.ndim == 0 or src.size(0) != index.size(0):
        raise ValueError(
            f"index must have one entry per row of src ({src.shape[0] if src.ndim else 0}"
            f"), got {index.size(0)}"
        )
    if index.numel() and (
        int(index.min()) < 0 or int(index.max()) >= num_segments
    ):
        raise ValueError(
            f"index must hold segments in [0, {num_segments}), got values "
            f"from {int(index.min())} to {int(index.max())}"
        )


def segment_softmax(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Softmax over the entries of src that share an index: one per segment.

    For an edge e in segment k = index[e],

        α_e = exp(s_e - m_k) / Σ_{e' in segment k} exp(s_e' - m_k),

    where m_k is the largest score in segment k. Subtracting it keeps exp
    from overflowing and does not change the result; it is taken out of
    the autograd graph (the softmax's gradient does not depend on it).

    Shapes:
        src: (E, *), e.g. (E, H) scores of E edges for H heads.
        index: (E,) segment of each row, in [0, num_segments).
        output: same shape as src.
    """
    _check_segments(src, index, num_segments)
    return _segment_softmax(src, index, num_segments)


def _segment_softmax(
    src: Tensor,
    index: Tensor,
    num_segments: int,
    segments: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """:func:`segment_softmax` without the checks, for layers that made them.

    ``segments``, if given, is ``(order, lengths)``: a stable ordering of
    the rows by ``index`` and the size of each segment (see
    :func:`segment_order`). The maxima then come from ``segment_reduce``
    on the sorted rows, about twice as fast as ``scatter_reduce_``, and
    equal to the bit (a maximum does not depend on the order).
    """
    size = (num_segments,) + tuple(src.shape[1:])
    if segments is None:
        expanded = index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)
        seg_max = src.new_full(size, -math.inf).scatter_reduce_(
            0, expanded, src.detach(), "amax"
        )  # (K, *)
    else:
        order, lengths = segments
        seg_max = torch.segment_reduce(
            src.detach().index_select(0, order), "max", lengths=lengths, axis=0
        )  # (K, *), -inf for an empty segment as above
    exp = (src - seg_max.index_select(0, index)).exp()  # (E, *)
    seg_sum = src.new_zeros(size).index_add_(0, index, exp)  # (K, *)
    return exp / seg_sum.index_select(0, index)


# --- the layer -----------------------------------------------------------------------------


def segment_order(index: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
    """The rows of each segment, segment by segment: ``(order, lengths)``.

    ``index[order]`` is sorted, rows of one segment kept in their order,
    and ``lengths[k]`` counts the rows of segment ``k``. A layer that sees
    the same graph at every step computes it once per graph.
    """
    order = torch.argsort(index, stable=True)
    return order, torch.bincount(index, minlength=num_segments)


def add_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Remove existing self-loops and append one per node, so each node attends to itself once."""
    keep = edge_index[0] != edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device).repeat(2, 1)
    return torch.cat([edge_index[:, keep], loops], dim=1)


class GATConv(nn.Module):
    r"""The graph attention layer of Velickovic et al. (2018).

    For each head :math:`k = 1..H`, with a shared linear map :math:`W^k` and attention vector
    :math:`a^k = [a^k_{\mathrm{dst}} \| a^k_{\mathrm{src}}]`:

    .. math::
        e^k_{ij} = \mathrm{LeakyReLU}_{0.2}\big(a^{k\top}_{\mathrm{dst}} W^k h_i + a^{k\top}_{\mathrm{src}} W^k h_j\big),
        \qquad \alpha^k_{ij} = \operatorname{softmax}_{j \in \mathcal N(i) \cup \{i\}} e^k_{ij},

    .. math::
        h'_i = \Big\Vert_{k=1}^{H} \sum_{j \in \mathcal N(i) \cup \{i\}} \alpha^k_{ij} W^k h_j
        \quad \text{(concat)}, \qquad
        h'_i = \frac1H \sum_{k=1}^{H} \sum_{j} \alpha^k_{ij} W^k h_j \quad \text{(mean)}.

    :math:`a^\top [W h_i \| W h_j]` is computed as two dot products, one per node, added on
    each edge: O(N) work for the scores instead of O(E). Dropout on :math:`\alpha` (training
    only) makes each node see a random subset of its neighbourhood at each step.

    The forward pass is a skeleton with two hooks, :meth:`project` (node features to the
    per-head features of sources and targets) and :meth:`score` (the logits :math:`e_{ij}`
    of the edges); :class:`GATv2Conv` overrides only those.

    Parameters are named and shaped as in PyG's ``GATConv`` (``lin.weight``, ``att_src``,
    ``att_dst``, ``res.weight``, ``bias``) and initialized in the same order, so the state dict
    of one loads into the other, and the same seed gives the same initial weights.

    Args:
        in_channels: F, input features per node.
        out_channels: C, features per head.
        heads: H, attention heads.
        concat: concatenate the heads (H*C outputs) or average them (C outputs).
        negative_slope: of the LeakyReLU (0.2 in the paper).
        dropout: dropout probability on the attention coefficients.
        add_self_loops: each node attends to itself (the paper's j ∈ N(i) ∪ {i}).
        bias: learn an additive bias.
        residual: add a linear projection of the input to the output (a skip connection).

    Shapes:
        x: (N, F), dense or sparse. edge_index: (2, E), messages flow edge_index[0] -> edge_index[1].
        output: (N, H*C) if concat else (N, C); with ``return_attention_weights``, also
        ``(edge_index, alpha)`` with the self-loops added and alpha: (E', H), before dropout.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        *,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        bias: bool = True,
        residual: bool = False,
    ):
        super().__init__()
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(
                f"heads must be a positive integer, got {heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        in_channels = check_int("in_channels", in_channels, low=1)
        out_channels = check_int("out_channels", out_channels, low=1)
        check_number("negative_slope", negative_slope)
        self.in_channels, self.out_channels, self.heads, self.concat = (
            in_channels,
            out_channels,
            heads,
            concat,
        )
        self.negative_slope, self.dropout, self.add_self_loops = (
            negative_slope,
            dropout,
            add_self_loops,
        )
        total = heads * out_channels if concat else out_channels
        self._build(in_channels, heads * out_channels, bias)
        self.res = (
            SparseLinear(in_channels, total, bias=False) if residual else None
        )
        self.bias = nn.Parameter(torch.empty(total)) if bias else None
        self.reset_parameters()

    def _build(self, in_channels: int, width: int, bias: bool) -> None:
        self.lin = SparseLinear(in_channels, width, bias=False)
        self.att_src = nn.Parameter(
            torch.empty(1, self.heads, self.out_channels)
        )
        self.att_dst = nn.Parameter(
            torch.empty(1, self.heads, self.out_channels)
        )

    def _glorot(self) -> list[Tensor]:
        """The tensors Glorot-initialized by :meth:`reset_parameters`, in PyG's order."""
        res = [self.res.weight] if self.res is not None else []
        return [self.lin.weight] + res + [self.att_src, self.att_dst]

    def reset_parameters(self) -> None:
        for w in self._glorot():
            bound = math.sqrt(
                6.0 / (w.size(-2) + w.size(-1))
            )  # Glorot, over the last two dims as in PyG
            nn.init.uniform_(w, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-head features of each node as a source and as a target: here the same, W x. Shapes: (N, H, C) twice."""
        h = self.lin(x).view(
            x.size(0), self.heads, self.out_channels
        )  # (N, H, C)
        return h, h

    def score(
        self, h_src: Tensor, h_dst: Tensor, src: Tensor, dst: Tensor
    ) -> Tensor:
        """The attention logits e_ij of the edges j -> i, (E, H)."""
        score_src = (h_src * self.att_src).sum(-1)  # (N, H): a_src^T W h_j
        score_dst = (h_dst * self.att_dst).sum(-1)  # (N, H): a_dst^T W h_i
        return F.leaky_relu(
            score_src.index_select(0, src) + score_dst.index_select(0, dst),
            self.negative_slope,
        )

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        return_attention_weights: bool | None = None,
    ):
        weight = next(self.parameters())
        _check_features(x, self.in_channels, weight.dtype)
        num_nodes = x.size(0)
        # with the self-loops; segments: the edges grouped by target
        edge_index, segments = self._edges(edge_index, num_nodes)
        h_src, h_dst = self.project(x)  # (N, H, C) each
        src, dst = edge_index
        alpha = _segment_softmax(
            self.score(h_src, h_dst, src, dst), dst, num_nodes, segments
        )  # (E, H), sums to 1 into each node
        out = _propagate(
            h_src, edge_index, F.dropout(alpha, self.dropout, self.training)
        )  # (N, H, C)
        out = (
            out.reshape(num_nodes, -1) if self.concat else out.mean(dim=1)
        )  # (N, H*C) or (N, C)
        if self.res is not None:
            out = out + self.res(x)
        if self.bias is not None:
            out = out + self.bias
        return (out, (edge_index, alpha)) if return_attention_weights else out

    def _edges(
        self, edge_index: Tensor, num_nodes: int
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """The checked edge list, with the self-loops, and its segments: once per graph.

        A layer trained on one graph sees the same edge_index at every
        step; checking it and appending the loops each time costs about
        as much as the scores. The result, with the edges' order by target
        (:func:`segment_order`, for the softmax's maxima), is kept for the
        tensor last given, and reused while that same object comes back
        unmodified. A graph seen once gets no segments (the softmax then
        scatters its maxima: sorting would cost more than it saves).
        """
        key = (edge_index, getattr(edge_index, "_version", None), num_nodes)
        cache = getattr(self, "_edge_cache", None)
        inference = torch.is_inference_mode_enabled()
        if cache and cache[0] is edge_index and cache[1:3] == key[1:]:
            if cache[4] is None and not inference:  # seen twice: sort
                segments = segment_order(cache[3][1], num_nodes)
                cache = self._edge_cache = cache[:4] + (segments,)
            return cache[3], cache[4]
        edges = check_edge_index(edge_index, num_nodes)
        if self.add_self_loops:
            edges = add_self_loops(edges, num_nodes)
        # not from inference mode: its tensors cannot enter autograd
        if not inference:
            self._edge_cache = key + (edges, None)
        return edges, None

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}"


class GATv2Conv(GATConv):
    r"""GATv2 (Brody, Alon & Yahav 2022): the same layer with the nonlinearity moved inside.

    .. math::
        e^k_{ij} = a^{k\top} \mathrm{LeakyReLU}_{0.2}\big(W^k_{\mathrm{dst}} h_i + W^k_{\mathrm{src}} h_j\big),

    and messages :math:`W^k_{\mathrm{src}} h_j`. In GAT the score is a monotone function of
    :math:`a_{\mathrm{src}}^\top W h_j` once :math:`i` is fixed, so every node ranks its
    neighbours in the same global order ("static" attention); here the ranking can depend
    on :math:`i` ("dynamic" attention). Only :meth:`project` and :meth:`score` differ.

    Parameters as in PyG's ``GATv2Conv`` (``share_weights=False``): ``lin_l`` (sources) and
    ``lin_r`` (targets), each with a bias when ``bias``, ``att``, ``res.weight``, ``bias``.

    Args and shapes: as :class:`GATConv`.
    """

    def _build(self, in_channels: int, width: int, bias: bool) -> None:
        self.lin_l = SparseLinear(in_channels, width, bias=bias)
        self.lin_r = SparseLinear(in_channels, width, bias=bias)
        self.att = nn.Parameter(torch.empty(1, self.heads, self.out_channels))

    def _glorot(self) -> list[Tensor]:
        res = [self.res.weight] if self.res is not None else []
        return [self.lin_l.weight, self.lin_r.weight] + res + [self.att]

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin_l, self.lin_r):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = (x.size(0), self.heads, self.out_channels)
        return self.lin_l(x).view(shape), self.lin_r(x).view(
            shape
        )  # (N, H, C) each

    def score(
        self, h_src: Tensor, h_dst: Tensor, src: Tensor, dst: Tensor
    ) -> Tensor:
        hidden = F.leaky_relu(
            h_src.index_select(0, src) + h_dst.index_select(0, dst),
            self.negative_slope,
        )  # (E, H, C)
        return (hidden * self.att).sum(-1)  # (E, H)


# --- models --------------------------------------------------------------------------------


@dataclass
class GATConfig:
    """Velickovic et al.'s transductive architecture (Cora, CiteSeer; their values are the defaults)."""

    hidden: int = 8  # features per head in the hidden layer
    heads: int = 8  # heads in the hidden layer, concatenated: 64 features
    out_heads: int = 1  # heads in the output layer, averaged (8 for PubMed)
    dropout: float = 0.6  # dropout on the input of both layers
    attention_dropout: float = (
        0.6  # dropout on the attention coefficients of both layers
    )
    negative_slope: float = 0.2  # LeakyReLU slope in the attention scores


GAT_PROTOCOL = TrainConfig(
    lr=0.005,
    weight_decay=5e-4,
    epochs=100_000,
    stopping="patience",
    patience=100,
)
"""Velickovic et al.'s training on Cora and CiteSeer: Adam at 0.005, weight decay 5e-4, patience 100."""


class GAT(nn.Module):
    r"""Two GAT layers: H heads concatenated with an ELU, then C classes from averaged heads.

    .. math::
        Z = \mathrm{GAT}_{\text{mean}}\big(\mathrm{ELU}(\mathrm{GAT}_{\text{concat}}(X))\big)

    with dropout on the input of both layers.

    Args:
        in_channels: F, input features per node.
        out_channels: C, classes.
        config: widths, heads and dropout rates.
        conv: the layer class; PyG's ``GATConv`` takes the same arguments.

    Shapes:
        x: (N, F), dense or sparse; edge_index: (2, E); output: (N, C) logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: GATConfig | None = None,
        conv: Callable = GATConv,
    ):
        super().__init__()
        self.config = c = config or GATConfig()
        self.conv1 = conv(
            in_channels,
            c.hidden,
            heads=c.heads,
            concat=True,
            dropout=c.attention_dropout,
            negative_slope=c.negative_slope,
        )
        self.conv2 = conv(
            c.hidden * c.heads,
            out_channels,
            heads=c.out_heads,
            concat=False,
            dropout=c.attention_dropout,
            negative_slope=c.negative_slope,
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.elu(
            self.conv1(
                feature_dropout(x, self.config.dropout, self.training),
                edge_index,
            )
        )
        return self.conv2(
            F.dropout(x, self.config.dropout, self.training), edge_index
        )

    @torch.no_grad()
    def attention(
        self, x: Tensor, edge_index: Tensor
    ) -> list[tuple[Tensor, Tensor]]:
        """The attention coefficients of both layers, in eval mode: ``[(edge_index, alpha (E', H))]``."""
        was = self.training
        self.eval()
        h, att1 = self.conv1(x, edge_index, return_attention_weights=True)
        _, att2 = self.conv2(
            F.elu(h), edge_index, return_attention_weights=True
        )
        self.train(was)
        return [att1, att2]

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Velickovic et al.'s code decays every weight and no bias."""
        decay = [
            p for n, p in self.named_parameters() if not n.endswith("bias")
        ]
        biases = [p for n, p in self.named_parameters() if n.endswith("bias")]
        return [
            dict(params=decay, weight_decay=weight_decay),
            dict(params=biases, weight_decay=0.0),
        ]


@dataclass
class InductiveGATConfig:
    """Velickovic et al.'s PPI architecture (their values are the defaults)."""

    hidden: int = 256  # features per head in the hidden layers
    heads: tuple[int, ...] = (
        4,
        4,
        6,
    )  # heads per layer; hidden layers concatenate, the last averages
    residual: tuple[bool, ...] = (
        False,
        True,
        False,
    )  # skip connection per layer: "across the intermediate attentional layer"
    dropout: float = 0.0  # on the input of every layer (the paper: none, PPI is large enough)
    attention_dropout: float = 0.0  # on the attention coefficients


class InductiveGAT(nn.Module):
    """The three-layer GAT for PPI: hidden layers of ``heads[k] x hidden`` features with ELU,
    an output layer averaging ``heads[-1]`` heads of one logit per label.

    Shapes:
        x: (N, F); edge_index: (2, E) of a batch of disjoint graphs; output: (N, L) logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: InductiveGATConfig | None = None,
        conv: Callable = GATConv,
    ):
        super().__init__()
        self.config = c = config or InductiveGATConfig()
        if len(c.residual) != len(c.heads):
            raise ValueError(
                f"residual needs one flag per layer ({len(c.heads)}), got {c.residual!r}"
            )
        sizes = [in_channels] + [c.hidden * h for h in c.heads[:-1]]
        self.convs = nn.ModuleList(
            conv(
                sizes[k],
                c.hidden if k < len(c.heads) - 1 else out_channels,
                heads=c.heads[k],
                concat=k < len(c.heads) - 1,
                dropout=c.attention_dropout,
                residual=c.residual[k],
            )
            for k in range(len(c.heads))
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for k, conv in enumerate(self.convs):
            x = conv(
                feature_dropout(x, self.config.dropout, self.training),
                edge_index,
            )
            if k < len(self.convs) - 1:
                x = F.elu(x)
        return x


class InductiveGCN(nn.Module):
    """A GCN of the same shape as :class:`InductiveGAT`: ``len(widths)`` graph convolutions
    with ELU, and a linear skip connection where ``residual`` says, for comparison on PPI.

    Shapes:
        x: (N, F); edge_index: (2, E); output: (N, L) logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 1024,
        residual: Sequence[bool] = (False, True, False),
        num_layers: int = 3,
    ):
        super().__init__()
        if len(residual) != num_layers:
            raise ValueError(
                f"residual needs one flag per layer ({num_layers}), got {tuple(residual)!r}"
            )
        sizes = [in_channels] + [hidden] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList(
            GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.skips = nn.ModuleList(
            nn.Linear(a, b, bias=False) if r else nn.Identity()
            for a, b, r in zip(sizes[:-1], sizes[1:], residual)
        )
        self.residual = tuple(residual)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for k, (conv, skip) in enumerate(zip(self.convs, self.skips)):
            out = conv(x, edge_index)
            x = out + skip(x) if self.residual[k] else out
            if k < len(self.convs) - 1:
                x = F.elu(x)
        return x


# --- inductive training on many graphs -----------------------------------------------------


def micro_f1(logits: Tensor, target: Tensor) -> float:
    """Micro-averaged F1 of multi-label predictions ``logits > 0`` (probability > 1/2).

    All (node, label) pairs are pooled: F1 = 2 TP / (2 TP + FP + FN).

    Shapes:
        logits, target: (N, L); target holds 0/1.
    """
    check_tensor("logits", logits, ndim=2, nonempty=True)
    check_tensor("target", target, ndim=2)
    check_same_shape(logits=logits, target=target)
    pred, target = logits > 0, target > 0.5
    tp = (pred & target).sum().item()
    fp = (pred & ~target).sum().item()
    fn = (~pred & target).sum().item()
    # No positive predicted or true: precision and recall are both 0/0; 1.0
    # (nothing to find, nothing claimed), as scikit-learn's zero_division=1.
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def collate(graphs: Sequence) -> tuple[Tensor, Tensor, Tensor]:
    """Put graphs side by side as one disconnected graph.

    Stacks the features and labels, and shifts each graph's node ids by the
    number of nodes before it.

    Shapes:
        output: x (ΣN, F), edge_index (2, ΣE), y (ΣN, L).
    """
    check_nonempty("graphs", graphs)
    offsets = torch.tensor([0] + [g.num_nodes for g in graphs[:-1]]).cumsum(0)
    edge_index = torch.cat(
        [g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1
    )
    return (
        torch.cat([g.x for g in graphs]),
        edge_index,
        torch.cat([g.y for g in graphs]),
    )


@dataclass
class InductiveTrainConfig:
    """Mini-batch training over graphs (defaults: Velickovic et al.'s PPI protocol)."""

    lr: float = 0.005  # Adam's learning rate
    weight_decay: float = 0.0  # L2 penalty (none on PPI)
    batch_size: int = 2  # graphs per gradient step
    epochs: int = 1000  # the most epochs to train
    patience: int = 100  # epochs in which neither validation loss nor micro-F1 improved before stopping

    def __post_init__(self):
        check_number("lr", self.lr, low=0)
        check_number("weight_decay", self.weight_decay, low=0)
        check_int("batch_size", self.batch_size, low=1)
        check_int("epochs", self.epochs, low=1)
        check_int("patience", self.patience, low=1)


@dataclass
class InductiveResult:
    """What :func:`train_inductive` measured, for the model it kept (see :func:`train_node_classifier`)."""

    test_f1: float
    val_f1: float
    epochs: int
    kept_epoch: int
    history: dict[str, list[float]] = field(repr=False)


@torch.no_grad()
def evaluate_multilabel(
    model: nn.Module, graphs: Sequence, device: torch.device | None = None
) -> tuple[float, float]:
    """Binary cross-entropy and micro-F1 of ``model`` over all nodes of ``graphs``, in eval mode."""
    was = model.training
    model.eval()
    device = device or next(model.parameters()).device
    x, edge_index, y = (t.to(device) for t in collate(graphs))
    logits = model(x, edge_index)
    model.train(was)
    return F.binary_cross_entropy_with_logits(logits, y).item(), micro_f1(
        logits, y
    )


def train_inductive(
    model: nn.Module,
    train: Sequence,
    val: Sequence,
    test: Sequence,
    config: InductiveTrainConfig | None = None,
) -> InductiveResult:
    """Train a multi-label node classifier on the graphs of ``train``; choose and test it on unseen graphs.

    Each epoch shuffles the training graphs (with torch's global generator) and takes one Adam
    step on the binary cross-entropy of each batch of ``batch_size`` graphs. Stopping follows
    Velickovic et al.'s patience rule on the validation loss and micro-F1 (see
    :func:`dlbook.graphs.gcn.train_node_classifier`); the kept model is tested.

    Args:
        model: maps ``(x, edge_index)`` to logits (N, L).
        train, val, test: lists of PyG ``Data`` with ``x``, ``edge_index`` and 0/1 ``y`` (N, L).
        config: learning rate, batch size, epochs, patience.
    """
    config = config or InductiveTrainConfig()
    config.__post_init__()  # the fields may have been changed since
    for name, graphs in (("train", train), ("val", val), ("test", test)):
        check_nonempty(name, graphs)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "val_loss", "val_f1", "test_f1")
    }
    stopper, kept = PatienceStop(config.patience), None
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train)).tolist()
        total, count = 0.0, 0
        for b in range(0, len(order), config.batch_size):
            x, edge_index, y = (
                t.to(device)
                for t in collate(
                    [train[i] for i in order[b : b + config.batch_size]]
                )
            )
            opt.zero_grad(set_to_none=True)
            loss = F.binary_cross_entropy_with_logits(model(x, edge_index), y)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(y), count + len(y)
        val_loss, val_f1 = evaluate_multilabel(model, val, device)
        for k, v in (
            ("train_loss", total / count),
            ("val_loss", val_loss),
            ("val_f1", val_f1),
            ("test_f1", evaluate_multilabel(model, test, device)[1]),
        ):
            history[k].append(v)
        keep, stop = stopper.update(val_f1, val_loss)
        if keep:
            kept = (epoch, copy.deepcopy(model.state_dict()))
        if stop:
            break
    epoch_kept = kept[0] if kept is not None else len(history["val_f1"])
    if kept is not None:
        model.load_state_dict(kept[1])
    model.eval()
    return InductiveResult(
        test_f1=history["test_f1"][epoch_kept - 1],
        val_f1=history["val_f1"][epoch_kept - 1],
        epochs=len(history["val_f1"]),
        kept_epoch=epoch_kept,
        history=history,
    )


# --- what attention learns -------------------------------------------------------------------


def attention_entropy(
    alpha: Tensor, index: Tensor, num_nodes: int
) -> tuple[Tensor, Tensor]:
    r"""Entropy of each node's attention distribution, and of the uniform one over the same neighbours.

    :math:`H_i = -\sum_j \alpha_{ij} \log \alpha_{ij}` against :math:`\log |\mathcal N(i) \cup \{i\}|`:
    equal when attention is uniform (a GCN-like average), lower when it concentrates.

    Shapes:
        alpha: (E, H) coefficients, index: (E,) the node each edge points into.
        output: two tensors (N, H) and (N, 1).
    """
    check_tensor("alpha", alpha, floating=True)
    _check_segments(alpha, index, num_nodes)
    plogp = torch.where(
        alpha > 0,
        alpha * alpha.clamp_min(1e-30).log(),
        torch.zeros_like(alpha),
    )
    entropy = -alpha.new_zeros(
        (num_nodes,) + tuple(alpha.shape[1:])
    ).index_add_(0, index, plogp)
    degree = alpha.new_zeros(num_nodes).index_add_(
        0, index, torch.ones_like(index, dtype=alpha.dtype)
    )
    return entropy, degree.clamp_min(1).log().unsqueeze(-1)

"""Graph convolutional networks (GCN), from scratch on edge lists.

Kipf & Welling (2017), "Semi-Supervised Classification with Graph Convolutional Networks"
(ICLR), derive the layer

    H' = D̂^{-1/2} Â D̂^{-1/2} H W,    Â = A + I,  D̂_ii = Σ_j Â_ij,

as the first-order approximation of a spectral graph convolution (Hammond et al. 2011;
Defferrard et al. 2016) followed by the "renormalization trick" (adding self-loops before
normalizing). This module computes it as message passing on an edge list: gather each
edge's source features, scale them by the edge's normalized weight, and sum them at the
edge's target (``index_add_``). Nothing is ever densified, so a graph with millions of edges
costs memory in proportion to its edges.

Contents, in reading order: checking an ``edge_index`` (:func:`check_edge_index`); self-loops
and the symmetric normalization (:func:`add_remaining_self_loops`, :func:`gcn_norm`); the sum of
weighted messages (:func:`propagate`); sparse features and a linear map with a fast gradient
through them (:class:`SparseLinear`); the layer (:class:`GCNConv`); the two-layer model of
the paper (:class:`GCN`) and the feature-only baseline (:class:`MLP`); full-batch
semi-supervised training with the papers' early-stopping rules (:func:`train_node_classifier`).

Checked against: PyTorch Geometric's ``GCNConv`` and ``gcn_norm`` (same weights give the same
outputs and gradients, ``tests/graphs/test_gcn.py``).

Chapter: ``book/graphs/gcn.md``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_nonempty,
    check_number,
    check_tensor,
)
from dlbook.config import seed_everything

# --- the graph as an edge list ------------------------------------------------------------


def check_edge_index(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Check that ``edge_index`` is a ``(2, num_edges)`` tensor of node ids in ``[0, num_nodes)``.

    Row 0 holds the source node ``j`` of each edge and row 1 its target ``i``: a message
    flows from ``edge_index[0, e]`` to ``edge_index[1, e]`` (PyG's ``source_to_target`` flow).

    Returns:
        ``edge_index`` as ``int64``.

    Raises:
        TypeError: ``edge_index`` is not a tensor.
        ValueError: wrong shape, a non-integer dtype, or a node id outside ``[0, num_nodes)``;
            the message names the offending value.
    """
    num_nodes = check_int("num_nodes", num_nodes, low=0)
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"edge_index must be a torch.Tensor of shape (2, num_edges), got {type(edge_index).__name__}"
        )
    if (
        edge_index.dtype.is_floating_point
        or edge_index.dtype.is_complex
        or edge_index.dtype == torch.bool
    ):
        raise ValueError(
            f"edge_index must hold integer node ids, got dtype {edge_index.dtype}"
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        hint = (
            " (it looks like (num_edges, 2): pass edge_index.t())"
            if edge_index.dim() == 2 and edge_index.size(1) == 2
            else ""
        )
        raise ValueError(
            f"edge_index must have shape (2, num_edges), got {tuple(edge_index.shape)}{hint}"
        )
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"edge_index holds node id {bad}, but the graph has num_nodes={num_nodes} "
                f"(the rows of x); node ids must lie in [0, {num_nodes - 1}]"
            )
    return edge_index.long()


def _check_edge_weight(
    edge_weight: Tensor | None, edge_index: Tensor
) -> Tensor | None:
    """One floating weight per edge, shape (E,), or ``None``; no broadcasting."""
    if edge_weight is None:
        return None
    return check_tensor(
        "edge_weight",
        edge_weight,
        shape=(edge_index.size(1),),
        floating=True,
    )


def add_remaining_self_loops(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    fill_value: float = 1.0,
) -> tuple[Tensor, Tensor | None]:
    """Give every node exactly one self-loop: Â = A + I.

    Existing self-loops are removed from the edge list and put back at the end, one per node,
    with their weight kept; nodes without one get weight ``fill_value`` (as PyG's function of
    the same name does).

    Shapes:
        edge_index: (2, E) -> (2, E' + N), the E' non-loop edges first, then the loops 0..N-1.
        edge_weight: (E,) or None -> (E' + N,) or None.
    """
    edge_index = check_edge_index(edge_index, num_nodes)
    edge_weight = _check_edge_weight(edge_weight, edge_index)
    src, dst = edge_index
    keep = src != dst
    loops = torch.arange(num_nodes, device=edge_index.device).repeat(
        2, 1
    )  # (2, N)
    out_index = torch.cat([edge_index[:, keep], loops], dim=1)
    if edge_weight is None:
        return out_index, None
    loop_weight = edge_weight.new_full((num_nodes,), fill_value)
    loop_weight[src[~keep]] = edge_weight[~keep]
    return out_index, torch.cat([edge_weight[keep], loop_weight])


def gcn_norm(
    edge_index: Tensor,
    num_nodes: int,
    edge_weight: Tensor | None = None,
    *,
    add_self_loops: bool = True,
    improved: bool = False,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """The renormalized adjacency D̂^-½ Â D̂^-½ as one weight per edge.

    The degree d̂_i of node i is the sum of the weights of the edges into i
    (its row of Â when messages flow j -> i). A node of degree zero
    (isolated, without self-loops) gets weight 0 instead of infinity.

    Args:
        edge_index: (2, E) source and target node ids.
        num_nodes: N, the number of nodes.
        edge_weight: (E,) weights of A; None means all ones.
        add_self_loops: use Â = A + I (the renormalization trick); False
            normalizes A itself.
        improved: use Â = A + 2I (the variant Kipf & Welling mention).
            PyG 2.8.1's ``gcn_norm`` adds A + I when ``edge_weight`` is
            None; here every node gets its loop of weight 2, with or
            without edge weights.
        dtype: dtype of the weights when edge_weight is None.

    Returns:
        (edge_index, weight): the edges of Â (self-loops appended) and
        their weights Â_ij / sqrt(d̂_i d̂_j).
    """
    edge_index = check_edge_index(edge_index, num_nodes)
    edge_weight = _check_edge_weight(edge_weight, edge_index)
    if edge_weight is None:  # A's ones, before the loops (2 if improved)
        edge_weight = torch.ones(
            edge_index.size(1), dtype=dtype, device=edge_index.device
        )
    if add_self_loops:
        edge_index, edge_weight = add_remaining_self_loops(
            edge_index, edge_weight, num_nodes, 2.0 if improved else 1.0
        )
    src, dst = edge_index
    deg = edge_weight.new_zeros(num_nodes).index_add_(
        0, dst, edge_weight
    )  # d̂_i = Σ_j Â_ij
    deg_inv_sqrt = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return edge_index, deg_inv_sqrt[src] * edge_weight * deg_inv_sqrt[dst]


def _check_messages(
    x: Tensor, edge_index: Tensor, edge_weight: Tensor | None
) -> Tensor:
    """Floating node features, a valid edge list, one weight (row) per edge."""
    x = check_tensor("x", x, floating=True)
    if x.ndim == 0:
        raise ValueError("x must have a node dimension (N, *), got a scalar")
    edge_index = check_edge_index(edge_index, x.size(0))
    if edge_weight is not None:
        check_tensor("edge_weight", edge_weight)
        if edge_weight.ndim == 0 or edge_weight.size(0) != edge_index.size(1):
            raise ValueError(
                f"edge_weight must have one row per edge ({edge_index.size(1)}"
                f"), got shape {tuple(edge_weight.shape)}"
            )
    return edge_index


def propagate(
    x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
) -> Tensor:
    """Sum the weighted messages of each node's in-neighbours.

    out_i = Σ_j w_ji x_j over the edges j -> i. Gathers the source rows
    (index_select), scales them, and adds them into the target rows
    (index_add_). Autograd differentiates both, so the backward pass is the
    same two operations with source and target swapped.

    Shapes:
        x: (N, *) node features (any trailing shape, e.g. (N, H, C) for H
            heads).
        edge_index: (2, E); edge_weight: (E,) or (E, *), broadcastable
            against the trailing shape of x.
        output: same shape as x.
    """
    edge_index = _check_messages(x, edge_index, edge_weight)
    return _propagate(x, edge_index, edge_weight)


def _propagate(
    x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
) -> Tensor:
    """:func:`propagate` without the checks, for layers that made them."""
    src, dst = edge_index
    messages = x.index_select(0, src)  # (E, *)
    if edge_weight is not None:
        messages = messages * edge_weight.view(
            edge_weight.shape + (1,) * (messages.dim() - edge_weight.dim())
        )
    return x.new_zeros(x.shape).index_add_(0, dst, messages)


# --- features ------------------------------------------------------------------------------


def sparse_features(x: Tensor) -> Tensor:
    """A node-feature matrix in sparse CSR layout.

    Bag-of-words features are about 1% non-zero (Cora, CiteSeer): the first layer's product
    ``x @ W`` and its gradient cost a tenth or less in CSR. Every model here accepts either
    layout.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Sparse CSR tensor support is in beta"
        )
        return x.to_sparse_csr()


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on a dense or sparse (COO or CSR) feature matrix.

    For a sparse matrix only the stored values are dropped and rescaled, which is what dense
    dropout does to it too (a zero stays zero); Kipf & Welling's ``sparse_dropout`` does the
    same.
    """
    if not training or p == 0.0:
        return x
    if (
        x.layout == torch.sparse_csr
    ):  # same structure, new values: nothing to check
        return torch.sparse_csr_tensor(
            x.crow_indices(),
            x.col_indices(),
            F.dropout(x.values(), p),
            x.shape,
            check_invariants=False,
        )
    if x.layout == torch.sparse_coo:
        x = x.coalesce()
        return torch.sparse_coo_tensor(
            x.indices(),
            F.dropout(x.values(), p),
            x.shape,
            is_coalesced=True,
            check_invariants=False,
        )
    return F.dropout(x, p)


class _CSRLinear(torch.autograd.Function):
    """x Wᵀ + b for a constant CSR x whose transpose xᵀ is given."""

    @staticmethod
    def forward(ctx, x, x_t, weight, bias):
        ctx.save_for_backward(x_t)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        (x_t,) = ctx.saved_tensors
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return None, None, torch.mm(x_t, grad).t(), grad_bias


class SparseLinear(nn.Linear):
    """``nn.Linear`` whose gradient through a sparse CSR input is fast.

    The gradient of the weight is xᵀ g. Autograd builds xᵀ anew at every
    backward pass, which sorts the non-zeros of x: for Cora's features that
    costs twenty times the product itself. Feature dropout changes the
    values of x but not where they are, so this layer sorts once per
    sparsity pattern and keeps the permutation; each step then only gathers
    the values. The products are the same ones autograd computes, so the
    results are equal to the bit. Dense inputs, inputs that need a
    gradient, and evaluation take ``nn.Linear``'s path.
    """

    _pattern: tuple[Tensor, ...] | None = (
        None  # (crow, col, order, crow_t, col_t)
    )

    def forward(self, x: Tensor) -> Tensor:
        if (
            x.layout != torch.sparse_csr
            or x.requires_grad
            or not torch.is_grad_enabled()
            or x.dim() != 2
        ):
            return super().forward(x)
        crow, col = x.crow_indices(), x.col_indices()
        cache = self._pattern
        if cache is None or not (
            cache[0].shape == crow.shape
            and cache[1].shape == col.shape
            and torch.equal(cache[0], crow)
            and torch.equal(cache[1], col)
        ):
            n, f = x.shape
            row = torch.repeat_interleave(
                torch.arange(n, device=x.device), crow.diff()
            )  # the row of each non-zero
            order = torch.argsort(col, stable=True)  # by column, then row
            crow_t = crow.new_zeros(f + 1)
            crow_t[1:] = torch.bincount(col, minlength=f).cumsum(0)
            cache = self._pattern = (crow, col, order, crow_t, row[order])
        _, _, order, crow_t, col_t = cache
        x_t = torch.sparse_csr_tensor(
            crow_t,
            col_t,
            x.values()[order],
            (x.size(1), x.size(0)),
            check_invariants=False,
        )
        return _CSRLinear.apply(x, x_t, self.weight, self.bias)


class _AdjacencyMatmul(torch.autograd.Function):
    """Â h for a constant sparse Â whose transpose Âᵀ is given."""

    @staticmethod
    def forward(ctx, a, a_t, h):
        ctx.save_for_backward(a_t)
        return torch.sparse.mm(a, h)

    @staticmethod
    def backward(ctx, grad):
        (a_t,) = ctx.saved_tensors
        return None, None, torch.sparse.mm(a_t, grad)


def sparse_adjacency(
    edge_index: Tensor, edge_weight: Tensor, num_nodes: int
) -> tuple[Tensor, Tensor]:
    """A weighted edge list as a CSR matrix Â and its transpose Âᵀ.

    Entry (i, j) of Â is the weight of the edge j -> i (duplicates summed),
    so Â h equals propagate(h, edge_index, edge_weight). For a graph that
    never changes, a sparse product with the matrix built once is several
    times faster than gathering and scattering one row per edge.

    Shapes:
        edge_index: (2, E); edge_weight: (E,); output: two (N, N) CSR.
    """
    n = num_nodes
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Sparse CSR tensor support is in beta"
        )
        return tuple(
            torch.sparse_coo_tensor(
                index, edge_weight.detach(), (n, n), check_invariants=True
            )
            .coalesce()
            .to_sparse_csr()
            for index in (edge_index.flip(0), edge_index)
        )


# --- the layer -----------------------------------------------------------------------------


def _check_features(x: Tensor, in_channels: int, dtype: torch.dtype) -> None:
    """Node features (N, F) of the layer's width and dtype, dense or sparse."""
    check_tensor("x", x, ndim=2, floating=True)
    if x.size(1) != in_channels:
        raise ValueError(
            f"x must have shape (N, {in_channels}) for this layer, got "
            f"{tuple(x.shape)}"
        )
    if x.dtype != dtype:
        raise TypeError(
            f"x must have the layer's dtype {dtype}, got {x.dtype} (convert "
            f"one of them: x.to({dtype}) or layer.to({x.dtype}))"
        )


class GCNConv(nn.Module):
    r"""The graph convolution of Kipf & Welling (2017).

    .. math::
        X' = \hat D^{-1/2} \hat A \hat D^{-1/2} X W + b, \qquad \hat A = A + I, \quad
        \hat D_{ii} = \textstyle\sum_j \hat A_{ij},

    or, node by node, :math:`x'_i = \sum_{j \in \mathcal N(i) \cup \{i\}}
    \frac{1}{\sqrt{\hat d_j \hat d_i}} W^\top x_j + b`. The product with W comes first: it
    shrinks the features before they travel along the edges.

    Parameters are named as in PyG's ``GCNConv`` (``lin.weight``, ``bias``), so the state dict
    of one loads into the other.

    Args:
        in_channels: F, input features per node.
        out_channels: F', output features per node.
        improved: Â = A + 2I instead of A + I.
        add_self_loops: add Â's self-loops (``False``: normalize A as given).
        normalize: apply the symmetric normalization; ``False`` sums ``edge_weight``-weighted
            messages as given.
        bias: learn an additive bias b.
        cached: compute the normalized edge weights once and reuse them (only for a graph
            that never changes, as in transductive learning).

    Shapes:
        x: (N, F), dense or sparse. edge_index: (2, E). edge_weight: (E,) or None.
        output: (N, F').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        improved: bool = False,
        add_self_loops: bool = True,
        normalize: bool = True,
        bias: bool = True,
        cached: bool = False,
    ):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, low=1)
        out_channels = check_int("out_channels", out_channels, low=1)
        if add_self_loops and not normalize:
            raise ValueError(
                "add_self_loops=True needs normalize=True (as in PyG's GCNConv)"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.improved, self.add_self_loops, self.normalize, self.cached = (
            improved,
            add_self_loops,
            normalize,
            cached,
        )
        self.lin = SparseLinear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._cache: tuple | None = None  # (Â, Âᵀ, graph, nodes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(
            self.lin.weight
        )  # Glorot & Bengio, as in both papers' code
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self._cache = None

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
    ) -> Tensor:
        _check_features(x, self.in_channels, self.lin.weight.dtype)
        num_nodes = x.size(0)
        graph = edge_index
        if self._cache is None:
            edge_index = check_edge_index(edge_index, num_nodes)
            if self.normalize:
                edge_index, edge_weight = gcn_norm(
                    edge_index,
                    num_nodes,
                    edge_weight,
                    add_self_loops=self.add_self_loops,
                    improved=self.improved,
                    dtype=self.lin.weight.dtype,
                )
                # not from inference mode: its tensors cannot enter autograd
                if self.cached and not torch.is_inference_mode_enabled():
                    adjacency = sparse_adjacency(
                        edge_index, edge_weight, num_nodes
                    )
                    self._cache = (*adjacency, graph, num_nodes)
        if self._cache is not None:  # one graph: Â as a sparse matrix
            a, a_t = self._cached(graph, num_nodes)
            out = _AdjacencyMatmul.apply(a, a_t, self.lin(x))  # (N, F')
        else:
            out = propagate(self.lin(x), edge_index, edge_weight)  # (N, F')
        return out if self.bias is None else out + self.bias

    def _cached(
        self, edge_index: Tensor, num_nodes: int
    ) -> tuple[Tensor, Tensor]:
        """The cached Â and Âᵀ, if ``edge_index`` is the graph they came from."""
        a, a_t, given, n = self._cache
        same = edge_index is given or (
            n == num_nodes
            and isinstance(edge_index, Tensor)
            and edge_index.shape == given.shape
            and torch.equal(edge_index.to(given.device), given)
        )
        if not same or n != num_nodes:
            raise ValueError(
                "cached=True: this layer normalized another graph (of "
                f"{n} nodes and {given.size(1)} edges); call "
                "reset_parameters() or build it with cached=False for a new "
                "graph"
            )
        return a, a_t

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, improved={self.improved}, add_self_loops={self.add_self_loops}"


# --- models --------------------------------------------------------------------------------


@dataclass
class GCNConfig:
    """The architecture of Kipf & Welling's GCN (their values are the defaults)."""

    hidden: int = 16  # hidden units per layer
    num_layers: int = (
        2  # graph convolutions; 2 reaches each node's 2-hop neighbourhood
    )
    dropout: float = 0.5  # dropout on the input of every layer


Conv = Callable[[int, int], nn.Module]


class GCN(nn.Module):
    r"""Kipf & Welling's model: ``num_layers`` graph convolutions with ReLU between them.

    .. math::
        Z = \hat{\mathcal A}\, \mathrm{ReLU}(\hat{\mathcal A} X W^{(0)})\, W^{(1)},
        \qquad \hat{\mathcal A} = \hat D^{-1/2} \hat A \hat D^{-1/2}

    (for two layers), with dropout on the input of each layer; a softmax over Z gives class
    probabilities.

    Args:
        in_channels: F, input features per node.
        out_channels: C, classes.
        config: hidden width, depth and dropout.
        conv: builds a layer from ``(in, out)``; PyG's ``GCNConv`` fits too, which gives
            "the same model with PyG's layer" for comparisons.

    Shapes:
        x: (N, F), dense or sparse; edge_index: (2, E); output: (N, C) logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: GCNConfig | None = None,
        conv: Conv = GCNConv,
    ):
        super().__init__()
        self.config = config = config or GCNConfig()
        if config.num_layers < 1:
            raise ValueError(
                f"num_layers must be at least 1, got {config.num_layers}"
            )
        check_int("hidden", config.hidden, low=1)
        check_number("dropout", config.dropout, low=0, high=1, high_open=True)
        sizes = (
            [in_channels]
            + [config.hidden] * (config.num_layers - 1)
            + [out_channels]
        )
        self.convs = nn.ModuleList(
            conv(a, b) for a, b in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for k, conv in enumerate(self.convs):
            x = conv(
                feature_dropout(x, self.config.dropout, self.training),
                edge_index,
            )
            if k < len(self.convs) - 1:
                x = F.relu(x)
        return x

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups: Kipf & Welling put weight decay on the first layer's weight only."""
        first = [
            p
            for n, p in self.convs[0].named_parameters()
            if not n.endswith("bias")
        ]
        rest = [p for p in self.parameters() if all(p is not q for q in first)]
        return [
            dict(params=first, weight_decay=weight_decay),
            dict(params=rest, weight_decay=0.0),
        ]


class MLP(GCN):
    """The same network with every graph convolution replaced by a linear layer: features only.

    It ignores ``edge_index``; it is the baseline that shows what the graph adds.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: GCNConfig | None = None,
    ):
        super().__init__(in_channels, out_channels, config, conv=_Linear)


class _Linear(SparseLinear):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels)

    def forward(self, x: Tensor, edge_index: Tensor | None = None) -> Tensor:
        return super().forward(x)


# --- training ------------------------------------------------------------------------------


STOPPING = ("window", "patience", "accuracy", "none")


@dataclass
class TrainConfig:
    """Full-batch semi-supervised training (defaults: Kipf & Welling's GCN protocol)."""

    lr: float = 0.01  # Adam's learning rate
    weight_decay: float = (
        5e-4  # L2 penalty on the parameters the model's param_groups names
    )
    epochs: int = 200  # the most epochs to train
    stopping: str = "window"  # "window" (Kipf & Welling), "patience" (Velickovic et al.), "accuracy" or "none"
    patience: int = 10  # "window": its length; "patience", "accuracy": epochs without improvement before stopping

    def __post_init__(self):
        check_number("lr", self.lr, low=0)
        check_number("weight_decay", self.weight_decay, low=0)
        check_int("epochs", self.epochs, low=1)
        check_choice("stopping", self.stopping, STOPPING)
        if self.stopping != "none":  # a window of 0 epochs has no mean
            check_int("patience", self.patience, low=1)


GCN_PROTOCOL = TrainConfig(
    lr=0.01, weight_decay=5e-4, epochs=200, stopping="window", patience=10
)
"""Kipf & Welling's training: Adam at 0.01, weight decay 5e-4, at most 200 epochs, window of 10."""


@dataclass
class NodeResult:
    """What :func:`train_node_classifier` measured.

    ``test_acc`` and ``val_acc`` belong to the model that was kept (the last one, or the
    best one under the ``"patience"`` rule), which is ``model``; ``history`` holds one value
    per epoch of ``train_loss``, ``val_loss``, ``val_acc`` and ``test_acc``.
    """

    test_acc: float
    val_acc: float
    epochs: int  # epochs trained
    kept_epoch: int  # the epoch (1-based) whose model was kept and tested
    history: dict[str, list[float]] = field(repr=False)
    model: nn.Module | None = field(
        default=None, repr=False, compare=False
    )  # the kept model, in eval mode


class PatienceStop:
    """Velickovic et al.'s stopping rule, shared by the transductive and inductive trainers.

    Call :meth:`update` once per epoch with the validation score (higher is better) and loss.
    It says whether to keep this epoch's model (score and loss both at least as good as their
    best so far) and whether to stop (``patience`` epochs in a row in which neither improved).
    """

    def __init__(self, patience: int):
        check_int("patience", patience, low=1)
        self.patience, self.best_score, self.best_loss, self.waited = (
            patience,
            -math.inf,
            math.inf,
            0,
        )

    def update(self, score: float, loss: float) -> tuple[bool, bool]:
        """Returns ``(keep, stop)`` for this epoch."""
        if score >= self.best_score or loss <= self.best_loss:
            keep = score >= self.best_score and loss <= self.best_loss
            self.best_score, self.best_loss = (
                max(self.best_score, score),
                min(self.best_loss, loss),
            )
            self.waited = 0
            return keep, False
        self.waited += 1
        return False, self.waited == self.patience


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return (logits.argmax(-1) == y).float().mean().item()


def train_node_classifier(
    model: nn.Module, data, config: TrainConfig | None = None
) -> NodeResult:
    """Train model on the labelled nodes of one graph, full batch, with Adam.

    Every epoch is one gradient step on the cross-entropy of the training
    nodes, then an evaluation (dropout off) of the validation and test
    nodes. Stopping rules:

    * "window" (Kipf & Welling's code): stop once the validation loss
      exceeds the mean of the previous `patience` epochs'; test the last
      model.
    * "patience" (Velickovic et al.'s code): keep the model of the last
      epoch at which the validation accuracy and loss were both at least as
      good as their best so far; stop after `patience` epochs in which
      neither improved; test the kept model.
    * "accuracy": keep the model of the epoch with the best validation
      accuracy (the first, on ties); stop after `patience` epochs without a
      better one; test the kept model.
    * "none": train all `epochs`; test the last model.

    The test nodes never influence training or stopping. Seed before
    building the model (dlbook.config.seed_everything) for a repeatable run.

    Args:
        model: maps (x, edge_index) to logits (N, C); its
            param_groups(weight_decay) says which parameters are decayed
            (all of them if it has no such method).
        data: a PyG Data with x, edge_index, y and boolean train_mask,
            val_mask, test_mask, on the model's device.
        config: learning rate, weight decay, epochs, stopping rule.
    """
    config = config or TrainConfig()
    config.__post_init__()  # the fields may have been changed since
    for name in ("train_mask", "val_mask"):
        mask = getattr(data, name)
        check_nonempty(f"data.{name}", torch.nonzero(mask))
    groups = (
        model.param_groups(config.weight_decay)
        if hasattr(model, "param_groups")
        else [
            dict(
                params=list(model.parameters()),
                weight_decay=config.weight_decay,
            )
        ]
    )
    opt = torch.optim.Adam(groups, lr=config.lr)
    x, edge_index, y = data.x, data.edge_index, data.y
    # the masks as node ids, once (indexing by them gives the same rows)
    train, val, test = (
        mask.nonzero().view(-1)
        for mask in (data.train_mask, data.val_mask, data.test_mask)
    )
    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "val_loss", "val_acc", "test_acc")
    }
    stopper = (
        PatienceStop(config.patience)
        if config.stopping == "patience"
        else None
    )
    kept, kept_state = 0, None
    best_acc, waited = -math.inf, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x, edge_index)[train], y[train])
        loss.backward()
        opt.step()
        model.eval()
        with torch.inference_mode():
            out = model(x, edge_index)
        val_loss = F.cross_entropy(out[val], y[val]).item()
        val_acc = _accuracy(out[val], y[val])
        for k, v in (
            ("train_loss", loss.item()),
            ("val_loss", val_loss),
            ("val_acc", val_acc),
            ("test_acc", _accuracy(out[test], y[test])),
        ):
            history[k].append(v)
        kept = epoch
        if config.stopping == "window":
            past = history["val_loss"][-config.patience - 1 : -1]
            if epoch > config.patience + 1 and val_loss > sum(past) / len(
                past
            ):
                break
        elif config.stopping == "patience":
            keep, stop = stopper.update(val_acc, val_loss)
            if keep:
                kept_state = (epoch, copy.deepcopy(model.state_dict()))
            if stop:
                break
        elif config.stopping == "accuracy":
            if val_acc > best_acc:
                best_acc, waited = val_acc, 0
                kept_state = (epoch, copy.deepcopy(model.state_dict()))
            else:
                waited += 1
                if waited == config.patience:
                    break
    if config.stopping in ("patience", "accuracy") and kept_state is not None:
        kept = kept_state[0]
        model.load_state_dict(kept_state[1])
    model.eval()
    return NodeResult(
        test_acc=history["test_acc"][kept - 1],
        val_acc=history["val_acc"][kept - 1],
        epochs=len(history["val_loss"]),
        kept_epoch=kept,
        history=history,
        model=model,
    )


def train_seeds(
    make_model: Callable[[], nn.Module], data, config: TrainConfig, seeds
) -> list[NodeResult]:
    """Train a fresh ``make_model()`` once per seed (seeding everything first); one result per seed."""
    results = []
    for seed in seeds:
        seed_everything(seed)
        results.append(train_node_classifier(make_model(), data, config))
    return results

"""Forward + backward time of dlbook's GCNConv and GATConv against PyTorch Geometric's, on the CPU.

Run by hand (not by pytest), from the repository root:

    DLBOOK_DATA=... PYTHONPATH=$PWD python benchmarks/graphs.py [--threads 1] [--repeats 30]

For each graph (Cora, with its 1,433 sparse bag-of-words features stored densely as PyG's
``Planetoid`` gives them; and a random graph of 10,000 nodes and 100,000 edges with 128
dense features) and each layer (GCN: 16 outputs; GAT: 8 heads of 8), both implementations
get the same weights and inputs, and one step is ``forward``, a scalar loss, ``backward``.
Ours and PyG's alternate within each repetition, so that a busy machine slows both alike;
the table reports the median over repetitions and the ratio ours / PyG.

Both implementations gather and scatter along the edge list (``index_select`` and
``index_add_``/``scatter_add_``); PyG without its optional compiled extensions
(``torch_scatter``, ``pyg_lib``) does the same work through its ``MessagePassing`` machinery.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def step(layer, x, edge_index) -> None:
    layer.zero_grad(set_to_none=True)
    layer(x, edge_index).square().mean().backward()


def bench(pairs, x, edge_index, repeats: int) -> dict[str, float]:
    """Median seconds per forward+backward for each named layer, alternating between them."""
    for layer in pairs.values():  # warm up
        for _ in range(3):
            step(layer, x, edge_index)
    times = {name: [] for name in pairs}
    for _ in range(repeats):
        for name, layer in pairs.items():
            start = time.perf_counter()
            step(layer, x, edge_index)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def graphs():
    from dlbook.data import DatasetUnavailable, load_planetoid

    try:
        cora = load_planetoid("Cora")
        yield "Cora (2,708 nodes, 10,556 edges)", cora.x, cora.edge_index
    except DatasetUnavailable as err:
        print(f"skipping Cora: {err}")
    g = torch.Generator().manual_seed(0)
    n, e = 10_000, 100_000
    yield "random (10,000 nodes, 100,000 edges)", torch.randn(n, 128, generator=g), torch.randint(0, n, (2, e), generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch_geometric.nn import GATConv as PyGGATConv
        from torch_geometric.nn import GCNConv as PyGGCNConv

    from dlbook.graphs.gat import GATConv
    from dlbook.graphs.gcn import GCNConv

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of {args.repeats} forward+backward steps")
    rows = []
    for graph, x, edge_index in graphs():
        f = x.size(1)
        layers = {
            "GCNConv(F, 16)": (GCNConv(f, 16), PyGGCNConv(f, 16)),
            "GATConv(F, 8, heads=8)": (GATConv(f, 8, heads=8), PyGGATConv(f, 8, heads=8)),
        }
        for name, (ours, theirs) in layers.items():
            theirs.load_state_dict(ours.state_dict())
            t = bench({"ours": ours, "pyg": theirs}, x, edge_index, args.repeats)
            rows.append((graph, name, 1e3 * t["ours"], 1e3 * t["pyg"], t["ours"] / t["pyg"]))

    header = ("graph", "layer", "ours (ms)", "PyG (ms)", "ours / PyG")
    widths = [max(len(str(r[i])) if i < 2 else 10 for r in rows + [header]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for graph, name, ours_ms, pyg_ms, ratio in rows:
        print("  ".join([graph.ljust(widths[0]), name.ljust(widths[1]), f"{ours_ms:10.2f}", f"{pyg_ms:10.2f}", f"{ratio:10.2f}"]))


if __name__ == "__main__":
    main()

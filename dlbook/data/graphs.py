"""Graph datasets: the Planetoid citation graphs (Cora, CiteSeer) and the PPI graphs.

* :func:`load_planetoid`: the raw files PyTorch Geometric's ``Planetoid`` downloads, fetched
  and checked by :mod:`dlbook.data.registry` and read by PyG's own reader
  (:func:`torch_geometric.io.read_planetoid_data`), which builds the public split (20 labelled
  nodes per class, 500 validation and 1,000 test nodes) without writing anything to disk.
* :func:`load_ppi`: the protein-protein interaction graphs of Zitnik & Leskovec (2017) in the
  preprocessing of GraphSAGE (Hamilton et al. 2017) as distributed by DGL, the archive
  PyG's ``PPI`` downloads; :func:`read_ppi` reads its on-disk format as PyG's ``PPI.process``
  does (``tests/data/test_graphs.py`` checks both give the same graphs).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dlbook.data.registry import (
    Archive,
    DatasetUnavailable,
    Entry,
    RemoteFile,
    fetch,
    register,
)

_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/"  # PyG Planetoid.url
_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
_SHA256 = {
    "cora": (
        "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
        "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
        "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
        "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
        "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
        "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
        "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
        "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    ),
    "citeseer": (
        "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
        "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
        "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
        "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
        "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
        "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
        "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
        "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    ),
}
_NAMES = {"cora": "Cora", "citeseer": "CiteSeer"}
_SIZES = {
    "cora": "2,708 nodes, 10,556 edges, 7 classes, 0.6 MB",
    "citeseer": "3,327 nodes, 9,104 edges, 6 classes, 1.0 MB",
}

PLANETOID = {
    key: register(
        Entry(
            name=key,
            title=f"{name} citation graph (Planetoid split)",
            kind="dataset",
            description=f"{name}: papers as nodes with bag-of-words features, citations as edges, the public Planetoid split.",
            size=_SIZES[key],
            licence="as distributed with Planetoid (research use)",
            source="https://github.com/kimiyoung/planetoid",
            loader="dlbook.data.load_planetoid",
            folder=f"Planetoid/{name}/raw",
            files=tuple(
                RemoteFile(
                    f"ind.{key}.{part}",
                    f"{_URL}ind.{key}.{part}",
                    "sha256:" + digest,
                )
                for part, digest in zip(_PARTS, _SHA256[key])
            ),
            citation="yang2016revisiting",
            keyword=key,
        )
    )
    for key, name in _NAMES.items()
}


def quiet_pyg_import() -> None:
    """Import PyTorch Geometric without the ``torch.jit.script`` deprecation warning it triggers on
    recent PyTorch (it would be printed into every chapter that loads a graph)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.script.*", category=FutureWarning
        )
        import torch_geometric  # noqa: F401


def load_planetoid(name: str, *, normalize_features: bool = True):
    """The Cora or CiteSeer graph with the public split, as a PyG ``Data`` object.

    Args:
        name: ``"Cora"`` or ``"CiteSeer"`` (any case).
        normalize_features: row-normalise the bag-of-words features to sum to one, as
            Kipf & Welling and Velickovic et al. do (PyG's ``NormalizeFeatures``).

    Returns:
        ``Data(x, edge_index, y, train_mask, val_mask, test_mask)``, the same graph that
        ``Planetoid(root, name, transform=NormalizeFeatures())`` gives.
    """
    quiet_pyg_import()
    from torch_geometric.io import read_planetoid_data
    from torch_geometric.transforms import NormalizeFeatures

    key = str(name).lower()
    if key not in PLANETOID:
        raise ValueError(
            f"name must be one of {', '.join(_NAMES.values())}, got {name!r}"
        )
    folder = fetch(PLANETOID[key])
    data = read_planetoid_data(str(folder), key)
    return NormalizeFeatures()(data) if normalize_features else data


# --- PPI -------------------------------------------------------------------------------------

PPI_SPLITS = {
    "train": "train",
    "val": "valid",
    "test": "test",
}  # our name -> the files' prefix
_PPI_PARTS = ("feats.npy", "graph_id.npy", "graph.json", "labels.npy")
# (graphs, nodes) per split, 50 features and 121 labels per node, as the GAT paper and PyG's PPI
# docs state. The split's edges (1,226,368 / 198,920 / 161,976 directed, without self-loops)
# are not checked: only the training count is confirmed by a second source (PyG's statistics).
PPI_SHAPE = {
    "train": (20, 44906),
    "val": (2, 6514),
    "test": (2, 5524),
    "features": 50,
    "labels": 121,
}

PPI_TRAIN_EDGES = 1_226_368
"""Directed edges of the 20 training graphs, without self-loops (PyG's PPI statistics)."""

PPI = register(
    Entry(
        name="ppi",
        title="Protein-protein interaction graphs (PPI)",
        kind="dataset",
        description="24 graphs of interacting human proteins, one per tissue, with 50 features (gene sets) and "
        "121 gene-ontology labels per protein; 20 graphs to train, 2 to validate, 2 to test.",
        size="24 graphs, 56,944 nodes, 1,587,264 directed edges",
        licence="as distributed with GraphSAGE and DGL (research use)",
        source="https://snap.stanford.edu/graphsage/",
        loader="dlbook.data.load_ppi",
        folder="PPI/raw",
        # The archive could not be downloaded where this entry was written, so its tree hash is not
        # pinned (tree_hash=None): fetch() checks that the 12 files are there, and load_ppi checks
        # what they hold (graphs, nodes, feature and label widths per split) before returning
        # anything. A third-party provenance report records sha256 1f5b2b09ac0f897fa6aa1338c64ab75a
        # 5473674cbba89380120bede8cddb2a6a for ppi.zip; pin the tree hash once a copy is verified.
        archive=Archive(
            url="https://data.dgl.ai/dataset/ppi.zip",  # PyG PPI.url
            strip="",
            members=tuple(
                f"{prefix}_{part}"
                for prefix in PPI_SPLITS.values()
                for part in _PPI_PARTS
            ),
            tree_hash=None,
            n_files=12,
        ),
        profiles=("full",),
        citation="zitnik2017predicting",
    )
)


def read_ppi(folder: str | Path, split: str) -> list:
    """Read one split of PPI from its on-disk format, one PyG ``Data`` per graph.

    The format (DGL's ``ppi.zip``, read by PyG's ``PPI.process``): for each of ``train``,
    ``valid`` and ``test``, ``<split>_feats.npy`` (N, 50) and ``<split>_labels.npy`` (N, 121)
    row by node, ``<split>_graph_id.npy`` (N,) the graph of each node (nodes of a graph are
    contiguous), and ``<split>_graph.json`` the edges in networkx's node-link format (``"links"``
    of ``{"source", "target"}`` node ids, which are row numbers).

    As PyG does, undirected links give both directions, duplicate and self-loop edges are
    dropped, and each graph's nodes are numbered from 0 in row order. Edges are sorted by
    (source, target).

    Args:
        folder: the folder holding the 12 files.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        A list of ``Data(x (n, 50) float32, edge_index (2, e), y (n, 121) float32 0/1)``.
    """
    import numpy as np
    import torch

    quiet_pyg_import()
    from torch_geometric.data import Data

    if split not in PPI_SPLITS:
        raise ValueError(
            f"split must be one of {', '.join(PPI_SPLITS)}, got {split!r}"
        )
    folder, prefix = Path(folder), PPI_SPLITS[split]
    x = torch.from_numpy(np.load(folder / f"{prefix}_feats.npy")).float()
    y = torch.from_numpy(np.load(folder / f"{prefix}_labels.npy")).float()
    graph_id = torch.from_numpy(
        np.load(folder / f"{prefix}_graph_id.npy")
    ).long()
    with open(folder / f"{prefix}_graph.json") as f:
        graph = json.load(f)
    links = graph["links"]
    src = torch.tensor([link["source"] for link in links], dtype=torch.long)
    dst = torch.tensor([link["target"] for link in links], dtype=torch.long)
    n = len(x)
    if not (len(y) == len(graph_id) == n):
        raise ValueError(
            f"{folder}: {prefix} has {n} feature rows, {len(y)} label rows and {len(graph_id)} graph ids"
        )
    if len(src) and (
        min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n
    ):
        raise ValueError(
            f"{folder}/{prefix}_graph.json links nodes outside the {n} rows of {prefix}_feats.npy"
        )
    if not graph.get("directed", False):
        src, dst = torch.cat([src, dst]), torch.cat([dst, src])
    keep = src != dst
    key = torch.unique(src[keep] * n + dst[keep])  # sorted, without duplicates
    src, dst = key // n, key % n
    graph_id = graph_id - graph_id.min()
    first = torch.zeros(
        int(graph_id.max()) + 1, dtype=torch.long
    ).scatter_reduce(0, graph_id, torch.arange(n), "amin", include_self=False)
    local = (
        torch.arange(n) - first[graph_id]
    )  # each node's number within its graph (graphs are contiguous)
    same = (
        graph_id[src] == graph_id[dst]
    )  # PyG keeps only edges inside a graph (subgraph per graph id)
    src, dst = src[same], dst[same]
    graphs = []
    for g in range(int(graph_id.max()) + 1):
        nodes = graph_id == g
        edges = graph_id[src] == g
        graphs.append(
            Data(
                x=x[nodes],
                edge_index=torch.stack([local[src[edges]], local[dst[edges]]]),
                y=y[nodes],
            )
        )
    return graphs


def load_ppi(split: str = "train") -> list:
    """One split of the PPI benchmark: a list of graphs (20 to train, 2 to validate, 2 to test).

    Fetches DGL's ``ppi.zip`` into ``$DLBOOK_DATA/PPI/raw`` on first use (the archive PyG's
    ``PPI`` downloads) and reads it with :func:`read_ppi`. The graphs are checked against the
    published shape of the benchmark (:data:`PPI_SHAPE`) because the archive's checksum is
    not pinned (see the registry entry).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DatasetUnavailable: the files are missing and cannot be downloaded, or they do not
            hold the PPI benchmark.
    """
    if split not in PPI_SPLITS:
        raise ValueError(
            f"split must be one of {', '.join(PPI_SPLITS)}, got {split!r}"
        )
    folder = fetch(PPI)
    broken = f"dataset 'ppi' in {folder} is not the PPI benchmark"
    try:
        graphs = read_ppi(folder, split)
    except (ValueError, EOFError, OSError, KeyError, TypeError) as err:
        # garbage, empty or half-unpacked files: numpy and json say so in their terms
        raise DatasetUnavailable(
            f"{broken}: its {split!r} files cannot be read ({type(err).__name__}: "
            f"{err}). Delete the folder to download it again."
        ) from err
    want_graphs, want_nodes = PPI_SHAPE[split]
    got = (
        len(graphs),
        sum(g.num_nodes for g in graphs),
        graphs[0].x.size(1) if graphs else 0,
        graphs[0].y.size(1) if graphs else 0,
    )
    want = (
        want_graphs,
        want_nodes,
        PPI_SHAPE["features"],
        PPI_SHAPE["labels"],
    )
    problems = []
    if got != want:
        problems.append(
            f"(graphs, nodes, features, labels) = {got}, expected {want}"
        )
    else:
        edges = sum(g.num_edges for g in graphs)
        if any(g.num_edges == 0 for g in graphs):
            problems.append("a graph has no edges")
        if split == "train" and edges != PPI_TRAIN_EDGES:
            problems.append(
                f"{edges:,} training edges, expected {PPI_TRAIN_EDGES:,}"
            )
        y = torch.cat([g.y for g in graphs])
        x = torch.cat([g.x for g in graphs])
        if not ((y == 0) | (y == 1)).all():
            problems.append("labels other than 0 and 1")
        elif y.sum() == 0:
            problems.append("no positive label at all")
        if not torch.isfinite(x).all() or x.abs().sum() == 0:
            problems.append("features that are not finite, or all zero")
    if problems:
        raise DatasetUnavailable(
            f"{broken}: split {split!r} has {'; '.join(problems)}. Delete "
            "the folder to download it again. (The archive's checksum is not "
            "pinned, so its content is checked here.)"
        )
    return graphs

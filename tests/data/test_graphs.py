import numpy as np
import pytest
import torch

from dlbook.data import load_planetoid
from dlbook.data.registry import DatasetUnavailable


@pytest.mark.parametrize("name, nodes, classes", [("Cora", 2708, 7), ("CiteSeer", 3327, 6)])
def test_planetoid_equals_pyg_planetoid(data_home, tmp_path, name, nodes, classes):
    """Same graph, features and public split as torch_geometric.datasets.Planetoid."""
    import shutil

    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    ours = load_planetoid(name)
    root = tmp_path / "pyg"
    shutil.copytree(data_home / "Planetoid" / name / "raw", root / name / "raw")
    ref = Planetoid(str(root), name, transform=NormalizeFeatures())[0]
    assert ours.num_nodes == nodes and int(ours.y.max()) + 1 == classes
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(ours[key], ref[key]), key
    assert int(ours.train_mask.sum()) == 20 * classes and int(ours.test_mask.sum()) == 1000


def test_planetoid_raw_features(data_home):
    g = load_planetoid("cora", normalize_features=False)
    assert set(g.x.unique().tolist()) <= {0.0, 1.0}


def test_planetoid_unknown_name():
    with pytest.raises(ValueError, match="Cora, CiteSeer"):
        load_planetoid("PubMed42")


def test_planetoid_offline_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match=r"(?s)Planetoid/Cora/raw.*ind\.cora\.x"):
        load_planetoid("Cora")


# --- PPI: small files in the on-disk format of DGL's ppi.zip (what PyG's PPI reads) ------------

PPI_SIZES = {"train": [5, 7, 4], "valid": [6], "test": [3, 5]}  # nodes of each graph, per file prefix


def _write_ppi(folder, seed=0):
    """Write the 12 files of PPI's format for small random graphs, as DGL's archive has them:
    an undirected node-link JSON with a self-loop on every node, graph ids counted on across
    splits, float64 features and 0/1 labels."""
    import json

    import networkx as nx
    import numpy as np
    from networkx.readwrite import json_graph

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    next_id = 1
    for prefix, sizes in PPI_SIZES.items():
        n = sum(sizes)
        G = nx.Graph()
        G.add_nodes_from(range(n))
        start = 0
        for size in sizes:
            nodes = range(start, start + size)
            for i in nodes:
                G.add_edge(i, i)  # DGL's archive stores one self-loop per node
                for j in nodes:
                    if i < j and rng.random() < 0.5:
                        G.add_edge(i, j)
            start += size
        G.add_edge(0, 1)  # duplicate of a possible edge: harmless
        with open(folder / f"{prefix}_graph.json", "w") as f:
            json.dump(json_graph.node_link_data(G, edges="links"), f)
        np.save(folder / f"{prefix}_feats.npy", rng.standard_normal((n, 50)))
        np.save(folder / f"{prefix}_labels.npy", (rng.random((n, 121)) < 0.3).astype(np.int64))
        np.save(folder / f"{prefix}_graph_id.npy", np.repeat(np.arange(next_id, next_id + len(sizes)), sizes))
        next_id += len(sizes)


def _sorted_edges(edge_index):
    order = (edge_index[0] * 10_000 + edge_index[1]).argsort()
    return edge_index[:, order]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_read_ppi_equals_pyg_ppi(tmp_path, split):
    from torch_geometric.datasets import PPI as PyGPPI

    from dlbook.data import read_ppi

    _write_ppi(tmp_path / "ppi" / "raw")
    ours = read_ppi(tmp_path / "ppi" / "raw", split)
    theirs = PyGPPI(str(tmp_path / "ppi"), split=split)
    sizes = PPI_SIZES[{"train": "train", "val": "valid", "test": "test"}[split]]
    assert [g.num_nodes for g in ours] == sizes and len(theirs) == len(sizes)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.x.dtype == torch.float32
        assert torch.equal(a.edge_index, _sorted_edges(b.edge_index))
        assert (a.edge_index[0] != a.edge_index[1]).all() and int(a.edge_index.max()) < a.num_nodes


def test_read_ppi_rejects_a_bad_split_and_bad_links(tmp_path):
    import json

    from dlbook.data import read_ppi

    _write_ppi(tmp_path)
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        read_ppi(tmp_path, "valid")
    graph = json.loads((tmp_path / "test_graph.json").read_text())
    graph["links"].append({"source": 0, "target": 99})
    (tmp_path / "test_graph.json").write_text(json.dumps(graph))
    with pytest.raises(ValueError, match="outside the 8 rows"):
        read_ppi(tmp_path, "test")


@pytest.fixture
def small_ppi(tmp_path, monkeypatch, http_server):
    """Serve a zip of small PPI files and point the registry entry and the expected shape at it."""
    import dataclasses
    import zipfile

    from dlbook.data import graphs

    staged = tmp_path / "staged"
    _write_ppi(staged)
    served, url = http_server
    with zipfile.ZipFile(served / "ppi.zip", "w") as zf:
        for path in sorted(staged.iterdir()):
            zf.write(path, path.name)
        zf.writestr("README.txt", "not one of the members")
    entry = dataclasses.replace(graphs.PPI, archive=dataclasses.replace(graphs.PPI.archive, url=url + "ppi.zip"))
    monkeypatch.setattr(graphs, "PPI", entry)
    monkeypatch.setattr(graphs, "PPI_SHAPE", {"train": (3, 16), "val": (1, 6), "test": (2, 8), "features": 50, "labels": 121})
    monkeypatch.setattr(graphs, "PPI_TRAIN_EDGES", sum(g.num_edges for g in graphs.read_ppi(staged, "train")))
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    return staged, served


def test_load_ppi_downloads_unpacks_and_reads(small_ppi, monkeypatch, tmp_path):
    from dlbook.data import load_ppi, read_ppi

    staged, served = small_ppi
    graphs = load_ppi("train")
    folder = tmp_path / "cache" / "PPI" / "raw"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(p.name for p in staged.iterdir())
    for a, b in zip(graphs, read_ppi(staged, "train")):
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index) and torch.equal(a.y, b.y)
    (served / "ppi.zip").unlink()  # a second call reads the cache
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    assert [g.num_nodes for g in load_ppi("test")] == [3, 5]
    (folder / "val_feats.npy").unlink(missing_ok=True)
    (folder / "valid_feats.npy").unlink()  # a missing file is noticed, offline it is a clear error
    with pytest.raises(DatasetUnavailable, match=r"(?s)'ppi'.*valid_feats.npy"):
        load_ppi("val")


def test_load_ppi_checks_the_shape_of_the_benchmark(small_ppi, monkeypatch):
    from dlbook.data import graphs, load_ppi

    monkeypatch.setattr(graphs, "PPI_SHAPE", {"train": (20, 44906), "val": (2, 6514), "test": (2, 5524),
                                              "features": 50, "labels": 121})
    with pytest.raises(DatasetUnavailable, match=r"not the PPI benchmark.*\(3, 16, 50, 121\), expected \(20, 44906, 50, 121\)"):
        load_ppi("train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_ppi("validation")


def test_ppi_registry_entry():
    from dlbook.data import graphs
    from dlbook.data.registry import get

    entry = get("ppi")
    assert entry.archive.url == "https://data.dgl.ai/dataset/ppi.zip" and entry.archive.n_files == 12
    assert entry.archive.members[0] == "train_feats.npy" and entry.profiles == ("full",)
    assert graphs.PPI_SHAPE["train"] == (20, 44906)


def _cached_ppi(small_ppi, tmp_path, monkeypatch):
    from dlbook.data import load_ppi

    load_ppi("train")  # download and unpack the small files once
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    return tmp_path / "cache" / "PPI" / "raw"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "train_feats.npy").write_bytes(b"garbage, not an array"), "cannot be read"),
        (lambda f: (f / "train_labels.npy").write_bytes(b""), "cannot be read"),
        (lambda f: np.save(f / "train_labels.npy", np.zeros((16, 121), dtype=np.float32)), "no positive label"),
        (lambda f: np.save(f / "train_feats.npy", np.zeros((16, 50), dtype=np.float32)), "all zero"),
        (lambda f: np.save(f / "train_labels.npy", np.full((16, 121), 2.0, dtype=np.float32)), "labels other than 0 and 1"),
        (lambda f: (f / "train_graph.json").write_text('{"directed": false, "links": []}'), "a graph has no edges"),
    ],
    ids=["garbage", "empty", "zero labels", "zero features", "label range", "no edges"],
)
def test_load_ppi_refuses_wrong_content(small_ppi, tmp_path, monkeypatch, damage, message):
    """Right shapes are not enough: the archive is unpinned, so the content is checked."""
    from dlbook.data import load_ppi

    damage(_cached_ppi(small_ppi, tmp_path, monkeypatch))
    with pytest.raises(DatasetUnavailable, match=rf"not the PPI benchmark.*{message}.*Delete the folder"):
        load_ppi("train")

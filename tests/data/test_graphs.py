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

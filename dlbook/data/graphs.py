"""Citation graphs of the Planetoid benchmark (Yang, Cohen & Salakhutdinov 2016): Cora and CiteSeer.

The raw files are those PyTorch Geometric's ``Planetoid`` downloads; they are fetched and
checked by :mod:`dlbook.data.registry` and read by PyG's own reader
(:func:`torch_geometric.io.read_planetoid_data`), which builds the public split (20 labelled
nodes per class, 500 validation and 1,000 test nodes) without writing anything to disk.
"""

from __future__ import annotations

from dlbook.data.registry import Entry, RemoteFile, fetch, register

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
_SIZES = {"cora": "2,708 nodes, 10,556 edges, 7 classes, 0.6 MB", "citeseer": "3,327 nodes, 9,104 edges, 6 classes, 1.0 MB"}

PLANETOID = {
    key: register(Entry(
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
            RemoteFile(f"ind.{key}.{part}", f"{_URL}ind.{key}.{part}", "sha256:" + digest)
            for part, digest in zip(_PARTS, _SHA256[key])
        ),
        citation="yang2016revisiting",
        keyword=key,
    ))
    for key, name in _NAMES.items()
}


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
    from torch_geometric.io import read_planetoid_data
    from torch_geometric.transforms import NormalizeFeatures

    key = str(name).lower()
    if key not in PLANETOID:
        raise ValueError(f"name must be one of {', '.join(_NAMES.values())}, got {name!r}")
    folder = fetch(PLANETOID[key])
    data = read_planetoid_data(str(folder), key)
    return NormalizeFeatures()(data) if normalize_features else data

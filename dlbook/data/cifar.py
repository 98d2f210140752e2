"""CIFAR-10 (Krizhevsky 2009): 60,000 32x32 colour images in 10 classes, full profile only.

The official "python version" archive, ``cifar-10-python.tar.gz`` (the file torchvision's
``CIFAR10`` downloads, MD5 ``c58f30108f718f92721af3b95e74349a``), is read without
unpacking: five training batches and one test batch, each a pickled dict of ``data``
(10,000 x 3,072 uint8, the red, green and blue planes) and ``labels``.

A pickle can run code when it is loaded. These are read with an unpickler that only
rebuilds plain containers, bytes and NumPy arrays, so a tampered archive cannot execute
anything even if its checksum were bypassed. No copy of CIFAR-10 can be had on the
book's offline build machines: the quick profile never uses it, and its loader is tested
on small files in the real format (``tests/data/test_cifar.py``).
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import torch

from dlbook.config import profile as active_profile
from dlbook.data.mnist import ImageSplit, stratified_subset
from dlbook.data.registry import (
    DatasetUnavailable,
    Entry,
    RemoteFile,
    archive_files,
    fetch,
    register,
)

CIFAR10 = register(
    Entry(
        name="cifar10",
        title="CIFAR-10",
        kind="dataset",
        description=(
            "60,000 32x32 colour photographs of 10 classes (airplane, car, bird, "
            "cat, deer, dog, frog, horse, ship, truck), 50,000 for training."
        ),
        size="60,000 images, 163 MB",
        licence="free for research (Krizhevsky, Nair & Hinton)",
        source="https://www.cs.toronto.edu/~kriz/cifar.html",
        loader="dlbook.data.load_cifar10",
        folder="cifar10",
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "md5:c58f30108f718f92721af3b95e74349a",
            ),
        ),
        profiles=("full",),
        citation="krizhevsky2009learning",
    )
)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10's class names, in label order (``batches.meta``)."""

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3's protocol 2 writes bytes: harmless
}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes, numbers and NumPy arrays; refuses everything else."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"a CIFAR batch may only hold arrays, but it asks for {module}.{name}"
        )


def read_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch -> images ``(N, 3, 32, 32)`` uint8, labels ``(N,)``."""
    batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError("a CIFAR batch must be a pickled dict")
    batch = {
        k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()
    }
    x = np.asarray(batch.get("data"))
    y = np.asarray(batch.get("labels"), dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise ValueError(
            f"a CIFAR batch holds data of shape {x.shape} and {len(y)} labels; "
            "expected (N, 3072) and N"
        )
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError("CIFAR-10 labels must lie in [0, 10)")
    return x.reshape(-1, 3, 32, 32).astype(np.uint8), y


def load_cifar10(
    profile: str | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> ImageSplit:
    """CIFAR-10 as an :class:`ImageSplit`: images ``(N, 3, 32, 32)`` float in [0, 1].

    Args:
        profile: ``"full"`` only (no copy exists on the quick profile's offline
            machines); default: the active profile.
        n_train, n_test: class-stratified seeded subsets (default: all 50,000
            training and 10,000 test images).
        seed: the seed of the subsets.
    """
    profile = profile or active_profile()
    if profile != "full":
        raise ValueError(
            "CIFAR-10 is used by the full profile only (the quick profile's "
            f"machines have no copy); got profile={profile!r}"
        )
    path = fetch(CIFAR10) / CIFAR10.files[0].path
    members = archive_files(path, "*_batch*")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if n not in members]
    if missing:
        raise DatasetUnavailable(f"{path} has no {', '.join(missing)}")
    parts = [read_batch(members[n]) for n in names]
    x_tr = np.concatenate([p[0] for p in parts[:5]])
    y_tr = np.concatenate([p[1] for p in parts[:5]])
    x_te, y_te = parts[5]
    for name, value, total in (
        ("n_train", n_train, len(y_tr)),
        ("n_test", n_test, len(y_te)),
    ):
        if value is not None:
            from dlbook.checks import check_int

            check_int(name, value, low=10, high=total)
    if n_train is not None and n_train < len(y_tr):
        keep = stratified_subset(y_tr, n_train, seed, 10)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if n_test is not None and n_test < len(y_te):
        keep = stratified_subset(y_te, n_test, seed, 10)
        x_te, y_te = x_te[keep], y_te[keep]

    def tensors(x, y):
        return torch.from_numpy(
            x.astype(np.float32) / 255.0
        ), torch.from_numpy(y)

    return ImageSplit(
        *tensors(x_tr, y_tr),
        *tensors(x_te, y_te),
        list(CIFAR10_CLASSES),
        f"CIFAR-10 ({len(y_tr):,} training, {len(y_te):,} test images)",
    )

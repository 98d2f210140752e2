"""MNIST and Fashion-MNIST: the official IDX files, 60,000 training and 10,000 test images.

Both datasets come as four gzip-compressed IDX files (LeCun et al. 1998; Xiao et al. 2017),
downloaded to ``$DLBOOK_DATA/MNIST/raw`` and ``$DLBOOK_DATA/FashionMNIST/raw`` from the
addresses torchvision's ``MNIST`` and ``FashionMNIST`` use. Each file is checked by the MD5
of its *decompressed* content, the official checksum: the compressed bytes of two copies
may differ (they depend on the compressor), the content may not.

Both profiles read the same files. The quick profile trains on a seeded, class-stratified
subset of the 60,000 training images and reports accuracy on the official test set (all
10,000 images, or a stated stratified subset); no test image is ever used for training.

The IDX reader is checked against torchvision's own reader in ``tests/data/test_mnist.py``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlbook.config import profile as active_profile
from dlbook.data.registry import Entry, RemoteFile, fetch, register

_PARTS = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _idx_files(url: str, md5s: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(name, url + name, "md5:" + md5, gunzip=True)
        for name, md5 in zip(_PARTS, md5s, strict=True)
    )


MNIST = register(
    Entry(
        name="mnist",
        title="MNIST handwritten digits",
        kind="dataset",
        description=(
            "70,000 28x28 grey-scale digits: the official 60,000 training and "
            "10,000 test images."
        ),
        size="70,000 images, 11 MB compressed",
        licence="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
        source="http://yann.lecun.com/exdb/mnist/",
        loader="dlbook.data.load_mnist",
        folder="MNIST/raw",
        # torchvision's first mirror; MD5s of the decompressed files (the official ones)
        files=_idx_files(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            (
                "6bbc9ace898e44ae57da46a324031adb",
                "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea",
                "27ae3e4e09519cfbb04c329615203637",
            ),
        ),
        citation="lecun1998gradient",
    )
)

FASHION_MNIST = register(
    Entry(
        name="fashion-mnist",
        title="Fashion-MNIST",
        kind="dataset",
        description=(
            "70,000 28x28 grey-scale photos of 10 kinds of clothing (Zalando), "
            "60,000 for training and 10,000 for testing; a drop-in for MNIST."
        ),
        size="70,000 images, 30 MB compressed",
        licence="MIT",
        source="https://github.com/zalandoresearch/fashion-mnist",
        loader="dlbook.data.load_fashion_mnist",
        folder="FashionMNIST/raw",
        files=_idx_files(
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            (
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "9018921c3c673c538a1fc5bad174d6f9",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "15d484375f8d13e6eb1aabb0c3f46965",
            ),
        ),
        citation="xiao2017fashion",
    )
)

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST's class names, in label order (the dataset's README)."""

QUICK_TRAIN = 5000
"""How many training images the quick profile uses by default (500 per class)."""


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
    source: str  # which data this is, for the page

    def __repr__(self) -> str:
        return (
            f"{self.source}: {len(self.x_train):,} train / "
            f"{len(self.x_test):,} test, images "
            f"{tuple(self.x_train.shape[1:])}, {len(self.classes)} classes"
        )


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (0x08 = unsigned byte), the number
    of dimensions, then one big-endian int32 per dimension.

    Raises:
        ValueError: the file is not an unsigned-byte IDX file, its body does not
            hold what the header promises, or its gzip stream is truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile) as err:
        raise ValueError(
            f"{path} is not a complete gzip file ({err}); delete it so that "
            "it is fetched again"
        ) from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            f"{path} is not an unsigned-byte idx file (header {data[:4]!r})"
        )
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(
            f"{path}: the header promises {ndim} dimensions but the file "
            f"ends after {len(data)} bytes"
        )
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: header promises {expected} values of shape {shape}, "
            f"file holds {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def stratified_subset(
    labels: np.ndarray, n: int, seed: int, num_classes: int
) -> np.ndarray:
    """Indices of ``n`` examples, as close to equal per class as the data allow.

    Each class gets ``n // num_classes`` examples (the first ``n % num_classes``
    classes one more), drawn without replacement by a generator seeded with
    ``seed``; the indices come back sorted, so the subset keeps the file's order.
    """
    rng = np.random.default_rng(seed)
    take = [
        n // num_classes + (c < n % num_classes) for c in range(num_classes)
    ]
    out = []
    for c, k in enumerate(take):
        pool = np.flatnonzero(labels == c)
        if k > len(pool):
            raise ValueError(
                f"a stratified subset of {n} needs {k} examples of class {c}, "
                f"but the data hold {len(pool)}"
            )
        out.append(rng.choice(pool, size=k, replace=False))
    return np.sort(np.concatenate(out))


def _check_count(name: str, value: int | None, total: int) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 10 <= value <= total
    ):
        raise ValueError(
            f"{name} must be an integer between 10 and {total:,}, got {value!r}"
        )


def _load_idx_split(
    entry: Entry,
    classes: list[str],
    label: str,
    profile: str | None,
    n_train: int | None,
    n_test: int | None,
    seed: int,
) -> ImageSplit:
    profile = profile or active_profile()
    if profile not in ("quick", "full"):
        raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")
    _check_count("n_train", n_train, 60_000)
    _check_count("n_test", n_test, 10_000)
    if n_train is None and profile == "quick":
        n_train = QUICK_TRAIN
    folder = fetch(entry)
    x_tr, y_tr, x_te, y_te = (read_idx(folder / name) for name in _PARTS)
    if x_tr.shape != (60_000, 28, 28) or x_te.shape != (10_000, 28, 28):
        raise ValueError(
            f"{folder} does not hold {entry.title}: images of shape "
            f"{x_tr.shape} and {x_te.shape}, expected (60000, 28, 28) and "
            "(10000, 28, 28)"
        )
    if (
        y_tr.shape != (60_000,)
        or y_te.shape != (10_000,)
        or max(y_tr.max(), y_te.max()) >= len(classes)
    ):
        raise ValueError(
            f"{folder}: the label files do not hold {entry.title}"
        )
    if n_train is not None and n_train < 60_000:
        keep = stratified_subset(y_tr, n_train, seed, len(classes))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if n_test is not None and n_test < 10_000:
        keep = stratified_subset(y_te, n_test, seed, len(classes))
        x_te, y_te = x_te[keep], y_te[keep]
    test = (
        "official test set"
        if len(y_te) == 10_000
        else "of the official test set"
    )
    source = (
        f"{label} ({len(y_tr):,} of the 60,000 training images, "
        f"{len(y_te):,} {test})"
    )
    return ImageSplit(
        *_to_tensors(x_tr, y_tr), *_to_tensors(x_te, y_te), classes, source
    )


def _to_tensors(
    x: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(
        np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
    )
    return x, torch.from_numpy(np.asarray(y, dtype=np.int64))


def load_mnist(
    profile: str | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> ImageSplit:
    """MNIST: a subset of the 60,000 training digits, tested on the official 10,000.

    Args:
        profile: ``"quick"`` or ``"full"``; default: the active profile. It only
            sets the default of ``n_train``: 5,000 in quick, all 60,000 in full.
        n_train: how many training digits, a class-stratified seeded subset.
        n_test: how many test digits (default all 10,000), a stratified subset.
        seed: the seed of both subsets.

    Returns:
        An :class:`ImageSplit` with images ``(N, 1, 28, 28)`` float32 in [0, 1]
        and int64 labels.
    """
    return _load_idx_split(
        MNIST,
        [str(d) for d in range(10)],
        "MNIST",
        profile,
        n_train,
        n_test,
        seed,
    )


def load_fashion_mnist(
    profile: str | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> ImageSplit:
    """Fashion-MNIST, with the same arguments and conventions as :func:`load_mnist`.

    ``classes`` holds the class names (:data:`FASHION_CLASSES`).
    """
    return _load_idx_split(
        FASHION_MNIST,
        list(FASHION_CLASSES),
        "Fashion-MNIST",
        profile,
        n_train,
        n_test,
        seed,
    )

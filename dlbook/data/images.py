"""Photographs: the clothing dataset (10 classes) and sample photos shipped in PyPI packages.

* :func:`load_clothing` reads clothing-dataset-small (Grigorev, the ML Zoomcamp dataset):
  3,781 photos in ``train/``, ``validation/`` and ``test/`` folders of 10 classes, downloaded
  as a GitHub archive and checked by a tree hash of its files.
* :func:`load_photo` returns one of the real photographs that ship inside scikit-image and
  scikit-learn (no download), as an ``(H, W, 3)`` uint8 array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlbook.data.registry import Archive, Entry, fetch, register

CLOTHING = register(
    Entry(
        name="clothing-small",
        title="Clothing dataset (small)",
        kind="dataset",
        description="3,781 photos of clothes in 10 classes (t-shirt, shoes, pants, ...), split into train/validation/test.",
        size="3,781 images, 109 MB",
        licence="CC0 1.0",
        source="https://github.com/alexeygrigorev/clothing-dataset-small",
        loader="dlbook.data.load_clothing",
        folder="clothing-dataset-small",
        archive=Archive(
            url="https://github.com/alexeygrigorev/clothing-dataset-small/archive/refs/heads/master.zip",
            strip="clothing-dataset-small-master/",
            members=("train", "validation", "test"),
            tree_hash="297dce0c2b9b4e3533abd57bbad296ae5ed3f93712356f067ca5739ca915bef5",
            n_files=3781,
        ),
        citation="grigorev2020clothing",
    )
)

SPLITS = ("train", "validation", "test")


def load_clothing(split: str = "train", transform: Callable | None = None):
    """One split of clothing-dataset-small as a torchvision ``ImageFolder``.

    Args:
        split: ``"train"`` (3,068 photos), ``"validation"`` (341) or ``"test"`` (372).
        transform: applied to each PIL image (e.g. a torchvision transform).
    """
    from torchvision.datasets import ImageFolder

    if split not in SPLITS:
        raise ValueError(
            f"split must be one of {', '.join(SPLITS)}, got {split!r}"
        )
    return ImageFolder(fetch(CLOTHING) / split, transform=transform)


# name -> (package, how to load it); all ship with the package, nothing is downloaded.
_PHOTOS: dict[str, tuple[str, Callable[[], np.ndarray]]] = {}


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


for _name in (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
):
    _PHOTOS[_name] = ("scikit-image", _skimage(_name))
for _name in ("china", "flower"):
    _PHOTOS[_name] = ("scikit-learn", _sklearn(f"{_name}.jpg"))

PHOTOS = tuple(_PHOTOS)
"""The names :func:`load_photo` accepts."""

register(
    Entry(
        name="photos",
        title="Sample photographs (scikit-image, scikit-learn)",
        kind="dataset",
        description="Real photographs shipped inside the packages: "
        + ", ".join(PHOTOS)
        + ".",
        size=f"{len(PHOTOS)} images, a few MB",
        licence="public domain or CC0/CC BY (see each package's data licence)",
        source="https://scikit-image.org/docs/stable/api/skimage.data.html",
        loader="dlbook.data.load_photo",
        package="scikit-image, scikit-learn",
    )
)


def load_photo(name: str) -> np.ndarray:
    """A real photograph shipped inside scikit-image or scikit-learn, as ``(H, W, 3)`` uint8 RGB."""
    if name not in _PHOTOS:
        raise ValueError(
            f"no photo named {name!r}; expected one of: {', '.join(PHOTOS)}"
        )
    image = np.asarray(_PHOTOS[name][1]())
    return np.ascontiguousarray(image[..., :3])

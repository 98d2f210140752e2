"""Omniglot (Lake et al. 2015): handwritten characters of 50 alphabets, 20 drawers each.

Two parts of the dataset's official Python release (github.com/brendenlake/omniglot,
folder ``python/``), read straight from their zip files:

* :func:`load_omniglot`: a "minimal" background set, ``small1`` (5 alphabets, 136
  characters, 2,720 images) or ``small2`` (5 alphabets, 156 characters, 3,120 images),
  the small training sets of Lake et al. (2015, 2019);
* :func:`load_omniglot_runs`: the 20 runs of the 20-way within-alphabet one-shot
  classification task, with their official pairing of training and test images and the
  answer key (``class_labels.txt``).

Images are 105x105 binary drawings, returned as float tensors ``(N, 1, H, W)`` with ink
= 1 and background = 0 (the PNG files store ink as black), optionally resized.
Each zip file is checked by its sha256 (the files are the upstream ones, byte for byte);
the loaders also check what they read (counts, pairing).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import torch

from dlbook.checks import check_choice, check_int
from dlbook.data.registry import (
    DatasetUnavailable,
    Entry,
    RemoteFile,
    archive_files,
    fetch,
    register,
)

_URL = (
    "https://raw.githubusercontent.com/brendenlake/omniglot/"
    "057f034a25b9ed0f2d53a53de6e4ba71e4b9cd8f/python/"
)
_SHA256 = {
    "images_background_small1.zip": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    "images_background_small2.zip": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
    "all_runs.zip": "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
}

OMNIGLOT = register(
    Entry(
        name="omniglot",
        title="Omniglot (minimal background splits and one-shot runs)",
        kind="dataset",
        description=(
            "Handwritten characters drawn by 20 people each: the two minimal "
            "background sets (5 alphabets each) and the 20 runs of the 20-way "
            "within-alphabet one-shot classification task."
        ),
        size="5,840 background images + 20 runs of 40 images, 3 MB",
        licence="MIT",
        source="https://github.com/brendenlake/omniglot",
        loader="dlbook.data.load_omniglot",
        folder="omniglot",
        files=tuple(
            RemoteFile(name, _URL + name, "sha256:" + digest)
            for name, digest in _SHA256.items()
        ),
        citation="lake2015human",
    )
)

SPLITS = {"small1": (136, 2720), "small2": (156, 3120)}
"""The minimal background sets: (characters, images)."""


@dataclass
class OmniglotImages:
    """Background images with their alphabet, character and drawer.

    Shapes:
        images: (N, 1, H, W) float32, ink 1, background 0.
        labels: (N,) int64, the character's index in ``characters``.
        drawers: (N,) int64, the drawer (1..20) of each image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    drawers: torch.Tensor
    characters: list[str]  # "Alphabet/characterNN", in label order
    alphabets: list[str]  # alphabet of each character, in label order

    def __repr__(self) -> str:
        return (
            f"Omniglot background: {len(self.images):,} images of "
            f"{len(self.characters)} characters in "
            f"{len(set(self.alphabets))} alphabets, "
            f"images {tuple(self.images.shape[1:])}"
        )


@dataclass
class OneShotRun:
    """One run of the 20-way one-shot task: 20 training images, one per class,
    and 20 test images; ``answers[i]`` is the training image (0..19) that test
    image ``i`` shows the same character as.
    """

    train: torch.Tensor  # (20, 1, H, W)
    test: torch.Tensor  # (20, 1, H, W)
    answers: torch.Tensor  # (20,) int64


def _decode(png: bytes, image_size: int | None) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    if img.size != (105, 105):
        raise DatasetUnavailable(
            f"an Omniglot image is {img.size[0]}x{img.size[1]}, expected 105x105"
        )
    if image_size is not None and image_size != 105:
        img = img.resize((image_size, image_size), Image.Resampling.BOX)
    return 1.0 - np.asarray(img, dtype=np.float32) / 255.0


def _check_size(image_size: int | None) -> None:
    if image_size is not None:
        check_int("image_size", image_size, low=8, high=105)


def load_omniglot(
    split: str = "small1", *, image_size: int | None = None
) -> OmniglotImages:
    """A minimal background set: every image with its character and drawer.

    Args:
        split: ``"small1"`` or ``"small2"`` (Lake et al.'s minimal sets).
        image_size: resize the 105x105 images to this side (box filter), e.g.
            28 for speed; ``None`` keeps 105.
    """
    check_choice("split", split, tuple(SPLITS))
    _check_size(image_size)
    name = f"images_background_{split}.zip"
    path = fetch(OMNIGLOT) / name
    files = archive_files(path, "*.png")
    pattern = re.compile(r"^([^/]+)/(character\d+)/\d+_(\d+)\.png$")
    parsed = sorted(
        (m.group(1), m.group(2), int(m.group(3)), n)
        for n in files
        if (m := pattern.match(n))
    )
    characters = sorted({f"{a}/{c}" for a, c, _, _ in parsed})
    n_chars, n_images = SPLITS[split]
    if len(parsed) != n_images or len(characters) != n_chars:
        raise DatasetUnavailable(
            f"{path} holds {len(parsed)} images of {len(characters)} "
            f"characters; the {split} set has {n_images} of {n_chars}"
        )
    index = {c: i for i, c in enumerate(characters)}
    images = np.stack([_decode(files[n], image_size) for *_, n in parsed])
    return OmniglotImages(
        images=torch.from_numpy(images)[:, None],
        labels=torch.tensor([index[f"{a}/{c}"] for a, c, _, _ in parsed]),
        drawers=torch.tensor([d for _, _, d, _ in parsed]),
        characters=characters,
        alphabets=[c.split("/")[0] for c in characters],
    )


def load_omniglot_runs(*, image_size: int | None = None) -> list[OneShotRun]:
    """The 20 official runs of 20-way within-alphabet one-shot classification.

    Read straight from ``all_runs.zip``: each run's ``class_labels.txt`` pairs
    ``runNN/test/itemKK.png`` with the ``runNN/training/classJJ.png`` of the same
    character. ``OneShotRun.train[j]`` is ``classJJ`` (j = JJ - 1) and
    ``OneShotRun.test[i]`` is ``itemKK`` (i = KK - 1).
    """
    _check_size(image_size)
    path = fetch(OMNIGLOT) / "all_runs.zip"
    # all_runs.zip has no top folder to strip: read it as it is
    import zipfile

    with zipfile.ZipFile(path) as zf:
        files = {
            i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()
        }
    runs = []
    for r in range(1, 21):
        run = f"run{r:02d}"
        key = f"{run}/class_labels.txt"
        if key not in files:
            raise DatasetUnavailable(f"{path} has no {key}")
        pairs = [
            line.split()
            for line in files[key].decode().splitlines()
            if line.strip()
        ]
        try:
            test = [
                _decode(files[f"{run}/test/item{i:02d}.png"], image_size)
                for i in range(1, 21)
            ]
            train = [
                _decode(files[f"{run}/training/class{j:02d}.png"], image_size)
                for j in range(1, 21)
            ]
        except KeyError as err:
            raise DatasetUnavailable(
                f"{path}: {err.args[0]} is missing (a one-shot run needs 20 "
                "training and 20 test images)"
            ) from None
        answers = [0] * 20
        for item, cls in pairs:
            i = int(re.search(r"item(\d+)", item).group(1)) - 1
            answers[i] = int(re.search(r"class(\d+)", cls).group(1)) - 1
        if len(pairs) != 20 or sorted(answers) != list(range(20)):
            raise DatasetUnavailable(
                f"{path}: {key} does not pair 20 test items with 20 classes"
            )
        runs.append(
            OneShotRun(
                train=torch.from_numpy(np.stack(train))[:, None],
                test=torch.from_numpy(np.stack(test))[:, None],
                answers=torch.tensor(answers),
            )
        )
    return runs

import numpy as np
import pytest

from dlbook.data import PHOTOS, load_clothing, load_photo
from dlbook.data.registry import DatasetUnavailable


@pytest.mark.parametrize("split, n", [("train", 3068), ("validation", 341), ("test", 372)])
def test_clothing_splits_from_the_mirror(data_home, split, n):
    ds = load_clothing(split)
    assert len(ds) == n and len(ds.classes) == 10 and "t-shirt" in ds.classes
    image, label = ds[0]
    assert image.mode == "RGB" and 0 <= label < 10


def test_clothing_bad_split():
    with pytest.raises(ValueError, match="train, validation, test"):
        load_clothing("valid")


def test_clothing_offline_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match=r"(?s)clothing-small.*clothing-dataset-small.*train/\.\.\."):
        load_clothing("train")


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_ship_with_the_packages(name):
    image = load_photo(name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3 and min(image.shape[:2]) >= 300


def test_unknown_photo():
    with pytest.raises(ValueError, match="chelsea"):
        load_photo("lena")

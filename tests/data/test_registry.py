"""The cache, checksums, downloads and offline errors of dlbook.data.registry.

Downloads are tested against a local HTTP server on 127.0.0.1 serving files whose
checksums the test knows, including a corrupt one.
"""

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from dlbook.data import registry
from dlbook.data.registry import Archive, DatasetUnavailable, Entry, RemoteFile, fetch, tree_hash


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _entry(base_url: str, files: dict[str, bytes], name="toy", **kw) -> Entry:
    return Entry(
        name=name, title="a toy dataset", kind="dataset", description="", size="", licence="",
        source="https://example.org/toy", loader="none", folder=f"{name}-folder",
        files=tuple(RemoteFile(f"raw/{n}", base_url + n, _sha(data)) for n, data in files.items()), **kw,
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("DLBOOK_DATA", str(home))
    monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    return home


FILES = {"a.bin": b"first file " * 100, "b.txt": b"second\n" * 50}


def test_download_verifies_and_caches(cache, http_server):
    served, url = http_server
    for name, data in FILES.items():
        (served / name).write_bytes(data)
    entry = _entry(url, FILES)
    folder = fetch(entry)
    assert folder == cache / "toy-folder"
    for name, data in FILES.items():
        assert (folder / "raw" / name).read_bytes() == data
    # Second call: nothing is downloaded (the server's files could vanish).
    for name in FILES:
        (served / name).unlink()
    assert fetch(entry) == folder
    assert not list(folder.rglob("*.tmp")) and not [p for p in folder.rglob("*") if p.name.startswith("tmp")]


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_a_damaged_file_is_detected_and_fetched_again(cache, http_server, damage):
    served, url = http_server
    for name, data in FILES.items():
        (served / name).write_bytes(data)
    entry = _entry(url, FILES)
    folder = fetch(entry)
    target = folder / "raw" / "a.bin"
    if damage == "corrupt":
        target.write_bytes(b"X" + FILES["a.bin"][1:])
    else:
        target.write_bytes(FILES["a.bin"][:10])
    fetch(entry)
    assert target.read_bytes() == FILES["a.bin"]


def test_a_corrupt_download_is_an_error_and_leaves_nothing(cache, http_server):
    served, url = http_server
    (served / "a.bin").write_bytes(b"not what the checksum says")
    entry = _entry(url, {"a.bin": FILES["a.bin"]})
    with pytest.raises(DatasetUnavailable, match="corrupt") as err:
        fetch(entry)
    assert "raw/a.bin" in str(err.value)
    assert not (cache / "toy-folder" / "raw" / "a.bin").exists()


def test_offline_missing_file_names_dataset_files_and_folder(cache, monkeypatch):
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    entry = _entry("https://example.invalid/", FILES)
    with pytest.raises(DatasetUnavailable) as err:
        fetch(entry)
    msg = str(err.value)
    assert "'toy'" in msg and "DLBOOK_OFFLINE" in msg
    assert str(cache / "toy-folder") in msg and "raw/a.bin" in msg and "raw/b.txt" in msg
    assert "https://example.org/toy" in msg


def test_unreachable_server_is_a_clear_error(cache, http_server):
    _, url = http_server  # serves an empty folder: every file is a 404
    with pytest.raises(DatasetUnavailable, match="download failed"):
        fetch(_entry(url, FILES))


def test_a_read_only_mirror_is_only_read(tmp_path, monkeypatch, http_server):
    """Files that are present and verify are read without creating or writing anything."""
    _, url = http_server
    entry = _entry(url, FILES)
    mirror = tmp_path / "mirror"
    for name, data in FILES.items():
        p = mirror / "toy-folder" / "raw" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    monkeypatch.setenv("DLBOOK_DATA", str(mirror))
    written = []
    monkeypatch.setattr(registry, "_download", lambda *a: written.append(a))
    monkeypatch.setattr(registry.tempfile, "mkstemp", lambda *a, **k: written.append(a))
    assert fetch(entry) == mirror / "toy-folder"
    assert written == []


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _archive_entry(url: str, content: dict[str, bytes]) -> Entry:
    staged = Path(__import__("tempfile").mkdtemp())
    for rel, data in content.items():
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        (staged / rel).write_bytes(data)
    digest, n = tree_hash(staged, ("train", "test"))
    return Entry(
        name="imgs", title="toy images", kind="dataset", description="", size="", licence="",
        source="https://example.org/imgs", loader="none", folder="imgs",
        archive=Archive(url=url, strip="imgs-master/", members=("train", "test"), tree_hash=digest, n_files=n),
    )


CONTENT = {"train/cat/1.jpg": b"cat one", "train/dog/2.jpg": b"dog two", "test/cat/3.jpg": b"cat three"}


def test_archive_is_unpacked_checked_and_repaired(cache, http_server):
    served, url = http_server
    zipped = {f"imgs-master/{k}": v for k, v in CONTENT.items()} | {"imgs-master/README.md": b"ignored"}
    (served / "master.zip").write_bytes(_zip(zipped))
    entry = _archive_entry(url + "master.zip", CONTENT)
    folder = fetch(entry)
    assert (folder / "train" / "dog" / "2.jpg").read_bytes() == b"dog two"
    assert not (folder / "README.md").exists()
    (folder / "test" / "cat" / "3.jpg").write_bytes(b"cat thr")  # truncated
    fetch(entry)
    assert (folder / "test" / "cat" / "3.jpg").read_bytes() == b"cat three"


def test_an_unchanged_tree_is_hashed_once_and_a_changed_one_again(cache, http_server, monkeypatch):
    served, url = http_server
    zipped = {f"imgs-master/{k}": v for k, v in CONTENT.items()}
    (served / "master.zip").write_bytes(_zip(zipped))
    entry = _archive_entry(url + "master.zip", CONTENT)
    folder = fetch(entry)
    hashed = []
    real = registry.tree_hash
    monkeypatch.setattr(registry, "tree_hash", lambda *a: hashed.append(a) or real(*a))
    fetch(entry)
    fetch(entry)
    assert len(hashed) <= 1  # at most once more (the first fetch hashed the download)
    n = len(hashed)
    photo = folder / "train" / "cat" / "1.jpg"
    photo.write_bytes(b"cat 1ne")  # same size, new content and mtime
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    monkeypatch.setattr(registry, "offline", lambda: True)
    with pytest.raises(DatasetUnavailable, match="imgs"):
        fetch(entry)
    assert len(hashed) == n + 1


def test_archive_with_wrong_content_is_rejected(cache, http_server):
    served, url = http_server
    bad = {f"imgs-master/{k}": v for k, v in CONTENT.items()} | {"imgs-master/train/cat/extra.jpg": b"?"}
    (served / "master.zip").write_bytes(_zip(bad))
    with pytest.raises(DatasetUnavailable, match="tree hash"):
        fetch(_archive_entry(url + "master.zip", CONTENT))
    assert not (cache / "imgs" / "train").exists()


def test_archive_member_escaping_the_folder_is_rejected(cache, http_server):
    served, url = http_server
    evil = {"imgs-master/train/../../evil.txt": b"x", "imgs-master/train/a.jpg": b"a"}
    (served / "master.zip").write_bytes(_zip(evil))
    with pytest.raises(DatasetUnavailable, match="escapes"):
        fetch(_archive_entry(url + "master.zip", {"train/a.jpg": b"a"}))
    assert not (cache.parent / "evil.txt").exists()


def test_registry_lookup_and_uniqueness():
    assert registry.get("cora").folder == "Planetoid/Cora/raw"
    with pytest.raises(KeyError, match="registry holds"):
        registry.get("imagenet-42")
    with pytest.raises(ValueError, match="different entry"):
        registry.register(Entry(name="cora", title="x", kind="dataset", description="", size="", licence="", source="", loader=""))


def test_every_entry_is_complete():
    for entry in registry.REGISTRY.values():
        assert entry.kind in ("dataset", "model")
        assert entry.title and entry.size and entry.licence and entry.source and entry.loader
        assert entry.folder is not None or entry.package, entry.name
        for f in entry.files:
            assert f.url.startswith("https://") and f.hash.split(":")[0] in ("sha256", "md5"), f


def test_fetch_of_a_packaged_dataset_is_an_error():
    with pytest.raises(ValueError, match="ships inside the package"):
        fetch("photos")


def test_usage_finds_the_chapters_that_call_a_loader(tmp_path):
    book = tmp_path / "book"
    (book / "a").mkdir(parents=True)
    (book / "a" / "one.md").write_text("x = load_planetoid('Cora')\n")
    (book / "a" / "two.md").write_text("split = load_mnist()\n g = load_planetoid(name)  # CiteSeer\n")
    (book / "three.md").write_text("we talk about load_mnist without calling it\n")
    used = registry.usage(book)
    assert used["cora"] == ["book/a/one"] and used["citeseer"] == ["book/a/two"]
    assert used["mnist"] == ["book/a/two"] and used["fashion-mnist"] == []
    assert used["tiny-shakespeare"] == []


def test_catalogue_lists_datasets_then_models():
    rows = registry.catalogue(Path(__file__).resolve().parents[2] / "book")
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=lambda k: k != "dataset") and "model" in kinds
    lite = next(r for r in rows if r["name"] == "efficientnet-lite0")
    assert "book/interpretability/gradcam" in lite["chapters"] and lite["licence"]


def test_tree_hash_of_file_members(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"one")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_bytes(b"two")
    digest, n = tree_hash(tmp_path, ("a.npy", "d"))
    assert n == 2
    (tmp_path / "a.npy").write_bytes(b"on")
    assert tree_hash(tmp_path, ("a.npy", "d"))[0] != digest  # a changed file changes the hash
    assert tree_hash(tmp_path, ("missing.npy",))[1] == 0


def test_unpinned_archive_of_files_is_checked_by_count(cache, http_server):
    """An archive registered without a tree hash: its files must all arrive, and a lost one is fetched again."""
    served, url = http_server
    (served / "flat.zip").write_bytes(_zip({"x.npy": b"x", "y.json": b"{}", "extra.txt": b"?"}))
    entry = Entry(
        name="flat", title="flat files", kind="dataset", description="", size="", licence="",
        source="https://example.org/flat", loader="none", folder="flat",
        archive=Archive(url=url + "flat.zip", strip="", members=("x.npy", "y.json"), tree_hash=None, n_files=2),
    )
    folder = fetch(entry)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["x.npy", "y.json"]
    (folder / "y.json").unlink()
    fetch(entry)
    assert (folder / "y.json").read_bytes() == b"{}"
    short = Entry(**{**entry.__dict__, "name": "flat2", "folder": "flat2",
                     "archive": Archive(url=url + "flat.zip", strip="", members=("x.npy", "z.npy"), tree_hash=None, n_files=2)})
    with pytest.raises(DatasetUnavailable, match=r"(?s)1 of the expected files.*z\.npy"):
        fetch(short)


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), (" on ", True), ("yes", True),
                                             ("", False), ("0", False), ("Off", False), ("false", False)])
def test_offline_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("DLBOOK_OFFLINE", value)
    assert registry.offline() is expected


def test_an_unknown_offline_value_is_an_error(monkeypatch):
    monkeypatch.setenv("DLBOOK_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="DLBOOK_OFFLINE='maybe' is neither true"):
        registry.offline()


def test_fetch_of_a_non_entry_is_a_type_error():
    with pytest.raises(TypeError, match="entry must be a registry Entry or the name of one, got int 123"):
        fetch(123)


def test_stale_downloads_are_removed_and_fresh_ones_kept(tmp_path, monkeypatch):
    import os
    import time

    folder = tmp_path / "cache" / "tinyshakespeare"
    stale = folder / ".download-abc"
    fresh = folder / ".download-new"
    for d in (stale, fresh):
        (d / "unpacked").mkdir(parents=True)
        (d / "unpacked" / "part").write_bytes(b"x" * 10)
    part = folder / "input.txt.download"
    part.write_bytes(b"half")
    old = time.time() - 2 * registry.STALE_AFTER
    for p in (stale, stale / "unpacked", stale / "unpacked" / "part", part):
        os.utime(p, (old, old))
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(registry.DatasetUnavailable):
        fetch("tiny-shakespeare")  # missing: the fetch attempt cleans up first
    assert not stale.exists() and not part.exists() and fresh.exists()

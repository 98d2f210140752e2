import gzip
import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from dlbook.data import load_mnist, mnist, read_idx, registry


def test_quick_profile_trains_on_a_subset_and_tests_on_the_official_test_set(data_home):
    a = load_mnist("quick")
    b = load_mnist("quick")
    assert a.x_train.shape == (5000, 1, 28, 28) and a.x_test.shape == (10000, 1, 28, 28)
    assert a.x_train.dtype == torch.float32 and 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert a.y_train.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.bincount(a.y_train).tolist() == [500] * 10  # stratified
    # the official test labels, in the file's order (class counts of the MNIST test set)
    assert torch.bincount(a.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert not torch.equal(load_mnist("quick", seed=1).y_train, a.y_train)
    assert "official test set" in a.source and "5,000 train / 10,000 test" in repr(a)


def test_training_subset_never_holds_a_test_image(data_home):
    """The quick subset is drawn from the training file only: no test image is in it."""
    a = load_mnist("quick", n_train=2000, n_test=2000)
    train = {bytes((x * 255).round().to(torch.uint8).numpy()) for x in a.x_train}
    test = {bytes((x * 255).round().to(torch.uint8).numpy()) for x in a.x_test}
    assert len(train & test) <= 2  # MNIST has a handful of exact duplicate blank-ish digits at most


def test_loader_matches_torchvision_on_the_mirror(data_home, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    ours = load_mnist("full", n_test=None)
    raw = {}
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw[name] = tmp_path / name
        raw[name].write_bytes(gzip.decompress((data_home / "MNIST" / "raw" / f"{name}.gz").read_bytes()))
    assert torch.equal((ours.x_test[:, 0] * 255).round().to(torch.uint8), read_image_file(str(raw["t10k-images-idx3-ubyte"])))
    assert torch.equal(ours.y_test, read_label_file(str(raw["t10k-labels-idx1-ubyte"])))
    assert len(ours.x_train) == 60000


def test_fashion_mnist_has_its_class_names(data_home):
    from dlbook.data import FASHION_CLASSES, load_fashion_mnist

    f = load_fashion_mnist("quick", n_train=1000, n_test=500, seed=3)
    assert f.x_train.shape == (1000, 1, 28, 28) and f.x_test.shape == (500, 1, 28, 28)
    assert f.classes[0] == "T-shirt/top" and f.classes[9] == "Ankle boot" and tuple(f.classes) == FASHION_CLASSES
    assert torch.bincount(f.y_test).tolist() == [50] * 10
    # Fashion-MNIST is not MNIST: the two loaders read different files
    assert not torch.equal(f.x_test, load_mnist("quick", n_train=1000, n_test=500, seed=3).x_test)


@pytest.mark.parametrize("kw", [dict(n_train=5), dict(n_train=60001), dict(n_test=10001), dict(n_train=2.5),
                                dict(n_train=True)])
def test_bad_sizes_are_errors(kw):
    with pytest.raises(ValueError, match="n_t(rain|est) must be an integer between 10"):
        load_mnist("quick", **kw)


def test_unknown_profile_is_an_error():
    with pytest.raises(ValueError, match="'quick' or 'full'"):
        load_mnist("medium")


def _write_idx(path, array: np.ndarray, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_read_idx_agrees_with_torchvision(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    img_raw = _write_idx(tmp_path / "img-idx3-ubyte", images, compress=False)
    lab_raw = _write_idx(tmp_path / "lab-idx1-ubyte", labels, compress=False)
    np.testing.assert_array_equal(read_idx(img_raw), read_image_file(str(img_raw)).numpy())
    np.testing.assert_array_equal(read_idx(lab_raw), read_label_file(str(lab_raw)).numpy())
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "img.gz", images)), images)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="promises 5 values"):
        read_idx(tmp_path / "short")


def _serve_mnist(served, url, monkeypatch, source):
    """Serve the IDX files of ``source`` and point the registry entry at them."""
    for name in mnist._PARTS:
        (served / name).write_bytes((source / name).read_bytes())
    files = tuple(replace(f, url=url + f.path) for f in mnist.MNIST.files)
    monkeypatch.setattr(mnist, "MNIST", replace(mnist.MNIST, files=files))


def test_download_checks_the_decompressed_content(data_home, tmp_path, monkeypatch, http_server):
    """A reader's download, end to end: the real files, fetched over HTTP into an empty cache."""
    served, url = http_server
    _serve_mnist(served, url, monkeypatch, data_home / "MNIST" / "raw")
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    split = load_mnist("full", n_test=100)
    assert split.x_train.shape == (60000, 1, 28, 28) and split.x_test.shape == (100, 1, 28, 28)
    assert not list((tmp_path / "cache").rglob("*.part")) and not list((tmp_path / "cache").rglob(".download-*"))


def test_a_recompressed_file_verifies_and_a_truncated_one_is_fetched_again(
    data_home, tmp_path, monkeypatch, http_server
):
    """Same content, other gzip bytes: still valid. A truncated gzip: corrupt, so downloaded again."""
    served, url = http_server
    _serve_mnist(served, url, monkeypatch, data_home / "MNIST" / "raw")
    cache = tmp_path / "cache" / "MNIST" / "raw"
    cache.mkdir(parents=True)
    for name in mnist._PARTS:
        content = gzip.decompress((data_home / "MNIST" / "raw" / name).read_bytes())
        (cache / name).write_bytes(gzip.compress(content, compresslevel=1))
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    assert load_mnist("quick", n_train=100, n_test=100).x_train.shape == (100, 1, 28, 28)
    truncated = cache / "t10k-labels-idx1-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:-20])
    with pytest.raises(registry.DatasetUnavailable, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist("quick")  # offline: corrupt, and nothing may be downloaded
    monkeypatch.delenv("DLBOOK_OFFLINE")
    assert len(load_mnist("quick").y_test) == 10000  # online: fetched again and verified
    assert truncated.read_bytes() == (served / truncated.name).read_bytes()


def test_a_download_with_the_wrong_content_is_refused(data_home, tmp_path, monkeypatch, http_server):
    served, url = http_server
    _serve_mnist(served, url, monkeypatch, data_home / "MNIST" / "raw")
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    with pytest.raises(registry.DatasetUnavailable, match="corrupt"):
        load_mnist("quick")
    assert not (tmp_path / "cache" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()


def test_well_formed_files_of_the_wrong_size_are_not_mnist(tmp_path, monkeypatch):
    """Files in MNIST's format that verify (a test's own checksums) but are not the benchmark."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    files = []
    for name, arr in zip(mnist._PARTS, [rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12),
                                         rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)]):
        data = gzip.decompress(_write_idx(folder / name, arr).read_bytes())
        files.append(registry.RemoteFile(name, "https://example.invalid/" + name,
                                         "md5:" + hashlib.md5(data).hexdigest(), gunzip=True))
    monkeypatch.setattr(mnist, "MNIST", replace(mnist.MNIST, files=tuple(files)))
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"does not hold MNIST.*\(12, 28, 28\)"):
        load_mnist("full")


def test_read_idx_names_a_truncated_gzip(tmp_path):
    path = _write_idx(tmp_path / "x-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match="not a complete gzip file"):
        read_idx(path)


def test_full_profile_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(registry.DatasetUnavailable, match=r"(?s)'mnist'.*MNIST/raw.*train-images-idx3-ubyte.gz"):
        load_mnist("full")

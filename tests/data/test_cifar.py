"""CIFAR-10's loader on small files in the real on-disk format (no copy exists offline)."""

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from dlbook.data import cifar, load_cifar10, registry


def _batch(rng, n):
    return {b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f.png"] * n}


def _archive(batches, extra=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, obj in {**batches, **(extra or {})}.items():
            data = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def served(http_server, tmp_path, monkeypatch):
    folder, url = http_server

    def serve(data):
        (folder / "cifar-10-python.tar.gz").write_bytes(data)
        f = replace(cifar.CIFAR10.files[0], url=url + "cifar-10-python.tar.gz",
                    hash="md5:" + hashlib.md5(data).hexdigest())
        monkeypatch.setattr(cifar, "CIFAR10", replace(cifar.CIFAR10, files=(f,)))
        monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "cache"))
        monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    return serve


def test_reads_the_real_format(served):
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, 20) for i in range(1, 6)} | {"test_batch": _batch(rng, 30)}
    served(_archive(batches, {"batches.meta": {b"label_names": [c.encode() for c in cifar.CIFAR10_CLASSES]}}))
    split = load_cifar10("full")
    assert split.x_train.shape == (100, 3, 32, 32) and split.x_test.shape == (30, 3, 32, 32)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    # the row layout is 1,024 red, then green, then blue values, row-major (the dataset's page)
    first = batches["data_batch_1"][b"data"][0]
    np.testing.assert_allclose(split.x_train[0, 1, 0, 5].item() * 255, first[1024 + 5], atol=1e-3)
    assert split.y_test.tolist() == batches["test_batch"][b"labels"]
    assert split.classes[3] == "cat"
    sub = load_cifar10("full", n_train=20, n_test=10)
    assert len(sub.y_train) == 20 and len(sub.y_test) == 10


def test_a_batch_that_asks_for_code_is_refused(served):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/dlbook-cifar-pwned",))

    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, 2) for i in range(1, 6)} | {"test_batch": {b"data": Evil()}}
    served(_archive(batches))
    with pytest.raises(pickle.UnpicklingError, match="may only hold arrays, but it asks for posix.system"):
        load_cifar10("full")
    assert not os.path.exists("/tmp/dlbook-cifar-pwned")


def test_a_missing_batch_and_the_quick_profile_are_clear_errors(served):
    rng = np.random.default_rng(0)
    served(_archive({f"data_batch_{i}": _batch(rng, 2) for i in range(1, 5)} | {"test_batch": _batch(rng, 2)}))
    with pytest.raises(registry.DatasetUnavailable, match="has no data_batch_5"):
        load_cifar10("full")
    with pytest.raises(ValueError, match="full profile only"):
        load_cifar10("quick")


def test_offline_says_where_the_archive_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(registry.DatasetUnavailable, match=r"(?s)'cifar10'.*cifar10/cifar-10-python\.tar\.gz"):
        load_cifar10("full")

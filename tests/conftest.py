"""Shared fixtures: a writable copy of the dataset mirror, and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (Hypothesis): derandomized by default, so that every run, in CI or
# here, draws the same examples and a failure reproduces; no example database is written.
# HYPOTHESIS_PROFILE=explore draws fresh examples each run (and may find new failures).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "datasets"  # ../shared/datasets beside the checkout


@pytest.fixture(scope="session")
def mirror_copy(tmp_path_factory) -> Path:
    """A writable data cache holding every dataset the quick profile uses, verified.

    ``DLBOOK_DATA`` when it is set (``.ci/run`` points it at a writable copy of the offline
    mirror; GitHub's runner at a cached folder), otherwise a fresh copy of
    ``../shared/datasets`` if it is there, otherwise an empty folder. Whatever is missing is
    then downloaded from its source, unless ``DLBOOK_OFFLINE`` is set, in which case a
    missing file fails the session with the message that says where it belongs.
    """
    if os.environ.get("DLBOOK_DATA"):
        home = Path(os.environ["DLBOOK_DATA"])
    else:
        home = tmp_path_factory.mktemp("dlbook-data")
        if MIRROR.is_dir():
            shutil.copytree(MIRROR, home, dirs_exist_ok=True)
            for path in home.rglob("*"):  # the mirror is read-only; the copy must not be
                path.chmod(path.stat().st_mode | 0o200)
    from dlbook.data import REGISTRY, fetch

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLBOOK_DATA", str(home))
        for entry in REGISTRY.values():
            if entry.folder is not None and "quick" in entry.profiles:
                fetch(entry)
    return home


@pytest.fixture
def data_home(mirror_copy, monkeypatch) -> Path:
    """Point ``DLBOOK_DATA`` at the mirror copy and forbid downloads for this test."""
    monkeypatch.setenv("DLBOOK_DATA", str(mirror_copy))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    return mirror_copy


@pytest.fixture
def http_server(tmp_path):
    """Serve a temporary folder on 127.0.0.1; yields ``(folder, base_url)``."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

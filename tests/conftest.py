"""Shared fixtures: a writable copy of the dataset mirror, and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "datasets"  # ../shared/datasets beside the checkout


@pytest.fixture(scope="session")
def mirror_copy(tmp_path_factory) -> Path:
    """A writable folder holding the offline dataset mirror.

    ``DLBOOK_DATA`` when it is set (``.ci/run`` points it at a writable copy), otherwise a
    fresh copy of ``../shared/datasets`` made once per session.
    """
    if os.environ.get("DLBOOK_DATA"):
        return Path(os.environ["DLBOOK_DATA"])
    if not MIRROR.is_dir():
        pytest.skip(f"no dataset mirror: set DLBOOK_DATA or put the mirror at {MIRROR}")
    dest = tmp_path_factory.mktemp("dlbook-data")
    shutil.copytree(MIRROR, dest, dirs_exist_ok=True)
    for path in dest.rglob("*"):  # the mirror is read-only; the copy must not be
        path.chmod(path.stat().st_mode | 0o200)
    return dest


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

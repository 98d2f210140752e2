"""Shared fixtures (a writable copy of the dataset mirror, a local HTTP server) and the run's order.

* ``-n auto`` (pyproject.toml) starts ``DLBOOK_JOBS`` pytest-xdist workers; each worker
  gets its share of the cores (``DLBOOK_THREADS``), so that workers do not fight.
* The unit tests run first, then the chapters (``tests/book/test_chapters.py``), then the
  book build and the browser tests: the book does not share the cores with unit tests.
* At the end, a table of the run's stages (unit tests, chapters, build, browser tests) and
  one of the chapters' measurements; the stages also go to ``artifacts/pytest-stages.json``
  (``.ci/run`` prints them with its own).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path

# Before anything imports torch or NumPy: an xdist worker's share of the cores.
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("DLBOOK_THREADS"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["DLBOOK_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _workers))

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

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
STAGES = REPO / "artifacts" / "pytest-stages.json"


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` means DLBOOK_JOBS workers (by default one per core, one per 2 GiB)."""
    from dlbook.config import jobs

    return jobs()


def _stage(item_or_nodeid) -> str:
    nodeid = getattr(item_or_nodeid, "nodeid", item_or_nodeid)
    if not nodeid.startswith("tests/book/"):
        return "unit tests"
    if nodeid.startswith("tests/book/test_chapters.py"):
        return "chapters"
    if nodeid.startswith("tests/book/test_build.py"):
        return "book build"
    return "browser tests"


_ORDER = {"unit tests": 0, "chapters": 1, "book build": 2, "browser tests": 3}


def pytest_collection_modifyitems(config, items):
    """Unit tests first, then the chapters, the build and the browser tests (stable)."""
    items.sort(key=lambda item: _ORDER[_stage(item)])


class _Stages:
    """Start and end of each stage, and the chapters' rows, from the test reports."""

    def __init__(self):
        self.spans: dict[str, list[float]] = {}
        self.counts: dict[str, int] = {}
        self.rows: list[dict] = []
        self.start = time.time()

    def add(self, report) -> None:
        start, stop = getattr(report, "start", 0), getattr(report, "stop", 0)
        if not start:
            return
        stage = _stage(report.nodeid)
        span = self.spans.setdefault(stage, [start, stop])
        span[0], span[1] = min(span[0], start), max(span[1], stop)
        if report.when == "call":
            self.counts[stage] = self.counts.get(stage, 0) + 1
            for key, value in report.user_properties:
                if key == "dlbook_chapter":
                    self.rows.append(value)


_STAGES = _Stages()


def pytest_runtest_logreport(report):
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller, or a run without xdist
        _STAGES.add(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if os.environ.get("PYTEST_XDIST_WORKER") or not _STAGES.spans:
        return
    write = terminalreporter.write_line
    if _STAGES.rows:
        from dlbook.bookexec import format_table

        terminalreporter.section("chapters (wall time, CPU time, peak memory, threads)")
        for line in format_table(sorted(_STAGES.rows, key=lambda r: r["chapter"])).splitlines():
            write(line)
    terminalreporter.section("stages of this run")
    stages = []
    for name in sorted(_STAGES.spans, key=_ORDER.get):
        start, stop = _STAGES.spans[name]
        stages.append({"stage": name, "tests": _STAGES.counts.get(name, 0),
                       "start": start, "seconds": round(stop - start, 1)})
        write(f"{name:<16}{_STAGES.counts.get(name, 0):>6} tests {stop - start:>9.1f} s")
    total = time.time() - _STAGES.start
    write(f"{'whole run':<16}{'':>12} {total:>9.1f} s (the stages may overlap by a test or two)")
    STAGES.parent.mkdir(parents=True, exist_ok=True)
    STAGES.write_text(json.dumps({"total_seconds": round(total, 1), "stages": stages}, indent=1) + "\n")


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
def one_thread():
    """Torch on one thread for the test: tiny tensors on a shared CPU run
    faster so (measured: a 100-step CoordConv fit took 30 s on two threads
    of a busy machine, 2 s on one). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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

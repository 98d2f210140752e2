"""Build the whole book once per test session, executing every chapter exactly once.

The build goes to ``_build/test`` (wiped first) with its own, empty execution cache, so a
stale cache can never hide a failing chapter; ``-W`` makes every warning (a failing cell
included: ``nb_execution_raise_on_error``) fail the build. The browser tests then read the
built site from there; their screenshots go to ``artifacts/screenshots``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "_build" / "test"
ARTIFACTS = REPO / "artifacts"


@dataclass
class Build:
    returncode: int
    log: str
    html: Path
    seconds: float


@pytest.fixture(scope="session")
def built_book(mirror_copy) -> Build:
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["cache"] = str(BUILD / ".jupyter_cache")
    (BUILD / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "DLBOOK_DATA": str(mirror_copy), "DLBOOK_OFFLINE": "1"}
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(REPO), "--path-output", str(BUILD), "--config", str(BUILD / "_config.yml"),
           "--toc", str(REPO / "_toc.yml"), "-W", "-n", "--keep-going", "--all"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    (BUILD / "build.log").write_text(log)
    return Build(proc.returncode, log, BUILD / "_build" / "html", seconds)


@pytest.fixture(scope="session")
def site(built_book):
    """The built site served on 127.0.0.1; skips the browser tests if the build failed."""
    if built_book.returncode != 0:
        pytest.fail("the book did not build; see test_book_builds_without_warnings")
    sys.path.insert(0, str(REPO / "tools"))
    from screenshot import serve

    server, base = serve(built_book.html)
    yield base
    server.shutdown()

"""Execute every chapter once per test run, each as its own pytest item, then build the book.

* ``test_chapters.py`` has one item per chapter, named by its page:
  ``pytest tests/book -k graphs/gat`` executes and checks that chapter alone.
* The chapters a run needs (those of the selected chapter items; all of them as soon as a
  build or site test is selected) execute ``DLBOOK_JOBS`` at a time across the whole run,
  pytest-xdist workers included, each kernel with ``DLBOOK_THREADS`` threads
  (:mod:`dlbook.bookexec`). Each chapter executes exactly once: the process that claims it
  (an exclusive file in the run's folder) executes it and writes its result; the items that
  need it wait for that result. Executed notebooks go into this run's own, fresh
  jupyter-cache (``_build/test/run-<id>/.jupyter_cache``), with their measurements.
* A failing cell fails its chapter's item with the chapter, the cell, its source and the
  traceback; a chapter that takes longer than ``DLBOOK_CHAPTER_TIMEOUT`` is stopped and fails.
* The build (``built_book``) runs once per run, when every chapter has succeeded:
  ``jupyter-book build -W -n --keep-going --all`` into ``_build/test`` with that cache, so
  myst-nb takes every notebook from the cache and executes none (``test_build.py`` checks
  it). The browser tests then read the built site; screenshots go to
  ``artifacts/screenshots``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from dlbook import bookexec, config

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "_build" / "test"
ARTIFACTS = REPO / "artifacts"


def toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return files


@cache
def notebook_pages() -> tuple[str, ...]:
    """The pages of the table of contents that are notebooks, in its order."""
    pages = []
    for f in toc_files():
        try:
            bookexec.read_notebook(REPO / f"{f}.md")
        except bookexec.NotANotebook:
            continue
        pages.append(f)
    return tuple(pages)


def chapter_id(page: str) -> str:
    return page.removeprefix("book/")


def _book_config() -> dict:
    return yaml.safe_load((REPO / "_config.yml").read_text())


@dataclass
class Build:
    returncode: int
    log: str
    html: Path
    seconds: float
    run: str = ""


class BookRun:
    """This test run's chapters: who executes which, and their results.

    One per process; the processes of a run (xdist workers) share its folder.
    """

    def __init__(self, run: str, data: Path):
        self.id = run
        self.dir = BUILD / f"run-{run}"
        self.data = data
        self.total_jobs = config.jobs()
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        self.local_jobs = max(1, self.total_jobs // workers)
        self.threads = config.threads(self.total_jobs)
        self.timeout = bookexec.chapter_timeout()
        execute = _book_config().get("execute", {})
        self.cell_timeout = execute.get("timeout")
        self.in_temp = bool(execute.get("run_in_temp", False))
        self.allow_errors = bool(execute.get("allow_errors", False))
        self._queue: list[str] = []
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._setup()

    @property
    def cache(self) -> Path:
        return self.dir / ".jupyter_cache"

    def _setup(self) -> None:
        """Make the run's folder, once per run; the first process wipes earlier runs."""
        BUILD.mkdir(parents=True, exist_ok=True)
        with bookexec.file_lock(BUILD / ".setup.lock"):
            if self.dir.exists():
                return
            for entry in BUILD.iterdir():
                if entry.name == ".setup.lock":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            (self.dir / "claims").mkdir(parents=True)
            (self.dir / "results").mkdir()

    def _path(self, kind: str, page: str) -> Path:
        return self.dir / kind / (page.replace("/", "__") + ".json")

    def need(self, pages) -> None:
        """Queue pages for execution here (those another process claims are skipped)."""
        with self._lock:
            self._queue += [p for p in pages if p not in self._queue]
            while len(self._workers) < self.local_jobs:
                t = threading.Thread(target=self._work, daemon=True, name="book-run")
                self._workers.append(t)
                t.start()

    def _next(self) -> str | None:
        with self._lock:
            while self._queue and not self._stop.is_set():
                page = self._queue.pop(0)
                try:
                    fd = os.open(self._path("claims", page), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                os.write(fd, f"{os.getpid()}\n".encode())
                os.close(fd)
                return page
            return None

    def _work(self) -> None:
        while (page := self._next()) is not None:
            try:
                result = self._execute(page)
            except Exception as err:  # noqa: BLE001 - a waiting item must get an answer
                result = {"ok": False, "row": None, "failure": f"{page}: {type(err).__name__}: {err}"}
            out = self._path("results", page)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(result))
            tmp.replace(out)

    def _execute(self, page: str) -> dict:
        ex = bookexec.execute(
            REPO / f"{page}.md",
            root=REPO,
            chapter=page,
            threads=self.threads,
            jobs=self.total_jobs,
            cell_timeout=self.cell_timeout,
            timeout=self.timeout,
            in_temp=self.in_temp,
            allow_errors=self.allow_errors,
            env={"DLBOOK_DATA": str(self.data), "DLBOOK_OFFLINE": "1"},
            run=self.id,
            executor="pytest",
        )
        if ex.ok:
            bookexec.cache_execution(self.cache, ex)
        return {
            "ok": ex.ok,
            "row": ex.row(),
            "failure": None if ex.ok else ex.failure.describe(page),
        }

    def result(self, page: str) -> dict:
        """Wait for a page's result, whichever process executes it."""
        out, claim = self._path("results", page), self._path("claims", page)
        self.need([page])
        while not out.exists():
            if claim.exists() and time.time() - claim.stat().st_mtime > self.timeout + 300:
                return {"ok": False, "row": None, "failure": (
                    f"{page}: claimed by process {claim.read_text().strip()} "
                    f"{self.timeout + 300:.0f} s ago and still no result (did it die?)")}
            time.sleep(0.5)
        return json.loads(out.read_text())

    def close(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join()


def _run_id(config_) -> str:
    workerinput = getattr(config_, "workerinput", None)
    if workerinput is not None:
        return workerinput["testrunuid"]
    if not hasattr(config_, "_dlbook_run"):
        config_._dlbook_run = bookexec.new_run_id()
    return config_._dlbook_run


def _needed(session) -> list[str]:
    pages = notebook_pages()
    wanted = set()
    for item in session.items:
        if item.path.parent != Path(__file__).parent:
            continue
        callspec = getattr(item, "callspec", None)
        if getattr(item, "originalname", "") == "test_chapter" and callspec:
            wanted.add(callspec.params["page"])
        elif "built_book" in getattr(item, "fixturenames", ()):
            return list(pages)
    return [p for p in pages if p in wanted]


@pytest.fixture(scope="session")
def book_run(request, mirror_copy):
    run = BookRun(_run_id(request.config), mirror_copy)
    run.need(_needed(request.session))
    yield run
    run.close()


@pytest.fixture(scope="session")
def built_book(book_run) -> Build:
    html = BUILD / "_build" / "html"
    results = {page: book_run.result(page) for page in notebook_pages()}
    saved = book_run.dir / "build.json"
    with bookexec.file_lock(book_run.dir / "build.lock"):
        if saved.exists():  # another worker of this run built it
            data = json.loads(saved.read_text())
            return Build(**{**data, "html": Path(data["html"])})
        failed = [page for page, r in results.items() if not r["ok"]]
        if failed:
            build = Build(1, "The book was not built: these chapters failed (see their "
                          f"test_chapter items): {', '.join(failed)}", html, 0.0, book_run.id)
        else:
            build = _build(book_run, html)
        saved.write_text(json.dumps({**asdict(build), "html": str(build.html)}))
        return build


def _build(book_run: BookRun, html: Path) -> Build:
    for stale in ("_build", "_config.yml", "build.log", "status.json"):
        path = BUILD / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    cfg = _book_config()
    cfg["execute"]["cache"] = str(book_run.cache)
    (BUILD / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "DLBOOK_DATA": str(book_run.data), "DLBOOK_OFFLINE": "1",
           "DLBOOK_RUN": book_run.id}
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(REPO), "--path-output", str(BUILD), "--config", str(BUILD / "_config.yml"),
           "--toc", str(REPO / "_toc.yml"), "-W", "-n", "--keep-going", "--all"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    (BUILD / "build.log").write_text(log)
    status = html / "status.json"
    if status.exists():  # beside the run's other outputs, for scripts that look there
        shutil.copy(status, BUILD / "status.json")
    return Build(proc.returncode, log, html, seconds, book_run.id)


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

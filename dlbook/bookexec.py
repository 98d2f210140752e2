"""Execute the book's notebooks several at a time, measure each one, and cache the results.

Every chapter of the book is a notebook (MyST Markdown) executed when the book is built.
This module executes them ``DLBOOK_JOBS`` at a time, each kernel with ``DLBOOK_THREADS``
threads (:func:`dlbook.config.jobs`, :func:`dlbook.config.threads`), so that two kernels do
not fight over the same cores, and puts every executed notebook into the build's
jupyter-cache, where myst-nb (``execute_notebooks: cache``) finds it: nothing executes twice.
Notebooks are read with myst-nb's own reader, so the cache matches them by the same hash.

It serves three callers:

* the book build: :mod:`dlbook.sphinxext` executes every notebook missing from the cache
  before Sphinx reads the pages, so ``jupyter-book build .`` is parallel as it stands;
* the tests: ``tests/book`` executes each chapter as its own pytest item into a fresh cache,
  then builds the book from that cache;
* a person: ``python -m dlbook.bookexec book/graphs/gat.md`` executes and measures chapters
  exactly as the build does.

Each execution is measured for real: wall time; CPU time of the kernel and its children
(user + system, which hardly grows with the machine's load, unlike the wall time); peak
resident memory of the kernel and its children (sampled every 0.1 s and after every cell,
and never below the kernel's own high-water mark, ``VmHWM``); the profile, the device and the
threads. :data:`BUDGETS` holds each profile's budget, and :meth:`Execution.row` marks a
chapter that exceeds it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from dlbook import config
from dlbook.checks import check_int, check_number

GIB = 2**30


@dataclass(frozen=True)
class Budget:
    """What one chapter may take in a profile."""

    wall_s: (
        float  # seconds, on the profile's machine, with the build's threads
    )
    rss_gib: float  # peak memory of the kernel and its children (tree_memory), GiB

    def over(self, wall_s: float, cpu_s: float, rss_bytes: int) -> list[str]:
        """Which budgets a chapter exceeded: ``"time"``, ``"memory"``, both or neither.

        Time counts as over only when both the wall time and the CPU time exceed the
        budget: a busy machine stretches the wall time of a chapter, not its CPU time, and a
        kernel with several threads may use more CPU time than wall time.
        """
        over = []
        if min(wall_s, cpu_s) > self.wall_s:
            over.append("time")
        if rss_bytes > self.rss_gib * GIB:
            over.append("memory")
        return over


BUDGETS = {
    # A 2-core CPU running two chapters at once, one thread each; 2 GiB is what a Binder
    # session gets.
    "quick": Budget(wall_s=45.0, rss_gib=2.0),
    # One GPU and the real benchmark: an hour a chapter, 16 GiB of host memory (a GPU
    # runner has more; the GPU's own memory is not measured here).
    "full": Budget(wall_s=3600.0, rss_gib=16.0),
}
"""The budget of a chapter in each profile."""

TIMEOUTS = {"quick": 1800.0, "full": 6 * 3600.0}
"""Default time limit of a whole chapter (``DLBOOK_CHAPTER_TIMEOUT`` overrides it): a
guard against a hung kernel, far above the budget. It is wall time, which a busy machine
stretches: on a shared 2-core machine at a load of 20, chapters took five times their CPU
time, so a chapter within its 45 s budget may take four minutes there, and one over it ten.
Being over the budget is shown on the status page; only a hang should meet this limit."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def chapter_timeout(profile: str | None = None) -> float:
    """Seconds a whole chapter may run: ``DLBOOK_CHAPTER_TIMEOUT`` or the profile's default."""
    value = os.environ.get("DLBOOK_CHAPTER_TIMEOUT", "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not seconds > 0 or seconds == float("inf"):
            raise ValueError(
                "DLBOOK_CHAPTER_TIMEOUT must be a positive number of seconds, "
                f"got {value!r}"
            )
        return seconds
    return TIMEOUTS[profile or config.profile()]


class NotANotebook(ValueError):
    """The file is not a notebook myst-nb would execute (no jupytext front matter)."""


def read_notebook(path: str | Path, md_config=None, nb_config=None):
    """Read a chapter as myst-nb reads it in the build; return ``(notebook, nb_config)``.

    Args:
        path: a ``.md`` MyST notebook or an ``.ipynb`` file.
        md_config: myst-parser's configuration (the build's, inside Sphinx); the default
            reads the notebook's cells the same way.
        nb_config: myst-nb's configuration; returned updated with the notebook's own
            ``mystnb`` metadata, as myst-nb does.

    Raises:
        NotANotebook: if myst-nb would not read the file as a notebook.
    """
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    md_config = MdParserConfig() if md_config is None else md_config
    nb_config = NbParserConfig() if nb_config is None else nb_config
    reader = create_nb_reader(str(path), md_config, nb_config, text)
    if reader is None:
        raise NotANotebook(
            f"{path} is not a notebook (no jupytext front matter)"
        )
    nb = reader.read(text)
    # As myst_nb.sphinx_.Parser.parse: kernel aliases, then notebook-level configuration.
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel is not None and nb_config.kernel_rgx_aliases:
        for rgx, alias in nb_config.kernel_rgx_aliases.items():
            if re.fullmatch(rgx, kernel):
                nb.metadata["kernelspec"]["name"] = alias
                break
    if nb_config.metadata_key in nb.metadata:
        from myst_nb.core.utils import nb_node_to_dict

        overrides = nb_node_to_dict(nb.metadata[nb_config.metadata_key])
        overrides.pop("output_folder", None)
        nb_config = nb_config.copy(**overrides)
    return nb, nb_config


def excluded(path: str | Path, nb_config) -> bool:
    """Whether myst-nb's ``execution_excludepatterns`` keep the notebook from executing."""
    posix = PurePosixPath(Path(path).as_posix())
    return any(posix.match(p) for p in nb_config.execution_excludepatterns)


@dataclass
class Failure:
    """Why a chapter did not execute: the cell, where it is, and the error."""

    cell: (
        int | None
    )  # index among all cells of the notebook; None: no cell ran
    line: int | None  # line of the cell in the source file
    source: str  # the cell's code
    error: str  # "ValueError: ..." (the exception's last line)
    traceback: str  # without terminal colours

    def describe(self, chapter: str) -> str:
        """One message that names the chapter and the cell, then shows both."""
        where = (
            "before any cell ran" if self.cell is None else f"cell {self.cell}"
        )
        if self.line is not None:
            where += f" (line {self.line})"
        body = f"{chapter}: {where} failed: {self.error}"
        if self.source:
            bar = "-" * 60
            body += f"\n{bar}\n{self.source}\n{bar}"
        return body + f"\n{self.traceback}"


@dataclass
class Execution:
    """One executed chapter, its notebook with outputs, and what it took."""

    chapter: str  # the page: path without suffix, relative to the book's root
    path: Path
    notebook: Any  # nbformat.NotebookNode, executed
    wall_s: float
    cpu_s: float
    peak_rss: int  # bytes
    threads: int
    jobs: int
    profile: str
    device: str
    started: float  # epoch seconds
    load: tuple[
        float, float
    ]  # 1-minute load average at the start and at the end
    failure: Failure | None = None
    run: str = ""
    executor: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def row(self) -> dict:
        """The chapter's row of the status page and of ``status.json``."""
        budget = BUDGETS[self.profile]
        over = budget.over(self.wall_s, self.cpu_s, self.peak_rss)
        return {
            "chapter": self.chapter,
            "ok": self.ok,
            "error": None if self.ok else self.failure.error,
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "peak_rss_gib": round(self.peak_rss / GIB, 3),
            "threads": self.threads,
            "jobs": self.jobs,
            "profile": self.profile,
            "device": self.device,
            "budget_wall_s": budget.wall_s,
            "budget_rss_gib": budget.rss_gib,
            "over_budget": bool(over),
            "over": over,
            "measured": True,
            "executed_at": datetime.fromtimestamp(
                self.started, timezone.utc
            ).isoformat(timespec="seconds"),
            "load_avg_1min": [round(x, 2) for x in self.load],
            "cores": config.cores(),
            "run": self.run,
            "executor": self.executor,
            **self.extra,
        }


class _Sampler:
    """Samples the kernel's process tree: resident memory and CPU time."""

    def __init__(
        self, client, interval: float = 0.1, children_every: float = 1.0
    ):
        self.client = client
        self.interval = interval
        self.children_every = children_every
        self.peak = 0
        self.cpu = 0.0
        self._proc = None
        self._children: list = []
        self._children_at = 0.0
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _kernel(self):
        if self._proc is None:
            km = self.client.km
            try:
                pid = km.provisioner.process.pid
            except AttributeError:  # not started yet
                return None
            import psutil

            try:
                self._proc = psutil.Process(pid)
            except psutil.Error:
                return None
        return self._proc

    def sample(self, refresh_children: bool = False) -> None:
        import psutil

        with self._lock:
            proc = self._kernel()
            if proc is None:
                return
            now = time.monotonic()
            try:
                if (
                    refresh_children
                    or now - self._children_at > self.children_every
                ):
                    self._children = proc.children(recursive=True)
                    self._children_at = now
                t = proc.cpu_times()
                cpu = t.user + t.system + t.children_user + t.children_system
                hwm = _high_water_mark(proc.pid)
                memory = tree_memory(proc, self._children)
            except psutil.Error:
                return
            for child in self._children:
                try:
                    c = child.cpu_times()
                    cpu += c.user + c.system
                except psutil.Error:
                    pass
            self.peak = max(self.peak, memory, hwm)
            self.cpu = max(self.cpu, cpu)

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()


def tree_memory(proc, children) -> int:
    """The physical memory of a kernel and its child processes, in bytes.

    Alone, the kernel counts its resident set (RSS). With children, each
    process counts its proportional set size (PSS, from
    ``/proc/<pid>/smaps_rollup``): a page shared by k processes counts 1/k
    in each, so the sum is the memory the tree holds, as a cgroup limit such
    as Binder's counts it. Summed RSS would count the shared libraries
    (libtorch alone is hundreds of MB) once per process. The kernel's own RSS
    is a floor; where PSS is unreadable, RSS stands in.
    """
    import psutil

    rss = proc.memory_info().rss
    if not children:
        return rss
    total = 0
    for p in (proc, *children):
        try:
            total += _proportional_set_size(p.pid) or p.memory_info().rss
        except psutil.Error:
            pass
    return max(rss, total)


def _proportional_set_size(pid: int) -> int:
    """A process's ``Pss`` in bytes; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _high_water_mark(pid: int) -> int:
    """The peak resident memory of one process (``VmHWM``), in bytes; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _failure_from(nb, index: int | None, err: BaseException) -> Failure:
    line = None
    source = ""
    if index is not None:
        source_map = nb.metadata.get("source_map")
        if source_map and index < len(source_map):
            line = int(source_map[index])
        source = nb.cells[index].source
    text = _ANSI.sub("", str(err)).strip()
    ename = getattr(err, "ename", None)
    if ename:
        error = f"{ename}: {_ANSI.sub('', str(getattr(err, 'evalue', '')))}"
        # nbclient's message repeats the cell's source first: keep the traceback only
        marker = "------------------\n"
        if text.count(marker) >= 2:
            text = text.split(marker, 2)[2].strip()
    else:
        error = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    return Failure(
        cell=index, line=line, source=source, error=error, traceback=text
    )


def execute(
    path: str | Path,
    *,
    root: str | Path | None = None,
    notebook=None,
    threads: int | None = None,
    jobs: int | None = None,
    cell_timeout: float | None = None,
    timeout: float | None = None,
    in_temp: bool = True,
    allow_errors: bool = False,
    env: dict[str, str] | None = None,
    run: str = "",
    executor: str = "bookexec",
    chapter: str | None = None,
) -> Execution:
    """Execute one chapter in a fresh kernel and measure it.

    Args:
        path: the chapter's source (``.md`` MyST notebook or ``.ipynb``).
        root: the book's root; the chapter is named by its path relative to it
            (default: the current directory).
        notebook: the notebook already read by :func:`read_notebook` (default: read it).
        threads: threads of the kernel (default :func:`dlbook.config.threads`).
        jobs: how many chapters run at once beside it, recorded with the result
            (default :func:`dlbook.config.jobs`).
        cell_timeout: seconds one cell may run (default: no limit but ``timeout``).
        timeout: seconds the whole chapter may run (default :func:`chapter_timeout`).
        in_temp: run in an empty temporary folder (the book's ``run_in_temp``), else in
            the chapter's folder.
        allow_errors: let cells raise, as myst-nb's ``execution_allow_errors``.
        env: extra environment variables for the kernel.
        run: an identifier of the run, recorded with the result.
        executor: who executed it, recorded with the result.
        chapter: the page's name (default: the path relative to ``root``, no suffix).

    A failing cell, a timeout or a dead kernel does not raise: the returned
    :class:`Execution` holds a :class:`Failure` naming the cell.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path).resolve()
    root = Path(root or Path.cwd()).resolve()
    if chapter is None:
        try:
            chapter = path.relative_to(root).with_suffix("").as_posix()
        except ValueError:
            chapter = path.with_suffix("").as_posix()
    nb = read_notebook(path)[0] if notebook is None else notebook
    jobs = config.jobs() if jobs is None else check_int("jobs", jobs, low=1)
    threads = (
        config.threads(jobs)
        if threads is None
        else check_int("threads", threads, low=1)
    )
    profile = config.profile()
    timeout = (
        chapter_timeout(profile)
        if timeout is None
        else check_number("timeout", timeout, low=0, low_open=True)
    )
    if cell_timeout is not None and cell_timeout <= 0:
        cell_timeout = None  # myst-nb's convention: no limit
    kernel_env = {
        **os.environ,
        **(env or {}),
        **config.thread_environment(threads),
        "DLBOOK_JOBS": str(jobs),
        "DLBOOK_BUILD": "1",  # as in the build: no progress bars (config.interactive)
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    start = time.perf_counter()
    started = time.time()
    deadline = start + timeout

    def cell_limit(cell) -> float:
        left = max(1.0, deadline - time.perf_counter())
        return left if cell_timeout is None else min(left, cell_timeout)

    state: dict[str, int | None] = {"cell": None, "error_cell": None}
    load0 = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        cwd = (
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="dlbook-exec-")
            )
            if in_temp
            else str(path.parent)
        )
        client = NotebookClient(
            nb,
            timeout=None,
            timeout_func=cell_limit,
            allow_errors=allow_errors,
            # no timing metadata in the cells: jupyter-cache hashes cell metadata, and the
            # executed notebook must hash as the unexecuted one that myst-nb looks up
            record_timing=False,
            resources={"metadata": {"path": cwd}},
        )
        sampler = stack.enter_context(_Sampler(client))

        def on_start(cell, cell_index, **_):
            state["cell"] = cell_index

        def on_done(cell, cell_index, **_):
            sampler.sample(refresh_children=True)

        def on_error(cell, cell_index, **_):
            state["error_cell"] = cell_index

        client.on_cell_start = on_start
        client.on_cell_executed = on_done
        client.on_cell_error = on_error
        # The kernel's own stderr (ipykernel's start-up notices; a crash's last words)
        # goes to a file, shown only when the chapter fails.
        log_dir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="dlbook-log-")
        )
        kernel_log = stack.enter_context(
            open(Path(log_dir) / "kernel.log", "w+b")
        )
        failure = None
        try:
            client.execute(cwd=cwd, env=kernel_env, stderr=kernel_log)
        except Exception as err:  # noqa: BLE001 - every failure is reported, none lost
            index = state["error_cell"]
            if index is None:
                index = state["cell"]
            failure = _failure_from(nb, index, err)
            kernel_log.seek(0)
            tail = "\n".join(
                line
                for line in kernel_log.read()
                .decode(errors="replace")
                .splitlines()
                if "running over TCP without encryption" not in line
            ).strip()[-3000:]
            if tail and not isinstance(err, CellExecutionError):
                failure.traceback += f"\n\nThe kernel's stderr:\n{tail}"
        wall = time.perf_counter() - start
    return Execution(
        chapter=chapter,
        path=path,
        notebook=nb,
        wall_s=wall,
        cpu_s=sampler.cpu,
        peak_rss=sampler.peak,
        threads=threads,
        jobs=jobs,
        profile=profile,
        device=config.describe_device(),
        started=started,
        load=(load0, os.getloadavg()[0]),
        failure=failure,
        run=run,
        executor=executor,
    )


def execute_all(
    chapters: Sequence[tuple[Path, Any]],
    *,
    jobs: int | None = None,
    on_done: Callable[[Execution], None] | None = None,
    **kwargs,
) -> list[Execution]:
    """Execute chapters ``jobs`` at a time; return their executions in the given order.

    Args:
        chapters: ``(path, notebook)`` pairs; ``notebook`` may be ``None`` (read it).
        jobs: chapters at once (default :func:`dlbook.config.jobs`); each kernel gets
            :func:`dlbook.config.threads` threads unless ``threads`` is given.
        on_done: called with each execution as soon as it finishes (from a worker thread).
        **kwargs: passed to :func:`execute`.
    """
    jobs = config.jobs() if jobs is None else check_int("jobs", jobs, low=1)
    kwargs.setdefault("threads", config.threads(jobs))

    def one(item):
        path, nb = item
        ex = execute(path, notebook=nb, jobs=jobs, **kwargs)
        if on_done is not None:
            on_done(ex)
        return ex

    with ThreadPoolExecutor(
        max_workers=jobs, thread_name_prefix="dlbook-exec"
    ) as pool:
        return list(pool.map(one, chapters))


@contextlib.contextmanager
def file_lock(path: str | Path):
    """An exclusive lock between processes (``flock`` on ``path``)."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cache_execution(cache_path: str | Path, execution: Execution) -> int:
    """Put an executed chapter into the jupyter-cache at ``cache_path``; return the record id.

    The record's data holds ``execution_seconds`` (myst-nb's execution table reads it) and
    the chapter's row under ``"dlbook"``. Writers in several processes take turns.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    if not execution.ok:
        raise ValueError(
            f"execution of {execution.chapter} failed; only successful executions are cached"
        )
    with file_lock(
        Path(cache_path).with_name(Path(cache_path).name + ".lock")
    ):
        cache = get_cache(str(cache_path))
        record = cache.cache_notebook_bundle(
            CacheBundleIn(
                execution.notebook,
                str(execution.path),
                data={
                    "execution_seconds": execution.wall_s,
                    "dlbook": execution.row(),
                },
            ),
            check_validity=False,
            overwrite=True,
        )
        # The build will look the chapter up by the hash of its source: check it finds it.
        try:
            found = cache.match_cache_notebook(
                read_notebook(execution.path)[0]
            ).pk
        except KeyError:
            found = None
    if found != record.pk:
        raise RuntimeError(
            f"{execution.chapter}: the executed notebook does not hash as its source "
            f"{execution.path} does, so the book build would not find it in the cache"
        )
    return record.pk


def cached(cache_path: str | Path, notebook):
    """The jupyter-cache record of this notebook (same code cells), or ``None``."""
    from jupyter_cache import get_cache

    if not Path(cache_path).exists():
        return None
    try:
        return get_cache(str(cache_path)).match_cache_notebook(notebook)
    except KeyError:
        return None


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def format_table(rows: Iterable[dict]) -> str:
    """Rows as a plain-text table, for terminals and logs."""
    head = f"{'chapter':<44}{'wall s':>8}{'CPU s':>8}{'RSS GiB':>9}{'thr':>5}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        status = (
            "FAILED"
            if not r.get("ok", True)
            else (
                "over: " + ", ".join(r["over"])
                if r.get("over_budget")
                else "ok"
            )
        )
        lines.append(
            f"{r['chapter']:<44}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}"
            f"{r['peak_rss_gib']:>9.2f}{r['threads']:>5}  {status}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dlbook.bookexec",
        description="Execute chapters as the book build does (several at a time, "
        "measured) and print their wall time, CPU time and peak memory.",
    )
    ap.add_argument(
        "chapters", nargs="+", type=Path, help="chapter sources (.md)"
    )
    ap.add_argument(
        "--jobs", type=int, help="chapters at once (default DLBOOK_JOBS)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        help="threads per kernel (default DLBOOK_THREADS)",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        help="also put the executed notebooks into this jupyter-cache",
    )
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    args = ap.parse_args(argv)
    jobs = (
        config.jobs()
        if args.jobs is None
        else check_int("--jobs", args.jobs, low=1)
    )
    threads = (
        config.threads(jobs)
        if args.threads is None
        else check_int("--threads", args.threads, low=1)
    )
    print(
        f"executing {len(args.chapters)} chapter(s), {min(jobs, len(args.chapters))} at a time, {threads} thread(s) "
        f"each, profile {config.profile()}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    def done(ex: Execution) -> None:
        state = "ok" if ex.ok else "FAILED"
        print(f"  {ex.chapter}: {state}, {ex.wall_s:.1f} s", flush=True)

    run = new_run_id()
    executions = execute_all(
        [(p, None) for p in args.chapters],
        jobs=jobs,
        threads=threads,
        on_done=done,
        run=run,
        executor="python -m dlbook.bookexec",
    )
    rows = [ex.row() for ex in executions]
    print(format_table(rows))
    for ex in executions:
        if not ex.ok:
            print("\n" + ex.failure.describe(ex.chapter), file=sys.stderr)
        elif args.cache:
            cache_execution(args.cache, ex)
    if args.json:
        args.json.write_text(json.dumps({"chapters": rows}, indent=1) + "\n")
    return 0 if all(ex.ok for ex in executions) else 1


if __name__ == "__main__":
    sys.exit(main())

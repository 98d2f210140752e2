"""The book's executor: measured executions, failing cells named, cached where myst-nb finds them."""

import textwrap
from pathlib import Path

import pytest
import yaml

from dlbook import bookexec

REPO = Path(__file__).resolve().parents[1]

FRONT = """\
---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  name: python3
---
# A chapter
"""


def _chapter(tmp_path, name, *cells):
    body = "".join(f"\nSome text.\n\n```{{code-cell}} ipython3\n{textwrap.dedent(c).strip()}\n```\n" for c in cells)
    path = tmp_path / "book" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FRONT + body)
    return path


def test_execute_measures_the_kernel_and_caches_where_the_build_looks(tmp_path):
    path = _chapter(
        tmp_path, "memory",
        """
        import os, time
        print(os.environ["DLBOOK_THREADS"], os.environ["OMP_NUM_THREADS"], os.environ["DLBOOK_BUILD"], os.getcwd() != "{cwd}")
        """.replace("{cwd}", str(tmp_path / "book")),
        """
        import numpy as np
        block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
        t = time.process_time()
        while time.process_time() - t < 0.5:
            pass
        """,
    )
    ex = bookexec.execute(path, root=tmp_path, threads=1, jobs=2, run="r1", executor="test")
    assert ex.ok, ex.failure and ex.failure.describe(ex.chapter)
    assert ex.chapter == "book/memory"
    assert ex.notebook.cells[1].outputs[0]["text"].split() == ["1", "1", "1", "True"]
    assert ex.peak_rss > 400 * 2**20 and ex.peak_rss < 3 * 2**30
    assert 0.5 <= ex.cpu_s <= ex.wall_s * 2
    row = ex.row()
    assert row["threads"] == 1 and row["jobs"] == 2 and row["run"] == "r1" and row["over_budget"] is False
    cache = tmp_path / "cache"
    pk = bookexec.cache_execution(cache, ex)
    # the build reads the unexecuted source and must find this record by its hash
    record = bookexec.cached(cache, bookexec.read_notebook(path)[0])
    assert record.pk == pk and record.data["dlbook"]["chapter"] == "book/memory"
    assert record.data["execution_seconds"] == ex.wall_s


def test_a_failing_cell_is_named_with_its_line_source_and_error(tmp_path):
    path = _chapter(tmp_path, "broken", "x = 1", "y = x / 0", "z = 2")
    ex = bookexec.execute(path, root=tmp_path, threads=1, jobs=1)
    assert not ex.ok
    f = ex.failure
    assert f.cell == 3 and f.source == "y = x / 0" and f.error == "ZeroDivisionError: division by zero"
    assert path.read_text().splitlines()[f.line - 1] == "```{code-cell} ipython3"
    text = f.describe(ex.chapter)
    assert text.startswith(f"book/broken: cell 3 (line {f.line}) failed: ZeroDivisionError")
    assert "y = x / 0" in text and "Traceback" in text
    with pytest.raises(ValueError, match="only successful executions are cached"):
        bookexec.cache_execution(tmp_path / "cache", ex)


def test_a_chapter_past_its_timeout_is_stopped_at_the_cell(tmp_path):
    path = _chapter(tmp_path, "slow", "x = 1", "import time; time.sleep(60)")
    ex = bookexec.execute(path, root=tmp_path, threads=1, jobs=1, timeout=4)
    assert not ex.ok and ex.failure.cell == 3 and "timed out" in ex.failure.error.lower()
    assert ex.wall_s < 40


def test_budget_counts_time_only_when_wall_and_cpu_exceed_it():
    b = bookexec.BUDGETS["quick"]
    assert (b.wall_s, b.rss_gib) == (45.0, 2.0)
    assert b.over(wall_s=90, cpu_s=30, rss_bytes=2**30) == []  # a busy machine
    assert b.over(wall_s=50, cpu_s=46, rss_bytes=2**30) == ["time"]
    assert b.over(wall_s=10, cpu_s=10, rss_bytes=int(2.1 * 2**30)) == ["memory"]


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_chapter_timeout_rejects_bad_values(monkeypatch, value):
    monkeypatch.setenv("DLBOOK_CHAPTER_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"DLBOOK_CHAPTER_TIMEOUT must be a positive number of seconds, got '{value}'"):
        bookexec.chapter_timeout()


def test_a_page_without_front_matter_is_not_a_notebook(tmp_path):
    (tmp_path / "page.md").write_text("# Just text\n")
    with pytest.raises(bookexec.NotANotebook, match="page.md is not a notebook"):
        bookexec.read_notebook(tmp_path / "page.md")


def test_every_chapter_hashes_alike_with_the_builds_markdown_settings(tmp_path):
    """The executor reads with default settings; the build with _config.yml's: same cache key."""
    from jupyter_cache import get_cache
    from myst_parser.config.main import MdParserConfig

    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    build_md = MdParserConfig(enable_extensions=set(cfg["parse"]["myst_enable_extensions"]))
    cache = get_cache(str(tmp_path / "cache"))
    chapters = [p for p in sorted((REPO / "book").rglob("*.md")) if p.read_text().startswith("---\njupytext:")]
    assert len(chapters) >= 15
    for path in chapters:
        ours = cache.create_hashed_notebook(bookexec.read_notebook(path)[0])[1]
        theirs = cache.create_hashed_notebook(bookexec.read_notebook(path, build_md)[0])[1]
        assert ours == theirs, path


def test_tree_memory_counts_a_page_shared_by_two_processes_once(tmp_path):
    import mmap
    import subprocess
    import sys

    import psutil

    size = 200 * 2**20
    blob = tmp_path / "blob"
    blob.write_bytes(b"\1" * size)
    touch = "sum(m[i] for i in range(0, len(m), 4096))"
    child = subprocess.Popen(
        [sys.executable, "-c", "import mmap, sys, time\n"
         f"f = open({str(blob)!r}, 'rb')\n"
         "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
         f"{touch}\nprint('ready', flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with open(blob, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            sum(m[i] for i in range(0, len(m), 4096))  # touch every page
            me, kid = psutil.Process(), psutil.Process(child.pid)
            summed_rss = me.memory_info().rss + kid.memory_info().rss
            alone = bookexec.tree_memory(me, [])
            tree = bookexec.tree_memory(me, [kid])
            m.close()
    finally:
        child.kill()
        child.wait()
    assert alone == pytest.approx(me.memory_info().rss, rel=0.5)
    assert summed_rss > alone + size  # RSS counts the file's pages in both
    # PSS counts them once: the tree holds the blob once plus two interpreters
    assert alone <= tree < summed_rss - size / 2

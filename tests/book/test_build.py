"""The book builds with warnings as errors from this run's executions, and shows what each took."""

import json
import re

import pytest

from .conftest import BUILD, REPO, notebook_pages, toc_files

pytestmark = pytest.mark.book

ROW_KEYS = {"chapter", "ok", "wall_s", "cpu_s", "peak_rss_gib", "threads", "profile", "device",
            "budget_wall_s", "budget_rss_gib", "over_budget", "over", "run"}


def _status(built_book):
    return json.loads((built_book.html / "status.json").read_text())


def test_book_builds_without_warnings(built_book):
    tail = "\n".join(built_book.log.splitlines()[-60:])
    assert built_book.returncode == 0, f"jupyter-book build failed:\n{tail}"
    warnings = [line for line in built_book.log.splitlines() if ": WARNING:" in line]
    assert not warnings, warnings[:10]


def test_the_build_executed_nothing_and_took_every_chapter_from_this_runs_cache(built_book):
    """Each chapter executed exactly once, as its test_chapter item, and never in the build."""
    assert "dlbook: executing" not in built_book.log
    assert "Executing notebook" not in built_book.log  # myst-nb's own execution
    rows = {r["chapter"]: r for r in _status(built_book)["chapters"]}
    assert set(rows) == set(notebook_pages())
    for page, row in rows.items():
        assert row["run"] == built_book.run and row["executor"] == "pytest", row
        assert row["measured"] and not row["executed_in_this_build"], row


def test_status_json_has_a_row_per_chapter_with_its_budget(built_book):
    status = _status(built_book)
    assert (BUILD / "status.json").read_text() == (built_book.html / "status.json").read_text()
    assert status["profile"] in ("quick", "full")
    for row in status["chapters"]:
        assert ROW_KEYS <= set(row), set(ROW_KEYS) - set(row)
        assert isinstance(row["over_budget"], bool) and row["ok"] is True
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_gib"] > 0.02, row
        budget = status["budget"]
        assert (row["budget_wall_s"], row["budget_rss_gib"]) == (budget["wall_s"], budget["rss_gib"])
        over = min(row["wall_s"], row["cpu_s"]) > row["budget_wall_s"] or row["peak_rss_gib"] > row["budget_rss_gib"]
        assert row["over_budget"] == over, row


def test_status_page_shows_every_chapters_time_memory_and_budget(built_book):
    html = (built_book.html / "book" / "status.html").read_text()
    table = re.search(r'<table[^>]*dlbook-budgets.*?</table>', html, re.S)
    assert table, "the chapters' budget table is missing from the status page"
    for header in ("Wall s", "CPU s", "Peak GiB", "Threads", "Profile", "Device", "Budget"):
        assert header in table.group(0), header
    for row in _status(built_book)["chapters"]:
        name = row["chapter"].removeprefix("book/")
        tr = re.search(rf'<span class="doc">{re.escape(name)}</span>.*?</tr>', table.group(0), re.S)
        assert tr, f"{row['chapter']} is missing from the budget table"
        cells = re.findall(r"<p>(.*?)</p>", tr.group(0))
        assert f"{row['wall_s']:.1f}" in cells and f"{row['peak_rss_gib']:.2f}" in cells, (row, cells)
        assert ("⚠️ over:" in tr.group(0)) == row["over_budget"]


def test_every_chapter_is_in_the_execution_table_as_taken_from_the_cache(built_book):
    html = (built_book.html / "book" / "status.html").read_text()
    html = html[re.search(r'<table[^>]*dlbook-budgets.*?</table>', html, re.S).end():]  # after the budget table
    for nb in notebook_pages():
        row = re.search(rf'<span class="doc">{re.escape(nb)}</span>.*?</tr>', html, re.S)
        assert row, f"{nb} is missing from the execution table"
        assert "cache" in row.group(0) and "✅" in row.group(0), f"{nb} did not execute successfully: {row.group(0)}"
    assert not (built_book.html / "reports").exists() or not list((built_book.html / "reports").iterdir())


def test_every_toc_page_was_written(built_book):
    for f in toc_files():
        assert (built_book.html / f"{f}.html").is_file(), f
    assert (REPO / "_toc.yml").is_file()

"""The book builds with warnings as errors, and every chapter ran in this build."""

import re

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.book


def _toc_files():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return files


def _notebooks():
    return [f for f in _toc_files() if (REPO / f"{f}.md").read_text().startswith("---\njupytext:")]


def test_book_builds_without_warnings(built_book):
    tail = "\n".join(built_book.log.splitlines()[-60:])
    assert built_book.returncode == 0, f"jupyter-book build failed:\n{tail}"
    warnings = [line for line in built_book.log.splitlines() if ": WARNING:" in line]
    assert not warnings, warnings[:10]


def test_every_chapter_was_executed_in_this_build(built_book):
    """Each notebook page ran once, here: the execution table lists it as run, with a time."""
    html = (built_book.html / "book" / "status.html").read_text()
    for nb in _notebooks():
        row = re.search(rf'<span class="doc">{re.escape(nb)}</span>.*?</tr>', html, re.S)
        assert row, f"{nb} is missing from the execution table"
        assert "cache" in row.group(0) and "✅" in row.group(0), f"{nb} did not execute successfully: {row.group(0)}"
    assert not (built_book.html / "reports").exists() or not list((built_book.html / "reports").iterdir())


def test_every_toc_page_was_written(built_book):
    for f in _toc_files():
        assert (built_book.html / f"{f}.html").is_file(), f

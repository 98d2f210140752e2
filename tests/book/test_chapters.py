"""One item per chapter: it executes (once per test run, in parallel with the others) and passes.

Run one chapter's check alone by its page's name::

    pytest tests/book -k graphs/gat
    pytest "tests/book/test_chapters.py::test_chapter[graphs/gat]"

A failing cell fails the item with the chapter, the cell, its source and its traceback.
The item also reports what the chapter took (wall time, CPU time, peak memory, threads),
and warns when the chapter is over its profile's budget (:data:`dlbook.bookexec.BUDGETS`).
"""

import warnings

import pytest

from .conftest import chapter_id, notebook_pages

pytestmark = [pytest.mark.book, pytest.mark.chapter]


@pytest.mark.parametrize("page", notebook_pages(), ids=chapter_id)
def test_chapter(page, book_run, record_property):
    result = book_run.result(page)
    if result["row"] is not None:
        record_property("dlbook_chapter", result["row"])
    if not result["ok"]:
        pytest.fail(result["failure"], pytrace=False)
    row = result["row"]
    assert row["run"] == book_run.id and row["chapter"] == page
    if row["over_budget"]:
        warnings.warn(
            f"{page} is over its {row['profile']} budget ({', '.join(row['over'])}): "
            f"wall {row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s, "
            f"peak {row['peak_rss_gib']:.2f} GiB; budget {row['budget_wall_s']:.0f} s, "
            f"{row['budget_rss_gib']:.0f} GiB",
            UserWarning,
            stacklevel=1,
        )

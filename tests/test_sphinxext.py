import os

from dlbook import sphinxext


def test_vendor_mathjax_copies_the_chtml_build(tmp_path):
    staging = sphinxext.vendor_mathjax(tmp_path)
    root = staging / "mathjax"
    assert (root / "tex-mml-chtml.js").stat().st_size > 1_000_000
    assert list((root / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_Main-Regular.woff"))
    assert (root / "input" / "tex" / "extensions" / "physics.js").is_file()


def test_setup_marks_the_build(monkeypatch):
    class App:
        connected = []

        def connect(self, event, fn, priority=500):
            self.connected.append(event)

        def add_config_value(self, *args):
            pass

        def add_node(self, *args):
            pass

        def add_directive(self, *args):
            pass

        def add_post_transform(self, *args):
            pass

    monkeypatch.setenv("DLBOOK_BUILD", "")  # restored after the test
    monkeypatch.setenv("DLBOOK_PROFILE", "quick")
    sphinxext.setup(App())
    assert os.environ["DLBOOK_BUILD"] == "1"
    assert App.connected == ["config-inited", "html-page-context", "build-finished",
                             "env-before-read-docs", "env-updated", "build-finished"]


def test_launch_urls_point_at_the_notebooks_branch():
    urls = sphinxext.launch_urls("https://github.com/dlbook/dlbook", "notebooks", "book/graphs/gat")
    assert urls["Colab"] == "https://colab.research.google.com/github/dlbook/dlbook/blob/notebooks/book/graphs/gat.ipynb"
    assert urls["Binder"] == "https://mybinder.org/v2/gh/dlbook/dlbook/notebooks?urlpath=lab/tree/book/graphs/gat.ipynb"


def _row(chapter, **kw):
    row = {"chapter": chapter, "ok": True, "wall_s": 12.34, "cpu_s": 11.0, "peak_rss_gib": 0.812,
           "threads": 1, "profile": "quick", "device": "cpu (x86_64)", "over_budget": False, "over": []}
    return {**row, **kw}


def test_budget_table_marks_over_budget_and_failed_chapters():
    rows = [_row("book/a/x"), _row("book/a/y", over_budget=True, over=["time", "memory"]),
            _row("book/b/z", ok=False), _row("book/b/w", measured=False, cpu_s=None, peak_rss_gib=None)]
    table = sphinxext.budget_table(rows, "book/status")
    text = table.astext()
    assert "Peak GiB" in text and "12.3" in text and "0.81" in text
    body = table.children[0].children[-1]  # tgroup -> tbody
    cells = [[entry.astext() for entry in row.children] for row in body.children]
    assert [c[0] for c in cells] == ["a/x", "a/y", "b/z", "b/w"]
    assert cells[0][6] == "cpu"
    assert cells[0][-1] == "✅ within" and cells[1][-1] == "⚠️ over: time, memory"
    assert cells[2][-1] == "❌ failed" and cells[3][-1].endswith("(not measured)") and cells[3][2] == "-"
    assert body.children[0].children[0].children[0].children[0]["reftarget"] == "a/x"  # relative to book/


def test_status_document_holds_the_budget_and_sorted_rows(monkeypatch):
    monkeypatch.setenv("DLBOOK_PROFILE", "quick")
    doc = sphinxext.status_document([_row("book/b"), _row("book/a")])
    assert doc["profile"] == "quick" and doc["budget"] == {"wall_s": 45.0, "rss_gib": 2.0}
    assert [r["chapter"] for r in doc["chapters"]] == ["book/a", "book/b"]

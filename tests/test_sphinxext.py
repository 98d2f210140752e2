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

    monkeypatch.setenv("DLBOOK_BUILD", "")  # restored after the test
    monkeypatch.setenv("DLBOOK_PROFILE", "quick")
    sphinxext.setup(App())
    assert os.environ["DLBOOK_BUILD"] == "1"
    assert App.connected == ["config-inited", "html-page-context", "build-finished"]


def test_launch_urls_point_at_the_notebooks_branch():
    urls = sphinxext.launch_urls("https://github.com/dlbook/dlbook", "notebooks", "book/graphs/gat")
    assert urls["Colab"] == "https://colab.research.google.com/github/dlbook/dlbook/blob/notebooks/book/graphs/gat.ipynb"
    assert urls["Binder"] == "https://mybinder.org/v2/gh/dlbook/dlbook/notebooks?urlpath=lab/tree/book/graphs/gat.ipynb"

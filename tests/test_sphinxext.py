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

        def connect(self, event, fn):
            self.connected.append(event)

    monkeypatch.setenv("DLBOOK_BUILD", "")  # restored after the test
    monkeypatch.setenv("DLBOOK_PROFILE", "quick")
    sphinxext.setup(App())
    assert os.environ["DLBOOK_BUILD"] == "1" and App.connected == ["config-inited"]

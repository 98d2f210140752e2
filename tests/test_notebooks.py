"""The Colab/Binder notebooks: the chapter's cells, after one install cell that pins this repository."""

import subprocess
import sys

import jupytext
import nbformat
import pytest

from dlbook import notebooks

REPO_ROOT = notebooks.Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def chapters():
    found = notebooks.toc_chapters(REPO_ROOT)
    assert any(p.name == "gradcam.md" for p in found)
    return found


def test_every_chapter_gets_the_install_cell_then_its_own_cells(chapters):
    repo = notebooks.repository(REPO_ROOT / "_config.yml")
    for source in chapters:
        nb = notebooks.colab_notebook(source, repo, SHA)
        first = nb.cells[0]
        assert first.cell_type == "code" and notebooks.INSTALL_TAG in first.metadata["tags"]
        assert f"git+{repo}.git@{SHA}" in first.source and "dlbook[book]" in first.source
        # The rest is exactly what the book build executes.
        original = jupytext.read(source)
        assert [(c.cell_type, c.source) for c in nb.cells[1:]] == [(c.cell_type, c.source) for c in original.cells]
        nbformat.validate(nb)


def test_install_cell_is_skipped_where_dlbook_is_installed():
    code = notebooks.INSTALL_CELL.format(repo="https://github.com/dlbook/dlbook", commit=SHA)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "skipping the install cell" in out.stdout


def test_install_cell_installs_the_pinned_commit_where_dlbook_is_missing(tmp_path):
    """In a Python without dlbook (as on Colab) the cell calls pip with the pinned URL."""
    fake_pip = tmp_path / "pip_calls.txt"
    code = notebooks.INSTALL_CELL.format(repo="https://github.com/dlbook/dlbook", commit=SHA)
    shim = (
        "import importlib.util, subprocess\n"
        "importlib.util.find_spec = lambda name, *a: None\n"
        f"subprocess.check_call = lambda args: open({str(fake_pip)!r}, 'w').write(' '.join(args))\n"
    )
    subprocess.run([sys.executable, "-c", shim + code], check=True)
    call = fake_pip.read_text()
    assert "-m pip install" in call and f"dlbook[book] @ git+https://github.com/dlbook/dlbook.git@{SHA}" in call


def test_a_generated_notebook_executes_in_the_quick_profile(tmp_path, monkeypatch):
    """One whole generated notebook (the status page) run by nbclient outside the book."""
    from nbclient import NotebookClient

    monkeypatch.setenv("DLBOOK_PROFILE", "quick")
    nb = notebooks.colab_notebook(REPO_ROOT / "book" / "status.md", "https://github.com/dlbook/dlbook", SHA)
    # nb-exec-table and glue are Sphinx-side; the code cells are what must run.
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "skipping the install cell" in nb.cells[0].outputs[0]["text"]
    assert any("quick" in str(o) for c in nb.cells[1:] if c.cell_type == "code" for o in c.outputs)


def test_write_notebooks_mirrors_the_sources(tmp_path, chapters):
    written = notebooks.write_notebooks(tmp_path, REPO_ROOT, commit=SHA)
    assert {p.relative_to(tmp_path).with_suffix(".md") for p in written} == {p.relative_to(REPO_ROOT) for p in chapters}
    nb = nbformat.read(written[0], as_version=4)
    assert nb.metadata["dlbook"]["commit"] == SHA and "jupytext" not in nb.metadata


def test_bad_inputs(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# not a notebook\n")
    with pytest.raises(ValueError, match="not a MyST notebook"):
        notebooks.colab_notebook(plain, "https://github.com/x/y", SHA)
    cfg = tmp_path / "_config.yml"
    cfg.write_text("repository:\n  url: https://gitlab.com/x/y\n")
    with pytest.raises(ValueError, match="github.com"):
        notebooks.repository(cfg)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("GITHUB_SHA", "main")
    with pytest.raises(ValueError, match="not a full commit hash"):
        notebooks.current_commit()
    monkeypatch.undo()


def test_current_commit_is_head():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    assert notebooks.current_commit(REPO_ROOT) == head

"""Colab/Binder notebooks of the chapters: the MyST source as ``.ipynb``, with an install cell first.

Readers launch chapters in Colab and Binder, where the best-known books fail in known ways:
"No module named 'd2l'" because nothing installs the package, install cells written for
Colab that break elsewhere, pins that go stale. Here every generated notebook starts with
one cell that

* installs ``dlbook`` (with the libraries the chapters use, as the ``book`` extra) from this
  repository, pinned to the commit that was built, with ``sys.executable -m pip``, which
  works on Colab, Binder and a laptop alike;
* does nothing where ``dlbook`` can already be imported (Binder, which installs
  ``requirements.txt``; a reader's clone; the book build), so it never fights an existing
  environment.

The rest of the notebook is the chapter's cells, unchanged: the cells the book build executes.
The build writes the notebooks to ``_build/html/_notebooks/`` (:mod:`dlbook.sphinxext`);
``python -m dlbook.notebooks --out DIR`` writes them next to the chapters for the
``notebooks`` branch that the launch buttons open.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

INSTALL_TAG = "dlbook-install"

INSTALL_CELL = """\
# Install dlbook, pinned to the commit this notebook was built from. Runs only where dlbook is
# missing (e.g. Colab); on Binder, in a clone of the repository and in the book build it does nothing.
import importlib.util, subprocess, sys
DLBOOK = "dlbook[book] @ git+{repo}.git@{commit}"
if importlib.util.find_spec("dlbook") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", DLBOOK])
else:
    print("dlbook is already installed; skipping the install cell")"""


def repository(config_path: str | Path = "_config.yml") -> str:
    """The repository URL from the book's ``_config.yml`` (``repository.url``)."""
    import yaml

    config = yaml.safe_load(Path(config_path).read_text())
    url = (config.get("repository") or {}).get("url", "").rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(
            f"repository.url in {config_path} must be a https://github.com/ URL, got {url!r}"
        )
    return url


def current_commit(root: str | Path = ".") -> str:
    """The commit being built: ``$GITHUB_SHA`` in a workflow, else ``git rev-parse HEAD``."""
    sha = (
        os.environ.get("GITHUB_SHA")
        or subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"not a full commit hash: {sha!r}")
    return sha


def is_notebook(path: str | Path) -> bool:
    """Whether a ``.md`` file is a MyST notebook (it has jupytext front matter)."""
    return Path(path).read_text(encoding="utf-8").startswith("---\njupytext:")


def colab_notebook(source: str | Path, repo: str, commit: str):
    """The ``.ipynb`` of a MyST chapter, with the install cell first; returns an nbformat notebook."""
    import jupytext
    import nbformat

    if not is_notebook(source):
        raise ValueError(
            f"{source} is not a MyST notebook (no jupytext front matter)"
        )
    nb = jupytext.read(source)
    cell = nbformat.v4.new_code_cell(
        INSTALL_CELL.format(repo=repo, commit=commit)
    )
    cell.metadata["tags"] = [INSTALL_TAG]
    nb.cells.insert(0, cell)
    nb.metadata.pop(
        "jupytext", None
    )  # a plain notebook: no pairing with a text file
    nb.metadata["colab"] = {"provenance": []}
    nb.metadata["dlbook"] = {
        "source": Path(source).as_posix(),
        "commit": commit,
    }
    return nb


def toc_chapters(root: str | Path = ".") -> list[Path]:
    """Every page of ``_toc.yml`` that is a notebook, as paths to its ``.md`` source."""
    import yaml

    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return [
        root / f"{f}.md"
        for f in files
        if (root / f"{f}.md").is_file() and is_notebook(root / f"{f}.md")
    ]


def write_notebooks(
    out: str | Path,
    root: str | Path = ".",
    repo: str | None = None,
    commit: str | None = None,
) -> list[Path]:
    """Write the Colab notebook of every chapter under ``out``, mirroring the sources' paths."""
    import nbformat

    root, out = Path(root), Path(out)
    repo = repo or repository(root / "_config.yml")
    commit = commit or current_commit(root)
    written = []
    for source in toc_chapters(root):
        dest = out / source.relative_to(root).with_suffix(".ipynb")
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(colab_notebook(source, repo, commit), dest)
        written.append(dest)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Write the Colab/Binder notebook of every chapter."
    )
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder to write book/<part>/<chapter>.ipynb into",
    )
    ap.add_argument(
        "--root", type=Path, default=Path("."), help="the repository root"
    )
    ap.add_argument(
        "--commit", help="commit to pin (default: $GITHUB_SHA or HEAD)"
    )
    args = ap.parse_args()
    for path in write_notebooks(args.out, args.root, commit=args.commit):
        print(path)


if __name__ == "__main__":
    main()

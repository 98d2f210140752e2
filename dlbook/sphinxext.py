"""Sphinx extension loaded by the book's build (``_config.yml``: ``sphinx.extra_extensions``).

* Sets ``DLBOOK_BUILD=1`` before any notebook runs, so the kernels the build starts (they
  inherit the environment) keep progress bars out of the pages (:func:`dlbook.config.interactive`).
* Checks ``DLBOOK_PROFILE`` at the start, so a typo fails the build at once instead of in
  every chapter.
* Serves MathJax from the site itself: the MathJax 3 release packaged on PyPI
  (``django-static-mathjax``, a plain copy of MathJax's ``es5`` build) is copied into
  ``_static/mathjax`` and ``mathjax_path`` points there, so the book renders its equations
  with no network (an offline reader, a closed CI runner, a mirror of the site).
* Writes the Colab/Binder notebook of every chapter (:mod:`dlbook.notebooks`) to
  ``_notebooks/`` in the site, and points the Colab and Binder launch buttons at the
  ``.ipynb`` files on the branch that publishes them (``dlbook_notebooks_branch``), instead
  of the ``.md`` sources that Colab cannot open.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dlbook import config

# What the CHTML output needs from MathJax's es5 build: the combined component, its web
# fonts, and the TeX extensions it may load on demand (all paths relative to es5/).
MATHJAX_FILES = (
    "tex-mml-chtml.js",
    "output/chtml/fonts/woff-v2",
    "input/tex/extensions",
)


def mathjax_source() -> Path:
    """The ``es5`` folder of the MathJax copy installed by ``django-static-mathjax``."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "MathJax is not installed: the book serves it from the site itself. "
            "Install it with `pip install django-static-mathjax` (it is in requirements.txt)."
        )
    es5 = (
        Path(next(iter(spec.submodule_search_locations)))
        / "static"
        / "mathjax"
        / "es5"
    )
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise RuntimeError(
            f"{es5} holds no tex-mml-chtml.js: the installed 'mathjax' package is not MathJax 3"
        )
    return es5


def vendor_mathjax(staging: Path) -> Path:
    """Copy the MathJax files the site needs into ``staging/mathjax``; return ``staging``."""
    src = mathjax_source()
    dest = staging / "mathjax"
    for rel in MATHJAX_FILES:
        s, d = src / rel, dest / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            shutil.copy2(s, d)
    return staging


def launch_urls(repo: str, branch: str, pagename: str) -> dict[str, str]:
    """The Colab and Binder URLs of a chapter's notebook on the notebooks branch."""
    org_repo = repo.rstrip("/").removeprefix("https://github.com/")
    path = f"{pagename}.ipynb"
    return {
        "Colab": f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{path}",
        "Binder": f"https://mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/{path}",
    }


def _config_inited(app, cfg) -> None:
    staging = vendor_mathjax(Path(app.doctreedir).parent / "dlbook_static")
    cfg.html_static_path = [*cfg.html_static_path, str(staging)]
    cfg.mathjax_path = "mathjax/tex-mml-chtml.js"  # relative to _static


def _repo_url(app) -> str:
    return app.config.html_theme_options.get("repository_url", "").rstrip("/")


def _launch_buttons(app, pagename, templatename, context, doctree) -> None:
    """Point Colab and Binder at the published .ipynb (runs after sphinx-book-theme's, priority 501)."""
    repo = _repo_url(app)
    if not repo:
        return
    urls = launch_urls(repo, app.config.dlbook_notebooks_branch, pagename)
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group.get("buttons", []):
                if button.get("text") in urls:
                    button["url"] = urls[button["text"]]


def _write_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from dlbook.notebooks import current_commit, write_notebooks

    root = Path(app.srcdir)
    try:
        commit = current_commit(root)
    except Exception:  # not a git checkout (e.g. a source tarball): nothing to pin, no notebooks
        from sphinx.util import logging

        logging.getLogger(__name__).info(
            "dlbook: not a git checkout, Colab notebooks not written"
        )
        return
    write_notebooks(
        Path(app.outdir) / "_notebooks",
        root,
        repo=_repo_url(app),
        commit=commit,
    )


def setup(app):
    os.environ["DLBOOK_BUILD"] = "1"
    config.profile()  # raises on an unknown profile before anything executes
    app.add_config_value("dlbook_notebooks_branch", "notebooks", "html")
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _launch_buttons, priority=600)
    app.connect("build-finished", _write_notebooks)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "0.1",
    }

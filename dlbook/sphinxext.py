"""Sphinx extension loaded by the book's build (``_config.yml``: ``sphinx.extra_extensions``).

* Sets ``DLBOOK_BUILD=1`` before any notebook runs, so the kernels the build starts (they
  inherit the environment) keep progress bars out of the pages (:func:`dlbook.config.interactive`).
* Checks ``DLBOOK_PROFILE`` at the start, so a typo fails the build at once instead of in
  every chapter.
* Serves MathJax from the site itself: the MathJax 3 release packaged on PyPI
  (``django-static-mathjax``, a plain copy of MathJax's ``es5`` build) is copied into
  ``_static/mathjax`` and ``mathjax_path`` points there, so the book renders its equations
  with no network (an offline reader, a closed CI runner, a mirror of the site).
* Executes the notebooks before Sphinx reads them, several at a time
  (:mod:`dlbook.bookexec`; ``DLBOOK_JOBS`` chapters at once, ``DLBOOK_THREADS`` threads
  each), and puts them into the build's jupyter-cache, where myst-nb finds them
  (``execute_notebooks: cache``): every notebook missing from the cache executes once, in
  parallel, and myst-nb executes none itself. A failing cell is a warning (an error under
  ``-W``) that names the chapter and the cell; that chapter is then not executed again.
* Measures each chapter (wall time, CPU time, peak memory, threads, profile, device) and
  compares it with its profile's budget: the ``{dlbook-chapter-budgets}`` directive shows
  the table on the status page, and ``status.json`` beside the site holds the same rows.
* Writes the Colab/Binder notebook of every chapter (:mod:`dlbook.notebooks`) to
  ``_notebooks/`` in the site, and points the Colab and Binder launch buttons at the
  ``.ipynb`` files on the branch that publishes them (``dlbook_notebooks_branch``), instead
  of the ``.md`` sources that Colab cannot open.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from dlbook import bookexec, config

logger = logging.getLogger(__name__)

STATUS_JSON = "status.json"
"""The chapters' rows, written at the root of the built site."""

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


def _nb_configs(env):
    """myst-parser's and myst-nb's configuration of this build (None without myst-nb)."""
    return getattr(env, "myst_config", None), getattr(
        env, "mystnb_config", None
    )


def _read(env, docname):
    """``(path, notebook, nb_config)`` of a page that myst-nb executes, else ``None``."""
    md_config, nb_config = _nb_configs(env)
    path = Path(env.doc2path(docname))
    try:
        nb, doc_config = bookexec.read_notebook(path, md_config, nb_config)
    except bookexec.NotANotebook:
        return None
    if doc_config.execution_mode != "cache" or bookexec.excluded(
        path, doc_config
    ):
        return None
    return path, nb, doc_config


def _execute_missing(app, env, docnames) -> None:
    """Execute, several at a time, the notebooks about to be read that the cache lacks."""
    app.dlbook_read = set(docnames)
    app.dlbook_executed = {}
    md_config, nb_config = _nb_configs(env)
    if nb_config is None or nb_config.execution_mode != "cache":
        return
    cache_path = nb_config.execution_cache_path
    todo = []
    for docname in sorted(docnames):
        found = _read(env, docname)
        if found is None:
            continue
        path, nb, doc_config = found
        if bookexec.cached(cache_path, nb) is None:
            todo.append((docname, path, nb, doc_config))
    if not todo:
        return
    n_jobs = min(config.jobs(), len(todo))
    n_threads = config.threads(config.jobs())
    logger.info(
        f"dlbook: executing {len(todo)} notebook(s), {n_jobs} at a time, "
        f"{n_threads} thread(s) each"
    )
    run = os.environ.get("DLBOOK_RUN") or bookexec.new_run_id()

    def one(item):
        docname, path, nb, doc_config = item
        ex = bookexec.execute(
            path,
            notebook=nb,
            chapter=docname,
            threads=n_threads,
            jobs=n_jobs,
            cell_timeout=doc_config.execution_timeout,
            in_temp=doc_config.execution_in_temp,
            allow_errors=doc_config.execution_allow_errors,
            run=run,
            executor="dlbook.sphinxext",
        )
        if ex.ok:
            bookexec.cache_execution(cache_path, ex)
        logger.info(
            f"dlbook: {docname}: {'executed' if ex.ok else 'FAILED'} in {ex.wall_s:.1f} s"
        )
        return docname, ex

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_jobs, thread_name_prefix="dlbook-exec") as pool:
        results = list(pool.map(one, todo))
    failed = []
    for docname, ex in results:
        app.dlbook_executed[docname] = ex.row()
        if ex.ok:
            continue
        failed.append(str(ex.path))
        message = ex.failure.describe(docname)
        report = Path(
            app.outdir, "reports", *(docname + ".err.log").split("/")
        )
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(message, encoding="utf-8")
        if not nb_config.execution_show_tb:
            message = message.splitlines()[0] + f" (traceback in {report})"
        logger.warning(
            message, location=docname, type="dlbook", subtype="exec"
        )
    if failed:
        # myst-nb would execute these again (they are not in the cache): it must not
        env.mystnb_config = nb_config.copy(
            execution_excludepatterns=[
                *nb_config.execution_excludepatterns,
                *failed,
            ]
        )


def _unmeasured_row(docname: str, exec_data: dict) -> dict:
    """The row of a notebook myst-nb executed itself: its run time only."""
    profile = config.profile()
    budget = bookexec.BUDGETS[profile]
    runtime = exec_data.get("runtime")
    return {
        "chapter": docname,
        "ok": bool(exec_data.get("succeeded")),
        "error": exec_data.get("error"),
        "wall_s": None if runtime is None else round(runtime, 2),
        "cpu_s": None,
        "peak_rss_gib": None,
        "threads": None,
        "jobs": None,
        "profile": profile,
        "device": config.describe_device(),
        "budget_wall_s": budget.wall_s,
        "budget_rss_gib": budget.rss_gib,
        "over_budget": runtime is not None and runtime > budget.wall_s,
        "over": ["time"]
        if runtime is not None and runtime > budget.wall_s
        else [],
        "measured": False,
    }


def _collect_rows(app, env):
    """After reading: each executed notebook's row; re-write the pages that show them."""
    from myst_nb.sphinx_ import NbMetadataCollector

    rows = {
        d: {**r, "executed_in_this_build": False}
        for d, r in getattr(env, "dlbook_rows", {}).items()
        if d in env.all_docs
    }
    read = getattr(app, "dlbook_read", set())
    executed = getattr(app, "dlbook_executed", {})
    _, nb_config = _nb_configs(env)
    for docname in read:
        rows.pop(docname, None)
        if docname in executed and not executed[docname]["ok"]:
            rows[docname] = {
                **executed[docname],
                "executed_in_this_build": True,
            }
            continue
        exec_data = (
            NbMetadataCollector.get_exec_data(env, docname)
            if nb_config
            else None
        )
        if not exec_data:
            continue  # not an executed notebook
        found = _read(env, docname)
        record = (
            bookexec.cached(nb_config.execution_cache_path, found[1])
            if found
            else None
        )
        if record is not None and "dlbook" in (record.data or {}):
            row = dict(record.data["dlbook"])
        else:
            row = _unmeasured_row(docname, exec_data)
        row["chapter"] = docname
        row["executed_in_this_build"] = docname in executed
        rows[docname] = row
    env.dlbook_rows = rows
    if not read:
        return []
    return [
        docname
        for docname, data in NbMetadataCollector.get_doc_data(env).items()
        if data.get(BudgetTable.KEY)
    ]


class budget_table_node(nodes.General, nodes.Element):
    """Placeholder for the chapters' budget table, filled when the page is written."""


class BudgetTable(SphinxDirective):
    """``{dlbook-chapter-budgets}``: each executed chapter's time, memory and budget."""

    KEY = "dlbook_budget_table"

    def run(self):
        from myst_nb.sphinx_ import NbMetadataCollector

        NbMetadataCollector.set_doc_data(
            self.env, self.env.docname, self.KEY, True
        )
        return [budget_table_node()]


def _fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def budget_table(rows: list[dict], parent_docname: str) -> nodes.table:
    """The docutils table of the rows, one per chapter, linked to the chapters."""
    import posixpath

    from sphinx.addnodes import pending_xref

    headers = [
        "Chapter",
        "Wall s",
        "CPU s",
        "Peak GiB",
        "Threads",
        "Profile",
        "Device",
        "Budget",
    ]
    table = nodes.table(classes=["colwidths-auto", "dlbook-budgets"])
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for _ in headers:
        tgroup += nodes.colspec(colwidth=1)
    thead = nodes.thead()
    tgroup += thead
    head = nodes.row()
    thead += head
    for h in headers:
        head += nodes.entry("", nodes.paragraph(text=h))
    tbody = nodes.tbody()
    tgroup += tbody
    for r in rows:
        row = nodes.row()
        tbody += row
        link = pending_xref(
            refdoc=parent_docname,
            reftarget=posixpath.relpath(
                r["chapter"], posixpath.dirname(parent_docname)
            ),
            reftype="doc",
            refdomain="std",
            refexplicit=True,
            refwarn=True,
            classes=["xref", "doc"],
        )
        link += nodes.inline(
            text=r["chapter"].removeprefix("book/"), classes=["doc"]
        )
        if not r.get("ok", True):
            status = "❌ failed"
        elif r.get("over_budget"):
            status = "⚠️ over: " + ", ".join(r.get("over", []))
        else:
            status = "✅ within"
        if not r.get("measured", True):
            status += " (not measured)"
        cells = [
            nodes.paragraph("", "", link),
            nodes.paragraph(text=_fmt(r.get("wall_s"))),
            nodes.paragraph(text=_fmt(r.get("cpu_s"))),
            nodes.paragraph(text=_fmt(r.get("peak_rss_gib"), 2)),
            nodes.paragraph(
                text="-" if r.get("threads") is None else str(r["threads"])
            ),
            nodes.paragraph(text=str(r.get("profile", "-"))),
            nodes.paragraph(text=str(r.get("device", "-")).split(" (")[0]),
            nodes.paragraph(text=status),
        ]
        for cell in cells:
            row += nodes.entry("", cell)
    return table


class BudgetTableTransform(SphinxPostTransform):
    """Replace the placeholder with the table of every executed chapter."""

    default_priority = 8  # before the references are resolved (10)

    def run(self, **kwargs) -> None:
        rows = sorted(
            getattr(self.env, "dlbook_rows", {}).values(),
            key=lambda r: r["chapter"],
        )
        for node in list(self.document.findall(budget_table_node)):
            node.replace_self(budget_table(rows, self.env.docname))


def status_document(rows: list[dict]) -> dict:
    """What ``status.json`` holds: the profile's budget and one row per chapter."""
    profile = config.profile()
    budget = bookexec.BUDGETS[profile]
    return {
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "budget": {"wall_s": budget.wall_s, "rss_gib": budget.rss_gib},
        "chapters": sorted(rows, key=lambda r: r["chapter"]),
    }


def _write_status(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    rows = list(getattr(app.env, "dlbook_rows", {}).values())
    out = Path(app.outdir) / STATUS_JSON
    out.write_text(
        json.dumps(status_document(rows), indent=1) + "\n", encoding="utf-8"
    )


def setup(app):
    os.environ["DLBOOK_BUILD"] = "1"
    config.profile()  # raises on an unknown profile before anything executes
    config.threads(config.jobs())  # and on a bad DLBOOK_JOBS or DLBOOK_THREADS
    app.add_config_value("dlbook_notebooks_branch", "notebooks", "html")
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _launch_buttons, priority=600)
    app.connect("build-finished", _write_notebooks)
    app.connect("env-before-read-docs", _execute_missing)
    app.connect("env-updated", _collect_rows)
    app.connect("build-finished", _write_status)
    app.add_node(budget_table_node)
    app.add_directive("dlbook-chapter-budgets", BudgetTable)
    app.add_post_transform(BudgetTableTransform)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "0.1",
    }

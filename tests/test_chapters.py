"""The house rules of ../shared/STYLE.md, checked on every chapter's source.

One test item per rule and chapter, so `pytest tests/test_chapters.py -k gat` checks one
chapter. These read the `.md` sources only (no execution, a second in all); what can only
be seen in the built site (figure scale, captions of every image, stderr outputs) is
checked by tests/book/.

- Code shown on the page fits the 80-character column: notebook cells, fenced code in
  the text, and the package code pulled in with ``literalinclude``.
- Visible code runs when a reader copies it: it never uses a name bound only in a hidden
  cell (tags ``remove-cell`` or ``remove-input``).
- Every figure cell has a numbered caption and a name, and the text refers to it.
- At least one diagram (a cell tagged ``diagram``, drawn from code) per chapter.
- A hidden cell asserts the chapter's key result; a visible cell states the profile.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WIDTH = 80  # characters that fit the book's text column in its code font


def _toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return files


def _chapters() -> list[str]:
    """Executed chapters: notebooks in a part folder (book/<part>/<chapter>)."""
    out = []
    for f in _toc_files():
        path = REPO / f"{f}.md"
        if f.count("/") >= 2 and path.read_text().startswith("---\njupytext:"):
            out.append(f)
    return out


CHAPTERS = _chapters()


def _cells(chapter: str):
    import jupytext

    return jupytext.read(REPO / f"{chapter}.md").cells


def _tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def _hidden(cell) -> bool:
    return bool(_tags(cell) & {"remove-cell", "remove-input"})


def _python(source: str) -> str:
    """Cell source without IPython magics and shell escapes."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    )


def _fences(markdown: str):
    """Fenced code blocks in markdown that show code (not directives like {math})."""
    for m in re.finditer(r"^(`{3,}|~{3,})([^\n`]*)\n(.*?)^\1\s*$", markdown, re.M | re.S):
        info = m.group(2).strip()
        if not info.startswith("{") or info.startswith(("{code-block}", "{code}")):
            yield info, m.group(3)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_code_cells_fit_the_column(chapter):
    wide = []
    for i, cell in enumerate(_cells(chapter)):
        if cell.cell_type == "code" and not _hidden(cell):
            wide += [(i, line) for line in cell.source.splitlines() if len(line) > WIDTH]
        elif cell.cell_type == "markdown":
            for _, body in _fences(cell.source):
                wide += [(i, line) for line in body.splitlines() if len(line) > WIDTH]
    assert not wide, f"{len(wide)} lines over {WIDTH} characters, e.g. cell {wide[0][0]}: {wide[0][1]!r}"


def _included_lines(chapter: str) -> list[tuple[str, str]]:
    """(where, line) for every line that a ``literalinclude`` shows on the page."""
    out = []
    text = (REPO / f"{chapter}.md").read_text()
    for m in re.finditer(r"^(`{3,})\{literalinclude\}\s+(\S+)\n(.*?)^\1", text, re.M | re.S):
        path = (REPO / chapter).parent / m.group(2)
        options = dict(re.findall(r"^:([\w-]+):\s*(.*)$", m.group(3), re.M))
        lines = path.read_text().splitlines()
        where = f"{m.group(2)}"
        if "pyobject" in options:
            node = _find_object(ast.parse(path.read_text()), options["pyobject"])
            assert node is not None, f"{chapter}: {options['pyobject']} is not in {path}"
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            lines = lines[start - 1 : node.end_lineno]
            where += f":{options['pyobject']}"
        if "lines" in options:
            keep = set()
            for part in options["lines"].split(","):
                a, _, b = part.strip().partition("-")
                keep.update(range(int(a), (int(b) if b else len(lines) if _ else int(a)) + 1))
            lines = [ln for n, ln in enumerate(lines, 1) if n in keep]
        if "start-after" in options:
            idx = next(i for i, ln in enumerate(lines) if options["start-after"] in ln)
            lines = lines[idx + 1 :]
        if "end-before" in options:
            idx = next(i for i, ln in enumerate(lines) if options["end-before"] in ln)
            lines = lines[:idx]
        out += [(where, ln) for ln in lines]
    return out


def _find_object(tree: ast.Module, dotted: str):
    node = tree
    for name in dotted.split("."):
        node = next(
            (n for n in getattr(node, "body", []) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
             and n.name == name),
            None,
        )
        if node is None:
            return None
    return node


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_included_package_code_fits_the_column(chapter):
    wide = [(w, ln) for w, ln in _included_lines(chapter) if len(ln) > WIDTH]
    assert not wide, f"{len(wide)} included lines over {WIDTH} characters, e.g. {wide[0][0]}: {wide[0][1]!r}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_included_docstrings_read_as_prose(chapter):
    """No reStructuredText roles in code the page shows: a reader sees them raw."""
    raw = [(w, ln) for w, ln in _included_lines(chapter) if re.search(r":(math|class|func|meth|mod|data|attr):`", ln)]
    assert not raw, f"{len(raw)} included lines with RST roles, e.g. {raw[0][0]}: {raw[0][1].strip()!r}"


def _bound(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _used(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def hidden_names_used(cells) -> list[tuple[int, str]]:
    """(cell index, name) where a visible cell uses a name bound only in hidden cells."""
    visible, hidden, found = set(), set(), []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(cell.source))
        except SyntaxError:
            continue
        bound = _bound(tree)
        if _hidden(cell):
            hidden |= bound - visible
            continue
        found += [(i, n) for n in sorted((_used(tree) & hidden) - visible - bound)]
        visible |= bound
    return found


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_visible_code_uses_no_name_from_a_hidden_cell(chapter):
    found = hidden_names_used(_cells(chapter))
    assert not found, f"visible cells use names bound only in hidden cells: {found}"


def test_the_hidden_name_check_finds_what_it_should():
    from nbformat.v4 import new_code_cell

    cells = [
        new_code_cell("import numpy as np\nq_mid = 0.5", metadata={"tags": ["remove-cell"]}),
        new_code_cell("print(np.pi, q_mid)"),
        new_code_cell("np = 1\nq = 2", metadata={"tags": ["remove-cell"]}),
        new_code_cell("def f(x):\n    return x + q\nprint(np)"),
    ]
    assert hidden_names_used(cells) == [(1, "np"), (1, "q_mid"), (3, "np"), (3, "q")]


def _figure_cells(cells):
    return [c for c in cells if c.cell_type == "code" and "figure" in c.metadata.get("mystnb", {})]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_has_a_caption_a_name_and_a_reference(chapter):
    cells = _cells(chapter)
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    problems = []
    for cell in _figure_cells(cells):
        fig = cell.metadata["mystnb"]["figure"]
        name = fig.get("name")
        if not fig.get("caption") or not name:
            problems.append(f"a figure without caption or name: {cell.source[:60]!r}")
        elif not re.search(rf"\{{numref\}}`([^`<]*<)?{re.escape(name)}>?`", text):
            problems.append(f"figure {name!r} is never referred to with {{numref}}")
    assert _figure_cells(cells), "the chapter has no captioned figure"
    assert not problems, problems


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_draws_its_idea_in_a_diagram(chapter):
    cells = _cells(chapter)
    diagrams = [c for c in cells if c.cell_type == "code" and "diagram" in _tags(c)]
    graphviz = any("{graphviz}" in c.source for c in cells if c.cell_type == "markdown")
    assert diagrams or graphviz, "no cell tagged 'diagram' (drawn with dlbook.diagrams) and no {graphviz}"
    for c in diagrams:
        assert "figure" in c.metadata.get("mystnb", {}), f"diagram without a caption: {c.source[:60]!r}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_hidden_cell_asserts_the_key_result(chapter):
    cells = _cells(chapter)
    hidden = [c for c in cells if c.cell_type == "code" and "remove-cell" in _tags(c)]
    asserts = [c for c in hidden if any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(_python(c.source))))]
    assert asserts, "no remove-cell cell with an assert"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_page_shows_its_profile(chapter):
    cells = _cells(chapter)
    assert any(
        c.cell_type == "code" and not _hidden(c) and re.search(r"\bsettings\(", c.source) for c in cells
    ), "no visible settings(quick=..., full=...) call: the reader cannot see which profile produced the page"

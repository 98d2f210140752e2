"""The house style of ../shared/STYLE.md, checked on the built site (issue 12).

tests/test_chapters.py checks what the sources can show; these tests check what only the
rendered pages can: how large every figure is drawn, whether every image a cell produced
sits in a numbered figure, what text the reader sees, and whether code fits its column.
Each test runs once per page of the table of contents, and every failure names the page
and the element, so that a failing chapter points at itself.

* Figures are legible: no figure is drawn below 85% of its natural size in the text column
  at the default desktop viewport (a 9-inch figure squeezed into the 684-pixel column is
  drawn at 69%, and its 10-point text at 7 pixels).
* Every image in a cell output sits in a ``<figure>`` whose caption carries a number.
* No output is a stderr stream: a warning printed by a cell is not something a reader
  should see (the build also fails on it, ``stderr_output: warn``).
* No raw ``$`` (math that did not render) and no ``??`` (a reference that did not
  resolve) in the text a reader sees.
* No code block is wider than its container: a reader must not scroll sideways to read
  a line of code.

The static checks read the built HTML; the layout checks need a browser (Debian's
``chromium`` driven by Playwright, as in test_site.py). All but the last self-check are
marked ``book``: they run on the site that tests/book/conftest.py builds.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MIN_SCALE = 0.85  # the smallest fraction of its natural width a figure may be drawn at
CHROMIUM = os.environ.get("DLBOOK_CHROMIUM") or "chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return files


PAGES = _toc_pages()
# Chapters are the executed notebooks (book/<part>/<chapter>.md); the other pages are
# prose (intro, running, datasets, status).
CHAPTERS = [p for p in PAGES if p.count("/") >= 2]


def _html(built_book, page: str) -> Path:
    path = built_book.html / f"{page}.html"
    if not path.is_file():
        pytest.skip(f"{page}.html was not built (a partial build?)")
    return path


def _article(built_book, page: str):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_html(built_book, page).read_text(), "html.parser")
    article = soup.select_one("article") or soup.select_one("main")
    assert article is not None, f"{page}: no <article> element"
    return article


def _describe(element) -> str:
    """A short, recognisable description of an element for a failure message."""
    ident = element.get("id") or ""
    classes = ".".join(element.get("class", []))
    text = " ".join(element.get_text(" ", strip=True).split())[:70]
    return f"<{element.name}{'#' + ident if ident else ''}{'.' + classes if classes else ''}> {text!r}"


def _cell_index(element) -> str:
    """Which code cell of the page an element belongs to (1-based), for messages."""
    cell = element.find_parent("div", class_="cell")
    if cell is None:
        return "outside any cell"
    cells = cell.find_parent("article").find_all("div", class_="cell")
    return f"cell {cells.index(cell) + 1} of {len(cells)}"


# --- static checks on the built HTML ---------------------------------------------------


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_no_stderr_output(built_book, page):
    article = _article(built_book, page)
    found = article.select(".output.stderr, .stderr")
    assert not found, (
        f"{page}: {len(found)} stderr output(s), e.g. {_cell_index(found[0])}: "
        f"{found[0].get_text(' ', strip=True)[:200]!r}"
    )


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_every_output_image_is_a_numbered_figure(built_book, page):
    article = _article(built_book, page)
    problems = []
    for img in article.select(".cell_output img, .output img"):
        figure = img.find_parent("figure")
        where = f"{_cell_index(img)}, image {img.get('src', '')[-40:]!r}"
        if figure is None:
            problems.append(f"{where}: not inside a <figure> (no caption metadata)")
            continue
        caption = figure.find("figcaption")
        number = caption.select_one(".caption-number") if caption else None
        if number is None or not re.search(r"\d", number.get_text()):
            problems.append(f"{where}: its <figure> has no numbered caption")
    assert not problems, f"{page}: " + "; ".join(problems[:5]) + (
        f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")


def _reader_text(article) -> str:
    """The text a reader sees outside code and math: rendered MathJax is not in the HTML
    yet, so every math element is removed; code (pre, code) is not prose."""
    from bs4 import BeautifulSoup

    article = BeautifulSoup(str(article), "html.parser")  # a copy
    for el in article.select("pre, code, script, style, .math, span.math, div.math, "
                             "mjx-container, .MathJax, .headerlink"):
        el.decompose()
    return article.get_text(" ")


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_no_raw_dollar_or_unresolved_reference(built_book, page):
    text = _reader_text(_article(built_book, page))
    problems = []
    for pattern, what in [(r"\$", "a raw '$' (math that did not render)"),
                          (r"\?\?", "'??' (a reference that did not resolve)")]:
        for m in re.finditer(pattern, text):
            context = " ".join(text[max(0, m.start() - 60): m.end() + 60].split())
            problems.append(f"{what} in {context!r}")
    assert not problems, f"{page}: " + "; ".join(problems[:5])


def test_the_static_checks_find_what_they_should(tmp_path):
    """The checks above on a small hand-written site: each defect is found, and named."""
    from types import SimpleNamespace

    html = tmp_path / "book" / "part"
    html.mkdir(parents=True)
    (html / "good.html").write_text(
        "<html><body><article>"
        "<p>Math <span class='math notranslate'>\\(x^2\\)</span> and a price in prose.</p>"
        "<div class='cell'><div class='cell_output'><figure id='fig-a'><img src='a.png'>"
        "<figcaption><p><span class='caption-number'>Fig. 3.1 </span>A plot.</p>"
        "</figcaption></figure></div></div>"
        "<pre>cost = $5 ?? in code is fine</pre>"
        "</article></body></html>")
    (html / "bad.html").write_text(
        "<html><body><article><p>Raw $x^2$ math, see ??.</p>"
        "<div class='cell'><div class='cell_output'>"
        "<div class='output stderr'><pre>UserWarning: clipping</pre></div>"
        "<img src='b.png'></div></div></article></body></html>")
    built = SimpleNamespace(html=tmp_path)
    for test in (test_no_stderr_output, test_every_output_image_is_a_numbered_figure,
                 test_no_raw_dollar_or_unresolved_reference):
        test(built, "book/part/good")
        with pytest.raises(AssertionError, match=r"book/part/bad: .*(cell 1 of 1|\$|\?\?)"):
            test(built, "book/part/bad")


# --- layout checks in the browser --------------------------------------------------------


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    executable = shutil.which(CHROMIUM)
    if not executable:
        pytest.fail(f"{CHROMIUM!r} is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(), executable_path=executable, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 900},  # the default desktop viewport
        )
        yield ctx
        ctx.close()


@pytest.fixture
def page_at(browser, site):
    """Open a page of the site (only the site is reachable) and wait for its images."""
    pages = []

    def open_(path):
        pg = browser.new_page()
        pg.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site) else r.abort())
        pg.goto(site + path, wait_until="networkidle")
        pg.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=20_000)
        pages.append(pg)
        return pg

    yield open_
    for pg in pages:
        pg.close()


FIGURE_SCALES = """() => [...document.querySelectorAll('article .cell_output img, article figure img')]
    .filter(i => i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)
    .map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth,
                drawn: i.getBoundingClientRect().width,
                figure: (i.closest('figure') || {}).id || '',
                caption: ((i.closest('figure') || document.createElement('p'))
                          .querySelector('figcaption') || {innerText: ''}).innerText.slice(0, 60)}))"""

WIDE_CODE = """() => [...document.querySelectorAll('article pre')]
    .filter(p => p.scrollWidth > p.clientWidth + 1)
    .map(p => ({scroll: p.scrollWidth, client: p.clientWidth,
                where: p.closest('.cell_output') ? 'output' : 'code',
                line: p.innerText.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '')
                      .slice(0, 90)}))"""


@pytest.mark.book
@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_figures_are_drawn_at_least_85_percent_of_their_size(built_book, page_at, page):
    _html(built_book, page)
    shrunk = [f for f in page_at(f"{page}.html").evaluate(FIGURE_SCALES)
              if f["drawn"] < MIN_SCALE * f["natural"]]
    assert not shrunk, f"{page}: " + "; ".join(
        f"{f['figure'] or f['src']} ({f['caption']!r}) drawn {f['drawn']:.0f} px wide, "
        f"{f['drawn'] / f['natural']:.0%} of its {f['natural']} px"
        for f in shrunk)


@pytest.mark.book
@pytest.mark.browser
@pytest.mark.parametrize("page", CHAPTERS + [p for p in PAGES if p in ("book/intro", "book/running")])
def test_no_code_block_is_wider_than_its_column(built_book, page_at, page):
    _html(built_book, page)
    wide = page_at(f"{page}.html").evaluate(WIDE_CODE)
    assert not wide, f"{page}: {len(wide)} block(s) scroll sideways, e.g. " + "; ".join(
        f"{w['where']} block {w['scroll']} px in {w['client']} px: {w['line']!r}"
        for w in wide[:3])

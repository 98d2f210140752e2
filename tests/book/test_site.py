"""The built site as a reader sees it, in headless Chromium with the network closed.

Every page is served from 127.0.0.1 and every request elsewhere is aborted and recorded:
the site must render its figures and its equations (MathJax is served from the site) with
nothing but itself. Screenshots go to artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from .conftest import ARTIFACTS

pytestmark = [pytest.mark.book, pytest.mark.browser]

# Debian's chromium by default; DLBOOK_CHROMIUM names another Chromium-based browser.
CHROMIUM = os.environ.get("DLBOOK_CHROMIUM") or "chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    executable = shutil.which(CHROMIUM)
    if not executable:
        pytest.fail(f"{CHROMIUM!r} is not installed (Debian: apt-get install chromium); the browser tests need it")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(), executable_path=executable, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 900},
        )
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, site):
    """A page that can reach only the local site; ``page.blocked`` lists what it tried elsewhere."""
    pg = browser.new_page()
    pg.blocked = []

    def route(r):
        if r.request.url.startswith(site):
            r.continue_()
        else:
            pg.blocked.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    yield pg
    pg.close()


def _open(page, url):
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=20_000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    page.wait_for_timeout(300)


def _shot(page, name):
    out = ARTIFACTS / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def _images(page):
    return page.evaluate(
        "() => [...document.querySelectorAll('article img')].map(i => ({src: i.src, w: i.naturalWidth, h: i.naturalHeight, ok: i.complete}))"
    )


def _visible_text_outside_code(page):
    return page.evaluate(
        """() => { const a = document.querySelector('article').cloneNode(true);
                   a.querySelectorAll('pre, code, mjx-container, script, .cell_output').forEach(e => e.remove());
                   return a.innerText; }"""
    )


def test_gradcam_chapter_shows_its_figures_and_math(page, site):
    _open(page, site + "book/interpretability/gradcam.html")
    _shot(page, "gradcam")
    images = _images(page)
    assert len(images) >= 8, f"expected the chapter's figures, found {len(images)} images"
    broken = [i["src"] for i in images if not i["ok"] or i["w"] == 0 or i["h"] == 0]
    assert not broken, f"images with zero size: {broken}"
    assert page.locator("mjx-container").count() >= 20, "MathJax did not render the equations"
    assert page.locator("mjx-container[display='true']").count() >= 4  # the numbered equations
    text = _visible_text_outside_code(page)
    assert "$" not in text and "\\frac" not in text and "\\alpha" not in text, "raw TeX is visible"
    assert "Grad-CAM" in page.title()
    assert page.blocked == [], f"the page needed the network: {page.blocked}"


@pytest.mark.parametrize("path", ["book/intro.html", "book/running.html", "book/status.html"])
def test_pages_render_offline(page, site, path):
    _open(page, site + path)
    _shot(page, path.replace("/", "_").removesuffix(".html"))
    assert page.locator("article h1").count() == 1
    assert all(i["w"] > 0 for i in _images(page))
    assert page.blocked == [], f"{path} needed the network: {page.blocked}"


def test_status_page_records_profile_device_and_chapters(page, site):
    _open(page, site + "book/status.html")
    text = page.locator("article").inner_text()
    assert "profile" in text and ("quick" in text or "full" in text)
    assert "device" in text and "book/interpretability/gradcam" in text


def test_search_finds_the_gradcam_chapter(page, site):
    _open(page, site + "book/intro.html")
    page.keyboard.press("Control+k")
    box = page.locator("input[name='q']:visible").first
    box.fill("Grad-CAM")
    box.press("Enter")
    page.wait_for_url("**/search.html?q=*")
    hit = page.locator("#search-results a[href*='interpretability/gradcam']").first
    hit.wait_for(timeout=20_000)
    _shot(page, "search")
    assert page.blocked == [], page.blocked


def test_launch_and_download_buttons(page, site, built_book):
    _open(page, site + "book/interpretability/gradcam.html")
    hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))")
    nb = "book/interpretability/gradcam.ipynb"
    assert f"https://colab.research.google.com/github/dlbook/dlbook/blob/notebooks/{nb}" in hrefs
    assert f"https://mybinder.org/v2/gh/dlbook/dlbook/notebooks?urlpath=lab/tree/{nb}" in hrefs
    assert any(h.endswith("_sources/book/interpretability/gradcam.ipynb") for h in hrefs)  # download .ipynb
    assert any(h.endswith("_sources/book/interpretability/gradcam.md") for h in hrefs)  # download source
    assert any("github.com/dlbook/dlbook/edit/main/book/interpretability/gradcam.md" in h for h in hrefs)
    assert any("github.com/dlbook/dlbook/issues" in h for h in hrefs)
    # the notebook the buttons point at is written by the build, with its install cell
    import nbformat

    written = nbformat.read(built_book.html / "_notebooks" / nb, as_version=4)
    assert "git+https://github.com/dlbook/dlbook.git@" in written.cells[0].source


def test_datasets_page_lists_the_registry(page, site):
    _open(page, site + "book/datasets.html")
    _shot(page, "datasets")
    text = page.locator("article").inner_text()
    for name in ("cora", "citeseer", "mnist", "clothing-small", "tiny-shakespeare", "efficientnet-lite0"):
        assert name in text, name
    assert page.locator("article table a[href*='interpretability/gradcam']").count() >= 1
    assert page.blocked == [], page.blocked

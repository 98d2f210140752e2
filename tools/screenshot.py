"""Screenshot pages of a built book in headless Chromium, as a reader would see them.

    python tools/screenshot.py _build/html book/interpretability/gradcam.html --out /tmp/shots

Serves the site on 127.0.0.1 (no other network is needed: the site carries its own
MathJax), opens each page in Debian's chromium through Playwright, waits for the math to
render, and writes full-page PNGs cut into tiles of at most 1,800 pixels, which an image
viewer can show at a readable size. Prints, per page, how many images there are, how many of
them failed to load (zero size), and how many equations MathJax rendered.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import tempfile
import threading
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main() -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site", type=Path, help="the built site, e.g. _build/html")
    ap.add_argument("pages", nargs="+", help="pages relative to the site, e.g. book/intro.html")
    ap.add_argument("--out", type=Path, default=Path("/tmp/dlbook-shots"))
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server, base = serve(args.site)
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(), executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                headless=True, viewport={"width": args.width, "height": 900},
            )
            page = ctx.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
            for rel in args.pages:
                page.goto(base + rel, wait_until="networkidle")
                page.wait_for_timeout(1500)  # MathJax typesets after load
                stats = page.evaluate(
                    "() => ({images: document.images.length,"
                    " broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,"
                    " math: document.querySelectorAll('mjx-container').length})"
                )
                stem = rel.replace("/", "_").removesuffix(".html")
                full = args.out / f"{stem}.png"
                page.screenshot(path=str(full), full_page=True)
                img = Image.open(full)
                tiles = []
                for i, top in enumerate(range(0, img.height, 1800)):
                    tile = args.out / f"{stem}_{i}.png"
                    img.crop((0, top, img.width, min(img.height, top + 1800))).save(tile)
                    tiles.append(tile.name)
                print(f"{rel}: {stats['images']} images ({stats['broken']} broken), {stats['math']} equations; tiles: {', '.join(tiles)}")
            ctx.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()

"""Whole-chapter wall time and peak memory: execute chapters as the book build does.

    python benchmarks/chapters.py book/interpretability/gradcam.md [more chapters...]

Each chapter is converted with jupytext and executed by nbclient in a fresh kernel (the
same machinery as the book build, in the active profile); the kernel's resident memory is
sampled every 50 ms. Prints wall time, peak RSS of the kernel and the profile that ran.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path


def run(chapter: Path) -> tuple[float, float]:
    import jupytext
    import psutil
    from nbclient import NotebookClient

    nb = jupytext.read(chapter)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(chapter.parent)}})
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            km = client.km
            if km is not None and km.has_kernel:
                try:
                    proc = psutil.Process(km.provisioner.process.pid)
                    rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                    peak[0] = max(peak[0], rss)
                except (psutil.Error, AttributeError):
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return wall, peak[0] / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="+", type=Path)
    args = ap.parse_args()
    os.environ["DLBOOK_BUILD"] = "1"  # as in the book build: no progress bars
    profile = os.environ.get("DLBOOK_PROFILE") or "quick"
    print(f"{'chapter':<48}{'profile':>8}{'wall (s)':>10}{'peak RSS (GB)':>15}")
    for chapter in args.chapters:
        wall, peak = run(chapter.resolve())
        print(f"{str(chapter):<48}{profile:>8}{wall:>10.1f}{peak:>15.2f}")


if __name__ == "__main__":
    main()

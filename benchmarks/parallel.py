"""Whole-book execution, serial against parallel, in one run.

    python benchmarks/parallel.py                      # every notebook in _toc.yml
    python benchmarks/parallel.py --jobs 2 --json out.json book/graphs/gat.md ...

Executes the same chapters twice with :mod:`dlbook.bookexec`, exactly as the book build
does: once serially (one chapter at a time, its kernel with every core's thread, as the
build ran before) and once ``--jobs`` at a time (each kernel with cores / jobs threads).
Prints each chapter's wall time, the total wall time of both, the speed-up, the CPU time
(the same work both times), and the 1-minute load average before, during and after each
pass: the machine may be shared, and a busy machine stretches wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlbook import bookexec, config  # noqa: E402


def toc_notebooks() -> list[Path]:
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    out = []
    for f in files:
        path = REPO / f"{f}.md"
        try:
            bookexec.read_notebook(path)
        except bookexec.NotANotebook:
            continue
        out.append(path)
    return out


def one_pass(chapters: list[Path], jobs: int, threads: int, label: str) -> dict:
    loads = []
    print(f"\n{label}: {len(chapters)} chapters, {jobs} at a time, {threads} thread(s) each; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)

    def done(ex):
        loads.append(os.getloadavg()[0])
        state = "ok" if ex.ok else "FAILED: " + ex.failure.error
        print(f"  {ex.chapter:<44} {ex.wall_s:7.1f} s  CPU {ex.cpu_s:6.1f} s  "
              f"load {loads[-1]:5.2f}  {state}", flush=True)

    load_before = os.getloadavg()
    start = time.perf_counter()
    executions = bookexec.execute_all(
        [(p, None) for p in chapters], jobs=jobs, threads=threads, root=REPO,
        on_done=done, executor=f"benchmarks/parallel.py ({label})",
    )
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    failed = [ex.chapter for ex in executions if not ex.ok]
    return {
        "label": label,
        "jobs": jobs,
        "threads": threads,
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(ex.cpu_s for ex in executions), 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "load_during_mean": round(sum(loads) / max(1, len(loads)), 2),
        "failed": failed,
        "chapters": [ex.row() for ex in executions],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="*", type=Path)
    ap.add_argument("--jobs", type=int, default=None, help="parallel pass: chapters at once (default DLBOOK_JOBS)")
    ap.add_argument("--parallel-first", action="store_true", help="run the parallel pass first")
    ap.add_argument("--json", type=Path, help="write both passes here")
    args = ap.parse_args()
    chapters = [p.resolve() for p in args.chapters] or toc_notebooks()
    jobs = config.jobs() if args.jobs is None else args.jobs
    cores = config.cores()
    os.environ["DLBOOK_BUILD"] = "1"
    print(f"{len(chapters)} chapters, {cores} cores, profile {config.profile()}")
    passes = [("serial", 1, cores), ("parallel", jobs, max(1, cores // jobs))]
    if args.parallel_first:
        passes.reverse()
    results = {label: one_pass(chapters, j, t, label) for label, j, t in passes}
    s, p = results["serial"], results["parallel"]
    speedup = s["wall_s"] / p["wall_s"]
    print(f"\n{'pass':<10}{'jobs':>6}{'threads':>9}{'wall s':>9}{'CPU s':>9}  load avg 1/5/15 min before -> after")
    for r in (s, p):
        print(f"{r['label']:<10}{r['jobs']:>6}{r['threads']:>9}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}  "
              f"{'/'.join(map(str, r['load_before']))} -> {'/'.join(map(str, r['load_after']))}"
              f" (mean during {r['load_during_mean']})")
    print(f"speed-up (serial wall / parallel wall): {speedup:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"speedup": round(speedup, 3), **results}, indent=1) + "\n")
    return 0 if not (s["failed"] or p["failed"]) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Each chapter's wall time, CPU time and peak memory, and their trend from build to build.

    python benchmarks/chapters.py                          # the last build's status.json
    python benchmarks/chapters.py _build/test/status.json --history benchmarks/chapters.jsonl
    python benchmarks/chapters.py --run book/graphs/gat.md # execute chapters now, as the build does

The book build writes ``status.json`` at the root of the site (``_build/html/status.json``;
the tests' build: ``_build/test/status.json``): one row per executed chapter, measured
while it ran (:mod:`dlbook.bookexec`). This script prints those rows against the profile's
budget. With ``--history FILE`` it appends the build's rows to FILE (one JSON line per build)
and prints each chapter's change since the previous build recorded there, so that a chapter
that keeps growing shows up before it crosses its budget. ``--run`` executes the given
chapters instead (several at a time, as the build does) and reads nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULTS = [REPO / "_build" / "html" / "status.json", REPO / "_build" / "test" / "status.json"]


def load(path: Path) -> dict:
    data = json.loads(path.read_text())
    if isinstance(data, list):
        data = {"chapters": data}
    return data


def trend(rows: list[dict], previous: list[dict] | None) -> list[str]:
    before = {r["chapter"]: r for r in previous or []}
    lines = [f"{'chapter':<44}{'wall s':>8}{'change':>9}{'CPU s':>8}{'change':>9}{'RSS GiB':>9}{'change':>9}  budget"]
    lines.append("-" * len(lines[0]))
    for r in sorted(rows, key=lambda r: r["chapter"]):
        p = before.get(r["chapter"])

        def delta(key, digits=1):
            if p is None or p.get(key) is None or r.get(key) is None:
                return "new" if p is None else "-"
            return f"{r[key] - p[key]:+.{digits}f}"

        def num(key, digits=1):
            return "-" if r.get(key) is None else f"{r[key]:.{digits}f}"

        status = "FAILED" if not r.get("ok", True) else (
            "over: " + ", ".join(r.get("over", [])) if r.get("over_budget") else "within")
        lines.append(f"{r['chapter']:<44}{num('wall_s'):>8}{delta('wall_s'):>9}{num('cpu_s'):>8}"
                     f"{delta('cpu_s'):>9}{num('peak_rss_gib', 2):>9}{delta('peak_rss_gib', 2):>9}  {status}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*", type=Path, help="status.json files, or chapters with --run")
    ap.add_argument("--history", type=Path, help="append this build to FILE and show the change since the last")
    ap.add_argument("--run", action="store_true", help="execute the given chapters now instead")
    args = ap.parse_args()
    if args.run:
        from dlbook import bookexec

        return bookexec.main([str(p) for p in args.paths])
    paths = args.paths or [p for p in DEFAULTS if p.exists()][:1]
    if not paths:
        print("no status.json found: build the book first (jupyter-book build .)", file=sys.stderr)
        return 1
    for path in paths:
        data = load(path)
        rows = data["chapters"]
        previous = None
        if args.history and args.history.exists():
            lines = [ln for ln in args.history.read_text().splitlines() if ln.strip()]
            previous = json.loads(lines[-1])["chapters"] if lines else None
        budget = data.get("budget", {})
        print(f"{path}: {len(rows)} chapters, profile {data.get('profile', '?')}, budget "
              f"{budget.get('wall_s', '?')} s and {budget.get('rss_gib', '?')} GiB each, written {data.get('written_at', '?')}")
        print("\n".join(trend(rows, previous)))
        over = [r["chapter"] for r in rows if r.get("over_budget")]
        total = sum(r["wall_s"] or 0 for r in rows)
        print(f"total wall time {total:.0f} s; over budget: {', '.join(over) or 'none'}")
        if args.history:
            with args.history.open("a") as f:
                f.write(json.dumps({"written_at": data.get("written_at"), "profile": data.get("profile"),
                                    "chapters": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

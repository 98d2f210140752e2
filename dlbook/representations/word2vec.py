"""Word embeddings: one-hot vectors and skip-gram with negative sampling.

Skip-gram with negative sampling (SGNS; Mikolov, Sutskever, Chen, Corrado and
Dean 2013, "Distributed Representations of Words and Phrases and their
Compositionality") learns a vector for every word by telling the words that
occur near it in a text from words drawn at random. Everything the C tool
word2vec.c does is here, written out: the vocabulary with a minimum count,
the subsampling of frequent words, the dynamic window, the unigram^0.75 noise
distribution, the loss and its gradient, and plain SGD with a learning rate
that decays linearly to nearly zero. Training is vectorized: a batch of
(centre, context) pairs is scored at once and the gradient of the loss,
derived by hand (``sgns_grad``), is added into the rows it touches.

Evaluation: nearest neighbours by cosine similarity, and the analogy test of
Mikolov et al. (2013, "Efficient Estimation of Word Representations in
Vector Space"): "a is to b as c is to d" is answered by the word closest to
b - a + c (3CosAdd), the question words excluded.

Checked against: ``sgns_grad`` equals autograd's gradient of ``sgns_loss``
and passes ``torch.autograd.gradcheck`` in float64; ``analogy_accuracy``
equals gensim's ``KeyedVectors.evaluate_word_analogies``; the vocabulary and
the noise distribution equal gensim's ``Word2Vec``
(``tests/representations/test_word2vec.py``). Trained on the same corpus with
the same settings, our vectors and gensim's answer about as many analogy
questions (the chapter asserts it).

The training loop is the algorithm itself (SGD on sparse rows with the
derived gradient and word2vec's learning-rate schedule), so it does not use
``dlbook.train.fit``.

Chapter: ``book/representations/word2vec.md``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from dlbook.checks import check_int, check_nonempty, check_number

# --- the vocabulary and one-hot vectors --------------------------------------


class Vocabulary:
    """The words seen at least ``min_count`` times, most frequent first.

    ``words[i]`` is the word with id ``i`` and ``counts[i]`` its number of
    occurrences in the corpus; ties keep the order of first appearance.
    """

    def __init__(self, sentences: Sequence[Sequence[str]], min_count: int = 5):
        check_int("min_count", min_count, low=1)
        check_nonempty("sentences", sentences)
        counter = Counter(w for s in sentences for w in s)
        kept = [(w, n) for w, n in counter.items() if n >= min_count]
        if not kept:
            raise ValueError(
                f"sentences must hold a word seen at least min_count="
                f"{min_count} times, got {sum(counter.values())} words"
            )
        kept.sort(key=lambda wn: -wn[1])
        self.words = [w for w, _ in kept]
        self.counts = np.array([n for _, n in kept], dtype=np.int64)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def id(self, word: str) -> int:
        """The id of ``word``; a word outside the vocabulary is an error."""
        if word not in self.index:
            raise ValueError(
                f"word must be in the vocabulary ({len(self):,} words), "
                f"got {word!r}"
            )
        return self.index[word]

    def encode(self, sentences: Sequence[Sequence[str]]):
        """The corpus as ids, words outside the vocabulary dropped.

        Returns ``(ids, sentence)``: int64 arrays of the same length, the id
        of each kept word and the index of the sentence it came from (a
        context window never crosses a sentence boundary).
        """
        ids, sent = [], []
        for k, s in enumerate(sentences):
            row = [self.index[w] for w in s if w in self.index]
            ids.extend(row)
            sent.extend([k] * len(row))
        return np.array(ids, dtype=np.int64), np.array(sent, dtype=np.int64)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self):,} words, {self.counts.sum():,} tokens)"


def one_hot(ids: Tensor, vocab_size: int) -> Tensor:
    """One-hot vectors: row i is e_{ids[i]}, a V-dimensional unit vector.

    Shapes: ids (N,) int64 -> (N, V) float32.
    """
    check_int("vocab_size", vocab_size, low=1)
    return torch.nn.functional.one_hot(ids, vocab_size).float()


# --- subsampling, the noise distribution and the pairs -----------------------


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """The probability of keeping each occurrence of a word (word2vec.c).

    With f the word's share of the corpus and t = ``sample``, the C tool and
    gensim keep an occurrence with probability (√(f/t) + 1) · t/f, capped at
    1; the paper's formula discards it with probability 1 − √(t/f). The two
    agree for rare words; for frequent ones the C tool keeps a little more.
    ``sample = 0`` keeps every word.
    """
    check_number("sample", sample, low=0)
    counts = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones_like(counts)
    ratio = sample * counts.sum() / counts  # t / f
    return np.minimum(1.0, np.sqrt(ratio) + ratio)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> Tensor:
    """The noise distribution P_n(w) ∝ count(w)^0.75 of the negative words."""
    check_number("power", power)
    p = torch.as_tensor(np.asarray(counts, dtype=np.float64)) ** power
    return p / p.sum()


def skipgram_pairs(
    ids: np.ndarray,
    sentence: np.ndarray,
    window: int,
    rng: np.random.Generator,
):
    """All (centre, context) pairs of one pass, with word2vec's dynamic window.

    Each centre word draws its own window b uniformly from 1, ..., ``window``
    and pairs with the b words on each side, within its sentence, so that near
    words are paired more often than far ones. Pairs come out in text order.

    Shapes: ids, sentence (N,) -> centres, contexts (P,) int64.
    """
    check_int("window", window, low=1)
    n = len(ids)
    b = rng.integers(1, window + 1, size=n)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    pos = np.arange(n)[:, None] + offsets[None, :]  # (N, 2 window)
    inside = (pos >= 0) & (pos < n) & (np.abs(offsets)[None, :] <= b[:, None])
    pos = np.clip(pos, 0, n - 1)
    inside &= sentence[pos] == sentence[:, None]
    centre = np.broadcast_to(np.arange(n)[:, None], pos.shape)[inside]
    return ids[centre], ids[pos[inside]]


# --- the loss and its gradient -----------------------------------------------


def sgns_loss(u: Tensor, v_pos: Tensor, v_neg: Tensor) -> Tensor:
    """The SGNS loss of each pair, summed: −log σ(u·v_o) − Σ_k log σ(−u·v_k).

    u is the centre word's input vector, v_o its context word's output vector
    and v_1, ..., v_K the output vectors of K noise words.

    Shapes: u (B, D), v_pos (B, D), v_neg (B, K, D) -> a scalar.
    """
    s_pos = (u * v_pos).sum(-1)  # (B,)
    s_neg = torch.einsum("bd,bkd->bk", u, v_neg)  # (B, K)
    return -(
        torch.nn.functional.logsigmoid(s_pos).sum()
        + torch.nn.functional.logsigmoid(-s_neg).sum()
    )


def sgns_grad(u: Tensor, v_pos: Tensor, v_neg: Tensor):
    """The gradient of ``sgns_loss``, derived by hand.

    With s = u·v and label y = 1 for the context word, 0 for a noise word,
    ∂L/∂s = σ(s) − y; so ∂L/∂u = Σ_j (σ(s_j) − y_j) v_j and
    ∂L/∂v_j = (σ(s_j) − y_j) u.

    Returns the gradients with respect to u, v_pos and v_neg, in their shapes.
    """
    g_pos = torch.sigmoid((u * v_pos).sum(-1)) - 1  # (B,)
    g_neg = torch.sigmoid(torch.einsum("bd,bkd->bk", u, v_neg))  # (B, K)
    grad_u = g_pos[:, None] * v_pos + torch.einsum("bk,bkd->bd", g_neg, v_neg)
    return grad_u, g_pos[:, None] * u, g_neg[:, :, None] * u[:, None, :]


# --- training ----------------------------------------------------------------


@dataclass
class Word2VecConfig:
    """Skip-gram with negative sampling: gensim's names and defaults."""

    vector_size: int = 100  # D, the dimension of the word vectors
    window: int = 5  # the largest distance between centre and context
    negative: int = 5  # K, noise words per (centre, context) pair
    min_count: int = 5  # words seen fewer times are dropped
    sample: float = 1e-3  # subsampling threshold t (0: keep every word)
    epochs: int = 5  # passes over the corpus
    alpha: float = 0.025  # the initial learning rate
    min_alpha: float = 1e-4  # the learning rate at the end
    batch_size: int = 1024  # pairs updated at once
    seed: int = 0

    def __post_init__(self):
        check_int("vector_size", self.vector_size, low=1)
        check_int("window", self.window, low=1)
        check_int("negative", self.negative, low=1)
        check_int("min_count", self.min_count, low=1)
        check_number("sample", self.sample, low=0)
        check_int("epochs", self.epochs, low=1)
        check_number("alpha", self.alpha, low=0, low_open=True)
        check_number("min_alpha", self.min_alpha, low=0, high=self.alpha)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed)


@dataclass
class Word2Vec:
    """Trained word vectors: ``vectors[i]`` is the input vector of word i."""

    vocab: Vocabulary
    vectors: Tensor  # (V, D) input vectors, the embeddings
    context: Tensor  # (V, D) output vectors
    losses: list[float] = field(default_factory=list)  # every 10th batch
    pairs: int = 0  # (centre, context) pairs trained on
    seconds: float = 0.0  # CPU time of the training


def train_word2vec(
    sentences: Sequence[Sequence[str]], config: Word2VecConfig
) -> Word2Vec:
    """Train SGNS by SGD on sparse rows, as word2vec.c does, batch by batch.

    The input vectors start uniform in ±0.5/D and the output vectors at zero
    (word2vec.c). Each epoch subsamples the corpus afresh, draws the dynamic
    windows, and walks through the pairs in text order; the learning rate
    falls linearly from ``alpha`` to ``min_alpha`` over the whole run. For a
    batch, u_c ← u_c − lr ∂L/∂u_c and v_j ← v_j − lr ∂L/∂v_j, summed over the
    pairs that touch a row. A noise word that happens to equal the context
    word o is kept as a negative (word2vec.c skips it); this happens with
    probability P_n(o) per draw, small except for the most frequent words.
    """
    cfg = config
    check_nonempty("sentences", sentences)
    start = time.process_time()
    vocab = Vocabulary(sentences, cfg.min_count)
    ids, sentence = vocab.encode(sentences)
    keep = keep_probability(vocab.counts, cfg.sample)
    cdf = torch.cumsum(noise_distribution(vocab.counts), 0).float()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    V, D, K = len(vocab), cfg.vector_size, cfg.negative
    W_in = (torch.rand(V, D, generator=gen) - 0.5) / D
    W_out = torch.zeros(V, D)
    losses, total = [], 0
    for epoch in range(cfg.epochs):
        kept = rng.random(len(ids)) < keep[ids]
        c_np, o_np = skipgram_pairs(ids[kept], sentence[kept], cfg.window, rng)
        centres, contexts = torch.from_numpy(c_np), torch.from_numpy(o_np)
        P = len(centres)
        for lo in range(0, P, cfg.batch_size):
            progress = (epoch + lo / P) / cfg.epochs
            lr = cfg.alpha - (cfg.alpha - cfg.min_alpha) * progress
            c = centres[lo : lo + cfg.batch_size]
            o = contexts[lo : lo + cfg.batch_size]
            r = torch.rand(len(c) * K, generator=gen)
            neg = torch.searchsorted(cdf, r).clamp_(max=V - 1)  # (B K,)
            u = W_in.index_select(0, c)  # (B, D)
            v_pos = W_out.index_select(0, o)  # (B, D)
            v_neg = W_out.index_select(0, neg).view(-1, K, D)  # (B, K, D)
            g_u, g_pos, g_neg = sgns_grad(u, v_pos, v_neg)
            W_in.index_add_(0, c, g_u, alpha=-lr)
            W_out.index_add_(0, o, g_pos, alpha=-lr)
            W_out.index_add_(0, neg, g_neg.view(-1, D), alpha=-lr)
            if (lo // cfg.batch_size) % 10 == 0:  # the loss of 1 batch in 10
                losses.append(sgns_loss(u, v_pos, v_neg).item() / len(c))
        total += P
    seconds = time.process_time() - start
    return Word2Vec(vocab, W_in, W_out, losses, total, seconds)


# --- evaluation --------------------------------------------------------------


def most_similar(
    vectors: Tensor, words: Sequence[str], word: str, topn: int = 5
) -> list[tuple[str, float]]:
    """The ``topn`` words of highest cosine similarity to ``word``.

    Shapes: vectors (V, D), one row per entry of ``words``.
    """
    check_int("topn", topn, low=1)
    index = {w: i for i, w in enumerate(words)}
    if word not in index:
        raise ValueError(
            f"word must be in the vocabulary ({len(words):,} words), "
            f"got {word!r}"
        )
    unit = torch.nn.functional.normalize(torch.as_tensor(vectors), dim=1)
    sims = unit @ unit[index[word]]
    sims[index[word]] = -math.inf
    best = sims.topk(min(topn, len(words) - 1))
    top = zip(best.values.tolist(), best.indices.tolist(), strict=True)
    return [(words[i], s) for s, i in top]


def analogy_accuracy(
    vectors: Tensor, words: Sequence[str], questions: pd.DataFrame
) -> pd.DataFrame:
    """3CosAdd accuracy per section on the questions whose words are known.

    "a is to b as c is to d" is answered by the word d̂ of highest cosine
    similarity to b̂ − â + ĉ (unit vectors), a, b and c excluded, as gensim's
    ``evaluate_word_analogies`` does. Questions with a word outside ``words``
    are skipped. Returns one row per section with ``questions`` (covered),
    ``correct`` and ``accuracy``, and a last row ``total``.
    """
    index = {w: i for i, w in enumerate(words)}
    q = questions[
        questions[["a", "b", "c", "d"]].isin(index.keys()).all(axis=1)
    ]
    unit = torch.nn.functional.normalize(torch.as_tensor(vectors), dim=1)
    abcd = torch.tensor(
        q[["a", "b", "c", "d"]].map(index.__getitem__).to_numpy()
    ).view(-1, 4)
    correct = torch.zeros(len(q), dtype=torch.bool)
    for lo in range(0, len(q), 1024):  # questions in blocks: (1024, V) scores
        a, b, c, d = abcd[lo : lo + 1024].T
        sims = (unit[b] - unit[a] + unit[c]) @ unit.T
        rows = torch.arange(len(a))
        for w in (a, b, c):
            sims[rows, w] = -math.inf
        correct[lo : lo + 1024] = sims.argmax(1) == d
    table = (
        pd.DataFrame({"section": q["section"].to_numpy(), "ok": correct})
        .groupby("section", sort=False)["ok"]
        .agg(questions="size", correct="sum")
    )
    table.loc["total"] = table.sum()
    table["accuracy"] = table["correct"] / table["questions"].clip(lower=1)
    return table

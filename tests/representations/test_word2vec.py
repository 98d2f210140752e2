"""Tests for dlbook.representations.word2vec: checked against gensim."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from gensim.models import KeyedVectors
from gensim.models import Word2Vec as GensimWord2Vec

from dlbook.representations.word2vec import (
    Vocabulary,
    Word2VecConfig,
    analogy_accuracy,
    keep_probability,
    most_similar,
    noise_distribution,
    one_hot,
    sgns_grad,
    sgns_loss,
    skipgram_pairs,
    train_word2vec,
)

logging.getLogger("gensim").setLevel(logging.ERROR)


def zipf_corpus(n_sentences=60, length=40, seed=0):
    """Sentences of words w0, w1, ... drawn with Zipf-like frequencies."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 41)
    p /= p.sum()
    return [
        [f"w{i}" for i in rng.choice(40, size=length, p=p)]
        for _ in range(n_sentences)
    ]


def topic_corpus(n_sentences=400, length=12, seed=0):
    """Two topics whose words never share a sentence: a0..a9 and b0..b9."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_sentences):
        topic = "ab"[k % 2]
        out.append([f"{topic}{i}" for i in rng.integers(0, 10, size=length)])
    return out


def test_one_hot_is_orthogonal_with_vocabulary_dimension():
    x = one_hot(torch.tensor([0, 3, 5, 3]), 7)
    assert x.shape == (4, 7)
    gram = x @ x.T
    torch.testing.assert_close(
        gram,
        torch.tensor(
            [[1.0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 1, 0, 1]]
        ),
    )


def test_vocabulary_equals_gensim():
    corpus = zipf_corpus()
    ours = Vocabulary(corpus, min_count=5)
    model = GensimWord2Vec(min_count=5, sample=1e-3, workers=1, seed=0)
    model.build_vocab(corpus)
    # the same words and counts (gensim's order of ties is not stable)
    assert sorted(ours.words) == sorted(model.wv.index_to_key)
    counts = [model.wv.get_vecattr(w, "count") for w in ours.words]
    np.testing.assert_array_equal(ours.counts, counts)
    assert np.all(np.diff(ours.counts) <= 0)
    # the subsampling probabilities: gensim stores them as round(p * 2^32)
    sample_int = [model.wv.get_vecattr(w, "sample_int") for w in ours.words]
    keep = keep_probability(ours.counts, 1e-3)
    np.testing.assert_allclose(keep * 2**32, sample_int, atol=1.5)
    assert keep.min() < 1  # the test corpus has words frequent enough
    # the noise distribution: gensim's cumulative table over [0, 2^31 - 1]
    model.make_cum_table()
    order = [ours.index[w] for w in model.wv.index_to_key]
    p = noise_distribution(ours.counts).numpy()[order]
    cum = np.cumsum(p) * (2**31 - 1)
    np.testing.assert_allclose(cum, model.cum_table, atol=1)


def test_keep_probability_against_the_paper():
    counts = np.array([1000, 100, 10, 1])
    keep = keep_probability(counts, 1e-2)
    f = counts / counts.sum()
    paper = np.minimum(1, np.sqrt(1e-2 / f))  # 1 - discard probability
    assert np.all(keep >= paper - 1e-12) and keep[-1] == 1
    np.testing.assert_array_equal(keep_probability(counts, 0), 1)


def test_skipgram_pairs_equal_a_loop():
    ids = np.array([4, 1, 2, 3, 0, 5, 6, 1, 2])
    sentence = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    window = 3
    c, o = skipgram_pairs(ids, sentence, window, np.random.default_rng(7))
    b = np.random.default_rng(7).integers(1, window + 1, size=len(ids))
    expected = []
    for i in range(len(ids)):
        for j in range(i - b[i], i + b[i] + 1):
            if j != i and 0 <= j < len(ids) and sentence[j] == sentence[i]:
                expected.append((ids[i], ids[j]))
    assert list(zip(c.tolist(), o.tolist(), strict=True)) == [
        (int(x), int(y)) for x, y in expected
    ]


def test_sgns_grad_equals_autograd_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(6, 4, generator=g, dtype=torch.float64)
    v_pos = torch.randn(6, 4, generator=g, dtype=torch.float64)
    v_neg = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (u, v_pos, v_neg)]
    sgns_loss(*args).backward()
    for ours, leaf in zip(sgns_grad(u, v_pos, v_neg), args, strict=True):
        torch.testing.assert_close(ours, leaf.grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(sgns_loss, args)
    # the loss itself: the binary cross-entropy of context (1) and noise (0)
    s = torch.cat(
        [
            (u * v_pos).sum(-1, keepdim=True),
            torch.einsum("bd,bkd->bk", u, v_neg),
        ],
        1,
    )
    y = torch.zeros_like(s)
    y[:, 0] = 1
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        s, y, reduction="sum"
    )
    torch.testing.assert_close(sgns_loss(u, v_pos, v_neg), bce)


def test_sparse_update_equals_autograd_on_the_tables():
    """index_add of the row gradients = autograd on the whole tables."""
    g = torch.Generator().manual_seed(1)
    W_in = torch.randn(5, 3, generator=g, dtype=torch.float64)
    W_out = torch.randn(5, 3, generator=g, dtype=torch.float64)
    c = torch.tensor([0, 0, 2, 4])  # repeated rows accumulate
    o = torch.tensor([1, 3, 3, 0])
    neg = torch.tensor([[2, 2], [1, 0], [4, 1], [3, 3]])
    grad_in, grad_out = torch.zeros_like(W_in), torch.zeros_like(W_out)
    g_u, g_pos, g_neg = sgns_grad(W_in[c], W_out[o], W_out[neg])
    grad_in.index_add_(0, c, g_u)
    grad_out.index_add_(0, o, g_pos)
    grad_out.index_add_(0, neg.flatten(), g_neg.reshape(-1, 3))
    A, B = W_in.clone().requires_grad_(), W_out.clone().requires_grad_()
    sgns_loss(A[c], B[o], B[neg]).backward()
    torch.testing.assert_close(grad_in, A.grad)
    torch.testing.assert_close(grad_out, B.grad)


def analogy_file(tmp_path, questions):
    path = tmp_path / "questions.txt"
    lines = []
    for section, rows in questions.groupby("section", sort=False):
        lines.append(f": {section}")
        lines += [" ".join(r) for r in rows[["a", "b", "c", "d"]].values]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_analogy_accuracy_equals_gensim(tmp_path):
    """Vectors where female = male + g + noise answer some questions."""
    rng = np.random.default_rng(0)
    pairs = [
        ("king", "queen"),
        ("man", "woman"),
        ("boy", "girl"),
        ("father", "mother"),
        ("son", "daughter"),
        ("he", "she"),
    ]
    gender = rng.normal(size=8)
    vecs = {}
    for m, f in pairs:
        vecs[m] = rng.normal(size=8)
        vecs[f] = vecs[m] + gender + 0.9 * rng.normal(size=8)
    for w in ("paris", "france", "rome", "italy"):
        vecs[w] = rng.normal(size=8)
    rows = [
        ("family", a, b, c, d) for a, b in pairs for c, d in pairs if a != c
    ]
    rows += [
        ("capitals", "paris", "france", "rome", "italy"),
        ("capitals", "paris", "france", "tokyo", "japan"),
    ]  # not known
    q = pd.DataFrame(rows, columns=["section", "a", "b", "c", "d"])
    words = list(vecs)
    table = analogy_accuracy(
        torch.tensor(np.array(list(vecs.values()))), words, q
    )
    kv = KeyedVectors(8)
    kv.add_vectors(words, np.array(list(vecs.values()), dtype=np.float32))
    total, sections = kv.evaluate_word_analogies(analogy_file(tmp_path, q))
    gensim = {
        s["section"]: (len(s["correct"]), len(s["incorrect"]))
        for s in sections
    }
    for name, row in table.iterrows():
        key = "Total accuracy" if name == "total" else name
        ok, bad = gensim[key]
        assert (row["correct"], row["questions"]) == (ok, ok + bad), name
    assert table.loc["capitals", "questions"] == 1
    assert (
        0 < table.loc["family", "correct"] < table.loc["family", "questions"]
    )
    assert table.loc["total", "accuracy"] == pytest.approx(total)


def test_most_similar_ranks_by_cosine():
    vectors = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [-1, 0]])
    words = ["a", "b", "c", "d"]
    out = most_similar(vectors, words, "a", topn=3)
    assert [w for w, _ in out] == ["b", "c", "d"]
    assert out[2][1] == pytest.approx(-1.0)


def test_training_learns_topics_and_is_deterministic():
    corpus = topic_corpus()
    cfg = Word2VecConfig(
        vector_size=16,
        window=3,
        negative=3,
        min_count=1,
        sample=0,
        epochs=3,
        batch_size=256,
        seed=0,
    )
    model = train_word2vec(corpus, cfg)
    assert np.mean(model.losses[-3:]) < 0.8 * np.mean(model.losses[:3])
    unit = torch.nn.functional.normalize(model.vectors, dim=1)
    topic = torch.tensor([w[0] == "a" for w in model.vocab.words])
    sims = unit @ unit.T
    same = sims[topic][:, topic].mean() + sims[~topic][:, ~topic].mean()
    cross = sims[topic][:, ~topic].mean()
    assert same / 2 > cross + 0.3
    again = train_word2vec(corpus, cfg)
    torch.testing.assert_close(model.vectors, again.vectors, rtol=0, atol=0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("vector_size", 0),
        ("vector_size", -3),
        ("window", 0),
        ("negative", 0),
        ("min_count", 0),
        ("sample", -1e-3),
        ("epochs", 0),
        ("alpha", 0.0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        Word2VecConfig(**{field: value})


def test_rejects_empty_corpus_and_unknown_words():
    cfg = Word2VecConfig(min_count=1)
    with pytest.raises(ValueError, match="sentences must not be empty"):
        train_word2vec([], cfg)
    with pytest.raises(ValueError, match="sentences must hold a word"):
        train_word2vec([[], []], cfg)
    vectors = torch.eye(3)
    with pytest.raises(ValueError, match="word must be in the vocabulary"):
        most_similar(vectors, ["a", "b", "c"], "zebra")
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(
            np.arange(3), np.zeros(3, int), 0, np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="vocab_size"):
        one_hot(torch.tensor([0]), 0)

"""The character language model: data, model, evaluation, sampling and the n-gram baseline."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.config import seed_everything
from dlbook.sequences.char_lm import (
    CharLSTM, CharVocab, NGramLM, RandomChunks, bits_per_char, char_data, evaluate_loss, generate, lm_loss,
    next_char_probs, windows,
)
from dlbook.train import fit

TEXT = "to be or not to be, that is the question. " * 20


def test_vocab_round_trip_and_unknown_characters():
    vocab = CharVocab(TEXT)
    assert vocab.decode(vocab.encode("not to be")) == "not to be"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.encode("Z")
    with pytest.raises(ValueError, match="text"):
        CharVocab("")


def test_char_data_split_is_train_then_val():
    data = char_data(TEXT, train_fraction=0.75)
    assert len(data.train) == int(0.75 * len(TEXT))
    assert data.vocab.decode(torch.cat([data.train, data.val])) == TEXT
    with pytest.raises(ValueError, match="train_fraction"):
        char_data(TEXT, train_fraction=1.5)


def test_random_chunks_and_windows_target_the_next_character():
    ids = torch.arange(100)
    for x, y in RandomChunks(ids, block_size=8, batch_size=4, steps=3, seed=1):
        assert x.shape == (4, 8) and (y == x + 1).all()
    x, y = windows(ids, 8)
    assert x.shape == (12, 8) and (y == x + 1).all() and x[1, 0] == 8
    with pytest.raises(ValueError, match="block_size"):
        windows(ids[:5], 8)
    with pytest.raises(ValueError, match="block_size"):
        RandomChunks(ids[:5], block_size=8, batch_size=2, steps=1)


def test_evaluate_loss_is_the_mean_cross_entropy_over_windows():
    seed_everything(0)
    model = CharLSTM(10, hidden_size=8)
    ids = torch.randint(0, 10, (203,))
    x, y = windows(ids, 20)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    assert evaluate_loss(model, ids, 20, batch_size=3) == pytest.approx(expected, rel=1e-5)
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)


def test_model_shapes_state_and_bad_ids():
    model = CharLSTM(7, hidden_size=6, num_layers=2, dropout=0.1)
    idx = torch.randint(0, 7, (3, 5))
    assert model(idx).shape == (3, 5, 7)
    logits, (h, c) = model(idx, None)
    assert h.shape == c.shape == (2, 3, 6)
    with pytest.raises(ValueError, match=r"ids in \[0, 7\)"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="idx"):
        model(torch.zeros(3, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="dropout"):
        CharLSTM(7, dropout=1.0)


def test_generation_is_seeded_and_checks_its_arguments():
    seed_everything(0)
    vocab = CharVocab(TEXT)
    model = CharLSTM(len(vocab), hidden_size=8)
    a = generate(model, vocab, "to ", 30, temperature=0.8, seed=3)
    assert a == generate(model, vocab, "to ", 30, temperature=0.8, seed=3)
    assert len(a) >= 30 and set(a) <= set(vocab.chars)
    p = next_char_probs(model, vocab, "to be", temperature=0.5)
    assert p.shape == (len(vocab),) and p.sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, vocab, "to", 5, temperature=0.0)
    with pytest.raises(ValueError, match="prompt"):
        generate(model, vocab, "", 5)
    with pytest.raises(ValueError, match="context"):
        next_char_probs(model, vocab, "")


def _slow_ngram_loss(train, data, order, beta, V):
    """Direct evaluation of the recursion p_k = (n(uc) + β p_{k-1}) / (n(u) + β)."""
    train, data = train.tolist(), data.tolist()
    grams = [Counter(tuple(train[i:i + k]) for i in range(len(train) - k + 1)) for k in range(order + 1)]
    ctx = [Counter(tuple(train[i:i + k]) for i in range(len(train) - k)) for k in range(order + 1)]
    nll = []
    for t in range(order - 1, len(data)):
        p = 1.0 / V
        for k in range(1, order + 1):
            u = tuple(data[t - k + 1:t])
            den = len(train) if k == 1 else ctx[k - 1][u]
            p = (grams[k][u + (data[t],)] + beta * p) / (den + beta)
        nll.append(-math.log(p))
    return float(np.mean(nll))


@pytest.mark.parametrize("order, beta", [(1, 1.0), (3, 0.5), (4, 10.0)])
def test_ngram_equals_a_slow_reference(order, beta):
    g = torch.Generator().manual_seed(order)
    train, data = torch.randint(0, 5, (300,), generator=g), torch.randint(0, 5, (80,), generator=g)
    lm = NGramLM(order, beta).fit(train, 5)
    assert lm.loss(data) == pytest.approx(_slow_ngram_loss(train, data, order, beta, 5), rel=1e-9)


def test_ngram_probabilities_sum_to_one():
    train = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(0))
    lm = NGramLM(3, 2.0).fit(train, 4)
    # the probability of each of the 4 continuations of the context (1, 2)
    probs = [math.exp(-lm.loss(torch.tensor([1, 2, c]))) for c in range(4)]
    assert sum(probs) == pytest.approx(1.0)


def test_ngram_bad_input():
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2).loss(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="beta"):
        NGramLM(2, beta=0.0)
    lm = NGramLM(2).fit(torch.tensor([0, 1, 2, 1, 0]), 3)
    with pytest.raises(ValueError, match=r"ids in \[0, 3\)"):
        lm.loss(torch.tensor([0, 5, 1]))


def test_a_short_training_run_beats_the_unigram_model():
    """A repeated sentence is predictable from context: the LSTM must beat letter frequencies by far."""
    seed_everything(0)
    data = char_data(TEXT, train_fraction=0.8)
    V = len(data.vocab)
    unigram = NGramLM(1).fit(data.train, V).loss(data.val)
    model = CharLSTM(V, hidden_size=64)
    batches = RandomChunks(data.train, block_size=32, batch_size=16, steps=150, seed=0)
    fit(model, batches, torch.optim.Adam(model.parameters(), 1e-2), epochs=1, loss_fn=lm_loss, metrics={},
        progress=False)
    val = evaluate_loss(model, data.val, 32)
    assert val < 0.5 * unigram, (val, unigram)

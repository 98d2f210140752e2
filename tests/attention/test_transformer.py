"""Tests of dlbook.attention.transformer: equal to PyTorch, causal, cached."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook.attention.transformer import (
    GPT,
    Block,
    GPTConfig,
    MultiHeadAttention,
    copy_from_torch,
    generate_greedy,
    rope,
    scaled_dot_product_attention,
    sinusoidal_positions,
)
from dlbook.sequences.char_lm import (
    RandomChunks,
    evaluate_loss,
    generate,
    lm_loss,
)
from dlbook.train import fit


def _qkv(B=2, H=3, T=5, S=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, d, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, S, d, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, S, d, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_torch(causal):
    q, k, v = _qkv()
    ours = scaled_dot_product_attention(q, k, v, causal=causal)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(ours, theirs)


@settings(max_examples=15, deadline=None)
@given(
    T=st.integers(1, 6),
    extra=st.integers(0, 3),
    d=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
def test_attention_with_more_keys_equals_explicit_mask(T, extra, d, seed):
    q, k, v = _qkv(B=1, H=2, T=T, S=T + extra, d=d, seed=seed)
    # query i sits at position extra + i: it sees keys 0 .. extra + i
    allowed = torch.ones(T, T + extra, dtype=torch.bool).tril(extra)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    ours = scaled_dot_product_attention(q, k, v, causal=True)
    torch.testing.assert_close(ours, theirs)


def test_attention_weights_are_rows_of_a_softmax():
    q, k, v = _qkv()
    _, w = scaled_dot_product_attention(q, k, v, True, return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5).double())
    assert (w.triu(1) == 0).all()


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_equals_torch(causal):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = copy_from_torch(MultiHeadAttention(16, 4), theirs)
    x = torch.randn(3, 7, 16)
    mask = (
        nn.Transformer.generate_square_subsequent_mask(7) if causal else None
    )
    ref, _ = theirs(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x, causal=causal), ref)


@pytest.mark.parametrize("causal", [False, True])
def test_block_equals_torch_encoder_layer(causal):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(
        16, 2, 32, dropout=0.0, norm_first=True, batch_first=True
    ).eval()
    ours = copy_from_torch(Block(16, 2, 32, activation="relu"), theirs).eval()
    x = torch.randn(2, 6, 16)
    mask = (
        nn.Transformer.generate_square_subsequent_mask(6) if causal else None
    )
    ref = theirs(x, src_mask=mask, is_causal=causal)
    torch.testing.assert_close(ours(x, causal=causal), ref)


def test_block_gradient_matches_torch():
    torch.manual_seed(1)
    theirs = nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, norm_first=True, batch_first=True
    )
    ours = copy_from_torch(Block(8, 2, 16, activation="relu"), theirs)
    x = torch.randn(2, 4, 8)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    torch.testing.assert_close(
        ours.fc1.weight.grad, theirs.linear1.weight.grad
    )
    torch.testing.assert_close(
        ours.attn.in_proj.weight.grad, theirs.self_attn.in_proj_weight.grad
    )


def _tiny_gpt(positions="learned", block=12, seed=0):
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=11,
        block_size=block,
        n_layer=2,
        n_head=2,
        n_embd=16,
        positions=positions,
    )
    return GPT(cfg).eval()


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_gpt_is_causal(positions):
    model = _tiny_gpt(positions)
    idx = torch.randint(
        11, (2, 10), generator=torch.Generator().manual_seed(0)
    )
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 3) % 11  # change the future only
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_kv_cache_gives_the_same_tokens(positions):
    model = _tiny_gpt(positions, block=12)
    prompt = torch.tensor([[1, 4, 2]])
    # 20 new tokens: the cache fills up and the window slides past the block
    slow = generate_greedy(model, prompt, 20, use_cache=False)
    fast = generate_greedy(model, prompt, 20, use_cache=True)
    assert torch.equal(slow, fast)
    assert slow.shape == (1, 23)


def test_cached_logits_equal_full_forward():
    model = _tiny_gpt()
    idx = torch.randint(11, (1, 9), generator=torch.Generator().manual_seed(2))
    full = model(idx)
    logits, cache = model(idx[:, :4], None)
    steps = [logits]
    for t in range(4, 9):
        logits, cache = model(idx[:, t : t + 1], cache)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_char_lm_generate_works_on_the_gpt():
    from dlbook.sequences.char_lm import CharVocab

    vocab = CharVocab("abcdefghijk")
    model = _tiny_gpt(block=8)
    text = generate(model, vocab, "abc", length=20, seed=0)
    assert len(text) == 23 and text.startswith("abc")


def test_sinusoidal_positions():
    P = sinusoidal_positions(50, 8)
    assert P.shape == (50, 8)
    torch.testing.assert_close(P[:, 0], torch.sin(torch.arange(50.0)))
    torch.testing.assert_close(P[0, 1::2], torch.ones(4))


def test_rope_scores_depend_on_offset_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 16, generator=g, dtype=torch.float64)
    score = lambda m, n: (  # noqa: E731
        rope(q, torch.tensor([m])) @ rope(k, torch.tensor([n])).T
    ).item()
    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-10)
    assert score(3, 1) == pytest.approx(score(102, 100), abs=1e-10)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    # a rotation keeps norms
    torch.testing.assert_close(rope(q, torch.tensor([7])).norm(), q.norm())


def test_gpt_learns_a_repeating_pattern():
    torch.manual_seed(0)
    data = torch.tensor([0, 1, 2, 3, 4, 5, 6] * 60)
    cfg = GPTConfig(vocab_size=7, block_size=16, n_layer=1, n_head=2)
    model = GPT(cfg)
    before = evaluate_loss(model, data, 16)
    loader = RandomChunks(data, 16, 8, steps=40, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fit(
        model,
        loader,
        opt,
        epochs=1,
        loss_fn=lm_loss,
        metrics={},
        progress=False,
    )
    after = evaluate_loss(model, data, 16)
    assert before > 1.5  # about ln 7 = 1.95: knows nothing
    assert after < 0.3, after  # the pattern is predictable after position 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MultiHeadAttention(10, 3), "d_model must be divisible"),
        (lambda: MultiHeadAttention(8, 0), "n_heads must be"),
        (lambda: MultiHeadAttention(8, -2), "n_heads must be"),
        (lambda: Block(8, 2, 16, dropout=1.0), "dropout"),
        (lambda: Block(8, 2, 16, activation="tanh"), "activation must be"),
        (lambda: GPT(GPTConfig(11, n_embd=30, n_head=4)), "d_model must be"),
        (lambda: GPT(GPTConfig(11, positions="rotary")), "positions must be"),
        (lambda: sinusoidal_positions(4, 7), "d_model must be even"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    model = _tiny_gpt(block=8)
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx must hold ids in \[0, 11\)"):
        model(torch.full((1, 3), 11))
    with pytest.raises(TypeError, match="idx must"):
        model(torch.zeros(1, 3))  # float ids
    q, k, v = _qkv(T=5, S=3)
    with pytest.raises(ValueError, match="at least as many keys"):
        scaled_dot_product_attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="k must be"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="x must have 16 features"):
        MultiHeadAttention(16, 2)(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="positions"):
        rope(torch.randn(4, 6), torch.arange(5))

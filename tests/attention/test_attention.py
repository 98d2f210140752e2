"""Tests for dlbook.attention.attention: scores, normalizers, the decoder."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook.attention.attention import (
    AdditiveScore,
    AttentionConfig,
    AttentionDecoder,
    BiEncoder,
    DotScore,
    GeneralScore,
    alignment_accuracy,
    argmax_weights,
    attend,
    gumbel_noise,
    gumbel_softmax,
    normalize,
    recording,
    reverse_task,
    score_gradient_norm,
    straight_through,
)
from dlbook.attention.transformer import scaled_dot_product_attention
from dlbook.sequences.rnn import (
    Decoder,
    EncoderDecoder,
    sequence_cross_entropy,
    shift_right,
)
from dlbook.train import fit


def _loop_attend(score, query, keys, mask=None):
    """Attention one batch row and one key at a time."""
    contexts, weights = [], []
    for b in range(query.shape[0]):
        e = []
        for s in range(keys.shape[1]):
            if mask is not None and not mask[b, s]:
                e.append(torch.tensor(-math.inf, dtype=query.dtype))
            else:
                e.append(
                    score(query[b : b + 1], keys[b : b + 1, s : s + 1])[0, 0]
                )
        e = torch.stack(e)
        w = torch.exp(e - e.max())
        w = w / w.sum()
        weights.append(w)
        contexts.append((w[:, None] * keys[b]).sum(0))
    return torch.stack(contexts), torch.stack(weights)


@pytest.mark.parametrize("kind", ["additive", "general", "dot"])
def test_weights_sum_to_one_and_match_a_loop(kind):
    torch.manual_seed(0)
    q = torch.randn(3, 6, dtype=torch.float64)
    k = torch.randn(3, 5, 6, dtype=torch.float64)
    score = {
        "additive": AdditiveScore(6, 6, 4),
        "general": GeneralScore(6, 6),
        "dot": DotScore(),
    }[kind].double()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    for m in (None, mask):
        context, weights = attend(q, k, score, mask=m)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3).double())
        ref_c, ref_w = _loop_attend(score, q, k, m)
        torch.testing.assert_close(weights, ref_w)
        torch.testing.assert_close(context, ref_c)
    assert (weights[1, 3:] == 0).all()


def test_additive_score_by_hand():
    score = AdditiveScore(2, 3, attn_size=2).double()
    with torch.no_grad():
        score.W_q.weight.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0]]))
        score.W_k.weight.copy_(torch.tensor([[1.0, 0, -1], [0, 2.0, 0]]))
        score.W_k.bias.copy_(torch.tensor([0.1, -0.2]))
        score.v.weight.copy_(torch.tensor([[3.0, -2.0]]))
    q = torch.tensor([[0.2, -0.1]], dtype=torch.float64)
    k = torch.tensor(
        [[[1.0, 0.5, 0.0], [0.0, -1.0, 2.0]]], dtype=torch.float64
    )
    # W_q q = (0.2 - 0.2, 0.1 + 0.1) = (0, 0.2)
    # key 1: W_k k + b = (1 + 0.1, 1 - 0.2) = (1.1, 0.8)
    # key 2: W_k k + b = (-2 + 0.1, -2 - 0.2) = (-1.9, -2.2)
    e1 = 3 * math.tanh(0 + 1.1) - 2 * math.tanh(0.2 + 0.8)
    e2 = 3 * math.tanh(0 - 1.9) - 2 * math.tanh(0.2 - 2.2)
    torch.testing.assert_close(
        score(q, k), torch.tensor([[e1, e2]], dtype=torch.float64)
    )


def test_general_score_is_a_bilinear_form():
    torch.manual_seed(1)
    score = GeneralScore(4, 3).double()
    q = torch.randn(2, 4, dtype=torch.float64)
    k = torch.randn(2, 5, 3, dtype=torch.float64)
    W = score.W.weight  # (4, 3)
    ref = torch.einsum("bq,qk,bsk->bs", q, W, k)
    torch.testing.assert_close(score(q, k), ref)


def test_scaled_dot_attention_equals_the_transformers():
    torch.manual_seed(2)
    q = torch.randn(4, 8, dtype=torch.float64)
    k = torch.randn(4, 6, 8, dtype=torch.float64)
    context, weights = attend(q, k, DotScore(scaled=True))
    ref, ref_w = scaled_dot_product_attention(
        q[:, None], k, k, return_weights=True
    )
    torch.testing.assert_close(context, ref[:, 0])
    torch.testing.assert_close(weights, ref_w[:, 0])


def test_argmax_is_the_zero_temperature_limit_of_the_softmax():
    torch.manual_seed(3)
    e = torch.randn(16, 7, dtype=torch.float64)
    hard = argmax_weights(e)
    assert (hard.sum(-1) == 1).all() and (
        hard.argmax(-1) == e.argmax(-1)
    ).all()
    gaps = [
        (torch.softmax(e / tau, -1) - hard).abs().max().item()
        for tau in (1.0, 0.1, 0.01, 0.001)
    ]
    top2 = e.topk(2, dim=-1).values
    delta = (top2[:, 0] - top2[:, 1]).min().item()  # the smallest margin
    gaps.append(
        (torch.softmax(e / (delta / 50), -1) - hard).abs().max().item()
    )
    assert all(a >= b for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[0] > 0.1, gaps
    assert gaps[-1] < 1e-12  # ≤ (S − 1) exp(−50)


def test_argmax_gradient_is_exactly_zero():
    torch.manual_seed(4)
    e = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 3, dtype=torch.float64)
    (argmax_weights(e) @ v).pow(2).sum().backward()
    assert e.grad is not None and (e.grad == 0).all()
    # the true derivative: central differences of the forward pass are zero
    # (no ties in random scores, and a step much smaller than any gap)
    f = lambda x: (argmax_weights(x) @ v).pow(2).sum()  # noqa: E731
    x = e.detach()
    for i in range(5):
        for j in range(6):
            d = torch.zeros_like(x)
            d[i, j] = 1e-6
            assert (f(x + d) - f(x - d)).item() == 0.0
    # the softmax, by contrast, has a nonzero gradient at the same point
    e.grad = None
    (torch.softmax(e, -1) @ v).pow(2).sum().backward()
    assert e.grad.abs().max() > 1e-3


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_straight_through_forward_is_argmax_backward_is_softmax(tau):
    torch.manual_seed(5)
    e = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 6, dtype=torch.float64)
    a = straight_through(e, tau)
    torch.testing.assert_close(a, argmax_weights(e.detach()))
    (grad_st,) = torch.autograd.grad((a * g).sum(), e)
    (grad_soft,) = torch.autograd.grad(
        (torch.softmax(e / tau, -1) * g).sum(), e
    )
    torch.testing.assert_close(grad_st, grad_soft)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_gumbel_softmax_equals_pytorchs(hard, tau):
    e = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 5, dtype=torch.float64)
    torch.manual_seed(6)
    ours = gumbel_softmax(e, tau, hard)
    torch.manual_seed(6)
    ref = F.gumbel_softmax(e, tau, hard)
    torch.testing.assert_close(ours, ref)
    (g1,) = torch.autograd.grad((ours * g).sum(), e)
    (g2,) = torch.autograd.grad((ref * g).sum(), e)
    torch.testing.assert_close(g1, g2)
    torch.manual_seed(6)
    noise = gumbel_noise(e)
    torch.testing.assert_close(gumbel_softmax(e, tau, hard, noise), ours)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 8),
    st.floats(0.05, 5.0),
    st.integers(0, 2**16),
)
def test_gumbel_softmax_property(batch, size, tau, seed):
    e = torch.randn(batch, size, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    ours = gumbel_softmax(e, tau)
    torch.manual_seed(seed)
    torch.testing.assert_close(ours, F.gumbel_softmax(e, tau))
    torch.testing.assert_close(ours.sum(-1), torch.ones(batch))


def test_gumbel_at_evaluation_is_the_argmax():
    e = torch.randn(3, 4)
    torch.testing.assert_close(
        normalize(e, "gumbel", training=False), argmax_weights(e)
    )


def test_bad_input():
    q, k = torch.randn(2, 4), torch.randn(2, 5, 4)
    score = GeneralScore(4, 4)
    with pytest.raises(ValueError, match="mask"):
        attend(q, k, score, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        attend(q, k, score, mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="mask"):
        attend(q, k, score, mask=torch.zeros(2, 5, dtype=torch.bool))
    for tau in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            attend(q, k, score, tau=tau)
        with pytest.raises(ValueError, match="tau"):
            gumbel_softmax(q, tau)
        with pytest.raises(ValueError, match="tau"):
            AttentionConfig(tau=tau)
    with pytest.raises(ValueError, match="width"):
        DotScore()(torch.randn(2, 3), k)
    with pytest.raises(ValueError, match="width 4"):
        GeneralScore(4, 4)(q, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="width 6"):
        AdditiveScore(6, 4)(q, k)
    with pytest.raises(ValueError, match="batch size"):
        score(q, torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match="hidden_size == memory_size"):
        AttentionDecoder(12, 8, 16, 32, AttentionConfig(score="dot"))
    with pytest.raises(ValueError, match="normalizer"):
        AttentionConfig(normalizer="sparsemax")
    with pytest.raises(ValueError, match="score"):
        AttentionConfig(score="cosine")
    with pytest.raises(ValueError, match="noise"):
        gumbel_softmax(q, 1.0, noise=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="decoder"):
        with recording(Decoder(12)):
            pass


def test_reverse_task():
    src, tgt = reverse_task(5, 4, seed=0)
    assert src.shape == (5, 4) and tgt.shape == (5, 5)
    assert (tgt[:, :4] == src.flip(1)).all() and (tgt[:, 4] == 11).all()
    assert (reverse_task(5, 4, seed=0)[0] == src).all()
    with pytest.raises(ValueError, match="length"):
        reverse_task(5, 0)


def _model(normalizer, hidden=16):
    cfg = AttentionConfig(score="general", normalizer=normalizer)
    return EncoderDecoder(
        BiEncoder(10, 8, hidden),
        AttentionDecoder(12, 8, hidden, 2 * hidden, cfg),
        10,
        11,
    )


def _batches(n_batches=12, length=5, seed=0):
    src, tgt = reverse_task(32 * n_batches, length, seed=seed)
    tgt_in = shift_right(tgt, 10)
    return [
        ((src[i : i + 32], tgt_in[i : i + 32]), tgt[i : i + 32])
        for i in range(0, len(src), 32)
    ]


def _alignment(model, length=5):
    src, tgt = reverse_task(200, length, seed=9)
    model.eval()
    with torch.no_grad(), recording(model.decoder) as w:
        model(src, shift_right(tgt, 10))
    model.train()
    right = torch.arange(length - 1, -1, -1)
    return alignment_accuracy(torch.stack(w, 1)[:, :length], right)


def test_shapes_and_recording():
    torch.manual_seed(0)
    model = _model("softmax")
    ((src, tgt_in), tgt) = _batches(1)[0]
    assert model(src, tgt_in).shape == (32, 6, 12)
    with recording(model.decoder) as w:
        out = model.greedy_decode(src, 6)
    assert out.shape == (32, 6) and len(w) >= 1 and w[0].shape == (32, 5)
    assert model.decoder.recorded is None


def test_argmax_attention_cannot_learn_and_the_fixes_can():
    batches = _batches()
    results = {}
    for normalizer in ("argmax", "straight_through", "gumbel"):
        torch.manual_seed(0)
        model = _model(normalizer)
        before = [p.detach().clone() for p in model.decoder.score.parameters()]
        grad = score_gradient_norm(model, batches[0])
        fit(model, batches, torch.optim.Adam(model.parameters(), lr=2e-2),
            epochs=5, loss_fn=sequence_cross_entropy, metrics={})  # fmt: skip
        after = list(model.decoder.score.parameters())
        unchanged = all(
            torch.equal(a, b) for a, b in zip(before, after, strict=True)
        )
        results[normalizer] = (grad, unchanged, _alignment(model))
    grad, unchanged, align = results["argmax"]
    assert grad == 0.0 and unchanged
    assert align < 0.35  # chance is 1/5: nothing moves the alignment
    for name in ("straight_through", "gumbel"):
        grad, unchanged, align = results[name]
        assert grad > 0 and not unchanged
        assert align > 0.6, (name, align)  # three times chance

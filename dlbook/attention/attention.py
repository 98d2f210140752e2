"""Attention in an encoder-decoder, and what happens when it is an argmax.

The decoder of ``dlbook.sequences.rnn`` writes the target from the
encoder's final state alone. An attention decoder also looks back at every
encoder state at every step: it scores each one against its own state,
normalizes the scores into weights, and reads their weighted mean, the
context. Two families of scores:

* additive (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by
  Jointly Learning to Align and Translate", ICLR): e = vᵀ tanh(W_q q + W_k k);
* multiplicative (Luong, Pham & Manning 2015, "Effective Approaches to
  Attention-based Neural Machine Translation", EMNLP): "general"
  e = qᵀ W k and "dot" e = qᵀ k (divided by √d, it is the Transformer's
  scaled dot-product attention, which ``dlbook.attention.transformer``
  implements and the tests compare with).

The weights come from a normalizer. The softmax is the usual one; the
others replace it by a hard choice of one encoder state:

* ``argmax``: the one-hot arg-max of the scores, the limit of
  softmax(e / τ) as τ → 0. It is piecewise constant, so its derivative with
  respect to the scores is zero wherever it is defined: no gradient reaches
  the scores and the attention cannot learn;
* ``straight_through``: the arg-max forward, the softmax's gradient
  backward (Bengio, Léonard & Courville 2013, "Estimating or Propagating
  Gradients Through Stochastic Neurons");
* ``gumbel``: the Gumbel-softmax, softmax((e + g) / τ) with Gumbel noise g
  (Jang, Gu & Poole 2017, "Categorical Reparameterization with
  Gumbel-Softmax", ICLR; Maddison, Mnih & Teh 2017), here in its hard,
  straight-through form; at evaluation it is the plain arg-max.

The generated task is ``reverse_task``: digits in, the same digits in
reverse order out.

Checked against (``tests/attention/test_attention.py``): a loop over the
batch and the keys; the additive score computed by hand; the scaled dot
score against ``dlbook.attention.transformer.scaled_dot_product_attention``;
``torch.nn.functional.gumbel_softmax`` given the same noise; the argmax's
zero gradient against central differences.

Chapter: ``book/attention/attention.md``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbook.checks import check_choice, check_int, check_number, check_tensor
from dlbook.sequences.rnn import Decoder, Encoder

# --- the task ----------------------------------------------------------------


def reverse_task(
    n: int, length: int, digits: int = 10, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Digits in, the same digits in reverse order out, then EOS.

    Output token t is input token L − 1 − t, so the right alignment is the
    anti-diagonal. The layout is ``sort_task``'s: source tokens
    0..digits − 1, and the target vocabulary adds BOS (``digits``) and EOS
    (``digits + 1``).

    Shapes:
        returns src (n, L) and tgt (n, L + 1), both int64.
    """
    check_int("n", n, low=1)
    check_int("length", length, low=1)
    check_int("digits", digits, low=2)
    g = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    src = torch.randint(0, digits, (n, length), generator=g)
    eos = torch.full((n, 1), digits + 1)
    return src, torch.cat([src.flip(1), eos], dim=1)


# --- the encoder -------------------------------------------------------------


class BiEncoder(Encoder):
    """Bahdanau's encoder: a bidirectional GRU, and a bridge to the decoder.

    The state of source position s is [h→_s; h←_s], which has read the whole
    source from both ends. The decoder starts from tanh(W [h→_S; h←_1]), the
    two final states mapped to its width (Bahdanau et al. use h←_1 alone).

    Shapes:
        src: (B, S) int64. Returns memory (B, S, 2H) and the decoder's
        initial state (1, B, H).
    """

    def __init__(
        self, vocab_size: int, embed_size: int = 32, hidden_size: int = 64
    ):
        super().__init__(vocab_size, embed_size, hidden_size, "gru")
        self.rnn = nn.GRU(
            embed_size, hidden_size, batch_first=True, bidirectional=True
        )
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, src: Tensor):
        check_tensor("src", src, ndim=2, floating=False, nonempty=True)
        memory, h_n = self.rnn(self.embed(src))  # (B, S, 2H), (2, B, H)
        state = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=-1)))
        return memory, state[None]  # (1, B, H)


# --- scores ------------------------------------------------------------------


class AdditiveScore(nn.Module):
    """Bahdanau's score: e_s = vᵀ tanh(W_q q + W_k k_s).

    A one-hidden-layer network of the query and one key; it needs no
    relation between their sizes.

    Args:
        query_size, key_size: widths of the decoder and encoder states.
        attn_size: width of the hidden layer (the length of v).

    Shapes:
        query: (B, Q); keys: (B, S, K); returns scores (B, S).
    """

    def __init__(self, query_size: int, key_size: int, attn_size: int = 64):
        super().__init__()
        self.W_q = nn.Linear(check_int("query_size", query_size, low=1),
                             check_int("attn_size", attn_size, low=1),
                             bias=False)  # fmt: skip
        self.W_k = nn.Linear(check_int("key_size", key_size, low=1), attn_size)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        query, keys = _check_query_keys(query, keys, self.W_q, self.W_k)
        hidden = torch.tanh(self.W_q(query)[:, None] + self.W_k(keys))
        return self.v(hidden)[..., 0]  # (B, S)


class GeneralScore(nn.Module):
    """Luong's "general" score: e_s = qᵀ W k_s.

    Shapes:
        query: (B, Q); keys: (B, S, K); returns scores (B, S).
    """

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.W = nn.Linear(check_int("key_size", key_size, low=1),
                           check_int("query_size", query_size, low=1),
                           bias=False)  # fmt: skip

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        query, keys = _check_query_keys(query, keys, None, self.W)
        return (self.W(keys) @ query[..., None])[..., 0]  # (B, S)


class DotScore(nn.Module):
    """Luong's "dot" score: e_s = qᵀ k_s, or qᵀ k_s / √d if ``scaled``.

    It has no parameters, so the query and the keys must have the same
    width d. Scaled, it is the Transformer's score (Vaswani et al. 2017).

    Shapes:
        query: (B, d); keys: (B, S, d); returns scores (B, S).
    """

    def __init__(self, scaled: bool = False):
        super().__init__()
        self.scaled = bool(scaled)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        query, keys = _check_query_keys(query, keys, None, None)
        if query.shape[-1] != keys.shape[-1]:
            raise ValueError(
                f"the dot score needs query and keys of the same width, got "
                f"query of width {query.shape[-1]} and keys of width "
                f"{keys.shape[-1]} (use the general or additive score)"
            )
        scores = (keys @ query[..., None])[..., 0]  # (B, S)
        return scores / math.sqrt(query.shape[-1]) if self.scaled else scores


def _check_query_keys(query, keys, W_q, W_k):
    check_tensor("query", query, ndim=2, floating=True)
    check_tensor("keys", keys, ndim=3, floating=True, nonempty=True)
    if keys.shape[0] != query.shape[0]:
        raise ValueError(
            f"query and keys must have the same batch size, got "
            f"{query.shape[0]} and {keys.shape[0]}"
        )
    for name, x, layer in (("query", query, W_q), ("keys", keys, W_k)):
        if layer is not None and x.shape[-1] != layer.in_features:
            raise ValueError(
                f"{name} must have width {layer.in_features} (the size the "
                f"score was built for), got width {x.shape[-1]}"
            )
    return query, keys


SCORES = {"additive": AdditiveScore, "general": GeneralScore, "dot": DotScore}

# --- normalizers: scores → weights -------------------------------------------


class _Argmax(torch.autograd.Function):
    """One-hot arg-max; its derivative, zero wherever it exists."""

    @staticmethod
    def forward(ctx, scores):
        index = scores.argmax(-1)
        return F.one_hot(index, scores.shape[-1]).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        # a small change of the scores does not move the arg-max (except on
        # the measure-zero set of ties), so the output does not change
        return torch.zeros_like(grad)


def argmax_weights(scores: Tensor) -> Tensor:
    """a = onehot(argmax_s e_s) = lim_{τ→0} softmax(e / τ); ∂a/∂e = 0."""
    return _Argmax.apply(scores)


def straight_through(scores: Tensor, tau: float = 1.0) -> Tensor:
    """The arg-max forward and the gradient of softmax(e / τ) backward.

    a = onehot(argmax e) + p − stop_gradient(p),  p = softmax(e / τ):
    the value is the one-hot, the derivative is p's.
    """
    soft = torch.softmax(scores / tau, dim=-1)
    hard = F.one_hot(scores.argmax(-1), scores.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


def gumbel_noise(like: Tensor) -> Tensor:
    """Gumbel(0, 1) noise g = −log E, E ~ Exp(1), drawn as PyTorch does."""
    return -torch.empty_like(like).exponential_().log()


def gumbel_softmax(
    scores: Tensor,
    tau: float = 1.0,
    hard: bool = False,
    noise: Tensor | None = None,
) -> Tensor:
    """softmax((e + g) / τ) with Gumbel noise g; one-hot forward if ``hard``.

    Its arg-max is a sample of the categorical softmax(e) (the Gumbel-max
    trick); as τ → 0 the sample becomes one-hot. ``hard`` returns the
    one-hot and passes the soft sample's gradient (straight-through).
    ``noise`` defaults to ``gumbel_noise(scores)``, so under the same seed
    the result equals ``torch.nn.functional.gumbel_softmax``.
    """
    check_number("tau", tau, low=0, low_open=True)
    if noise is None:
        noise = gumbel_noise(scores)
    check_tensor("noise", noise, shape=tuple(scores.shape), floating=True)
    soft = torch.softmax((scores + noise) / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(-1)
    one_hot = F.one_hot(index, scores.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


NORMALIZERS = ("softmax", "argmax", "straight_through", "gumbel")


def normalize(
    scores: Tensor,
    normalizer: str = "softmax",
    tau: float = 1.0,
    training: bool = True,
) -> Tensor:
    """Attention weights from scores: each row sums to one.

    ``gumbel`` adds noise only in training; at evaluation it is the arg-max
    (the mode), as is ``straight_through`` in both.
    """
    check_choice("normalizer", normalizer, NORMALIZERS)
    check_number("tau", tau, low=0, low_open=True)
    if normalizer == "softmax":
        return torch.softmax(scores / tau, dim=-1)
    if normalizer == "argmax" or (normalizer == "gumbel" and not training):
        return argmax_weights(scores)
    if normalizer == "straight_through":
        return straight_through(scores, tau)
    return gumbel_softmax(scores, tau, hard=True)


# --- attention ---------------------------------------------------------------


def attend(
    query: Tensor,
    keys: Tensor,
    score: nn.Module,
    normalizer: str = "softmax",
    tau: float = 1.0,
    mask: Tensor | None = None,
    training: bool = True,
) -> tuple[Tensor, Tensor]:
    """The context c = Σ_s a_s k_s, with a = normalize(score(q, k)).

    The encoder states serve as both keys and values (as in Bahdanau et al.
    and Luong et al.). ``mask`` is True where a key may be attended to
    (False on padding); masked scores are −∞, so they get weight zero.

    Shapes:
        query: (B, Q); keys: (B, S, K); mask: (B, S) bool.
        returns context (B, K) and weights (B, S).
    """
    check_number("tau", tau, low=0, low_open=True)
    scores = score(query, keys)  # (B, S)
    if mask is not None:
        check_tensor("mask", mask, shape=tuple(scores.shape))
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must have dtype bool, got {mask.dtype}")
        if not mask.any(-1).all():
            raise ValueError("mask must leave at least one key in every row")
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = normalize(scores, normalizer, tau, training)
    context = (weights[:, None] @ keys)[:, 0]  # (B, K)
    return context, weights


@dataclass
class AttentionConfig:
    """How the decoder attends."""

    score: str = "additive"  # "additive", "general" or "dot"
    normalizer: str = "softmax"  # one of NORMALIZERS
    tau: float = 1.0  # temperature of the softmax (or its gradient)
    attn_size: int = 64  # the additive score's hidden width

    def __post_init__(self):
        check_choice("score", self.score, tuple(SCORES))
        check_choice("normalizer", self.normalizer, NORMALIZERS)
        check_number("tau", self.tau, low=0, low_open=True)
        check_int("attn_size", self.attn_size, low=1)


class AttentionDecoder(Decoder):
    """A ``Decoder`` whose step reads the encoder's states through attention.

    Luong et al.'s global attention: the recurrent step first, then
    attention with the new state h_t as the query,

        c_t = Σ_s a_ts m_s,  a_t = normalize(score(h_t, m)),
        h̃_t = tanh(W_c [c_t; h_t]),  logits = W_o h̃_t.

    Args:
        vocab_size, embed_size, hidden_size, cell: as ``Decoder``.
        memory_size: the width of the encoder's states.
        config: the score, the normalizer and the temperature.

    Shapes:
        token: (B,) int64; memory: (B, S, memory_size); logits: (B, V).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 32,
        hidden_size: int = 64,
        memory_size: int = 64,
        config: AttentionConfig | None = None,
        cell: str = "gru",
    ):
        super().__init__(vocab_size, embed_size, hidden_size, cell)
        self.config = config = config or AttentionConfig()
        check_int("memory_size", memory_size, low=1)
        if config.score == "additive":
            self.score = AdditiveScore(
                hidden_size, memory_size, config.attn_size
            )
        elif config.score == "general":
            self.score = GeneralScore(hidden_size, memory_size)
        else:
            if hidden_size != memory_size:
                raise ValueError(
                    f"the dot score needs hidden_size == memory_size, got "
                    f"{hidden_size} and {memory_size}"
                )
            self.score = DotScore()
        self.combine = nn.Linear(memory_size + hidden_size, hidden_size)
        self.recorded: list[Tensor] | None = None

    def step(self, token: Tensor, state, memory: Tensor):
        out, state = self.rnn(self.embed(token)[:, None], state)  # (B, 1, H)
        h = out[:, 0]
        c = self.config
        context, weights = attend(
            h, memory, self.score, c.normalizer, c.tau, None, self.training
        )
        if self.recorded is not None:
            self.recorded.append(weights.detach())
        h_tilde = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
        return self.head(h_tilde), state


@contextmanager
def recording(decoder: AttentionDecoder):
    """Collect the weights of every step; yields a list of (B, S) tensors."""
    if not isinstance(decoder, AttentionDecoder):
        raise TypeError(
            f"decoder must be an AttentionDecoder, got "
            f"{type(decoder).__name__}"
        )
    decoder.recorded = weights = []
    try:
        yield weights
    finally:
        decoder.recorded = None


# --- measurements ------------------------------------------------------------


def alignment_accuracy(weights: Tensor, target_positions: Tensor) -> float:
    """Fraction of steps whose most-attended key is the right one.

    Shapes:
        weights: (B, T, S); target_positions: (T,) or (B, T) int64.
    """
    check_tensor("weights", weights, ndim=3, floating=True)
    hit = weights.argmax(-1) == target_positions
    return hit.float().mean().item()


def score_gradient_norm(model: nn.Module, batch) -> float:
    """‖∂L/∂θ_score‖ for one batch: the gradient that reaches the scores.

    ``model`` is an ``EncoderDecoder`` with an ``AttentionDecoder``;
    ``batch`` is ((src, tgt_in), tgt) as ``fit`` reads it.
    """
    (src, tgt_in), tgt = batch
    model.zero_grad()
    logits = model(src, tgt_in)
    F.cross_entropy(logits.flatten(0, 1), tgt.flatten()).backward()
    grads = [  # in float64: squares of tiny float32 gradients underflow
        p.grad.double().pow(2).sum()
        for p in model.decoder.score.parameters()
        if p.grad is not None
    ]
    model.zero_grad()
    return torch.stack(grads).sum().sqrt().item() if grads else 0.0

"""The Transformer from scratch, and a character-level GPT.

Scaled dot-product attention, multi-head attention, the pre-LN Transformer
block, positions (sinusoidal, learned, and rotary as an aside), a GPT
language model with a key-value cache for generation, and a timing helper
for the cost of attention against the sequence length.

Papers: Vaswani et al. (2017), "Attention Is All You Need" (attention,
multi-head attention, sinusoidal positions); Radford et al. (2019), GPT-2
(the decoder-only language model, pre-LN blocks); Xiong et al. (2020), "On
Layer Normalization in the Transformer Architecture" (pre-LN); Su et al.
(2021), RoFormer (rotary positions). The GPT follows Karpathy's nanoGPT
(github.com/karpathy/nanoGPT, ``model.py``).

Checked against (``tests/attention/test_transformer.py``):
``torch.nn.functional.scaled_dot_product_attention`` (with and without a
causal mask), ``torch.nn.MultiheadAttention`` (batch_first, weights copied)
and ``torch.nn.TransformerEncoderLayer(norm_first=True, batch_first=True,
dropout=0)`` (weights copied); generation with the cache gives the same
tokens as generation without it.

The GPT has the interface of ``dlbook.sequences.char_lm.CharLSTM``:
``model(idx)`` returns logits and ``model(idx, cache)`` returns
``(logits, cache)``, so ``char_lm.generate`` and ``char_lm.evaluate_loss``
work on it unchanged, and the two models compare on the same windows.

Chapter: ``book/attention/transformer.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_probability,
    check_tensor,
)

# --- attention ---------------------------------------------------------------


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    return_weights: bool = False,
):
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V.

    Each query (a row of Q) is compared with every key by a dot product,
    scaled by 1/√d so that the scores keep unit variance when q and k do;
    the softmax turns each row of scores into weights that sum to one, and
    the output is the weighted mean of the values. With ``causal=True``, M
    is −∞ above the diagonal: position i sees keys 0, ..., i only. When
    there are more keys than queries (a cache holds the past), query i is
    the (S − T + i)-th position, so it sees the first S − T + i + 1 keys.

    Shapes:
        q: (..., T, d); k: (..., S, d); v: (..., S, d_v).
        returns (..., T, d_v), and the weights (..., T, S) if asked.
    """
    check_tensor("q", q, floating=True)
    check_tensor("k", k, ndim=q.ndim, floating=True)
    check_tensor("v", v, ndim=q.ndim, floating=True)
    T, S, d = q.shape[-2], k.shape[-2], q.shape[-1]
    if k.shape[-1] != d or v.shape[-2] != S:
        raise ValueError(
            f"k must be (..., S, {d}) and v (..., S, d_v), got k of shape "
            f"{tuple(k.shape)} and v of shape {tuple(v.shape)}"
        )
    if causal and S < T:
        raise ValueError(
            f"a causal mask needs at least as many keys as queries, got "
            f"{S} keys for {T} queries"
        )
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., T, S)
    if causal:
        future = torch.ones(T, S, dtype=torch.bool, device=q.device)
        future = future.triu(S - T + 1)  # key j > query's position
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = weights @ v  # (..., T, d_v)
    return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention, laid out as ``nn.MultiheadAttention``.

    head_i = Attention(X W_i^Q, X W_i^K, X W_i^V),
    MHA(X) = [head_1, ..., head_h] W^O.

    The h projections of width d = d_model / h are stored stacked, as one
    (3 d_model, d_model) matrix ``in_proj`` (queries, keys, values), so the
    weights of ``nn.MultiheadAttention`` copy over one to one.

    Args:
        d_model: the width of the tokens.
        n_heads: h, the number of heads; must divide ``d_model``.

    Shapes:
        x: (B, T, d_model) → (B, T, d_model). With a ``cache`` (a dict that
        holds this layer's past keys and values, updated in place), x holds
        only the new positions. With ``return_weights=True``, also the
        attention weights (B, n_heads, T, S) (for attention rollout).
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        check_int("n_heads", n_heads, low=1)
        check_int("d_model", d_model, low=1)
        if d_model % n_heads:
            raise ValueError(
                f"d_model must be divisible by n_heads={n_heads}, got "
                f"d_model={d_model}"
            )
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: Tensor,
        causal: bool = False,
        cache: dict | None = None,
        return_weights: bool = False,
    ):
        check_tensor("x", x, ndim=3, floating=True)
        B, T, D = x.shape
        if D != self.out_proj.in_features:
            raise ValueError(
                f"x must have {self.out_proj.in_features} features in its "
                f"last dimension, got {D}"
            )
        q, k, v = self.in_proj(x).split(D, dim=-1)  # each (B, T, D)
        q, k, v = (
            t.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
            for t in (q, k, v)
        )  # (B, H, T, d)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)  # (B, H, S, d)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        out, weights = scaled_dot_product_attention(
            q, k, v, causal=causal, return_weights=True
        )  # (B, H, T, d), (B, H, T, S)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, D))  # (B, T, D)
        return (out, weights) if return_weights else out


# --- the block ---------------------------------------------------------------


class Block(nn.Module):
    """A pre-LN Transformer block: attention and an MLP, each residual.

    x ← x + MHA(LN₁(x)),    x ← x + W₂ φ(W₁ LN₂(x)).

    Normalizing the input of each sublayer (pre-LN, GPT-2; Xiong et al.
    2020) rather than the sum (post-LN, the original Transformer) keeps an
    identity path from input to output, so deep stacks train without
    warm-up. φ is ReLU (``nn.TransformerEncoderLayer``'s default) or GELU
    (GPT-2's).

    Args:
        d_model, n_heads: as ``MultiHeadAttention``.
        d_ff: the MLP's hidden width (4 d_model in GPT-2).
        dropout: after the attention and after the MLP.
        activation: "relu" or "gelu".
        eps: the LayerNorms' ε (PyTorch's 1e-5; ViT's is 1e-6).

    Shapes:
        x: (B, T, d_model) → (B, T, d_model). With ``return_weights=True``,
        also the attention weights (B, n_heads, T, S).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "gelu",
        eps: float = 1e-5,
    ):
        super().__init__()
        check_int("d_ff", d_ff, low=1)
        check_probability("dropout", dropout, allow_one=False)
        check_choice("activation", activation, ("relu", "gelu"))
        self.ln1 = nn.LayerNorm(d_model, eps=eps)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model, eps=eps)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.fc2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        causal: bool = False,
        cache: dict | None = None,
        return_weights: bool = False,
    ):
        a, weights = self.attn(self.ln1(x), causal, cache, return_weights=True)
        x = x + self.drop(a)
        x = x + self.drop(self.fc2(self.act(self.fc1(self.ln2(x)))))
        return (x, weights) if return_weights else x


@torch.no_grad()
def copy_from_torch(ours: nn.Module, theirs: nn.Module) -> nn.Module:
    """Copy the weights of PyTorch's layer into ours, name by name.

    ``ours`` is a ``MultiHeadAttention`` (from ``nn.MultiheadAttention``)
    or a ``Block`` (from ``nn.TransformerEncoderLayer``). Returns ``ours``.
    """
    if isinstance(ours, MultiHeadAttention):
        if not isinstance(theirs, nn.MultiheadAttention):
            raise TypeError(
                f"theirs must be an nn.MultiheadAttention, got "
                f"{type(theirs).__name__}"
            )
        pairs = {
            "in_proj.weight": theirs.in_proj_weight,
            "in_proj.bias": theirs.in_proj_bias,
            "out_proj.weight": theirs.out_proj.weight,
            "out_proj.bias": theirs.out_proj.bias,
        }
    elif isinstance(ours, Block):
        if not isinstance(theirs, nn.TransformerEncoderLayer):
            raise TypeError(
                f"theirs must be an nn.TransformerEncoderLayer, got "
                f"{type(theirs).__name__}"
            )
        copy_from_torch(ours.attn, theirs.self_attn)
        names = {"ln1": "norm1", "ln2": "norm2", "fc1": "linear1"}
        names["fc2"] = "linear2"
        pairs = {
            f"{a}.{p}": getattr(getattr(theirs, b), p)
            for a, b in names.items()
            for p in ("weight", "bias")
        }
    else:
        raise TypeError(
            f"ours must be a MultiHeadAttention or a Block, got "
            f"{type(ours).__name__}"
        )
    own = dict(ours.named_parameters())
    for name, value in pairs.items():
        if own[name].shape != value.shape:
            raise ValueError(
                f"{name}: shape {tuple(own[name].shape)} cannot take "
                f"{tuple(value.shape)}"
            )
        own[name].copy_(value)
    return ours


# --- positions ---------------------------------------------------------------


def sinusoidal_positions(n_positions: int, d_model: int) -> Tensor:
    """The fixed position codes of Vaswani et al. (2017).

    P[t, 2i] = sin(t / 10000^(2i/d)),  P[t, 2i+1] = cos(t / 10000^(2i/d)):
    each pair of dimensions is a clock at its own frequency, from one turn
    every 2π positions down to one every 10000·2π.

    Shapes:
        returns (n_positions, d_model).
    """
    check_int("n_positions", n_positions, low=1)
    check_int("d_model", d_model, low=2)
    if d_model % 2:
        raise ValueError(f"d_model must be even, got {d_model}")
    t = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d_model, 2) / d_model)
    P = torch.zeros(n_positions, d_model)
    P[:, 0::2] = torch.sin(t * freq)
    P[:, 1::2] = torch.cos(t * freq)
    return P


def rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (Su et al. 2021): rotate pairs by angles.

    The pair (x_{2i}, x_{2i+1}) of the vector at position m is rotated by
    the angle m θ_i, θ_i = base^(−2i/d). Rotations compose, so
    ⟨rope(q, m), rope(k, n)⟩ depends on m − n only: applied to queries and
    keys, it makes the attention scores depend on relative positions.

    Shapes:
        x: (..., T, d) with d even; positions: (T,). Returns (..., T, d).
    """
    check_tensor("x", x, floating=True)
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"x must have an even last dimension, got {d}")
    check_tensor("positions", positions, ndim=1, shape=(x.shape[-2],))
    theta = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)  # (d/2,)
    angle = positions.to(x.dtype)[:, None] * theta  # (T, d/2)
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)  # pairs back in place: (..., T, d)


# --- the GPT -----------------------------------------------------------------


@dataclass
class GPTConfig:
    """The hyperparameters of a GPT (nanoGPT's names)."""

    vocab_size: int  # V: characters for a character-level model
    block_size: int = 64  # the longest context, the size of the position table
    n_layer: int = 2  # blocks
    n_head: int = 4  # heads per block
    n_embd: int = 64  # d_model
    dropout: float = 0.0  # after attention, MLP and the embeddings
    positions: str = "learned"  # "learned" or "sinusoidal"


class GPT(nn.Module):
    """A decoder-only Transformer language model (GPT-2's layout).

    h₀ = E[x_t] + P[t];  h_l = Block_l(h_{l−1}) with a causal mask;
    p(x_{t+1} | x_≤t) = softmax(W LN(h_L,t) + b).

    Args:
        config: a ``GPTConfig``.

    Shapes:
        idx: (B, T) int64 with T ≤ block_size. ``forward(idx)`` returns the
        logits (B, T, V). ``forward(idx, cache)`` also returns the updated
        cache, as ``CharLSTM`` returns its state: pass ``None`` to start
        one, then feed only the new tokens (``KVCache``).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = config
        check_int("vocab_size", c.vocab_size, low=1)
        check_int("block_size", c.block_size, low=1)
        check_int("n_layer", c.n_layer, low=1)
        check_choice("positions", c.positions, ("learned", "sinusoidal"))
        self.config = c
        self.tok = nn.Embedding(c.vocab_size, c.n_embd)
        if c.positions == "learned":
            self.pos = nn.Parameter(torch.zeros(c.block_size, c.n_embd))
            nn.init.normal_(self.pos, std=0.02)
        else:
            table = sinusoidal_positions(c.block_size, c.n_embd)
            self.register_buffer("pos", table, persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, 4 * c.n_embd, c.dropout, "gelu")
            for _ in range(c.n_layer)
        )
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # GPT-2's initialization (as nanoGPT): N(0, 0.02) weights, zero
        # biases, and the projections that write into the residual stream
        # scaled by 1/√(2L), so the stream's variance does not grow with L
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.out_proj, block.fc2):
                nn.init.normal_(
                    proj.weight, std=0.02 / math.sqrt(2 * len(self.blocks))
                )

    def forward(self, idx: Tensor, *state):
        check_tensor("idx", idx, ndim=2, floating=False, nonempty=True)
        V, block = self.config.vocab_size, self.config.block_size
        if idx.min() < 0 or idx.max() >= V:
            raise ValueError(
                f"idx must hold ids in [0, {V}), got values from "
                f"{int(idx.min())} to {int(idx.max())}"
            )
        if not state:
            return self._run(idx, 0, None)
        cache = state[0] if state[0] is not None else KVCache(self)
        if cache.length + idx.shape[1] > block:
            # the window slides: every position moves, so recompute it
            idx = torch.cat([cache.tokens, idx], dim=1)[:, -block:]
            cache.clear()
        logits = self._run(idx, cache.length, cache.layers)
        cache.tokens = torch.cat([cache.tokens, idx], dim=1)
        return logits, cache

    def _run(self, idx: Tensor, start: int, caches) -> Tensor:
        T = idx.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(
                f"idx must be at most block_size="
                f"{self.config.block_size} long, got {start + T}"
            )
        x = self.drop(self.tok(idx) + self.pos[start : start + T])
        for i, block in enumerate(self.blocks):
            x = block(x, True, None if caches is None else caches[i])
        return self.head(self.ln_f(x))  # (B, T, V)


class KVCache:
    """The keys and values of every layer for the tokens seen so far.

    At step t a causal model's keys and values of positions < t do not
    change, so generation stores them and computes only the new
    position's: one query against t keys, instead of a forward pass over
    all t positions. ``tokens`` keeps the ids, to recompute the window
    when it slides past ``block_size``.
    """

    def __init__(self, model: GPT):
        self.layers = [{} for _ in model.blocks]
        self.tokens = torch.zeros(1, 0, dtype=torch.long)

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def clear(self) -> None:
        for layer in self.layers:
            layer.clear()
        self.tokens = self.tokens[:, :0]


@torch.no_grad()
def generate_greedy(
    model: GPT, idx: Tensor, length: int, use_cache: bool = True
) -> Tensor:
    """Append ``length`` arg-max tokens to ``idx``, with or without a cache.

    Without the cache each step runs the model on the last ``block_size``
    tokens (nanoGPT's ``generate``); with it, each step feeds one token.

    Shapes:
        idx: (B, T) int64 → (B, T + length).
    """
    check_int("length", length, low=1)
    check_tensor("idx", idx, ndim=2, floating=False, nonempty=True)
    was = model.training
    model.eval()
    block = model.config.block_size
    if use_cache:
        if idx.shape[0] != 1:
            raise ValueError(f"idx must hold one sequence, got {len(idx)}")
        logits, cache = model(idx[:, -block:], None)
    out = idx
    for _ in range(length):
        if not use_cache:
            logits = model(out[:, -block:])
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out = torch.cat([out, nxt], dim=1)
        if use_cache:
            logits, cache = model(nxt, cache)
    model.train(was)
    return out


# --- cost --------------------------------------------------------------------


def time_attention(
    T: int, d: int = 64, n_heads: int = 4, batch: int = 1, repeats: int = 3
) -> float:
    """Seconds for one causal multi-head attention over T positions.

    Times ``scaled_dot_product_attention`` alone (no projections) on random
    (batch, n_heads, T, d) queries, keys and values; the best of
    ``repeats`` runs, after one warm-up run.
    """
    check_int("T", T, low=1)
    check_int("repeats", repeats, low=1)
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, batch, n_heads, T, d, generator=g)
    scaled_dot_product_attention(q, k, v, causal=True)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        scaled_dot_product_attention(q, k, v, causal=True)
        best = min(best, time.perf_counter() - t0)
    return best


def score_bytes(T: int, n_heads: int = 4, batch: int = 1) -> int:
    """Bytes of the float32 score matrix Q Kᵀ: batch · heads · T² · 4."""
    return batch * n_heads * T * T * 4


__all__ = [
    "Block",
    "GPT",
    "GPTConfig",
    "KVCache",
    "MultiHeadAttention",
    "copy_from_torch",
    "generate_greedy",
    "rope",
    "scaled_dot_product_attention",
    "score_bytes",
    "sinusoidal_positions",
    "time_attention",
]

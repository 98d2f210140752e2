"""The LSTM and the GRU, from their gate equations.

The long short-term memory (Hochreiter & Schmidhuber 1997, "Long Short-Term
Memory", Neural Computation 9; the forget gate: Gers, Schmidhuber & Cummins
2000) adds a cell state c_t that is updated additively, c_t = f_t ⊙ c_{t-1}
+ i_t ⊙ g_t, so the gradient along the cell path is multiplied by the forget
gate rather than by a weight matrix and a squashing derivative at every step.
The gated recurrent unit (Cho et al. 2014, "Learning Phrase Representations
using RNN Encoder-Decoder for Statistical Machine Translation", EMNLP) merges
the cell and hidden states and interpolates between the old state and a
candidate with an update gate.

Both are cells on the unrolling skeleton of ``dlbook.sequences.rnn``
(``Recurrent``: stacked layers, both directions), with PyTorch's gate order
and parameter layout, so that the state dict of ``torch.nn.LSTM`` or
``torch.nn.GRU`` loads into them unchanged.

Checked against: ``torch.nn.LSTM`` and ``torch.nn.GRU`` with copied weights,
and ``torch.nn.LSTMCell`` / ``torch.nn.GRUCell`` over random inputs
(Hypothesis): ``tests/sequences/test_lstm.py``.

Chapter: ``book/sequences/lstm.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlbook.checks import check_number
from dlbook.sequences.rnn import Recurrent, State


class LSTM(Recurrent):
    """The LSTM layer, equal to ``torch.nn.LSTM`` (same arguments and shapes).

    With z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh split into four blocks
    of H rows (PyTorch's order: input, forget, cell, output):

        i_t = σ(z_i),  f_t = σ(z_f),  g_t = tanh(z_g),  o_t = σ(z_o),
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,
        h_t = o_t ⊙ tanh(c_t).

    The state is the pair (h, c); ``hx`` and ``h_n`` are pairs of
    (L·D, B, H) tensors, as in PyTorch.
    """

    gates = 4
    state_size = 2

    def cell(self, x, state, w_ih, w_hh, b_ih, b_hh) -> State:
        h, c = state
        z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H)
        z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
        i, f, o = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.sigmoid(z_o)
        c = f * c + i * torch.tanh(z_g)  # the additive cell path
        return o * torch.tanh(c), c


class GRU(Recurrent):
    """The GRU layer, equal to ``torch.nn.GRU`` (same arguments and shapes).

    PyTorch's blocks are reset, update, new (r, z, n):

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr),
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz),
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn)),
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}.

    The reset gate multiplies W_hn h_{t-1} + b_hn after the product, as in
    PyTorch and cuDNN (Cho et al. apply it to h_{t-1} before it).
    """

    gates = 3

    def cell(self, x, state, w_ih, w_hh, b_ih, b_hh) -> State:
        (h,) = state
        a_r, a_z, a_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
        u_r, u_z, u_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(a_r + u_r), torch.sigmoid(a_z + u_z)
        n = torch.tanh(a_n + r * u_n)
        return ((1 - z) * n + z * h,)


def set_forget_bias(module: torch.nn.Module, value: float) -> torch.nn.Module:
    """Set the forget-gate bias of every LSTM layer in ``module`` to ``value``.

    PyTorch keeps two biases per gate (b_ih and b_hh); the first holds
    ``value`` and the second 0, so their sum is ``value``. A bias of 1 or
    more starts f_t near 1, which keeps the cell path open from the first
    update (Gers et al. 2000; Jozefowicz, Zaremba & Sutskever 2015).
    Works on our ``LSTM`` and on ``torch.nn.LSTM``; returns ``module``.
    """
    value = check_number("value", value)
    found = False
    for name, p in module.named_parameters():
        is_lstm = (
            isinstance(_owner(module, name), (LSTM, torch.nn.LSTM))
            and "bias_" in name
        )
        if is_lstm:
            found = True
            size = p.shape[0] // 4
            with torch.no_grad():
                p[size : 2 * size] = value if "bias_ih" in name else 0.0
    if not found:
        raise ValueError("module has no LSTM layer with biases to set")
    return module


def _owner(module: torch.nn.Module, name: str) -> torch.nn.Module:
    """The sub-module that holds parameter ``name``."""
    for part in name.split(".")[:-1]:
        module = getattr(module, part)
    return module

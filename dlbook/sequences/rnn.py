"""Recurrent networks and backpropagation through time, from scratch.

The Elman network (Elman 1990, "Finding Structure in Time", Cognitive
Science 14) keeps a hidden state h_t that it updates from the previous state
and the current input with the same weights at every step. Training it means
differentiating through the unrolled loop: backpropagation through time
(Werbos 1990, "Backpropagation Through Time: What It Does and How to Do It",
Proc. IEEE 78). Its gradients vanish or explode with the number of steps
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013, "On the
difficulty of training recurrent neural networks", ICML), which gradient
clipping and truncated BPTT manage.

Contents, in reading order:

* the unrolling skeleton shared with the LSTM and GRU (``Recurrent``: stacked
  layers, both directions, PyTorch's parameter names) and the Elman cell
  (``ElmanRNN``);
* BPTT written out (``elman_forward``, ``elman_backward``, and ``elman_bptt``,
  an autograd function whose backward pass is ours);
* how gradients shrink or grow across time (``hidden_gradient_norms``),
  gradient clipping (``clip_grad_norm``), truncated BPTT
  (``TruncatedBPTT``, ``StreamChunks``);
* the architectures of the chapter: ``SequenceTagger`` (many-to-one and
  aligned many-to-many), ``SeedToSequence`` (one-to-many), the
  encoder-decoder (``Encoder``, ``Decoder``, ``EncoderDecoder``) and the 1-D
  convolutional ``ConvClassifier`` it is compared with.

Checked against: ``torch.nn.RNN`` with copied weights (one and two layers,
batch-first or not, bidirectional), and our BPTT against autograd and
against central differences (``torch.autograd.gradcheck``):
``tests/sequences/test_rnn.py``.

Chapter: ``book/sequences/rnn.md``. The encoder-decoder is reused by the
attention part (``book/attention/``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbook.checks import check_choice, check_int, check_tensor

State = tuple[Tensor, ...]  # (h,) for Elman and GRU, (h, c) for the LSTM

# --- the unrolling skeleton --------------------------------------------------


class Recurrent(nn.Module):
    """A stacked, optionally bidirectional recurrent layer, unrolled in Python.

    Every subclass defines one step, ``cell``; this class runs it over time,
    layer after layer and in both directions, exactly as PyTorch's recurrent
    modules do. The parameters have PyTorch's names and shapes
    (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, and
    ``..._reverse`` for the backward direction), so a state dict of
    ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` loads into the matching subclass.

    Args:
        input_size: features per time step, I.
        hidden_size: units in the hidden state, H.
        num_layers: stacked layers; layer l > 0 reads layer l - 1's outputs.
        bias: whether the layer has the biases b_ih and b_hh.
        batch_first: inputs and outputs are (B, T, ·) instead of (T, B, ·).
        bidirectional: also run every layer from the last step to the first
            and concatenate both directions' outputs.

    Shapes:
        x: (T, B, I), or (B, T, I) if ``batch_first``; T ≥ 1.
        hx: (L·D, B, H) for each tensor of the state (D = 2 if
            bidirectional, else 1); zeros if omitted.
        output: (T, B, D·H) (or batch-first): the last layer's h_t.
        h_n: (L·D, B, H) for each tensor of the state: the final states.
    """

    gates = 1  # weight_ih has gates · H rows (4 for the LSTM, 3 for the GRU)
    state_size = 1  # tensors in the state: h, or (h, c) for the LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.input_size = check_int("input_size", input_size, low=1)
        self.hidden_size = check_int("hidden_size", hidden_size, low=1)
        self.num_layers = check_int("num_layers", num_layers, low=1)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.directions = 2 if bidirectional else 1
        rows = self.gates * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.directions
            for reverse in range(self.directions):
                sfx = self._suffix(layer, reverse)
                shapes = {
                    "weight_ih": (rows, width),
                    "weight_hh": (rows, hidden_size),
                }
                if bias:
                    shapes.update(bias_ih=(rows,), bias_hh=(rows,))
                for name, shape in shapes.items():
                    self.register_parameter(
                        name + sfx, nn.Parameter(torch.empty(shape))
                    )
        self.reset_parameters()

    @staticmethod
    def _suffix(layer: int, reverse: int) -> str:
        return f"_l{layer}" + ("_reverse" if reverse else "")

    def reset_parameters(self) -> None:
        """PyTorch's initialization: every weight uniform in ±1/√H."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def weights(self, layer: int = 0, reverse: bool = False):
        """(W_ih, W_hh, b_ih, b_hh) of one layer and direction."""
        sfx = self._suffix(layer, int(reverse))
        get = lambda name: getattr(self, name + sfx, None)  # noqa: E731
        return (
            get("weight_ih"),
            get("weight_hh"),
            get("bias_ih"),
            get("bias_hh"),
        )

    def cell(self, x: Tensor, state: State, w_ih, w_hh, b_ih, b_hh) -> State:
        """One time step: the next state from the input x_t (B, ·)."""
        raise NotImplementedError

    def step(
        self, x: Tensor, state: State, layer: int = 0, reverse: bool = False
    ) -> State:
        """``cell`` with the weights of one layer and direction."""
        return self.cell(x, state, *self.weights(layer, reverse))

    def zero_state(self, batch: int) -> State:
        """Zeros for one layer and direction: (h,) or (h, c), each (B, H)."""
        w = self.weight_hh_l0
        shape = (check_int("batch", batch, low=1), self.hidden_size)
        return tuple(w.new_zeros(shape) for _ in range(self.state_size))

    def initial_state(self, hx, batch: int, like: Tensor) -> list[State]:
        """The state of every layer and direction: ``hx`` checked, or zeros."""
        shape = (self.num_layers * self.directions, batch, self.hidden_size)
        if hx is None:
            hx = tuple(like.new_zeros(shape) for _ in range(self.state_size))
        elif self.state_size == 1:
            hx = (check_tensor("hx", hx, shape=shape, floating=True),)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != self.state_size:
                raise TypeError(
                    f"hx must be a tuple of {self.state_size} tensors (h_0, "
                    f"c_0), got {type(hx).__name__}"
                )
            hx = tuple(
                check_tensor(f"hx[{i}]", h, shape=shape, floating=True)
                for i, h in enumerate(hx)
            )
        return [tuple(h[k] for h in hx) for k in range(shape[0])]

    def forward(self, x: Tensor, hx=None):
        check_tensor("x", x, ndim=3, floating=True)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have {self.input_size} features in its last "
                f"dimension, got shape {tuple(x.shape)}"
            )
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError(
                "x must hold a sequence of length at least 1, got length 0"
            )
        states = self.initial_state(hx, batch, x)
        final = []
        for layer in range(self.num_layers):
            outputs = []
            for reverse in range(self.directions):
                state = states[layer * self.directions + reverse]
                order = reversed(range(steps)) if reverse else range(steps)
                hs = [None] * steps
                for t in order:
                    state = self.step(x[t], state, layer, bool(reverse))
                    hs[t] = state[0]
                outputs.append(torch.stack(hs))  # (T, B, H)
                final.append(state)
            x = torch.cat(
                outputs, dim=-1
            )  # (T, B, D·H): the next layer's input
        output = x.transpose(0, 1) if self.batch_first else x
        h_n = tuple(
            torch.stack([s[i] for s in final]) for i in range(self.state_size)
        )
        return output, (h_n[0] if self.state_size == 1 else h_n)


class ElmanRNN(Recurrent):
    """The Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    Same arguments, shapes and parameters as ``torch.nn.RNN`` (see
    ``Recurrent``); ``nonlinearity`` is ``"tanh"`` or ``"relu"``.
    """

    def __init__(self, *args, nonlinearity: str = "tanh", **kwargs):
        self.nonlinearity = check_choice(
            "nonlinearity", nonlinearity, ("tanh", "relu")
        )
        super().__init__(*args, **kwargs)

    def cell(self, x, state, w_ih, w_hh, b_ih, b_hh):
        a = F.linear(x, w_ih, b_ih) + F.linear(state[0], w_hh, b_hh)
        return (torch.tanh(a) if self.nonlinearity == "tanh" else F.relu(a),)


# --- backpropagation through time, written out -------------------------------


def elman_forward(
    x: Tensor, h0: Tensor, W_ih: Tensor, W_hh: Tensor, b: Tensor
) -> Tensor:
    """All hidden states of a one-layer tanh RNN.

    h_t = tanh(a_t),  a_t = W_ih x_t + W_hh h_{t-1} + b,  t = 1, ..., T.

    Shapes:
        x: (T, B, I); h0: (B, H); W_ih: (H, I); W_hh: (H, H); b: (H,).
        returns: (T, B, H), the states h_1, ..., h_T.
    """
    hs, h = [], h0
    for x_t in x:
        h = torch.tanh(x_t @ W_ih.T + h @ W_hh.T + b)
        hs.append(h)
    return torch.stack(hs)


def elman_backward(
    x: Tensor,
    h0: Tensor,
    W_ih: Tensor,
    W_hh: Tensor,
    hs: Tensor,
    dhs: Tensor,
) -> dict[str, Tensor]:
    """Backpropagation through time for ``elman_forward``.

    ``dhs[t]`` is ∂L/∂h_t through the loss alone (zero where the loss does
    not read h_t). Walking back from t = T, the total gradient of h_t adds
    what flows back from step t + 1:

        g_t = dhs[t] + W_hhᵀ δ_{t+1},   δ_t = g_t ⊙ (1 − h_t²),

    and each weight collects δ_t times what it multiplied at step t:
    ∂L/∂W_hh = Σ_t δ_t h_{t-1}ᵀ, ∂L/∂W_ih = Σ_t δ_t x_tᵀ, ∂L/∂b = Σ_t δ_t.

    Returns:
        The gradients of L with respect to x, h0, W_ih, W_hh and b.
    """
    dW_ih, dW_hh = torch.zeros_like(W_ih), torch.zeros_like(W_hh)
    db = torch.zeros_like(hs[0, 0])
    dx = torch.empty_like(x)
    carry = torch.zeros_like(h0)  # W_hhᵀ δ_{t+1}: what step t+1 sends back
    for t in reversed(range(len(x))):
        g = dhs[t] + carry
        delta = g * (1 - hs[t] ** 2)  # (B, H): through the tanh
        h_prev = hs[t - 1] if t > 0 else h0
        dW_ih += delta.T @ x[t]
        dW_hh += delta.T @ h_prev
        db += delta.sum(0)
        dx[t] = delta @ W_ih
        carry = delta @ W_hh
    return {"x": dx, "h0": carry, "W_ih": dW_ih, "W_hh": dW_hh, "b": db}


class ElmanBPTT(torch.autograd.Function):
    """``elman_forward``, differentiated by ``elman_backward``."""

    @staticmethod
    def forward(ctx, x, h0, W_ih, W_hh, b):
        hs = elman_forward(x, h0, W_ih, W_hh, b)
        ctx.save_for_backward(x, h0, W_ih, W_hh, hs)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        g = elman_backward(*ctx.saved_tensors, dhs)
        return g["x"], g["h0"], g["W_ih"], g["W_hh"], g["b"]


def elman_bptt(
    x: Tensor, h0: Tensor, W_ih: Tensor, W_hh: Tensor, b: Tensor
) -> Tensor:
    """The states of ``elman_forward``, differentiated by our BPTT."""
    check_tensor("x", x, ndim=3, floating=True, nonempty=True)
    check_tensor("h0", h0, shape=(x.shape[1], W_hh.shape[0]), floating=True)
    check_tensor("W_ih", W_ih, shape=(W_hh.shape[0], x.shape[2]))
    check_tensor("W_hh", W_hh, shape=(W_hh.shape[0], W_hh.shape[0]))
    check_tensor("b", b, shape=(W_hh.shape[0],))
    return ElmanBPTT.apply(x, h0, W_ih, W_hh, b)


# --- gradients across time, clipping, truncation -----------------------------


def hidden_gradient_norms(
    step: Callable[[Tensor, State], State], x: Tensor, state: State
) -> Tensor:
    """How much the last state depends on each earlier one: ‖∂h_T/∂h_t‖.

    Runs ``step`` over ``x`` from ``state`` and returns, for every sequence
    and every k = T − t steps back, the Frobenius norm of the Jacobian
    ∂h_T/∂h_t divided by √H (so k = 0, the identity, gives 1). The Jacobian
    is computed exactly: each sequence is copied once per hidden unit i, and
    copy i backpropagates h_T[i], which yields row i in one backward pass.

    Args:
        step: ``step(x_t, state) -> state``, the state a tuple with h first
            (``Recurrent.step`` of a layer).
        x: (T, B, I) inputs; state: the initial state, tensors (B, H).

    Returns:
        (B, T) tensor; column k is ‖∂h_T/∂h_{T−k}‖_F / √H.
    """
    check_tensor("x", x, ndim=3, floating=True, nonempty=True)
    steps, batch = x.shape[0], x.shape[1]
    size = state[0].shape[-1]
    x = x.repeat_interleave(size, dim=1)  # (T, B·H, I): one copy per unit
    state = tuple(s.detach().repeat_interleave(size, dim=0) for s in state)
    probes = []
    for t in range(steps):
        state = step(x[t], state)
        probe = torch.zeros_like(state[0], requires_grad=True)
        state = (state[0] + probe, *state[1:])  # ∂h_T/∂probe_t = ∂h_T/∂h_t
        probes.append(probe)
    pick = torch.eye(size, dtype=x.dtype).repeat(
        batch, 1
    )  # copy i reads h_T[i]
    rows = torch.autograd.grad((state[0] * pick).sum(), probes)
    jac = torch.stack(rows).reshape(steps, batch, size, size)  # (T, B, H, H)
    norms = jac.pow(2).sum((2, 3)).sqrt() / math.sqrt(size)
    return norms.flip(0).T  # (B, T), column k = T − 1 − t


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float) -> Tensor:
    """Rescale all gradients together so that their joint norm is ≤ max_norm.

    g ← g · min(1, max_norm / (‖g‖ + 10⁻⁶)), where ‖g‖ is the norm of all
    gradients stacked into one vector (Pascanu et al. 2013, algorithm 1).
    The direction of the update is kept; only its length is capped.

    Returns:
        ‖g‖ before clipping (as ``torch.nn.utils.clip_grad_norm_`` does).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.stack([g.detach().pow(2).sum() for g in grads]).sum().sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.detach().mul_(scale)
    return total


class TruncatedBPTT(nn.Module):
    """Carry a recurrent model's state from one batch to the next, detached.

    Truncated BPTT (Williams & Peng 1990) trains on a long stream cut into
    chunks of k steps: the forward pass continues from where the last chunk
    ended, but the gradient stops at the chunk's start, so memory and time
    per update are those of k steps. The wrapped model is called as
    ``model(x, state) -> (output, state)``; this module keeps the returned
    state, cut from the graph with ``detach``, for the next call.

    The state is reset whenever the module is put in training or evaluation
    mode: ``dlbook.train.fit`` does that at the start of every epoch and
    ``evaluate`` at the start and end of every evaluation, so each pass over
    a stream starts from zeros.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.state = None

    def reset_state(self) -> None:
        self.state = None

    def train(self, mode: bool = True):
        self.reset_state()
        return super().train(mode)

    def forward(self, x: Tensor) -> Tensor:
        if self.state is not None and _batch_of(self.state) != x.shape[0]:
            raise ValueError(
                f"x has a batch of {x.shape[0]} streams but the carried state "
                f"has {_batch_of(self.state)}: every chunk must hold the same "
                "streams (call reset_state() to start over)"
            )
        out, state = self.model(x, self.state)
        self.state = _detach(state)
        return out


def _detach(state):
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


def _batch_of(state) -> int:
    return (state if isinstance(state, Tensor) else state[0]).shape[1]


class StreamChunks:
    """A long sequence as B parallel streams, served in consecutive chunks.

    The sequence of N steps is cut into B equal streams (the remainder is
    dropped), laid side by side as a (B, N // B) grid, and served k steps at
    a time: batch j holds steps j·k to (j + 1)·k of every stream, so each
    stream's chunks arrive in order, as truncated BPTT needs (char-rnn's
    layout).

    Args:
        x, y: the inputs and targets, aligned in their first dimension N.
        batch_size: B, the number of parallel streams.
        chunk: k, the steps per batch.

    Shapes:
        yields (x, y) with x: (B, k, ...) and y: (B, k, ...).
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, chunk: int):
        check_int("batch_size", batch_size, low=1)
        check_int("chunk", chunk, low=1)
        if len(x) != len(y):
            raise ValueError(
                f"x and y must have the same length, got {len(x)} and {len(y)}"
            )
        per = len(x) // batch_size
        if per < chunk:
            raise ValueError(
                f"chunk must be at most the stream length {per} (= {len(x)} "
                f"steps // {batch_size} streams), got {chunk}"
            )
        self.x = x[: per * batch_size].reshape(batch_size, per, *x.shape[1:])
        self.y = y[: per * batch_size].reshape(batch_size, per, *y.shape[1:])
        self.chunk = chunk

    def __len__(self) -> int:
        return self.x.shape[1] // self.chunk

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for j in range(len(self)):
            part = slice(j * self.chunk, (j + 1) * self.chunk)
            yield self.x[:, part], self.y[:, part]


# --- the architectures -------------------------------------------------------

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _recurrent(cell: str, *args, **kwargs) -> nn.Module:
    """PyTorch's batch-first layer of this kind (equal to ours, faster)."""
    check_choice("cell", cell, tuple(CELLS))
    return CELLS[cell](*args, batch_first=True, **kwargs)


def _last_hidden(h_n) -> Tensor:
    """The last layer's final h from h_n (either tensor of an LSTM's pair)."""
    return h_n[0] if isinstance(h_n, tuple) else h_n


class SequenceTagger(nn.Module):
    """Tokens in, one prediction per sequence (many-to-one) or per step.

    Embedding → recurrent layer → linear. Many-to-one reads the final state
    (both directions' if bidirectional); aligned many-to-many reads h_t at
    every step. With T = 1 and a zero initial state it is a one-to-one
    network: one hidden layer tanh(W x + b).

    Args:
        vocab_size: distinct input tokens.
        num_classes: output classes.
        hidden_size, embed_size: widths.
        cell: ``"rnn"``, ``"gru"`` or ``"lstm"``.
        bidirectional: read the sequence in both directions.
        many_to_one: one output per sequence instead of per step.

    Shapes:
        tokens: (B, T) int64. Returns (B, C), or (B, T, C) per step.
        ``forward(tokens, state)`` returns ``(logits, state)`` instead, for
        ``TruncatedBPTT``.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        hidden_size: int = 64,
        embed_size: int = 16,
        cell: str = "gru",
        bidirectional: bool = False,
        many_to_one: bool = False,
    ):
        super().__init__()
        check_int("vocab_size", vocab_size, low=1)
        check_int("num_classes", num_classes, low=1)
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = _recurrent(
            cell, embed_size, hidden_size, bidirectional=bidirectional
        )
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(self.directions * hidden_size, num_classes)
        self.many_to_one = many_to_one

    def forward(self, tokens: Tensor, *state):
        check_tensor("tokens", tokens, ndim=2, floating=False, nonempty=True)
        out, h_n = self.rnn(self.embed(tokens), *state)
        if self.many_to_one:
            h = _last_hidden(h_n)[-self.directions :]  # (D, B, H): last layer
            logits = self.head(torch.cat(list(h), dim=-1))  # (B, C)
        else:
            logits = self.head(out)  # (B, T, C)
        return (logits, h_n) if state else logits


class SequenceRegressor(nn.Module):
    """Real-valued features in, one number per sequence out (many-to-one).

    Recurrent layer → linear map of the last step's state to a scalar.

    Shapes:
        x: (B, T, I) float. Returns (B,).
    """

    def __init__(self, input_size: int, hidden_size: int = 64, cell="gru"):
        super().__init__()
        check_int("input_size", input_size, low=1)
        self.rnn = _recurrent(cell, input_size, hidden_size)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x, ndim=3, floating=True, nonempty=True)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])[:, 0]


class SeedToSequence(nn.Module):
    """One-to-many: a seed vector in, a sequence of T outputs out.

    The seed sets the initial state, h_0 = tanh(W_s s + b_s); the network
    then runs T steps on a constant input and reads y_t = W_y h_t + b_y.

    Shapes:
        seed: (B, S). Returns (B, T, O).
    """

    def __init__(
        self,
        seed_size: int,
        out_size: int,
        steps: int,
        hidden_size: int = 64,
        cell: str = "gru",
    ):
        super().__init__()
        if cell == "lstm":
            raise ValueError("cell must be 'rnn' or 'gru' here, got 'lstm'")
        self.steps = check_int("steps", steps, low=1)
        self.init = nn.Linear(seed_size, hidden_size)
        self.rnn = _recurrent(cell, 1, hidden_size)
        self.head = nn.Linear(hidden_size, out_size)

    def forward(self, seed: Tensor) -> Tensor:
        check_tensor("seed", seed, ndim=2, floating=True, nonempty=True)
        h0 = torch.tanh(self.init(seed))[None]  # (1, B, H)
        go = seed.new_ones(seed.shape[0], self.steps, 1)  # (B, T, 1)
        out, _ = self.rnn(go, h0)
        return self.head(out)  # (B, T, O)


class ConvClassifier(nn.Module):
    """A 1-D convolutional sequence classifier: the recurrence's rival.

    Embedding → ``layers`` convolutions of width k with ReLU, all steps at
    once → global max over time → linear. Its receptive field is
    1 + layers·(k − 1) steps; every step of a layer is computed in parallel.

    Shapes:
        tokens: (B, T) int64. Returns (B, C).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        channels: int = 64,
        kernel_size: int = 3,
        layers: int = 2,
        embed_size: int = 16,
    ):
        super().__init__()
        check_int("kernel_size", kernel_size, low=1)
        check_int("layers", layers, low=1)
        self.embed = nn.Embedding(vocab_size, embed_size)
        convs, width = [], embed_size
        for _ in range(layers):
            convs += [
                nn.Conv1d(width, channels, kernel_size, padding="same"),
                nn.ReLU(),
            ]
            width = channels
        self.convs = nn.Sequential(*convs)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        check_tensor("tokens", tokens, ndim=2, floating=False, nonempty=True)
        z = self.convs(self.embed(tokens).transpose(1, 2))  # (B, C, T)
        return self.head(z.amax(dim=-1))


def sequence_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of per-step logits (B, T, C) against targets (B, T).

    Targets equal to -100 are ignored (PyTorch's ``ignore_index``).
    """
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def sequence_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Fraction of steps whose arg-max is the target, ignoring targets -100."""
    keep = target != -100
    hit = (logits.argmax(-1) == target) & keep
    return hit.sum() / keep.sum().clamp(min=1)


# --- the encoder-decoder -----------------------------------------------------


class Encoder(nn.Module):
    """Reads the source sequence into states: embedding → recurrent layer.

    Shapes:
        src: (B, S) int64. Returns ``(memory, state)``: memory (B, S, H),
        the state after each source token (what an attention decoder reads),
        and the final state in PyTorch's layout ((L, B, H), or a pair of them
        for an LSTM).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 32,
        hidden_size: int = 64,
        cell: str = "gru",
        num_layers: int = 1,
    ):
        super().__init__()
        self.embed = nn.Embedding(
            check_int("vocab_size", vocab_size, low=1), embed_size
        )
        self.rnn = _recurrent(cell, embed_size, hidden_size, num_layers)

    def forward(self, src: Tensor):
        check_tensor("src", src, ndim=2, floating=False, nonempty=True)
        return self.rnn(self.embed(src))


class Decoder(nn.Module):
    """Writes the target one token at a time from the encoder's final state.

    ``step`` is the whole decoder: it embeds the previous token, advances
    the recurrent state by one step and returns the next token's logits. It
    receives the encoder's memory too; this decoder ignores it (Cho et al.
    2014; Sutskever et al. 2014: the final state is the only summary of the
    source), an attention decoder overrides ``step`` to read it.

    Shapes:
        token: (B,) int64; memory: (B, S, H); logits: (B, V).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 32,
        hidden_size: int = 64,
        cell: str = "gru",
        num_layers: int = 1,
    ):
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, low=1)
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = _recurrent(cell, embed_size, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def step(self, token: Tensor, state, memory: Tensor):
        out, state = self.rnn(self.embed(token)[:, None], state)  # (B, 1, H)
        return self.head(out[:, 0]), state

    def forward(self, tgt_in: Tensor, state, memory: Tensor) -> Tensor:
        """Teacher forcing: step t reads the true token t − 1, not a guess."""
        logits = []
        for t in range(tgt_in.shape[1]):
            out, state = self.step(tgt_in[:, t], state, memory)
            logits.append(out)
        return torch.stack(logits, dim=1)  # (B, T, V)


def shift_right(tgt: Tensor, bos: int) -> Tensor:
    """The decoder's input under teacher forcing: BOS, y_1, ..., y_{T-1}."""
    start = torch.full_like(tgt[:, :1], bos)
    return torch.cat([start, tgt[:, :-1]], dim=1)


class EncoderDecoder(nn.Module):
    """Sequence to sequence: p(y | x) = Π_t p(y_t | y_<t, encoder(x)).

    The encoder's final state starts the decoder. Training uses teacher
    forcing (``forward``); prediction feeds each arg-max token back
    (``greedy_decode``).

    Args:
        encoder, decoder: an ``Encoder`` and a ``Decoder`` (or subclasses)
            with the same kind and size of state.
        bos, eos: the target vocabulary's begin- and end-of-sequence ids.

    Shapes:
        src: (B, S), tgt_in: (B, T) int64; ``forward`` returns (B, T, V).
        All sequences of a batch have the same length (no padding).
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, bos: int, eos: int):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        v = decoder.vocab_size
        self.bos = check_int("bos", bos, low=0, high=v - 1)
        self.eos = check_int("eos", eos, low=0, high=v - 1)

    def forward(self, src, tgt_in: Tensor | None = None) -> Tensor:
        if tgt_in is None:  # fit() passes one object: the pair (src, tgt_in)
            src, tgt_in = src
        check_tensor("tgt_in", tgt_in, ndim=2, floating=False, nonempty=True)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"src and tgt_in must have the same batch size, got "
                f"{src.shape[0]} and {tgt_in.shape[0]}"
            )
        memory, state = self.encoder(src)
        return self.decoder(tgt_in, state, memory)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, max_len: int) -> Tensor:
        """The arg-max token at every step, fed back, until EOS or ``max_len``.

        Returns:
            (B, max_len) int64; after a sequence's EOS every token is EOS.
        """
        check_int("max_len", max_len, low=1)
        memory, state = self.encoder(src)
        token = torch.full(
            (src.shape[0],), self.bos, dtype=torch.long, device=src.device
        )
        done = torch.zeros_like(token, dtype=torch.bool)
        out = []
        for _ in range(max_len):
            logits, state = self.decoder.step(token, state, memory)
            token = logits.argmax(-1).masked_fill(done, self.eos)
            out.append(token)
            done |= token == self.eos
            if done.all():
                break
        out = torch.stack(out, dim=1)
        pad = out.new_full((out.shape[0], max_len - out.shape[1]), self.eos)
        return torch.cat([out, pad], dim=1)

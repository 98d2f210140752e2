"""Our LSTM and GRU against torch.nn.LSTM / nn.GRU (copied weights) and the cells (Hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook.config import seed_everything
from dlbook.sequences.lstm import GRU, LSTM, set_forget_bias
from dlbook.sequences.rnn import ElmanRNN, SequenceTagger, hidden_gradient_norms, sequence_accuracy, sequence_cross_entropy
from dlbook.sequences.tasks import LengthCurriculum, copy_task
from dlbook.train import fit

PAIRS = {"lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU)}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_equal_to_pytorch_with_copied_weights(kind, num_layers, batch_first, bidirectional):
    ours_cls, ref_cls = PAIRS[kind]
    seed_everything(0)
    kw = dict(num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional)
    ref, ours = ref_cls(4, 6, **kw), ours_cls(4, 6, **kw)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 4) if batch_first else torch.randn(5, 3, 4)
    shape = (num_layers * (2 if bidirectional else 1), 3, 6)
    hx = (torch.randn(shape), torch.randn(shape)) if kind == "lstm" else torch.randn(shape)
    out, h_n = ours(x, hx)
    out_ref, h_ref = ref(x, hx)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h_n, h_ref)
    out.sum().backward()
    out_ref.sum().backward()
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["lstm", "gru"]), batch=st.integers(1, 4), inp=st.integers(1, 5),
       hidden=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_one_step_equals_the_pytorch_cell(kind, batch, inp, hidden, seed):
    torch.manual_seed(seed)
    ref = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(inp, hidden)
    ours = PAIRS[kind][0](inp, hidden)
    ours.load_state_dict({k + "_l0": v for k, v in ref.state_dict().items()})
    x, h = torch.randn(batch, inp), torch.randn(batch, hidden)
    if kind == "lstm":
        c = torch.randn(batch, hidden)
        expected = ref(x, (h, c))
        got = ours.step(x, (h, c))
    else:
        expected, got = (ref(x, h),), ours.step(x, (h,))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_gradcheck_through_the_lstm():
    torch.manual_seed(0)
    lstm = LSTM(2, 3).double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: lstm(x)[0], (x,))


def test_lstm_with_open_forget_gate_keeps_gradients_that_rnn_loses():
    """The additive cell path: ‖∂h_T/∂h_t‖ at 50 steps back, LSTM (forget bias 3) vs tanh RNN."""
    seed_everything(0)
    x = torch.randn(50, 4, 3) * 0.5
    rnn, lstm = ElmanRNN(3, 16), set_forget_bias(LSTM(3, 16), 3.0)
    rnn_norm = hidden_gradient_norms(rnn.step, x, rnn.zero_state(4))[:, -1]
    c_state = lstm.zero_state(4)
    # through the cell path: measure ∂c_T/∂c_t by putting c first in the state
    def cell_first(x_t, s):
        h, c = lstm.step(x_t, (s[1], s[0]))
        return c, h
    lstm_norm = hidden_gradient_norms(cell_first, x, c_state)[:, -1]
    assert (lstm_norm > 100 * rnn_norm).all()


def test_set_forget_bias_sets_the_sum_of_both_biases():
    lstm = set_forget_bias(nn.LSTM(2, 5, num_layers=2), 1.5)
    for layer in range(2):
        b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        torch.testing.assert_close(b[5:10], torch.full((5,), 1.5))
    with pytest.raises(ValueError, match="no LSTM layer"):
        set_forget_bias(nn.GRU(2, 5), 1.0)
    with pytest.raises(ValueError, match="value"):
        set_forget_bias(LSTM(2, 5), float("nan"))


def test_bad_state_is_a_clear_error():
    lstm = LSTM(3, 4)
    with pytest.raises(TypeError, match="tuple of 2 tensors"):
        lstm(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"hx\[1\]"):
        lstm(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="length at least 1"):
        GRU(3, 4)(torch.randn(0, 2, 3))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_learn_the_copy_task(cell):
    """Recall 3 symbols after 10 blanks; chance accuracy is 1/8."""
    seed_everything(0)
    model = SequenceTagger(10, 8, 32, embed_size=8, cell=cell)
    if cell == "lstm":
        set_forget_bias(model, 1.0)
    task = lambda n, length, seed: copy_task(n, delay=length, seed=seed)  # noqa: E731
    batches = LengthCurriculum(task, 2, 10, batch_size=32, steps=300, seed=1)
    fit(model, batches, torch.optim.Adam(model.parameters(), 1e-2), epochs=1,
        loss_fn=sequence_cross_entropy, metrics={}, clip_grad_norm=1.0, progress=False)
    x, y = copy_task(500, delay=10, seed=999)
    with torch.no_grad():
        acc = sequence_accuracy(model(x), y).item()
    assert acc > 0.6, acc  # about five times chance

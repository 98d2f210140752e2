"""The Elman RNN and BPTT against torch.nn.RNN, autograd and finite differences."""

import pytest
import torch
from torch import nn

from dlbook.config import seed_everything
from dlbook.sequences.rnn import (
    ConvClassifier, Decoder, ElmanRNN, Encoder, EncoderDecoder, SeedToSequence, SequenceRegressor, SequenceTagger,
    StreamChunks, TruncatedBPTT, clip_grad_norm, elman_backward, elman_bptt, elman_forward, hidden_gradient_norms,
    sequence_accuracy, sequence_cross_entropy, shift_right,
)
from dlbook.train import fit


def _pair(num_layers, batch_first, bidirectional, nonlinearity="tanh"):
    seed_everything(0)
    ref = nn.RNN(5, 7, num_layers, nonlinearity=nonlinearity, batch_first=batch_first, bidirectional=bidirectional)
    ours = ElmanRNN(5, 7, num_layers, nonlinearity=nonlinearity, batch_first=batch_first, bidirectional=bidirectional)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_elman_equals_nn_rnn(num_layers, batch_first, bidirectional):
    ours, ref = _pair(num_layers, batch_first, bidirectional)
    x = torch.randn(3, 6, 5) if batch_first else torch.randn(6, 3, 5)
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), 3, 7)
    out, h_n = ours(x, h0)
    out_ref, h_ref = ref(x, h0)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h_n, h_ref)
    # the gradients through the unrolled loop equal those of the fused kernel
    out.pow(2).sum().backward()
    out_ref.pow(2).sum().backward()
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_relu_elman_and_default_zero_state():
    ours, ref = _pair(1, True, False, nonlinearity="relu")
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


def test_state_dict_names_match_pytorch():
    ours, ref = _pair(2, False, True)
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_our_bptt_equals_autograd():
    g = torch.Generator().manual_seed(1)
    x, h0 = torch.randn(9, 4, 3, generator=g), torch.randn(4, 6, generator=g)
    W_ih, W_hh = torch.randn(6, 3, generator=g) * 0.5, torch.randn(6, 6, generator=g) * 0.5
    b = torch.randn(6, generator=g)
    dhs = torch.randn(9, 4, 6, generator=g)
    leaves = [t.clone().requires_grad_() for t in (x, h0, W_ih, W_hh, b)]
    (elman_forward(*leaves) * dhs).sum().backward()
    hs = elman_forward(x, h0, W_ih, W_hh, b)
    ours = elman_backward(x, h0, W_ih, W_hh, hs, dhs)
    for name, leaf in zip(["x", "h0", "W_ih", "W_hh", "b"], leaves):
        torch.testing.assert_close(ours[name], leaf.grad, msg=name)


def test_our_bptt_passes_a_numerical_gradient_check():
    g = torch.Generator().manual_seed(2)
    args = [torch.randn(s, generator=g, dtype=torch.float64) * 0.5 for s in [(5, 2, 3), (2, 4), (4, 3), (4, 4), (4,)]]
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(elman_bptt, args)


def test_bptt_backward_is_not_trivially_zero():
    """A wrong backward (e.g. missing the W_hh carry) would differ from autograd; here: it is used at all."""
    x, h0 = torch.randn(4, 2, 3), torch.zeros(2, 4)
    W = [torch.randn(4, 3, requires_grad=True), torch.randn(4, 4, requires_grad=True), torch.zeros(4, requires_grad=True)]
    elman_bptt(x, h0, *W)[-1].sum().backward()
    assert W[1].grad.abs().sum() > 0


@pytest.mark.parametrize("scale, grows", [(0.5, False), (3.0, True)])
def test_gradient_norms_vanish_or_explode_with_the_spectral_radius(scale, grows):
    seed_everything(0)
    H = 16
    rnn = ElmanRNN(1, H, nonlinearity="relu", bias=False)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(H, H))
        rnn.weight_hh_l0.copy_(scale * q)  # spectral radius = scale
        rnn.weight_ih_l0.fill_(1.0)
    x = torch.ones(20, 2, 1)
    norms = hidden_gradient_norms(rnn.step, x, rnn.zero_state(2))
    assert norms.shape == (2, 20)
    torch.testing.assert_close(norms[:, 0], torch.ones(2))  # ∂h_T/∂h_T = I
    if grows:
        assert (norms[:, -1] > 1e3).all()  # 1 at k = 0
    else:
        assert (norms[:, -1] < 1e-4).all()


def test_hidden_gradient_norms_match_the_jacobian():
    seed_everything(0)
    rnn = ElmanRNN(2, 3)
    x, h0 = torch.randn(4, 1, 2), torch.randn(1, 3)

    def last(h):
        state = (h,)
        for t in range(1, 4):
            state = rnn.step(x[t], state)
        return state[0]

    h1 = rnn.step(x[0], (h0,))[0].detach()
    jac = torch.autograd.functional.jacobian(lambda h: last(h[None])[0], h1[0])
    norms = hidden_gradient_norms(rnn.step, x, (h0,))
    torch.testing.assert_close(norms[0, 3], jac.norm() / 3**0.5)


def test_clip_grad_norm_equals_pytorch():
    seed_everything(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 4) * 10
    a(x).pow(2).sum().backward()
    b(x).pow(2).sum().backward()
    ours = clip_grad_norm(a.parameters(), 1.0)
    ref = nn.utils.clip_grad_norm_(b.parameters(), 1.0)
    torch.testing.assert_close(ours, ref)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(a.parameters(), 0.0)


def test_stream_chunks_keep_streams_in_order():
    x = torch.arange(23)
    chunks = list(StreamChunks(x, x + 100, batch_size=2, chunk=5))
    assert len(chunks) == 2
    torch.testing.assert_close(torch.cat([c[0] for c in chunks], 1), torch.arange(22).reshape(2, 11)[:, :10])
    with pytest.raises(ValueError, match="chunk must be at most"):
        StreamChunks(x, x, batch_size=4, chunk=6)
    with pytest.raises(ValueError, match="same length"):
        StreamChunks(x, x[:-1], batch_size=2, chunk=2)


def test_truncated_bptt_carries_a_detached_state():
    seed_everything(0)
    tagger = SequenceTagger(5, 3, hidden_size=8)
    tbptt = TruncatedBPTT(tagger)
    tokens = torch.randint(0, 5, (2, 12))
    whole, _ = tagger(tokens, None)
    parts = torch.cat([tbptt(tokens[:, :6]), tbptt(tokens[:, 6:])], dim=1)
    torch.testing.assert_close(parts, whole)  # the forward pass continues
    assert not tbptt.state.requires_grad
    with pytest.raises(ValueError, match="batch of 3 streams"):
        tbptt(torch.randint(0, 5, (3, 6)))
    tbptt.train()
    assert tbptt.state is None


def test_architecture_shapes():
    tokens = torch.randint(0, 7, (4, 9))
    assert SequenceTagger(7, 3)(tokens).shape == (4, 9, 3)
    assert SequenceTagger(7, 3, cell="lstm", bidirectional=True, many_to_one=True)(tokens).shape == (4, 3)
    assert SequenceRegressor(2)(torch.randn(4, 9, 2)).shape == (4,)
    assert SeedToSequence(3, 2, steps=11)(torch.randn(4, 3)).shape == (4, 11, 2)
    assert ConvClassifier(7, 3)(tokens).shape == (4, 3)
    model = EncoderDecoder(Encoder(7), Decoder(6), bos=4, eos=5)
    tgt = torch.randint(0, 4, (4, 5))
    assert model((tokens, shift_right(tgt, 4))).shape == (4, 5, 6)
    out = model.greedy_decode(tokens, max_len=8)
    assert out.shape == (4, 8) and out.dtype == torch.long


def test_sequence_loss_and_accuracy_ignore_minus_100():
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]])
    target = torch.tensor([[0, 0, -100]])
    assert sequence_accuracy(logits, target).item() == 0.5
    torch.testing.assert_close(sequence_cross_entropy(logits, target),
                               nn.functional.cross_entropy(logits[0, :2], target[0, :2]))


def test_bad_inputs_are_clear_errors():
    rnn = ElmanRNN(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="length at least 1, got length 0"):
        rnn(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="hx"):
        rnn(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))  # 2 layers need (2, B, H)
    with pytest.raises(ValueError, match="3 features"):
        rnn(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="nonlinearity"):
        ElmanRNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        ElmanRNN(3, 0)
    with pytest.raises(ValueError, match="cell"):
        SequenceTagger(5, 2, cell="transformer")
    with pytest.raises(ValueError, match="h0"):
        elman_bptt(torch.randn(3, 2, 1), torch.zeros(3, 4), torch.zeros(4, 1), torch.zeros(4, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="x"):
        elman_bptt(torch.randn(0, 2, 1), torch.zeros(2, 4), torch.zeros(4, 1), torch.zeros(4, 4), torch.zeros(4))


def test_a_tagger_learns_to_echo_the_previous_token():
    """Aligned many-to-many: y_t = x_{t-1} needs memory of one step; chance is 1/4."""
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (512, 10), generator=g)
    y = torch.cat([torch.full((512, 1), -100), x[:, :-1]], dim=1)
    data = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, generator=g)
    model = SequenceTagger(4, 4, hidden_size=32, cell="rnn")
    fit(model, loader, torch.optim.Adam(model.parameters(), 1e-2), epochs=8, loss_fn=sequence_cross_entropy,
        metrics={}, progress=False)
    with torch.no_grad():
        acc = sequence_accuracy(model(x), y).item()
    assert acc > 0.95


def test_fit_clips_and_records_the_gradient_norm():
    seed_everything(0)
    model = nn.Linear(3, 1)
    data = [(torch.randn(8, 3) * 100, torch.randn(8, 1))]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    hist = fit(model, data, opt, epochs=1, loss_fn=nn.functional.mse_loss, metrics={}, clip_grad_norm=1.0,
               progress=False)
    assert hist.last()["train_grad_norm"] > 1.0  # recorded before clipping
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])) <= 1.0 + 1e-5
    with pytest.raises(ValueError, match="clip_grad_norm"):
        fit(model, data, opt, epochs=1, loss_fn=nn.functional.mse_loss, metrics={}, clip_grad_norm=0.0)

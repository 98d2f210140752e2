import math
import socket

import numpy as np
import pytest
import torch

from dlbook.attention.large_models import (
    Autocast,
    Checkpointed,
    PeakMemory,
    PortTakenError,
    fit_power_law,
    free_port,
    gpt_activation_bytes,
    lm_loss,
    measure_training_memory,
    parameter_count,
    prune_global,
    quantize_int8,
    reference_training,
    run_distributed,
    saved_tensor_bytes,
    serialized_bytes,
    state_bytes,
    synthetic_batches,
)
from dlbook.attention.transformer import GPT, GPTConfig


def tiny(V=11, T=16, L=2, d=32, h=4):
    torch.manual_seed(0)
    return GPT(GPTConfig(V, block_size=T, n_layer=L, n_head=h, n_embd=d))


def ids(V, B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(V, (2, B, T), generator=g)


def test_state_bytes_are_16_per_parameter_with_adam():
    s = state_bytes(1000)
    assert sum(s.values()) == 16_000 and s["adam m and v"] == 8000
    with pytest.raises(ValueError, match="n_params"):
        state_bytes(0)


@pytest.mark.parametrize(
    "V, T, L, d, h, B", [(11, 16, 1, 32, 2, 3), (65, 24, 3, 48, 6, 2)]
)
def test_activation_formula_equals_the_bytes_autograd_saves(V, T, L, d, h, B):
    model = tiny(V, T, L, d, h)
    x, y = ids(V, B, T)
    predicted = gpt_activation_bytes(model.config, B, T)
    assert saved_tensor_bytes(model, x, y) == predicted


def test_activation_formula_rejects_dropout_and_long_windows():
    cfg = GPTConfig(11, block_size=8, dropout=0.1)
    with pytest.raises(ValueError, match="dropout"):
        gpt_activation_bytes(cfg, 2, 8)
    with pytest.raises(ValueError, match="T must be"):
        gpt_activation_bytes(GPTConfig(11, block_size=8), 2, 9)


def test_peak_memory_sees_a_64_mib_tensor():
    with PeakMemory() as mem:
        t = torch.ones(16 * 2**20)  # 64 MiB, every page touched
        del t
    assert 60 * 2**20 < mem.peak < 70 * 2**20, mem.peak  # a few MiB noise


def test_measured_training_memory_is_near_the_prediction():
    cfg = GPTConfig(65, block_size=64, n_layer=2, n_head=4, n_embd=128)
    measure_training_memory(GPTConfig(11, block_size=8), 2)  # warm-up
    m = measure_training_memory(cfg, batch=8)
    assert m["parameters"] == parameter_count(GPT(cfg))
    # A few MB of fixed cost (allocator arenas, autograd's worker state) show
    # on this 17 MB prediction in a long-lived pytest worker: measured 1.02-
    # 1.16x here. The chapter checks 0.9-1.15x in a fresh kernel on larger
    # models, where the fixed part is smaller.
    assert 0.9 < m["measured"] / m["predicted"] < 1.25, m


def test_checkpointing_keeps_gradients_and_saves_activations():
    model = tiny(L=3)
    x, y = ids(11, 4, 16)
    lm_loss(model(x), y).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ck = Checkpointed(model)
    lm_loss(ck(x), y).backward()
    for g, p in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-7)
    assert saved_tensor_bytes(ck, x, y) < 0.5 * saved_tensor_bytes(model, x, y)
    with pytest.raises(TypeError, match="gpt must be a GPT"):
        Checkpointed(torch.nn.Linear(2, 2))


def test_autocast_bfloat16_is_close_and_rejects_unknown_dtypes():
    model = tiny()
    x, _ = ids(11, 2, 16)
    full = model(x)
    half = Autocast(model, "bfloat16")(x)
    assert half.dtype == torch.float32
    assert 0 < (half - full).abs().max() < 0.05
    torch.testing.assert_close(Autocast(model, "float32")(x), full)
    with pytest.raises(ValueError, match="dtype"):
        Autocast(model, "float8")


def test_ddp_on_two_processes_equals_one_process_on_the_whole_batch(tmp_path):
    V, B, T, steps = 11, 8, 16, 3
    args = ["--out", str(tmp_path), "--steps", str(steps), "--batch", str(B),
            "--block", str(T), "--layers", "1", "--width", "16",
            "--heads", "2", "--vocab", str(V), "--dtype", "float64",
            "--fsdp"]  # fmt: skip
    run_distributed("dlbook.attention.ddp_worker", args, nproc=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    cfg = GPTConfig(V, block_size=T, n_layer=1, n_head=2, n_embd=16)
    batches = synthetic_batches(V, B, T, steps)
    model, grads = reference_training(cfg, batches, 1e-3, torch.float64)
    for r in ranks:
        for g, ref in zip(r["grads"], grads, strict=True):
            torch.testing.assert_close(g, ref, rtol=0, atol=1e-12)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(r["state"][k], v, rtol=0, atol=1e-12)
            torch.testing.assert_close(
                r["fsdp_state"][k], v, rtol=0, atol=1e-12
            )
        n = parameter_count(model)
        assert r["comm_bytes"] == steps * 8 * n  # float64 gradients
        assert r["fsdp_state_bytes"] < 0.6 * r["ddp_state_bytes"]


def test_a_taken_port_is_named_in_the_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortTakenError, match=f"port {port} "):
            run_distributed("dlbook.attention.ddp_worker", [], port=port)


@pytest.mark.parametrize("nproc", [0, -1])
def test_run_distributed_rejects_fewer_than_one_process(nproc):
    with pytest.raises(ValueError, match="nproc"):
        run_distributed("dlbook.attention.ddp_worker", [], nproc=nproc)


def test_free_port_is_free():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_pruning_reaches_the_asked_sparsity():
    model = tiny()
    assert prune_global(model, 0.0) == 0.0
    before = {n: p.clone() for n, p in model.named_parameters()}
    assert prune_global(model, 0.6) == pytest.approx(0.6, abs=1e-3)
    # the kept weights are the largest ones, unchanged
    w, w0 = model.blocks[0].fc1.weight, before["blocks.0.fc1.weight"]
    kept = w != 0
    torch.testing.assert_close(w[kept], w0[kept])
    assert w0[~kept].abs().max() <= w0[kept].abs().min()
    for bad in (1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="amount"):
            prune_global(model, bad)


def test_int8_quantization_is_smaller_and_close():
    model = tiny(d=64)
    x, _ = ids(11, 2, 16)
    q = quantize_int8(model)
    assert serialized_bytes(q) < 0.45 * serialized_bytes(model)
    with torch.no_grad():
        p, pq = model(x).softmax(-1), q(x).softmax(-1)
    assert (p - pq).abs().max() < 0.02
    assert isinstance(model.blocks[0].fc1, torch.nn.Linear)  # not in place


def test_power_law_fit_recovers_a_law_and_rejects_bad_input():
    n = np.array([1e3, 1e4, 1e5])
    law = fit_power_law(n, 5.0 * n**-0.1)
    assert law.a == pytest.approx(5.0) and law.alpha == pytest.approx(0.1)
    with pytest.raises(ValueError, match="n_params"):
        fit_power_law([0, 1], [1, 1])
    with pytest.raises(ValueError, match="losses"):
        fit_power_law([1, 2], [1, math.nan])
    with pytest.raises(ValueError, match="one length"):
        fit_power_law([1, 2, 3], [1, 2])

"""Training large models: memory, recomputation, precision, parallelism, size.

The costs of training a Transformer and the standard ways to cut them, on the
mini-GPT of ``dlbook.attention.transformer``:

* memory arithmetic: bytes per parameter for the weights, gradients and Adam
  states, plus an exact count of the activations the GPT keeps for the
  backward pass (checked against the tensors autograd saves, and against the
  peak resident memory of the process);
* gradient checkpointing (``torch.utils.checkpoint``): keep only each
  block's input and recompute the rest during the backward pass;
* mixed precision: ``torch.autocast`` with bfloat16;
* data parallelism: ``run_distributed`` launches ``torchrun`` with the gloo
  backend on this machine (the worker is ``dlbook.attention.ddp_worker``),
  and ``reference_training`` is the single-process run on the concatenated
  batch that ``DistributedDataParallel`` must reproduce;
* post-training compression: global magnitude pruning
  (``torch.nn.utils.prune``) and dynamic int8 quantization
  (``torch.ao.quantization.quantize_dynamic``);
* scaling: a power law fitted to the validation loss against the parameters.

Papers: Chen et al. (2016), "Training Deep Nets with Sublinear Memory Cost"
(checkpointing); Micikevicius et al. (2018), "Mixed Precision Training";
Rajbhandari et al. (2020), ZeRO (the 16 bytes per parameter of mixed-precision
Adam, sharding); Korthikanti et al. (2022), "Reducing Activation
Recomputation in Large Transformer Models" (the activation count); Li et al.
(2020), "PyTorch Distributed" (DDP); Han et al. (2015) (magnitude pruning);
Kaplan et al. (2020) and Hoffmann et al. (2022) (scaling laws).

Checked against (``tests/attention/test_large_models.py``): the activation
formula equals the bytes autograd saves; checkpointed gradients equal plain
ones; two-process DDP equals one process on the concatenated batch.

Chapter: ``book/attention/large-models.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import math
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune
from torch.utils.checkpoint import checkpoint

from dlbook.attention.transformer import GPT, GPTConfig
from dlbook.checks import (
    check_choice,
    check_int,
    check_number,
    check_tensor,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# --- memory arithmetic -------------------------------------------------------


def parameter_count(model: nn.Module) -> int:
    """N, the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_bytes(n_params: int, bytes_per_value: int = 4) -> dict[str, int]:
    """The bytes that training with Adam keeps for N parameters.

    Weights, their gradients, and Adam's two moving averages (m and v) are
    each one value per parameter: 4 N bytes apiece in float32, 16 N in all.
    Mixed-precision training as in ZeRO keeps 2 + 2 bytes of half-precision
    weights and gradients beside 12 bytes of float32 master weights and Adam
    states, 16 N too; memory per parameter does not shrink by itself.
    """
    check_int("n_params", n_params, low=1)
    check_int("bytes_per_value", bytes_per_value, low=1)
    b = n_params * bytes_per_value
    return {"weights": b, "gradients": b, "adam m and v": 2 * b}


def gpt_activation_bytes(config: GPTConfig, batch: int, T: int) -> int:
    """Bytes autograd keeps from the forward pass of ``GPT`` plus its loss.

    Per block (float32, B·T tokens of width d, h heads), the backward pass
    needs 16 B·T·d values: the block's input and the first LayerNorm's
    output (1 + 1), the queries, keys and values (3), the heads' output
    before the projection (1), the residual stream and the second
    LayerNorm's output (1 + 1), and the MLP's hidden layer before and after
    GELU (4 + 4). Plus the softmax output, B·h·T² values (the T² term of
    attention), the LayerNorms' means and inverse deviations (4 B·T) and the
    causal mask (T² booleans).
    Outside the blocks: the final LayerNorm's input and output (2 B·T·d and
    2 B·T), the log-softmax of the logits (B·T·V), the token ids and targets
    (two int64 B·T) and the loss. Dropout must be off (its masks would add).
    """
    check_int("batch", batch, low=1)
    check_int("T", T, low=1, high=config.block_size)
    if config.dropout != 0:
        raise ValueError(
            f"config.dropout must be 0 for this count, got {config.dropout}"
        )
    B, L, d, h = batch, config.n_layer, config.n_embd, config.n_head
    V = config.vocab_size
    per_block = 16 * B * T * d + B * h * T * T + 4 * B * T
    floats = L * per_block + 2 * B * T * d + 2 * B * T + B * T * V
    return 4 * floats + L * T * T + 2 * 8 * B * T + 4


def lm_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of next-token logits (B, T, V) against ids (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def saved_tensor_bytes(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of the loss.

    Counts each storage once (views share one) and leaves out the
    parameters, which are kept anyway: what remains is the activations.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lm_loss(model(x), y)
    return sum(seen.values())


def _rss(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


class PeakMemory:
    """Peak resident memory of this process above its level at entry.

    Linux only: resets the kernel's high-water mark (VmHWM, by writing 5 to
    /proc/self/clear_refs) on entry and reads it on exit. glibc's malloc is
    set to serve every block above 64 KiB with its own mmap, so freed
    tensors go back to the system at once instead of staying in the heap,
    where they would hide the next allocation from the count. On exit,
    blocks up to 32 MiB come from the heap again (faster).

    Usage::

        with PeakMemory() as mem:
            ...
        mem.peak  # bytes
    """

    def __enter__(self) -> PeakMemory:
        if not os.path.exists("/proc/self/clear_refs"):
            raise RuntimeError(
                "PeakMemory needs Linux's /proc/self/clear_refs"
            )
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD: fixed, not adaptive
        gc.collect()
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.start = _rss("VmRSS")
        self.peak = 0
        return self

    def __exit__(self, *exc) -> None:
        self.peak = _rss("VmHWM") - self.start
        # an mmap per block is slow (a system call and fresh zeroed pages
        # each time): afterwards, serve blocks up to 32 MiB from the heap,
        # which is where glibc's adaptive threshold ends up by itself
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD, glibc's maximum
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD: keep freed memory


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor
) -> float:
    """One step of next-token training; the gradients stay allocated.

    ``zero_grad(set_to_none=False)`` keeps the gradient buffers between
    steps, as the 16 bytes per parameter assume (PyTorch's default frees
    them, which saves up to 4 N bytes outside the backward pass).
    """
    optimizer.zero_grad(set_to_none=False)
    loss = lm_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def measure_training_memory(
    config: GPTConfig, batch: int, steps: int = 2, seed: int = 0
) -> dict[str, float]:
    """Peak memory of training a fresh GPT with Adam, predicted and measured.

    Builds the model and its Adam optimizer inside ``PeakMemory`` and runs
    ``steps`` steps on random ids of length ``config.block_size``. Returns
    the parameters, the predicted bytes (16 N plus the activations) and the
    measured peak. Adam runs one tensor at a time (``foreach=False``): the
    default fused-list version adds temporaries of up to 4 N bytes.
    """
    check_int("steps", steps, low=1)
    T = config.block_size
    activations = gpt_activation_bytes(config, batch, T)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randint(config.vocab_size, (2, batch, T), generator=g)
    with PeakMemory() as mem:
        torch.manual_seed(seed)
        model = GPT(config)
        opt = torch.optim.Adam(model.parameters(), 1e-3, foreach=False)
        for _ in range(steps):
            train_step(model, opt, x, y)
    n = parameter_count(model)
    states = sum(state_bytes(n).values())
    return {
        "parameters": n,
        "states": states,
        "activations": activations,
        "predicted": states + activations,
        "measured": mem.peak,
    }


# --- gradient checkpointing and mixed precision ----------------------------


class Checkpointed(nn.Module):
    """A GPT whose blocks recompute their activations in the backward pass.

    ``torch.utils.checkpoint`` runs each block without saving anything but
    its input; the backward pass runs the block again to get what it needs.
    Memory for activations drops from L blocks' worth to L block inputs plus
    one block's worth, for about one extra forward pass of time (Chen et al.
    2016). The weights are the wrapped GPT's own.

    Shapes:
        idx: (B, T) → logits (B, T, V).
    """

    def __init__(self, gpt: GPT):
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"gpt must be a GPT, got {type(gpt).__name__}")
        self.gpt = gpt

    def forward(self, idx: Tensor) -> Tensor:
        g = self.gpt
        check_tensor("idx", idx, ndim=2, floating=False, nonempty=True)
        T = idx.shape[1]
        if T > g.config.block_size:
            raise ValueError(
                f"idx must be at most block_size={g.config.block_size} "
                f"long, got {T}"
            )
        x = g.drop(g.tok(idx) + g.pos[:T])
        for block in g.blocks:
            x = checkpoint(block, x, True, use_reentrant=False)
        return g.head(g.ln_f(x))


class Autocast(nn.Module):
    """Run a model under ``torch.autocast`` in ``dtype``; logits in float32.

    Under autocast, matrix products run in bfloat16 while reductions such as
    LayerNorm and the softmax stay in float32 (PyTorch's op lists); the
    weights, gradients and optimizer stay float32 (Micikevicius et al. 2018).
    bfloat16 keeps float32's exponent range, so no loss scaling is needed.

    Args:
        model: any module.
        dtype: "bfloat16", or "float32" for no autocast.
    """

    def __init__(self, model: nn.Module, dtype: str = "bfloat16"):
        super().__init__()
        check_choice("dtype", dtype, tuple(DTYPES))
        self.model, self.dtype = model, dtype

    def forward(self, *args):
        if self.dtype == "float32":
            return self.model(*args)
        device = next(self.model.parameters()).device.type
        with torch.autocast(device, dtype=DTYPES[self.dtype]):
            out = self.model(*args)
        return out.float()


# --- data parallelism --------------------------------------------------------


def synthetic_batches(
    vocab_size: int, batch: int, T: int, steps: int, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """``steps`` global batches of random ids (x, y), same on every rank."""
    check_int("steps", steps, low=1)
    check_int("batch", batch, low=1)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab_size, (steps, batch, T + 1), generator=g)
    return [(s[:, :-1], s[:, 1:]) for s in ids]


def reference_training(
    config: GPTConfig,
    batches: Sequence[tuple[Tensor, Tensor]],
    lr: float,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[GPT, list[Tensor]]:
    """Train on whole global batches in one process (what DDP must equal).

    Returns the model and the flat gradient of each step.
    """
    torch.manual_seed(seed)
    model = GPT(config).to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    grads = []
    for x, y in batches:
        opt.zero_grad()
        lm_loss(model(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        opt.step()
    return model, grads


class PortTakenError(RuntimeError):
    """The rendezvous port of a distributed run is already in use."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise PortTakenError(
                f"port {port} on 127.0.0.1 is taken ({e.strerror}); pass "
                f"another master port, or port=None to pick a free one"
            ) from None


def run_distributed(
    module: str,
    args: Sequence[str] = (),
    nproc: int = 2,
    port: int | None = None,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` in ``nproc`` processes with torchrun.

    The command is ``python -m torch.distributed.run --nproc-per-node
    nproc --master-addr 127.0.0.1 --master-port port --module module
    args``: one machine, ``nproc`` workers that rendezvous on ``port``
    (picked free when ``None``; a taken port raises ``PortTakenError`` naming
    it, before anything starts). Each worker runs with one thread. The
    processes run in their own session; after a timeout or an error the
    whole group is killed, so no worker outlives the call. Raises
    ``RuntimeError`` with the end of the output if the run fails.
    """
    check_int("nproc", nproc, low=1)
    check_number("timeout", timeout, low=0, low_open=True)
    if port is None:
        port = free_port()
    check_int("port", port, low=1, high=65535)
    _check_port_free(port)
    root = str(Path(__file__).resolve().parents[2])  # the dlbook checkout
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    cmd = [sys.executable, "-m", "torch.distributed.run",
           f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
           f"--master-port={port}", "--module", module, *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        raise RuntimeError(
            f"torchrun did not finish in {timeout} s (killed); output:\n"
            f"{out[-2000:]}"
        ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)  # any worker left behind
    if proc.returncode != 0:
        raise RuntimeError(
            f"torchrun exited with {proc.returncode}; output:\n{out[-3000:]}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


# --- compression -------------------------------------------------------------


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``model``: what pruning and int8 target."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def prune_global(model: nn.Module, amount: float) -> float:
    """Zero the fraction ``amount`` of smallest-magnitude Linear weights.

    One threshold for all Linear weights together (global unstructured
    magnitude pruning, ``prune.global_unstructured`` with ``L1Unstructured``),
    made permanent with ``prune.remove``. Biases, embeddings and LayerNorms
    are kept. Changes ``model`` in place; returns the measured fraction of
    zero Linear weights.
    """
    check_number("amount", amount, low=0, high=1, high_open=True)
    layers = linear_layers(model)
    if not layers:
        raise ValueError("model has no nn.Linear layer to prune")
    params = [(m, "weight") for m in layers]
    if amount > 0:
        prune.global_unstructured(
            params, prune.L1Unstructured, amount=float(amount)
        )
        for m, name in params:
            prune.remove(m, name)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return zeros / sum(m.weight.numel() for m in layers)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dynamic int8 Linear layers.

    ``quantize_dynamic`` stores each Linear weight as int8 with one scale per
    tensor, and at run time quantizes each input batch to 8 bits with a
    scale from its own range, multiplies in integers and rescales to float.
    PyTorch 2.14 marks these ``torch.ao`` functions deprecated (in favour of
    the ``torchao`` package); their warnings are silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8, inplace=False
        )


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the size on disk."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


# --- scaling -----------------------------------------------------------------


@dataclass
class PowerLaw:
    """L(N) = a · N^(−alpha), fitted by least squares on log L and log N."""

    a: float  # the loss at N = 1 (an extrapolation, not a measurement)
    alpha: float  # how fast the loss falls with N

    def __call__(self, n):
        return self.a * np.asarray(n, dtype=float) ** -self.alpha


def fit_power_law(n_params: Sequence[float], losses: Sequence[float]):
    """Fit ``PowerLaw`` to (N, loss) pairs: a line in log-log coordinates."""
    n = np.asarray(n_params, dtype=float)
    loss = np.asarray(losses, dtype=float)
    if n.shape != loss.shape or n.ndim != 1 or len(n) < 2:
        raise ValueError(
            f"n_params and losses must be 1-d of one length >= 2, got shapes "
            f"{n.shape} and {loss.shape}"
        )
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError(f"n_params must be finite and > 0, got {n}")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise ValueError(f"losses must be finite and > 0, got {loss}")
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return PowerLaw(a=math.exp(intercept), alpha=-slope)


__all__ = [
    "Autocast",
    "Checkpointed",
    "DTYPES",
    "PeakMemory",
    "PortTakenError",
    "PowerLaw",
    "fit_power_law",
    "free_port",
    "gpt_activation_bytes",
    "linear_layers",
    "lm_loss",
    "measure_training_memory",
    "parameter_count",
    "prune_global",
    "quantize_int8",
    "reference_training",
    "run_distributed",
    "saved_tensor_bytes",
    "serialized_bytes",
    "state_bytes",
    "synthetic_batches",
    "train_step",
]

"""One process of a data-parallel GPT run, launched by ``torchrun``.

``dlbook.attention.large_models.run_distributed`` starts ``nproc`` copies of
this module; ``torchrun`` gives each its rank, the world size and the
rendezvous address in environment variables, which
``init_process_group`` reads. Each rank:

1. builds the same GPT (same seed), wraps it in ``DistributedDataParallel``
   and trains ``--steps`` Adam steps, each on its own slice of the global
   batch of ``synthetic_batches`` (rank r takes rows r, r + W, ...: a
   contiguous split would do as well); a communication hook counts the
   bytes DDP all-reduces;
2. times the same steps without gradient synchronization (``no_sync``), and
   one all-reduce of a buffer the size of the gradients;
3. with ``--fsdp``, shards a fresh copy with FSDP2 (``fully_shard``), trains
   it on the same batches, and records the bytes of parameters, gradients
   and Adam states this rank holds (or the error, if FSDP fails here).

Each rank saves what it measured to ``<out>/rank<r>.pt``.

Chapter: ``book/attention/large-models.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from dlbook.attention.large_models import lm_loss, synthetic_batches
from dlbook.attention.transformer import GPT, GPTConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for rank<r>.pt")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dtype", choices=("float32", "float64"),
                   default="float32")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fsdp", action="store_true")
    return p


def _state_bytes(model, opt) -> int:
    """Bytes of parameters, gradients and optimizer states held here."""

    def local(t):
        t = t.to_local() if hasattr(t, "to_local") else t
        return t.numel() * t.element_size()

    total = 0
    for p in model.parameters():
        total += local(p) + (local(p.grad) if p.grad is not None else 0)
    for state in opt.state.values():
        total += sum(local(v) for v in state.values() if v.dim() > 0)
    return total


def _train(model, batches, rank, world, lr, sync=True):
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    grads = []
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad()
        loss = lm_loss(model(x[rank::world]), y[rank::world])
        if sync:
            loss.backward()
        else:
            with model.no_sync():
                loss.backward()
        grads.append(
            torch.cat([p.grad.flatten() for p in model.parameters()])
            if sync and isinstance(model, DDP)
            else None
        )
        opt.step()
    return opt, grads, time.perf_counter() - t0


def main(argv=None) -> None:
    a = _parser().parse_args(argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if a.batch % world:
        raise ValueError(
            f"--batch={a.batch} must be divisible by the {world} processes"
        )
    torch.set_num_threads(1)
    dtype = getattr(torch, a.dtype)
    cfg = GPTConfig(a.vocab, block_size=a.block, n_layer=a.layers,
                    n_head=a.heads, n_embd=a.width)  # fmt: skip
    batches = synthetic_batches(a.vocab, a.batch, a.block, a.steps, a.seed)
    result = {"rank": rank, "world": world}

    torch.manual_seed(a.seed)
    ddp = DDP(GPT(cfg).to(dtype))
    comm = {"bytes": 0, "calls": 0}

    def counting_hook(state, bucket):
        buf = bucket.buffer()
        comm["bytes"] += buf.numel() * buf.element_size()
        comm["calls"] += 1
        return default_hooks.allreduce_hook(None, bucket)

    ddp.register_comm_hook(None, counting_hook)
    opt, grads, seconds = _train(ddp, batches, rank, world, a.lr)
    result.update(
        state={k: v.clone() for k, v in ddp.module.state_dict().items()},
        grads=grads, seconds=seconds, comm_bytes=comm["bytes"],
        comm_calls=comm["calls"], ddp_state_bytes=_state_bytes(ddp, opt),
    )  # fmt: skip

    # the same steps without synchronization: compute alone
    torch.manual_seed(a.seed)
    alone = DDP(GPT(cfg).to(dtype))
    _, _, result["seconds_no_sync"] = _train(
        alone, batches, rank, world, a.lr, sync=False
    )
    flat = torch.zeros(sum(p.numel() for p in alone.parameters()), dtype=dtype)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(5):
        dist.all_reduce(flat)
    result["allreduce_seconds"] = (time.perf_counter() - t0) / 5
    result["allreduce_bytes"] = flat.numel() * flat.element_size()

    if a.fsdp:
        try:
            from torch.distributed.fsdp import fully_shard

            torch.manual_seed(a.seed)
            sharded = GPT(cfg).to(dtype)
            for block in sharded.blocks:
                fully_shard(block)
            fully_shard(sharded)
            opt, _, result["fsdp_seconds"] = _train(
                sharded, batches, rank, world, a.lr
            )
            result["fsdp_state_bytes"] = _state_bytes(sharded, opt)
            result["fsdp_state"] = {
                k: v.full_tensor().clone()
                for k, v in sharded.state_dict().items()
            }
        except Exception as e:  # report what failed, do not hide it
            result["fsdp_error"] = f"{type(e).__name__}: {e}"
    torch.save(result, Path(a.out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

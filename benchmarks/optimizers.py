"""Time one optimizer step of ours against torch.optim's (single-tensor and foreach paths).

Our optimizers loop over parameters in Python like PyTorch's ``foreach=False`` path, so they
should cost about the same; the ``foreach=True`` path (PyTorch's default on GPUs) batches the
parameters into a few kernels and is faster when there are many small tensors.

    python benchmarks/optimizers.py [--device cuda] [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from dlbook.optimization import optimizers as ours

CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)),
    ("RMSprop", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-3)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.05)),
]


def model(device: torch.device) -> nn.Module:
    layers = [nn.Linear(784, 512), nn.ReLU()]
    for _ in range(8):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(512, 10)).to(device)


def time_steps(make_opt, device: torch.device, steps: int) -> float:
    """Seconds per optimizer step (gradients fixed, only the update is timed)."""
    net = model(device)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    opt = make_opt(net.parameters())
    for _ in range(10):  # warm-up: allocate the state
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{'optimizer':10s} {'ours (ms)':>10s} {'torch loop (ms)':>16s} {'torch foreach (ms)':>19s}")
    for name, hyper in CONFIGS:
        t_ours = time_steps(lambda p: getattr(ours, name)(p, **hyper), device, args.steps)
        t_loop = time_steps(lambda p: getattr(torch.optim, name)(p, foreach=False, **hyper), device, args.steps)
        t_each = time_steps(lambda p: getattr(torch.optim, name)(p, foreach=True, **hyper), device, args.steps)
        print(f"{name:10s} {1e3 * t_ours:10.3f} {1e3 * t_loop:16.3f} {1e3 * t_each:19.3f}")


if __name__ == "__main__":
    main()

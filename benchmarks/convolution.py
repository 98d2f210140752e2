"""Our im2col conv2d against F.conv2d: time ratio and peak memory, forward and backward.

    python benchmarks/convolution.py [--repeats 10] [--threads 1]

Layers: LeNet's two convolutions on a batch of 64 MNIST-sized images, a ResNet 3x3
layer (64 channels, 56x56), a strided one, a dilated one and a depthwise one. For each,
the forward pass and the forward + backward pass of both implementations are timed
interleaved (ours, PyTorch's, ours, ...) after a warm-up, so that load on the machine
affects both alike; the table gives median times and the ratio ours / PyTorch's. Outputs
and gradients are checked equal first.

Peak memory is measured in a fresh process per layer and implementation: the rise of the
resident set size, sampled every millisecond, over the memory held once the inputs exist,
during one forward + backward pass. im2col materialises k_h * k_w copies of the input, which is the
price of turning convolution into one matrix product; PyTorch's kernels (oneDNN on the CPU)
avoid most of it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import torch
import torch.nn.functional as F

# name: (batch, C_in, H, C_out, kernel, stride, padding, dilation, groups)
LAYERS = {
    "LeNet conv1": (64, 1, 28, 6, 5, 1, 2, 1, 1),
    "LeNet conv2": (64, 6, 14, 16, 5, 1, 0, 1, 1),
    "ResNet 3x3, 64": (8, 64, 56, 64, 3, 1, 1, 1, 1),
    "3x3 stride 2": (8, 64, 56, 128, 3, 2, 1, 1, 1),
    "3x3 dilation 2": (8, 64, 56, 64, 3, 1, 2, 2, 1),
    "depthwise 3x3": (8, 64, 56, 64, 3, 1, 1, 1, 64),
}


def _inputs(spec, seed=0):
    n, c_in, h, c_out, k, s, p, d, g = spec
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, h, generator=gen, requires_grad=True)
    w = torch.randn(c_out, c_in // g, k, k, generator=gen, requires_grad=True)
    b = torch.randn(c_out, generator=gen, requires_grad=True)
    return x, w, b, (s, p, d, g)


def _step(conv, x, w, b, conf, backward):
    y = conv(x, w, b, *conf)
    if backward:
        y.backward(torch.ones_like(y))
        x.grad = w.grad = b.grad = None
    return y


def _peak_memory(name: str, which: str, threads: int, queue) -> None:
    """In a fresh process: MiB by which one forward+backward raises the RSS.

    The resident set size is sampled every millisecond in a thread while the
    step runs; the baseline is the RSS once the inputs exist.
    """
    import threading

    import psutil

    from dlbook.convnets.convolution import conv2d

    torch.set_num_threads(threads)
    conv = conv2d if which == "ours" else F.conv2d
    small = _inputs((1, 1, 8, 1, 3, 1, 1, 1, 1))
    _step(conv, *small, backward=True)  # load kernels and libraries first
    x, w, b, conf = _inputs(LAYERS[name])
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        _step(conv, x, w, b, conf, backward=True)
    finally:
        done.set()
        thread.join()
    queue.put((max(peak[0], proc.memory_info().rss) - before) / 2**20)


def peak_memory(name: str, which: str, threads: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory, args=(name, which, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    from dlbook.config import describe
    from dlbook.convnets.convolution import conv2d

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{describe()}\ntorch threads {torch.get_num_threads()}, {args.repeats} repeats\n")
    head = (
        f"{'layer':<16}{'pass':<10}{'ours (ms)':>10}{'torch (ms)':>11}{'ratio':>7}"
        f"{'ours MiB':>10}{'torch MiB':>10}"
    )
    print(head)
    for name, spec in LAYERS.items():
        x, w, b, conf = _inputs(spec)
        ours, ref = _step(conv2d, x, w, b, conf, False), _step(F.conv2d, x, w, b, conf, False)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
        grads = []
        for conv in (conv2d, F.conv2d):
            y = conv(x, w, b, *conf)
            grads.append(torch.autograd.grad(y, (x, w, b), torch.ones_like(y)))
        for a, c in zip(*grads, strict=True):
            torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-3)
        mem = {which: peak_memory(name, which, args.threads) for which in ("ours", "torch")}
        for backward in (False, True):
            times = {conv2d: [], F.conv2d: []}
            for conv in times:  # warm-up
                _step(conv, x, w, b, conf, backward)
            for _ in range(args.repeats):
                for conv in times:
                    t0 = time.perf_counter()
                    if backward:
                        _step(conv, x, w, b, conf, True)
                    else:
                        with torch.no_grad():
                            _step(conv, x, w, b, conf, False)
                    times[conv].append(time.perf_counter() - t0)
            a = statistics.median(times[conv2d]) * 1e3
            c = statistics.median(times[F.conv2d]) * 1e3
            what = "fwd+bwd" if backward else "forward"
            extra = f"{mem['ours']:>10.1f}{mem['torch']:>10.1f}" if backward else ""
            print(f"{name:<16}{what:<10}{a:>10.2f}{c:>11.2f}{a / c:>7.2f}{extra}")


if __name__ == "__main__":
    main()

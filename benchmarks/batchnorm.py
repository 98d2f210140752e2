"""Speed of the NumPy batch-norm backward passes: staged (CS231n graph) against closed form,
and our NumPy layer inside PyTorch against ``nn.BatchNorm1d``.

    python benchmarks/batchnorm.py

Not a test: timings depend on the machine. Book chapter: ``book/regularization/batchnorm.md``.
"""

from __future__ import annotations

import timeit

import numpy as np
import torch
from torch import nn

from dlbook.regularization.batchnorm import (
    TorchBatchNorm, batchnorm_backward, batchnorm_backward_alt, batchnorm_forward,
)


def main(repeat: int = 200) -> None:
    rng = np.random.default_rng(0)
    for m, c in [(64, 100), (256, 1024)]:
        x, dout = rng.standard_normal((m, c)), rng.standard_normal((m, c))
        _, cache = batchnorm_forward(x, np.ones(c), np.zeros(c))
        def per_call(backward, dout=dout, cache=cache):
            return min(timeit.repeat(lambda: backward(dout, cache), number=repeat, repeat=3)) / repeat

        staged, closed = per_call(batchnorm_backward), per_call(batchnorm_backward_alt)
        print(f"backward ({m}, {c}): staged {staged * 1e6:.0f} us, closed form {closed * 1e6:.0f} us, "
              f"speed-up {staged / closed:.2f}x")
        xt = torch.randn(m, c, requires_grad=True)
        for name, layer in [("TorchBatchNorm (NumPy)", TorchBatchNorm(c)), ("nn.BatchNorm1d", nn.BatchNorm1d(c))]:
            def step(layer=layer, xt=xt):
                layer(xt).sum().backward()
            t = min(timeit.repeat(step, number=repeat // 4, repeat=3)) / (repeat // 4)
            print(f"  forward + backward, {name}: {t * 1e6:.0f} us")


if __name__ == "__main__":
    main()

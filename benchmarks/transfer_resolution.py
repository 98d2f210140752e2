"""What the quick profile's lower resolution costs (transfer-learning chapter).

Linear-probe test accuracy of EfficientNet-Lite0's frozen head features with
10 labelled photos per class (seed 0) and 12 test photos per class, at several
input sizes, and the CPU time of each (one thread). The chapter
(``book/transfer/transfer-learning.md``) runs at 112 px in its quick profile
and at 224 px in its full profile; this script measures the gap.

    PYTHONPATH=. python benchmarks/transfer_resolution.py --sizes 112 224
"""

from __future__ import annotations

import argparse
import time

import torch

from dlbook.data import load_clothing
from dlbook.pretrained import efficientnet_lite0
from dlbook.transfer.transfer_learning import (
    FeatureCache,
    few_shot_indices,
    linear_probe,
    load_images,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[96, 112, 128, 224]
    )
    parser.add_argument("--shots", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = efficientnet_lite0()
    train, test = load_clothing("train"), load_clothing("test")
    train_idx = few_shot_indices(train.targets, args.shots, seed=0)
    test_idx = few_shot_indices(test.targets, 12, seed=99)
    print("size  probe accuracy  CPU s (images + features)")
    for size in args.sizes:
        start = time.process_time()
        x, y = load_images(train, train_idx, size)
        xt, yt = load_images(test, test_idx, size)
        cache = FeatureCache(net.model, ["head"])
        f = cache("train", net.normalize(x))["head"]
        ft = cache("test", net.normalize(xt))["head"]
        seconds = time.process_time() - start
        acc = linear_probe(f, y, ft, yt)
        print(f"{size:4d}  {acc:14.3f}  {seconds:6.1f}")


if __name__ == "__main__":
    main()

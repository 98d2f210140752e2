"""Grad-CAM and Grad-CAM++: our implementation against pytorch-grad-cam, same model, layer and batch.

    python benchmarks/gradcam.py [--batch 8] [--repeats 10]

EfficientNet-Lite0 (ImageNet weights), target layer ``_conv_head``, a batch of real photos
at 224x224, each image's top class. The two implementations are timed interleaved (ours,
theirs, ours, ...) after a warm-up, so that load on the machine affects both alike; the table
gives the median time per batch and the ratio. Their maps are checked equal to ours first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    from pytorch_grad_cam import GradCAM as RefGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from dlbook.config import describe
    from dlbook.data import PHOTOS, load_photo
    from dlbook.interpretability.gradcam import GradCAM, GradCAMPlusPlus
    from dlbook.pretrained import efficientnet_lite0

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    net = efficientnet_lite0()
    photos = [net.preprocess(load_photo(n)) for n in PHOTOS]
    x = torch.stack([photos[i % len(photos)] for i in range(args.batch)])
    print(f"{describe()}\nbatch {tuple(x.shape)}, {args.repeats} repeats, torch threads {torch.get_num_threads()}\n")
    print(f"{'method':<16}{'ours (ms)':>12}{'pytorch-grad-cam (ms)':>24}{'ratio':>8}{'max |diff|':>12}")
    for ours_cls, ref_cls in [(GradCAM, RefGradCAM), (GradCAMPlusPlus, RefGradCAMPlusPlus)]:
        ours = ours_cls(net.model, "_conv_head")
        targets = ours(x).targets
        ref_targets = [ClassifierOutputTarget(int(t)) for t in targets]
        with ref_cls(model=net.model, target_layers=[net.model._conv_head]) as ref:
            diff = (ours(x, targets).maps - torch.from_numpy(ref(input_tensor=x, targets=ref_targets))).abs().max().item()
            t_ours, t_ref = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ours(x, targets)
                t1 = time.perf_counter()
                ref(input_tensor=x, targets=ref_targets)
                t2 = time.perf_counter()
                t_ours.append(t1 - t0)
                t_ref.append(t2 - t1)
        a, b = statistics.median(t_ours) * 1e3, statistics.median(t_ref) * 1e3
        print(f"{ours_cls.__name__:<16}{a:>12.1f}{b:>24.1f}{a / b:>8.2f}{diff:>12.1e}")


if __name__ == "__main__":
    main()

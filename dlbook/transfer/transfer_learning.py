"""Transfer learning from an ImageNet network to a small labelled data set.

The pieces of the comparison in ``book/transfer/transfer-learning.md``: a
seeded stratified sampler of few labelled examples per class
(`few_shot_indices`), a staged forward pass of EfficientNet-Lite0 that
returns the globally pooled features of any stage in one pass
(`backbone_stages`) and a cache that computes them once
(`FeatureCache`), a linear probe trained on cached features
(`linear_probe`), freezing (`freeze`), discriminative learning
rates (`discriminative_groups`, Howard & Ruder 2018) and the models
that are fine-tuned: the top blocks on cached activations (`TopBlocks`)
and the whole network with a new head (`FineTuneNet`).

References: Yosinski et al. (2014), "How transferable are features in deep
neural networks?"; Kornblith et al. (2019), "Do better ImageNet models
transfer better?". The staged forward pass is checked against the
package's own ``EfficientNet.extract_features`` and ``forward``
(``efficientnet-lite-pytorch``) in ``tests/transfer/``; training goes
through `dlbook.train.fit`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_number,
    check_tensor,
)
from dlbook.train import evaluate, fit

N_BLOCKS = 16
"""EfficientNet-Lite0 has 16 MBConv blocks, ``_blocks.0`` to ``_blocks.15``."""

STAGES = ("stem", *(f"blocks.{i}" for i in range(N_BLOCKS)), "head")
"""The stages whose output `backbone_stages` can return, input first."""


def few_shot_indices(
    targets: Sequence[int], shots: int, seed: int = 0
) -> np.ndarray:
    """Exactly ``shots`` indices of each class, drawn without replacement.

    The draw for a seed is nested: the first ``k`` of each class are the
    same for every ``shots >= k``, so a run with 10 labels per class holds
    the 5 of the run with 5. The indices are returned class by class.

    Args:
        targets: the class of every example, (N,) integers 0 ... C-1.
        shots: labelled examples per class, 1 ... the smallest class's size.
        seed: seeds the permutation of each class.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1 or not len(targets):
        raise ValueError(
            "targets must be a non-empty 1-d sequence of classes, got shape "
            f"{targets.shape}"
        )
    counts = np.bincount(targets)
    smallest = int(counts[counts > 0].min())
    shots = check_int("shots", shots, low=1, high=smallest)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(targets == c)
        picked.append(members[rng.permutation(len(members))[:shots]])
    return np.concatenate(picked)


def backbone_stages(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str] = ("head",),
    start: str | None = None,
    pool: bool = True,
    maps: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's forward pass by stages: stem, 16 blocks, head.

    Each stage of ``layers`` is returned, averaged over its positions
    (``pool``) or as a feature map. The pass stops at the deepest stage
    asked for. With ``start``, ``x`` is the output of that stage (a cached
    activation) and the pass resumes after it.

    Args:
        model: the package's ``EfficientNet`` (see dlbook.pretrained).
        x: images (B, 3, S, S), normalised, or the output of ``start``.
        layers: names from `STAGES`.
        start: the stage whose output ``x`` is; ``None``: ``x`` is images.
        pool: average each returned map over its positions.
        maps: stages whose maps are returned too, as ``"<name>/map"``.

    Shapes:
        x: (B, 3, S, S); an output: (B, C) pooled, (B, C, h, w) otherwise.
    """
    check_tensor("x", x, ndim=4)
    layers = [check_choice("layers", name, STAGES) for name in layers]
    maps = [check_choice("maps", name, STAGES) for name in maps]
    if not layers:
        raise ValueError("layers must name at least one stage, got none")
    first = (
        0
        if start is None
        else STAGES.index(check_choice("start", start, STAGES)) + 1
    )
    last = max(STAGES.index(name) for name in [*layers, *maps])
    if last < first:
        raise ValueError(
            f"layers must come after start={start!r}, got {layers}"
        )
    rate = model._global_params.drop_connect_rate
    out = {}
    for i in range(first, last + 1):
        name = STAGES[i]
        if name == "stem":
            x = model._swish(model._bn0(model._conv_stem(x)))
        elif name == "head":
            x = model._swish(model._bn1(model._conv_head(x)))
        else:
            k = i - 1  # the package scales drop-connect by block index
            x = model._blocks[k](
                x, drop_connect_rate=rate * k / N_BLOCKS if rate else rate
            )
        if name in layers:
            out[name] = x.mean(dim=(2, 3)) if pool else x
        if name in maps:
            out[name + "/map"] = x
    return out


class FeatureCache:
    """Frozen features, computed once per set of images and kept in memory.

    ``cache(key, images)`` runs the backbone (in eval mode, without
    gradients) the first time a key is seen and returns the stored features
    every later time; ``computed`` counts the forward passes.

    Args:
        model: the pretrained ``EfficientNet``.
        layers: the stages to keep, pooled (see `backbone_stages`).
        maps: the stages whose whole maps are kept too, as ``"<name>/map"``.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        maps: Sequence[str] = (),
        batch_size: int = 64,
    ):
        self.model = model
        self.layers = [check_choice("layers", n, STAGES) for n in layers]
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.maps = [check_choice("maps", n, STAGES) for n in maps]
        self.store: dict[str, dict[str, torch.Tensor]] = {}
        self.computed = 0

    @torch.no_grad()
    def __call__(
        self, key: str, images: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if key in self.store:
            return self.store[key]
        check_tensor("images", images, ndim=4)
        was_training = self.model.training
        self.model.eval()
        parts = [
            backbone_stages(
                self.model,
                images[i : i + self.batch_size],
                self.layers,
                maps=self.maps,
            )
            for i in range(0, len(images), self.batch_size)
        ]
        self.model.train(was_training)
        self.computed += len(parts)
        self.store[key] = {
            n: torch.cat([p[n] for p in parts]) for n in parts[0]
        }
        return self.store[key]


@dataclass
class ProbeConfig:
    """How a linear probe is trained (full-batch Adam, dlbook.train.fit)."""

    epochs: int = 80  # full-batch steps
    lr: float = 0.01  # Adam's learning rate
    weight_decay: float = 1e-3  # L2 on the weights of the probe
    seed: int = 0  # seeds the initial weights


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    config: ProbeConfig | None = None,
) -> float:
    """Test accuracy of a softmax classifier trained on frozen features.

    The features are standardised with the training set's mean and standard
    deviation, so one learning rate suits every depth of the backbone.

    Shapes:
        train_x: (N, D); train_y: (N,); test_x: (M, D); test_y: (M,).
    """
    config = ProbeConfig() if config is None else config
    check_tensor("train_x", train_x, ndim=2)
    check_tensor("test_x", test_x, ndim=2)
    check_number("lr", config.lr, low=0, low_open=True)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    torch.manual_seed(config.seed)
    probe = nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.Adam(
        probe.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    data = [((train_x - mean) / std, train_y)]
    fit(probe, data, opt, epochs=config.epochs, progress=False)
    test = [((test_x - mean) / std, test_y)]
    return evaluate(probe, test)["acc"]


def freeze(model: nn.Module, trainable: Sequence[str] = ()) -> list[str]:
    """Freeze every parameter except those under the modules ``trainable``.

    A parameter trains if its name starts with one of the prefixes (a
    module's dotted name, e.g. ``"blocks.15"``); every prefix must match at
    least one parameter. Returns the names of the trainable parameters.
    """
    names = [n for n, _ in model.named_parameters()]
    for prefix in trainable:
        if not any(_under(n, prefix) for n in names):
            raise ValueError(
                f"trainable must name modules of the model, got {prefix!r} "
                f"(parameters are named like {names[0]!r}, {names[-1]!r})"
            )
    kept = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(_under(name, t) for t in trainable))
        if p.requires_grad:
            kept.append(name)
    return kept


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def discriminative_groups(
    model: nn.Module,
    stages: Sequence[Sequence[str]],
    lr: float,
    factor: float = 2.6,
) -> list[dict]:
    """Optimizer parameter groups with a learning rate per stage.

    The last stage (nearest the output) gets ``lr``; each stage before it
    gets the rate of the next divided by ``factor``:

        lr_s = lr / factor^(S - 1 - s),  s = 0 ... S-1,

    the discriminative fine-tuning of Howard & Ruder (2018), whose factor
    2.6 is the default. Each stage is a list of module prefixes; every
    trainable parameter must fall into exactly one stage.

    Args:
        model: the network to fine-tune.
        stages: module prefixes per stage, input side first.
        lr: the learning rate of the last stage, > 0.
        factor: the ratio between neighbouring stages, >= 1.
    """
    lr = check_number("lr", lr, low=0, low_open=True)
    factor = check_number("factor", factor, low=1)
    if not stages:
        raise ValueError("stages must hold at least one stage, got none")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    groups, seen = [], set()
    for s, prefixes in enumerate(stages):
        members = [n for n in params if any(_under(n, q) for q in prefixes)]
        if not members:
            raise ValueError(
                f"stages[{s}] = {list(prefixes)} names no trainable "
                "parameter of the model"
            )
        twice = seen.intersection(members)
        if twice:
            raise ValueError(
                f"stages[{s}] repeats parameters of an earlier stage: "
                f"{sorted(twice)[:3]}"
            )
        seen.update(members)
        rate = lr / factor ** (len(stages) - 1 - s)
        groups.append(
            {
                "params": [params[n] for n in members],
                "lr": rate,
                "names": members,
            }
        )
    missing = [n for n in params if n not in seen]
    if missing:
        raise ValueError(
            f"stages must cover every trainable parameter; missing "
            f"{missing[:3]}{' ...' if len(missing) > 3 else ''}"
        )
    return groups


class FineTuneNet(nn.Module):
    """EfficientNet-Lite0 (a copy) with a new linear head of ``num_classes``.

    The batch-norm layers stay in eval mode when the model trains: with
    batches of a few dozen photos, their ImageNet statistics are better
    estimates than the batch's.

    Args:
        backbone: the pretrained ``EfficientNet`` (not modified).
        num_classes: classes of the new task.
        dropout: dropout before the head.
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int, dropout: float = 0.2
    ):
        super().__init__()
        self.backbone = copy.deepcopy(backbone)
        self.backbone._fc = nn.Identity()  # the ImageNet head is dropped
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, check_int("num_classes", num_classes, low=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = backbone_stages(self.backbone, x)["head"]  # (B, 1280)
        return self.fc(self.dropout(h))

    def train(self, mode: bool = True) -> FineTuneNet:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


class TopBlocks(FineTuneNet):
    """The blocks after ``start`` and the head, fed with cached activations.

    Fine-tuning only the top of the network needs the frozen part's output
    once per image: it is computed once (see `FeatureCache` and its
    ``maps``) and this model runs the rest.

    Args:
        backbone: the pretrained ``EfficientNet`` (not modified).
        start: the last frozen stage, e.g. ``"blocks.13"``.
        num_classes: classes of the new task.
    """

    def __init__(
        self,
        backbone: nn.Module,
        start: str,
        num_classes: int,
        dropout: float = 0.2,
    ):
        super().__init__(backbone, num_classes, dropout)
        self.start = check_choice("start", start, STAGES[:-1])
        first = STAGES.index(start)  # blocks before it are not needed
        keep = [int(s.split(".")[1]) for s in STAGES[first + 1 : -1]]
        self.backbone._conv_stem = self.backbone._bn0 = None
        for k in range(N_BLOCKS):
            if k not in keep:
                self.backbone._blocks[k] = nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = backbone_stages(self.backbone, h, start=self.start)["head"]
        return self.fc(self.dropout(z))


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
):
    """Train ``model`` on ``(x, y)`` in shuffled batches (dlbook.train.fit)."""
    check_int("epochs", epochs, low=1)
    data = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return fit(model, loader, optimizer, epochs=epochs, progress=False)


def accuracy_on(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size=128
) -> float:
    """Accuracy of ``model`` on ``(x, y)`` (dlbook.train.evaluate)."""
    batches = [
        (x[i : i + batch_size], y[i : i + batch_size])
        for i in range(0, len(x), batch_size)
    ]
    return evaluate(model, batches, loss_fn=None)["acc"]


def small_cnn(num_classes: int, width: int = 32) -> nn.Sequential:
    """The from-scratch baseline: four conv-BN-ReLU-pool stages and a head."""
    layers, c_in = [], 3
    for c in (width, 2 * width, 4 * width, 4 * width):
        layers += [
            nn.Conv2d(c_in, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        c_in = c
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c_in, check_int("num_classes", num_classes, low=2)),
    ]
    return nn.Sequential(*layers)


def load_images(
    dataset, indices: Sequence[int], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos of an ImageFolder as (N, 3, size, size) in [0, 1], and labels.

    The ImageNet evaluation transform scaled to ``size``: the shorter side is
    resized to size · 256/224 (antialiased), then the centre square is cut.
    """
    import torchvision.transforms.functional as TF

    size = check_int("size", size, low=32)
    xs = []
    for i in indices:
        image, _ = dataset[int(i)]
        image = TF.resize(image, round(size * 256 / 224), antialias=True)
        xs.append(TF.to_tensor(TF.center_crop(image, size)))
    y = torch.tensor([dataset.targets[int(i)] for i in indices])
    return torch.stack(xs), y


# --- the four ways of using (or not using) the pretrained network ----------


@dataclass
class FineTuneConfig:
    """How a network is trained on the few labelled photos."""

    epochs: int = 10  # passes over the labelled photos
    lr: float = 1e-3  # Adam's learning rate for the last stage (the head)
    factor: float = 2.6  # ratio of neighbouring stages' learning rates
    batch_size: int = 25  # photos per step
    seed: int = 0  # seeds the initial head and the batch order


def fine_tune_top(
    backbone: nn.Module,
    h_train: torch.Tensor,
    y_train: torch.Tensor,
    h_test: torch.Tensor,
    y_test: torch.Tensor,
    start: str,
    config: FineTuneConfig,
) -> float:
    """Fine-tune the stages after ``start`` on cached maps; test accuracy.

    Two learning rates: ``lr`` for the new head and ``lr / factor`` for the
    pretrained blocks above ``start``; everything below stays frozen.
    """
    torch.manual_seed(config.seed)
    model = TopBlocks(backbone, start, int(y_train.max()) + 1)
    groups = discriminative_groups(
        model, [["backbone"], ["fc"]], config.lr, config.factor
    )
    opt = torch.optim.Adam(groups)
    train_classifier(
        model,
        h_train,
        y_train,
        opt,
        config.epochs,
        config.batch_size,
        config.seed,
    )
    return accuracy_on(model, h_test, y_test)


# EfficientNet-Lite0's stages for discriminative fine-tuning, input first.
LITE0_STAGES = (
    ["backbone._conv_stem", "backbone._bn0"]
    + [f"backbone._blocks.{k}" for k in range(3)],
    [f"backbone._blocks.{k}" for k in range(3, 8)],
    [f"backbone._blocks.{k}" for k in range(8, 15)],
    ["backbone._blocks.15", "backbone._conv_head", "backbone._bn1"],
    ["fc"],
)


def fine_tune_all(
    backbone: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    config: FineTuneConfig,
) -> float:
    """Fine-tune the whole network with discriminative learning rates.

    The five stages of `LITE0_STAGES` get lr / factor⁴, ...,
    lr / factor, lr: the stem moves least, the new head most.
    """
    torch.manual_seed(config.seed)
    model = FineTuneNet(backbone, int(y_train.max()) + 1)
    groups = discriminative_groups(
        model, LITE0_STAGES, config.lr, config.factor
    )
    opt = torch.optim.Adam(groups)
    train_classifier(
        model,
        x_train,
        y_train,
        opt,
        config.epochs,
        config.batch_size,
        config.seed,
    )
    return accuracy_on(model, x_test, y_test)


def train_scratch(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    size: int,
    config: FineTuneConfig,
    width: int = 16,
) -> float:
    """Train `small_cnn` from random weights at ``size`` px; accuracy."""
    size = check_int("size", size, low=8)
    torch.manual_seed(config.seed)
    model = small_cnn(int(y_train.max()) + 1, width)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    small = [
        F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        for x in (x_train, x_test)
    ]
    train_classifier(
        model,
        small[0],
        y_train,
        opt,
        config.epochs,
        config.batch_size,
        config.seed,
    )
    return accuracy_on(model, small[1], y_test)

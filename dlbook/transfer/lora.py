"""LoRA: low-rank adaptation of a frozen pretrained layer.

Hu et al. (2022), "LoRA: Low-Rank Adaptation of Large Language Models"
(ICLR). A frozen weight ``W`` of shape (out, in) is adapted by a trainable
low-rank product, ``W + (alpha / r) B A`` with ``A`` (r, in) and ``B``
(out, r); ``B`` starts at zero, so the adapted model starts equal to the
pretrained one. `LoRALinear` wraps an ``nn.Linear`` and `LoRAConv2d` an
``nn.Conv2d``; `add_lora` puts them into a model by module name, freezes
everything else, and `merge_lora` folds the product into the weights.

The layers are checked against PEFT's ``get_peft_model`` with the same
``A`` and ``B`` (outputs, gradients, merged weights) in ``tests/transfer/``
and in ``book/transfer/lora.md``, which also uses the experiment helpers at
the end of this module: a small CNN pretrained on Fashion-MNIST and adapted
to MNIST, and all-MiniLM-L6-v2 fine-tuned to tell spam from ham.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import check_int, check_number, check_probability
from dlbook.train import fit
from dlbook.transfer.transfer_learning import accuracy_on, train_classifier


class _LoRA(nn.Module):
    """What LoRA layers share: the frozen base, the scaling, merging.

    A subclass creates ``lora_A`` and ``lora_B`` and says how the low-rank
    path runs (``_lora``) and what weight it adds (``delta_weight``).
    """

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)  # only A and B train
        self.r = r
        self.alpha = check_number("alpha", alpha, low=0, low_open=True)
        self.scaling = self.alpha / r
        p = check_probability("dropout", dropout, allow_one=False)
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()
        self.merged = False

    def _init(self) -> None:
        # A as nn.Linear initialises its weight (and as PEFT does), B = 0
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:  # W already holds W + scaling * B A
            return y
        return y + self.scaling * self._lora(self.dropout(x))

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``scaling * B A`` to the base weight: no cost at inference."""
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``scaling * B A`` again, to go on training A and B."""
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged")
        self.base.weight -= self.delta_weight()
        self.merged = False


class LoRALinear(_LoRA):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

        h = W x + b + (alpha / r) B A x,  A: (r, in), B: (out, r)

    with B = 0 at initialisation (Hu et al. 2022).

    Args:
        base: the pretrained layer; its parameters are frozen.
        r: the rank, 1 ... min(in_features, out_features).
        alpha: the scale; the update is multiplied by alpha / r, so that
            changing r does not change the size of the initial steps.
        dropout: dropout on the input of the low-rank path only.

    Shapes:
        x: (*, in_features) -> (*, out_features).
    """

    def __init__(
        self, base: nn.Linear, r: int, alpha: float = 1.0, dropout=0.0
    ):
        if not isinstance(base, nn.Linear):
            raise TypeError(
                f"base must be an nn.Linear, got {type(base).__name__}"
            )
        most = min(base.in_features, base.out_features)
        super().__init__(
            base, check_int("r", r, low=1, high=most), alpha, dropout
        )
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r))
        self._init()

    def _lora(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.lora_A.T @ self.lora_B.T  # (*, r) then (*, out)

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * self.lora_B @ self.lora_A  # (out, in)


class LoRAConv2d(_LoRA):
    """A frozen ``nn.Conv2d`` plus a trainable low-rank update.

    The weight (out, in, kh, kw) is read as a matrix (out, in kh kw), and
    its update is ``(alpha / r) B A`` with ``A`` (r, in kh kw), as PEFT does:
    ``A`` is a convolution to r channels with the base layer's kernel,
    stride, padding and dilation, and ``B`` a 1 x 1 convolution back to
    ``out`` channels.

    Args:
        base: the pretrained convolution (groups=1, zero padding); frozen.
        r: the rank, 1 ... min(out_channels, in_channels * kh * kw).
        alpha: the scale of the update, alpha / r.
        dropout: dropout on the input of the low-rank path only.

    Shapes:
        x: (B, in, H, W) -> (B, out, H', W'), as the base layer.
    """

    def __init__(
        self, base: nn.Conv2d, r: int, alpha: float = 1.0, dropout=0.0
    ):
        if not isinstance(base, nn.Conv2d):
            raise TypeError(
                f"base must be an nn.Conv2d, got {type(base).__name__}"
            )
        if base.groups != 1 or base.padding_mode != "zeros":
            raise ValueError(
                "base must be a convolution with groups=1 and zero padding, "
                f"got groups={base.groups}, padding_mode={base.padding_mode!r}"
            )
        kh, kw = base.kernel_size
        fan_in = base.in_channels * kh * kw
        most = min(base.out_channels, fan_in)
        super().__init__(
            base, check_int("r", r, low=1, high=most), alpha, dropout
        )
        self.lora_A = nn.Parameter(torch.empty(r, base.in_channels, kh, kw))
        self.lora_B = nn.Parameter(torch.empty(base.out_channels, r, 1, 1))
        self._init()

    def _lora(self, x: torch.Tensor) -> torch.Tensor:
        c = self.base
        z = F.conv2d(x, self.lora_A, None, c.stride, c.padding, c.dilation)
        return F.conv2d(z, self.lora_B)  # (B, r, H', W') then (B, out, ...)

    def delta_weight(self) -> torch.Tensor:
        BA = self.lora_B.flatten(1) @ self.lora_A.flatten(1)  # (out, in k k)
        return self.scaling * BA.view_as(self.base.weight)


def _matches(name: str, target: str) -> bool:
    # as PEFT's target_modules: the whole name or its last dotted parts
    return name == target or name.endswith("." + target)


def add_lora(
    model: nn.Module,
    targets: Sequence[str],
    r: int,
    alpha: float = 1.0,
    dropout: float = 0.0,
    trainable: Sequence[str] = (),
) -> nn.Module:
    """Wrap the layers named by ``targets`` in LoRA and freeze the rest.

    A module matches a target if its dotted name is the target or ends with
    ``"." + target`` (so ``"query"`` finds every attention query). Each must
    be an ``nn.Linear`` or an ``nn.Conv2d``. Afterwards only the LoRA
    matrices and the modules under ``trainable`` (e.g. a new head) train.
    The model is changed in place and returned.
    """
    if isinstance(targets, str) or not len(targets):
        raise ValueError(
            "targets must be a non-empty list of module names, got "
            f"{targets!r}"
        )
    found = {
        n: m
        for n, m in model.named_modules()
        if n and any(_matches(n, t) for t in targets)
    }
    missing = [t for t in targets if not any(_matches(n, t) for n in found)]
    if missing:
        raise ValueError(f"targets {missing} name no module of the model")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in found.items():
        if isinstance(module, nn.Linear):
            new = LoRALinear(module, r, alpha, dropout)
        elif isinstance(module, nn.Conv2d):
            new = LoRAConv2d(module, r, alpha, dropout)
        else:
            raise TypeError(
                f"targets must name nn.Linear or nn.Conv2d layers, got "
                f"{name!r}, a {type(module).__name__}"
            )
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)
    names = [n for n, _ in model.named_modules()]
    for prefix in trainable:
        if prefix not in names:
            raise ValueError(
                f"trainable: {prefix!r} is no module of the model"
            )
        for p in model.get_submodule(prefix).parameters():
            p.requires_grad_(True)
    return model


def lora_layers(model: nn.Module) -> dict[str, _LoRA]:
    """The LoRA layers of a model, by dotted name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _LoRA)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` (see `LoRALinear.merge`)."""
    for m in lora_layers(model).values():
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo `merge_lora`."""
    for m in lora_layers(model).values():
        m.unmerge()
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters."""
    params = list(model.parameters())
    return (
        sum(p.numel() for p in params if p.requires_grad),
        sum(p.numel() for p in params),
    )


@torch.no_grad()
def copy_lora_to_peft(model: nn.Module, peft_model: nn.Module) -> None:
    """Give a PEFT LoRA model (adapter "default") our A and B, layer by layer.

    ``peft_model`` must have been made by ``peft.get_peft_model`` from a
    copy of the model ``add_lora`` was applied to, with the same targets.
    """
    theirs = dict(peft_model.named_modules())
    for name, m in lora_layers(model).items():
        peft_name = "base_model.model." + name
        if peft_name not in theirs or not hasattr(theirs[peft_name], "lora_A"):
            raise ValueError(f"peft_model has no LoRA layer {peft_name!r}")
        layer = theirs[peft_name]
        layer.lora_A["default"].weight.copy_(m.lora_A)
        layer.lora_B["default"].weight.copy_(m.lora_B)


def training_memory(
    model: nn.Module, x, y: torch.Tensor, optimizer: torch.optim.Optimizer
) -> dict[str, float]:
    """Megabytes held by one training step, counted from its tensors.

    Weights, gradients and optimizer state are summed after one step; the
    activations saved for the backward pass are caught as autograd saves
    them (``torch.autograd.graph.saved_tensors_hooks``), each storage
    once and the parameters not again. The sum is the step's peak, less
    the temporary buffers of single operations.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    grads = sum(
        p.grad.nbytes for p in model.parameters() if p.grad is not None
    )
    state = sum(
        v.nbytes
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    optimizer.zero_grad(set_to_none=True)
    mb = {
        "weights": sum(p.nbytes for p in model.parameters()),
        "gradients": grads,
        "optimizer state": state,
        "activations": sum(saved.values()),
    }
    mb = {k: v / 2**20 for k, v in mb.items()}
    mb["total"] = sum(mb.values())
    return mb


# ----------------------------------------------------------------------------
# The experiments of book/transfer/lora.md
# ----------------------------------------------------------------------------


def _device(device: str | torch.device | None) -> torch.device:
    from dlbook.config import device as best_device

    return best_device(None if device is None else str(device))


class SmallCNN(nn.Module):
    """The network pretrained on Fashion-MNIST: two convolutions, two layers.

    ``conv1`` (1 -> 16) and ``conv2`` (16 -> 32, both 3 x 3, each followed
    by ReLU and 2 x 2 max pooling), ``fc1`` (1568 -> 128) and the head
    ``fc`` (128 -> ``num_classes``).

    Shapes:
        x: (B, 1, 28, 28) -> (B, num_classes).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc = nn.Linear(128, check_int("num_classes", num_classes, low=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 16, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 32, 7, 7)
        return self.fc(F.relu(self.fc1(x.flatten(1))))


@dataclass
class AdaptConfig:
    """How a pretrained network is adapted (Adam, shuffled mini-batches)."""

    epochs: int = 3  # passes over the training images
    lr: float = 1e-2  # Adam's learning rate for the probe and LoRA
    full_lr: float = 3e-3  # for full fine-tuning, lower as is usual
    batch_size: int = 64  # images per step
    alpha: float = 16.0  # LoRA's alpha (scale alpha / r)
    targets: tuple[str, ...] = ("conv2", "fc1")  # layers LoRA adapts
    seed: int = 0  # seeds the new head, A, and the batch order


def adapt(
    pretrained: nn.Module,
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    config: AdaptConfig,
    r: int | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Adapt a copy of ``pretrained`` (a `SmallCNN`) to new classes.

    ``method`` is ``"probe"`` (only the new head trains), ``"lora"`` (the
    head and rank-``r`` LoRA on ``config.targets``) or ``"full"``
    (everything trains). Returns the test accuracy and the number of
    trained parameters. ``device``: where to train, by default
    ``dlbook.config.device()`` (a GPU if there is one).
    """
    if method not in ("probe", "lora", "full"):
        raise ValueError(
            f"method must be 'probe', 'lora' or 'full', got {method!r}"
        )
    if (method == "lora") != (r is not None):
        raise ValueError(f"r must be given for 'lora' only, got r={r!r}")
    torch.manual_seed(config.seed)
    model = SmallCNN(int(y.max()) + 1)
    state = {
        k: v
        for k, v in pretrained.state_dict().items()
        if not k.startswith("fc.")
    }  # a new head, random
    model.load_state_dict(state, strict=False)
    if method == "lora":
        add_lora(model, config.targets, r, config.alpha, trainable=["fc"])
    elif method == "probe":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("fc."))
    model.to(_device(device))
    params = [p for p in model.parameters() if p.requires_grad]
    lr = config.full_lr if method == "full" else config.lr
    opt = torch.optim.Adam(params, lr=lr)
    train_classifier(
        model, x, y, opt, config.epochs, config.batch_size, config.seed
    )
    model.eval()
    return {
        "acc": accuracy_on(model, x_test, y_test),
        "trainable": count_parameters(model)[0],
    }


class TextClassifier(nn.Module):
    """A transformer encoder, mean pooling over real tokens, a linear head.

    The encoder (a ``transformers`` BERT-style model) is used as given, so
    pass a copy to keep the original; its unused pooler is dropped.

    The input packs token ids and attention mask as one integer tensor, so
    that it travels through `dlbook.train.fit` as one ``x``.

    Shapes:
        x: (B, 2, T) int64 (ids, mask) -> (B, num_classes).
    """

    def __init__(self, encoder: nn.Module, num_classes: int = 2):
        super().__init__()
        self.encoder = encoder
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # BERT's [CLS] pooler is not used here
        width = encoder.config.hidden_size
        self.head = nn.Linear(
            width, check_int("num_classes", num_classes, low=2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        h = self.encoder(input_ids=ids, attention_mask=mask)
        h = h.last_hidden_state  # (B, T, D)
        m = mask[..., None].to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1))


def encode_texts(tokenizer, texts: Sequence[str], max_length: int):
    """Texts -> (N, 2, T) int64: token ids and attention mask, padded to T."""
    check_int("max_length", max_length, low=2)
    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty list of strings")
    b = tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return torch.stack([b["input_ids"], b["attention_mask"]], 1)


def trim_padding(x: torch.Tensor) -> torch.Tensor:
    """Drop the trailing columns that are padding in every text of ``x``.

    `encode_texts` pads to ``max_length``; when every text is shorter, the
    columns past the longest one are masked everywhere, so the encoder's
    outputs at the real tokens (and `TextClassifier`'s mean over them) do
    not change, while the compute shrinks (SST-2's sentences are a few dozen
    tokens, the paper's limit 512).

    Shapes:
        x: (N, 2, T) (ids, mask) -> (N, 2, T') with T' <= T.
    """
    if x.ndim != 3 or x.shape[1] != 2:
        raise ValueError(
            f"x must be (N, 2, T) ids and mask, got shape {tuple(x.shape)}"
        )
    used = x[:, 1].bool().any(0).nonzero()
    if not len(used):
        raise ValueError("x holds no real token: every mask is zero")
    return x[..., : int(used.max()) + 1]


def email_text(raw: str, max_chars: int = 2000) -> str:
    """An e-mail's subject line and body, without the other headers."""
    head, _, body = raw.partition("\n\n")
    subject = next(
        (
            ln[8:].strip()
            for ln in head.splitlines()
            if ln.lower().startswith("subject:")
        ),
        "",
    )
    return (subject + "\n" + " ".join(body.split()))[:max_chars]


@dataclass
class TextConfig:
    """How a text encoder is fine-tuned (AdamW, linear warm-up and decay).

    The defaults are Hu et al.'s for RoBERTa-base on SST-2 (their Table
    9: LoRA on the query and value projections, r = 8, alpha = 8, lr 5e-4,
    batches of 16, 6% warm-up), except the number of epochs (60 there).
    """

    method: str = "lora"  # "lora" (A, B and the head) or "full" (all)
    epochs: int = 2  # passes over the training texts
    lr: float = 5e-4  # peak learning rate
    batch_size: int = 16  # texts per step
    warmup: float = 0.06  # fraction of the steps with a rising rate
    weight_decay: float = 0.01  # AdamW's; not in their Table 9
    r: int = 8  # LoRA rank
    alpha: float = 8.0  # LoRA scale alpha / r
    targets: tuple[str, ...] = ("query", "value")  # adapted projections
    seed: int = 0  # seeds the head, A and the batch order


def fine_tune_text(
    encoder: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    config: TextConfig,
    device: str | torch.device | None = None,
) -> dict:
    """Fine-tune a copy of ``encoder`` as a `TextClassifier`, by ``method``.

    Returns the test accuracy, the trainable parameters and the megabytes
    of one training step on the first batch (`training_memory`, measured
    on a copy before training, so training itself is not changed).
    ``device``: where to train, by default ``dlbook.config.device()``.

    Shapes:
        x: (N, 2, T) from `encode_texts`; y: (N,) classes 0 ... C-1.
    """
    if config.method not in ("lora", "full"):
        raise ValueError(
            f"method must be 'lora' or 'full', got {config.method!r}"
        )
    check_int("epochs", config.epochs, low=1)
    if len(x) != len(y) or not len(x):
        raise ValueError(
            f"x and y must hold the same, non-zero number of texts, got "
            f"{len(x)} and {len(y)}"
        )
    torch.manual_seed(config.seed)
    model = TextClassifier(copy.deepcopy(encoder), int(y.max()) + 1)
    if config.method == "lora":
        add_lora(
            model, config.targets, config.r, config.alpha, trainable=["head"]
        )
    dev = _device(device)
    model.to(dev)

    def optimizer(m: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in m.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            params, lr=config.lr, weight_decay=config.weight_decay
        )

    probe = copy.deepcopy(model)
    b = config.batch_size
    memory = training_memory(
        probe, x[:b].to(dev), y[:b].to(dev), optimizer(probe)
    )
    del probe
    opt = optimizer(model)
    steps = config.epochs * math.ceil(len(x) / b)
    warm = max(1, round(config.warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda t: min(
            (t + 1) / warm, max(0.0, (steps - t) / (steps - warm + 1))
        ),
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=b,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    fit(
        model,
        loader,
        opt,
        epochs=config.epochs,
        scheduler=schedule,
        scheduler_step="batch",
        progress=False,
    )
    model.eval()
    return {
        "acc": accuracy_on(model, x_test, y_test, batch_size=64),
        "trainable": count_parameters(model)[0],
        "memory": memory,
    }

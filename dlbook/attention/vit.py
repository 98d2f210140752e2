"""The Vision Transformer (ViT) from scratch, and attention rollout.

An image is cut into p × p patches; each patch is flattened and projected
to a token (one strided convolution does both), a learned class token is
put in front, learned position embeddings are added, and a stack of pre-LN
Transformer blocks (``dlbook.attention.transformer``) mixes the tokens. The
class token's final state, normalized, goes to a linear head.

Attention rollout explains a prediction by following the attention through
the layers: each layer's heads are averaged, the residual connection is
counted as an identity, and the per-layer maps are multiplied.

Papers: Dosovitskiy et al. (2021), "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale" (ViT); Abnar & Zuidema
(2020), "Quantifying Attention Flow in Transformers" (rollout).

Checked against (``tests/attention/test_vit.py``):
``torchvision.models.VisionTransformer`` in a tiny configuration, weights
copied by ``load_torchvision_weights``: equal outputs and equal gradients
with respect to the input and to every parameter (float64, eval mode).

The chapter's experiment (a ViT against a CNN of the same size on "is it
X or not" tasks) uses ``one_against_rest``, ``train_classifier`` (through
``dlbook.train.fit``) and ``learning_curve``.

Chapter: ``book/attention/vit.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dlbook.attention.transformer import Block
from dlbook.checks import (
    check_int,
    check_number,
    check_probability,
    check_tensor,
)

# --- the model ---------------------------------------------------------------


@dataclass
class ViTConfig:
    """The hyperparameters of a ViT (torchvision's argument names)."""

    image_size: int = 28  # side of the square input image, in pixels
    patch_size: int = 7  # side of a patch; must divide image_size
    in_channels: int = 1  # 1 for Fashion-MNIST, 3 for RGB
    num_layers: int = 2  # encoder blocks
    num_heads: int = 4  # heads per block; must divide hidden_dim
    hidden_dim: int = 64  # D, the width of the tokens
    mlp_dim: int = 128  # the MLP's hidden width (4 D in the paper)
    num_classes: int = 2  # outputs of the head
    dropout: float = 0.0  # after the position embeddings, attention, MLP


class VisionTransformer(nn.Module):
    """ViT: patches as tokens, a class token, a Transformer encoder.

    z₀ = [x_class; x¹_p E; ...; x^N_p E] + E_pos,
    z_l = Block_l(z_{l−1}),  l = 1..L,
    y = head(LN(z_L⁰))

    (eq. 1 to 4 of Dosovitskiy et al.), with N = (image_size / p)² patches.
    E is a p × p convolution with stride p (``conv_proj``), the same as
    flattening each patch and multiplying by a (C p², D) matrix.

    Args:
        config: a ``ViTConfig``.

    Shapes:
        x: (B, C, S, S) with C = in_channels, S = image_size.
        returns the logits (B, num_classes); with ``return_attention=True``
        also a list of L attention maps, each (B, heads, N + 1, N + 1)
        (token 0 is the class token, then the patches row by row).
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        c = config
        for name in ("image_size", "patch_size", "in_channels", "num_layers"):
            check_int(name, getattr(c, name), low=1)
        for name in ("num_heads", "hidden_dim", "mlp_dim", "num_classes"):
            check_int(name, getattr(c, name), low=1)
        check_probability("dropout", c.dropout, allow_one=False)
        if c.image_size % c.patch_size:
            raise ValueError(
                f"image_size must be divisible by patch_size={c.patch_size}, "
                f"got image_size={c.image_size}"
            )
        if c.hidden_dim % c.num_heads:
            raise ValueError(
                f"hidden_dim must be divisible by num_heads={c.num_heads}, "
                f"got hidden_dim={c.hidden_dim}"
            )
        self.config = c
        self.grid = c.image_size // c.patch_size  # patches per side
        D, n_tokens = c.hidden_dim, self.grid**2 + 1
        self.conv_proj = nn.Conv2d(
            c.in_channels, D, c.patch_size, stride=c.patch_size
        )
        self.class_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embedding = nn.Parameter(torch.empty(1, n_tokens, D))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            # torchvision's ViT uses LayerNorm eps=1e-6 (the JAX original's)
            Block(D, c.num_heads, c.mlp_dim, c.dropout, "gelu", eps=1e-6)
            for _ in range(c.num_layers)
        )
        self.ln = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, c.num_classes)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # torchvision's initialization: patch projection truncated normal
        # with variance 1/fan_in, positions N(0, 0.02), Xavier-uniform MLP
        # weights with N(0, 1e-6) biases, a zero head (the first logits are
        # 0, the loss starts at log(num_classes))
        fan_in = self.conv_proj.in_channels * self.config.patch_size**2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.normal_(self.pos_embedding, std=0.02)
        for block in self.blocks:
            for fc in (block.fc1, block.fc2):
                nn.init.xavier_uniform_(fc.weight)
                nn.init.normal_(fc.bias, std=1e-6)
            # nn.MultiheadAttention's: Xavier-uniform in_proj, zero biases
            nn.init.xavier_uniform_(block.attn.in_proj.weight)
            nn.init.zeros_(block.attn.in_proj.bias)
            nn.init.zeros_(block.attn.out_proj.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def patchify(self, x: Tensor) -> Tensor:
        """The patch tokens x_p E: (B, C, S, S) → (B, N, D)."""
        c = self.config
        check_tensor(
            "x",
            x,
            ndim=4,
            shape=(None, c.in_channels, c.image_size, c.image_size),
            floating=True,
        )
        x = self.conv_proj(x)  # (B, D, S/p, S/p)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), patches row by row

    def forward(self, x: Tensor, return_attention: bool = False):
        z = self.patchify(x)  # (B, N, D)
        cls = self.class_token.expand(len(z), -1, -1)  # (B, 1, D)
        z = torch.cat([cls, z], dim=1) + self.pos_embedding  # (B, N+1, D)
        z = self.drop(z)
        maps = []
        for block in self.blocks:
            z, weights = block(z, return_weights=True)
            maps.append(weights)  # (B, heads, N+1, N+1)
        logits = self.head(self.ln(z)[:, 0])  # (B, num_classes)
        return (logits, maps) if return_attention else logits


# --- torchvision's weights ---------------------------------------------------


def torchvision_names(num_layers: int) -> dict[str, str]:
    """Our parameter names → torchvision ``VisionTransformer``'s, all of them.

    One entry per tensor of both models, so that a copy through this map
    leaves nothing out (tested). torchvision keeps the position embeddings
    in its encoder and the head in a ``heads`` Sequential, and names its MLP
    layers by their index in ``mlp`` (0: Linear, 1: GELU, 2: Dropout,
    3: Linear, 4: Dropout).
    """
    check_int("num_layers", num_layers, low=1)
    names = {
        "conv_proj.weight": "conv_proj.weight",
        "conv_proj.bias": "conv_proj.bias",
        "class_token": "class_token",
        "pos_embedding": "encoder.pos_embedding",
        "ln.weight": "encoder.ln.weight",
        "ln.bias": "encoder.ln.bias",
        "head.weight": "heads.head.weight",
        "head.bias": "heads.head.bias",
    }
    layer = {
        "ln1": "ln_1.",
        "attn.in_proj": "self_attention.in_proj_",  # in_proj_weight
        "attn.out_proj": "self_attention.out_proj.",
        "ln2": "ln_2.",
        "fc1": "mlp.0.",
        "fc2": "mlp.3.",
    }
    for i in range(num_layers):
        for ours, theirs in layer.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{p}"] = (
                    f"encoder.layers.encoder_layer_{i}.{theirs}{p}"
                )
    return names


@torch.no_grad()
def load_torchvision_weights(
    ours: VisionTransformer, tv_model: nn.Module
) -> VisionTransformer:
    """Copy a ``torchvision.models.VisionTransformer``'s weights into ours.

    The two models must have the same configuration (torchvision's
    ``representation_size`` and ``conv_stem_configs`` are not supported).
    Every tensor is copied through ``torchvision_names``; a missing or
    extra name, or a shape that differs, raises. Returns ``ours``.
    """
    from torchvision.models import VisionTransformer as TVVisionTransformer

    if not isinstance(ours, VisionTransformer):
        raise TypeError(
            f"ours must be a dlbook VisionTransformer, got "
            f"{type(ours).__name__}"
        )
    if not isinstance(tv_model, TVVisionTransformer):
        raise TypeError(
            f"tv_model must be a torchvision.models.VisionTransformer, got "
            f"{type(tv_model).__name__}"
        )
    names = torchvision_names(ours.config.num_layers)
    own = dict(ours.named_parameters())
    theirs = dict(tv_model.named_parameters())
    differ = sorted(set(names.values()) ^ set(theirs))
    if differ:
        raise ValueError(
            f"tv_model must have the parameters of a ViT with "
            f"{ours.config.num_layers} layers, a plain head and a "
            f"convolutional patch projection; these names differ: "
            f"{differ[:5]}"
        )
    for mine, their_name in names.items():
        value = theirs[their_name]
        if own[mine].shape != value.shape:
            raise ValueError(
                f"{mine}: shape {tuple(own[mine].shape)} cannot take "
                f"{their_name} of shape {tuple(value.shape)} (the "
                f"configurations differ)"
            )
        own[mine].copy_(value)
    return ours


# --- attention rollout -------------------------------------------------------


def rollout_matrix(maps: list[Tensor]) -> Tensor:
    """Abnar & Zuidema's rollout: Ã = Â_L ⋯ Â_1, Â_l = (Ā_l + I) / 2.

    Ā_l is layer l's attention averaged over its heads; adding I counts the
    residual connection, which carries each token's own state forward;
    dividing by 2 keeps each row a probability distribution (the rows of Ā_l
    sum to one). Row i of Ã says how much each input token flows into
    token i at the top.

    Shapes:
        maps: L tensors (B, heads, T, T), first layer first. Returns
        (B, T, T), rows summing to one.
    """
    if not isinstance(maps, (list, tuple)) or not maps:
        raise ValueError(
            f"maps must be a non-empty list of attention maps, got "
            f"{type(maps).__name__} of length "
            f"{len(maps) if hasattr(maps, '__len__') else '?'}"
        )
    first = check_tensor("maps[0]", maps[0], ndim=4, floating=True)
    B, _, T, _ = first.shape
    eye = torch.eye(T, dtype=first.dtype, device=first.device)
    rollout = eye.expand(B, T, T)
    for i, A in enumerate(maps):
        check_tensor(f"maps[{i}]", A, ndim=4, shape=(B, None, T, T))
        A = (A.mean(1) + eye) / 2  # (B, T, T)
        rollout = A @ rollout  # (B, T, T)
    return rollout


@torch.no_grad()
def attention_rollout(model: VisionTransformer, x: Tensor) -> Tensor:
    """How much each patch flows into the class token, through all layers.

    The class token's row of ``rollout_matrix``, without its own column,
    laid out on the patch grid. The values do not sum to one: the rest is
    the class token's own share.

    Shapes:
        x: (B, C, S, S) → (B, S/p, S/p).
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(
            f"model must be a dlbook VisionTransformer, got "
            f"{type(model).__name__}"
        )
    was = model.training
    model.eval()  # dropout off: the maps of the model as it predicts
    _, maps = model(x, return_attention=True)
    model.train(was)
    row = rollout_matrix(maps)[:, 0, 1:]  # (B, N)
    return row.reshape(len(x), model.grid, model.grid)  # (B, S/p, S/p)


# --- the chapter's experiment: "is it X or not" ------------------------------


def one_against_rest(
    y: Tensor, positive: int, n: int, seed: int
) -> tuple[Tensor, Tensor]:
    """A class-balanced "is it class ``positive``?" subset of labels ``y``.

    n / 2 examples of ``positive`` (label 1) and n / 2 of the other classes
    that occur in ``y`` (label 0), the negatives spread over those classes
    as evenly as possible (the lower labels first get one more); all
    drawn without replacement by a generator seeded with ``seed``. Each
    size is its own draw: a larger n does not contain a smaller one.

    Returns:
        The indices into ``y`` (sorted) and the binary labels, int64.

    Shapes:
        y: (N,) class labels → indices (n,), labels (n,).
    """
    check_tensor("y", y, ndim=1, floating=False, nonempty=True)
    check_int("positive", positive, low=0)
    check_int("n", n, low=2)
    if n % 2:
        raise ValueError(f"n must be even (half positive), got {n}")
    check_int("seed", seed, low=0)
    labels = y.numpy()
    classes = np.unique(labels)
    if positive not in classes:
        raise ValueError(
            f"positive={positive} is not a class of y, whose classes are "
            f"{classes.tolist()}"
        )
    others = [int(c) for c in classes if c != positive]
    if not others:
        raise ValueError("y must hold at least one class besides positive")
    rng = np.random.default_rng(seed)
    take = {positive: n // 2}
    for i, c in enumerate(others):  # the negatives, as even as possible
        take[c] = n // 2 // len(others) + (i < n // 2 % len(others))
    picked = []
    for c, k in take.items():
        pool = np.flatnonzero(labels == c)
        if k > len(pool):
            raise ValueError(
                f"n={n} needs {k} examples of class {c}, but y holds "
                f"{len(pool)}"
            )
        picked.append(rng.choice(pool, size=k, replace=False))
    index = torch.from_numpy(np.sort(np.concatenate(picked)))
    return index, (y[index] == positive).long()


def _chain(augment):
    """One augmentation from None, an augmentation or a sequence of them."""
    from dlbook.transfer.augmentation import Augmentation

    if augment is None or isinstance(augment, Augmentation):
        return augment
    if not isinstance(augment, (list, tuple)) or not all(
        isinstance(a, Augmentation) for a in augment
    ):
        raise TypeError(
            "augment must be an Augmentation, a list of them or None, got "
            f"{augment!r}"
        )

    class Chain(Augmentation):
        """The augmentations of the list, one after the other."""

        def __call__(self, x, generator=None):
            for a in augment:
                x = a(x, generator)
            return x

    return Chain()


@dataclass
class TrainSettings:
    """How each model of the comparison is trained (the same for both)."""

    steps: int = 400  # optimizer steps, whatever the training-set size
    batch_size: int = 32  # images per step
    lr: float = 1e-3  # AdamW's peak learning rate (cosine decay to 0)
    weight_decay: float = 0.05  # AdamW's decoupled weight decay


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: TrainSettings,
    augment=None,
    seed: int = 0,
    device: torch.device | str | None = None,
):
    """Train ``model`` on (x, y) for ``settings.steps`` steps with ``fit``.

    The number of epochs is the one that gives (about) ``steps`` steps, so
    that a small training set is seen many times and every size gets the
    same amount of optimization. ``augment`` (an augmentation of
    ``dlbook.transfer.augmentation``, a list of them applied in turn, or
    None) draws new views of each batch
    at each step; ``seed`` seeds the batch order and the augmentation's
    draws (the weights are the caller's: seed before building the model).
    ``device`` (default: where the model is) is where ``fit`` trains; the
    batches are drawn and augmented on the CPU and moved there. Returns
    ``fit``'s history.

    Shapes:
        x: (N, C, H, W); y: (N,) class labels.
    """
    from dlbook.train import TensorBatches, fit
    from dlbook.transfer.augmentation import AugmentedLoader

    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    check_tensor("y", y, shape=(len(x),), floating=False)
    s = settings
    check_int("steps", s.steps, low=1)
    check_int("batch_size", s.batch_size, low=1)
    check_number("lr", s.lr, low=0, low_open=True)
    check_number("weight_decay", s.weight_decay, low=0)
    check_int("seed", seed, low=0)
    batches = TensorBatches(
        x, y, s.batch_size, generator=torch.Generator().manual_seed(seed)
    )
    epochs = max(1, round(s.steps / len(batches)))
    opt = torch.optim.AdamW(
        model.parameters(), lr=s.lr, weight_decay=s.weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=epochs * len(batches)
    )
    with torch.random.fork_rng():  # the draws of augment: from seed
        torch.manual_seed(seed)
        return fit(
            model,
            AugmentedLoader(batches, _chain(augment)),
            opt,
            epochs=epochs,
            scheduler=sched,
            scheduler_step="batch",
            metrics={},
            device=device,
            progress=False,
        )


def learning_curve(
    builders: dict,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    positive: int,
    sizes,
    seeds,
    settings: TrainSettings,
    augment=None,
    test_size: int | None = None,
    device: torch.device | str | None = None,
) -> list[dict]:
    """Test accuracy of each model against the training-set size.

    ``data`` is ``(x_train, y_train, x_test, y_test)`` with class labels;
    the task is "is it class ``positive``?". The test images are a
    ``one_against_rest`` draw (seed 0) of ``test_size`` images (default:
    all the positives of the test labels and as many negatives); they are
    the same for every run. For
    each size n and seed, the training images are a ``one_against_rest``
    draw of n with that seed; each model is built by its builder right
    after ``seed_everything(seed)`` (so the seed fixes its initial
    weights), trained by ``train_classifier`` on ``device`` (default: the
    CPU) and scored on the test set.

    Returns one dict per run: ``model`` (the builder's key), ``n``,
    ``seed``, ``acc``, the last epoch's ``train_loss`` and the trained
    ``net``.
    """
    from dlbook.config import seed_everything
    from dlbook.train import TensorBatches, evaluate

    if not isinstance(builders, dict) or not builders:
        raise ValueError(
            f"builders must be a non-empty dict of name -> model builder, "
            f"got {builders!r}"
        )
    x_train, y_train, x_test, y_test = data
    check_tensor("x_test", x_test, ndim=4, floating=True, nonempty=True)
    check_tensor("y_test", y_test, shape=(len(x_test),), floating=False)
    sizes, seeds = list(sizes), list(seeds)
    if not sizes or not seeds:
        raise ValueError(
            f"sizes and seeds must not be empty, got {sizes} and {seeds}"
        )
    if test_size is None:
        test_size = 2 * int((y_test == positive).sum())
    index, y_bin = one_against_rest(y_test, positive, test_size, 0)
    test = TensorBatches(x_test[index], y_bin, 1000, shuffle=False)
    rows = []
    for n in sizes:
        for seed in seeds:
            index, y = one_against_rest(y_train, positive, n, seed)
            for name, build in builders.items():
                seed_everything(seed)
                net = build().to(device or "cpu")
                history = train_classifier(
                    net, x_train[index], y, settings, augment, seed, device
                )
                acc = evaluate(net, test)["acc"]
                loss = history["train_loss"][-1]
                rows.append(
                    dict(
                        model=name,
                        n=n,
                        seed=seed,
                        acc=acc,
                        train_loss=loss,
                        net=net,
                    )
                )
    return rows


__all__ = [
    "TrainSettings",
    "ViTConfig",
    "VisionTransformer",
    "attention_rollout",
    "learning_curve",
    "load_torchvision_weights",
    "one_against_rest",
    "rollout_matrix",
    "torchvision_names",
    "train_classifier",
]

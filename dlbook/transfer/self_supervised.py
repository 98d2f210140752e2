"""Self-supervised pretraining: SimCLR's contrastive views and rotations.

The pieces of ``book/transfer/self-supervised.md``. SimCLR (Chen et al.
2020) learns an encoder from unlabelled images by making two random views of
each image (`ViewPipeline`, built from the augmentations of
``dlbook.transfer.augmentation``; `TwoViewBatches`) agree through a
projection head (`SimCLR`) under the NT-Xent loss (`nt_xent`,
`NTXentLoss`). Rotation prediction (Gidaris et al. 2018) learns one by
classifying which of four quarter turns an image was given
(`RotationBatches`). Both train through `dlbook.train.fit` unchanged: a
two-view batch is one tensor (B, 2, C, H, W), the model returns (B, 2, D)
and the loss is a function of that output. The encoders are then judged
frozen, by a linear probe on few labels (`encode`,
``dlbook.transfer.transfer_learning.linear_probe``) and by a k-nearest-
neighbour classifier (`knn_accuracy`); `alignment` and `uniformity` (Wang
& Isola 2020) measure the geometry the loss produces.

References: Chen, Kornblith, Norouzi & Hinton (2020), "A simple framework
for contrastive learning of visual representations"; Gidaris, Singh &
Komodakis (2018), "Unsupervised representation learning by predicting image
rotations"; Wang & Isola (2020), "Understanding contrastive representation
learning through alignment and uniformity on the hypersphere". `nt_xent` is
checked against ``pytorch_metric_learning.losses.NTXentLoss`` (values and
gradients) in ``tests/transfer/test_self_supervised.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_in_range,
    check_int,
    check_number,
    check_probability,
    check_same_shape,
    check_tensor,
)
from dlbook.convnets.architectures import (
    CifarResNet,
    CifarResNetConfig,
    resnet18,
)
from dlbook.train import TensorBatches, fit
from dlbook.transfer.augmentation import (
    Augmentation,
    ColorJitter,
    RandomFlip,
    RandomResizedCrop,
    check_images,
)

# --- the encoder ------------------------------------------------------------


def small_resnet(
    in_channels: int = 1, widths: Sequence[int] = (16, 32, 64)
) -> nn.Module:
    """ResNet-8 of He et al.'s CIFAR family, without its classifier.

    A 3×3 stem and three stages of one residual block each (stride 2 between
    stages); the output is the last map averaged over its positions, a
    vector of ``widths[-1]`` features, the representation h of SimCLR.

    Shapes:
        x: (N, in_channels, H, W) -> (N, widths[-1])
    """
    cfg = CifarResNetConfig(
        depth=8, widths=tuple(widths), in_channels=in_channels
    )
    net = CifarResNet(cfg)
    net.fc = nn.Identity()  # the features, not class scores
    net.out_features = widths[-1]
    return net


def cifar_resnet18() -> nn.Module:
    """ResNet-18 as SimCLR adapts it to 32×32 images, without a classifier.

    The 7×7 stride-2 stem becomes a 3×3 stride-1 convolution and the max
    pool is dropped (Chen et al. 2020, appendix B.9); 512 features.

    Shapes:
        x: (N, 3, H, W) -> (N, 512)
    """
    net = resnet18()
    net.conv1 = nn.Conv2d(3, 64, 3, 1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_features = 512
    return net


# --- the two views -----------------------------------------------------------


class RandomApply(Augmentation):
    """Apply ``augment`` to each image with probability ``p``, else keep it.

    Args:
        augment: the augmentation applied to the chosen images.
        p: the probability that an image is augmented.
    """

    def __init__(self, augment: Augmentation, p: float):
        if not isinstance(augment, Augmentation):
            raise TypeError(
                "augment must be an Augmentation, got "
                f"{type(augment).__name__}"
            )
        self.augment, self.p = augment, check_probability("p", p)

    def sample(self, x, generator=None):
        return {
            "on": torch.rand(len(x), generator=generator) < self.p,
            "inner": self.augment.sample(x, generator),
        }

    def apply(self, x, params):
        out = self.augment.apply(x, params["inner"])
        return torch.where(params["on"][:, None, None, None], out, x)


class ViewPipeline:
    """A random view of each image: the augmentations, one after another.

    ``views(x)`` draws new parameters for every image at every call, so two
    calls on the same batch give two independent views t(x), t'(x).

    Args:
        augmentations: applied in order to images (B, C, H, W) in [0, 1].
    """

    def __init__(self, augmentations: Sequence[Augmentation]):
        augmentations = list(augmentations)
        if not augmentations:
            raise ValueError("augmentations must hold at least one, got none")
        for i, a in enumerate(augmentations):
            if not isinstance(a, Augmentation):
                raise TypeError(
                    f"augmentations[{i}] must be an Augmentation, got "
                    f"{type(a).__name__}"
                )
        self.augmentations = augmentations

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_images("x", x)
        check_in_range("x", x, low=0.0, high=1.0)
        for a in self.augmentations:
            x = a.apply(x, a.sample(x, generator))
        return x

    def pair(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Two independent views of each image, stacked: (B, 2, C, H, W)."""
        return torch.stack([self(x, generator), self(x, generator)], 1)


def simclr_views(
    size: int, scale: tuple[float, float] = (0.2, 1.0), jitter: float = 0.4
) -> ViewPipeline:
    """SimCLR's augmentations for small images: crop, flip, colour.

    A random resized crop of 20-100 % of the area, a left-right flip, and
    with probability 0.8 a colour jitter (brightness, contrast and
    saturation by ``jitter``, hue by ``jitter / 4``), as in Chen et al.'s
    CIFAR-10 setting; their grey-scale and blur steps are left out (grey
    images have no colour to remove, 32-pixel images nothing to blur).
    """
    return ViewPipeline(
        [
            RandomResizedCrop(size, scale=scale),
            RandomFlip(0.5),
            RandomApply(
                ColorJitter(jitter, jitter, jitter, jitter / 4), p=0.8
            ),
        ]
    )


class TwoViewBatches:
    """Mini-batches of two views of unlabelled images, for ``fit``.

    Each pass shuffles the images (from ``generator``) and yields
    ``(views.pair(x_b), i_b)``: the two views (B, 2, C, H, W) and the
    indices of the images, which stand in for the targets ``fit`` expects
    (the loss ignores them; they count the examples).

    Args:
        x: the unlabelled images (N, C, H, W) in [0, 1].
        batch_size: images per batch (2 · batch_size views).
        views: the view pipeline, e.g. `simclr_views`.
        generator: the source of the orders and of the views' parameters.
    """

    def __init__(
        self,
        x: torch.Tensor,
        batch_size: int,
        views: ViewPipeline,
        generator: torch.Generator | None = None,
    ):
        check_images("x", x)
        self.batch_size = check_int(
            "batch_size", batch_size, low=2, high=len(x)
        )
        if not isinstance(views, ViewPipeline):
            raise TypeError(
                f"views must be a ViewPipeline, got {type(views).__name__}"
            )
        self.x, self.views = x, views
        self.generator = generator or torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.generator)
        # whole batches only: a last batch of one image has no negatives
        for k in range(len(self)):
            i = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield self.views.pair(self.x[i], self.generator), i


# --- SimCLR: projection head and NT-Xent -------------------------------------


class SimCLR(nn.Module):
    """Encoder f and projection head g: z = g(f(x)) for both views.

    g is SimCLR's two-layer perceptron, z = W2 ReLU(W1 h). The loss acts on
    z; the representation kept for later tasks is h = f(x), before g.

    Args:
        encoder: f, with an ``out_features`` attribute (the size of h).
        proj_dim: the size of z.
        hidden_dim: the width of g's hidden layer (default: size of h).

    Shapes:
        x: (B, 2, C, H, W) -> z: (B, 2, proj_dim)
    """

    def __init__(
        self,
        encoder: nn.Module,
        proj_dim: int = 64,
        hidden_dim: int | None = None,
    ):
        super().__init__()
        if not hasattr(encoder, "out_features"):
            raise TypeError(
                "encoder must have an out_features attribute (the size of h), "
                "as small_resnet and cifar_resnet18 set; "
                f"{type(encoder).__name__} has none"
            )
        d = check_int("encoder.out_features", encoder.out_features, low=1)
        hidden = d if hidden_dim is None else hidden_dim
        hidden = check_int("hidden_dim", hidden, low=1)
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Linear(d, hidden),
            nn.ReLU(),
            nn.Linear(hidden, check_int("proj_dim", proj_dim, low=1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, shape=(None, 2, None, None, None))
        b = len(x)
        h = self.encoder(x.flatten(0, 1))  # (2B, d): view pairs adjacent
        return self.head(h).view(b, 2, -1)  # (B, 2, proj_dim)


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """NT-Xent: the mean over all 2N views of the loss of eq. (1) of SimCLR.

    With u the 2N vectors (z1 then z2) scaled to unit length and
    s_ij = u_i · u_j / τ, view i's positive p(i) is the other view of the
    same image and every other view of the batch is a negative:

        l_i = -log exp(s_i,p(i)) / sum_{k != i} exp(s_ik),

    a softmax cross-entropy over the 2N - 1 other views whose correct class
    is p(i).

    Args:
        z1, z2: the projections of the first and second views; row n of z1
            and row n of z2 come from the same image.
        temperature: τ > 0.

    Shapes:
        z1, z2: (N, D), N >= 2 -> a scalar
    """
    tau = check_number("temperature", temperature, low=0, low_open=True)
    check_tensor("z1", z1, ndim=2, floating=True)
    check_tensor("z2", z2, ndim=2, floating=True)
    check_same_shape(z1=z1, z2=z2)
    n = len(z1)
    if n < 2:
        raise ValueError(
            f"z1 and z2 must hold at least 2 images (a single image has no "
            f"negatives), got {n}"
        )
    u = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    s = u @ u.T / tau  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    s = s.masked_fill(self_mask, float("-inf"))  # k != i
    positive = torch.arange(2 * n, device=u.device).roll(n)  # i <-> i + N
    return F.cross_entropy(s, positive)


def negative_weights(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """How NT-Xent's push on view i is shared among its 2N - 2 negatives.

    The gradient of l_i with respect to u_i is (sum_k w_ik u_k - u_p) / τ
    with w_ik the softmax of eq. (1); over the negatives k, the weights
    exp(s_ik) / sum_negatives exp(s_ik) say which of them the loss pushes
    away hardest. Row i holds them, with 0 at i and at its partner.

    Shapes:
        z1, z2: (N, D) -> (2N, 2N), each row summing to 1
    """
    tau = check_number("temperature", temperature, low=0, low_open=True)
    check_tensor("z1", z1, ndim=2, floating=True)
    check_same_shape(z1=z1, z2=z2)
    n = len(z1)
    if n < 2:
        raise ValueError(f"z1 and z2 must hold at least 2 images, got {n}")
    u = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    s = u @ u.T / tau  # (2N, 2N)
    i = torch.arange(2 * n, device=u.device)
    mask = torch.zeros_like(s, dtype=torch.bool)
    mask[i, i] = True
    mask[i, i.roll(n)] = True  # the partner is no negative
    return s.masked_fill(mask, float("-inf")).softmax(dim=1)


class NTXentLoss:
    """`nt_xent` as ``fit``'s ``loss_fn(output, target)``.

    The output of `SimCLR` holds both views, (B, 2, D); the target (the
    images' indices from `TwoViewBatches`) is ignored.
    """

    def __init__(self, temperature: float = 0.5):
        self.temperature = check_number(
            "temperature", temperature, low=0, low_open=True
        )

    def __call__(self, z: torch.Tensor, target=None) -> torch.Tensor:
        check_tensor("z", z, shape=(None, 2, None))
        return nt_xent(z[:, 0], z[:, 1], self.temperature)


# --- rotation prediction ----------------------------------------------------


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image turned by 0, 90, 180 and 270 degrees, and the turn.

    Gidaris et al. feed all four rotations of an image in the same batch;
    the label r in {0, 1, 2, 3} is the number of quarter turns
    (counter-clockwise).

    Shapes:
        x: (B, C, H, W) with H = W -> (4B, C, H, W), labels (4B,)
    """
    check_images("x", x)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"x must hold square images (a quarter turn keeps the shape), "
            f"got shape {tuple(x.shape)}"
        )
    turned = torch.stack([x.rot90(r, dims=(2, 3)) for r in range(4)], 1)
    labels = torch.arange(4).repeat(len(x))  # (4B,): 0 1 2 3 0 1 2 3 ...
    return turned.flatten(0, 1), labels


class RotationBatches:
    """Mini-batches of the four rotations of unlabelled images, for ``fit``.

    Each pass shuffles the images and yields `rotations` of ``batch_size``
    of them: (4 · batch_size) images and their rotation labels.

    Args:
        x: the unlabelled images (N, C, H, H).
        batch_size: images per batch, before rotating.
        generator: the source of the orders.
    """

    def __init__(
        self,
        x: torch.Tensor,
        batch_size: int,
        generator: torch.Generator | None = None,
    ):
        check_images("x", x)
        self.x = x
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.generator = generator or torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in order.split(self.batch_size):
            yield rotations(self.x[i])


# --- pretraining -------------------------------------------------------------


@dataclass
class PretrainConfig:
    """How an encoder is pretrained (Adam, ``dlbook.train.fit``)."""

    epochs: int = 5  # passes over the unlabelled images
    batch_size: int = 128  # images per step (SimCLR: 2 views each)
    lr: float = 2e-3  # Adam's learning rate
    weight_decay: float = 1e-6  # L2 on all weights
    temperature: float = 0.5  # SimCLR's τ
    proj_dim: int = 64  # SimCLR: the size of z
    seed: int = 0  # seeds the weights, the batch order and the views


def _adam(model: nn.Module, cfg: PretrainConfig):
    check_number("lr", cfg.lr, low=0, low_open=True)
    return torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )


def pretrain_simclr(
    encoder: nn.Module,
    x: torch.Tensor,
    views: ViewPipeline,
    cfg: PretrainConfig | None = None,
    device: torch.device | str | None = None,
):
    """Train ``encoder`` with SimCLR on the unlabelled images ``x``.

    Returns the `SimCLR` model (encoder and head, in eval mode) and the
    ``History`` of ``fit`` (``train_loss``: NT-Xent per epoch).
    """
    cfg = PretrainConfig() if cfg is None else cfg
    torch.manual_seed(cfg.seed)
    model = SimCLR(encoder, cfg.proj_dim)
    g = torch.Generator().manual_seed(cfg.seed)
    batches = TwoViewBatches(x, cfg.batch_size, views, g)
    history = fit(
        model,
        batches,
        _adam(model, cfg),
        epochs=cfg.epochs,
        loss_fn=NTXentLoss(cfg.temperature),
        metrics={},
        device=device,
        progress=False,
    )
    return model.eval(), history


def pretrain_rotation(
    encoder: nn.Module,
    x: torch.Tensor,
    cfg: PretrainConfig | None = None,
    device: torch.device | str | None = None,
):
    """Train ``encoder`` to tell the four rotations of ``x`` apart.

    Returns the model (encoder, then a linear layer to 4 rotation scores,
    in eval mode) and the ``History`` (``train_acc``: rotations told).
    """
    cfg = PretrainConfig() if cfg is None else cfg
    torch.manual_seed(cfg.seed)
    model = nn.Sequential(encoder, nn.Linear(encoder.out_features, 4))
    g = torch.Generator().manual_seed(cfg.seed)
    batches = RotationBatches(x, cfg.batch_size, g)
    history = fit(
        model,
        batches,
        _adam(model, cfg),
        epochs=cfg.epochs,
        device=device,
        progress=False,
    )
    return model.eval(), history


def train_supervised(
    encoder: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: PretrainConfig | None = None,
    device: torch.device | str | None = None,
):
    """The reference: ``encoder`` and a linear layer trained on labels.

    The same backbone and images as the self-supervised runs, with every
    image's label; returns the model (in eval mode) and its ``History``.

    Shapes:
        x: (N, C, H, W); y: (N,) integers 0 ... C-1
    """
    cfg = PretrainConfig() if cfg is None else cfg
    check_images("x", x)
    check_tensor("y", y, shape=(len(x),), floating=False)
    torch.manual_seed(cfg.seed)
    classes = int(y.max()) + 1
    model = nn.Sequential(encoder, nn.Linear(encoder.out_features, classes))
    g = torch.Generator().manual_seed(cfg.seed)
    history = fit(
        model,
        TensorBatches(x, y, cfg.batch_size, generator=g),
        _adam(model, cfg),
        epochs=cfg.epochs,
        device=device,
        progress=False,
    )
    return model.eval(), history


# --- judging a frozen encoder -----------------------------------------------


@torch.no_grad()
def encode(
    encoder: nn.Module, x: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """The frozen representation h = f(x) of each image, in eval mode.

    Shapes:
        x: (N, C, H, W) -> (N, out_features), on the CPU
    """
    check_tensor("x", x, ndim=4, floating=True, nonempty=True)
    batch_size = check_int("batch_size", batch_size, low=1)
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [
        encoder(x[i : i + batch_size].to(device)).cpu()
        for i in range(0, len(x), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(out)


def knn_accuracy(
    train_h: torch.Tensor,
    train_y: torch.Tensor,
    test_h: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 10,
) -> float:
    """Accuracy of a k-nearest-neighbour vote under cosine similarity.

    Each test image takes the majority class of the ``k`` labelled images
    whose representations point most nearly its way (ties: the smaller
    class index).

    Shapes:
        train_h: (N, D), train_y: (N,), test_h: (M, D), test_y: (M,)
    """
    check_tensor("train_h", train_h, ndim=2, floating=True, nonempty=True)
    check_tensor("test_h", test_h, shape=(None, train_h.shape[1]))
    check_tensor("train_y", train_y, shape=(len(train_h),), floating=False)
    check_tensor("test_y", test_y, shape=(len(test_h),), floating=False)
    k = check_int("k", k, low=1, high=len(train_h))
    sim = F.normalize(test_h, dim=1) @ F.normalize(train_h, dim=1).T
    nearest = sim.topk(k, dim=1).indices  # (M, k)
    votes = F.one_hot(train_y[nearest], int(train_y.max()) + 1).sum(1)
    return (votes.argmax(1) == test_y).float().mean().item()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0):
    """Mean of ||u1 - u2||^alpha over positive pairs (lower: better aligned).

    u are the unit-length z; Wang & Isola's L_align.

    Shapes:
        z1, z2: (N, D) -> a scalar
    """
    check_tensor("z1", z1, ndim=2, floating=True, nonempty=True)
    check_same_shape(z1=z1, z2=z2)
    alpha = check_number("alpha", alpha, low=0, low_open=True)
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return (u1 - u2).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2.0):
    """log of the mean of exp(-t ||u_i - u_j||²) over pairs i < j.

    Wang & Isola's L_uniform: lower means the unit vectors u spread more
    evenly over the sphere.

    Shapes:
        z: (N, D), N >= 2 -> a scalar
    """
    check_tensor("z", z, ndim=2, floating=True)
    if len(z) < 2:
        raise ValueError(f"z must hold at least 2 rows, got {len(z)}")
    t = check_number("t", t, low=0, low_open=True)
    u = F.normalize(z, dim=1)
    return torch.pdist(u).pow(2).mul(-t).exp().mean().log()


@torch.no_grad()
def view_geometry(
    model: SimCLR,
    x: torch.Tensor,
    views: ViewPipeline,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """`alignment` and `uniformity` of a SimCLR model's z on two views of x.

    Uniformity is taken over the first views; the model is run in eval mode.
    """
    if not isinstance(model, SimCLR):
        raise TypeError(f"model must be a SimCLR, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    z = model(views.pair(x, generator).to(device)).cpu()  # (N, 2, D)
    model.train(was_training)
    return {
        "alignment": alignment(z[:, 0], z[:, 1]).item(),
        "uniformity": uniformity(z[:, 0]).item(),
    }


@torch.no_grad()
def imagenet_features(
    net, x: torch.Tensor, size: int, batch_size: int = 100
) -> torch.Tensor:
    """EfficientNet-Lite0's pooled head features of small images.

    Each image is resized to ``size`` (bilinear, antialiased), grey images
    are repeated on the three colour channels, and the result is normalised
    as the network was trained (see the transfer-learning chapter).

    Args:
        net: ``dlbook.pretrained.efficientnet_lite0()``.
        x: images (N, 1 or 3, H, W) in [0, 1].
        size: the side the network sees, pixels.

    Shapes:
        x: (N, C, H, W) -> (N, 1280), on the CPU
    """
    from dlbook.transfer.transfer_learning import backbone_stages

    check_images("x", x)
    size = check_int("size", size, low=32)
    batch_size = check_int("batch_size", batch_size, low=1)
    device = next(net.model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        xb = F.interpolate(
            xb, size=size, mode="bilinear", antialias=True, align_corners=False
        ).clamp(0, 1)
        xb = net.normalize(xb.expand(-1, 3, -1, -1))  # grey -> RGB
        out.append(backbone_stages(net.model, xb)["head"].cpu())
    return torch.cat(out)

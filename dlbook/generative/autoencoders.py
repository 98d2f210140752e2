"""Autoencoders: linear, nonlinear and denoising; principal angles; anomaly scores.

An autoencoder learns an encoder f and a decoder g such that g(f(x)) is close to
x while the code z = f(x) is small. With linear maps and the squared error it
learns the principal subspace of the data (Bourlard & Kamp 1988; Baldi & Hornik
1989); with nonlinear maps it can bend that subspace into a curved manifold
(Hinton & Salakhutdinov 2006). A denoising autoencoder is trained to undo a
corruption of its input (Vincent et al. 2008), which makes its code depend on
the structure shared by many pixels rather than on each pixel.

Checked against scikit-learn's ``PCA`` (principal angles between the learned
and the principal subspace) and SciPy's ``subspace_angles`` in
``tests/generative/test_autoencoders.py``. Chapter:
``book/generative/autoencoders.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_probability,
    check_tensor,
)

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


@dataclass
class AutoencoderConfig:
    """The shape of an autoencoder: ``in_features -> hidden -> latent``."""

    in_features: int = 784  # pixels of one image (28 x 28)
    # encoder widths; the decoder mirrors them
    hidden: tuple[int, ...] = (256,)
    latent: int = 2  # size of the code z, the bottleneck
    activation: str = "relu"  # between hidden layers: relu, tanh or elu
    output: str = "sigmoid"  # "sigmoid" for pixels in [0, 1], or "linear"

    def __post_init__(self):
        check_int("in_features", self.in_features, low=1)
        check_int("latent", self.latent, low=1)
        self.hidden = tuple(self.hidden)
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}]", width, low=1)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("output", self.output, ("sigmoid", "linear"))


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """x̂ = g(f(x)): an encoder f to a code z of size ``latent``, a decoder g.

    Trained to minimise the squared error ‖x − g(f(x))‖². With no hidden layer
    and a linear output, f and g are affine maps and the model is a linear
    autoencoder, whose decoder columns span the principal subspace.

    Args:
        config: sizes, activation and output of the two networks.

    Shapes:
        x: (N, *) with prod(*) = in_features, e.g. images (N, 1, 28, 28);
        encode(x): (N, latent); forward(x): the shape of x.
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        sizes = [config.in_features, *config.hidden, config.latent]
        self.encoder = mlp(sizes, config.activation)
        self.decoder = mlp(sizes[::-1], config.activation)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True)
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.config.in_features:
            raise ValueError(
                f"x must have {self.config.in_features} features per example, "
                f"got shape {tuple(x.shape)}"
            )
        return flat

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._flat(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z)
        return torch.sigmoid(out) if self.config.output == "sigmoid" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).reshape(x.shape)


def squared_error(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """‖x − x̂‖² per example, averaged over the batch (a loss for fit)."""
    return (out - x).pow(2).reshape(len(x), -1).sum(1).mean()


def mask_noise(
    x: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Vincent et al.'s masking noise: each entry set to 0 with probability p."""
    check_probability("p", p)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep


class DenoisingAutoencoder(Autoencoder):
    """An autoencoder trained to reconstruct x from a corrupted copy x̃.

    In training mode the input is corrupted by masking noise, x̃ = m ⊙ x with
    m_i ~ Bernoulli(1 − p), and the loss compares g(f(x̃)) with the clean x
    (Vincent et al. 2008). In evaluation mode the input passes unchanged, so
    the trained model is used like any autoencoder.

    Args:
        config: as for Autoencoder.
        p: the fraction of input pixels set to zero during training.
    """

    def __init__(self, config: AutoencoderConfig, p: float = 0.3):
        super().__init__(config)
        self.p = check_probability("p", p, allow_one=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = mask_noise(x, self.p) if self.training else x
        return self.decode(self.encode(noisy)).reshape(x.shape)


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles between the column spaces of a and b, ascending.

    With orthonormal bases Q_a and Q_b, the cosines of the angles are the
    singular values of Q_aᵀ Q_b. Small angles are taken from their sines, the
    singular values of Q_b − Q_a Q_aᵀ Q_b, because arccos loses half the digits
    near 0 (Knyazev & Argentati 2002; SciPy's subspace_angles does the same).

    Shapes:
        a: (D, k), b: (D, m); returns (min(k, m),) angles in radians.
    """
    check_tensor("a", a, ndim=2, floating=True, finite=True, nonempty=True)
    check_tensor("b", b, ndim=2, floating=True, finite=True, nonempty=True)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a and b must have the same number of rows, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if a.shape[1] < b.shape[1]:
        a, b = b, a
    qa = torch.linalg.qr(a.double()).Q
    qb = torch.linalg.qr(b.double()).Q
    cross = qa.T @ qb
    # both lists sorted by angle, smallest first
    cos = torch.linalg.svdvals(cross).clamp(-1, 1)
    sin = torch.linalg.svdvals(qb - qa @ cross).clamp(-1, 1).flip(0)
    small = cos**2 >= 0.5  # below 45 degrees the sine is the accurate one
    return torch.where(small, torch.arcsin(sin), torch.arccos(cos))


def reconstruction_error(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1000
) -> torch.Tensor:
    """The squared error ‖x − x̂‖² of each example, in evaluation mode.

    Used as an anomaly score: an autoencoder trained on normal data rebuilds
    what resembles it and fails on what does not.

    Shapes:
        x: (N, *); returns (N,).
    """
    check_tensor("x", x, floating=True, nonempty=True)
    check_int("batch_size", batch_size, low=1)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            err = (model(chunk) - chunk).pow(2)
            out.append(err.reshape(len(chunk), -1).sum(1))
    model.train(was_training)
    return torch.cat(out)

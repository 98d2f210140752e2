"""The variational autoencoder: the ELBO, reparameterization, importance weighting.

A latent-variable model p(x, z) = p(z) p(x | z) with a standard normal prior,
a Bernoulli decoder p(x | z) and a Gaussian encoder q(z | x) trained together
by maximising the evidence lower bound (ELBO) with the reparameterization
trick (Kingma & Welling 2014; Rezende et al. 2014). The importance-weighted
bound of Burda et al. (2016) estimates the test log-likelihood; the weight β on
the KL term gives the β-VAE of Higgins et al. (2017).

Checked in ``tests/generative/test_vae.py``: the KL term and the Bernoulli
log-likelihood against ``torch.distributions``, the ELBO against a Monte Carlo
estimate of its definition, both gradient estimators against an analytic
gradient, and the importance-weighted estimate against the exact
log-likelihood of a one-dimensional model computed by quadrature. Chapter:
``book/generative/vae.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_in_range,
    check_int,
    check_number,
    check_tensor,
)
from dlbook.generative.autoencoders import ACTIVATIONS, mlp


@dataclass
class VAEConfig:
    """A VAE with MLP encoder and decoder (Burda et al.'s one-layer model)."""

    in_features: int = 784  # pixels of one image
    hidden: tuple[int, ...] = (200, 200)  # widths; the decoder mirrors them
    latent: int = 50  # size of z
    activation: str = "tanh"  # tanh, relu or elu

    def __post_init__(self):
        check_int("in_features", self.in_features, low=1)
        check_int("latent", self.latent, low=1)
        self.hidden = tuple(self.hidden)
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}]", width, low=1)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²).

    Shapes:
        mu, logvar: (N, D); returns (N,).
    """
    check_tensor("mu", mu, floating=True)
    check_tensor("logvar", logvar, floating=True)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} "
            f"and {tuple(logvar.shape)}"
        )
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def bernoulli_log_likelihood(
    logits: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """log p(x | z) = Σᵢ xᵢ log pᵢ + (1 − xᵢ) log(1 − pᵢ), pᵢ = sigmoid(logitᵢ).

    x must lie in [0, 1]. For binary x this is the Bernoulli log-probability;
    for grey levels it is the negative cross-entropy, not a normalised density.

    Shapes:
        logits: (..., D) and x: (..., D), broadcast against each other;
        returns (...).
    """
    check_in_range("x", x, low=0.0, high=1.0)
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(
        logits, x, reduction="none"
    ).sum(-1)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """z = μ + σ ⊙ ε, ε ~ N(0, I): a sample of q(z | x) differentiable in μ, σ."""
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + (0.5 * logvar).exp() * eps


@dataclass
class VAEOutput:
    """What one forward pass computes, for the loss and the metrics."""

    logits: torch.Tensor  # (N, D) decoder logits of p(x | z)
    mu: torch.Tensor  # (N, latent) encoder mean
    logvar: torch.Tensor  # (N, latent) encoder log-variance
    z: torch.Tensor  # (N, latent) the sample z = μ + σ ε
    terms: tuple | None = None  # (log p(x | z), KL), once elbo_terms ran


class VAE(nn.Module):
    """A variational autoencoder with Gaussian encoder and Bernoulli decoder.

        q(z | x) = N(μ(x), diag σ²(x)),   p(z) = N(0, I),
        p(x | z) = Πᵢ Bernoulli(xᵢ; sigmoid(g(z))ᵢ),

    trained by maximising the ELBO, E_q[log p(x | z)] − KL(q(z | x) ‖ p(z)).

    Args:
        config: sizes and activation of the encoder and the decoder.

    Shapes:
        x: (N, *) with prod(*) = in_features, values in [0, 1];
        encode(x): two (N, latent) tensors; decode(z): (N, in_features) logits.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        sizes = [config.in_features, *config.hidden]
        self.encoder = nn.Sequential(
            mlp(sizes, config.activation), ACTIVATIONS[config.activation]()
        )
        if not config.hidden:
            self.encoder = nn.Identity()
        width = sizes[-1]
        self.to_mu = nn.Linear(width, config.latent)
        self.to_logvar = nn.Linear(width, config.latent)
        self.decoder = mlp(
            [config.latent, *config.hidden[::-1], config.in_features],
            config.activation,
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("x", x, floating=True)
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.config.in_features:
            raise ValueError(
                f"x must have {self.config.in_features} features per example, "
                f"got shape {tuple(x.shape)}"
            )
        h = self.encoder(flat)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return VAEOutput(self.decode(z), mu, logvar, z)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean images sigmoid(g(z)) of n draws z ~ p(z), shape (n, in_features)."""
        check_int("n", n, low=1)
        device = self.to_mu.weight.device
        z = torch.randn(
            n, self.config.latent, generator=generator, device=device
        )
        return torch.sigmoid(self.decode(z))


def elbo_terms(
    out: VAEOutput, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the one-sample ELBO estimate, per example.

    Returns (log p(x | z), KL(q(z | x) ‖ p(z))), each of shape (N,); the ELBO
    estimate is their difference. They are kept on ``out``, so that the loss
    and the metrics of one batch compute them once.
    """
    if out.terms is None:
        rec = bernoulli_log_likelihood(out.logits, x.reshape(len(x), -1))
        out.terms = (rec, gaussian_kl(out.mu, out.logvar))
    return out.terms


class ELBOLoss:
    """−(E_q[log p(x | z)] − β KL(q ‖ p)) per image, for dlbook.train.fit.

    With β = 1 this is the negative ELBO in nats; β > 1 is the β-VAE. Called
    as loss(output, x) with the VAEOutput and the images.
    """

    def __init__(self, beta: float = 1.0):
        self.beta = check_number("beta", beta, low=0)

    def __call__(self, out: VAEOutput, x: torch.Tensor) -> torch.Tensor:
        rec, kl = elbo_terms(out, x)
        return (self.beta * kl - rec).mean()


def vae_metrics() -> dict[str, Callable]:
    """The two ELBO terms as fit/evaluate metrics: ``rec`` and ``kl`` (nats)."""
    return {
        "rec": lambda out, x: -elbo_terms(out, x)[0].mean(),
        "kl": lambda out, x: elbo_terms(out, x)[1].mean(),
    }


def binarize(
    x: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Stochastic binarization: each pixel is 1 with probability its grey level.

    The usual way to turn MNIST into binary data for a Bernoulli likelihood
    (Salakhutdinov & Murray 2008), so that log-likelihoods are comparable.
    """
    check_in_range("x", x, low=0.0, high=1.0)
    return torch.bernoulli(x, generator=generator)


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log((1/K) Σₖ exp(aₖ)) along ``dim``, without overflow."""
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


@torch.no_grad()
def importance_weighted_bound(
    model: VAE, x: torch.Tensor, k: int, batch_size: int = 100
) -> torch.Tensor:
    """Burda et al.'s estimate of log p(x) with k importance samples, per image.

        log p(x) ≥ E[log (1/k) Σₖ p(x, zₖ) / q(zₖ | x)],   zₖ ~ q(z | x).

    For k = 1 it is the ELBO; it rises with k and reaches log p(x) as k → ∞.

    Shapes:
        x: (N, *) in [0, 1]; returns (N,) in nats.
    """
    check_int("k", k, low=1)
    check_int("batch_size", batch_size, low=1)
    check_in_range("x", x, low=0.0, high=1.0)
    was_training = model.training
    model.eval()
    out = []
    for chunk in x.split(batch_size):
        mu, logvar = model.encode(chunk)
        std = (0.5 * logvar).exp()
        eps = torch.randn(k, *mu.shape, device=mu.device)  # (k, N, latent)
        z = mu + std * eps
        log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        logits = model.decode(z)  # (k, N, D)
        log_lik = bernoulli_log_likelihood(
            logits, chunk.reshape(len(chunk), -1)
        )
        out.append(log_mean_exp(log_lik + log_prior - log_q, dim=0))
    model.train(was_training)
    return torch.cat(out)


def reparameterization_gradient(
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n one-sample estimates of ∇_μ E_q[f(z)], q = N(μ, diag σ²), by z = μ + σ ε.

    Each estimate is ∇_z f(z) at one z = μ + σ ε: the gradient flows through
    the sample (Kingma & Welling 2014).

    Shapes:
        mu, logvar: (D,); f maps (n, D) to (n,); returns (n, D).
    """
    check_int("n", n, low=1)
    eps = torch.randn(n, *mu.shape, generator=generator, device=mu.device)
    z = reparameterize(mu.detach(), logvar.detach(), eps).requires_grad_()
    (grad,) = torch.autograd.grad(f(z).sum(), z)
    return grad


def score_function_gradient(
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n one-sample score-function (REINFORCE) estimates of ∇_μ E_q[f(z)].

    Each estimate is f(z) ∇_μ log q(z) = f(z) (z − μ) / σ² at one z ~ q
    (Williams 1992): f is only evaluated, never differentiated.

    Shapes:
        mu, logvar: (D,); f maps (n, D) to (n,); returns (n, D).
    """
    check_int("n", n, low=1)
    eps = torch.randn(n, *mu.shape, generator=generator, device=mu.device)
    mu, logvar = mu.detach(), logvar.detach()
    z = reparameterize(mu, logvar, eps)
    with torch.no_grad():
        value = f(z)
    return value[:, None] * (z - mu) / logvar.exp()

"""The VAE: KL and likelihood terms against torch.distributions, the ELBO against
its definition, the two gradient estimators against an analytic gradient, the
importance-weighted bound against a log-likelihood computed by quadrature, a short
run that must learn, and the argument checks."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal, kl_divergence
from torch.utils.data import DataLoader, TensorDataset

from dlbook.generative.vae import (
    VAE,
    ELBOLoss,
    VAEConfig,
    bernoulli_log_likelihood,
    binarize,
    elbo_terms,
    gaussian_kl,
    importance_weighted_bound,
    log_mean_exp,
    reparameterization_gradient,
    score_function_gradient,
    vae_metrics,
)
from dlbook.train import evaluate, fit


@given(n=st.integers(1, 5), d=st.integers(1, 8), seed=st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_gaussian_kl_equals_torch_distributions(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    mu = 2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = 2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    q = Normal(mu, (0.5 * logvar).exp())
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(
        gaussian_kl(mu, logvar), kl_divergence(q, p).sum(-1)
    )


@given(n=st.integers(1, 5), d=st.integers(1, 30), seed=st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_bernoulli_log_likelihood_equals_torch_distributions(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    logits = 5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    x = torch.randint(0, 2, (n, d), generator=g).double()
    expected = Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), expected)


def test_elbo_terms_equal_a_monte_carlo_estimate_of_the_definition():
    """E_q[log p(x|z) + log p(z) − log q(z|x)] estimated with many samples."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(in_features=6, hidden=(8,), latent=2)).double()
    x = torch.randint(0, 2, (3, 6)).double()
    mu, logvar = vae.encode(x)
    q = Normal(mu, (0.5 * logvar).exp())
    z = q.sample((20_000,))  # (S, 3, 2)
    log_w = (
        Bernoulli(logits=vae.decode(z)).log_prob(x).sum(-1)
        + Normal(0.0, 1.0).log_prob(z).sum(-1)
        - q.log_prob(z).sum(-1)
    )
    direct = log_w.mean(0)
    rec_mean = torch.stack(
        [elbo_terms(vae(x), x)[0] for _ in range(2000)]
    ).mean(0)
    ours = rec_mean - gaussian_kl(mu, logvar)
    torch.testing.assert_close(
        ours.detach(), direct.detach(), atol=0.1, rtol=0
    )


def _quadratic(z):
    return z.pow(2).sum(-1)


@pytest.mark.parametrize(
    "estimator", [reparameterization_gradient, score_function_gradient]
)
def test_both_gradient_estimators_are_unbiased(estimator):
    """∇_μ E[‖z‖²] = 2μ for z ~ N(μ, σ²)."""
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar = torch.tensor([0.0, -1.0, 0.5], dtype=torch.float64)
    grads = estimator(_quadratic, mu, logvar, 200_000, g)
    assert grads.shape == (200_000, 3)
    se = grads.std(0) / math.sqrt(len(grads))
    assert ((grads.mean(0) - 2 * mu).abs() < 5 * se + 1e-9).all()


def test_reparameterization_has_lower_variance_here():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64)
    logvar = torch.zeros(2, dtype=torch.float64)
    rep = reparameterization_gradient(_quadratic, mu, logvar, 10_000, g).var(0)
    sf = score_function_gradient(_quadratic, mu, logvar, 10_000, g).var(0)
    torch.testing.assert_close(
        rep, torch.full((2,), 4.0, dtype=torch.float64), rtol=0.05, atol=0
    )
    assert (sf > 5 * rep).all()


def test_importance_weighted_bound_reaches_the_exact_log_likelihood():
    """A one-dimensional latent: log p(x) = log ∫ p(z) p(x|z) dz by quadrature."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(in_features=3, hidden=(), latent=1)).double()
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.tensor([[3.0], [-2.0], [1.0]]))
        vae.decoder[0].bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
        # a proposal q(z|x) = N(x_1, 1.5): broad, not the posterior
        vae.to_mu.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        vae.to_logvar.weight.zero_()
        vae.to_logvar.bias.fill_(math.log(1.5))
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)[:, None]
    log_joint = Normal(0.0, 1.0).log_prob(z).squeeze(-1)[
        :, None
    ] + bernoulli_log_likelihood(vae.decode(z)[:, None, :], x[None])
    exact = torch.logsumexp(log_joint, 0) + math.log(z[1, 0] - z[0, 0])
    elbo = importance_weighted_bound(vae, x, k=1, batch_size=2)
    rough = torch.stack(
        [importance_weighted_bound(vae, x, k=5) for _ in range(200)]
    ).mean(0)
    close = torch.stack(
        [importance_weighted_bound(vae, x, k=20_000) for _ in range(5)]
    ).mean(0)
    assert (elbo < exact).all() and (rough < exact + 1e-3).all()
    torch.testing.assert_close(close, exact, atol=0.01, rtol=0)


def test_log_mean_exp_is_stable():
    a = torch.tensor([[1000.0], [1000.0]])
    assert torch.allclose(log_mean_exp(a), torch.tensor([1000.0]))


def test_a_short_run_learns():
    torch.manual_seed(0)
    protos = (torch.rand(4, 16) > 0.5).float()
    x = protos[torch.randint(0, 4, (400,))]
    vae = VAE(VAEConfig(in_features=16, hidden=(32,), latent=2))
    loader = DataLoader(TensorDataset(x, x), batch_size=50, shuffle=True)
    loss = ELBOLoss()
    before = evaluate(vae, loader, loss, vae_metrics())
    history = fit(
        vae,
        loader,
        torch.optim.Adam(vae.parameters(), 1e-2),
        epochs=30,
        loss_fn=loss,
        metrics=vae_metrics(),
        progress=False,
    )
    after = evaluate(vae, loader, loss, vae_metrics())
    assert after["loss"] < 0.5 * before["loss"]
    assert set(history.metrics) >= {"train_loss", "train_rec", "train_kl"}
    assert vae.sample(5).shape == (5, 16)


def test_beta_weights_the_kl_term():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(in_features=4, hidden=(), latent=2))
    x = torch.rand(3, 4).round()
    torch.manual_seed(1)
    out = vae(x)
    rec, kl = elbo_terms(out, x)
    torch.testing.assert_close(ELBOLoss(4.0)(out, x), (4 * kl - rec).mean())


def test_binarize_keeps_the_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.full((100_000,), 0.3)
    b = binarize(x, g)
    assert (
        set(b.unique().tolist()) == {0.0, 1.0} and abs(b.mean() - 0.3) < 0.01
    )


def test_bad_inputs_are_refused():
    with pytest.raises(
        ValueError, match="latent must be an integer >= 1, got 0"
    ):
        VAEConfig(latent=0)
    with pytest.raises(
        ValueError, match="latent must be an integer >= 1, got -3"
    ):
        VAEConfig(latent=-3)
    vae = VAE(VAEConfig(in_features=4, hidden=(), latent=2))
    with pytest.raises(
        ValueError,
        match=r"x must hold values in \[0.0, 1.0\], got values from",
    ):
        ELBOLoss()(
            vae(torch.tensor([[0.0, 2.0, 0.5, 1.0]])),
            torch.tensor([[0.0, 2.0, 0.5, 1.0]]),
        )
    with pytest.raises(
        ValueError, match=r"x must hold values in \[0.0, 1.0\]"
    ):
        importance_weighted_bound(vae, -torch.ones(1, 4), k=2)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        importance_weighted_bound(vae, torch.ones(1, 4), k=0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        ELBOLoss(-1.0)
    with pytest.raises(ValueError, match="4 features per example"):
        vae(torch.rand(2, 5))
    with pytest.raises(ValueError, match="activation must be one of"):
        VAEConfig(activation="gelu")
    with pytest.raises(ValueError, match="mu and logvar must have the same"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 1))

"""Autoencoders: shapes, the PCA subspace of the linear autoencoder, principal angles
against SciPy, denoising, anomaly scores, and the argument checks."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from torch.utils.data import DataLoader, TensorDataset

from dlbook.generative.autoencoders import (
    Autoencoder,
    AutoencoderConfig,
    DenoisingAutoencoder,
    mask_noise,
    principal_angles,
    reconstruction_error,
)
from dlbook.train import fit


def test_shapes_of_codes_and_reconstructions():
    ae = Autoencoder(AutoencoderConfig(hidden=(32, 16), latent=3))
    x = torch.rand(5, 1, 28, 28)
    assert ae.encode(x).shape == (5, 3)
    out = ae(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    linear = Autoencoder(
        AutoencoderConfig(hidden=(), latent=3, output="linear")
    )
    assert [type(m).__name__ for m in linear.modules()].count("Linear") == 2


@given(
    d=st.integers(3, 12),
    k=st.integers(1, 4),
    m=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=25, deadline=None)
def test_principal_angles_equal_scipy(d, k, m, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, k, generator=g, dtype=torch.float64)
    b = torch.randn(d, m, generator=g, dtype=torch.float64)
    ours = principal_angles(a, b).numpy()
    theirs = np.sort(scipy.linalg.subspace_angles(a.numpy(), b.numpy()))
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


def test_principal_angles_of_a_subspace_and_itself_are_zero():
    a = torch.randn(10, 3, dtype=torch.float64)
    mixed = a @ torch.randn(3, 3, dtype=torch.float64)  # same span
    assert principal_angles(a, mixed).max() < 1e-7
    e = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(
        principal_angles(e[:, :1], e[:, 1:2]),
        torch.tensor([np.pi / 2], dtype=torch.float64),
    )


def _low_rank_data(n=600, d=20, k=3, seed=0):
    """Data near a k-dimensional subspace with clearly separated variances."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, k, generator=g)).Q
    scales = torch.tensor([3.0, 2.0, 1.5])[:k]
    codes = torch.randn(n, k, generator=g) * scales
    return codes @ basis.T + 0.05 * torch.randn(n, d, generator=g)


def test_linear_autoencoder_learns_the_principal_subspace_of_pca():
    torch.manual_seed(0)
    x = _low_rank_data()
    ae = Autoencoder(
        AutoencoderConfig(in_features=20, hidden=(), latent=3, output="linear")
    )
    loader = DataLoader(TensorDataset(x, x), batch_size=100, shuffle=True)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    sse = lambda out, y: (out - y).pow(2).sum(1).mean()
    fit(ae, loader, opt, epochs=60, loss_fn=sse, metrics={}, progress=False)
    pca = PCA(3).fit(x.numpy())
    angles = principal_angles(
        ae.decoder[0].weight.detach().double(),
        torch.from_numpy(pca.components_.T).double(),
    )
    assert angles.max() < np.radians(2), np.degrees(angles)
    # an untrained one is nowhere near it: the test can fail
    fresh = Autoencoder(
        AutoencoderConfig(in_features=20, hidden=(), latent=3, output="linear")
    )
    far = principal_angles(
        fresh.decoder[0].weight.detach().double(),
        torch.from_numpy(pca.components_.T).double(),
    )
    assert far.max() > np.radians(30)


def test_nonlinear_and_denoising_autoencoders_learn():
    torch.manual_seed(0)
    x = torch.rand(256, 1, 4, 4).round()  # binary 4x4 patterns
    x[:128, :, :2] = 1.0  # two kinds of pattern
    for model in [
        Autoencoder(AutoencoderConfig(in_features=16, hidden=(32,), latent=4)),
        DenoisingAutoencoder(
            AutoencoderConfig(in_features=16, hidden=(32,), latent=4), p=0.2
        ),
    ]:
        before = reconstruction_error(model, x).mean()
        loader = DataLoader(TensorDataset(x, x), batch_size=32, shuffle=True)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        fit(
            model,
            loader,
            opt,
            epochs=30,
            loss_fn=F.mse_loss,
            metrics={},
            progress=False,
        )
        assert reconstruction_error(model, x).mean() < 0.6 * before


def test_mask_noise_zeroes_the_requested_fraction_and_only_in_training():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(100_000)
    assert abs((mask_noise(x, 0.3, g) == 0).float().mean() - 0.3) < 0.01
    dae = DenoisingAutoencoder(
        AutoencoderConfig(in_features=4, hidden=(), latent=2), p=0.5
    )
    dae.eval()
    x = torch.rand(3, 4)
    assert torch.equal(dae(x), dae.decode(dae.encode(x)))


def test_reconstruction_error_scores_unseen_data_higher():
    x = _low_rank_data()
    torch.manual_seed(0)
    ae = Autoencoder(
        AutoencoderConfig(in_features=20, hidden=(), latent=3, output="linear")
    )
    loader = DataLoader(TensorDataset(x, x), batch_size=100, shuffle=True)
    fit(
        ae,
        loader,
        torch.optim.Adam(ae.parameters(), 1e-2),
        epochs=40,
        loss_fn=F.mse_loss,
        metrics={},
        progress=False,
    )
    outliers = torch.randn(50, 20)  # off the subspace
    assert (
        reconstruction_error(ae, outliers).min()
        > reconstruction_error(ae, x).median()
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(latent=0), "latent must be an integer >= 1, got 0"),
        (dict(latent=-2), "latent must be an integer >= 1"),
        (dict(hidden=(16, 0)), r"hidden\[1\] must be an integer >= 1"),
        (dict(activation="gelu"), "activation must be one of"),
        (dict(output="softmax"), "output must be one of"),
    ],
)
def test_bad_configurations_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(**kwargs)


def test_bad_inputs_are_refused():
    ae = Autoencoder(AutoencoderConfig(latent=2))
    with pytest.raises(ValueError, match="784 features per example"):
        ae(torch.rand(2, 1, 14, 14))
    with pytest.raises(TypeError, match="floating dtype"):
        ae(torch.zeros(2, 784, dtype=torch.uint8))
    with pytest.raises(ValueError, match="p must be a finite number in"):
        DenoisingAutoencoder(AutoencoderConfig(), p=1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        principal_angles(torch.rand(5, 2), torch.rand(6, 2))

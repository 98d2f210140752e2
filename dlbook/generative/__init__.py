"""Generative models: autoencoders, the VAE, the semi-supervised VAE, GANs.

* :mod:`dlbook.generative.autoencoders`: linear (= PCA), nonlinear and
  denoising autoencoders, principal angles, anomaly scores by reconstruction
  error.
* :mod:`dlbook.generative.vae`: the variational autoencoder, its ELBO, the
  reparameterization and score-function gradients, the importance-weighted
  bound.
* :mod:`dlbook.generative.semi_supervised_vae`: Kingma et al.'s M2 model.
* :mod:`dlbook.generative.gan`: GANs, DCGAN, mode coverage, and the
  sample-quality measures (Fréchet distance, precision and recall) the whole
  part uses.

Chapters: ``book/generative/`` (autoencoders, the VAE and GANs so far; the M2
chapter and the diffusion model are issue 18's open work).
Tests: ``tests/generative/``.
"""

"""M2 trained with every digit labelled: does its decoder read y?

A check of the y pathway of ``dlbook.generative.semi_supervised_vae`` for the
chapter ``book/generative/semi-supervised-vae.md``: with all 6,000 training
digits labelled, the loss is the labelled bound plus the classification term,
so the decoder has every reason to use y. After each epoch the script prints
the test error of the classifier q(y | x) and of the generative model's own
guess, argmax_y of the labelled bound −L(x, y) averaged over five draws of z,
and the mean gap between the best and the worst of the C bounds, on 2,000
test digits (one thread, about a minute).

    PYTHONPATH=. DLBOOK_THREADS=1 python benchmarks/ssvae_supervised_check.py
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from dlbook.config import seed_everything
from dlbook.data import load_mnist
from dlbook.generative.semi_supervised_vae import (
    M2,
    M2Config,
    M2Loss,
    error_rate,
)
from dlbook.generative.vae import binarize
from dlbook.train import fit


def main() -> None:
    torch.set_num_threads(1)
    seed_everything(0)
    mnist = load_mnist(n_train=6000)
    g = torch.Generator().manual_seed(0)
    x = binarize(mnist.x_train, g).flatten(1)
    x_test = binarize(mnist.x_test, g).flatten(1)[:2000]
    y_test = mnist.y_test[:2000]
    m2 = M2(M2Config(hidden=256, latent=16))  # the chapter's quick networks
    loader = DataLoader(
        TensorDataset(x, mnist.y_train),
        batch_size=100,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    loss_fn = M2Loss(0.1 * len(x), n_labelled=len(x), n_unlabelled=0)

    def report(model, history) -> None:
        with torch.no_grad():
            q_error = error_rate(model.classify, x_test, y_test)
            bound = torch.stack([model(x_test).bound for _ in range(5)])
            bound = bound.mean(0)  # (N, C)
            gen_error = (bound.argmax(1) != y_test).float().mean().item()
            gap = (bound.max(1).values - bound.min(1).values).mean().item()
        print(
            f"epoch {len(history['train_loss'])}"
            f"  loss {history['train_loss'][-1]:6.1f}"
            f"  q(y|x) error {q_error:.3f}"
            f"  generative error {gen_error:.3f}"
            f"  bound gap {gap:4.1f} nats",
            flush=True,
        )

    opt = torch.optim.Adam(m2.parameters(), lr=3e-3)
    fit(
        m2,
        loader,
        opt,
        epochs=4,
        loss_fn=loss_fn,
        metrics={},
        callbacks=[report],
        progress=False,
    )


if __name__ == "__main__":
    main()

"""CPU cost of one training step of the three scientific-ML chapters, at one thread.

Where the time of ``book/sciml/physics-informed-koopman.md``, ``deep-koopman.md`` and
``pinn.md`` goes (issue 10): the cost of one loss evaluation with its backward pass, for
the settings of each chapter's quick profile, and the alternatives tried.

* physics-informed Koopman: the physics residual's JVP by ``torch.func.jvp`` against the
  hand-propagated tangent of ``KoopmanAutoencoder.decode_jvp`` (the chapter uses the latter);
* deep Koopman: the 50-step latent rollout with its backward pass, recorded by autograd
  step by step against the hand-differentiated ``_Rollout`` node that training uses, and one
  Adam step of the slow-manifold and the pendulum model, batch 128 and 512
  (the 50-step latent loop is overhead-bound, but not enough for larger batches with fewer
  steps to pay: the chapter's asserts fail at batch 512 x 400 steps and 256 x 800 steps);
* PINN: the residual by nested reverse mode (the chapter) against derivatives propagated by
  hand through the tanh layers: on 10,000 points both cost the same, the loss is
  compute-bound.

    PYTHONPATH=. python benchmarks/sciml_steps.py
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from dlbook.sciml import deep_koopman as dk  # noqa: E402
from dlbook.sciml import physics_informed_koopman as pik  # noqa: E402
from dlbook.sciml import pinn  # noqa: E402
from dlbook.sciml.systems import Pendulum, SlowManifold  # noqa: E402


def cpu_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Mean process time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def koopman_rows() -> list[tuple[str, float]]:
    cfg = pik.KoopmanConfig()
    model = pik.KoopmanAutoencoder(cfg)
    z = torch.randn(4 * 48, cfg.latent)  # C * K collocation states

    def library():
        v = z @ model.generator.T
        u, u_t = torch.func.jvp(model.decode, (z,), (v,))
        (u.pow(2).sum() + u_t.pow(2).sum()).backward()

    def by_hand():
        u, u_t = model.decode_jvp(z, z @ model.generator.T)
        (u.pow(2).sum() + u_t.pow(2).sum()).backward()

    return [
        ("pik: decoder JVP + backward, torch.func.jvp", cpu_ms(library)),
        ("pik: decoder JVP + backward, decode_jvp", cpu_ms(by_hand)),
    ]


def deep_koopman_rows() -> list[tuple[str, float]]:
    slow = SlowManifold(mu=-0.05, lam=-1.0)
    ds = dk.trajectory_data(slow, 512, [-0.5, -0.5], [0.5, 0.5], seed=1)
    pend = dk.trajectory_data(
        Pendulum(), 512, [-3.1, -2.0], [3.1, 2.0], seed=1, max_energy=0.99
    )
    configs = {
        "slow manifold": (
            replace(dk.DISCRETE_SPECTRUM, widths=(30, 30), aux_widths=(10,)),
            ds,
        ),
        "pendulum": (
            replace(
                dk.PENDULUM,
                widths=(64, 64),
                aux_widths=(64,),
                log_radius=True,
            ),
            pend,
        ),
    }
    rows = []
    for name, (cfg, x) in configs.items():
        torch.manual_seed(0)
        model, loss = dk.DeepKoopman(cfg), dk.DeepKoopmanLoss(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
        y0 = torch.randn(128, cfg.latent_dim, requires_grad=True)

        def stepped():  # the 50 latent steps recorded op by op by autograd
            weights, ys, y = model.aux.net.masked_weights(), [], y0
            for _ in range(50):
                y = model.step(y, weights)
                ys.append(y)
            torch.stack(ys, 1).sum().backward()

        def rollout():  # one node, backward by hand (what train uses)
            model.advance(y0, 50).sum().backward()

        rows += [
            (
                f"deep Koopman {name}: 50 latent steps + backward, autograd",
                cpu_ms(stepped, repeats=10),
            ),
            (
                f"deep Koopman {name}: 50 latent steps + backward, _Rollout",
                cpu_ms(rollout, repeats=10),
            ),
        ]
        for batch in (128, 512):
            xb = x[:batch]

            def step():
                opt.zero_grad()
                loss(model(xb), xb).backward()
                opt.step()

            rows.append(
                (
                    f"deep Koopman {name}: Adam step, batch {batch}",
                    cpu_ms(step, repeats=10),
                )
            )
    return rows


def pinn_rows() -> list[tuple[str, float]]:
    cfg = pinn.PINNConfig()
    torch.manual_seed(0)
    model = pinn.BurgersPINN(cfg, [0.0, -1.0], [1.0, 1.0])
    tx_f = torch.rand(cfg.n_f, 2) * torch.tensor([1.0, 2.0])
    tx_f[:, 1] -= 1
    t, x = tx_f[:, :1], tx_f[:, 1:]

    def by_hand_residual():
        net = model.net
        h = 2 * (torch.cat([t, x], 1) - net.lb) / (net.ub - net.lb) - 1
        d = (net.layers[0].weight * 2 / (net.ub - net.lb)).T  # (2, width)
        a = net.layers[0](h)
        a_t, a_x = d[0].expand_as(a), d[1].expand_as(a)
        a_xx = torch.zeros_like(a)
        for i, layer in enumerate(net.layers):
            if i > 0:
                a = layer(h)
                tangents = torch.stack([h_t, h_x, h_xx]) @ layer.weight.T
                a_t, a_x, a_xx = tangents.unbind(0)
            if i == len(net.layers) - 1:
                break
            h = torch.tanh(a)
            s = 1 - h * h
            h_t, h_x, h_xx = s * a_t, s * a_x, s * a_xx - 2 * h * s * a_x**2
        return a_t + model.lambda_1 * a * a_x - model.lambda_2 * a_xx

    gap = (model.residual(t, x) - by_hand_residual()).abs().max().item()

    def nested():
        model.zero_grad()
        model.residual(t, x).pow(2).mean().backward()

    def by_hand():
        model.zero_grad()
        by_hand_residual().pow(2).mean().backward()

    return [
        (
            f"PINN: residual + backward, {cfg.n_f} points, nested reverse",
            cpu_ms(nested, repeats=5),
        ),
        (
            f"PINN: same, derivatives by hand (max gap {gap:.0e})",
            cpu_ms(by_hand, repeats=5),
        ),
    ]


def main() -> None:
    torch.set_num_threads(1)
    # torch.func's forward mode loads decompositions with torch.jit.script
    warnings.filterwarnings("ignore", message="`torch.jit.script`")
    for rows in (koopman_rows(), deep_koopman_rows(), pinn_rows()):
        for name, ms in rows:
            print(f"{name:64s} {ms:8.1f} ms")


if __name__ == "__main__":
    main()

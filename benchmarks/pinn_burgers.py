"""Error of the Burgers PINN against CPU (or GPU) time, for a given collocation budget.

Runs the forward problem of ``book/sciml/pinn.md`` (Raissi et al. 2019: 8 x 20 tanh network,
N_u = 100, L-BFGS) and prints the relative L2 error on the 100 x 256 reference grid every
``--every`` loss evaluations, with the elapsed process time. The paper's full setup is the
default; ``--n-f 2000`` shows why cutting collocation points is a false economy.

    PYTHONPATH=. python benchmarks/pinn_burgers.py --n-f 10000 --steps 50000 --limit 3600 --dtype float64
"""

from __future__ import annotations

import argparse
import time

import torch

from dlbook.config import device, seed_everything
from dlbook.sciml.pinn import BurgersPINN, PINNConfig, burgers_forward_data, predict, relative_l2, train_pinn


class _Stop(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-f", type=int, default=10_000, help="collocation points (paper: 10,000)")
    parser.add_argument("--steps", type=int, default=50_000, help="L-BFGS iterations at most (paper: 50,000)")
    parser.add_argument("--adam-steps", type=int, default=0, help="Adam iterations before L-BFGS")
    parser.add_argument("--every", type=int, default=200, help="report every this many loss evaluations")
    parser.add_argument("--limit", type=float, default=float("inf"), help="stop after this many seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                        help="float32 L-BFGS stalls at an error of a few percent on this problem")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    dev = device()
    cfg = PINNConfig(n_f=args.n_f, lbfgs_steps=args.steps, adam_steps=args.adam_steps, seed=args.seed,
                     dtype=getattr(torch, args.dtype))
    data = burgers_forward_data(cfg)
    model = BurgersPINN(cfg, data.lb, data.ub).to(dev)
    tx_u, u, tx_f, grid = (v.to(dev) for v in (data.tx_u, data.u, data.tx_f, data.tx_grid))
    clock = time.perf_counter if dev.type == "cuda" else time.process_time
    start = clock()

    def report(m):
        error = relative_l2(predict(m, grid).cpu(), data.u_grid)
        elapsed = clock() - start
        print(f"{elapsed:9.1f} s  relative L2 error {error:.3e}", flush=True)
        if elapsed > args.limit:
            raise _Stop
        return {"error": error}

    try:
        train_pinn(model, tx_u, u, tx_f, cfg, callback=report, every=args.every)
    except _Stop:
        pass
    print(f"final: relative L2 error {relative_l2(predict(model, grid).cpu(), data.u_grid):.3e} "
          f"(Raissi et al. 2019: 6.7e-4) after {clock() - start:.0f} s")


if __name__ == "__main__":
    main()

"""Physics-informed neural networks (PINNs) for Burgers' equation: solution and identification.

A PINN (Raissi, Perdikaris & Karniadakis 2019) is a network ``u_theta(t, x)`` trained so that
it fits the few data it is given (initial and boundary values, or scattered measurements)
*and* makes the residual of the governing equation vanish at many collocation points, the
derivatives in the residual coming from automatic differentiation. For Burgers' equation

    f = u_t + lambda_1 u u_x - lambda_2 u_xx,

with ``lambda_1 = 1`` and ``lambda_2 = 0.01 / pi`` known (*data-driven solution*), or learned
with the network from scattered noisy samples (*data-driven discovery*, the inverse problem).

The network, the loss, Latin-hypercube collocation (``scipy.stats.qmc``) and the optimizer
(``torch.optim.LBFGS`` with a strong-Wolfe line search, for the paper's L-BFGS-B, optionally
after some Adam steps) follow the paper's code (github.com/maziarraissi/PINNs). Checked against: the
derivatives equal ``torch.func`` Jacobians/Hessians and central finite differences, and the
residual of exact Burgers solutions is zero to rounding (``tests/sciml/test_pinn.py``); the
reference solution is :func:`dlbook.sciml.burgers.cole_hopf_sine`.

Chapter: ``book/sciml/pinn.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import qmc
from torch import nn

from dlbook.sciml.burgers import NU_RAISSI, raissi_grid
from dlbook.train import History


@dataclass
class PINNConfig:
    """Network, data and optimizer settings; the defaults are the paper's forward problem."""

    depth: int = 8  # hidden layers
    width: int = 20  # neurons per hidden layer
    n_u: int = 100  # initial and boundary points with data (forward problem)
    n_f: int = 10_000  # collocation points for the residual (forward problem)
    adam_steps: int = (
        0  # Adam iterations before L-BFGS (the paper used L-BFGS only)
    )
    adam_lr: float = 1e-3  # Adam learning rate
    lbfgs_steps: int = (
        50_000  # L-BFGS iterations at most (the paper's maxiter)
    )
    lbfgs_history: int = 50  # L-BFGS memory (the paper's maxcor)
    dtype: torch.dtype = torch.float32  # the paper used float32
    seed: int = 0  # seeds the sampling of the points and the initial weights


# --- the network --------------------------------------------------------------------------------


class MLP(nn.Module):
    """A fully connected tanh network (t, x) -> u on a box, Xavier-initialized.

    The inputs are first mapped to [-1, 1] by 2 (z - lb) / (ub - lb) - 1,
    as in the paper's code, so that the tanh units start in their linear
    range whatever the domain.

    Args:
        lb, ub: lower and upper corners of the domain, (t_min, x_min) and
            (t_max, x_max).
        depth, width: number and size of the hidden layers.
        out_features: number of outputs.

    Shapes:
        input: (N, 2), columns (t, x); output: (N, out_features).
    """

    def __init__(
        self,
        lb,
        ub,
        depth: int = 8,
        width: int = 20,
        out_features: int = 1,
        dtype=torch.float32,
    ):
        super().__init__()
        lb, ub = (
            torch.as_tensor(lb, dtype=dtype),
            torch.as_tensor(ub, dtype=dtype),
        )
        if lb.shape != ub.shape or lb.ndim != 1 or not torch.all(ub > lb):
            raise ValueError(
                "lb and ub must be 1-D of the same length with ub > lb, "
                f"got {lb.tolist()} and {ub.tolist()}"
            )
        if depth < 1 or width < 1:
            raise ValueError(
                "depth and width must be >= 1, "
                f"got depth={depth}, width={width}"
            )
        self.register_buffer("lb", lb)
        self.register_buffer("ub", ub)
        sizes = [len(lb)] + [width] * depth + [out_features]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        # the paper's xavier_init: normal, std sqrt(2 / (fan_in + fan_out))
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = 2 * (z - self.lb) / (self.ub - self.lb) - 1
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return self.layers[-1](h)


# --- the physics ----------------------------------------------------------------------------------


def derivatives(u_fn, t: torch.Tensor, x: torch.Tensor):
    """u, u_t, u_x and u_xx of u_fn(t, x) at the points, by reverse mode.

    Each point's output depends only on its own input, so the gradient of
    u.sum() with respect to the column x is the column of u_x: one backward
    pass gives all of them. create_graph=True keeps the derivatives
    differentiable, for u_xx and for the loss.

    Shapes:
        t, x: (N, 1); each result (N, 1).
    """
    t = t.detach().requires_grad_(True)
    x = x.detach().requires_grad_(True)
    u = u_fn(t, x)
    u_t, u_x = torch.autograd.grad(u.sum(), (t, x), create_graph=True)
    (u_xx,) = torch.autograd.grad(u_x.sum(), x, create_graph=True)
    return u, u_t, u_x, u_xx


def burgers_residual(
    u_fn, t: torch.Tensor, x: torch.Tensor, lambda_1=1.0, lambda_2=NU_RAISSI
) -> torch.Tensor:
    """The residual f = u_t + λ1 u u_x - λ2 u_xx of Burgers' equation.

    Args:
        u_fn: a differentiable function (t, x) -> u, e.g. a BurgersPINN.
        t, x: collocation points.
        lambda_1, lambda_2: the advection and viscosity coefficients λ1,
            λ2 (numbers or tensors).

    Shapes:
        t, x: (N, 1); returns (N, 1).
    """
    u, u_t, u_x, u_xx = derivatives(u_fn, t, x)
    return u_t + lambda_1 * u * u_x - lambda_2 * u_xx


class BurgersPINN(nn.Module):
    """``u_theta(t, x)`` with the coefficients of Burgers' equation, known or learned.

    With ``learn_coefficients=True`` the coefficients are parameters trained with the network:
    ``lambda_1`` starts at 0 and ``lambda_2 = exp(log_lambda_2)`` at ``exp(-6)``, as in the
    paper's code; the exponential keeps the viscosity positive and lets it move across
    orders of magnitude.
    """

    def __init__(
        self,
        cfg: PINNConfig,
        lb,
        ub,
        lambda_1: float = 1.0,
        lambda_2: float = NU_RAISSI,
        learn_coefficients: bool = False,
    ):
        super().__init__()
        self.net = MLP(lb, ub, cfg.depth, cfg.width, dtype=cfg.dtype)
        self.learn_coefficients = learn_coefficients
        if learn_coefficients:
            self.lambda_1_raw = nn.Parameter(torch.zeros((), dtype=cfg.dtype))
            self.log_lambda_2 = nn.Parameter(
                torch.full((), -6.0, dtype=cfg.dtype)
            )
        else:
            self.register_buffer(
                "lambda_1_raw", torch.tensor(float(lambda_1), dtype=cfg.dtype)
            )
            self.register_buffer(
                "log_lambda_2",
                torch.tensor(math.log(lambda_2), dtype=cfg.dtype),
            )

    @property
    def lambda_1(self) -> torch.Tensor:
        return self.lambda_1_raw

    @property
    def lambda_2(self) -> torch.Tensor:
        return self.log_lambda_2.exp()

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([t, x], dim=1))

    def residual(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return burgers_residual(self, t, x, self.lambda_1, self.lambda_2)


# --- data: initial/boundary points and Latin-hypercube collocation --------------------------------


def latin_hypercube(n: int, lb, ub, seed: int = 0) -> np.ndarray:
    """``n`` points of a Latin hypercube in the box ``[lb, ub]`` (McKay et al. 1979).

    Each coordinate's range is cut into ``n`` equal strata and every stratum holds exactly one
    point, so the points cover each axis evenly, unlike independent uniform samples.

    Shapes:
        returns ``(n, len(lb))``.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    lb, ub = np.asarray(lb, float), np.asarray(ub, float)
    sample = qmc.LatinHypercube(
        d=len(lb), seed=np.random.default_rng(seed)
    ).random(n)
    return qmc.scale(sample, lb, ub)


@dataclass
class BurgersData:
    """Training and test points of the forward problem, as tensors; columns ``(t, x)``.

    Shapes:
        tx_u: ``(n_u, 2)``, u: ``(n_u, 1)``; tx_f: ``(n_f + n_u, 2)``; grid ``(nt * nx, 2)``, u_grid ``(nt, nx)``.
    """

    tx_u: torch.Tensor
    u: torch.Tensor
    tx_f: torch.Tensor
    tx_grid: torch.Tensor
    u_grid: torch.Tensor
    x: np.ndarray
    t: np.ndarray
    lb: np.ndarray
    ub: np.ndarray


def burgers_forward_data(
    cfg: PINNConfig, nx: int = 256, nt: int = 100
) -> BurgersData:
    """The paper's training set: ``n_u`` points drawn from the initial and boundary values of the
    reference grid, and ``n_f`` Latin-hypercube collocation points to which the ``n_u`` points are
    added. The reference solution on the ``(nt, nx)`` grid is the test set.
    """
    x, t, u_grid = raissi_grid(nx, nt)
    lb, ub = np.array([t.min(), x.min()]), np.array([t.max(), x.max()])
    T, X = np.meshgrid(t, x, indexing="ij")  # (nt, nx)
    edges = [
        (T[0], X[0], u_grid[0]),
        (T[:, 0], X[:, 0], u_grid[:, 0]),
        (T[:, -1], X[:, -1], u_grid[:, -1]),
    ]
    tx_all = np.concatenate([np.stack([a, b], 1) for a, b, _ in edges])
    u_all = np.concatenate([c for _, _, c in edges])
    rng = np.random.default_rng(cfg.seed)
    if not 1 <= cfg.n_u <= len(u_all):
        raise ValueError(
            f"n_u must be between 1 and {len(u_all)} (the initial and boundary points), got {cfg.n_u}"
        )
    pick = rng.choice(len(u_all), cfg.n_u, replace=False)
    tx_f = np.concatenate(
        [latin_hypercube(cfg.n_f, lb, ub, cfg.seed), tx_all[pick]]
    )
    as_t = lambda a: torch.as_tensor(a, dtype=cfg.dtype)  # noqa: E731
    return BurgersData(
        as_t(tx_all[pick]),
        as_t(u_all[pick, None]),
        as_t(tx_f),
        as_t(np.stack([T.ravel(), X.ravel()], 1)),
        as_t(u_grid),
        x,
        t,
        lb,
        ub,
    )


def burgers_inverse_data(
    n: int,
    noise: float = 0.0,
    seed: int = 0,
    nx: int = 256,
    nt: int = 100,
    dtype=torch.float32,
):
    """``n`` scattered samples of the reference solution with Gaussian noise, as in the paper.

    The noise has standard deviation ``noise * std(u)`` over the samples (``noise = 0.01`` is the
    paper's "1% noise").

    Returns:
        ``(tx, u)`` tensors of shapes ``(n, 2)`` and ``(n, 1)``.
    """
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    x, t, u_grid = raissi_grid(nx, nt)
    if not 1 <= n <= u_grid.size:
        raise ValueError(
            f"n must be between 1 and {u_grid.size} (the grid points), got {n}"
        )
    rng = np.random.default_rng(seed)
    pick = rng.choice(u_grid.size, n, replace=False)
    T, X = np.meshgrid(t, x, indexing="ij")
    u = u_grid.ravel()[pick]
    u = u + noise * u.std() * rng.standard_normal(n)
    tx = np.stack([T.ravel()[pick], X.ravel()[pick]], 1)
    return torch.as_tensor(tx, dtype=dtype), torch.as_tensor(
        u[:, None], dtype=dtype
    )


# --- loss and training ----------------------------------------------------------------------------


def pinn_loss(
    model: BurgersPINN, tx_u: torch.Tensor, u: torch.Tensor, tx_f: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The PINN loss MSE_u + MSE_f: data misfit plus mean squared residual.

    Shapes:
        tx_u: (N_u, 2), u: (N_u, 1), tx_f: (N_f, 2).
    """
    for name, v in (("tx_u", tx_u), ("u", u), ("tx_f", tx_f)):
        if not torch.isfinite(v).all():
            bad = int((~torch.isfinite(v)).sum())
            raise ValueError(
                f"{name} must be finite; it has {bad} NaN or infinite values"
            )
    if (
        tx_u.ndim != 2
        or tx_u.shape[1] != 2
        or tx_f.ndim != 2
        or tx_f.shape[1] != 2
    ):
        raise ValueError(
            "tx_u and tx_f must have shape (N, 2) with columns (t, x), "
            f"got {tuple(tx_u.shape)} and {tuple(tx_f.shape)}"
        )
    if u.shape != (len(tx_u), 1):
        raise ValueError(
            f"u must have shape ({len(tx_u)}, 1) to match tx_u, "
            f"got {tuple(u.shape)}"
        )
    mse_u = (model(tx_u[:, :1], tx_u[:, 1:]) - u).pow(2).mean()
    mse_f = model.residual(tx_f[:, :1], tx_f[:, 1:]).pow(2).mean()
    return {"loss": mse_u + mse_f, "mse_u": mse_u, "mse_f": mse_f}


def train_pinn(
    model: BurgersPINN,
    tx_u: torch.Tensor,
    u: torch.Tensor,
    tx_f: torch.Tensor,
    cfg: PINNConfig,
    callback=None,
    every: int = 50,
) -> History:
    """Minimize pinn_loss with cfg.adam_steps of Adam, then L-BFGS.

    L-BFGS is torch.optim.LBFGS with the paper's memory (50) and a
    strong-Wolfe line search. It stops after cfg.lbfgs_steps iterations (or
    1.25 times as many loss evaluations: the line search may evaluate the
    loss more than once per iteration), or when a step changes the loss by
    less than 1e-12, which, like the paper's ftol of machine epsilon, means
    "run to the iteration limit" in practice. Every step uses the whole
    batch (the problem is small and smooth).

    Args:
        callback: called as callback(model) every `every` loss evaluations;
            its dict of numbers is recorded in the history (for example the
            test error).

    Returns:
        A dlbook.train.History with loss, mse_u, mse_f, step (loss
        evaluations so far), iteration (optimizer steps so far), seconds
        (CPU time) and the callback's entries: one row at the first
        evaluation, one every `every` evaluations, and one for the trained
        model.
    """
    history = History()
    count = {"n": 0, "iteration": 0}
    start = time.process_time()

    def record(parts):
        row = {k: v.item() for k, v in parts.items()}
        row.update(
            step=count["n"],
            iteration=count["iteration"],
            seconds=time.process_time() - start,
        )
        if callback is not None:
            row.update(callback(model))
        history.append(row)

    def evaluated(parts):
        count["n"] += 1
        if count["n"] % every == 0 or count["n"] == 1:
            record(parts)

    if cfg.adam_steps > 0:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.adam_lr)
        for _ in range(cfg.adam_steps):
            opt.zero_grad()
            parts = pinn_loss(model, tx_u, u, tx_f)
            parts["loss"].backward()
            opt.step()
            count["iteration"] += 1
            evaluated(parts)
    if cfg.lbfgs_steps > 0:
        opt = torch.optim.LBFGS(
            model.parameters(),
            lr=1.0,
            max_iter=cfg.lbfgs_steps,
            max_eval=int(cfg.lbfgs_steps * 1.25),
            tolerance_grad=0.0,
            tolerance_change=1e-12,
            history_size=cfg.lbfgs_history,
            line_search_fn="strong_wolfe",
        )
        done = count["iteration"]

        def closure():
            opt.zero_grad()
            parts = pinn_loss(model, tx_u, u, tx_f)
            parts["loss"].backward()
            state = opt.state[next(iter(model.parameters()))]
            count["iteration"] = done + state.get("n_iter", 0)
            evaluated(parts)
            return parts["loss"]

        opt.step(closure)
    # the trained model: one more evaluation, outside the count
    final = pinn_loss(model, tx_u, u, tx_f)
    record({k: v.detach() for k, v in final.items()})
    return history


@torch.no_grad()
def predict(
    model: BurgersPINN, tx: torch.Tensor, batch: int = 65_536
) -> torch.Tensor:
    """``u_theta`` at the points ``tx`` ``(N, 2)``, in batches; returns ``(N, 1)``."""
    return torch.cat([model(c[:, :1], c[:, 1:]) for c in tx.split(batch)])


def relative_l2(pred, ref) -> float:
    """``||pred - ref||_2 / ||ref||_2`` over all entries, the error measure of the paper."""
    pred, ref = (
        torch.as_tensor(pred).double().reshape(-1),
        torch.as_tensor(ref).double().reshape(-1),
    )
    if pred.shape != ref.shape:
        raise ValueError(
            f"pred and ref must have the same number of entries, got {pred.numel()} and {ref.numel()}"
        )
    return (
        torch.linalg.vector_norm(pred - ref) / torch.linalg.vector_norm(ref)
    ).item()

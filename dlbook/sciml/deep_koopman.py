"""Deep Koopman embeddings: the autoencoder of Lusch, Kutz & Brunton (2018).

An encoder ``phi`` maps the state ``x`` to a few intrinsic coordinates ``y = phi(x)``, in
which one time step is a linear map ``K``; a decoder ``phi^{-1}`` maps back. ``K`` is built
from eigenvalues: a ``2 x 2`` scaled rotation per complex-conjugate pair ``mu +- i omega`` and a
scalar ``exp(mu dt)`` per real eigenvalue. For systems with a *continuous* spectrum (the
pendulum: every amplitude has its own frequency) an auxiliary network makes the eigenvalues
functions of the coordinates themselves, ``mu(|y|^2), omega(|y|^2)``, so that ``K`` depends
on the orbit while remaining a rotation along it.

* :class:`DeepKoopmanConfig`: hyperparameters; :data:`DISCRETE_SPECTRUM` and :data:`PENDULUM`
  hold the paper's published settings (``*ExperimentBestParams.py`` in the authors' code);
* :class:`AuxiliaryNetwork`, :func:`koopman_step`: the eigenvalues and the block-diagonal ``K``;
* :class:`DeepKoopman`: encoder, decoder, auxiliary network; forward pass over a trajectory,
  long-horizon :meth:`DeepKoopman.predict`;
* :class:`DeepKoopmanLoss`: the paper's loss,
  ``alpha1 (L_recon + L_pred) + L_lin + alpha2 L_inf + alpha3 ||W||^2``, trainable with
  :func:`dlbook.train.fit`;
* :func:`trajectory_data`: trajectories of a :mod:`dlbook.sciml.systems` system, as the paper
  sampled them; :func:`train`: Adam with a cosine schedule through :func:`dlbook.train.fit`.

Two options beyond the paper's defaults: ``relative_loss`` (in the authors' code, off in their
experiments) divides each error by the size of its target; ``log_radius`` (ours) feeds
``log r^2`` to the auxiliary network, which short runs need because the intrinsic coordinates
shrink during training (see the chapter).

Checked against: the authors' TensorFlow code (``github.com/BethanyL/DeepKoopman``,
``networkarch.py`` and ``training.py``), whose block structure, loss terms and weights this
module follows; ``tests/sciml/test_deep_koopman.py`` checks the Koopman step against the matrix
exponential of the block generator, the block-diagonal auxiliary MLP against separate MLPs,
the losses against direct formulas, and that training learns.

Chapter: ``book/sciml/deep-koopman.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from dlbook.sciml.systems import System, sample_box
from dlbook.train import History, fit

# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeepKoopmanConfig:
    """Hyperparameters of the Koopman autoencoder (names follow the paper and its code)."""

    state_dim: int = 2  # n: dimension of the state x
    widths: tuple[int, ...] = (
        30,
        30,
    )  # hidden widths of the encoder; the decoder mirrors them
    num_real: int = 2  # real eigenvalues, one latent coordinate each
    num_complex_pairs: int = (
        0  # complex-conjugate pairs, two latent coordinates each
    )
    aux_widths: tuple[int, ...] = (
        10,
        10,
        10,
    )  # hidden widths of each auxiliary (eigenvalue) network
    auxiliary: bool = True  # eigenvalues from the auxiliary network; False: constant learned eigenvalues
    log_radius: bool = False  # the auxiliary network sees log(r^2) instead of the paper's r^2 (scale-free)
    dt: float = 0.02  # time step between snapshots
    num_shifts: int = (
        30  # S_p: future steps decoded and compared in the prediction loss
    )
    num_shifts_middle: int = (
        50  # steps compared in latent space in the linearity loss (T - 1)
    )
    alpha1: float = 0.1  # weight of the reconstruction and prediction losses
    alpha2: float = 1e-7  # weight of the L-infinity loss
    alpha3: float = 1e-15  # weight of the L2 penalty on the weight matrices
    relative_loss: bool = False  # divide each error by the size of its target (``relative_loss`` of the authors' code)

    def __post_init__(self):
        for name in ("state_dim", "num_shifts", "num_shifts_middle"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name} must be a positive integer, got {value!r}"
                )
        if (
            self.num_real < 0
            or self.num_complex_pairs < 0
            or self.latent_dim == 0
        ):
            raise ValueError(
                f"need at least one eigenvalue: num_real={self.num_real}, num_complex_pairs={self.num_complex_pairs}"
            )
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt!r}")

    @property
    def latent_dim(self) -> int:
        """k: the number of intrinsic coordinates, ``2 num_complex_pairs + num_real``."""
        return 2 * self.num_complex_pairs + self.num_real

    @property
    def num_eigenvalues(self) -> int:
        """Auxiliary networks: one per pair and one per real eigenvalue."""
        return self.num_complex_pairs + self.num_real


DISCRETE_SPECTRUM = DeepKoopmanConfig()
"""The paper's discrete-spectrum model: widths 30, auxiliary widths (10, 10, 10), two real eigenvalues."""

PENDULUM = DeepKoopmanConfig(
    widths=(80, 80),
    num_real=0,
    num_complex_pairs=1,
    aux_widths=(170,),
    alpha1=1e-3,
    alpha2=1e-9,
    alpha3=1e-14,
)
"""The paper's pendulum model: widths 80, one complex pair whose auxiliary network (width 170) sees the radius."""


# --- building blocks ------------------------------------------------------------------------


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them and none after the last.

    Weights are uniform in ``+-1/sqrt(fan_in)`` and biases zero, the ``'dl'`` initialisation of
    the authors' code.
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        nn.init.uniform_(lin.weight, -1 / np.sqrt(a), 1 / np.sqrt(a))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BlockMLP(nn.Module):
    """Several independent MLPs with the same hidden widths, evaluated as one masked MLP.

    Network ``g`` maps ``in_sizes[g]`` inputs to ``out_sizes[g]`` outputs through ``hidden``
    widths. Stacked side by side, their layers are block-diagonal matrices: each layer keeps a
    dense weight and multiplies it by a fixed 0/1 block mask, so the blocks never mix (the
    masked entries get zero gradient) and every network stays independent. The auxiliary
    network runs at each of the 50 time steps of the loss on a small batch, where the cost is
    the number of operations, not their size; one masked MLP needs a ``G``-th of them.

    Initialised as :func:`mlp` (uniform in ``+-1/sqrt(fan_in)`` of each block, zero biases).

    Shapes:
        x: ``(B, sum(in_sizes))`` -> ``(B, sum(out_sizes))``, blocks in order.
    """

    def __init__(
        self,
        in_sizes: list[int],
        hidden: tuple[int, ...],
        out_sizes: list[int],
    ):
        super().__init__()
        G = len(in_sizes)
        layer_sizes = (
            [list(in_sizes)] + [[h] * G for h in hidden] + [list(out_sizes)]
        )
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for i, (ins, outs) in enumerate(
            zip(layer_sizes[:-1], layer_sizes[1:])
        ):
            W, mask = (
                torch.zeros(sum(ins), sum(outs)),
                torch.zeros(sum(ins), sum(outs)),
            )
            r = c = 0
            for a, b in zip(ins, outs):
                W[r : r + a, c : c + b].uniform_(
                    -1 / np.sqrt(a), 1 / np.sqrt(a)
                )
                mask[r : r + a, c : c + b] = 1
                r, c = r + a, c + b
            self.weights.append(nn.Parameter(W))
            self.biases.append(nn.Parameter(torch.zeros(sum(outs))))
            self.register_buffer(f"mask{i}", mask)

    def masked_weights(self) -> list[Tensor]:
        """The block-diagonal weights; compute once and pass to :meth:`forward` when calling it often."""
        return [
            W * getattr(self, f"mask{i}") for i, W in enumerate(self.weights)
        ]

    def forward(
        self, x: Tensor, weights: list[Tensor] | None = None
    ) -> Tensor:
        weights = self.masked_weights() if weights is None else weights
        for i, (W, b) in enumerate(zip(weights, self.biases)):
            x = torch.addmm(b, x, W)
            if i < len(weights) - 1:
                x = torch.relu(x)
        return x


class AuxiliaryNetwork(nn.Module):
    """The eigenvalues as functions of the intrinsic coordinates.

    For complex pair j (coordinates y_2j, y_2j+1) a network Λ_j of the
    squared radius r_j² = y_2j² + y_2j+1² returns (ω_j, μ_j); for real
    eigenvalue i a network Λ_i of its own coordinate returns μ_i:

        (ω_j, μ_j) = Λ_j(r_j²),    μ_i = Λ_i(y_i).

    Each eigenvalue has its own network, as in the authors' code; they are
    evaluated together as one block-diagonal network (BlockMLP).

    Shapes:
        y: (B, k); returns mu (B, P + R) and omega (B, P + R), pairs first,
        with omega = 0 for the R real eigenvalues.
    """

    def __init__(self, cfg: DeepKoopmanConfig):
        super().__init__()
        self.num_complex_pairs, self.num_real, self.log_radius = (
            cfg.num_complex_pairs,
            cfg.num_real,
            cfg.log_radius,
        )
        G = cfg.num_complex_pairs + cfg.num_real
        self.net = BlockMLP(
            [1] * G,
            cfg.aux_widths,
            [2] * cfg.num_complex_pairs + [1] * cfg.num_real,
        )

    def forward(
        self, y: Tensor, weights: list[Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        P, R, B = self.num_complex_pairs, self.num_real, len(y)
        if not P:  # real eigenvalues only: each network sees its coordinate
            out = self.net(y, weights)  # (B, R)
            return out, out.new_zeros(()).expand_as(out)
        inputs = []
        if P:
            radius2 = (
                y[:, : 2 * P].reshape(B, P, 2).pow(2).sum(-1)
            )  # (B, P): squared radii
            inputs.append(
                torch.log(radius2 + 1e-12) if self.log_radius else radius2
            )
        inputs += [y[:, 2 * P :]] if R else []  # (B, R)
        out = self.net(
            inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1), weights
        )  # (B, 2P + R)
        pairs = out[:, : 2 * P].reshape(
            B, P, 2
        )  # (omega, mu) per pair, the order of the authors' code
        if not R:
            return pairs[..., 1], pairs[..., 0]
        return torch.cat([pairs[..., 1], out[:, 2 * P :]], 1), torch.cat(
            [pairs[..., 0], y.new_zeros(B, R)], 1
        )

    @staticmethod
    def eigenvalues(mu: Tensor, omega: Tensor) -> Tensor:
        """``mu + i omega`` as a complex tensor (continuous time)."""
        return torch.complex(mu, omega)


class ConstantEigenvalues(nn.Module):
    """Learned eigenvalues that do not depend on ``y``: a fixed ``K``, as for a discrete spectrum.

    Same interface as :class:`AuxiliaryNetwork`; ``mu`` starts at 0 and ``omega`` at 1.

    Shapes:
        y: ``(B, k)``; returns ``mu (B, P + R)`` and ``omega (B, P + R)``.
    """

    def __init__(self, cfg: DeepKoopmanConfig):
        super().__init__()
        self.num_complex_pairs, self.num_real = (
            cfg.num_complex_pairs,
            cfg.num_real,
        )
        self.mu = nn.Parameter(torch.zeros(cfg.num_eigenvalues))
        self.omega = nn.Parameter(torch.ones(cfg.num_complex_pairs))

    def forward(self, y: Tensor, weights=None) -> tuple[Tensor, Tensor]:
        B = len(y)
        omega = torch.cat([self.omega, self.omega.new_zeros(self.num_real)])
        return self.mu.expand(B, -1), omega.expand(B, -1)


def koopman_step(
    y: Tensor,
    mu: Tensor,
    omega: Tensor,
    dt: float | Tensor,
    num_complex_pairs: int,
) -> Tensor:
    """Advance the intrinsic coordinates one step with the block-diagonal K.

    Each complex pair is multiplied by the scaled rotation

        B(μ, ω) = exp(μ Δt) [[cos ωΔt, -sin ωΔt], [sin ωΔt, cos ωΔt]],

    which is exp(Δt [[μ, -ω], [ω, μ]]); each real coordinate by exp(μ Δt).
    Written for the complex number z = y_1 + i y_2, the block is one
    multiplication, z <- exp((μ + iω) Δt) z, which is how it is computed
    (a third of the operations). dt may be a (B, 1) tensor of per-row
    times.

    Shapes:
        y: (B, k); mu, omega: (B, P + R) from the auxiliary network;
        returns (B, k).
    """
    P, B = num_complex_pairs, len(y)
    if not P:  # real eigenvalues only: one scaling per coordinate
        return y * torch.exp(mu * dt)
    parts = []
    if P:
        z = torch.view_as_complex(
            y[:, : 2 * P].reshape(B, P, 2).contiguous()
        )  # (B, P): y_1 + i y_2
        factor = torch.exp(
            torch.complex(mu[:, :P], omega[:, :P]) * dt
        )  # e^{(mu + i omega) dt}
        parts.append(torch.view_as_real(factor * z).reshape(B, 2 * P))
    if y.shape[1] > 2 * P:
        parts.append(y[:, 2 * P :] * torch.exp(mu[:, P:] * dt))
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _aux_input(y: Tensor, P: int, log_radius: bool) -> Tensor:
    """What the auxiliary network sees: g(r²) per pair, then the reals."""
    B = len(y)
    if not P:
        return y
    radius2 = y[:, : 2 * P].reshape(B, P, 2).pow(2).sum(-1)  # (B, P)
    a = torch.log(radius2 + 1e-12) if log_radius else radius2
    return a if y.shape[1] == 2 * P else torch.cat([a, y[:, 2 * P :]], 1)


class _Rollout(torch.autograd.Function):
    """K^m y_0 for m = 1 .. S with the auxiliary network, backward by hand.

    Forward: the arithmetic of S calls of DeepKoopman.step. Backward: the
    chain rule through the steps in reverse, written out, with the weight
    gradients of all steps summed in one product per layer. The loss makes
    a few hundred tiny operations per step, where the bookkeeping of
    autograd costs more than the arithmetic; one node for the whole rollout
    is several times faster (tested equal to stepping with autograd).
    """

    @staticmethod
    def forward(ctx, y0, n_steps, dt, P, log_radius, *params):
        L = len(params) // 2
        weights, biases = params[:L], params[L:]
        B, k = y0.shape
        ys, layers, factors = [y0], [], []
        y = y0
        for _ in range(n_steps):
            hs = [_aux_input(y, P, log_radius)]  # the input of each layer
            for W, b in zip(weights[:-1], biases[:-1]):
                hs.append(torch.relu(torch.addmm(b, hs[-1], W)))
            out = torch.addmm(biases[-1], hs[-1], weights[-1])
            parts, factor = [], None
            if P:  # (omega, mu) per pair: z <- exp((mu + i omega) dt) z
                pairs = out[:, : 2 * P].reshape(B, P, 2)
                z = torch.view_as_complex(
                    y[:, : 2 * P].reshape(B, P, 2).contiguous()
                )
                factor = torch.exp(
                    torch.complex(pairs[..., 1], pairs[..., 0]) * dt
                )
                parts.append(torch.view_as_real(factor * z).reshape(B, 2 * P))
            scale = None
            if not P:  # real eigenvalues only: y <- exp(mu dt) y
                scale = torch.exp(out * dt)
                parts.append(y * scale)
            elif k > 2 * P:  # the real ones after the pairs
                scale = torch.exp(out[:, 2 * P :] * dt)
                parts.append(y[:, 2 * P :] * scale)
            y = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            ys.append(y)
            layers.append(hs)
            factors.append((factor, scale))
        ctx.save_for_backward(*params)
        ctx.trace = (ys, layers, factors)
        ctx.consts = (dt, P, log_radius)
        return torch.stack(ys[1:], 1)

    @staticmethod
    def backward(ctx, grad):
        params = ctx.saved_tensors
        weights = params[: len(params) // 2]
        ys, layers, factors = ctx.trace
        dt, P, log_radius = ctx.consts
        B, k = ys[0].shape
        out_grads = [[] for _ in weights]  # per layer, per step (reversed)
        weights_t = [W.T for W in weights]
        grads = grad.unbind(1)  # dL/dy_{m+1} from the output, per step
        gy = torch.zeros_like(ys[0])
        for m in reversed(range(len(factors))):
            gy = gy + grads[m]  # dL/dy_{m+1}
            (factor, scale), hs = factors[m], layers[m]
            g_out, g_y = [], []
            if P:
                gz = torch.view_as_complex(
                    gy[:, : 2 * P].reshape(B, P, 2).contiguous()
                )
                z_new = torch.view_as_complex(
                    ys[m + 1][:, : 2 * P].reshape(B, P, 2).contiguous()
                )
                # dL/d(mu + i omega) = dt conj(z_new) gz; times i and
                # conjugated it reads (d omega, d mu): the output's order
                g_lam = z_new * torch.conj(gz) * (1j * dt)
                g_out.append(torch.view_as_real(g_lam).reshape(B, 2 * P))
                g_y.append(
                    torch.view_as_real(torch.conj(factor) * gz).reshape(
                        B, 2 * P
                    )
                )
            if scale is not None:
                g_real, y_real = (
                    (gy, ys[m + 1])
                    if not P
                    else (gy[:, 2 * P :], ys[m + 1][:, 2 * P :])
                )
                g_out.append(g_real * y_real * dt)
                g_y.append(g_real * scale)
            g = g_out[0] if len(g_out) == 1 else torch.cat(g_out, 1)
            for layer in reversed(range(len(weights))):
                out_grads[layer].append(g)
                g = g @ weights_t[layer]
                if layer:  # through the ReLU that made this layer's input
                    # (g where its output is positive, else 0: ReLU's own
                    # backward, one operation)
                    g = torch.ops.aten.threshold_backward(g, hs[layer], 0)
            gy = g_y[0] if len(g_y) == 1 else torch.cat(g_y, 1)
            if P:  # through g(r²) to the pairs' coordinates
                yp = ys[m][:, : 2 * P].reshape(B, P, 2)
                g_r2 = g[:, :P]
                if log_radius:
                    g_r2 = g_r2 / (yp.pow(2).sum(-1) + 1e-12)
                g_pairs = (yp * (2 * g_r2)[..., None]).reshape(B, 2 * P)
                g = (
                    g_pairs
                    if k == 2 * P
                    else torch.cat([g_pairs, g[:, P:]], 1)
                )
            gy = gy + g
        grads_w, grads_b = [], []
        for layer, gs in enumerate(out_grads):
            inputs = torch.cat([hs[layer] for hs in reversed(layers)])
            outputs = torch.cat(gs)
            grads_w.append(inputs.T @ outputs)
            grads_b.append(outputs.sum(0))
        return (gy, None, None, None, None, *grads_w, *grads_b)


# --- the model ------------------------------------------------------------------------------


class KoopmanOutput(NamedTuple):
    """What :meth:`DeepKoopman.forward` returns for a batch of trajectories ``x (B, T, n)``."""

    x_recon: Tensor  # (B, n): phi^{-1}(phi(x_0))
    x_pred: Tensor  # (B, S_p, n): phi^{-1}(K^m phi(x_0)), m = 1 .. S_p
    y: Tensor  # (B, T, k): phi(x_t), the encoded trajectory
    y_adv: Tensor  # (B, S, k): K^m phi(x_0), m = 1 .. S = max(S_p, num_shifts_middle)
    weight_norm: Tensor  # (): sum of squared weight entries / 2 (the L2 penalty, biases excluded)


class DeepKoopman(nn.Module):
    """Encoder ``phi``, decoder ``phi^{-1}`` and auxiliary network of Lusch et al. (2018).

    .. math:: y_0 = \\varphi(x_0), \\quad y_{m+1} = K(\\mu(y_m), \\omega(y_m))\\, y_m, \\quad
              \\hat x_m = \\varphi^{-1}(y_m).

    The eigenvalues are recomputed from the advanced coordinates at every step, as in the
    authors' code, so ``K`` may vary from orbit to orbit but not along one.

    Args:
        cfg: the hyperparameters.

    Shapes:
        forward: ``x (B, T, n)`` with ``T > max(num_shifts, num_shifts_middle)`` -> :class:`KoopmanOutput`.
    """

    def __init__(self, cfg: DeepKoopmanConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = mlp([cfg.state_dim, *cfg.widths, cfg.latent_dim])
        self.decoder = mlp(
            [cfg.latent_dim, *reversed(cfg.widths), cfg.state_dim]
        )
        self.aux = (
            AuxiliaryNetwork(cfg)
            if cfg.auxiliary
            else ConstantEigenvalues(cfg)
        )

    def encode(self, x: Tensor) -> Tensor:
        """``phi(x)``: ``(..., n) -> (..., k)``."""
        return self.encoder(x)

    def decode(self, y: Tensor) -> Tensor:
        """``phi^{-1}(y)``: ``(..., k) -> (..., n)``."""
        return self.decoder(y)

    def step(self, y: Tensor, weights: list[Tensor] | None = None) -> Tensor:
        """One Koopman step ``K(y) y``: ``(B, k) -> (B, k)``."""
        mu, omega = self.aux(y, weights)
        return koopman_step(
            y, mu, omega, self.cfg.dt, self.cfg.num_complex_pairs
        )

    def advance(self, y0: Tensor, n_steps: int) -> Tensor:
        """``K^m y_0`` for ``m = 1 .. n_steps``: ``(B, k) -> (B, n_steps, k)``.

        With constant eigenvalues ``K^m`` has the closed form ``K(m dt)``, computed for every
        ``m`` at once; with the auxiliary network the eigenvalues are re-evaluated at each step.
        """
        if not self.cfg.auxiliary:
            B, k = y0.shape
            y = y0[:, None].expand(B, n_steps, k).reshape(B * n_steps, k)
            mu, omega = self.aux(y)
            times = (
                torch.arange(1, n_steps + 1, dtype=y0.dtype, device=y0.device)
                * self.cfg.dt
            ).repeat(B)
            return koopman_step(
                y, mu, omega, times[:, None], self.cfg.num_complex_pairs
            ).reshape(B, n_steps, k)
        net = self.aux.net  # one autograd node for all the steps
        return _Rollout.apply(
            y0,
            n_steps,
            self.cfg.dt,
            self.cfg.num_complex_pairs,
            self.cfg.log_radius,
            *net.masked_weights(),
            *net.biases,
        )

    def eigenvalues(self, x: Tensor) -> Tensor:
        """The continuous-time eigenvalues ``mu + i omega`` at states ``x (B, n)``: ``(B, P + R)`` complex."""
        return AuxiliaryNetwork.eigenvalues(*self.aux(self.encode(x)))

    def forward(self, x: Tensor) -> KoopmanOutput:
        cfg = self.cfg
        S = max(cfg.num_shifts, cfg.num_shifts_middle)
        if x.ndim != 3 or x.shape[-1] != cfg.state_dim or x.shape[1] <= S:
            raise ValueError(
                "x must be trajectories of shape "
                f"(B, T, {cfg.state_dim}) with T > {S} (max of num_shifts, "
                f"num_shifts_middle), got {tuple(x.shape)}"
            )
        y = self.encode(x)  # (B, T, k)
        y_adv = self.advance(y[:, 0], S)  # (B, S, k)
        decoded = self.decode(
            torch.cat([y[:, :1], y_adv[:, : cfg.num_shifts]], 1)
        )  # (B, 1 + S_p, n)
        weight_norm = (
            sum(
                p.pow(2).sum()
                for name, p in self.named_parameters()
                if "bias" not in name
            )
            / 2
        )
        return KoopmanOutput(
            decoded[:, 0], decoded[:, 1:], y, y_adv, weight_norm
        )

    @torch.no_grad()
    def predict(self, x0: Tensor, n_steps: int) -> Tensor:
        """Encode once, advance ``n_steps - 1`` times in the latent space, decode every step.

        Shapes:
            x0: ``(B, n)``; returns ``(B, n_steps, n)`` whose first entry is ``phi^{-1}(phi(x_0))``.
        """
        y0 = self.encode(x0)
        ys = (
            torch.cat([y0[:, None], self.advance(y0, n_steps - 1)], 1)
            if n_steps > 1
            else y0[:, None]
        )
        return self.decode(ys)


# --- the loss -------------------------------------------------------------------------------


class DeepKoopmanLoss:
    """The loss of Lusch et al. (2018), eq. (5) with the terms of their code:

    .. math::
        \\mathcal L = \\alpha_1 (\\mathcal L_{\\rm recon} + \\mathcal L_{\\rm pred}) + \\mathcal L_{\\rm lin}
                      + \\alpha_2 \\mathcal L_\\infty + \\alpha_3 \\lVert W \\rVert_2^2,

    with mean squared errors

    .. math::
        \\mathcal L_{\\rm recon} = \\lVert x_0 - \\varphi^{-1}(\\varphi(x_0)) \\rVert^2,\\quad
        \\mathcal L_{\\rm pred} = \\frac1{S_p}\\sum_{m=1}^{S_p} \\lVert x_m - \\varphi^{-1}(K^m \\varphi(x_0)) \\rVert^2,

    .. math::
        \\mathcal L_{\\rm lin} = \\frac1{T-1}\\sum_{m=1}^{T-1} \\lVert \\varphi(x_m) - K^m \\varphi(x_0) \\rVert^2,\\quad
        \\mathcal L_\\infty = \\lVert x_0 - \\hat x_0 \\rVert_\\infty + \\lVert x_1 - \\hat x_1 \\rVert_\\infty.

    ``||.||^2`` is the mean over the batch and the coordinates; ``||.||_inf`` the largest
    entry over the batch. Called as ``loss(output, x)`` it returns the total, so it can be
    passed to :func:`dlbook.train.fit` with ``(x, x)`` batches.
    """

    def __init__(self, cfg: DeepKoopmanConfig):
        self.cfg = cfg
        # (out, x, components) of the last call: the metrics reuse them
        self._last: tuple | None = None

    def _components(self, out: KoopmanOutput, x: Tensor) -> dict[str, Tensor]:
        """components(out, x), computed once for the loss and its metrics."""
        last = self._last
        if last is None or last[0] is not out or last[1] is not x:
            self._last = last = (out, x, self.components(out, x))
        return last[2]

    def components(self, out: KoopmanOutput, x: Tensor) -> dict[str, Tensor]:
        """Every term, unweighted: recon, pred, lin, inf, l2.

        With relative_loss each squared error is divided by the mean square
        of its target and each infinity norm by the largest entry of its
        target (plus 1e-5), as in the authors' code. The linearity term then
        no longer rewards shrinking the intrinsic coordinates, which
        otherwise lowers it for free while the decoder scales them back up.
        """
        cfg = self.cfg
        Sp, Sm = cfg.num_shifts, cfg.num_shifts_middle
        x_next, y_next = (
            x[:, 1 : Sp + 1],
            out.y[:, 1 : Sm + 1],
        )  # the targets of pred and lin
        recon = (out.x_recon - x[:, 0]).pow(2).mean()
        pred = (
            (out.x_pred - x_next).pow(2).mean((0, 2))
        )  # (S_p,): one mean squared error per step
        lin = (out.y_adv[:, :Sm] - y_next).pow(2).mean((0, 2))  # (S,)
        inf0, inf1 = (
            (out.x_recon - x[:, 0]).abs().max(),
            (out.x_pred[:, 0] - x[:, 1]).abs().max(),
        )
        if cfg.relative_loss:
            eps = 1e-5
            recon = recon / (x[:, 0].pow(2).mean() + eps)
            pred = pred / (x_next.pow(2).mean((0, 2)) + eps)
            lin = lin / (y_next.pow(2).mean((0, 2)) + eps)
            inf0, inf1 = (
                inf0 / (x[:, 0].abs().max() + eps),
                inf1 / (x[:, 1].abs().max() + eps),
            )
        return {
            "recon": recon,
            "pred": pred.mean(),
            "lin": lin.mean(),
            "inf": inf0 + inf1,
            "l2": out.weight_norm,
        }

    def __call__(self, out: KoopmanOutput, x: Tensor) -> Tensor:
        c, cfg = self._components(out, x), self.cfg
        return (
            cfg.alpha1 * (c["recon"] + c["pred"])
            + c["lin"]
            + cfg.alpha2 * c["inf"]
            + cfg.alpha3 * c["l2"]
        )

    def metrics(self) -> dict:
        """Per-term metrics for :func:`dlbook.train.fit` (``train_recon``, ``val_lin``, ...)."""
        return {
            name: (lambda out, x, name=name: self._components(out, x)[name])
            for name in ("recon", "pred", "lin")
        }


# --- data -----------------------------------------------------------------------------------


def trajectory_data(
    system: System,
    n: int,
    low,
    high,
    *,
    len_time: int = 51,
    dt: float = 0.02,
    seed: int = 0,
    max_energy: float | None = None,
    substeps: int = 10,
) -> Tensor:
    """``n`` trajectories of ``system`` from initial states uniform in the box ``[low, high]``.

    As in Lusch et al. (2018): 51 snapshots ``dt = 0.02`` apart; for the pendulum only
    initial states with energy at most ``max_energy`` (0.99 in the paper), so every
    trajectory oscillates. Integrated with :func:`dlbook.sciml.systems.rk4` in float64 and
    returned in float32.

    Shapes:
        returns ``(n, len_time, d)``.
    """
    if not isinstance(len_time, int) or len_time < 2:
        raise ValueError(f"len_time must be an integer >= 2, got {len_time!r}")
    rng = np.random.default_rng(seed)
    accept = None
    if max_energy is not None:
        accept = lambda x: system.energy(x) <= max_energy  # noqa: E731
    x0 = sample_box(n, low, high, rng, accept)
    t = np.arange(len_time) * dt
    return torch.from_numpy(system.simulate(x0, t, substeps)).float()


# --- training -------------------------------------------------------------------------------


def train(
    model: DeepKoopman,
    x_train: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    cosine: bool = True,
    x_val: Tensor | None = None,
    device: torch.device | str | None = None,
) -> History:
    """Train model with Adam and the paper's loss for about `steps` steps.

    The authors train with Adam at a constant lr = 1e-3 for hours; for
    short runs the learning rate can follow a cosine from lr down to zero
    (cosine=True), which settles the eigenvalues at the end of training
    instead of leaving them jittering. Epochs are whole passes over x_train
    (shuffled by the seeded global generator), as many as `steps` needs.

    Args:
        model: the autoencoder; its config supplies the loss weights.
        x_train: training trajectories (N, T, n).
        steps: number of optimiser steps (rounded up to whole epochs).
        batch_size: trajectories per step.
        lr: the initial learning rate.
        cosine: decay the learning rate to zero along a cosine; False keeps
            it constant.
        x_val: validation trajectories, evaluated after every epoch.
        device: where to train; default: where the model is.

    Returns:
        The dlbook.train.History of the run.

    Raises:
        ValueError: trajectories that are not finite or not (N, T, n), a
            bad `steps`, or a batch larger than the training set.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    for name, x in (("x_train", x_train), ("x_val", x_val)):
        if x is None:
            continue
        if x.ndim != 3 or x.shape[-1] != model.cfg.state_dim:
            raise ValueError(
                f"{name} must be trajectories of shape "
                f"(N, T, {model.cfg.state_dim}), got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(
                f"{name} must be finite, but {bad} of its {x.numel()} "
                "entries are NaN or infinite"
            )
    loss = DeepKoopmanLoss(model.cfg)
    # whole batches by one indexing each (the batches of shuffle=True)
    data = TensorDataset(x_train, x_train)
    loader = DataLoader(
        data,
        batch_size=None,
        sampler=BatchSampler(RandomSampler(data), batch_size, True),
    )
    if len(loader) == 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {len(x_train)} "
            "training trajectories"
        )
    epochs = -(-steps // len(loader))
    val = None
    if x_val is not None:
        data = TensorDataset(x_val, x_val)
        val = DataLoader(
            data,
            batch_size=None,
            sampler=BatchSampler(SequentialSampler(data), 1024, False),
        )
    # foreach: the same arithmetic as the loop over parameters, fewer calls
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs * len(loader)
        )
        if cosine
        else None
    )
    return fit(
        model,
        loader,
        optimizer,
        epochs=epochs,
        loss_fn=loss,
        metrics=loss.metrics(),
        val_loader=val,
        scheduler=scheduler,
        scheduler_step="batch",
        device=device,
    )

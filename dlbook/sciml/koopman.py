"""Dynamic mode decomposition (DMD) and extended DMD (EDMD): finite approximations of the Koopman operator.

The Koopman operator advances *observables* (functions of the state) along a dynamical
system; it is linear even when the system is not. DMD fits the best linear map between
consecutive snapshots of measured data and returns its eigenvalues and modes; EDMD does the
same after lifting the state through a dictionary of observables, and its eigenvectors define
approximate Koopman eigenfunctions.

* :func:`dmd`: exact DMD (Schmid 2010; Tu et al. 2014, Algorithm 2) with rank truncation of the
  singular value decomposition, returning a :class:`DMDResult` (eigenvalues, modes,
  amplitudes, reconstruction and prediction);
* :class:`Dictionary`: named observables ``psi(x)``, with polynomial dictionaries built in;
* :func:`edmd`: extended DMD (Williams, Kevrekidis & Rowley 2015), returning an
  :class:`EDMDResult` (eigenvalues, eigenfunctions, Koopman modes, prediction).

Everything runs in float64 PyTorch, so it also works on the latent codes of a network
(``book/sciml/deep-koopman.md``).

Checked against: PyDMD's ``DMD(exact=True)`` (Demo et al. 2018) for the
eigenvalues, modes up to scale and reconstruction, and PyKoopman's ``EDMD`` with the same
observables (Pan et al. 2024) for the eigenvalues and the Koopman matrix
(``tests/sciml/test_koopman.py``).

Chapter: ``book/sciml/koopman.md``.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DTYPE = torch.float64


# --- input checks ---------------------------------------------------------------------------


def as_matrix(name: str, value, *, complex_ok: bool = False) -> Tensor:
    """``value`` as a float64 (or complex128) 2-D tensor; a clear error if it is not finite or not 2-D."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, RuntimeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a matrix of numbers (a tensor, an array or "
            f"nested lists), got {type(value).__name__}"
        ) from err
    if t.dtype == torch.bool or not (
        t.is_floating_point()
        or t.is_complex()
        or t.dtype.is_signed
        or t.dtype == torch.uint8
    ):
        raise TypeError(f"{name} must hold numbers, got dtype {t.dtype}")
    if t.is_complex() and not complex_ok:
        raise ValueError(f"{name} must be real, got dtype {t.dtype}")
    t = t.to(torch.complex128 if t.is_complex() else DTYPE)
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name} must be finite, but {bad} of its {t.numel()} entries are NaN or infinite"
        )
    return t


def truncated_svd(
    X: Tensor, rank: int | float | None, *, name: str = "X"
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The rank-r SVD X ≈ U_r diag(s_r) V_r*, and all the singular values.

    Args:
        X: the matrix to decompose, (n, m).
        rank: None keeps the numerical rank (the singular values above
            max(n, m) · eps · s_1); an integer keeps that many; a float in
            (0, 1) keeps the fewest whose squares hold that fraction of
            Σ s² (the "energy").

    Returns:
        U_r (n, r), s_r (r,), V_r (m, r) and s (every singular value).

    Raises:
        ValueError: if rank is not an integer in [1, min(n, m)] or a
            fraction in (0, 1), or if it asks for more directions than the
            data contain (singular values at rounding level).
    """
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    n, m = X.shape
    tol = max(n, m) * torch.finfo(DTYPE).eps * (s[0] if len(s) else 0)
    numerical = int((s > tol).sum())
    if numerical == 0:
        raise ValueError(f"{name} is zero: there is nothing to decompose")
    if rank is None:
        r = numerical
    elif isinstance(rank, bool) or not isinstance(
        rank, (int, float, np.integer, np.floating)
    ):
        raise ValueError(
            "rank must be None, a positive integer or a fraction in (0, 1), "
            f"got {rank!r}"
        )
    elif isinstance(rank, (int, np.integer)):
        if not 1 <= rank <= min(n, m):
            raise ValueError(
                f"rank={rank} is larger than the data allow: {name} is "
                f"{n} x {m}, so the rank is at most min({n}, {m}) = {min(n, m)}"
            )
        if rank > numerical:
            raise ValueError(
                f"rank={rank} is larger than the numerical rank of {name}, "
                f"{numerical}: singular values {numerical + 1} and beyond are "
                f"at rounding level ({s[numerical].item():.2e} vs "
                f"s_1 = {s[0].item():.2e}); use rank <= {numerical}"
            )
        r = int(rank)
    else:
        if not 0 < rank < 1:
            raise ValueError(
                f"a fractional rank must lie in (0, 1), got {rank!r}; "
                "pass an int for a fixed rank"
            )
        energy = torch.cumsum(s**2, 0) / (s**2).sum()
        r = min(int((energy < rank).sum()) + 1, numerical)
    return U[:, :r], s[:r], Vh[:r].mH, s


def sort_eigenvalues(eigs: Tensor) -> Tensor:
    """Indices that sort eigenvalues by imaginary part, then real part (a canonical order for comparisons)."""
    order = np.lexsort(
        (eigs.real.cpu().numpy(), np.round(eigs.imag.cpu().numpy(), 10))
    )
    return torch.as_tensor(order)


# --- exact DMD ------------------------------------------------------------------------------


@dataclass
class DMDResult:
    """What exact DMD finds in snapshot data.

    The data are modelled as ``x_k = sum_j Phi_j lambda_j^k b_j``: ``lambda_j`` are the DMD
    eigenvalues (discrete time), ``Phi_j`` the modes and ``b_j`` the amplitudes at ``x_0``.

    Shapes:
        eigenvalues: ``(r,)`` complex; modes: ``(n, r)`` complex; amplitudes: ``(r,)`` complex;
        A_tilde: ``(r, r)``, the operator in the basis of the ``r`` leading left singular vectors;
        singular_values: every singular value of ``X``, ``(min(n, m),)``.
    """

    eigenvalues: Tensor
    modes: Tensor
    amplitudes: Tensor
    A_tilde: Tensor
    singular_values: Tensor
    rank: int
    dt: float

    @property
    def continuous_eigenvalues(self) -> Tensor:
        """``omega_j = log(lambda_j) / dt``: growth rate (real part) and angular frequency (imaginary part)."""
        return torch.log(self.eigenvalues) / self.dt

    def time_dynamics(
        self, n_steps: int, amplitudes: Tensor | None = None
    ) -> Tensor:
        """``b_j lambda_j^k`` for ``k = 0 .. n_steps - 1``; shape ``(r, n_steps)``."""
        b = self.amplitudes if amplitudes is None else amplitudes
        k = torch.arange(n_steps, dtype=DTYPE)
        powers = self.eigenvalues[:, None] ** k[None, :]
        # lambda^0 = 1, also for lambda = 0 (complex pow gives exp(-inf * 0) = NaN)
        return b[:, None] * torch.where(k == 0, 1.0, powers)

    def reconstruct(self, n_steps: int) -> Tensor:
        """The DMD model's snapshots ``x_0 .. x_{n_steps-1}`` from the fitted amplitudes; real, ``(n, n_steps)``."""
        return (self.modes @ self.time_dynamics(n_steps)).real

    def predict(self, x0, n_steps: int) -> Tensor:
        """Advance any initial state ``x0`` (``(n,)``) by the model: amplitudes by least squares onto the modes."""
        x0 = torch.as_tensor(x0, dtype=DTYPE).reshape(-1, 1)
        if x0.shape[0] != self.modes.shape[0]:
            raise ValueError(
                f"x0 must have {self.modes.shape[0]} entries (one per row of the data), got {x0.shape[0]}"
            )
        b = torch.linalg.lstsq(self.modes, x0.to(self.modes.dtype)).solution[
            :, 0
        ]
        return (self.modes @ self.time_dynamics(n_steps, b)).real


def dmd(
    X,
    Y=None,
    *,
    rank: int | float | None = None,
    dt: float = 1.0,
    exact: bool = True,
) -> DMDResult:
    """Exact dynamic mode decomposition (Tu et al. 2014, Algorithm 2).

    With snapshot pairs y_k = F(x_k) stacked as the columns of X and Y,
    DMD finds the eigendecomposition of the least-squares linear map
    A = Y X⁺ without forming it:

        X ≈ U_r Σ_r V_r*,    Ã = U_r* Y V_r Σ_r⁻¹,    Ã W = W Λ,
        Φ = Y V_r Σ_r⁻¹ W Λ⁻¹.

    The columns of Φ (the exact modes) are eigenvectors of A with the
    eigenvalues Λ; exact=False gives the projected modes U_r W of Schmid
    (2010) instead.

    Args:
        X: snapshots x_0 .. x_{m-1} as columns. If Y is None, X is one
            trajectory x_0 .. x_m and the pairs are its consecutive columns.
        Y: the snapshots one step later, same shape as X.
        rank: the truncation of the SVD of X (see truncated_svd).
        dt: time between x_k and y_k, for the continuous-time eigenvalues.
        exact: exact modes (default) or projected modes.

    Shapes:
        X, Y: (n, m) (features, snapshots).

    Raises:
        ValueError: non-finite data, mismatched shapes, too few snapshots,
            a rank larger than the data allow, or a non-positive dt.
    """
    X = as_matrix("X", X)
    if Y is None:
        if X.shape[1] < 2:
            raise ValueError(
                "X must hold at least 2 snapshots (columns) to form a pair, "
                f"got {X.shape[1]}"
            )
        X, Y = X[:, :-1], X[:, 1:]
    else:
        Y = as_matrix("Y", Y)
        if Y.shape != X.shape:
            raise ValueError(
                "X and Y must have the same shape (features, snapshots), "
                f"got {tuple(X.shape)} and {tuple(Y.shape)}"
            )
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    U, s, V, s_all = truncated_svd(X, rank)
    A_tilde = U.mH @ Y @ V / s  # (r, r)
    eigenvalues, W = torch.linalg.eig(A_tilde)
    order = sort_eigenvalues(eigenvalues)
    eigenvalues, W = eigenvalues[order], W[:, order]
    if exact:
        modes = (Y @ V / s).to(W.dtype) @ W  # (n, r): Y V S^-1 W ...
        # ... Lambda^-1, except where lambda is 0 (to rounding, relative to
        # A_tilde): there Y V S^-1 w is itself an eigenvector of A for 0, and
        # if it is 0 too, Tu et al. (2014, Theorem 3) take the projected U w.
        tol = torch.finfo(DTYPE).eps ** 0.5
        scale = float(torch.linalg.matrix_norm(A_tilde, 2))
        zero = eigenvalues.abs() <= tol * scale
        modes = torch.where(zero, modes, modes / eigenvalues)
        for j in torch.nonzero(zero).flatten().tolist():
            if torch.linalg.vector_norm(modes[:, j]) <= tol * scale:
                modes[:, j] = U.to(W.dtype) @ W[:, j]
    else:
        modes = U.to(W.dtype) @ W
    amplitudes = torch.linalg.lstsq(modes, X[:, :1].to(modes.dtype)).solution[
        :, 0
    ]
    return DMDResult(
        eigenvalues, modes, amplitudes, A_tilde, s_all, len(s), float(dt)
    )


# --- extended DMD ---------------------------------------------------------------------------


class Dictionary:
    """A list of observables ``psi(x) = [psi_1(x), ..., psi_K(x)]`` with names.

    Args:
        functions: each maps states ``(N, d)`` to one observable ``(N,)``.
        names: one name per function, for tables and plots.
        dim: the state dimension the functions expect.
    """

    def __init__(
        self,
        functions: Sequence[Callable[[Tensor], Tensor]],
        names: Sequence[str],
        dim: int,
    ):
        if len(functions) == 0 or len(functions) != len(names):
            raise ValueError(
                f"need one name per function and at least one function, got {len(functions)} and {len(names)}"
            )
        self.functions, self.names, self.dim = (
            list(functions),
            list(names),
            int(dim),
        )

    def __len__(self) -> int:
        return len(self.functions)

    def __repr__(self) -> str:
        return f"Dictionary([{', '.join(self.names)}])"

    def __call__(self, x) -> Tensor:
        """Evaluate the dictionary: ``(N, d)`` states -> ``(N, K)`` observables."""
        x = as_matrix("x", x)
        if x.shape[1] != self.dim:
            raise ValueError(
                f"x must have shape (N, {self.dim}) for this dictionary, got {tuple(x.shape)}"
            )
        return torch.stack([f(x) for f in self.functions], dim=1)

    @classmethod
    def polynomial(
        cls,
        exponents: Sequence[Sequence[int]],
        variables: Sequence[str] = ("x", "y"),
    ) -> Dictionary:
        """Monomials ``prod_i x_i^{e_i}``, one per exponent tuple: ``[(1, 0), (0, 1), (2, 0)]`` is ``[x, y, x^2]``."""
        exps = [tuple(int(e) for e in ex) for ex in exponents]
        if any(len(ex) != len(variables) or min(ex) < 0 for ex in exps):
            raise ValueError(
                f"each exponent tuple needs {len(variables)} non-negative integers, got {exponents!r}"
            )

        def monomial(ex):
            return lambda x: torch.prod(
                x ** torch.tensor(ex, dtype=x.dtype), dim=1
            )

        def name(ex):
            parts = [
                v if e == 1 else f"{v}^{e}"
                for v, e in zip(variables, ex)
                if e > 0
            ]
            return " ".join(parts) or "1"

        return cls(
            [monomial(ex) for ex in exps],
            [name(ex) for ex in exps],
            len(variables),
        )

    @classmethod
    def monomials(
        cls,
        degree: int,
        variables: Sequence[str] = ("x", "y"),
        constant: bool = False,
    ) -> Dictionary:
        """Every monomial of total degree 1 .. ``degree`` (and 1 if ``constant``), in graded order."""
        d = len(variables)
        exps = [(0,) * d] if constant else []
        for total in range(1, degree + 1):
            exps += sorted(
                (
                    ex
                    for ex in np.ndindex(*(total + 1,) * d)
                    if sum(ex) == total
                ),
                reverse=True,
            )
        return cls.polynomial(exps, variables)


@dataclass
class EDMDResult:
    """What EDMD finds: a matrix ``K`` that advances the dictionary, ``psi(x_{k+1}) ~ psi(x_k) K``.

    Its eigenvectors ``xi_j`` (``K xi_j = lambda_j xi_j``) give approximate Koopman eigenfunctions
    ``phi_j(x) = psi(x) xi_j`` with ``phi_j(x_{k+1}) ~ lambda_j phi_j(x_k)``, and the Koopman modes
    ``v_j`` write the state as ``x = sum_j phi_j(x) v_j``.

    Shapes:
        K: ``(K, K)``; eigenvalues: ``(K,)`` complex; eigenvectors: ``(K, K)`` complex (columns);
        modes: ``(K, d)`` complex (rows); B: ``(K, d)`` real, ``x ~ psi(x) B``.
    """

    K: Tensor
    eigenvalues: Tensor
    eigenvectors: Tensor
    modes: Tensor
    B: Tensor
    dictionary: Dictionary
    dt: float

    @property
    def continuous_eigenvalues(self) -> Tensor:
        """``log(lambda_j) / dt``, comparable with the eigenvalues of the vector field."""
        return torch.log(self.eigenvalues) / self.dt

    def eigenfunctions(self, x) -> Tensor:
        """``phi_j(x) = psi(x) xi_j`` at states ``(N, d)``; complex, ``(N, K)``."""
        return (
            self.dictionary(x).to(self.eigenvectors.dtype) @ self.eigenvectors
        )

    def predict(self, x0, n_steps: int) -> Tensor:
        """States ``x_0 .. x_{n_steps-1}`` from initial states ``x0 (N, d)``: ``x_k = sum_j lambda_j^k phi_j(x_0) v_j``.

        Shapes:
            returns ``(N, n_steps, d)``.
        """
        phi = self.eigenfunctions(x0)  # (N, K)
        powers = (
            self.eigenvalues[None, :]
            ** torch.arange(n_steps, dtype=DTYPE)[:, None]
        )  # (T, K)
        return torch.einsum("nk,tk,kd->ntd", phi, powers, self.modes).real


def edmd(
    X,
    Y,
    dictionary: Dictionary,
    *,
    dt: float = 1.0,
    rank: int | float | None = None,
) -> EDMDResult:
    """Extended DMD (Williams, Kevrekidis & Rowley 2015).

    With M snapshot pairs (x_k, y_k), y_k = F(x_k), lifted by the
    dictionary into Ψ_X and Ψ_Y (one row per snapshot), EDMD solves the
    least-squares problem

        K = argmin_K ‖Ψ_Y - Ψ_X K‖_F = Ψ_X⁺ Ψ_Y = G⁺ A,
        G = Ψ_X* Ψ_X / M,    A = Ψ_X* Ψ_Y / M.

    If the span of the dictionary is invariant under the Koopman operator,
    K is its exact matrix there and the eigenvalues are exact Koopman
    eigenvalues. The pseudo-inverse is taken through a (possibly truncated)
    SVD of Ψ_X.

    Args:
        X, Y: states and their successors, one per row.
        dictionary: the observables.
        dt: the time step, for the continuous-time eigenvalues.
        rank: truncation of the SVD of Ψ_X (see truncated_svd).

    Shapes:
        X, Y: (M, d) (snapshots, state dimension). Note: rows, as in
        scikit-learn and PyKoopman, while dmd takes columns, as PyDMD does.
    """
    X, Y = as_matrix("X", X), as_matrix("Y", Y)
    if X.shape != Y.shape:
        raise ValueError(
            "X and Y must have the same shape (snapshots, state), "
            f"got {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    Psi_X, Psi_Y = dictionary(X), dictionary(Y)  # (M, K)
    if not (torch.isfinite(Psi_X).all() and torch.isfinite(Psi_Y).all()):
        raise ValueError(
            "the dictionary produced NaN or infinite values on these data"
        )
    U, s, V, _ = truncated_svd(Psi_X, rank, name="Psi_X")
    K = V @ ((U.mT @ Psi_Y) / s[:, None])  # (K, K) = Psi_X^+ Psi_Y
    eigenvalues, eigenvectors = torch.linalg.eig(K)
    order = sort_eigenvalues(eigenvalues)
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    B = V @ ((U.mT @ X) / s[:, None])  # (K, d): x ~ psi(x) B
    modes = torch.linalg.solve(
        eigenvectors, B.to(eigenvectors.dtype)
    )  # x = psi Xi Xi^-1 B
    return EDMDResult(
        K, eigenvalues, eigenvectors, modes, B, dictionary, float(dt)
    )


# --- the reference library ------------------------------------------------------------------


def import_pykoopman():
    """Import PyKoopman 1.0.5, which still imports ``pkg_resources`` (removed from setuptools 81+).

    If ``pkg_resources`` is missing, a stand-in providing the two names PyKoopman uses
    (``get_distribution(name).version`` and ``DistributionNotFound``) is registered first,
    backed by :mod:`importlib.metadata`.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name):
            try:
                return types.SimpleNamespace(
                    version=importlib.metadata.version(name)
                )
            except importlib.metadata.PackageNotFoundError as err:
                raise DistributionNotFound(name) from err

        shim.DistributionNotFound, shim.get_distribution = (
            DistributionNotFound,
            get_distribution,
        )
        sys.modules["pkg_resources"] = shim
    import pykoopman

    return pykoopman

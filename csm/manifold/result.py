"""The result of Theorem 2.2's construction: :class:`CenterStableManifold`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._results import Result
from .._validation import as_batch, as_rng, positive_int
from ..errors import NonFiniteError
from ..spectral import SpectralSplit
from .lyapunov_perron import GraphSolve, solve_graph

__all__ = ["CenterStableManifold"]


@dataclass(frozen=True, eq=False)
class CenterStableManifold(Result):
    """The local center-stable manifold of Theorem 2.2 as an explicit graph.

    Attributes
    ----------
    fixed_point : ndarray (d,)
    dim_cs, dim_u : int
        Dimensions of ``E_cs`` and ``E_u``.
    radius : float
        ``eps``: the ball (in split coordinates, ``|z| <= eps``) in which the graph contains
        every orbit that stays.
    contraction : float
        ``kappa < 1``, the contraction constant of the Lyapunov--Perron operator.
    kappa_certified : bool
        True when ``kappa`` rests on a proved Lipschitz bound (a Lipschitz constant of ``Dg``
        was supplied); False when it rests on the adversarial estimate of
        :func:`csm.manifold.lipschitz.adversarial_lipschitz` (then :meth:`verify` re-probes it).
    lipschitz_bound : float
        ``kappa / (1 - kappa)``, bound on ``Lip(phi)`` in split coordinates.
    lipschitz_remainder : float
        ``l``, the Lipschitz constant (bound or estimate) of the cut-off remainder ``r~``.
    lipschitz_search : dict
        How ``l`` was obtained: ``method`` ("proved" | "adversarial"), points probed, rounds.
    mu, horizon : float, int
        The weight ``mu`` and the truncation horizon ``K``.
    split : SpectralSplit or None
        The dense spectral split (None in matrix-free mode).
    eigenvalues_u : ndarray
        The unstable eigenvalues (ascending modulus).
    basis_u : ndarray (d, dim_u)
        Basis of ``E_u`` (unit columns; orthonormal in matrix-free mode).
    frame : DenseFrame or MatrixFreeFrame
        The coordinates (public: ``frame.to_z``, ``frame.from_z``, ``frame.project_cs``).
    matrix_free : bool
    tol, max_iter : float, int
        Accuracy of ``phi`` and the sweep limit of the Banach iteration.
    """

    fixed_point: np.ndarray
    dim_cs: int
    dim_u: int
    radius: float
    contraction: float
    kappa_certified: bool
    lipschitz_bound: float
    lipschitz_remainder: float
    lipschitz_search: dict
    mu: float
    horizon: int
    split: SpectralSplit | None
    eigenvalues_u: np.ndarray
    basis_u: np.ndarray
    matrix_free: bool
    tol: float
    max_iter: int
    frame: Any = field(repr=False)
    lipschitz_directions: np.ndarray = field(repr=False, default=None)

    _NOT_SERIALISED = ("split", "frame", "basis_u", "lipschitz_directions", "eigenvalues_u")

    @property
    def success(self) -> bool:
        return True  # construction failures raise (or are returned by throw=False callers)

    @property
    def message(self) -> str:
        how = "proved" if self.kappa_certified else "estimated (adversarial search)"
        return (f"center-stable manifold: dim E_cs = {self.dim_cs}, dim E_u = {self.dim_u}, "
                f"radius {self.radius:.3g}, kappa {self.contraction:.3g} ({how})")

    @property
    def lambda_min(self) -> float:
        """Smallest unstable modulus."""
        return float(np.min(np.abs(self.eigenvalues_u)))

    @property
    def lambda_max(self) -> float:
        """Largest unstable modulus."""
        return float(np.max(np.abs(self.eigenvalues_u)))

    # -- the graph --------------------------------------------------------------------
    def _cs(self, x_cs: Any) -> tuple[np.ndarray, bool]:
        X, single = as_batch(x_cs, self.frame.dim_cs_repr, name="x_cs")
        if not np.all(np.isfinite(X)):
            raise NonFiniteError("`x_cs` contains NaN or infinity")
        return self.frame.project_cs(X), single

    def _solve(self, X: np.ndarray, throw: bool = True) -> GraphSolve:
        return solve_graph(self.frame, X, dim_u=self.dim_u, radius=self.radius,
                           contraction=self.contraction, mu=self.mu, horizon=self.horizon,
                           tol=self.tol, max_iter=self.max_iter, throw=throw)

    def solve(self, x_cs: Any, *, throw: bool = True) -> GraphSolve:
        """``phi(x_cs)`` with the iteration counters (``nit``, ``residual``, ``success``).

        ``x_cs`` as for :meth:`graph` (always treated as a batch).  With ``throw=False`` a
        non-converged solve is returned instead of raising :class:`~csm.ConvergenceError`.
        """
        X, _ = self._cs(x_cs)
        return self._solve(X, throw)

    def graph(self, x_cs: Any) -> np.ndarray:
        """``phi(x_cs)``: E_u-coordinates of the manifold over center-stable coordinates.

        ``x_cs`` is ``(dim_cs,)`` or ``(B, dim_cs)`` coordinates in ``split.basis_cs`` (dense
        mode) or ambient vectors ``(d,)``/``(B, d)`` projected onto ``E_cs`` (matrix-free mode).
        Returns ``(dim_u,)`` or ``(B, dim_u)``.  Valid (equal to the true local manifold) where
        the graph point lies in the ball of radius :attr:`radius`.
        """
        X, single = self._cs(x_cs)
        q0 = self._solve(X).q
        return q0[0] if single else q0

    def point(self, x_cs: Any) -> np.ndarray:
        """The manifold point ``x* + xi + phi(xi)`` in original coordinates."""
        X, single = self._cs(x_cs)
        x = self.fixed_point + self.frame.from_z(X, self._solve(X).q)
        return x[0] if single else x

    def offset(self, x: Any) -> np.ndarray:
        """Signed offset ``q - phi(p)`` of points from the graph along ``E_u`` (E_u coordinates)."""
        X, single = as_batch(x, self.fixed_point.shape[0])
        p, q = self.frame.to_z(X - self.fixed_point)
        off = q - self._solve(p).q
        return off[0] if single else off

    def coordinates(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(p, q)``: center-stable and unstable coordinates of ``x - x*``."""
        X, _ = as_batch(x, self.fixed_point.shape[0])
        return self.frame.to_z(X - self.fixed_point)

    def eigen_norm(self, x: Any) -> np.ndarray:
        """``|z|`` with ``z`` the split coordinates of ``x - x*`` (the ball's norm)."""
        p, q = self.coordinates(x)
        return np.sqrt(np.sum(p**2, axis=-1) + np.sum(q**2, axis=-1))

    def sample_cs(self, n: int, rng: Any = None, *, fraction: float = 0.9) -> np.ndarray:
        """Center-stable coordinates uniform in a ball whose graph points lie in the eps-ball.

        Radius ``fraction * eps / sqrt(1 + Lip(phi)^2)``.
        """
        n = positive_int(n, "n")
        rng = as_rng(rng)
        rho = fraction * self.radius / math.sqrt(1.0 + self.lipschitz_bound**2)
        m = self.frame.dim_cs_repr
        if self.dim_cs == 0:
            return np.zeros((n, m))
        G = self.frame.project_cs(rng.standard_normal((n, m)))
        G /= np.linalg.norm(G, axis=1, keepdims=True)
        r = rho * rng.random(n) ** (1.0 / self.dim_cs)
        return G * r[:, None]

    def sample(self, n: int, rng: Any = None, *, fraction: float = 0.9) -> np.ndarray:
        """``n`` points on the manifold (original coordinates), inside the ball."""
        return self.point(self.sample_cs(n, rng, fraction=fraction))

    def verify(self, map: Any = None, *, n: int = 64, n_steps: int | None = None,
               deltas: tuple[float, ...] | None = None, rng: Any = None):
        """Check the computed graph against the true map a posteriori.

        See :func:`csm.manifold.verify.verify_manifold` for what is measured and the rule.
        """
        from .verify import verify_manifold

        return verify_manifold(self, map, n=n, n_steps=n_steps, deltas=deltas, rng=rng)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["eigenvalues_u_real"] = np.real(self.eigenvalues_u).tolist()
        out["eigenvalues_u_imag"] = np.imag(self.eigenvalues_u).tolist()
        return out

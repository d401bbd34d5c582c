"""Theorem 2.2: the center-stable Lipschitz manifold, built as in the proof (MATH.md §1.3).

Near a fixed point ``x*`` of ``g`` whose Jacobian ``A = Dg(x*)`` is diagonalisable with an
eigenvalue of modulus > 1 (Assumption 2.1; ``A`` may be singular), every orbit that stays in a
small ball lies on the graph of a Lipschitz map ``phi: E_cs -> E_u``.  This module computes that
graph numerically with the construction of the proof:

1. eigen-coordinates ``z = Q^{-1}(x - x*) = (p, q)`` (:func:`csm.split_spectrum`), in which
   ``g`` reads ``z -> Lambda z + r(z)`` with ``r(0) = 0``, ``Dr(0) = 0``;
2. the cutoff of Lemma 6.1, ``chi_eps(z) = eta(|z| / eps) z`` with the C-infinity step ``eta``
   (``eta = 1`` on ``[0, 1]``, ``0`` on ``[2, inf)``), and ``r~ = r o chi_eps``;
3. the weighted sequence space ``|y|_mu = sup_n mu^{-n} |y_n|`` with
   ``mu = (1 + lambda_min) / 2``;
4. the Lyapunov--Perron operator::

       T_xi(y)_n = ( Lambda_cs^n xi + sum_{j<n} Lambda_cs^{n-1-j} r~_cs(y_j),
                     - sum_{j>=n} Lambda_u^{-(j-n+1)} r~_u(y_j) ),

   a contraction with constant ``kappa = l (1/(mu-1) + 1/(lambda_min-mu)) = 4 l/(lambda_min-1)``
   where ``l`` is the Lipschitz constant of ``r~``;
5. ``phi(xi)`` = q-component of ``y_0`` at the fixed point of ``T_xi``, ``Lip(phi) <= kappa/(1-kappa)``.

The sequence is truncated at a horizon ``K`` chosen so that the neglected tail of the unstable
sum, ``<= l * 2 eps * lambda_min^{-K} / (lambda_min - 1)``, is below ``tol (1 - kappa)``.  The
fixed point is found by Banach iteration, batched over all base points at once: per iteration one
evaluation of ``g`` on ``B*K`` points and ``K`` sequential (batched) linear steps.

Matrix-free mode
----------------
For gradient-descent maps (``map.symmetric``) of large dimension only the unstable eigenpairs
are computed (Lanczos, :func:`scipy.sparse.linalg.eigsh` on Jacobian-vector products); ``E_cs``
is the orthogonal complement of ``E_u`` and ``Lambda_cs`` is applied by Jacobian-vector
products, so no ``d x d`` matrix is formed or diagonalised.  In that mode center-stable
coordinates are *ambient*: vectors of ``R^d`` lying in ``E_cs`` (anything passed in is projected).

The radius
----------
``l`` is measured: ``|D r~(z)|_2 = |Dr(chi(z)) D chi(z)|_2`` at stratified random points of
``B_{2 eps}`` (exact ``D chi``; ``Dr`` from the map's Jacobian, or by power iteration on
Jacobian-vector products in matrix-free mode), times a safety factor.  Being a sampled supremum it
is an *estimate*, so :meth:`CenterStableManifold.verify` checks the result a posteriori.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import as_batch, as_point, as_rng, check_finite, positive_float, positive_int
from .errors import (
    ContractionError,
    InputError,
    NonFiniteError,
    NotFixedPointError,
    NoUnstableDirectionError,
    ShapeError,
)
from .maps import Map, as_map
from .problem import to_jsonable
from .spectral import DEFAULT_MAX_CONDITION, DEFAULT_UNIT_TOL, SpectralSplit, split_spectrum

__all__ = [
    "center_stable_manifold",
    "CenterStableManifold",
    "ManifoldVerification",
    "bump",
    "bump_derivative",
    "CUTOFF_LIPSCHITZ",
]

# --------------------------------------------------------------------------------------
# The cutoff of Lemma 6.1
# --------------------------------------------------------------------------------------


def _smooth_zero(t: np.ndarray) -> np.ndarray:
    """``exp(-1/t)`` for ``t > 0``, else 0 (C-infinity)."""
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    pos = t > 0
    out[pos] = np.exp(-1.0 / t[pos])
    return out


def bump(s: np.ndarray) -> np.ndarray:
    """The C-infinity step ``eta`` of Lemma 6.1: 1 on ``[0, 1]``, 0 on ``[2, inf)``.

    ``eta(s) = f(2 - s) / (f(2 - s) + f(s - 1))`` with ``f(t) = exp(-1/t)`` (t > 0).
    ``max |eta'| = 2`` (at ``s = 1.5``), as Lemma 6.1 requires.
    """
    s = np.asarray(s, dtype=float)
    a = _smooth_zero(2.0 - s)
    b = _smooth_zero(s - 1.0)
    return a / (a + b)


def bump_derivative(s: np.ndarray) -> np.ndarray:
    """``eta'(s)`` in closed form (zero outside ``(1, 2)``)."""
    s = np.asarray(s, dtype=float)
    out = np.zeros_like(s)
    m = (s > 1.0) & (s < 2.0)
    t1, t2 = 2.0 - s[m], s[m] - 1.0
    a, b = np.exp(-1.0 / t1), np.exp(-1.0 / t2)
    da = -a / t1**2  # d/ds f(2 - s) = -f'(2 - s)
    db = b / t2**2
    out[m] = (da * (a + b) - a * (da + db)) / (a + b) ** 2
    return out


def _cutoff_lipschitz() -> float:
    s = np.linspace(0.0, 2.0, 200001)
    e, de = bump(s), bump_derivative(s)
    return float(max(np.max(np.abs(e)), np.max(np.abs(e + s * de))))


#: Lipschitz constant of ``chi(z) = eta(|z|/eps) z`` (any eps): max over s of
#: ``max(|eta(s)|, |eta(s) + s eta'(s)|)`` -- the tangential and radial singular values.
CUTOFF_LIPSCHITZ = _cutoff_lipschitz()


# --------------------------------------------------------------------------------------
# Coordinates: dense eigen-coordinates or matrix-free orthogonal splitting
# --------------------------------------------------------------------------------------


class _DenseCoords:
    """z = Q^{-1}(x - x*) = (p, q); Lambda real block diagonal."""

    matrix_free = False

    def __init__(self, split: SpectralSplit, x_star: np.ndarray, g: Map) -> None:
        self.split = split
        self.x_star = x_star
        self.g = g
        k = split.dim_cs
        self.k = k
        self.dim_cs_repr = k
        self.Q = split.Q
        self.Q_inv = split.Q_inv
        self._Qcs_T = np.ascontiguousarray(split.basis_cs.T)
        self._Qu_T = np.ascontiguousarray(split.basis_u.T)
        self.L_cs = split.block[:k, :k]
        self.L_u = split.block[k:, k:]
        self.L_u_inv = np.linalg.inv(self.L_u)
        self.lambda_min = split.lambda_min_u

    def to_z(self, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = dx @ self.Q_inv.T
        return np.ascontiguousarray(z[..., : self.k]), np.ascontiguousarray(z[..., self.k:])

    def from_z(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return p @ self._Qcs_T + q @ self._Qu_T

    def project_cs(self, p: np.ndarray) -> np.ndarray:
        return p

    def lin_cs(self, p: np.ndarray) -> np.ndarray:
        return p @ self.L_cs.T

    def lin_u(self, q: np.ndarray) -> np.ndarray:
        return q @ self.L_u.T

    def inv_lin_u(self, q: np.ndarray) -> np.ndarray:
        return q @ self.L_u_inv.T

    def g_z(self, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-coordinates of g(x* + Qz) - x* for flat batches."""
        X = self.x_star + self.from_z(p, q)
        return self.to_z(self.g(X) - self.x_star)

    def dr_norms(self, Z: np.ndarray, eps: float) -> np.ndarray:
        """``|D r~(z)|_2`` at z-points ``Z (S, d)`` (exact chi derivative, map Jacobian)."""
        S, d = Z.shape
        nz = np.linalg.norm(Z, axis=1)
        s = nz / eps
        eta, deta = bump(s), bump_derivative(s)
        W = eta[:, None] * Z  # chi(z)
        X = self.x_star + W @ self.Q.T
        J = self.g.jacobian(X)  # (S, d, d)
        Dr = np.einsum("ij,sjk,kl->sil", self.Q_inv, J, self.Q) - self.split.block[None]
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.where(nz[:, None] > 0, Z / np.where(nz[:, None] > 0, nz[:, None], 1), 0.0)
        Dchi = eta[:, None, None] * np.eye(d)[None] + (s * deta)[:, None, None] * (
            u[:, :, None] * u[:, None, :]
        )
        M = np.einsum("sij,sjk->sik", Dr, Dchi)
        return np.linalg.norm(M, ord=2, axis=(1, 2))


class _MatrixFreeCoords:
    """Symmetric Jacobian: E_u spanned by orthonormal U (Lanczos), E_cs its complement.

    p is ambient (a vector of R^d in E_cs), q = U^T dx.
    """

    matrix_free = True

    def __init__(self, U: np.ndarray, lam_u: np.ndarray, x_star: np.ndarray, g: Map) -> None:
        self.U = U
        self.lam_u = lam_u
        self.x_star = x_star
        self.g = g
        self.k = x_star.shape[0] - U.shape[1]
        self.dim_cs_repr = x_star.shape[0]
        self.lambda_min = float(np.min(np.abs(lam_u)))

    def project_cs(self, p: np.ndarray) -> np.ndarray:
        return p - (p @ self.U) @ self.U.T

    def to_z(self, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = dx @ self.U
        return dx - q @ self.U.T, q

    def from_z(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return p + q @ self.U.T

    def _A(self, V: np.ndarray) -> np.ndarray:
        flat = V.reshape(-1, V.shape[-1])
        return self.g.jvp(self.x_star, flat).reshape(V.shape)

    def lin_cs(self, p: np.ndarray) -> np.ndarray:
        return self.project_cs(self._A(p))

    def lin_u(self, q: np.ndarray) -> np.ndarray:
        return q * self.lam_u

    def inv_lin_u(self, q: np.ndarray) -> np.ndarray:
        return q / self.lam_u

    def g_z(self, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self.x_star + self.from_z(p, q)
        return self.to_z(self.g(X) - self.x_star)

    def dr_norms(self, Z: np.ndarray, eps: float, n_power: int = 30, seed: int = 1) -> np.ndarray:
        """Power iteration on ``M^T M`` with ``M = Dr(chi(z)) Dchi(z)``; Dr symmetric."""
        S, d = Z.shape
        nz = np.linalg.norm(Z, axis=1)
        s = nz / eps
        eta, deta = bump(s), bump_derivative(s)
        W = self.x_star + eta[:, None] * Z
        u = Z / np.where(nz > 0, nz, 1.0)[:, None]
        X0 = np.broadcast_to(self.x_star, Z.shape)

        def dchi(V: np.ndarray) -> np.ndarray:
            return eta[:, None] * V + (s * deta)[:, None] * np.sum(u * V, axis=1)[:, None] * u

        def dr(V: np.ndarray) -> np.ndarray:
            return self.g.jvp(W, V) - self.g.jvp(X0, V)

        V = np.random.default_rng(seed).standard_normal((S, d))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        sig = np.zeros(S)
        for _ in range(n_power):
            MV = dr(dchi(V))
            sig = np.linalg.norm(MV, axis=1)
            V = dchi(dr(MV))  # M^T M V (both factors symmetric)
            nv = np.linalg.norm(V, axis=1, keepdims=True)
            if np.all(nv == 0):
                return np.zeros(S)
            V = V / np.where(nv > 0, nv, 1.0)
        return sig


def _unstable_eigenpairs(g: Map, x_star: np.ndarray, unit_tol: float):
    """Unstable eigenpairs of the symmetric ``Dg(x*)`` by Lanczos on Jacobian-vector products."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    d = x_star.shape[0]

    def mv(v: np.ndarray) -> np.ndarray:
        V = np.atleast_2d(np.asarray(v, dtype=float).T).reshape(-1, d)
        out = g.jvp(x_star, V)
        return out.T if np.ndim(v) == 2 else out[0]

    op = LinearOperator((d, d), matvec=mv, matmat=mv, dtype=float)
    k = min(6, d - 2)
    while True:
        w, V = eigsh(op, k=k, which="LM", tol=0, v0=np.ones(d) / math.sqrt(d))
        unstable = np.abs(w) > 1.0 + unit_tol
        if not unstable.all() or k >= d - 2:
            break
        k = min(2 * k, d - 2)
    if not unstable.any():
        raise NoUnstableDirectionError(
            "the Jacobian at `fixed_point` has no eigenvalue of modulus > 1 (Assumption 2.1): "
            f"largest modulus found by Lanczos {np.max(np.abs(w)):.12g}"
        )
    w, V = w[unstable], V[:, unstable]
    order = np.argsort(np.abs(w))
    w, V = w[order], V[:, order]
    V, _ = np.linalg.qr(V)
    return w, V


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifoldVerification:
    """Measured facts about a computed center-stable manifold (see :meth:`CenterStableManifold.verify`).

    ``passed`` is True when (i) the invariance residual ``max |offset(g(x))|`` over graph points
    whose image stays in the ball is ``<= 100 * tol``, (ii) graph points stay in the ball at
    least as long (median) as points pushed off the graph by the largest ``delta``, and (iii)
    every pushed point leaves, with median exit time at most ``1.25 * log(eps/delta)/log
    lambda_min + 3`` (escape at least as fast as the slowest linear rate predicts; it may be
    faster, when the push leaks into faster unstable directions through the nonlinearity).
    """

    invariance_residual: float
    n_points: int
    n_steps: int
    graph_stay_median: float
    graph_stay_min: int
    deltas: tuple[float, ...]
    exit_median: tuple[float, ...]
    exit_predicted: tuple[float, ...]
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class CenterStableManifold:
    """The local center-stable manifold of Theorem 2.2 as an explicit graph.

    Attributes
    ----------
    fixed_point : ndarray (d,)
    dim_cs, dim_u : int
        Dimensions of ``E_cs`` and ``E_u``.
    radius : float
        ``eps``: the ball (in eigen-coordinates, ``|Q^{-1}(x - x*)| <= eps``) in which the
        graph contains every orbit that stays.
    contraction : float
        ``kappa < 1``, the contraction constant of the Lyapunov--Perron operator achieved.
    lipschitz_bound : float
        ``kappa / (1 - kappa)``, bound on ``Lip(phi)`` in eigen-coordinates.
    lipschitz_remainder : float
        Measured Lipschitz constant ``l`` of the cut-off remainder ``r~``.
    mu, horizon : float, int
        The weight ``mu`` and the truncation horizon ``K``.
    split : SpectralSplit or None
        The dense spectral split (None in matrix-free mode).
    eigenvalues_u : ndarray
        The unstable eigenvalues.
    basis_u : ndarray (d, dim_u)
        Basis of ``E_u`` (unit columns; orthonormal in matrix-free mode).
    matrix_free : bool
    tol : float
    nit, residual : int, float
        Iterations and final increment of the last :meth:`graph` solve (see :attr:`last_solve`).
    """

    fixed_point: np.ndarray
    dim_cs: int
    dim_u: int
    radius: float
    contraction: float
    lipschitz_bound: float
    lipschitz_remainder: float
    mu: float
    horizon: int
    split: SpectralSplit | None
    eigenvalues_u: np.ndarray
    basis_u: np.ndarray
    matrix_free: bool
    tol: float
    max_iter: int
    _coords: Any = field(repr=False)
    # counters of the most recent solve (``nit``, ``residual``, ``n_points``); the one
    # mutable member of this otherwise frozen result, updated by every graph/point call
    last_solve: dict = field(default_factory=dict, repr=False)

    # -- core solve ----------------------------------------------------------------------
    def _solve(self, xi: np.ndarray) -> np.ndarray:
        """Fixed point of the Lyapunov--Perron operator for base points ``xi (B, cs)``; returns q_0."""
        C = self._coords
        B = xi.shape[0]
        K = self.horizon
        eps = self.radius
        kappa = self.contraction
        weights = self.mu ** (-np.arange(K, dtype=float))  # mu^{-n}
        # memory: chunk so that B*K*d stays below ~2e7 floats
        d = self.fixed_point.shape[0]
        chunk = max(1, int(2e7 // max(1, K * d)))
        if B > chunk:
            parts = [self._solve(xi[i:i + chunk]) for i in range(0, B, chunk)]
            return np.concatenate(parts, axis=0)
        # initial guess: the linear orbit, q = 0
        P = np.empty((B, K, C.dim_cs_repr))
        P[:, 0] = xi
        for n in range(1, K):
            P[:, n] = C.lin_cs(P[:, n - 1])
        Qu = np.zeros((B, K, self.dim_u))
        active = np.ones(B, dtype=bool)
        nit = 0
        incr_max = 0.0
        target = self.tol * (1.0 - kappa)
        while active.any():
            if nit >= self.max_iter:
                raise ContractionError(
                    f"Lyapunov--Perron iteration did not converge in max_iter={self.max_iter} "
                    f"iterations (increment {incr_max:.3g} > {target:.3g}); try a smaller `radius` "
                    "or a larger `max_iter`"
                )
            nit += 1
            idx = np.nonzero(active)[0]
            Pa, Qa = P[idx], Qu[idx]
            b = len(idx)
            nrm = np.sqrt(np.sum(Pa**2, axis=2) + np.sum(Qa**2, axis=2))  # (b, K)
            eta = bump(nrm / eps)
            flatP = (eta[..., None] * Pa).reshape(b * K, -1)
            flatQ = (eta[..., None] * Qa).reshape(b * K, -1)
            gp, gq = C.g_z(flatP, flatQ)
            check_finite(gp, "map (inside the Lyapunov--Perron iteration)")
            # r~(y) = g_z(chi(y)) - Lambda chi(y)
            Rcs = (gp - C.lin_cs(flatP)).reshape(b, K, -1)
            Ru = (gq - C.lin_u(flatQ)).reshape(b, K, -1)
            newP = np.empty_like(Pa)
            newP[:, 0] = Pa[:, 0]
            for n in range(1, K):
                newP[:, n] = C.lin_cs(newP[:, n - 1]) + Rcs[:, n - 1]
            newQ = np.empty_like(Qa)
            acc = np.zeros((b, self.dim_u))
            for n in range(K - 1, -1, -1):
                acc = C.inv_lin_u(acc - Ru[:, n])
                newQ[:, n] = acc
            diff = np.sqrt(np.sum((newP - Pa) ** 2, axis=2) + np.sum((newQ - Qa) ** 2, axis=2))
            incr = np.max(diff * weights[None, :], axis=1)
            P[idx], Qu[idx] = newP, newQ
            incr_max = float(incr.max())
            active[idx[incr <= target]] = False
        self.last_solve.update(nit=nit, residual=incr_max, n_points=B)
        return Qu[:, 0].copy()

    def _cs(self, x_cs: Any) -> tuple[np.ndarray, bool]:
        X, single = as_batch(x_cs, self._coords.dim_cs_repr, name="x_cs")
        if not np.all(np.isfinite(X)):
            raise NonFiniteError("`x_cs` contains NaN or infinity")
        return self._coords.project_cs(X), single

    # -- public API ----------------------------------------------------------------------
    @property
    def nit(self) -> int:
        return int(self.last_solve.get("nit", 0))

    @property
    def residual(self) -> float:
        return float(self.last_solve.get("residual", float("nan")))

    def graph(self, x_cs: Any) -> np.ndarray:
        """``phi(x_cs)``: E_u-coordinates of the manifold over center-stable coordinates.

        ``x_cs`` is ``(dim_cs,)`` or ``(B, dim_cs)`` coordinates in ``split.basis_cs`` (dense
        mode) or ambient vectors ``(d,)``/``(B, d)`` projected onto ``E_cs`` (matrix-free mode).
        Returns ``(dim_u,)`` or ``(B, dim_u)``.  Valid (equal to the true local manifold) where
        the graph point lies in the ball of radius :attr:`radius`.
        """
        X, single = self._cs(x_cs)
        q0 = self._solve(X)
        return q0[0] if single else q0

    def point(self, x_cs: Any) -> np.ndarray:
        """The manifold point ``x* + xi + phi(xi)`` in original coordinates."""
        X, single = self._cs(x_cs)
        x = self.fixed_point + self._coords.from_z(X, self._solve(X))
        return x[0] if single else x

    def offset(self, x: Any) -> np.ndarray:
        """Signed offset ``q - phi(p)`` of points from the graph along ``E_u`` (E_u coordinates)."""
        X, single = as_batch(x, self.fixed_point.shape[0])
        p, q = self._coords.to_z(X - self.fixed_point)
        off = q - self._solve(p)
        return off[0] if single else off

    def coordinates(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(p, q)``: center-stable and unstable coordinates of ``x - x*``."""
        X, _ = as_batch(x, self.fixed_point.shape[0])
        return self._coords.to_z(X - self.fixed_point)

    def eigen_norm(self, x: Any) -> np.ndarray:
        """``|z|`` with ``z`` the eigen-coordinates of ``x - x*`` (the ball's norm)."""
        p, q = self.coordinates(x)
        return np.sqrt(np.sum(p**2, axis=-1) + np.sum(q**2, axis=-1))

    def sample_cs(self, n: int, rng: Any = None, *, fraction: float = 0.9) -> np.ndarray:
        """Center-stable coordinates uniform in a ball whose graph points lie in the eps-ball.

        Radius ``fraction * eps / sqrt(1 + Lip(phi)^2)``.
        """
        n = positive_int(n, "n")
        rng = as_rng(rng)
        rho = fraction * self.radius / math.sqrt(1.0 + self.lipschitz_bound**2)
        m = self._coords.dim_cs_repr
        if self.dim_cs == 0:
            return np.zeros((n, m))
        G = self._coords.project_cs(rng.standard_normal((n, m)))
        G /= np.linalg.norm(G, axis=1, keepdims=True)
        r = rho * rng.random(n) ** (1.0 / self.dim_cs)
        return G * r[:, None]

    def sample(self, n: int, rng: Any = None, *, fraction: float = 0.9) -> np.ndarray:
        """``n`` points on the manifold (original coordinates), inside the ball."""
        return self.point(self.sample_cs(n, rng, fraction=fraction))

    def verify(
        self,
        map: Any = None,
        *,
        n: int = 64,
        n_steps: int | None = None,
        deltas: tuple[float, ...] | None = None,
        rng: Any = None,
    ) -> ManifoldVerification:
        """Check the computed graph against the true map (a posteriori).

        Measures (1) the invariance residual ``max |offset(g(x))|`` for graph points ``x``
        with ``g(x)`` still in the ball; (2) how many steps orbits of graph points stay in the
        ``eps``-ball (they must stay until the ``tol``-sized error along ``E_u`` has grown to
        ``eps``, i.e. about ``log(eps/tol)/log lambda_min`` steps or more); (3) for points pushed
        off the graph by ``delta`` along the slowest unstable direction, the median exit time, against
        ``log(eps/delta)/log lambda_min`` (Corollary 2.3: the escape is exponential).
        ``deltas`` default to ``radius * (1e-2, 1e-4, 1e-6)``.  See :class:`ManifoldVerification`
        for the ``passed`` rule.
        """
        g = self._coords.g if map is None else as_map(map)
        rng = as_rng(rng, 12345)
        eps = self.radius
        lam = self._coords.lambda_min
        if deltas is None:
            deltas = (1e-2 * eps, 1e-4 * eps, 1e-6 * eps)
        deltas = tuple(float(d) for d in deltas)
        for dl in deltas:
            if not 0 < dl < eps:
                raise InputError(f"`deltas` must lie in (0, radius={eps:.3g}), got {dl}")
        pred = tuple(math.log(eps / dl) / math.log(lam) for dl in deltas)
        if n_steps is None:
            n_steps = int(math.ceil(max(pred) * 2 + math.log(eps / self.tol) / math.log(lam) + 10))
        xi = self.sample_cs(n, rng, fraction=0.5)
        X = self.point(xi)
        # (1) invariance
        GX = g(X)
        inside = self.eigen_norm(GX) <= eps
        res = float(np.max(np.abs(self.offset(GX[inside])))) if inside.any() else float("nan")

        # (2)+(3) exit times, all starting sets iterated together
        # push along the slowest unstable direction (modulus lambda_min), random sign
        dirs = np.zeros((len(deltas), n, self.dim_u))
        dirs[:, :, 0] = rng.choice([-1.0, 1.0], size=(len(deltas), n))
        starts = [X]
        for i, dl in enumerate(deltas):
            p, q = self._coords.to_z(X - self.fixed_point)
            starts.append(self.fixed_point + self._coords.from_z(p, q + dl * dirs[i]))
        Y = np.concatenate(starts, axis=0)
        exit_step = np.full(len(Y), n_steps, dtype=int)
        alive = np.ones(len(Y), dtype=bool)
        for k in range(1, n_steps + 1):
            Y[alive] = g(Y[alive])
            out = alive & (self.eigen_norm(Y) > eps)
            exit_step[out] = k
            alive &= ~out
            if not alive.any():
                break
        ex = exit_step.reshape(len(deltas) + 1, n)
        graph_stay = ex[0]
        med = tuple(float(np.median(ex[i + 1])) for i in range(len(deltas)))
        ok_inv = bool(np.isfinite(res) and res <= 100 * self.tol)
        ok_stay = bool(np.median(graph_stay) >= max(med)) if deltas else True
        ok_exit = bool(np.all(ex[1:] < n_steps)) and all(m <= 1.25 * p + 3 for m, p in zip(med, pred))
        return ManifoldVerification(
            invariance_residual=res, n_points=int(n), n_steps=int(n_steps),
            graph_stay_median=float(np.median(graph_stay)), graph_stay_min=int(graph_stay.min()),
            deltas=deltas, exit_median=med, exit_predicted=pred,
            passed=ok_inv and ok_stay and ok_exit,
        )

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "fixed_point": self.fixed_point, "dim_cs": self.dim_cs, "dim_u": self.dim_u,
            "radius": self.radius, "contraction": self.contraction,
            "lipschitz_bound": self.lipschitz_bound,
            "lipschitz_remainder": self.lipschitz_remainder, "mu": self.mu,
            "horizon": self.horizon, "matrix_free": self.matrix_free, "tol": self.tol,
            "eigenvalues_u_real": np.real(self.eigenvalues_u),
            "eigenvalues_u_imag": np.imag(self.eigenvalues_u),
            "last_solve": dict(self.last_solve),
        })


# --------------------------------------------------------------------------------------
# The construction
# --------------------------------------------------------------------------------------


def _stratified_ball(rng: np.random.Generator, n: int, dim_repr: int, radius: float,
                     project=None) -> np.ndarray:
    """Points with radii stratified over (0, radius] and uniform random directions."""
    G = rng.standard_normal((n, dim_repr))
    if project is not None:
        G = project(G)
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    r = radius * (np.arange(1, n + 1) - rng.random(n)) / n
    return G * r[:, None]


def _kappa_factor(lam_min: float) -> tuple[float, float]:
    mu = 0.5 * (1.0 + lam_min)
    return mu, 1.0 / (mu - 1.0) + 1.0 / (lam_min - mu)


def center_stable_manifold(
    map: Any,
    fixed_point: Any,
    *,
    radius: float | None = None,
    tol: float = 1e-10,
    jacobian: Any = None,
    unit_tol: float = DEFAULT_UNIT_TOL,
    max_condition: float = DEFAULT_MAX_CONDITION,
    contraction_target: float = 0.5,
    max_radius: float = 1.0,
    fixed_point_tol: float = 1e-8,
    max_iter: int = 200,
    max_horizon: int = 200_000,
    matrix_free: bool | None = None,
    n_lipschitz: int | None = None,
    safety: float = 1.25,
    seed: int = 0,
) -> CenterStableManifold:
    """Compute the center-stable manifold of Theorem 2.2 at ``fixed_point``.

    Parameters
    ----------
    map : Map or callable
        The dynamical system ``g`` (batched).  A :class:`~csm.GradientDescentMap` or a problem's
        ``local_map`` for gradient descent.
    fixed_point : array_like (d,)
        ``x*`` with ``g(x*) = x*``.
    radius : float, optional
        ``eps``.  If None, the largest ``eps <= max_radius`` whose measured Lipschitz constant
        of the cut-off remainder gives ``kappa <= contraction_target`` (bisection in log eps).
    tol : float
        Accuracy of ``phi``: the truncation tail plus the Banach-iteration error are below it.
    jacobian : array_like (d, d), optional
        ``Dg(x*)`` if known (else the map's Jacobian, analytic or finite differences).
    unit_tol, max_condition : float
        Passed to :func:`csm.split_spectrum`.
    contraction_target : float
        Wanted ``kappa`` when choosing the radius (``< 1``).
    max_radius : float
        Upper end of the radius search.
    fixed_point_tol : float
        ``|g(x*) - x*| <= fixed_point_tol * max(1, |x*|)`` is required.
    max_iter, max_horizon : int
        Limits of the Banach iteration and of the horizon ``K``.
    matrix_free : bool, optional
        Use the Lanczos / Jacobian-vector-product path (default: when ``map.symmetric`` and
        ``d > 400``).
    n_lipschitz : int, optional
        Number of sample points for the Lipschitz estimate (default 96 dense, 12 matrix-free).
    safety : float
        Factor applied to the sampled Lipschitz supremum.
    seed : int
        Seed of the Lipschitz sampling (the result is deterministic).

    Returns
    -------
    CenterStableManifold

    Raises
    ------
    NotFixedPointError
        ``|g(x*) - x*|`` too large (the value is reported).
    NotDiagonalizableError, NoUnstableDirectionError
        Assumption 2.1 fails at ``x*``.
    ContractionError
        With a given ``radius``: ``kappa >= 1`` (the message gives kappa, the Lipschitz
        estimate and a radius that works); or the iteration did not converge.
    ShapeError, NonFiniteError, InputError
        Bad shapes, NaN/inf from the map, bad parameters.

    Notes
    -----
    Cost: ``O(iterations * K * B)`` map evaluations for ``B`` base points (all batched), with
    ``K ~ log(1/tol)/log lambda_min``.  ``kappa = 4 l / (lambda_min - 1)`` with
    ``mu = (1 + lambda_min)/2`` (MATH.md §1.3, step 5).

    Examples
    --------
    >>> import numpy as np, csm
    >>> lam, mu = 0.5, 2.0
    >>> g = csm.Map(lambda X: np.stack([lam * X[:, 0], mu * X[:, 1] + X[:, 0] ** 2], 1), dim=2)
    >>> m = csm.center_stable_manifold(g, np.zeros(2))
    >>> x = 0.1
    >>> bool(abs(m.graph([x])[0] * np.sign(m.basis_u[1, 0]) - x**2 / (lam**2 - mu)) < 1e-9)
    True
    """
    g = as_map(map)
    x_star = as_point(fixed_point, g.dim, name="fixed_point")
    d = x_star.shape[0]
    tol = positive_float(tol, "tol")
    contraction_target = positive_float(contraction_target, "contraction_target")
    if contraction_target >= 1:
        raise InputError(f"`contraction_target` must be < 1, got {contraction_target}")
    max_radius = positive_float(max_radius, "max_radius")
    safety = positive_float(safety, "safety")
    max_iter = positive_int(max_iter, "max_iter")
    if radius is not None:
        radius = positive_float(radius, "radius")
    gx = g(x_star)
    res = float(np.linalg.norm(gx - x_star))
    if res > fixed_point_tol * max(1.0, float(np.linalg.norm(x_star))):
        raise NotFixedPointError(
            f"`fixed_point` is not a fixed point of the map: |g(x*) - x*| = {res:.3e} > "
            f"fixed_point_tol * max(1, |x*|) = {fixed_point_tol * max(1.0, float(np.linalg.norm(x_star))):.3e}"
        )
    if matrix_free is None:
        matrix_free = bool(g.symmetric and d > 400 and jacobian is None)
    if matrix_free and not g.symmetric:
        raise InputError(
            "`matrix_free=True` needs a map with symmetric Jacobian (a GradientDescentMap); "
            f"got {g!r}"
        )

    split = None
    if matrix_free:
        lam_u, U = _unstable_eigenpairs(g, x_star, unit_tol)
        coords: Any = _MatrixFreeCoords(U, lam_u, x_star, g)
        eig_u, basis_u = lam_u.astype(complex), U
        dim_u = U.shape[1]
    else:
        if jacobian is None:
            A = g.jacobian(x_star)
        else:
            A = np.asarray(jacobian, dtype=float)
            if A.shape != (d, d):
                raise ShapeError(
                    f"`jacobian` must have shape ({d}, {d}) for a fixed point in R^{d}, got {A.shape}"
                )
        split = split_spectrum(A, unit_tol, max_condition=max_condition)
        coords = _DenseCoords(split, x_star, g)
        eig_u, basis_u, dim_u = split.eigenvalues_u, split.basis_u, split.dim_u
    dim_cs = d - dim_u
    lam_min = coords.lambda_min
    mu, factor = _kappa_factor(lam_min)

    n_lip = n_lipschitz or (12 if matrix_free else 96)
    rng_dirs = np.random.default_rng(seed)
    unit = _stratified_ball(rng_dirs, n_lip, d, 1.0)  # z-directions, radii in (0, 1]

    def lipschitz(eps: float) -> float:
        Z = unit * (2.0 * eps)
        return safety * float(np.max(coords.dr_norms(Z, eps)))

    def kappa_of(eps: float) -> tuple[float, float]:
        ell = lipschitz(eps)
        return ell * factor, ell

    if radius is None:
        eps = max_radius
        kap, ell = kappa_of(eps)
        halvings = 0
        while kap > contraction_target:
            eps /= 2.0
            halvings += 1
            if halvings > 60:
                raise ContractionError(
                    f"no radius gives a contraction: at radius {eps:.3e} kappa = {kap:.3g} "
                    f"(Lipschitz estimate {ell:.3g}); the remainder is not o(1) near `fixed_point` "
                    "(is the map differentiable there? is `jacobian` right?)"
                )
            kap, ell = kappa_of(eps)
        if halvings:  # refine between eps and 2 eps
            lo, hi = eps, min(2 * eps, max_radius)
            for _ in range(6):
                mid = math.sqrt(lo * hi)
                km, lm = kappa_of(mid)
                if km <= contraction_target:
                    lo, kap, ell = mid, km, lm
                else:
                    hi = mid
            eps = lo
    else:
        eps = radius
        kap, ell = kappa_of(eps)
        if kap >= 1.0:
            good = eps
            for _ in range(80):
                good /= 2
                if kappa_of(good)[0] <= contraction_target:
                    break
            raise ContractionError(
                f"radius={radius:.3g} gives no contraction: kappa = {kap:.3g} >= 1 (measured "
                f"Lipschitz constant of the cut-off remainder {ell:.3g}, kappa = "
                f"l*(1/(mu-1) + 1/(lambda_min-mu)) with lambda_min = {lam_min:.6g}); try a smaller "
                f"`radius`, e.g. {good:.3g}"
            )
    # horizon
    if ell == 0:
        K = 1
    else:
        tail = ell * 2 * eps / ((lam_min - 1.0) * tol * (1.0 - kap))
        K = max(1, int(math.ceil(math.log(max(tail, 1.0)) / math.log(lam_min))) + 1)
    if K > max_horizon:
        raise InputError(
            f"the horizon K = {K} needed for tol={tol:g} exceeds max_horizon={max_horizon} "
            f"(lambda_min = {lam_min:.9g} is very close to 1); raise `tol` or `max_horizon`"
        )
    return CenterStableManifold(
        fixed_point=x_star, dim_cs=dim_cs, dim_u=dim_u, radius=float(eps), contraction=float(kap),
        lipschitz_bound=float(kap / (1 - kap)), lipschitz_remainder=float(ell), mu=float(mu),
        horizon=int(K), split=split, eigenvalues_u=np.asarray(eig_u), basis_u=basis_u,
        matrix_free=bool(matrix_free), tol=tol, max_iter=max_iter, _coords=coords,
    )

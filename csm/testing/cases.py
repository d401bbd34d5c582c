"""Test cases with exactly known answers: maps with known center-stable manifolds
(docs/theory.md §1.3, the analytic test cases) and a gradient-descent problem of any dimension
with a cheap Hessian-vector product, for the matrix-free path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.linalg import block_diag

from ..maps import Map
from ..problem import CriticalPoint, ProblemBase

__all__ = ["GraphTestCase", "conjugated_graph_map", "RotatedQuartic", "random_orthogonal"]


# --------------------------------------------------------------------------------------
# Maps with known center-stable manifolds
# --------------------------------------------------------------------------------------


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with sign fix)."""
    Z = rng.standard_normal((d, d))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.diag(R))[None, :]


def _real_block(eigs: Sequence[complex]) -> tuple[np.ndarray, int]:
    """Real block-diagonal matrix for eigenvalues (complex ones given once, as a+ib with b>0)."""
    blocks = []
    for lam in eigs:
        lam = complex(lam)
        if lam.imag == 0:
            blocks.append(np.array([[lam.real]]))
        else:
            a, b = lam.real, abs(lam.imag)
            blocks.append(np.array([[a, b], [-b, a]]))
    M = block_diag(*blocks)
    return M, M.shape[0]


@dataclass(frozen=True)
class GraphTestCase:
    """A map with an exactly known center-stable manifold ``q = Phi(p)`` in z-coordinates.

    ``x = fixed_point + Q z``, ``z = (p, q)``.  :meth:`graph_error` gives, for points ``X``,
    ``|q - Phi(p)|`` -- the distance of each point from the exact manifold along E_u in
    z-coordinates (independent of which eigenbasis csm picks).
    """

    map: Map
    fixed_point: np.ndarray
    Q: np.ndarray
    dim_cs: int
    dim_u: int
    phi: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def z(self, X: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(X) - self.fixed_point) @ np.linalg.inv(self.Q).T

    def graph_error(self, X: np.ndarray) -> np.ndarray:
        Z = self.z(X)
        p, q = Z[:, : self.dim_cs], Z[:, self.dim_cs:]
        return np.linalg.norm(q - self.phi(p), axis=1)


def conjugated_graph_map(
    eigs_cs: Sequence[complex],
    eigs_u: Sequence[complex],
    *,
    nonlinearity: str = "quadratic",
    scale: float = 1.0,
    seed: int = 0,
    cond: float = 3.0,
    fixed_point: np.ndarray | None = None,
) -> GraphTestCase:
    """Build ``g`` with the exactly invariant, exactly center-stable graph ``q = Phi(p)``.

    In z-coordinates ``g(p, q) = (Lambda_cs p, Lambda_u q + Phi(Lambda_cs p) - Lambda_u Phi(p))``,
    so ``q - Phi(p)`` is multiplied by ``Lambda_u`` at each step: orbits off the graph leave
    every small ball, orbits on it follow the linear center-stable dynamics.  ``Phi`` has
    ``Phi(0) = 0``, ``D Phi(0) = 0``:

    * ``"quadratic"``: ``Phi_i(p) = p^T C_i p`` (C-infinity);
    * ``"abs"``: ``Phi_i(p) = sum_j c_ij p_j |p_j|`` (C^1, not twice differentiable at
      ``p_j = 0``: a Lipschitz-derivative remainder that is not C^2);
    * ``"mixed"``: the sum of both.

    Complex eigenvalues are given once (``a + ib``, ``b != 0``) and stand for a conjugate pair
    (a real 2x2 block).  ``x = x* + Q z`` with ``Q = U diag(s) V^T``, ``s`` log-spaced in
    ``[1, cond]``.  The analytic Jacobian is supplied.
    """
    rng = np.random.default_rng(seed)
    Lcs, k = _real_block(eigs_cs)
    Lu, m = _real_block(eigs_u)
    d = k + m
    C = rng.standard_normal((m, k, k)) * scale / max(1, k)
    Cabs = rng.standard_normal((m, k)) * scale / max(1, k)
    use_q = nonlinearity in ("quadratic", "mixed")
    use_a = nonlinearity in ("abs", "mixed")
    if not (use_q or use_a):
        raise ValueError(f"`nonlinearity` must be 'quadratic', 'abs' or 'mixed', got {nonlinearity!r}")

    def phi(P: np.ndarray) -> np.ndarray:
        out = np.zeros((P.shape[0], m))
        if use_q:  # sum_ij P_i C_mij P_j: one matrix product per output coordinate
            for i in range(m):
                out[:, i] += np.einsum("bj,bj->b", P @ C[i], P)
        if use_a:
            out += (P * np.abs(P)) @ Cabs.T
        return out

    def dphi(P: np.ndarray) -> np.ndarray:  # (B, m, k)
        out = np.zeros((P.shape[0], m, k))
        if use_q:
            out += np.einsum("mij,bj->bmi", C + np.swapaxes(C, 1, 2), P)
        if use_a:
            out += 2.0 * Cabs[None] * np.abs(P)[:, None, :]
        return out

    U = random_orthogonal(d, rng)
    V = random_orthogonal(d, rng)
    s = np.geomspace(1.0, cond, d)
    Q = (U * s) @ V.T
    Qi = np.linalg.inv(Q)
    x0 = np.zeros(d) if fixed_point is None else np.asarray(fixed_point, dtype=float)

    def g(X: np.ndarray) -> np.ndarray:
        Z = (X - x0) @ Qi.T
        P, Qq = Z[:, :k], Z[:, k:]
        LP = P @ Lcs.T
        newq = Qq @ Lu.T + phi(LP) - phi(P) @ Lu.T
        return x0 + np.concatenate([LP, newq], axis=1) @ Q.T

    def jac(X: np.ndarray) -> np.ndarray:
        Z = (X - x0) @ Qi.T
        P = Z[:, :k]
        B = X.shape[0]
        Jz = np.zeros((B, d, d))
        Jz[:, :k, :k] = Lcs
        Jz[:, k:, k:] = Lu
        Jz[:, k:, :k] = dphi(P @ Lcs.T) @ Lcs - np.einsum("ij,bjk->bik", Lu, dphi(P))
        return Q @ Jz @ Qi

    mp = Map(g, jac, dim=d, name=f"conjugated_graph_map[{nonlinearity}]")
    return GraphTestCase(map=mp, fixed_point=x0, Q=Q, dim_cs=k, dim_u=m, phi=phi)


# --------------------------------------------------------------------------------------
# A gradient-descent problem of any dimension with a cheap Hessian-vector product
# --------------------------------------------------------------------------------------


class RotatedQuartic(ProblemBase):
    """``L(x) = sum_i a_i u_i^2/2 + b u_i^4/4 + c s(u) |u_cs|^2``, ``u = R^T x``.

    ``R`` is a product of ``n_reflect`` random Householder reflections (applied in O(d)), the
    first ``dim_u`` coefficients ``a_i`` are negative (strict saddle at 0 with ``dim_u``
    unstable directions of gradient descent), the others positive.  ``s(u) = sum_{i<dim_u} u_i``.

    With ``coupling = 0`` the GD map is separable in ``u`` and the center-stable manifold at 0 is
    exactly ``{u_i = 0, i < dim_u}`` (graph 0): orbits in it stay in it, the others escape.
    Hessian-vector products cost O(d), so the matrix-free construction scales to large ``d``.
    """

    def __init__(self, dim: int = 1000, dim_u: int = 3, *, coupling: float = 0.0,
                 quartic: float = 1.0, n_reflect: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = int(dim)
        self.dim_u = int(dim_u)
        self.name = f"rotated_quartic(d={dim}, dim_u={dim_u}, coupling={coupling})"
        a = rng.uniform(0.5, 2.0, self.dim)
        a[: self.dim_u] = -rng.uniform(0.5, 1.5, self.dim_u)
        self.a = a
        self.b = float(quartic)
        self.c = float(coupling)
        H = rng.standard_normal((n_reflect, self.dim))
        self._house = H / np.linalg.norm(H, axis=1, keepdims=True)
        # compact WY form R = H_1 ... H_n = I - W S W^T (W = house^T; Schreiber & Van Loan):
        # (I - W S W^T)(I - 2 h h^T) = I - [W h] [[S, -2 S W^T h], [0, 2]] [W h]^T
        n = len(self._house)
        S = np.zeros((n, n))
        for k, h in enumerate(self._house):
            S[:k, k] = -2.0 * S[:k, :k] @ (self._house[:k] @ h)
            S[k, k] = 2.0
        self._wy = S

    def _wy_apply(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        """Rows ``X - (X W) S W^T``: ``X R`` with ``S``, ``X R^T`` with ``S^T``."""
        Hh = self._house
        return X - ((X @ Hh.T) @ S) @ Hh

    def _rot_T(self, X: np.ndarray) -> np.ndarray:  # u = R^T x: rows U = X R
        return self._wy_apply(X, self._wy)

    def _rot(self, U: np.ndarray) -> np.ndarray:  # x = R u: rows X = U R^T
        return self._wy_apply(U, self._wy.T)

    @property
    def reflections(self) -> np.ndarray:
        """The unit vectors ``h_i (n_reflect, d)`` of ``R = prod_i (I - 2 h_i h_i^T)`` (a copy)."""
        return self._house.copy()

    def _parts(self, Uu: np.ndarray):
        k = self.dim_u
        s = Uu[:, :k].sum(axis=1)
        tail = Uu[:, k:]
        w = np.einsum("ij,ij->i", tail, tail)
        return s, w

    def _loss(self, X: np.ndarray) -> np.ndarray:
        U = self._rot_T(X)
        s, w = self._parts(U)
        U2 = U * U
        return 0.5 * U2 @ self.a + 0.25 * self.b * np.einsum("ij,ij->i", U2, U2) + self.c * s * w

    def _grad_u(self, U: np.ndarray) -> np.ndarray:
        k = self.dim_u
        s, w = self._parts(U)
        G = U * U  # a u + b u^3 = u (a + b u^2), in place
        G *= self.b
        G += self.a
        G *= U
        if self.c:
            G[:, :k] += self.c * w[:, None]
            G[:, k:] += (2.0 * self.c * s)[:, None] * U[:, k:]
        return G

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return self._rot(self._grad_u(self._rot_T(X)))

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Rowwise Hessian-vector products in O(d) each (``(d,)`` or ``(B, d)``, as ``hessian``)."""
        X, V, single = self._pair(X, V)
        U, W = self._rot_T(X), self._rot_T(V)
        k = self.dim_u
        out = U * U  # (a + 3 b u^2) w, in place
        out *= 3.0 * self.b
        out += self.a
        out *= W
        if self.c:
            s, _ = self._parts(U)
            ws = W[:, :k].sum(axis=1)
            dot = np.einsum("ij,ij->i", U[:, k:], W[:, k:])
            out[:, :k] += 2.0 * self.c * dot[:, None]
            out[:, k:] += (2.0 * self.c * ws)[:, None] * U[:, k:] + (2.0 * self.c * s)[:, None] * W[:, k:]
        out = self._rot(out)
        return out[0] if single else out

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        eye = np.eye(self.dim)
        return np.stack([self.hvp(np.broadcast_to(x, (self.dim, self.dim)), eye) for x in X])

    def critical_points(self) -> list[CriticalPoint]:
        H0 = self.a
        return [CriticalPoint(np.zeros(self.dim), "strict_saddle", 0.0, "origin",
                              {"least_eigenvalue": float(H0.min()), "n_negative": self.dim_u})]

    def manifold_error(self, X: np.ndarray) -> np.ndarray:
        """For ``coupling = 0``: distance of points from the exact manifold ``{u_u = 0}``."""
        return np.linalg.norm(self._rot_T(np.atleast_2d(X))[:, : self.dim_u], axis=1)

"""Coordinates adapted to the spectral split (docs/theory.md, "Theorem 2.2, the construction").

A *frame* stores the fixed point ``x*`` once and converts between ambient displacements
``dx = x - x*`` and split coordinates ``z = (p, q)``, ``p`` in ``E_cs`` and ``q`` in ``E_u``.
It applies the linear part ``Lambda`` of the map and the derivative of the remainder
``r(z) = g_z(z) - Lambda z``.  Two implementations share one interface:

* :class:`DenseFrame` -- eigen-coordinates ``z = Q^{-1} dx`` from :func:`csm.split_spectrum`;
  ``Lambda`` real block diagonal.
* :class:`MatrixFreeFrame` -- a symmetric Jacobian (gradient-descent maps): ``E_u`` spanned by
  orthonormal Lanczos vectors ``U``, ``E_cs`` its orthogonal complement; ``p`` is *ambient*
  (a vector of ``R^d`` in ``E_cs``), ``q = U^T dx``; ``Lambda_cs`` applied by Jacobian-vector
  products.  No ``d x d`` matrix is formed.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import NoUnstableDirectionError
from ..maps import Map
from ..spectral import SpectralSplit

__all__ = ["DenseFrame", "MatrixFreeFrame", "unstable_eigenpairs"]

#: Rows of a batch of dense Jacobians formed at once (memory: rows * d * d floats).
_JAC_FLOATS = 2e7
#: Above this dimension a symmetric map's remainder derivative is applied by Jacobian-vector
#: products (2 map evaluations each) instead of forming a d x d Jacobian per point.
_JVP_DIM = 64


class DenseFrame:
    """Eigen-coordinates ``z = Q^{-1}(x - x*) = (p, q)`` of a dense spectral split."""

    matrix_free = False

    def __init__(self, split: SpectralSplit, fixed_point: np.ndarray, g: Map) -> None:
        self.split = split
        self.fixed_point = fixed_point
        self.g = g
        k = split.dim_cs
        self.dim_cs = k
        self.dim_cs_repr = k
        self.dim = fixed_point.shape[0]
        self.Q = split.Q
        self.Q_inv = split.Q_inv
        self._Qcs_T = np.ascontiguousarray(split.basis_cs.T)
        self._Qu_T = np.ascontiguousarray(split.basis_u.T)
        self.L_cs = split.block[:k, :k]
        self.L_u = split.block[k:, k:]
        self.L_u_inv = np.linalg.inv(self.L_u)
        self.lambda_min = split.lambda_min_u
        #: ``|Q|_2`` and ``|Q^{-1}|_2``: the ball of radius eps in z lies in the ambient ball
        #: of radius ``|Q| eps``; a Lipschitz constant ``M`` of ``Dg`` in ambient norms gives
        #: ``|Dr(z) - Dr(z')| <= |Q^{-1}| |Q|^2 M |z - z'|``.
        self.norm_Q = float(np.linalg.norm(self.Q, 2))
        self.norm_Q_inv = float(np.linalg.norm(self.Q_inv, 2))

    def to_z(self, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = dx @ self.Q_inv.T
        return np.ascontiguousarray(z[..., : self.dim_cs]), np.ascontiguousarray(z[..., self.dim_cs:])

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
        """Split coordinates of ``g(x* + dx) - x*`` for flat batches."""
        X = self.fixed_point + self.from_z(p, q)
        return self.to_z(self.g(X) - self.fixed_point)

    def unstable_directions(self) -> np.ndarray:
        """Unit vectors (rows, z-coordinates) along the coordinate axes of ``E_u``."""
        return np.eye(self.dim)[self.dim_cs:]

    def remainder_derivative(self, W: np.ndarray) -> tuple[Callable, Callable]:
        """``(v -> Dr(w) v, u -> Dr(w)^T u)`` rowwise at z-points ``W (S, d)``.

        ``Dr(w) = Q^{-1} Dg(x* + Q w) Q - Lambda`` with the map's Jacobian (analytic or
        central differences), products O(S d^2); for a symmetric map with exact JVPs or
        ``d > 64``, by Jacobian-vector products instead (no Jacobian is formed).
        """
        block, Q, Qi = self.split.block, self.Q, self.Q_inv
        X = self.fixed_point + W @ Q.T
        if self.g.symmetric and (self.g.has_analytic_jvp or self.dim > _JVP_DIM):
            # products only (no d x d Jacobian per point): Dg symmetric, so Dg^T = Dg
            def apply_jvp(V: np.ndarray) -> np.ndarray:
                return self.g.jvp(X, V @ Q.T) @ Qi.T - V @ block.T

            def apply_jvp_T(U: np.ndarray) -> np.ndarray:
                return self.g.jvp(X, U @ Qi) @ Q - U @ block

            return apply_jvp, apply_jvp_T
        J = self.g.jacobian(X)  # (S, d, d)
        J = np.ascontiguousarray(J.reshape(W.shape[0], self.dim, self.dim))
        JT = np.ascontiguousarray(np.swapaxes(J, 1, 2))

        def apply(V: np.ndarray) -> np.ndarray:
            return np.matmul(J, (V @ Q.T)[:, :, None])[:, :, 0] @ Qi.T - V @ block.T

        def apply_T(U: np.ndarray) -> np.ndarray:
            return np.matmul(JT, (U @ Qi)[:, :, None])[:, :, 0] @ Q - U @ block

        return apply, apply_T

    @property
    def chunk(self) -> int:
        """Rows of z-points whose Jacobians (or products) fit the memory budget at once."""
        if self.g.symmetric and (self.g.has_analytic_jvp or self.dim > _JVP_DIM):
            return max(1, int(_JAC_FLOATS // (8 * self.dim)))
        return max(1, int(_JAC_FLOATS // (self.dim * self.dim)))


class MatrixFreeFrame:
    """Symmetric Jacobian: ``E_u`` spanned by orthonormal ``U`` (Lanczos), ``E_cs`` its complement."""

    matrix_free = True

    def __init__(self, U: np.ndarray, lam_u: np.ndarray, fixed_point: np.ndarray, g: Map) -> None:
        self.U = U
        self.lam_u = lam_u
        self.fixed_point = fixed_point
        self.g = g
        self.dim = fixed_point.shape[0]
        self.dim_cs = self.dim - U.shape[1]
        self.dim_cs_repr = self.dim
        self.lambda_min = float(np.min(np.abs(lam_u)))
        self.norm_Q = self.norm_Q_inv = 1.0

    def project_cs(self, p: np.ndarray) -> np.ndarray:
        return p - (p @ self.U) @ self.U.T

    def to_z(self, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = dx @ self.U
        return dx - q @ self.U.T, q

    def from_z(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return p + q @ self.U.T

    def _A(self, V: np.ndarray) -> np.ndarray:
        flat = V.reshape(-1, V.shape[-1])
        return self.g.jvp(self.fixed_point, flat).reshape(V.shape)

    def lin_cs(self, p: np.ndarray) -> np.ndarray:
        return self.project_cs(self._A(p))

    def lin_u(self, q: np.ndarray) -> np.ndarray:
        return q * self.lam_u

    def inv_lin_u(self, q: np.ndarray) -> np.ndarray:
        return q / self.lam_u

    def g_z(self, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self.fixed_point + self.from_z(p, q)
        return self.to_z(self.g(X) - self.fixed_point)

    def unstable_directions(self) -> np.ndarray:
        """The orthonormal unstable eigenvectors as rows (ambient = z-coordinates here)."""
        return self.U.T.copy()

    def remainder_derivative(self, W: np.ndarray) -> tuple[Callable, Callable]:
        """``Dr(w) v = Dg(x* + w) v - Dg(x*) v`` by Jacobian-vector products (symmetric)."""
        X = self.fixed_point + W
        X0 = np.broadcast_to(self.fixed_point, W.shape)

        def apply(V: np.ndarray) -> np.ndarray:
            return self.g.jvp(X, V) - self.g.jvp(X0, V)

        return apply, apply

    @property
    def chunk(self) -> int:
        return max(1, int(_JAC_FLOATS // (8 * self.dim)))


def unstable_eigenpairs(g: Map, fixed_point: np.ndarray, unit_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Unstable eigenpairs of the symmetric ``Dg(x*)`` by Lanczos on Jacobian-vector products.

    Only the two ends of the spectrum can be unstable (``lambda > 1`` and ``lambda < -1``), so
    ``eigsh`` is asked for the largest and the smallest *algebraic* eigenvalues, doubling ``k``
    at an end until an eigenvalue inside ``[-1 - unit_tol, 1 + unit_tol]`` is reached.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    d = fixed_point.shape[0]

    def mv(v: np.ndarray) -> np.ndarray:
        V = np.atleast_2d(np.asarray(v, dtype=float).T).reshape(-1, d)
        out = g.jvp(fixed_point, V)
        return out.T if np.ndim(v) == 2 else out[0]

    op = LinearOperator((d, d), matvec=mv, matmat=mv, dtype=float)
    v0 = np.ones(d) / math.sqrt(d)
    found_w, found_V = [], []
    for which, is_unstable in (("LA", lambda w: w > 1.0 + unit_tol),
                               ("SA", lambda w: w < -1.0 - unit_tol)):
        k = min(4, d - 1)
        while True:
            w, V = eigsh(op, k=k, which=which, tol=1e-12, v0=v0)
            bad = is_unstable(w)
            if not bad.all() or k >= d - 1:
                break
            k = min(2 * k, d - 1)
        found_w.append(w[bad])
        found_V.append(V[:, bad])
    w = np.concatenate(found_w)
    if w.size == 0:
        raise NoUnstableDirectionError(
            "the Jacobian at `fixed_point` has no eigenvalue of modulus > 1 (Assumption 2.1): "
            "Lanczos found none above 1 + unit_tol or below -1 - unit_tol"
        )
    V = np.concatenate(found_V, axis=1)
    order = np.argsort(np.abs(w))
    w, V = w[order], V[:, order]
    V, _ = np.linalg.qr(V)
    return w, V

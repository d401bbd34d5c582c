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
  products.  No ``d x d`` matrix is formed.  It also offers :meth:`MatrixFreeFrame.advance`,
  one whole step of the streamed Lyapunov--Perron solve with a single projection.

:class:`AmbientSearchFrame` is the view of a dense frame with orthonormal ``Q`` (symmetric
Jacobian) in which the Lipschitz search runs without products with ``Q``
(``DenseFrame.lipschitz_frame``).  :func:`unstable_eigenpairs` is the matrix-free spectrum:
a loose Lanczos count with a residual certificate, then a tight refinement of the unstable
pairs only.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import NoUnstableDirectionError
from ..maps import Map
from ..spectral import SpectralSplit

__all__ = ["DenseFrame", "MatrixFreeFrame", "AmbientSearchFrame", "unstable_eigenpairs"]

#: Rows of a batch of dense Jacobians formed at once (memory: rows * d * d floats).
_JAC_FLOATS = 2e7
#: Floats of one batch of Jacobian-vector products in the Lipschitz search of the matrix-free
#: and ambient frames: small enough that the map's temporaries stay in cache (measured on the
#: RotatedQuartic HVP: 4-8x faster per row than batches of 16 MB).
_CACHE_FLOATS = 2**16
#: Above this dimension a symmetric map's remainder derivative is applied by Jacobian-vector
#: products (2 map evaluations each) instead of forming a d x d Jacobian per point.
_JVP_DIM = 64


class DenseFrame:
    """Eigen-coordinates ``z = Q^{-1}(x - x*) = (p, q)`` of a dense spectral split."""

    matrix_free = False

    def __init__(self, split: SpectralSplit, fixed_point: np.ndarray, g: Map, *,
                 exact_linear: bool = False) -> None:
        #: True when ``split`` decomposes the map's own analytic ``Dg(x*)``: then ``A v`` may
        #: be taken as a Jacobian-vector product at ``x*`` (:attr:`lipschitz_frame`).
        self.exact_linear = bool(exact_linear)
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
        if split.symmetric:  # Q orthonormal (eigh) up to rounding: |Q|^2 <= 1 + |Q^T Q - I|_F
            dev = float(np.linalg.norm(self.Q.T @ self.Q - np.eye(self.dim)))
            self.norm_Q = self.norm_Q_inv = math.sqrt(1.0 + dev)
        else:
            self.norm_Q = float(np.linalg.norm(self.Q, 2))
            self.norm_Q_inv = float(np.linalg.norm(self.Q_inv, 2))
        self._search: "AmbientSearchFrame | None" = None

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

    @property
    def lipschitz_frame(self) -> "DenseFrame | AmbientSearchFrame":
        """The coordinates the Lipschitz search of ``r~`` runs in.

        With ``Q`` orthonormal (symmetric ``A``), ``z -> Q z`` is an isometry that commutes with
        the (radial) cutoff, so ``|D r~|_2`` at ``z`` equals ``|D r~_amb|_2`` at ``Q z`` with
        ``r~_amb = Q r~ Q^T``, whose derivative ``Dg(x* + chi(x)) - A`` needs no product with
        ``Q`` (docs/theory.md §1.7, "An estimated kappa"): :class:`AmbientSearchFrame`, with
        ``A v`` a Jacobian-vector product at ``x*`` when ``A`` is the map's analytic Jacobian
        (:attr:`exact_linear`), else the dense ``Q Lambda Q^T`` of the split.  Otherwise the
        frame itself.
        """
        if not (self.split.symmetric and self.g.symmetric
                and (self.g.has_analytic_jvp or self.dim > _JVP_DIM)):
            return self
        if self._search is None:
            exact = self.exact_linear and self.g.has_analytic_jvp
            A = None if exact else (self.Q * np.diag(self.split.block)) @ self.Q.T
            self._search = AmbientSearchFrame(self.fixed_point, self.g, self.split.basis_u, A)
        return self._search

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
    def products_only(self) -> bool:
        """True when :meth:`remainder_derivative` forms no Jacobian (cheap to rebuild)."""
        return bool(self.g.symmetric and (self.g.has_analytic_jvp or self.dim > _JVP_DIM))

    @property
    def chunk(self) -> int:
        """Rows of z-points whose Jacobians (or products) fit the memory budget at once."""
        if self.g.symmetric and (self.g.has_analytic_jvp or self.dim > _JVP_DIM):
            return max(1, int(_JAC_FLOATS // (8 * self.dim)))
        return max(1, int(_JAC_FLOATS // (self.dim * self.dim)))


class AmbientSearchFrame:
    """Ambient coordinates for the Lipschitz search of a dense frame with orthonormal ``Q``.

    ``D r~_amb(x) v = Dg(x* + w) v - A v`` (``w = chi(x)``) by Jacobian-vector products of the
    symmetric map; ``A v`` by a Jacobian-vector product at ``x*`` (exact-JVP maps) or the
    dense ``A`` given.  Same interface as the frames' Lipschitz part
    (:func:`csm.manifold.lipschitz.power_top`).
    """

    matrix_free = False
    products_only = True

    def __init__(self, fixed_point: np.ndarray, g: Map, basis_u: np.ndarray,
                 A: np.ndarray | None) -> None:
        self.fixed_point = fixed_point
        self.g = g
        self.dim = fixed_point.shape[0]
        self._U = basis_u
        self._A = A

    def unstable_directions(self) -> np.ndarray:
        return np.ascontiguousarray(self._U.T)

    def remainder_derivative(self, W: np.ndarray) -> tuple[Callable, Callable]:
        X = self.fixed_point + W

        def apply(V: np.ndarray) -> np.ndarray:
            lin = V @ self._A if self._A is not None else self.g.jvp(self.fixed_point, V)
            return self.g.jvp(X, V) - lin

        return apply, apply

    @property
    def chunk(self) -> int:
        return max(2, int(_CACHE_FLOATS // self.dim))


class MatrixFreeFrame:
    """Symmetric Jacobian: ``E_u`` spanned by orthonormal ``U`` (Lanczos), ``E_cs`` its complement."""

    matrix_free = True
    products_only = True

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
        self._x0_nonzero = bool(np.any(fixed_point))

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

    def advance(self, p: np.ndarray, q: np.ndarray, v: np.ndarray | None
                ) -> tuple[np.ndarray | None, np.ndarray]:
        """One step of the streamed Lyapunov--Perron recurrence: with ``dx = g(x* + p + U q)
        - x*``, ``(P_cs (dx + A v), U^T dx)`` (``A = Dg(x*)``), or ``(None, U^T dx)`` when
        ``v`` is None.  ``P_cs`` is linear, so the cs part of the map and the linear step share
        one projection (docs/theory.md §1.3, "Truncation, horizon and stopping")."""
        U = self.U
        X = q @ U.T
        X += p
        if self._x0_nonzero:
            X += self.fixed_point
            dx = self.g(X) - self.fixed_point
        else:  # a saddle at the origin: two passes fewer
            dx = self.g(X)
        gq = dx @ U
        if v is None:
            return None, gq
        out = self._A(v)
        out += dx
        out -= (out @ U) @ U.T
        return out, gq

    def unstable_directions(self) -> np.ndarray:
        """The orthonormal unstable eigenvectors as rows (ambient = z-coordinates here)."""
        return self.U.T.copy()

    @property
    def lipschitz_frame(self) -> "MatrixFreeFrame":
        """The coordinates of the Lipschitz search: the frame itself (ambient already)."""
        return self

    def remainder_derivative(self, W: np.ndarray) -> tuple[Callable, Callable]:
        """``Dr(w) v = Dg(x* + w) v - Dg(x*) v`` by Jacobian-vector products (symmetric)."""
        X = self.fixed_point + W
        X0 = np.broadcast_to(self.fixed_point, W.shape)

        def apply(V: np.ndarray) -> np.ndarray:
            return self.g.jvp(X, V) - self.g.jvp(X0, V)

        return apply, apply

    @property
    def chunk(self) -> int:
        return max(2, int(_CACHE_FLOATS // self.dim))


#: Relative tolerance of the Lanczos pass that counts the unstable eigenvalues (tightened
#: automatically when a Ritz value's residual interval straddles the threshold).
_COUNT_TOL = 1e-2
#: Residual ``|A v - lambda v| / max(1, |lambda|)`` the returned unstable pairs must reach.
_PAIR_TOL = 1e-10


def unstable_eigenpairs(g: Map, fixed_point: np.ndarray, unit_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Unstable eigenpairs of the symmetric ``Dg(x*)`` by Lanczos on Jacobian-vector products.

    Only the two ends of the spectrum can be unstable (``lambda > 1`` and ``lambda < -1``).  At
    each end (docs/theory.md §1.4, "The unstable spectrum, matrix-free"):

    1. **count**: ``eigsh`` for the ``k`` extreme eigenvalues (``which="LA"`` on ``A + I``,
       ``which="SA"`` on ``A - I``, so that ``eigsh``'s relative tolerance is an absolute one
       near the threshold ``+-(1 + unit_tol)``) with the loose tolerance ``_COUNT_TOL``,
       doubling ``k`` while every Ritz value found is unstable.  The first stable Ritz value
       ``theta`` with its residual ``r = |A v - theta v|`` certifies the end: there is an
       eigenvalue in ``[theta - r, theta + r]`` on the stable side, and Lanczos' extreme Ritz
       values approach the extreme eigenvalues first.  If an interval straddles the
       threshold, the count is repeated with a 1000 times smaller tolerance (down to 1e-13).
    2. **refine**: the unstable pairs whose residual exceeds ``_PAIR_TOL (1 + |lambda|)`` are
       recomputed with ``eigsh(k = count, tol=1e-13)`` started from their span -- they are
       separated from the stable cluster, so this is cheap (the stable eigenvalues are never
       converged tightly).
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    d = fixed_point.shape[0]

    def apply(V: np.ndarray) -> np.ndarray:  # rows
        return g.jvp(fixed_point, V)

    def operator(shift: float) -> LinearOperator:
        def mv(v: np.ndarray) -> np.ndarray:
            V = np.atleast_2d(np.asarray(v, dtype=float).T).reshape(-1, d)
            out = apply(V) - shift * V
            return out.T if np.ndim(v) == 2 else out[0]

        return LinearOperator((d, d), matvec=mv, matmat=mv, dtype=float)

    thr = 1.0 + unit_tol
    v0 = np.ones(d) / math.sqrt(d)
    found_w, found_V = [], []
    for which, shift, k0 in (("LA", -1.0, 4), ("SA", 1.0, 1)):
        op = operator(shift)
        sign = 1.0 if which == "LA" else -1.0
        k, tol = min(k0, d - 1), _COUNT_TOL
        while True:
            w, V = eigsh(op, k=k, which=which, tol=tol, v0=v0)
            w = w + shift
            bad = sign * w > thr
            if bad.all() and k < d - 1:
                k = min(2 * k, d - 1)
                continue
            res = np.linalg.norm(apply(V.T).T - V * w, axis=0)
            if np.any(np.abs(sign * w - thr) <= res) and tol > 1e-13:
                tol = max(tol * 1e-3, 1e-13)  # a residual interval straddles the threshold
                continue
            break
        c = int(bad.sum())
        if c == 0:
            continue
        w_u, V_u, r_u = w[bad], V[:, bad], res[bad]
        if np.any(r_u > _PAIR_TOL * (1.0 + np.abs(w_u))):
            start = V_u @ np.ones(c)
            w_u, V_u = eigsh(op, k=c, which=which, tol=1e-13, v0=start / np.linalg.norm(start))
            w_u = w_u + shift
        found_w.append(w_u)
        found_V.append(V_u)
    if not found_w:
        raise NoUnstableDirectionError(
            "the Jacobian at `fixed_point` has no eigenvalue of modulus > 1 (Assumption 2.1): "
            "Lanczos found none above 1 + unit_tol or below -1 - unit_tol"
        )
    w = np.concatenate(found_w)
    V = np.concatenate(found_V, axis=1)
    order = np.argsort(np.abs(w))
    w, V = w[order], V[:, order]
    V, _ = np.linalg.qr(V)
    return w, V

"""The matrix-recovery losses as batched kernels (docs/theory.md §7, paper §3.2).

Parameters ``theta = vec(U)``, ``U in R^{n x r}``, flattened **row-major** (C order):
``theta[i * r + a] = U[i, a]``; a batch ``X (B, n*r)`` is viewed as ``U (B, n, r)``.

Notation: ``M = M* = U* U*^T``, ``E = U U^T - M``; sensing matrices ``A_k`` (symmetric,
stacked as ``(m, n, n)``), ``s_k = <A_k, U U^T>``, ``y_k = <A_k, M>``, residual
``res_k = s_k - y_k = <A_k, E>``.

* :class:`FullObservation` -- ``F(U) = 1/4 |U U^T - M|_F^2``; ``grad F = E U``;
  ``hess F[D] = E D + (U D^T + D U^T) U``, i.e. in coordinates
  ``H[(i,a),(j,b)] = E_ij d_ab + U_ib U_ja + d_ij (U^T U)_ab``.
* :class:`SensingL2` -- ``F(U) = (1/(4m)) sum_k res_k^2``; with ``S = (1/m) sum_k res_k A_k``:
  ``grad F = S U``, ``hess F[D] = S D + (2/m) sum_k <A_k U, D> A_k U``.
  Since ``E[<A, X> A] = X`` and ``E[<A, X>^2] = |X|_F^2`` for symmetric ``X`` (docs/theory.md §7
  sensing law), the expectation of this loss is :class:`FullObservation` (tested by Monte Carlo).
* :class:`SensingL1` -- ``F(U) = (1/m) sum_k |res_k|``, non-smooth on the null set where some
  ``res_k = 0``.  a.e. gradient ``(2/m) sum_k sign(res_k) A_k U`` with ``sign(0) = 0``; a.e.
  Hessian ``D -> (2/m) sum_k sign(res_k) A_k D``.  Round-off: a residual with
  ``|res_k| <= SIGN_TOL * |A_k|_F (|U U^T|_F + |M|_F)`` (``SIGN_TOL = 1e-11``) counts as 0, so
  that ``+-U* R`` give a zero gradient whatever the order of summation in the matrix products
  (this changes the a.e. gradient only on a band of relative width ``1e-11`` around the kinks).

No Python loop runs over samples or measurements: everything is a matrix product with the
``(m, n^2)`` matrix of flattened ``A_k``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FullObservation", "SensingL2", "SensingL1", "kron_identity", "SIGN_TOL"]

#: Relative size below which an ℓ1 residual counts as exactly 0 (round-off; see above).
SIGN_TOL = 1e-11


def kron_identity(S: np.ndarray, r: int) -> np.ndarray:
    """Matrix of ``D -> S D`` on row-major ``vec(D)``: ``S ⊗ I_r``, batched ``(B, n r, n r)``."""
    B, n, _ = S.shape
    return np.einsum("bij,ac->biajc", S, np.eye(r)).reshape(B, n * r, n * r)


class _Base:
    def __init__(self, n: int, r: int) -> None:
        self.n, self.r = n, r

    def _U(self, X: np.ndarray) -> np.ndarray:
        return X.reshape(X.shape[0], self.n, self.r)

    def _flat(self, Y: np.ndarray) -> np.ndarray:
        return Y.reshape(Y.shape[0], self.n * self.r)


class FullObservation(_Base):
    """``1/4 |U U^T - M|_F^2`` (docs/theory.md §7)."""

    smooth = True

    def __init__(self, M: np.ndarray, r: int) -> None:
        super().__init__(M.shape[0], r)
        self.M = M

    def _E(self, U: np.ndarray) -> np.ndarray:
        return U @ np.swapaxes(U, 1, 2) - self.M[None]

    def loss(self, X: np.ndarray) -> np.ndarray:
        E = self._E(self._U(X))
        return 0.25 * np.einsum("bij,bij->b", E, E)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        U = self._U(X)
        return self._flat(self._E(U) @ U)

    def hessian(self, X: np.ndarray) -> np.ndarray:
        U = self._U(X)
        B, n, r = U.shape
        H = kron_identity(self._E(U), r)
        # U_ib U_ja at [(i, a), (j, b)]  (z = batch, c = column b)
        H += np.einsum("zic,zja->ziajc", U, U).reshape(B, n * r, n * r)
        G = np.swapaxes(U, 1, 2) @ U  # (B, r, r)
        H += np.einsum("ij,zac->ziajc", np.eye(n), G).reshape(B, n * r, n * r)
        return H

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        U, D = self._U(X), self._U(V)
        Ut, Dt = np.swapaxes(U, 1, 2), np.swapaxes(D, 1, 2)
        return self._flat(self._E(U) @ D + (U @ Dt + D @ Ut) @ U)


class _Sensing(_Base):
    def __init__(self, A: np.ndarray, y: np.ndarray, r: int) -> None:
        super().__init__(A.shape[1], r)
        self.A = A
        self.Af = A.reshape(A.shape[0], -1)  # (m, n^2)
        self.y = y
        self.m = A.shape[0]

    def _residual(self, U: np.ndarray) -> np.ndarray:
        P = U @ np.swapaxes(U, 1, 2)
        return P.reshape(P.shape[0], -1) @ self.Af.T - self.y  # (B, m)

    def _combine(self, w: np.ndarray) -> np.ndarray:
        """``(1/m) sum_k w_k A_k`` for each row of ``w (B, m)``: ``(B, n, n)``."""
        return (w @ self.Af).reshape(w.shape[0], self.n, self.n) / self.m


class SensingL2(_Sensing):
    """``(1/(4m)) sum_k (<A_k, U U^T> - y_k)^2`` (docs/theory.md §7)."""

    smooth = True

    def loss(self, X: np.ndarray) -> np.ndarray:
        res = self._residual(self._U(X))
        return np.einsum("bk,bk->b", res, res) / (4.0 * self.m)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        U = self._U(X)
        return self._flat(self._combine(self._residual(U)) @ U)

    def hessian(self, X: np.ndarray) -> np.ndarray:
        U = self._U(X)
        B, n, r = U.shape
        H = kron_identity(self._combine(self._residual(U)), r)
        AU = np.matmul(self.A[None], U[:, None]).reshape(B, self.m, n * r)  # rows vec(A_k U)
        H += (2.0 / self.m) * np.matmul(np.swapaxes(AU, 1, 2), AU)
        return H

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        U, D = self._U(X), self._U(V)
        S = self._combine(self._residual(U))
        W = D @ np.swapaxes(U, 1, 2)  # <A_k U, D> = <A_k, D U^T> (A_k symmetric)
        c = W.reshape(W.shape[0], -1) @ self.Af.T  # (B, m)
        return self._flat(S @ D + 2.0 * self._combine(c) @ U)


class SensingL1(_Sensing):
    """``(1/m) sum_k |<A_k, U U^T> - y_k|``; a.e. gradient/Hessian with ``sign(0) = 0``."""

    smooth = False

    def __init__(self, A: np.ndarray, y: np.ndarray, r: int, M: np.ndarray) -> None:
        super().__init__(A, y, r)
        self.a_norm = np.linalg.norm(self.Af, axis=1)
        self.m_norm = float(np.linalg.norm(M))

    def loss(self, X: np.ndarray) -> np.ndarray:
        return np.abs(self._residual(self._U(X))).sum(axis=1) / self.m

    def _S(self, U: np.ndarray) -> np.ndarray:
        res = self._residual(U)
        P = U @ np.swapaxes(U, 1, 2)
        size = np.sqrt(np.einsum("bij,bij->b", P, P)) + self.m_norm
        sg = np.where(np.abs(res) <= SIGN_TOL * size[:, None] * self.a_norm[None, :], 0.0,
                      np.sign(res))
        return self._combine(sg)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        U = self._U(X)
        return self._flat(2.0 * self._S(U) @ U)

    def hessian(self, X: np.ndarray) -> np.ndarray:
        return 2.0 * kron_identity(self._S(self._U(X)), self.r)

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        return self._flat(2.0 * self._S(self._U(X)) @ self._U(V))

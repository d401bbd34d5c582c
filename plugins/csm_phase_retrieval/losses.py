"""The three phase-retrieval losses as batched kernels (docs/theory.md §6, paper §3.1).

Each kernel works on a batch ``X`` of shape ``(B, n)`` and returns the loss ``(B,)``, the
gradient ``(B, n)``, the Hessian ``(B, n, n)`` and rowwise Hessian-vector products ``(B, n)``.
Everything is a matrix product over the ``m`` measurements: no Python loop over samples or
measurements.  Notation: ``a_i`` the rows of ``A (m, n)``, ``s_i = <a_i, x>``,
``y_i = <a_i, z>^2`` with ``z = x*`` the signal, residual ``r_i = s_i^2 - y_i``.

* :class:`EmpiricalL2` -- ``F(x) = (1/(4m)) sum_i r_i^2``, smooth;
  ``grad F = (1/m) sum_i r_i s_i a_i``, ``hess F = (1/m) sum_i (3 s_i^2 - y_i) a_i a_i^T``.
* :class:`EmpiricalL1` -- ``F(x) = (1/m) sum_i |r_i|``, non-smooth on the null set
  ``{x : r_i(x) = 0 for some i}``.  The gradient used is the a.e. gradient
  ``(2/m) sum_i sign(r_i) s_i a_i`` with the convention ``sign(0) = 0`` (``numpy.sign``); the
  "Hessian" is its a.e. derivative ``(2/m) sum_i sign(r_i) a_i a_i^T`` (the true Hessian
  wherever no ``r_i`` vanishes).  With ``sign(0) = 0`` the gradient vanishes exactly at
  ``+-x*``, where every residual is zero.  Round-off: a residual with
  ``|r_i| <= SIGN_TOL * (|a_i|^2 |x|^2 + y_i)`` (``SIGN_TOL = 1e-11``, far above the
  floating-point error of ``r_i`` and far below anything a finite difference resolves) counts as
  0, so that ``+-x*`` give a zero gradient whatever the order of summation in the matrix
  products; this changes the a.e. gradient only on a band of relative width ``1e-11``
  around the null set of kinks.
* :class:`PopulationL2` -- the expectation of :class:`EmpiricalL2` over ``a ~ N(0, I_n)``,
  ``F(x) = 1/4 (3|x|^4 - 2|x|^2|z|^2 - 4<x,z>^2 + 3|z|^4)``,
  ``grad F = (3|x|^2 - |z|^2) x - 2<x,z> z``,
  ``hess F = (3|x|^2 - |z|^2) I + 6 x x^T - 2 z z^T``
  (Gaussian moments ``E s^4 = 3|x|^4``, ``E s^2 <a,z>^2 = |x|^2|z|^2 + 2<x,z>^2``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EmpiricalL2", "EmpiricalL1", "PopulationL2", "SIGN_TOL"]

#: Relative size below which an ℓ1 residual counts as exactly 0 (round-off; see above).
SIGN_TOL = 1e-11


class EmpiricalL2:
    """Empirical ℓ2 loss ``(1/(4m)) sum_i (<a_i,x>^2 - y_i)^2`` (smooth)."""

    smooth = True

    def __init__(self, A: np.ndarray, y: np.ndarray) -> None:
        self.A = A
        self.y = y
        self.m = A.shape[0]

    def _s(self, X: np.ndarray) -> np.ndarray:
        return X @ self.A.T  # (B, m)

    def loss(self, X: np.ndarray) -> np.ndarray:
        r = self._s(X) ** 2 - self.y
        return np.einsum("bi,bi->b", r, r) / (4.0 * self.m)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        s = self._s(X)
        return ((s * s - self.y) * s) @ self.A / self.m

    def _weights(self, X: np.ndarray) -> np.ndarray:
        s = self._s(X)
        return 3.0 * s * s - self.y  # (B, m)

    def hessian(self, X: np.ndarray) -> np.ndarray:
        w = self._weights(X)
        return np.matmul(self.A.T[None, :, :] * w[:, None, :], self.A) / self.m

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        return (self._weights(X) * (V @ self.A.T)) @ self.A / self.m

    def weighted(self, X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sum_i W[b,i] r_i^2 / 4`` and its gradient ``sum_i W[b,i] r_i s_i a_i`` (``W = 1/m``: F)."""
        s = self._s(X)
        r = s * s - self.y
        return 0.25 * np.einsum("bi,bi->b", W * r, r), (W * r * s) @ self.A


class EmpiricalL1:
    """Empirical ℓ1 loss ``(1/m) sum_i |<a_i,x>^2 - y_i|``; a.e. gradient with ``sign(0) = 0``."""

    smooth = False

    def __init__(self, A: np.ndarray, y: np.ndarray) -> None:
        self.A = A
        self.y = y
        self.m = A.shape[0]
        self.a2 = np.einsum("ij,ij->i", A, A)

    def loss(self, X: np.ndarray) -> np.ndarray:
        s = X @ self.A.T
        return np.abs(s * s - self.y).sum(axis=1) / self.m

    def _sign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = X @ self.A.T
        r = s * s - self.y
        scale = self.a2[None, :] * np.einsum("bi,bi->b", X, X)[:, None] + self.y[None, :]
        return np.where(np.abs(r) <= SIGN_TOL * scale, 0.0, np.sign(r)), s

    def gradient(self, X: np.ndarray) -> np.ndarray:
        sg, s = self._sign(X)
        return 2.0 * (sg * s) @ self.A / self.m

    def hessian(self, X: np.ndarray) -> np.ndarray:
        sg, _ = self._sign(X)
        return 2.0 * np.matmul(self.A.T[None, :, :] * sg[:, None, :], self.A) / self.m

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        sg, _ = self._sign(X)
        return 2.0 * (sg * (V @ self.A.T)) @ self.A / self.m

    def weighted(self, X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sum_i W[b,i] |r_i|`` and its a.e. gradient ``2 sum_i W[b,i] sign(r_i) s_i a_i``."""
        sg, s = self._sign(X)
        r = s * s - self.y
        return np.einsum("bi,bi->b", W, np.abs(r)), 2.0 * (W * sg * s) @ self.A


class PopulationL2:
    """Population ℓ2 loss ``E_a[(1/4)(<a,x>^2 - <a,z>^2)^2]`` in closed form (docs/theory.md §6)."""

    smooth = True

    def __init__(self, z: np.ndarray) -> None:
        self.z = z
        self.zz = float(z @ z)

    def loss(self, X: np.ndarray) -> np.ndarray:
        xx = np.einsum("bi,bi->b", X, X)
        xz = X @ self.z
        return 0.25 * (3.0 * xx**2 - 2.0 * xx * self.zz - 4.0 * xz**2 + 3.0 * self.zz**2)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        xx = np.einsum("bi,bi->b", X, X)
        xz = X @ self.z
        return (3.0 * xx - self.zz)[:, None] * X - 2.0 * xz[:, None] * self.z[None, :]

    def hessian(self, X: np.ndarray) -> np.ndarray:
        B, n = X.shape
        xx = np.einsum("bi,bi->b", X, X)
        H = (3.0 * xx - self.zz)[:, None, None] * np.eye(n)[None]
        H += 6.0 * X[:, :, None] * X[:, None, :]
        H -= 2.0 * np.outer(self.z, self.z)[None]
        return H

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        xx = np.einsum("bi,bi->b", X, X)
        xv = np.einsum("bi,bi->b", X, V)
        zv = V @ self.z
        return ((3.0 * xx - self.zz)[:, None] * V + 6.0 * xv[:, None] * X
                - 2.0 * zv[:, None] * self.z[None, :])

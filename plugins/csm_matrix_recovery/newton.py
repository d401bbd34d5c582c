"""Locating critical points numerically: batched Levenberg--Marquardt on the gradient (private).

Critical points are the zeros of the gradient ``g``.  Starting from points near a known
critical set (e.g. the population saddle sphere), we minimise ``|g(x)|^2 / 2`` with
Levenberg--Marquardt steps, which become Newton steps ``-H^{-1} g`` as the damping vanishes:

    delta = -(H^2 + mu * tr(H^2)/d * I)^{-1} H g,        H = hess(x) (symmetric),

accepting a step only if it decreases ``|g|`` (then ``mu /= 3``, else ``mu *= 4``); a row
stops at ``|g| <= gtol`` or after ``max_reject`` consecutive rejected steps (round-off floor).  The
damping makes the iteration robust where ``H`` is (nearly) singular, as on a manifold of
critical points, and the convergence is quadratic at a non-degenerate zero.  All starting
points are iterated together as one batch (``numpy.linalg.solve`` on ``(B, d, d)``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["locate_zeros"]


def locate_zeros(
    gradient: Callable[[np.ndarray], np.ndarray],
    hessian: Callable[[np.ndarray], np.ndarray],
    X0: np.ndarray,
    *,
    gtol: float = 1e-14,
    max_iter: int = 200,
    max_reject: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine the rows of ``X0 (B, d)`` towards zeros of ``gradient``.

    Returns ``(X, gnorm)``: the final points and their gradient norms (rows that did not
    converge keep their best point; the caller decides what is close enough to zero).
    """
    X = np.array(X0, dtype=float, copy=True)
    B, d = X.shape
    G = gradient(X)
    gn = np.linalg.norm(G, axis=1)
    mu = np.full(B, 1e-2)
    rejected = np.zeros(B, dtype=int)
    eye = np.eye(d)
    for _ in range(max_iter):
        act = np.nonzero((gn > gtol) & (rejected < max_reject))[0]
        if act.size == 0:
            break
        H = hessian(X[act])
        HH = H @ H
        scale = np.trace(HH, axis1=1, axis2=2) / d + 1e-300
        lhs = HH + (mu[act] * scale)[:, None, None] * eye
        rhs = np.einsum("bij,bj->bi", H, G[act])
        try:
            delta = -np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # exactly singular H at a tiny damping: least squares
            delta = -np.einsum("bij,bj->bi", np.linalg.pinv(lhs, hermitian=True), rhs)
        Xn = X[act] + delta
        Gn = gradient(Xn)
        gnn = np.linalg.norm(Gn, axis=1)
        ok = np.isfinite(gnn) & (gnn < gn[act])
        idx = act[ok]
        X[idx], G[idx], gn[idx] = Xn[ok], Gn[ok], gnn[ok]
        mu[act] = np.where(ok, np.maximum(mu[act] / 3.0, 1e-14), mu[act] * 4.0)
        rejected[act] = np.where(ok, 0, rejected[act] + 1)
    return X, gn

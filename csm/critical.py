"""Locating critical points and reading their kind off the Hessian spectrum (for plugins).

* :func:`locate_zeros` -- batched Levenberg--Marquardt refinement of points towards zeros of a
  gradient (e.g. the empirical-risk critical points near known population ones);
* :func:`spectrum_summary`, :func:`kind_from_spectrum` -- least eigenvalue, numbers of
  negative / zero / positive eigenvalues, and the kind (Proposition 2.5 needs a negative one).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["locate_zeros", "spectrum_summary", "kind_from_spectrum", "is_zero_loss", "KIND_PREFIX",
           "ZERO_TOL_FACTOR"]


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

    Critical points are the zeros of the gradient ``g``.  Starting from points near a known
    critical set (e.g. the population saddle sphere), we minimise ``|g(x)|^2 / 2`` with
    Levenberg--Marquardt steps, which become Newton steps ``-H^{-1} g`` as the damping vanishes:

        delta = -(H^2 + mu * tr(H^2)/d * I)^{-1} H g,        H = hess(x) (symmetric),

    accepting a step only if it decreases ``|g|`` (then ``mu /= 3``, else ``mu *= 4``); a row
    stops at ``|g| <= gtol`` or after ``max_reject`` consecutive rejected steps (round-off floor).  The
    damping makes the iteration robust where ``H`` is (nearly) singular, as on a manifold of
    critical points, and the convergence is quadratic at a non-degenerate zero.  All starting
    points are iterated together as one batch (``numpy.linalg.solve`` on ``(B, d, d)``).

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


#: Relative threshold below which a Hessian eigenvalue counts as zero.
ZERO_TOL_FACTOR = 1e-8


def spectrum_summary(eigenvalues: np.ndarray, zero_tol: float | None = None) -> dict[str, Any]:
    """Least eigenvalue and the numbers of negative / zero / positive eigenvalues."""
    ev = np.sort(np.asarray(eigenvalues, dtype=float))
    if zero_tol is None:
        zero_tol = ZERO_TOL_FACTOR * max(1.0, float(np.max(np.abs(ev))))
    n_neg = int(np.sum(ev < -zero_tol))
    n_pos = int(np.sum(ev > zero_tol))
    return {
        "least_eigenvalue": float(ev[0]),
        "n_negative": n_neg,
        "n_zero": int(ev.size - n_neg - n_pos),
        "n_positive": n_pos,
        "zero_tol": float(zero_tol),
    }


def kind_from_spectrum(summary: dict[str, Any], *, is_global: bool = False,
                       n_symmetry: int = 0) -> tuple[str, bool]:
    """The kind of a critical point from its Hessian spectrum, and whether the test is conclusive.

    ``n_symmetry`` zero eigenvalues are explained by a continuous symmetry (the critical point
    lies on a manifold of critical points with the same loss) and do not make the test
    inconclusive.  Rules: a global minimum (known loss value) is ``"global_minimum"``; no
    negative and no unexplained zero eigenvalue: ``"local_minimum"``; all negative:
    ``"local_maximum"``; a negative and a positive eigenvalue: ``"strict_saddle"``.
    Otherwise (semi-definite with unexplained zeros) second-order information cannot decide:
    ``"saddle"`` (no negative eigenvalue) or ``"strict_saddle"``, flagged inconclusive.
    """
    if is_global:
        return "global_minimum", True
    n_neg, n_zero, n_pos = summary["n_negative"], summary["n_zero"], summary["n_positive"]
    extra_zero = n_zero > n_symmetry
    if n_neg == 0:
        return ("saddle", False) if extra_zero else ("local_minimum", True)
    if n_pos == 0:
        return ("strict_saddle", False) if extra_zero else ("local_maximum", True)
    return "strict_saddle", True


def is_zero_loss(problem: Any, loss: float) -> bool:
    """Loss 0 up to round-off (``<= 1e-20 F(0)``): a global minimum of a loss that is ``>= 0``."""
    return bool(loss <= 1e-20 * max(1.0, float(problem.loss(np.zeros(problem.dim)))))


#: Short label prefix per kind, for naming numerically located critical points.
KIND_PREFIX = {"strict_saddle": "saddle", "saddle": "saddle", "local_minimum": "local-min",
               "local_maximum": "local-max", "global_minimum": "global-min"}

"""Second-order facts about a critical point from its Hessian eigenvalues (private helpers).

A critical point ``theta`` with Hessian eigenvalues ``lambda_1 <= ... <= lambda_d`` is reported
with ``least_eigenvalue = lambda_1``, the number of negative eigenvalues (unstable directions
of the gradient-descent map ``Psi = id - step * grad``: eigenvalue ``1 + step |lambda| > 1``),
and the number of (near-)zero ones (center directions: eigenvalue 1 of ``D Psi``).
"Near zero" means ``|lambda| <= zero_tol`` with ``zero_tol = 1e-8 * max(1, max |lambda|)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ZERO_TOL_FACTOR", "spectrum_summary", "kind_from_spectrum"]

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

"""Classifying points (e.g. end points of gradient-descent runs) against the critical set.

Every loss here depends on ``U`` only through ``U U^T``, so critical points come in
``O(r)``-orbits ``{U_c R : R orthogonal}``.  The distance of ``U`` to the orbit of a listed
critical point ``U_c`` is the orthogonal Procrustes distance

    dist(U, U_c O(r)) = |U - U_c R*|_F,   R* = P Q^T  where  U_c^T U = P Sigma Q^T (SVD),

computed for the whole batch against all listed points at once (batched ``r x r`` SVDs).
Rule, for each point: the nearest orbit is taken if it is within ``tol`` and, where the loss is
smooth there, ``|grad F| <= grad_tol`` (at the non-smooth minima of the ℓ1 loss only the
distance counts); otherwise a point with ``|grad F| <= grad_tol`` of a smooth loss is an
*unlisted* critical point whose kind is read from the Hessian eigenvalues (zero eigenvalues
from the orbit of its rank discounted); otherwise ``"not_critical"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import csm
from csm.critical import is_zero_loss, kind_from_spectrum, spectrum_summary

from .critical import orbit_dimension

if TYPE_CHECKING:  # pragma: no cover
    from .problem import MatrixRecovery

__all__ = ["orbit_distance", "classify_batch"]


def orbit_distance(U: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``min_R |U_b - C_k R|_F`` for ``U (B, n, r)``, ``C (K, n, r)``: ``(B, K)``."""
    Mx = np.einsum("kia,bic->bkac", C, U)  # C_k^T U_b  (B, K, r, r)
    P, _, Qt = np.linalg.svd(Mx)
    R = P @ Qt
    diff = U[:, None] - np.einsum("kia,bkac->bkic", C, R)
    return np.sqrt(np.einsum("bkic,bkic->bk", diff, diff))


def classify_batch(problem: "MatrixRecovery", X: np.ndarray, tol: float, grad_tol: float
                   ) -> list[csm.Classification]:
    n, r = problem.n, problem.r
    cps = problem.critical_points()
    C = np.array([c.theta.reshape(n, r) for c in cps])
    U = X.reshape(-1, n, r)
    D = orbit_distance(U, C)
    gn = np.linalg.norm(problem.gradient(X), axis=1)
    losses = np.atleast_1d(problem.loss(X))
    j = np.argmin(D, axis=1)
    dmin = D[np.arange(len(X)), j]
    smooth = np.array([bool(c.info.get("smooth", True)) for c in cps])
    hit = (dmin <= tol) & (~smooth[j] | (gn <= grad_tol))
    unl = ~hit & (gn <= grad_tol) & bool(problem.smooth)
    spectra = {}
    if unl.any():
        ev = np.linalg.eigvalsh(problem.hessian(X[unl]))
        sv = np.linalg.svd(U[unl], compute_uv=False)
        scale = max(1.0, float(np.linalg.norm(problem.u_star)))
        ranks = np.sum(sv > 1e-6 * scale, axis=1)
        spectra = {b: (e, int(s)) for b, e, s in zip(np.nonzero(unl)[0].tolist(), ev, ranks)}
    out = []
    for b in range(len(X)):
        c = cps[j[b]]
        base = {"gradient_norm": float(gn[b]), "nearest": c.label, "distance": float(dmin[b])}
        if hit[b]:
            info = dict(base, least_eigenvalue=c.info.get("least_eigenvalue"), listed=True)
            out.append(csm.Classification(c.kind, c.label, float(losses[b]), None, info))
        elif b in spectra:
            ev, s = spectra[b]
            summ = spectrum_summary(ev)
            kind, conclusive = kind_from_spectrum(summ, n_symmetry=orbit_dimension(s, r),
                                                  is_global=is_zero_loss(problem, float(losses[b])))
            info = dict(base, listed=False, kind_conclusive=conclusive, rank=s, **summ)
            out.append(csm.Classification(kind, "unlisted-critical", float(losses[b]), None, info))
        else:
            out.append(csm.Classification("not_critical", "not-critical", float(losses[b]), None,
                                          dict(base, listed=False)))
    return out

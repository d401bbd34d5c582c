"""Classifying points (e.g. the end points of gradient-descent runs) against the critical set.

Rule, for each point ``x`` of a batch:

1. candidates are the listed critical points; for the population loss the whole saddle sphere
   replaces its representatives, at the exact distance
   ``dist(x, sphere) = sqrt(<x, z^>^2 + (|P x| - |z|/sqrt(3))^2)`` (``z^ = z/|z|``,
   ``P`` the projection onto ``z^⟂``);
2. the nearest candidate is taken if it is within ``tol`` and, where the loss is smooth at it,
   ``|grad F(x)| <= grad_tol`` (at the non-smooth minima ``+-x*`` of the ℓ1 loss the gradient
   does not become small near the point, so only the distance counts);
3. otherwise, if ``|grad F(x)| <= grad_tol`` and the loss is smooth, ``x`` is an *unlisted*
   critical point and its kind is read from the Hessian eigenvalues
   (label ``"unlisted-critical"``); else ``"not_critical"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import csm
from csm.critical import is_zero_loss, kind_from_spectrum, spectrum_summary

if TYPE_CHECKING:  # pragma: no cover
    from .problem import PhaseRetrieval

__all__ = ["classify_batch"]


def classify_batch(problem: "PhaseRetrieval", X: np.ndarray, tol: float, grad_tol: float
                   ) -> list[csm.Classification]:
    cps = [c for c in problem.critical_points() if not c.info.get("sphere")]
    P = np.array([c.theta for c in cps])  # (K, n)
    D = np.linalg.norm(X[:, None, :] - P[None, :, :], axis=2)  # (B, K)
    labels = [c.label for c in cps]
    kinds = [c.kind for c in cps]
    smooth = [bool(c.info.get("smooth", True)) for c in cps]
    least = [c.info.get("least_eigenvalue") for c in cps]
    if problem.loss_type == "population":
        z = problem.x_star
        zn = float(np.linalg.norm(z))
        zh = z / zn
        a = X @ zh
        perp = np.linalg.norm(X - a[:, None] * zh[None, :], axis=1)
        dsph = np.sqrt(a**2 + (perp - zn / np.sqrt(3.0)) ** 2)
        D = np.column_stack([D, dsph])
        labels.append("saddle-sphere")
        kinds.append("strict_saddle")
        smooth.append(True)
        least.append(-2.0 * zn**2)
    gn = np.linalg.norm(problem.gradient(X), axis=1)
    losses = np.atleast_1d(problem.loss(X))
    j = np.argmin(D, axis=1)
    dmin = D[np.arange(len(X)), j]
    smooth_arr = np.array(smooth)
    hit = (dmin <= tol) & (~smooth_arr[j] | (gn <= grad_tol))
    unl = ~hit & (gn <= grad_tol) & bool(problem.smooth)
    spectra = {}
    if unl.any():
        ev = np.linalg.eigvalsh(problem.hessian(X[unl]))
        spectra = dict(zip(np.nonzero(unl)[0].tolist(), ev))
    out = []
    for b in range(len(X)):
        base = {"gradient_norm": float(gn[b]), "nearest": labels[j[b]],
                "distance": float(dmin[b])}
        if hit[b]:
            info = dict(base, least_eigenvalue=least[j[b]], listed=True)
            out.append(csm.Classification(kinds[j[b]], labels[j[b]], float(losses[b]), None, info))
        elif b in spectra:
            summ = spectrum_summary(spectra[b])
            kind, conclusive = kind_from_spectrum(
                summ, is_global=is_zero_loss(problem, float(losses[b])))
            info = dict(base, listed=False, kind_conclusive=conclusive, **summ)
            out.append(csm.Classification(kind, "unlisted-critical", float(losses[b]), None, info))
        else:
            out.append(csm.Classification("not_critical", "not-critical", float(losses[b]), None,
                                          dict(base, listed=False)))
    return out

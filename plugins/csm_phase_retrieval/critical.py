"""Critical points of the phase-retrieval losses (docs/theory.md §6).

Population ℓ2 loss, ``grad F(x) = (3|x|^2 - |z|^2) x - 2<x,z> z`` (``z = x*``).  Setting it
to zero: either ``x`` is parallel to ``z`` (``x = t z`` with ``t in {0, 1, -1}``) or
``<x,z> = 0`` and ``3|x|^2 = |z|^2``.  So the critical set is exactly

* ``0`` -- local maximum, ``hess = -|z|^2 I - 2 z z^T`` (eigenvalues ``-3|z|^2`` once,
  ``-|z|^2`` with multiplicity ``n - 1``), loss ``3|z|^4/4``;
* ``+-z`` -- global minima (loss 0), ``hess = 2|z|^2 I + 4 z z^T`` (``6|z|^2``, ``2|z|^2``);
* the sphere ``{x : x ⟂ z, |x|^2 = |z|^2/3}`` of strict saddles, loss ``2|z|^4/3``,
  ``hess = 6 x x^T - 2 z z^T``: eigenvalues ``2|z|^2`` (along ``x``), ``-2|z|^2`` (along ``z``)
  and ``0`` with multiplicity ``n - 2`` (tangent to the sphere: the center directions of the
  gradient-descent map).  A few points of the sphere are listed: ``+-rho w_1``, ``+-rho w_2``
  with ``rho = |z|/sqrt(3)`` and ``w_1, w_2, ...`` the orthonormal basis of ``z^⟂`` from the QR
  factorisation of ``[z | I_n]``.

Empirical ℓ2 loss: ``0`` (gradient exactly 0; local maximum because
``F(x) - F(0) = (1/(4m)) sum_i s_i^2 (s_i^2 - 2 y_i) <= 0`` near 0 when every ``y_i > 0``) and
``+-x*`` (loss 0: global minima) are exact.  The saddle sphere breaks into isolated critical
points; they are located numerically by Levenberg--Marquardt/Newton iteration
(:mod:`csm.critical`) started from the points ``rho w_k`` and
``rho (w_k + w_{k+1})/sqrt(2)`` of the population sphere, deduplicated up to the symmetry
``x -> -x`` and listed with both signs; their kinds come from the Hessian eigenvalues (a
located point of loss 0 up to round-off, possible when ``m < n``, is a global minimum).

Empirical ℓ1 loss: ``0`` (smooth there when every ``y_i > 0``: ``F = F(0) - x^T A^T A x/m``
near 0, a local maximum) and ``+-x*`` (loss 0; the loss is not differentiable there, and the
``sign(0) = 0`` convention makes the gradient vanish).  No other critical points are listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import csm
from csm.critical import (
    KIND_PREFIX,
    is_zero_loss,
    kind_from_spectrum,
    locate_zeros,
    spectrum_summary,
)

if TYPE_CHECKING:  # pragma: no cover
    from .problem import PhaseRetrieval

__all__ = [
    "complement_basis",
    "population_spectra",
    "population_critical_points",
    "empirical_critical_points",
    "newton_critical_points",
    "LOCATE_GTOL",
]

#: A numerically located point is kept when its gradient norm is at most this.
LOCATE_GTOL = 1e-10

REFERENCE = "docs/theory.md §6; paper §3.1"


def complement_basis(z: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``(n, n-1)`` of ``z^⟂``: columns 2..n of ``Q`` in ``QR([z | I_n])``."""
    n = z.shape[0]
    Q, _ = np.linalg.qr(np.column_stack([z, np.eye(n)]))
    return Q[:, 1:n]


def population_spectra(zz: float, n: int) -> dict[str, np.ndarray]:
    """Closed-form Hessian eigenvalues (ascending) of the population loss at its critical points."""
    return {
        "origin": np.sort(np.r_[-3.0 * zz, np.full(n - 1, -zz)]),
        "global": np.sort(np.r_[np.full(n - 1, 2.0 * zz), 6.0 * zz]),
        "sphere": np.sort(np.r_[-2.0 * zz, np.zeros(n - 2), 2.0 * zz]),
    }


def _closed_form_info(eigs: np.ndarray, **extra: Any) -> dict[str, Any]:
    # exact spectrum: zero eigenvalues are exactly 0, so any tiny tolerance is right
    info = spectrum_summary(eigs, zero_tol=0.0)
    info.update({"closed_form": True, "smooth": True, "reference": REFERENCE})
    info.update(extra)
    return info


def population_critical_points(problem: "PhaseRetrieval") -> list[csm.CriticalPoint]:
    """The critical points of the population loss (the sphere through representatives)."""
    z, n = problem.x_star, problem.dim
    zz = float(z @ z)
    spec = population_spectra(zz, n)
    loss = problem.loss
    out = [
        csm.CriticalPoint(np.zeros(n), "local_maximum", loss(np.zeros(n)), "origin",
                          _closed_form_info(spec["origin"])),
        csm.CriticalPoint(z.copy(), "global_minimum", loss(z), "global-min+",
                          _closed_form_info(spec["global"])),
        csm.CriticalPoint(-z, "global_minimum", loss(-z), "global-min-",
                          _closed_form_info(spec["global"])),
    ]
    W = complement_basis(z)
    rho = np.sqrt(zz / 3.0)
    for k in range(min(2, n - 1)):
        for sign, tag in ((1.0, "+"), (-1.0, "-")):
            x = sign * rho * W[:, k]
            info = _closed_form_info(
                spec["sphere"], sphere=True, sphere_radius=rho, center_directions=n - 2,
                manifold="sphere {x ⟂ x*, |x|^2 = |x*|^2/3} of strict saddles",
            )
            out.append(csm.CriticalPoint(x, "strict_saddle", loss(x),
                                         f"saddle-sphere-{k + 1}{tag}", info))
    return out


def _numeric_info(problem: "PhaseRetrieval", x: np.ndarray, **extra: Any) -> dict[str, Any]:
    info = spectrum_summary(np.linalg.eigvalsh(problem.hessian(x)))
    info.update({"smooth": True, "reference": REFERENCE})
    info.update(extra)
    return info


def empirical_critical_points(problem: "PhaseRetrieval") -> list[csm.CriticalPoint]:
    """Exact critical points of the empirical losses (0, +-x*) plus the located ℓ2 saddles."""
    z, n = problem.x_star, problem.dim
    origin = np.zeros(n)
    y_pos = bool(np.all(problem.y > 0))
    out = []
    # 0: the gradient is exactly 0 (s = 0); the Hessian exists when every y_i > 0 (a.s.).
    info0 = _numeric_info(problem, origin, closed_form=True) if y_pos else {
        "closed_form": True, "smooth": False, "reference": REFERENCE}
    out.append(csm.CriticalPoint(origin, "local_maximum", problem.loss(origin), "origin", info0))
    for sign, tag in ((1.0, "+"), (-1.0, "-")):
        x = sign * z
        if problem.loss_type == "l2":
            info = _numeric_info(problem, x, closed_form=True)
        else:
            info = {"closed_form": True, "smooth": False, "reference": REFERENCE,
                    "note": "ℓ1 loss not differentiable here; gradient 0 by sign(0) = 0"}
        out.append(csm.CriticalPoint(x, "global_minimum", problem.loss(x), f"global-min{tag}",
                                     info))
    if problem.loss_type == "l2" and n >= 2:
        out.extend(newton_critical_points(problem, exclude=[origin, z, -z]))
    return out




def newton_critical_points(problem: "PhaseRetrieval", exclude: list[np.ndarray]
                           ) -> list[csm.CriticalPoint]:
    """Critical points of the empirical ℓ2 loss near the population saddle sphere (numerical)."""
    z, n = problem.x_star, problem.dim
    W = complement_basis(z)
    rho = np.sqrt(float(z @ z) / 3.0)
    starts = [rho * W[:, k] for k in range(n - 1)]
    names = [f"sphere-w{k + 1}" for k in range(n - 1)]
    for k in range(n - 2):
        starts.append(rho * (W[:, k] + W[:, k + 1]) / np.sqrt(2.0))
        names.append(f"sphere-w{k + 1}w{k + 2}")
    X, gn = locate_zeros(problem.gradient, problem.hessian, np.array(starts))
    scale = max(1.0, float(np.linalg.norm(z)))
    found: list[tuple[np.ndarray, float, str]] = []
    for x, g, name in zip(X, gn, names):
        if not g <= LOCATE_GTOL:
            continue
        # canonical sign (the loss is even): largest |coordinate| positive
        x = x if x[np.argmax(np.abs(x))] > 0 else -x
        if any(np.linalg.norm(x - e) <= 1e-6 * scale for e in exclude):
            continue
        if any(np.linalg.norm(x - f[0]) <= 1e-6 * scale for f in found):
            continue
        found.append((x, float(g), name))
    found.sort(key=lambda t: (problem.loss(t[0]), tuple(np.round(t[0], 8))))
    out = []
    for k, (x, g, name) in enumerate(found, start=1):
        for sign, tag in ((1.0, "+"), (-1.0, "-")):
            xs = sign * x
            gnorm = float(np.linalg.norm(problem.gradient(xs)))
            a = float(xs @ z) / float(np.linalg.norm(z))
            perp = float(np.sqrt(max(float(xs @ xs) - a * a, 0.0)))
            info = _numeric_info(problem, xs, numerically_located=True, gradient_norm=gnorm,
                                 started_from=name, closed_form=False,
                                 sphere_distance=float(np.hypot(a, perp - rho)))
            loss = problem.loss(xs)
            kind, conclusive = kind_from_spectrum(info, is_global=is_zero_loss(problem, loss))
            info["kind_conclusive"] = conclusive
            out.append(csm.CriticalPoint(xs, kind, loss, f"{KIND_PREFIX[kind]}-{k}{tag}", info))
    return out

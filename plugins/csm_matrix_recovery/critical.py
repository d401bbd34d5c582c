"""Critical points of the matrix-recovery losses (docs/theory.md §7).

Full observation ``F(U) = 1/4 |U U^T - M|_F^2`` with ``M = sum_{k<=r} lambda_k v_k v_k^T``,
``lambda_1 > ... > lambda_r > 0``.  Its critical points are ``U = V_S Lambda_S^{1/2} R``:
``S`` a subset of the ``r`` nonzero eigenpairs, the columns ``sqrt(lambda_k) v_k`` (``k in S``)
followed by ``r - |S|`` zero columns, ``R`` orthogonal (``r x r``).  One representative
(``R = I``) per subset is listed (all ``2^r`` subsets for ``r <= 8``; for larger ``r`` only
``S = {1..s}`` and ``S = {1..r} \\ {k}``, to keep the list short).

Hessian spectrum at ``U_S`` in closed form (:func:`full_hessian_spectrum`; derived in the
eigenbasis of ``M``, with ``s = |S|``, ``T = {1..r} \\ S`` the missing top eigenpairs and
``c`` running over the columns, ``k_c`` the eigenpair of column ``c < s``):

===========================================  ============================  ==================
direction ``D``                              eigenvalue                    multiplicity
===========================================  ============================  ==================
``v_p e_c^T``, ``p in T``, ``c >= s``        ``-lambda_p``                 ``(r - s)`` each
``v_p e_c^T``, ``p in T``, ``c < s``         ``lambda_{k_c} - lambda_p``   1 each
``w e_c^T``, ``w ⟂ v_1..v_r``, ``c < s``     ``lambda_{k_c}``              ``n - r`` each
``w e_c^T``, ``w ⟂ v_1..v_r``, ``c >= s``    0                             ``(n - r)(r - s)``
``v_{k_a} e_c^T``, ``a < s <= c``            0                             ``s (r - s)``
``v_{k_a} e_a^T``                            ``2 lambda_{k_a}``            1 each
pair ``a < c < s``                           0 and ``lambda_{k_a} + lambda_{k_c}``  1 each
===========================================  ============================  ==================

So ``S = {1..r}`` gives the global minima (no negative eigenvalue; ``r(r-1)/2`` zero ones,
the tangent space of the ``O(r)``-orbit: center directions of gradient descent), and every
other ``S`` is a strict saddle with least eigenvalue ``-max_{p in T} lambda_p`` in the direction
``v_p e_c^T`` (``c`` a zero column), as stated in docs/theory.md §7.  ``U = 0`` (``S`` empty) has
eigenvalues ``-lambda_k`` (``r`` times each) and 0 (``(n - r) r`` times).

Sensing losses.  ℓ2: ``U = 0`` is critical (the gradient ``S U`` vanishes) and ``+-U*`` are
exact zeros of the loss with noiseless ``y`` (global minima, with their ``O(r)``-orbits); their
kinds/spectra come from the Hessian.  The perturbed versions of the full-observation saddles
are located numerically (Levenberg--Marquardt/Newton from ``U_S``), deduplicated by ``U U^T``
(the loss depends on ``U`` only through ``U U^T``) and kept when ``|grad| <= 1e-10``; their
kinds come from the Hessian eigenvalues, where ``r s - s(s+1)/2`` zero eigenvalues (``s`` the
rank) are explained by the ``O(r)``-orbit; a located point of loss 0 up to round-off (possible
for few measurements) is a global minimum.  ℓ1: ``U = 0`` (smooth there when every
``y_k != 0``, which holds a.s.) and ``+-U*`` (loss 0, not differentiable; gradient 0 by the
convention ``sign(0) = 0``).
"""

from __future__ import annotations

import itertools
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
    from .problem import MatrixRecovery

__all__ = [
    "subset_point",
    "subsets",
    "full_hessian_spectrum",
    "orbit_dimension",
    "full_critical_points",
    "sensing_critical_points",
    "LOCATE_GTOL",
    "MAX_R_ALL_SUBSETS",
]

#: A numerically located point is kept when its gradient norm is at most this.
LOCATE_GTOL = 1e-10
#: For ``r`` up to this, every subset ``S`` of eigenpairs gets a listed critical point.
MAX_R_ALL_SUBSETS = 8

REFERENCE = "docs/theory.md §7; paper §3.2"


def subsets(r: int) -> list[tuple[int, ...]]:
    """The eigenpair subsets ``S`` (0-based, sorted) whose critical points are listed."""
    if r <= MAX_R_ALL_SUBSETS:
        return [S for s in range(r + 1) for S in itertools.combinations(range(r), s)]
    out = [tuple(range(s)) for s in range(r + 1)]
    out += [tuple(i for i in range(r) if i != k) for k in range(r - 1)]
    return out


def subset_label(S: tuple[int, ...], r: int) -> str:
    if len(S) == 0:
        return "origin"
    return "S" + "-".join(str(k + 1) for k in S)


def subset_point(V: np.ndarray, lams: np.ndarray, S: tuple[int, ...], r: int) -> np.ndarray:
    """``U_S`` (``(n, r)``): columns ``sqrt(lambda_k) v_k`` for ``k in S``, then zero columns."""
    U = np.zeros((V.shape[0], r))
    for c, k in enumerate(S):
        U[:, c] = np.sqrt(lams[k]) * V[:, k]
    return U


def orbit_dimension(s: int, r: int) -> int:
    """Dimension of the ``O(r)``-orbit ``{U R}`` of a rank-``s`` ``U``: ``r s - s(s+1)/2``."""
    return r * s - s * (s + 1) // 2


def full_hessian_spectrum(lams: np.ndarray, S: tuple[int, ...], n: int) -> np.ndarray:
    """Closed-form Hessian eigenvalues (ascending) of the full-observation loss at ``U_S``."""
    r = len(lams)
    s = len(S)
    T = [p for p in range(r) if p not in S]
    kc = [lams[k] for k in S]
    ev: list[float] = []
    for p in T:
        ev += [-lams[p]] * (r - s)
        ev += [lc - lams[p] for lc in kc]
    for lc in kc:
        ev += [lc] * (n - r)
    ev += [0.0] * ((n - r) * (r - s) + s * (r - s))
    ev += [2.0 * lc for lc in kc]
    for a, c in itertools.combinations(range(s), 2):
        ev += [0.0, kc[a] + kc[c]]
    return np.sort(np.array(ev, dtype=float))


def _closed_info(lams: np.ndarray, S: tuple[int, ...], n: int, r: int, **extra: Any
                 ) -> dict[str, Any]:
    info = spectrum_summary(full_hessian_spectrum(lams, S, n), zero_tol=0.0)
    T = [p for p in range(r) if p not in S]
    info.update({
        "closed_form": True,
        "smooth": True,
        "eigenpairs": [k + 1 for k in S],
        "orbit_dimension": orbit_dimension(len(S), r),
        "center_directions": info["n_zero"],
        "reference": REFERENCE,
    })
    if T:
        p = T[0]
        info["unstable_direction"] = (
            f"v_{p + 1} e_{len(S) + 1}^T (eigenvector {p + 1} of M* in zero column {len(S) + 1}): "
            f"curvature -lambda_{p + 1} = {-lams[p]:.6g}"
        )
    info.update(extra)
    return info


def full_critical_points(problem: "MatrixRecovery") -> list[csm.CriticalPoint]:
    """Listed critical points of the full-observation loss (closed form)."""
    V, lams, n, r = problem.eigenvectors, problem.eigenvalues, problem.n, problem.r
    top = tuple(range(r))
    Ustar = subset_point(V, lams, top, r).ravel()
    out = [
        csm.CriticalPoint(Ustar, "global_minimum", problem.loss(Ustar), "global-min+",
                          _closed_info(lams, top, n, r)),
        csm.CriticalPoint(-Ustar, "global_minimum", problem.loss(-Ustar), "global-min-",
                          _closed_info(lams, top, n, r)),
    ]
    for S in subsets(r):
        if S == top:
            continue
        theta = subset_point(V, lams, S, r).ravel()
        label = "origin" if not S else "saddle-" + subset_label(S, r)
        out.append(csm.CriticalPoint(theta, "strict_saddle", problem.loss(theta), label,
                                     _closed_info(lams, S, n, r)))
    return out


def _numeric_info(problem: "MatrixRecovery", theta: np.ndarray, n_symmetry: int, **extra: Any
                  ) -> dict[str, Any]:
    info = spectrum_summary(np.linalg.eigvalsh(problem.hessian(theta)))
    info.update({"smooth": True, "orbit_dimension": n_symmetry, "reference": REFERENCE})
    info.update(extra)
    return info


def _rank(U: np.ndarray, scale: float) -> int:
    return int(np.sum(np.linalg.svd(U, compute_uv=False) > 1e-6 * scale))


def sensing_critical_points(problem: "MatrixRecovery") -> list[csm.CriticalPoint]:
    """Critical points of the sensing losses we can justify (see module docstring)."""
    V, lams, n, r = problem.eigenvectors, problem.eigenvalues, problem.n, problem.r
    d = n * r
    top = tuple(range(r))
    Ustar = subset_point(V, lams, top, r).ravel()
    origin = np.zeros(d)
    out = []
    smooth0 = bool(np.all(problem.y != 0))
    if problem.loss_type == "l2" or smooth0:
        info0 = _numeric_info(problem, origin, 0, closed_form=True)
        kind0, conclusive = kind_from_spectrum(info0)
        info0["kind_conclusive"] = conclusive
    else:  # pragma: no cover - probability zero
        kind0, info0 = "strict_saddle", {"closed_form": True, "smooth": False}
    out.append(csm.CriticalPoint(origin, kind0, problem.loss(origin), "origin", info0))
    k_orbit = orbit_dimension(r, r)
    for sign, tag in ((1.0, "+"), (-1.0, "-")):
        theta = sign * Ustar
        if problem.loss_type == "l2":
            info = _numeric_info(problem, theta, k_orbit, closed_form=True,
                                 center_directions_expected=k_orbit)
        else:
            info = {"closed_form": True, "smooth": False, "orbit_dimension": k_orbit,
                    "reference": REFERENCE,
                    "note": "ℓ1 loss not differentiable here; gradient 0 by sign(0) = 0"}
        out.append(csm.CriticalPoint(theta, "global_minimum", problem.loss(theta),
                                     f"global-min{tag}", info))
    if problem.loss_type == "l2":
        out.extend(_located_saddles(problem, exclude=[origin, Ustar]))
    return out




def _located_saddles(problem: "MatrixRecovery", exclude: list[np.ndarray]
                     ) -> list[csm.CriticalPoint]:
    V, lams, n, r = problem.eigenvectors, problem.eigenvalues, problem.n, problem.r
    starts = [S for S in subsets(r) if 0 < len(S) < r]
    if not starts:
        return []
    X0 = np.array([subset_point(V, lams, S, r).ravel() for S in starts])
    X, gn = locate_zeros(problem.gradient, problem.hessian, X0)
    scale = max(1.0, float(np.linalg.norm(exclude[1])))

    def gram(theta: np.ndarray) -> np.ndarray:
        U = theta.reshape(n, r)
        return U @ U.T

    seen = [gram(e) for e in exclude]
    out = []
    for S, x, x0, g in zip(starts, X, X0, gn):
        if not g <= LOCATE_GTOL:
            continue
        P = gram(x)
        if any(np.linalg.norm(P - Q) <= 1e-6 * scale**2 for Q in seen):
            continue
        seen.append(P)
        s = _rank(x.reshape(n, r), scale)
        k_orbit = orbit_dimension(s, r)
        info = _numeric_info(problem, x, k_orbit, numerically_located=True, closed_form=False,
                             gradient_norm=float(g), started_from="saddle-" + subset_label(S, r),
                             distance_from_start=float(np.linalg.norm(x - x0)), rank=s)
        loss = problem.loss(x)
        kind, conclusive = kind_from_spectrum(info, n_symmetry=k_orbit,
                                              is_global=is_zero_loss(problem, loss))
        info["kind_conclusive"] = conclusive
        label = f"{KIND_PREFIX[kind]}-{subset_label(S, r)}"
        if kind not in ("strict_saddle", "saddle"):
            label = f"{KIND_PREFIX[kind]}-from-{subset_label(S, r)}"
        out.append(csm.CriticalPoint(x, kind, loss, label, info))
    return out

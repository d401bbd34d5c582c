"""Locating critical points and reading their kind off the Hessian spectrum (for plugins).

* :func:`find_critical_points` -- critical points of any loss from many starts, deduplicated
  (up to declared symmetries) and certified by their own spectrum;
* :func:`locate_zeros` -- batched Levenberg--Marquardt refinement of points towards zeros of a
  gradient (e.g. the empirical-risk critical points near known population ones);
* :func:`spectrum_summary`, :func:`kind_from_spectrum` -- least eigenvalue, numbers of
  negative / zero / positive eigenvalues, and the kind (Proposition 2.5 needs a negative one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._results import Result

__all__ = ["find_critical_points", "CriticalSearch", "locate_zeros", "spectrum_summary", "kind_from_spectrum", "is_zero_loss", "KIND_PREFIX",
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


# ---------------------------------------------------------------------------------------
# finding critical points of any loss
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalSearch(Result):
    """Outcome of :func:`find_critical_points`.

    ``points`` are the distinct critical points found (one :class:`~csm.CriticalPoint` each,
    sorted by loss; ``info`` holds the certificate: ``certified_kind``, ``least_eigenvalue``,
    ``n_negative``, ``n_null``, ``grad_norm``, ``hits`` = starts that led there),
    ``levels`` the distinct loss values (to ``level_tol``), ``n_starts`` and ``n_converged``
    (starts whose refinement reached ``gtol``).
    """

    points: tuple
    levels: tuple
    n_starts: int
    n_converged: int
    gtol: float

    _NOT_SERIALISED = ("points",)

    @property
    def success(self) -> bool:
        return self.n_converged > 0

    @property
    def message(self) -> str:
        kinds = {}
        for c in self.points:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        return (f"{len(self.points)} distinct critical points from {self.n_converged}/"
                f"{self.n_starts} converged starts; kinds {kinds}; loss levels "
                f"{[float(f'{v:.6g}') for v in self.levels]}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["points"] = [c.to_dict() for c in self.points]
        return out


def _lm_matrix_free(problem: Any, x: np.ndarray, gtol: float, max_iter: int) -> tuple[np.ndarray, float]:
    """Levenberg--Marquardt on ``|G|^2/2`` with Hessian-vector products and CG (one point)."""
    from scipy.sparse.linalg import LinearOperator, cg

    d = x.shape[0]
    hvp = problem.hvp
    g = np.asarray(problem.gradient(x[None]), dtype=float)[0]
    gn = float(np.linalg.norm(g))
    mu = 1e-2
    for _ in range(max_iter):
        if gn <= gtol:
            break
        Hv = lambda v: np.asarray(hvp(x[None], np.asarray(v, dtype=float)[None]), dtype=float)[0]  # noqa: E731
        scale = float(np.linalg.norm(Hv(g)) / max(gn, 1e-300)) ** 2 + 1e-300
        op = LinearOperator((d, d), matvec=lambda v: Hv(Hv(v)) + mu * scale * v, dtype=float)
        delta, _ = cg(op, -Hv(g), maxiter=4 * d)
        xn = x + delta
        gnew = np.asarray(problem.gradient(xn[None]), dtype=float)[0]
        gnn = float(np.linalg.norm(gnew))
        if np.isfinite(gnn) and gnn < gn:
            x, g, gn, mu = xn, gnew, gnn, max(mu / 3.0, 1e-14)
        else:
            mu *= 4.0
            if mu > 1e12:
                break
    return x, gn


def find_critical_points(
    problem: Any,
    n: int = 400,
    *,
    starts: Any = None,
    rng: Any = None,
    gtol: float = 1e-10,
    max_iter: int = 300,
    dedup_tol: float = 1e-6,
    level_tol: float = 1e-9,
) -> CriticalSearch:
    """Find critical points of any loss from many starts, deduplicated and certified.

    Each start is refined by Levenberg--Marquardt on ``|G|^2 / 2`` (:func:`locate_zeros`;
    batched dense Hessians up to :data:`csm.identify.DENSE_MAX_DIM`, otherwise one point at a
    time with Hessian-vector products and conjugate gradients).  Unlike descent, this converges
    to saddles as readily as to minima.  Points with ``|G| <= gtol`` are brought to the
    problem's canonical form (``problem.canonical(X)`` where the problem declares its
    symmetries, e.g. neuron permutations), merged when closer than ``dedup_tol * max(1, |x|)``,
    named by ``problem.classify`` where present and certified by their own Hessian spectrum
    (:func:`csm.identify.certify_limits`; docs/theory.md §8).

    Parameters
    ----------
    problem : Problem
    n : int
        Number of starts drawn from ``problem.sample(rng, n)`` (ignored with ``starts``).
    starts : array (m, d), optional
        Explicit starting points (e.g. plateau points of gradient-descent runs).
    rng : Generator or int, optional
    gtol : float
        A refined point is critical when ``|G| <= gtol``.
    max_iter : int
        Levenberg--Marquardt iterations per start.
    dedup_tol, level_tol : float
        Merge radius (relative) and the resolution of the reported loss levels.

    Returns
    -------
    CriticalSearch

    Raises
    ------
    InputError
        ``n`` < 1, empty or malformed ``starts``, bad tolerances.
    """
    from ._validation import as_batch, as_rng, positive_float, positive_int
    from .errors import InputError
    from .identify import DENSE_MAX_DIM, certify_limits
    from .problem import CriticalPoint

    d = int(problem.dim)
    gtol = positive_float(gtol, "gtol")
    dedup_tol = positive_float(dedup_tol, "dedup_tol")
    level_tol = positive_float(level_tol, "level_tol")
    max_iter = positive_int(max_iter, "max_iter")
    if starts is None:
        n = positive_int(n, "n")
        X0 = np.asarray(problem.sample(as_rng(rng), n), dtype=float)
    else:
        X0, _ = as_batch(starts, d, name="starts")
        if X0.shape[0] == 0:
            raise InputError("`starts` is empty: give at least one starting point")
    if not np.all(np.isfinite(X0)):
        raise InputError("`starts` (or the samples) contain NaN or infinity")
    if d <= DENSE_MAX_DIM:
        X, gn = locate_zeros(lambda Y: np.asarray(problem.gradient(Y), dtype=float),
                             lambda Y: np.asarray(problem.hessian(Y), dtype=float).reshape(len(Y), d, d),
                             X0, gtol=gtol, max_iter=max_iter)
    else:
        if not callable(getattr(problem, "hvp", None)):
            raise InputError(f"`problem` has dim {d} > {DENSE_MAX_DIM} and no .hvp: the matrix-free "
                             "search needs Hessian-vector products")
        out = [_lm_matrix_free(problem, x.copy(), gtol, max_iter) for x in X0]
        X = np.stack([o[0] for o in out])
        gn = np.array([o[1] for o in out])
    ok = np.isfinite(gn) & (gn <= gtol)
    P = X[ok]
    canon = getattr(problem, "canonical", None)
    if callable(canon) and len(P):
        P = np.asarray(canon(P), dtype=float).reshape(-1, d)
    reps: list[int] = []
    hits: list[int] = []
    owner = np.full(len(P), -1)
    for i in range(len(P)):
        if reps:
            R = P[reps]
            dist = np.linalg.norm(R - P[i], axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= dedup_tol * max(1.0, float(np.linalg.norm(P[i]))):
                owner[i] = j
                hits[j] += 1
                continue
        owner[i] = len(reps)
        reps.append(i)
        hits.append(1)
    points = []
    if reps:
        R = P[reps]
        cert = certify_limits(problem, R)
        classify = getattr(problem, "classify", None)
        for k, i in enumerate(reps):
            kind, label = str(cert.kind[k]), f"{cert.kind[k]} #{k}"
            info = {"certified_kind": str(cert.kind[k]),
                    "least_eigenvalue": float(cert.least_eigenvalue[k]),
                    "n_negative": int(cert.n_negative[k]), "n_null": int(cert.n_null[k]),
                    "grad_norm": float(gn[ok][i]), "hits": int(hits[k])}
            if callable(classify):
                c = classify(R[k])
                if c.kind != "not_critical":
                    kind, label = str(c.kind), f"{c.label} #{k}"
                    info["classified_kind"] = str(c.kind)
            points.append(CriticalPoint(R[k].copy(), kind, float(cert.loss[k]), label, info))
    points.sort(key=lambda c: (c.loss, c.label))
    levels: list[float] = []
    for c in points:
        if not levels or abs(c.loss - levels[-1]) > level_tol * max(1.0, abs(c.loss)):
            levels.append(c.loss)
    return CriticalSearch(points=tuple(points), levels=tuple(levels), n_starts=int(len(X0)),
                          n_converged=int(ok.sum()), gtol=gtol)

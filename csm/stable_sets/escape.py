"""Escape times near a saddle (Corollary 2.3, quantitatively; docs/theory.md §1.6, §8).

:func:`escape_times` measures the time an orbit started at distance ``delta`` from the
center-stable manifold of a saddle needs to leave a ball around it, and compares it with
``log(eps/delta) / log lambda``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._results import Result
from .._validation import positive_float, positive_int
from ..errors import InputError
from ..orbits import NEVER_LEFT, exit_times
from ..problem import gd_map, resolve_point

__all__ = ["EscapeTimes", "escape_times"]


@dataclass(frozen=True, eq=False)
class EscapeTimes(Result):
    """Outcome of :func:`escape_times`.

    Attributes
    ----------
    point : str
        Label (or coordinates) of the saddle.
    radius : float
        The ball ``B_eps(x*)`` the orbits have to leave.
    deltas : ndarray (m,)
        Initial distances from the center-stable manifold (along ``E_u``).
    steps : ndarray (m, n)
        Exit step of each run (``max_steps`` when it did not leave; see ``escaped``).
    escaped : ndarray (m,)
        Number of runs per ``delta`` that left the ball within ``max_steps``.
    median_steps, mean_steps : ndarray (m,)
        Over the runs that escaped (NaN when none did).
    lambda_min, lambda_max : float
        Smallest and largest unstable ``|eigenvalue|`` of the map's Jacobian at ``x*``.
    predicted : ndarray (m,)
        ``log(eps / delta) / log(lambda_min)`` (docs/theory.md §8): the sojourn time of the
        linearisation when the push is along the least unstable direction; pushes with a
        component along faster directions leave sooner (down to ``log(eps/delta)/log
        lambda_max``).
    slope : float
        Least-squares slope of ``median_steps`` against ``log(1/delta)`` (deltas where every
        run escaped).
    slope_theory : float
        ``1 / log(lambda_min)``.
    slope_theory_fast : float
        ``1 / log(lambda_max)``.
    intercept : float
        Intercept of that fit.
    """

    point: str
    radius: float
    deltas: np.ndarray
    steps: np.ndarray
    escaped: np.ndarray
    median_steps: np.ndarray
    mean_steps: np.ndarray
    lambda_min: float
    lambda_max: float
    predicted: np.ndarray
    slope: float
    slope_theory: float
    slope_theory_fast: float
    intercept: float
    n: int
    max_steps: int
    seed: int

    @property
    def relative_slope_error(self) -> float:
        """``|slope - slope_theory| / slope_theory``."""
        return abs(self.slope - self.slope_theory) / self.slope_theory

    def table(self) -> list[dict[str, Any]]:
        """One row per ``delta``: delta, median, mean, predicted, escaped."""
        return [
            {"delta": float(dl), "median_steps": float(md), "mean_steps": float(mn),
             "predicted": float(p), "escaped": int(e), "n": self.n}
            for dl, md, mn, p, e in zip(self.deltas, self.median_steps, self.mean_steps,
                                        self.predicted, self.escaped)
        ]

    def summary(self) -> str:
        """Plain-text table: delta, median/mean steps, prediction; the fitted slope."""
        lines = [(f"escape from B_eps({self.point}), eps = {self.radius:.4g}, lambda_min = "
                  f"{self.lambda_min:.6g}, lambda_max = {self.lambda_max:.6g}, "
                  f"{self.n} runs/delta"),
                 f"{'delta':>10} {'median':>8} {'mean':>9} {'predicted':>10} {'escaped':>8}"]
        for r in self.table():
            lines.append(f"{r['delta']:>10.3g} {r['median_steps']:>8.1f} {r['mean_steps']:>9.2f} "
                         f"{r['predicted']:>10.2f} {r['escaped']:>8d}")
        lines.append(f"slope of steps vs log(1/delta): {self.slope:.5g} (theory 1/log lambda_min"
                     f" = {self.slope_theory:.5g}; relative error {self.relative_slope_error:.2%})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    _NOT_SERIALISED = ("steps",)

    @property
    def success(self) -> bool:
        """Every run left the ball within ``max_steps``."""
        return bool(np.all(self.escaped == self.n))

    @property
    def message(self) -> str:
        left = int(np.sum(self.escaped))
        total = int(self.n * len(self.deltas))
        return (f"{left}/{total} runs escaped; slope {self.slope:.4g} vs 1/log lambda_min "
                f"{self.slope_theory:.4g}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the per-run ``steps`` matrix included only as the table)."""
        out = super().to_dict()
        out["relative_slope_error"] = self.relative_slope_error
        out["table"] = self.table()
        return out


def escape_times(
    problem: Any,
    point: Any,
    step: float,
    deltas: Sequence[float],
    n: int,
    *,
    radius: float | None = None,
    max_steps: int = 100_000,
    seed: int = 0,
    manifold: Any = None,
    local_map: bool = True,
) -> EscapeTimes:
    """Steps needed to leave ``B_eps(x*)`` from distance ``delta`` off the center-stable manifold.

    For each ``delta``: take ``n`` points ``p`` on the local center-stable manifold
    (``manifold.sample(n, rng)``, Theorem 2.2 / docs/theory.md §1.3), push each along a random unit
    direction ``u`` of ``E_u`` (``x0 = p + delta u``), iterate the map until
    ``||x_k - x*|| > eps`` and record ``k``.  The linearisation predicts
    ``k ~= log(eps/delta) / log(lambda)`` (docs/theory.md §8), ``lambda`` between the smallest and
    the largest unstable ``|eigenvalue|``; hence ``k`` grows linearly in ``log(1/delta)``
    with slope ``1/log(lambda_min)`` when ``E_u`` is one-dimensional (or all unstable
    eigenvalues agree), which is what ``slope`` vs ``slope_theory`` checks.

    Parameters
    ----------
    problem : Problem
    point : CriticalPoint, str or array (d,)
        The saddle (a label is looked up in ``problem.critical_points()``).
    step : float
        Step size of gradient descent.
    deltas : sequence of float
        Distances off the manifold, ``0 < delta < eps``; keep them well above the manifold's
        accuracy (its ``tol``), otherwise the distance is dominated by that error.
    n : int
        Runs per ``delta``.
    radius : float, optional
        ``eps``; default the manifold's radius.
    max_steps : int
        Budget; runs that do not leave are counted in ``escaped``.
    seed : int
        Seeds the manifold points and directions.
    manifold : CenterStableManifold, optional
        Precomputed manifold (anything with ``radius``, ``sample(n, rng)`` and ``split`` with
        ``basis_u`` and ``eigenvalues``); computed with :func:`csm.center_stable_manifold`
        otherwise.
    local_map : bool
        Use ``problem.local_map(point, step)`` (e.g. the ReLU plugin's modified map Psi_J)
        when the problem has one, else ``GradientDescentMap(problem, step)``.  The same map
        is iterated.

    Returns
    -------
    EscapeTimes
    """
    d = int(problem.dim)
    step = positive_float(step, "step")
    n = positive_int(n, "n")
    max_steps = positive_int(max_steps, "max_steps")
    dl = np.asarray(deltas, dtype=float).reshape(-1)
    if dl.size == 0 or not np.all(np.isfinite(dl)) or np.any(dl <= 0):
        raise InputError(
            f"`deltas` must be a non-empty sequence of positive numbers, got {deltas!r}")
    cp, x_star, name = resolve_point(problem, point, d)
    gmap = gd_map(problem, cp, step, local=local_map)
    if manifold is None:
        from ..manifold import center_stable_manifold

        manifold = center_stable_manifold(gmap, x_star)
    eps = float(manifold.radius) if radius is None else positive_float(radius, "radius")
    if np.any(dl >= eps):
        raise InputError(f"`deltas` must be smaller than the radius {eps:g}, got max {dl.max():g}")
    split = getattr(manifold, "split", None)
    U = getattr(manifold, "basis_u", None)
    if U is None:
        U = split.basis_u
    U = np.asarray(U, dtype=float).reshape(d, -1)
    k_u = U.shape[1]
    ev_u = getattr(manifold, "eigenvalues_u", None)
    if ev_u is None:
        ev_u = np.sort(np.abs(np.asarray(split.eigenvalues)))[::-1][:k_u]
    mod = np.sort(np.abs(np.asarray(ev_u)))[::-1]
    lam_max, lam_min = float(mod[0]), float(mod[-1])
    eigen_norm = getattr(manifold, "eigen_norm", None)

    def dist(Y: np.ndarray) -> np.ndarray:  # the ball's norm (eigen-coordinates if known)
        if callable(eigen_norm):
            return np.asarray(eigen_norm(Y), dtype=float).reshape(-1)
        return np.linalg.norm(Y - x_star, axis=1)

    if lam_min <= 1.0:
        raise InputError(f"the map has no unstable eigenvalue at {name} (|lambda| = {mod})")

    rng = np.random.default_rng(seed)
    P = np.asarray(manifold.sample(n, rng), dtype=float).reshape(n, d)
    C = rng.standard_normal((n, k_u))
    V = C @ U.T
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    X = (P[None, :, :] + dl[:, None, None] * V[None, :, :]).reshape(-1, d)
    with np.errstate(all="ignore"):
        outside = ~(dist(X) <= eps)  # already outside: exit time 0
        ex = exit_times(gmap, X, max_steps, dist, eps)
    steps = np.where(outside, 0, np.where(ex == NEVER_LEFT, max_steps, ex)).astype(np.int64)
    out = outside | (ex != NEVER_LEFT)
    steps = steps.reshape(dl.size, n)
    out = out.reshape(dl.size, n)
    escaped = out.sum(axis=1)
    med = np.array([np.median(s[o]) if o.any() else np.nan for s, o in zip(steps, out)])
    mean = np.array([np.mean(s[o]) if o.any() else np.nan for s, o in zip(steps, out)])
    pred = np.log(eps / dl) / math.log(lam_min)
    ok = escaped == n
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(np.log(1.0 / dl[ok]), med[ok], 1)
    else:
        slope, intercept = float("nan"), float("nan")
    return EscapeTimes(
        point=name, radius=eps, deltas=dl, steps=steps, escaped=escaped, median_steps=med,
        mean_steps=mean, lambda_min=lam_min, lambda_max=lam_max, predicted=pred,
        slope=float(slope), slope_theory=1.0 / math.log(lam_min),
        slope_theory_fast=1.0 / math.log(lam_max), intercept=float(intercept), n=n,
        max_steps=max_steps, seed=int(seed),
    )

"""Corollary 2.3, quantitatively: escape from a ball around a saddle, and its counterpart.

docs/theory.md §1.6 (and §1.2 for Theorem 2.2).  :func:`escape_rate` measures how fast uniform
points leave a ball around a fixed point ``x*`` (``p_k ~ C exp(-k sum log|lambda_u|)``);
:func:`manifold_stay_fraction` checks that points *on* the center-stable manifold of Theorem 2.2
stay.  Both iterate their
orbits with the one exit-time loop :func:`csm.orbits.exit_times` and test the fixed point with
:func:`csm.maps.check_fixed_point`.  In the reports an orbit that never left has exit time
``n_steps + 1`` (so that ``exit_times > k`` counts the survivors of step ``k``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import as_point, as_rng, positive_float, positive_int
from ..confidence import clopper_pearson
from ..errors import InputError, NonFiniteError, NoUnstableDirectionError, ShapeError
from ..maps import Map, as_map, check_fixed_point
from ..orbits import NEVER_LEFT, exit_times
from ._common import MeasureReport
from .tailfit import quantiles, wls_slope

__all__ = ["EscapeRateReport", "ManifoldStayReport", "escape_rate", "manifold_stay_fraction"]


@dataclass(frozen=True)
class EscapeRateReport(MeasureReport):
    """Result of :func:`escape_rate`.

    Attributes
    ----------
    passed, reason : bool, str
        ``|ratio - 1| <= rtol`` (and a valid fitting window); ``passed`` is also ``success``
        (:class:`csm._results.Result`), with ``message`` the verdict and reason in one sentence.
    dim, dim_u : int
    radius : float
    n_points, n_steps : int
    eigenvalue_moduli : ndarray (d,)
        ``|lambda|`` of ``Dg(x*)``, increasing.
    unstable_moduli : ndarray (dim_u,)
    predicted_rate : float
        ``sum_{|lambda| > 1} log |lambda|``.
    fitted_rate, rate_se : float
        ``-slope`` of ``log p_k`` against ``k`` over the window (least squares weighted by
        ``S_k``), bootstrap standard error.
    ratio : float
        ``fitted_rate / predicted_rate``.
    rtol : float
    fit_window : tuple (k_lo, k_hi)
        Inclusive range of ``k`` used in the fit.
    transient : int
        ``k_transient`` of the window rule.
    survivors : ndarray (n_steps + 1,)
        ``S_k``: number of points that stayed in the ball for steps ``0..k``.
    survival : ndarray (n_steps + 1,)
        ``p_k = S_k / n_points``.
    exit_times : ndarray (n_points,)
        First ``k`` with ``g^k(x)`` outside the ball (``n_steps + 1`` if none); not in
        :meth:`to_dict`.
    """

    _CLAIM = "check of Corollary 2.3 (a ball around the saddle empties at rate sum log|lambda_u|)"
    _NOT_SERIALISED = ('exit_times',)
    _NPZ = ('exit_times', 'survival')

    passed: bool
    reason: str
    dim: int
    dim_u: int
    radius: float
    n_points: int
    n_steps: int
    eigenvalue_moduli: np.ndarray
    unstable_moduli: np.ndarray
    predicted_rate: float
    fitted_rate: float
    rate_se: float
    ratio: float
    rtol: float
    fit_window: tuple[int, int] | None
    transient: int
    survivors: np.ndarray
    survival: np.ndarray
    exit_times: np.ndarray = field(repr=False)


def _uniform_ball(rng: np.random.Generator, n: int, center: np.ndarray, radius: float) -> np.ndarray:
    d = center.size
    G = rng.standard_normal((n, d))
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    r = radius * rng.random(n) ** (1.0 / d)
    return center + G * r[:, None]


def _exit_steps(g: Map, X: np.ndarray, n_steps: int, norm: Any, radius: float) -> np.ndarray:
    """:func:`csm.orbits.exit_times`, with ``n_steps + 1`` (not ``NEVER_LEFT``) where the orbit stayed."""
    T = exit_times(g, X, n_steps, norm, radius)
    T[T == NEVER_LEFT] = n_steps + 1
    return T


def _fixed_point_jacobian(g: Map, x: np.ndarray, jacobian: Any,
                          fixed_point_tol: float) -> np.ndarray:
    """``Dg(x*)`` (the map's own, or ``jacobian``) after :func:`csm.maps.check_fixed_point`."""
    d = x.size
    check_fixed_point(g, x, fixed_point_tol)
    if jacobian is None:
        A = g.jacobian(x)
    elif callable(jacobian):
        A = np.asarray(jacobian(x[None, :]), dtype=float)
        A = A[0] if A.ndim == 3 else A
    else:
        A = np.asarray(jacobian, dtype=float)
    if A.shape != (d, d):
        raise ShapeError(f"`jacobian` must have shape ({d}, {d}) (or be a batched callable), "
                         f"got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise NonFiniteError("`jacobian` contains NaN or infinity")
    return A


def escape_rate(
    map: Any,
    fixed_point: Any,
    *,
    radius: float,
    n_points: int,
    n_steps: int,
    rng: Any = None,
    jacobian: Any = None,
    rtol: float = 0.1,
    p_high: float = 0.5,
    min_survivors: int = 100,
    transient_factor: float = 10.0,
    fit_window: tuple[int, int] | None = None,
    unit_tol: float = 1e-9,
    fixed_point_tol: float = 1e-8,
    n_boot: int = 200,
) -> EscapeRateReport:
    """Exponential escape from a ball around a saddle (Corollary 2.3, quantitative; docs/theory.md §1.6).

    Draws ``n_points`` points uniformly in the ball ``B_radius(x*)`` (Euclidean), iterates them
    all together and records each point's first exit.  ``p_k`` = fraction that stayed in the
    ball for steps ``0..k``.  The linearisation expands volume along ``E_u`` by
    ``prod |lambda_u|`` per step while center-stable directions do not push points out, so
    ``p_k ~ C exp(-k R)``, ``R = sum_{|lambda| > 1} log |lambda|`` (center directions do not
    change the rate).  The fitted rate is ``-slope`` of the least-squares line of ``log p_k``
    against ``k`` over the fitting window, weighted by the survivor counts ``S_k`` (``log S_k``
    has Poisson variance ``~1/S_k``), with a bootstrap standard error (multinomial resampling of
    the exit times, each replicate refitted the same way).

    The fitting window (a transient must be skipped): for a small ball the surviving set is the
    ball cut by a slab ``|Lambda_u^k q| <~ radius``; its volume is ``C exp(-k R)`` only once the
    slab is thin, with relative corrections ``O(|lambda|^{-2k})`` for unstable and
    ``O(|lambda|^{2k})`` for stable eigenvalues.  The window is ``k_lo..k_hi`` with

    * ``k_lo = max(first k with p_k <= p_high, k_transient)``,
      ``k_transient = ceil(log(transient_factor) / (2 min |log|lambda||))``, the minimum taken
      over eigenvalues with ``0 < ||lambda| - 1| > unit_tol`` (center directions excluded);
    * ``k_hi`` = last ``k`` with at least ``min_survivors`` survivors (Poisson noise beyond).

    ``fit_window=(k_lo, k_hi)`` overrides it.  A nonlinear map adds an ``O(radius)`` transient:
    surviving points approach ``x*`` along the center-stable manifold.

    Parameters
    ----------
    map : Map or callable
        ``g`` (batched).
    fixed_point : array_like (d,)
        ``x*``; ``|g(x*) - x*| <= fixed_point_tol * max(1, |x*|)`` is required
        (:func:`csm.maps.check_fixed_point`).
    radius : float
        Radius of the ball.
    n_points : int
        Number of starting points (>= 2); e.g. ``2*10^4 .. 10^5``.
    n_steps : int
        Number of iterations (>= 1).
    rng : Generator or int, optional
    jacobian : array_like (d, d) or callable, optional
        ``Dg(x*)``; default the map's Jacobian at ``x*``.
    rtol : float
        ``passed`` iff ``|fitted/predicted - 1| <= rtol`` (default 0.1) and the window holds at
        least 3 steps.
    p_high, min_survivors, transient_factor, fit_window
        The window rule above.
    unit_tol : float
        ``|lambda| > 1 + unit_tol`` is unstable (as :func:`csm.split_spectrum`).
    fixed_point_tol : float
        Tolerance of the fixed-point test (default ``1e-8``).
    n_boot : int

    Returns
    -------
    EscapeRateReport

    Raises
    ------
    NotFixedPointError, NoUnstableDirectionError, ShapeError, InputError

    Notes
    -----
    The rate comes from ``numpy.linalg.eigvals`` of ``Dg(x*)``: ``sum log|lambda|`` over the
    unstable eigenvalues is ``log|det Dg(x*)|_{E_u}|`` whether or not ``Dg(x*)`` is
    diagonalisable.  Cost: at most ``sum_k S_k <= n_points * n_steps`` map evaluations, in
    ``n_steps`` batched calls.

    Examples
    --------
    >>> import numpy as np, csm
    >>> A = np.diag([0.5, 1.5])
    >>> rep = escape_rate(csm.Map(lambda X: X @ A.T, dim=2), np.zeros(2), radius=0.1,
    ...                   n_points=20000, n_steps=30)
    >>> rep.passed, abs(rep.ratio - 1) < 0.1
    (True, True)
    """
    g = as_map(map)
    x = as_point(fixed_point, g.dim, name="fixed_point")
    d = x.size
    radius = positive_float(radius, "radius")
    n_points = positive_int(n_points, "n_points", minimum=2)
    n_steps = positive_int(n_steps, "n_steps", minimum=1)
    rtol = positive_float(rtol, "rtol")
    p_high = positive_float(p_high, "p_high")
    min_survivors = positive_int(min_survivors, "min_survivors")
    transient_factor = positive_float(transient_factor, "transient_factor")
    unit_tol = positive_float(unit_tol, "unit_tol", allow_zero=True)
    n_boot = positive_int(n_boot, "n_boot", minimum=2)
    gen = as_rng(rng)
    A = _fixed_point_jacobian(g, x, jacobian, fixed_point_tol)
    mods = np.sort(np.abs(np.linalg.eigvals(A)))
    unstable = mods[mods > 1.0 + unit_tol]
    if unstable.size == 0:
        raise NoUnstableDirectionError(
            f"Dg(fixed_point) has no eigenvalue of modulus > 1 (moduli {mods.tolist()}): there is no "
            "escape to measure (Corollary 2.3 needs Assumption 2.1)")
    predicted = float(np.sum(np.log(unstable)))
    hyper = mods[(mods > 0) & (np.abs(mods - 1.0) > unit_tol)]
    transient = int(math.ceil(math.log(transient_factor) / (2.0 * np.min(np.abs(np.log(hyper))))))

    X0 = _uniform_ball(gen, n_points, x, radius)
    # the Euclidean ball as |y - x*|^2 <= radius^2 (no square roots)
    T = _exit_steps(g, X0, n_steps, lambda Y: np.sum((Y - x) ** 2, axis=1), radius * radius)
    hist = np.bincount(T, minlength=n_steps + 2)  # T in 1..n_steps+1
    survivors = n_points - np.cumsum(hist)[: n_steps + 1]  # S_k = #(T > k), k = 0..n_steps
    survival = survivors / n_points

    if fit_window is not None:
        try:
            k_lo, k_hi = (int(v) for v in fit_window)
        except (TypeError, ValueError):
            raise InputError(
                f"`fit_window` must be a pair (k_lo, k_hi) of ints, got {fit_window!r}") from None
        if not 0 <= k_lo < k_hi <= n_steps:
            raise InputError(f"`fit_window` must satisfy 0 <= k_lo < k_hi <= n_steps={n_steps}, "
                             f"got {fit_window!r}")
    else:
        below = np.nonzero(survival <= p_high)[0]
        enough = np.nonzero(survivors >= min_survivors)[0]
        k_lo = max(int(below[0]) if below.size else n_steps + 1, transient)
        k_hi = int(enough[-1]) if enough.size else -1
    ks = np.arange(k_lo, k_hi + 1)
    fitted = se = ratio = float("nan")
    window = (int(k_lo), int(k_hi)) if k_hi >= k_lo else None
    if ks.size >= 3 and np.all(survivors[ks] > 0):
        kf = ks.astype(float)
        S = survivors[ks].astype(float)
        fitted = float(-wls_slope(kf, np.log(S / n_points)[None, :], S[None, :])[0])
        reps = gen.multinomial(n_points, hist / n_points, size=n_boot)
        Sb = np.maximum(n_points - np.cumsum(reps, axis=1)[:, ks], 0.5)
        sb = wls_slope(kf, np.log(Sb / n_points), Sb)
        se = float(np.std(sb, ddof=1))
        ratio = fitted / predicted
        passed = bool(abs(ratio - 1.0) <= rtol)
        reason = (f"fitted rate {fitted:.4g} +- {se:.2g} over k = {k_lo}..{k_hi} vs predicted "
                  f"sum log|lambda_u| = {predicted:.4g} (ratio {ratio:.3f}, rtol {rtol:g})")
    else:
        passed = False
        reason = (f"fitting window k = {k_lo}..{k_hi} has fewer than 3 steps (transient "
                  f"{transient} steps, p_k <= {p_high:g} from k = "
                  f"{int(np.argmax(survival <= p_high)) if (survival <= p_high).any() else 'never'}, "
                  f">= {min_survivors} survivors up to k = {k_hi}); increase `n_points` or "
                  "`n_steps`, or pass `fit_window`")
    return EscapeRateReport(
        passed=passed, reason=reason, dim=d, dim_u=int(unstable.size), radius=radius,
        n_points=n_points, n_steps=n_steps, eigenvalue_moduli=mods, unstable_moduli=unstable,
        predicted_rate=predicted, fitted_rate=fitted, rate_se=se, ratio=ratio, rtol=rtol,
        fit_window=window, transient=transient, survivors=survivors, survival=survival,
        exit_times=T,
    )


# --------------------------------------------------------------------------------------
# 4b. Points on the center-stable manifold stay
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifoldStayReport(MeasureReport):
    """Result of :func:`manifold_stay_fraction`.

    Attributes
    ----------
    passed, reason : bool, str
        ``fraction >= min_fraction``; ``passed`` is also ``success``
        (:class:`csm._results.Result`), with ``message`` the verdict and reason in one sentence.
    n_points, n_steps : int
    radius : float
        ``eps`` of the manifold (ball in its eigen-coordinates).
    stayed : int
        Manifold points whose orbit stayed in the ball for all ``n_steps`` steps.
    fraction, lower : float
        ``stayed / n_points`` and its 95% Clopper--Pearson lower bound.
    min_fraction : float
    exit_quantiles : dict
        Quantiles of the exit times of the points that left (empty if none left).
    ball_fraction : float or None
        The same fraction for points uniform in the same ball (reference: ``~exp(-n R)``).
    exit_times : ndarray (not in :meth:`to_dict`)
    """

    _CLAIM = "check of Theorem 2.2 (points on the center-stable manifold stay in its ball)"
    _NOT_SERIALISED = ('exit_times',)

    passed: bool
    reason: str
    n_points: int
    n_steps: int
    radius: float
    stayed: int
    fraction: float
    lower: float
    min_fraction: float
    exit_quantiles: dict
    ball_fraction: float | None
    exit_times: np.ndarray = field(repr=False)


def manifold_stay_fraction(
    map: Any,
    fixed_point: Any,
    *,
    n_points: int,
    n_steps: int,
    rng: Any = None,
    manifold: Any = None,
    radius: float | None = None,
    jacobian: Any = None,
    min_fraction: float = 0.99,
    compare_ball: bool = True,
) -> ManifoldStayReport:
    """Fraction of points *on* the center-stable manifold that stay ``n_steps`` in its ball.

    The counterpart of :func:`escape_rate` (Theorem 2.2 / Corollary 2.3; docs/theory.md §1.2,
    §1.6): points drawn on the manifold (``csm.center_stable_manifold(map, x*).sample(n, rng)``)
    should stay in the ball ``|Q^{-1}(x - x*)| <= eps`` (the manifold's own norm,
    :meth:`eigen_norm`), whereas uniform points leave at rate ``sum log|lambda_u|``.  The graph is computed to ``tol`` (default
    ``1e-10``); that error grows like ``lambda_min^k`` along ``E_u``, so points may leave after
    about ``log(eps/tol)/log lambda_min`` steps: choose ``n_steps`` below that.  With center
    directions (``|lambda| = 1``) the nonlinear drift may carry points out as well.

    Parameters
    ----------
    map, fixed_point
        As in :func:`escape_rate`.
    n_points, n_steps : int
    rng : Generator or int, optional
    manifold : CenterStableManifold, optional
        Reuse a computed manifold; otherwise ``center_stable_manifold(map, fixed_point,
        radius=radius, jacobian=jacobian)``.
    radius, jacobian
        Passed to :func:`csm.center_stable_manifold`.
    min_fraction : float
        ``passed`` iff ``stayed / n_points >= min_fraction`` (default 0.99).
    compare_ball : bool
        Also report ``ball_fraction`` for uniform points in the same ball.

    Returns
    -------
    ManifoldStayReport
    """
    g = as_map(map)
    x = as_point(fixed_point, g.dim, name="fixed_point")
    n_points = positive_int(n_points, "n_points", minimum=2)
    n_steps = positive_int(n_steps, "n_steps", minimum=1)
    min_fraction = positive_float(min_fraction, "min_fraction")
    gen = as_rng(rng)
    if manifold is None:
        from ..manifold import center_stable_manifold  # lazy: the manifold package is heavy

        kw: dict[str, Any] = {}
        if radius is not None:
            kw["radius"] = radius
        if jacobian is not None:
            kw["jacobian"] = jacobian
        manifold = center_stable_manifold(g, x, **kw)
    eps = float(manifold.radius)
    lim = eps * (1.0 + 1e-9)
    X0 = np.asarray(manifold.sample(n_points, gen), dtype=float)
    T = _exit_steps(g, X0, n_steps, manifold.eigen_norm, lim)
    stayed = int(np.sum(T > n_steps))
    frac = stayed / n_points
    lo, _ = clopper_pearson(stayed, n_points)
    ball = None
    if compare_ball:
        Z = _uniform_ball(gen, n_points, np.zeros(x.size), 1.0) * eps
        Q = manifold.split.Q if getattr(manifold, "split", None) is not None else None
        Xb = x + (Z @ Q.T if Q is not None else Z)  # uniform in the eigen-coordinate ball
        Tb = _exit_steps(g, Xb, n_steps, manifold.eigen_norm, lim)
        ball = float(np.mean(Tb > n_steps))
    passed = frac >= min_fraction
    reason = (f"{stayed}/{n_points} manifold points stayed {n_steps} steps in the eps = {eps:.3g} ball "
              f"(fraction {frac:.4f}, 95% lower bound {float(lo):.4f}; required >= {min_fraction:g})")
    if ball is not None:
        reason += f"; uniform points in the ball: {ball:.3g}"
    left = T[T <= n_steps]
    return ManifoldStayReport(
        passed=bool(passed), reason=reason, n_points=n_points, n_steps=n_steps, radius=eps,
        stayed=stayed, fraction=frac, lower=float(lo), min_fraction=min_fraction,
        exit_quantiles=quantiles(left.astype(float)), ball_fraction=ball, exit_times=T,
    )

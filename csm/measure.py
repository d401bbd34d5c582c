"""Measure checks: Lemma 2.4, Proposition 2.5 and Corollary 2.3 as numbers (MATH.md §1.4--§1.6).

The theory says *null*: the Jacobian of ``g`` is singular only on a null set (hypothesis of
Lemma 2.4), preimages of null sets are null (its conclusion), the step sizes that make the
gradient-descent map degenerate form a null set (Proposition 2.5 / Lemma 4.4), and the stable
set of a saddle is null (Corollary 2.3).  A sample never hits a null set, so "no hit" proves
nothing.  Each check here therefore measures a *rate*: how fast the probability of coming
within ``delta`` of the bad set goes to zero as ``delta`` shrinks.  A null set of codimension
``c`` gives ``P ~ C delta^c`` (a straight line of slope ``c > 0`` in log-log); a bad set of
positive measure gives a plateau (slope 0).  The figures would have come out differently had
the hypothesis failed, and the negative controls in ``tests/test_measure.py`` show that they do.

Samplers
--------
A *sampler* is a callable ``sampler(rng, n) -> ndarray (n, d)`` that draws ``n`` points from an
**absolutely continuous** law on ``R^d`` (one with a density: Gaussian, uniform on a box, ...)
using the numpy ``Generator`` ``rng``.  Only such laws see null sets as null.  A
:class:`~csm.Problem` is accepted too: its ``sample(rng, n)`` method is used.

Reports
-------
Every function returns a frozen dataclass with the raw figures, a fitted rate with its
uncertainty (slope of a log-log least-squares fit, standard error from a multinomial bootstrap
of the samples), a ``passed`` flag whose rule is stated in the function's docstring, a
one-line ``reason``, and ``to_dict()`` (JSON-safe; per-sample arrays are left out of it and
available as attributes and through ``to_npz(path)``).  All randomness comes from ``rng`` (a
Generator or a seed; the default is seed 0), so the same seed gives the same report.

Fits over ``delta`` (the *tail fit*)
------------------------------------
For a sample ``v_1..v_n >= 0`` of "distances to the bad set" and a grid ``delta_0 > delta_1 >
...`` the count ``c_k = #{i : v_i <= delta_k}`` and ``p_k = c_k / n`` are reported with exact
(Clopper--Pearson) upper confidence bounds.  The slope is the least-squares slope of
``log p_k`` against ``log delta_k`` over the *tail window*: the ``fit_points`` smallest
``delta_k`` whose count is at least ``min_count`` (smaller counts are dominated by Poisson
noise).  Its standard error is the standard deviation of the same slope over ``n_boot``
multinomial bootstrap replicates of the sample (counts of zero are read as 0.5).  The tail
window looks at the smallest resolvable ``delta``: a small plateau hiding under a large
regular part shows there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._validation import as_point, as_rng, check_finite, positive_float, positive_int
from .confidence import clopper_pearson
from .errors import InputError, NonFiniteError, NotFixedPointError, NoUnstableDirectionError, ShapeError
from .maps import Map, as_map
from .problem import to_jsonable

__all__ = [
    "check_jacobian_nondegenerate",
    "check_preimage_null",
    "bad_step_sizes",
    "escape_rate",
    "manifold_stay_fraction",
    "as_sampler",
    "clopper_pearson",
    "SmallValueProfile",
    "NondegeneracyReport",
    "PreimageReport",
    "BadStepReport",
    "EscapeRateReport",
    "ManifoldStayReport",
    "ZERO_TOL",
    "ZERO_MIN",
    "ATOM_WIDTH",
]

#: Relative threshold below which a singular value / distance counts as exactly zero.
ZERO_TOL = 1e-12
#: Width (in log step size) within which bad steps of different samples count as one atom.
ATOM_WIDTH = 1e-10
#: Exact zeros fail a check only when there are at least this many (and more than the tail predicts).
ZERO_MIN = 3
#: Confidence level of all Clopper--Pearson bounds.
CONFIDENCE = 0.95
_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def as_sampler(sampler: Any, name: str = "sampler") -> Callable[[np.random.Generator, int], np.ndarray]:
    """Return ``sampler`` as a callable ``(rng, n) -> (n, d)``; a Problem gives its ``sample``."""
    meth = getattr(sampler, "sample", None)
    if meth is not None and callable(meth):
        return meth  # a Problem (or any object with a .sample(rng, n) method)
    if callable(sampler):
        return sampler
    raise InputError(
        f"`{name}` must be a callable sampler(rng, n) -> (n, d) drawing from an absolutely "
        f"continuous law, or a Problem with a .sample(rng, n) method; got {type(sampler).__name__}"
    )


def _draw(sampler: Any, rng: np.random.Generator, n: int, dim: int | None,
          name: str = "sampler") -> np.ndarray:
    fn = as_sampler(sampler, name)
    X = np.asarray(fn(rng, n), dtype=float)
    if X.ndim != 2 or X.shape[0] != n or (dim is not None and X.shape[1] != dim):
        want = f"({n}, {dim})" if dim is not None else f"({n}, d)"
        raise ShapeError(f"`{name}` must return an array of shape {want} for n={n}, got shape {X.shape}")
    check_finite(X, f"`{name}`")
    return X


def _deltas(deltas: Any, default: np.ndarray, name: str = "deltas") -> np.ndarray:
    """Validated grid, sorted in *decreasing* order, duplicates removed."""
    if deltas is None:
        return np.asarray(default, dtype=float)
    try:
        d = np.asarray(deltas, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a 1-d array of positive numbers, got {deltas!r}") from None
    if d.ndim != 1 or d.size < 3:
        raise ShapeError(f"`{name}` must be a 1-d array with at least 3 values, got shape {d.shape}")
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise InputError(f"`{name}` must contain finite numbers > 0, got {d.tolist()}")
    d = np.unique(d)[::-1]
    if d.size < 3:
        raise InputError(f"`{name}` must contain at least 3 distinct values, got {d.tolist()}")
    return d


def _decades(top: float, n_decades: int = 6, per_decade: int = 2) -> np.ndarray:
    return top * 10.0 ** (-np.arange(n_decades * per_decade + 1) / per_decade)


def _ols_slope(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of ``Y`` against ``x``."""
    xc = x - x.mean()
    slope = (Y - Y.mean(axis=-1, keepdims=True)) @ xc / np.sum(xc**2)
    return slope, Y.mean(axis=-1) - slope * x.mean()


def _wls_slope(x: np.ndarray, Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted least-squares slope of each row of ``Y`` against ``x`` (weights ``W``, same shape)."""
    sw = W.sum(axis=-1, keepdims=True)
    xm = (W * x).sum(axis=-1, keepdims=True) / sw
    ym = (W * Y).sum(axis=-1, keepdims=True) / sw
    return ((W * (x - xm) * (Y - ym)).sum(axis=-1)) / (W * (x - xm) ** 2).sum(axis=-1)


def _quantiles(v: np.ndarray) -> dict[str, float]:
    if v.size == 0:
        return {}
    # "inverted_cdf" returns sample values (no interpolation between -inf and a number)
    q = np.quantile(v, _QUANTILES, method="linear" if np.all(np.isfinite(v)) else "inverted_cdf")
    return {f"q{int(round(100 * p)):02d}": float(x) for p, x in zip(_QUANTILES, q)}


def _arrays_to_npz(path: Any, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})


class _Report:
    """Shared behaviour of the report dataclasses: per-sample arrays stay out of ``to_dict``.

    ``_ARRAYS`` names the per-sample array fields (not in :meth:`to_dict`); ``_NPZ`` the
    arrays :meth:`to_npz` writes (default: ``_ARRAYS``).
    """

    _ARRAYS: tuple[str, ...] = ()
    _NPZ: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (per-sample arrays excluded; see :meth:`to_npz`)."""
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__
                            if k not in self._ARRAYS})

    def to_npz(self, path: Any) -> None:
        """Write the per-sample arrays to ``path`` (``numpy.savez_compressed``)."""
        _arrays_to_npz(path, {k: getattr(self, k) for k in (self._NPZ or self._ARRAYS)})


class _ProfileReport(_Report):
    """A report whose verdict rests on a :class:`SmallValueProfile` tail fit."""

    @property
    def slope(self) -> float:
        return self.profile.slope

    @property
    def slope_se(self) -> float:
        return self.profile.slope_se


# --------------------------------------------------------------------------------------
# The small-value profile shared by checks 1, 2 and the step band of check 3
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmallValueProfile:
    """``p(delta) = P(v <= delta)`` over a grid of ``delta`` and its tail log-log slope.

    Attributes
    ----------
    deltas : ndarray (K,)
        The grid, decreasing.
    counts, fractions : ndarray (K,)
        ``c_k = #{v_i <= delta_k}`` and ``p_k = c_k / n``.
    upper : ndarray (K,)
        Clopper--Pearson upper bounds of ``p_k`` (95%).
    slope, slope_se, intercept : float
        Tail fit ``log p = intercept + slope log delta`` (NaN when fewer than 3 points qualify).
    fit_indices : tuple of int
        Grid indices used in the fit.
    n, n_boot, min_count : int
    """

    deltas: np.ndarray
    counts: np.ndarray
    fractions: np.ndarray
    upper: np.ndarray
    slope: float
    slope_se: float
    intercept: float
    fit_indices: tuple[int, ...]
    n: int
    n_boot: int
    min_count: int

    @property
    def n_fit(self) -> int:
        return len(self.fit_indices)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


def _profile(values: np.ndarray, deltas: np.ndarray, rng: np.random.Generator, *,
             n_boot: int, min_count: int, fit_points: int) -> SmallValueProfile:
    n = values.size
    v = np.sort(values)
    asc = deltas[::-1]
    counts_asc = np.searchsorted(v, asc, side="right")  # #{v <= delta}
    counts = counts_asc[::-1].copy()
    fractions = counts / n
    _, upper = clopper_pearson(counts, n)
    qual = np.nonzero(counts >= min_count)[0]  # counts decrease along the grid: a prefix
    idx = qual[-fit_points:] if qual.size else qual
    slope = se = intercept = float("nan")
    if idx.size >= 3:
        x = np.log(deltas[idx])
        s, b = _ols_slope(x, np.log(counts[idx] / n)[None, :])
        slope, intercept = float(s[0]), float(b[0])
        masses = np.diff(np.concatenate([[0], counts_asc, [n]]))
        reps = rng.multinomial(n, masses / n, size=n_boot)
        cum = np.cumsum(reps, axis=1)[:, :-1][:, ::-1][:, idx]
        sb, _ = _ols_slope(x, np.log(np.maximum(cum, 0.5) / n))
        se = float(np.std(sb, ddof=1))
    return SmallValueProfile(
        deltas=deltas, counts=counts, fractions=fractions, upper=upper, slope=slope,
        slope_se=se, intercept=intercept, fit_indices=tuple(int(i) for i in idx), n=n,
        n_boot=n_boot, min_count=min_count,
    )


def _zero_expected(prof: SmallValueProfile, thr: float) -> float:
    """Zeros (values <= thr) expected from the tail power law extrapolated down to ``thr``."""
    if prof.n_fit < 3 or not prof.slope > 0 or thr <= 0:
        return 0.0
    return float(prof.n * min(1.0, math.exp(prof.intercept + prof.slope * math.log(thr))))


def _decay_verdict(prof: SmallValueProfile, zero_count: int, thr: float, what: str) -> tuple[bool, str]:
    """The shared ``passed`` rule of checks 1 and 2 (documented in their docstrings)."""
    n = prof.n
    expected = _zero_expected(prof, thr)
    zeros = ""
    if zero_count:
        lo, _ = clopper_pearson(zero_count, n)
        zeros = (f"{zero_count}/{n} samples have {what} exactly zero (<= {thr:.3g}; 95% lower "
                 f"bound on the probability {float(lo):.3g}; {expected:.3g} expected from the tail)")
    if zero_count >= ZERO_MIN and zero_count > expected + 3.0 * math.sqrt(expected):
        return False, zeros + ": the bad set has positive measure"
    zeros = f"; {zeros}" if zeros else ""
    p_top, c_min = prof.fractions[0], prof.counts[-1]
    if c_min == 0:
        if p_top > 0 and prof.upper[-1] <= 0.5 * p_top:
            return True, (
                f"no sample has {what} <= {prof.deltas[-1]:.3g}; P <= {prof.upper[-1]:.3g} (95%) "
                f"there, against {p_top:.3g} at delta = {prof.deltas[0]:.3g}" + zeros
            )
        if p_top == 0:
            return False, (
                f"inconclusive: no sample has {what} below the largest delta "
                f"{prof.deltas[0]:.3g}; choose larger `deltas`" + zeros
            )
        return False, f"inconclusive: too few samples (n={n}) to resolve the decay; increase `n`"
    if prof.n_fit < 3:
        return False, (
            f"inconclusive: only {prof.n_fit} deltas have >= {prof.min_count} samples below them; "
            "increase `n`" + zeros
        )
    drop = prof.fractions[-1] <= 0.5 * p_top
    ok = prof.slope - 2 * prof.slope_se > 0 and drop
    msg = (f"tail slope {prof.slope:.3f} +- {prof.slope_se:.3f} (1 s.e.); "
           f"p drops from {p_top:.3g} to {prof.fractions[-1]:.3g}")
    if ok:
        return True, msg + ": P -> 0 as delta -> 0" + zeros
    return False, msg + ": plateau, P does not go to 0 at the resolved scales" + zeros


# --------------------------------------------------------------------------------------
# 1. Jacobian non-degenerate a.e. (hypothesis of Lemma 2.4)
# --------------------------------------------------------------------------------------


#: Safety factor of the finite-difference error model of :func:`check_jacobian_nondegenerate`:
#: a sample's ``sigma_min`` is resolved only above ``FD_SAFETY`` times its estimated error.
FD_SAFETY = 10.0
#: Quantile of the per-sample finite-difference error that sets the smallest resolvable ``delta``.
FD_RESOLUTION_QUANTILE = 0.99


@dataclass(frozen=True)
class NondegeneracyReport(_ProfileReport):
    """Result of :func:`check_jacobian_nondegenerate`.

    Attributes
    ----------
    passed : bool
        See the rule in :func:`check_jacobian_nondegenerate`.
    status : str
        ``"passed"``, ``"failed"`` or ``"inconclusive"`` (``passed`` is False for the last two;
        "inconclusive" means the data cannot decide, e.g. ``sigma_min`` below what finite
        differences resolve, not that the hypothesis fails).
    reason : str
        One line: why it passed, failed or is inconclusive.
    n, dim : int
    jacobian : str
        ``"analytic"`` (the map's Jacobian function) or ``"finite differences"``.
    profile : SmallValueProfile
        ``p(delta) = P(sigma_min(Dg(X)) <= delta)``.  With finite differences only the grid
        values ``delta >= resolvable_delta`` are used (when fewer than 3 are, the whole grid
        is shown, and the verdict is inconclusive).
    zero_count : int
        Samples with ``sigma_min <= zero_tol * scale``.
    zero_tol, scale : float
        ``scale`` is the median largest singular value.
    unresolved_count : int
        Finite differences: samples whose ``sigma_min`` is at or below their resolvable scale
        ``max(fd_error, zero_tol * scale)`` (0 with an analytic Jacobian).
    unresolved_expected : float
        How many of those the fitted tail law explains (0 when there is no fit).
    resolvable_delta : float
        Finite differences: the ``FD_RESOLUTION_QUANTILE`` (99%) quantile of ``fd_error``, the
        smallest ``delta`` the profile uses; 0 with an analytic Jacobian.
    fd_safety : float
        The factor ``kappa`` of the error model (0 with an analytic Jacobian).
    sigma_min_quantiles, log_abs_det_quantiles, fd_error_quantiles : dict
        Quantiles ``q00, q01, q05, q25, q50, q75, q95, q99, q100`` (``fd_error_quantiles`` is
        empty with an analytic Jacobian).
    log_abs_det_mean : float
        Mean of ``log|det Dg|`` (``-inf`` if some Jacobian is exactly singular).
    sigma_min, log_abs_det, fd_error : ndarray (n,)
        Per-sample values (not in :meth:`to_dict`; see :meth:`to_npz`); ``fd_error`` is the
        resolvable scale ``kappa (T + R)`` of each sample (zeros with an analytic Jacobian).
    """

    _ARRAYS = ('sigma_min', 'log_abs_det', 'fd_error')

    passed: bool
    status: str
    reason: str
    n: int
    dim: int
    jacobian: str
    profile: SmallValueProfile
    zero_count: int
    zero_tol: float
    scale: float
    unresolved_count: int
    unresolved_expected: float
    resolvable_delta: float
    fd_safety: float
    sigma_min_quantiles: dict
    log_abs_det_quantiles: dict
    fd_error_quantiles: dict
    log_abs_det_mean: float
    sigma_min: np.ndarray = field(repr=False)
    log_abs_det: np.ndarray = field(repr=False)
    fd_error: np.ndarray = field(repr=False)


def _central_differences(func: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                         step_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central differences at ``step_scale`` times the step of :func:`csm.maps.fd_jacobian`.

    Returns the Jacobians ``(B, m, d)``, the row-wise largest ``|g_i|`` over the ``2d``
    shifted points ``(B, m)``, and the steps ``h (B, d)``.  With ``step_scale = 1`` the
    Jacobians are bit-for-bit those of ``fd_jacobian``.
    """
    from .maps import FD_STEP_FACTOR

    B, d = X.shape
    h = step_scale * FD_STEP_FACTOR * np.maximum(1.0, np.abs(X))
    shifts = h[:, :, None] * np.eye(d)[None, :, :]
    plus = (X[:, None, :] + shifts).reshape(B * d, d)
    minus = (X[:, None, :] - shifts).reshape(B * d, d)
    F = np.asarray(func(np.concatenate([plus, minus], axis=0)), dtype=float).reshape(2, B, d, -1)
    J = np.swapaxes((F[0] - F[1]) / (2.0 * h[:, :, None]), 1, 2)
    return J, np.max(np.abs(F), axis=(0, 2)), h


def _fd_error(g: Map, X: np.ndarray, J: np.ndarray, kappa: float) -> np.ndarray:
    """Per-sample resolvable scale of ``sigma_min`` of the central-difference Jacobian ``J``.

    ``kappa * (T + R)`` with ``T = |J_h - J_2h|_F`` (truncation, from the same differences at
    twice the step) and ``R = eps (|G|_2 + |J_h|_F |x|_2) |1/h|_2`` (rounding); see
    :func:`check_jacobian_nondegenerate`.  Samples where ``g`` is not finite at the wider
    stencil get ``inf`` (unresolved).
    """
    func = getattr(g, "_raw", g)  # the map without its finiteness check
    J2, F2, h2 = _central_differences(func, X, 2.0)
    G = np.maximum(np.abs(np.asarray(func(X), dtype=float)), F2)  # largest |g_i| around x
    h = 0.5 * h2
    with np.errstate(invalid="ignore", over="ignore"):
        trunc = np.linalg.norm((J - J2).reshape(len(X), -1), axis=1)
        mag = np.linalg.norm(G, axis=1) + np.linalg.norm(J.reshape(len(X), -1), axis=1) \
            * np.linalg.norm(X, axis=1)
        rnd = np.finfo(float).eps * mag * np.linalg.norm(1.0 / h, axis=1)
        err = kappa * (trunc + rnd)
    return np.where(np.isfinite(err), err, np.inf)


def _unresolved_expected(prof: SmallValueProfile, scales: np.ndarray) -> float:
    """Samples the fitted tail law ``P(sigma_min <= s) = exp(intercept) s^slope`` puts below
    their own resolvable scale ``s_i``: ``sum_i min(1, exp(intercept) s_i^slope)``."""
    if prof.n_fit < 3 or not prof.slope > 0:
        return 0.0
    with np.errstate(divide="ignore", over="ignore"):
        p = np.exp(prof.intercept + prof.slope * np.log(scales))
    return float(np.sum(np.minimum(1.0, p)))


def check_jacobian_nondegenerate(
    map: Any,
    sampler: Any,
    n: int,
    *,
    rng: Any = None,
    deltas: Any = None,
    zero_tol: float = ZERO_TOL,
    min_count: int = 10,
    fit_points: int = 5,
    n_boot: int = 200,
    fd_safety: float = FD_SAFETY,
) -> NondegeneracyReport:
    """Probe the hypothesis of Lemma 2.4: ``det Dg != 0`` almost everywhere (MATH.md §1.4 (a)).

    Draws ``X_1..X_n`` from ``sampler`` (an absolutely continuous law), computes all Jacobians
    ``Dg(X_i)`` in one batched call, their singular values (batched ``numpy.linalg.svd``) and
    ``log|det Dg(X_i)|`` (batched ``slogdet``), and the fraction
    ``p(delta) = P(sigma_min(Dg(X)) <= delta)`` over several decades of ``delta``.

    Reading the figures: if ``Dg`` is singular only on a null set, ``p(delta) -> 0``; a singular
    set that is a smooth hypersurface across which ``sigma_min`` vanishes linearly gives
    ``p ~ C delta`` (tail slope ~ 1), one where it vanishes like ``dist^k`` gives slope ``1/k``;
    a bounded-below ``sigma_min`` gives ``p = 0`` at small ``delta``.  A map whose Jacobian is
    singular on an open set gives a plateau ``p(delta) -> P(singular) > 0`` (slope ~ 0) and
    exact zeros.

    Parameters
    ----------
    map : Map or callable
        The dynamical system ``g`` (batched); its ``jacobian`` (analytic or finite
        differences) is used.
    sampler : callable or Problem
        ``sampler(rng, n) -> (n, d)``, absolutely continuous law (see module docstring).
    n : int
        Number of sample points (>= 2).
    rng : Generator or int, optional
        Randomness for sampling and bootstrap (default seed 0).
    deltas : array_like, optional
        The grid of ``delta``.  Default: ``m * 10^(-k/2)``, ``k = 0..12`` (six decades), with
        ``m`` the median ``sigma_min`` (or ``scale`` when that is zero).
    zero_tol : float
        ``sigma_min <= zero_tol * scale`` counts as exactly singular, ``scale`` = median largest
        singular value.
    min_count, fit_points, n_boot : int
        Tail fit settings (module docstring).
    fd_safety : float
        ``kappa`` of the finite-difference error model below (default ``FD_SAFETY = 10``);
        unused with an analytic Jacobian.

    Returns
    -------
    NondegeneracyReport

    Notes
    -----
    **Analytic Jacobian** (``map.has_analytic_jacobian``): ``passed`` is True if and only if

    1. exact zeros (``sigma_min <= thr = zero_tol * scale``) are not in excess:
       ``zero_count < ZERO_MIN`` (3) or ``zero_count <= E + 3 sqrt(E)``, where
       ``E = n exp(intercept) thr^slope`` is the count the fitted tail power law predicts at
       ``thr`` (``E = 0`` without a fit or with ``slope <= 0``) -- a law like
       ``sigma_min ~ |x_1|^4`` legitimately puts mass below ``1e-12``; and
    2. either (a) no sample has ``sigma_min <= delta_min`` (smallest grid value) and the 95%
       Clopper--Pearson upper bound of ``p(delta_min)`` is at most ``p(delta_max) / 2``;
       or (b) at least 3 grid points are in the tail window, the tail slope satisfies
       ``slope - 2 * slope_se > 0``, and ``p(delta_min) <= p(delta_max) / 2``.

    Otherwise it fails (the ``reason`` says whether for exact zeros, a plateau, or lack of
    data).  The verdict is at the resolution of the grid: a Jacobian whose ``sigma_min`` is
    ``1e-9`` on an open set fails with the default grid (numerically degenerate), and passes
    with a grid reaching below ``1e-9``.  Cost: ``n`` Jacobians and one batched SVD,
    ``O(n d^3)``.

    **Finite differences** (no Jacobian function: central differences with step
    ``h_j = eps^(1/3) max(1, |x_j|)``, :func:`csm.maps.fd_jacobian`).  The computed ``J_h``
    differs from ``Dg`` by an error ``E`` with entries
    ``|E_ij| <~ h_j^2 |d_j^3 g_i| / 6 + eps M_i / h_j`` (truncation plus rounding of the two
    evaluations of ``g_i``, whose terms have magnitude ``M_i ~ |g_i| + |Dg_i.| |x|``; the
    second term is the cancellation of e.g. ``x - gamma grad f(x)`` when ``gamma lambda = 1``),
    and by Weyl's inequality ``|sigma_min(J_h) - sigma_min(Dg)| <= |E|_2 <= |E|_F``.  Per
    sample the check estimates

        ``fd_error = kappa * ( |J_h - J_2h|_F  +  eps (|G|_2 + |J_h|_F |x|_2) |1/h|_2 )``

    where ``J_2h`` is the same differences at twice the step (``J_2h - J_h ~ 3 x`` the
    truncation error of ``J_h``, plus rounding noise of the same size as that of ``J_h``),
    ``G_i = max |g_i|`` over ``x`` and the shifted points, ``|1/h|_2 = (sum_j h_j^-2)^(1/2)``
    (the Frobenius norm of the per-entry rounding bound), and ``kappa = fd_safety``.  A sample
    with ``sigma_min <= max(fd_error, thr)`` is **unresolved**: its ``sigma_min`` is not a
    positive value but "zero, or below what differences resolve".  Then

    1. the grid is cut to ``delta >= resolvable_delta`` (the 99% quantile of ``fd_error``); if
       fewer than 3 values remain the result is **inconclusive** (the decisive small values
       lie below the finite-difference resolution);
    2. rule 2 above is applied to the profile on that grid (a plateau there is a resolved
       failure); exact zeros are not judged by rule 1 -- they are unresolved samples;
    3. a pass becomes **inconclusive** when the unresolved samples are in excess:
       ``unresolved_count >= ZERO_MIN`` and ``> E_u + 3 sqrt(E_u)``,
       ``E_u = sum_i min(1, exp(intercept) fd_error_i^slope)`` the number the tail law puts
       below each sample's own scale.

    ``status`` is ``"passed"``, ``"failed"`` or ``"inconclusive"``; ``passed`` is True only
    for the first.  With ``kappa = 10`` the scale bounds the actual error of smooth maps by a
    wide margin (measured: ``|sigma_min(J_h) - sigma_min(Dg)| <= 0.41 fd_error / kappa`` on
    polynomial, trigonometric and cancelling maps); a sample within ``2h`` of a kink of a
    piecewise-smooth map has an ``O(1)`` estimate and counts as unresolved -- supply the
    (almost-everywhere) Jacobian for such maps.  Cost: another ``2 n d`` evaluations of ``g``
    for ``J_2h`` and ``n`` for ``g(X)``.

    Examples
    --------
    >>> import numpy as np, csm
    >>> g = csm.Map(lambda X: np.stack([X[:, 0] ** 2, 2 * X[:, 1]], 1),
    ...             jacobian=lambda X: np.stack([np.stack([2 * X[:, 0], 0 * X[:, 0]], 1),
    ...                                          np.stack([0 * X[:, 0], 2 + 0 * X[:, 0]], 1)], 1))
    >>> rep = check_jacobian_nondegenerate(g, lambda rng, n: rng.standard_normal((n, 2)), 20000)
    >>> rep.passed, round(rep.slope, 1)
    (True, 1.0)

    Gradient descent on a quadratic whose Hessian has the eigenvalue ``1/gamma`` is singular
    everywhere; central differences see only rounding noise there, and cannot decide:

    >>> Q = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0]
    >>> H = Q @ np.diag([10.0, 4.0, -3.0]) @ Q.T
    >>> gd = csm.GradientDescentMap(lambda X: X @ H.T, 0.1, dim=3)      # no Hessian: FD
    >>> rep = check_jacobian_nondegenerate(gd, lambda rng, n: rng.standard_normal((n, 3)), 5000)
    >>> rep.status, rep.unresolved_count
    ('inconclusive', 5000)
    """
    g = _as_map_arg(map)
    n = positive_int(n, "n", minimum=2)
    zero_tol = positive_float(zero_tol, "zero_tol", allow_zero=True)
    fd_safety = positive_float(fd_safety, "fd_safety")
    min_count, fit_points, n_boot = _fit_settings(min_count, fit_points, n_boot)
    gen = as_rng(rng)
    X = _draw(sampler, gen, n, g.dim)
    J = g.jacobian(X)
    sv = np.linalg.svd(J, compute_uv=False)  # (n, d), decreasing
    smin, smax = sv[:, -1], sv[:, 0]
    _, logdet = np.linalg.slogdet(J)
    scale = float(np.median(smax))
    if scale <= 0:
        scale = 1.0
    thr = zero_tol * scale
    zero_count = int(np.sum(smin <= thr))
    med = float(np.median(smin))
    ref = med if med > thr else scale
    grid = _deltas(deltas, _decades(ref))
    what = "sigma_min(Dg)"
    analytic = g.has_analytic_jacobian
    if analytic:
        err = np.zeros(n)
        unresolved = 0
        expected = res_delta = kappa = 0.0
        prof = _profile(smin, grid, gen, n_boot=n_boot, min_count=min_count, fit_points=fit_points)
        passed, reason = _decay_verdict(prof, zero_count, thr, what)
    else:
        kappa = fd_safety
        err = _fd_error(g, X, J, kappa)
        unresolved = int(np.sum(smin <= np.maximum(err, thr)))
        res_delta = float(np.quantile(err, FD_RESOLUTION_QUANTILE, method="inverted_cdf"))
        kept = grid[grid >= res_delta]
        zeros = f", {zero_count} of them <= {thr:.3g}" if zero_count else ""
        note = (f"{unresolved}/{n} samples have {what} at or below their finite-difference "
                f"resolution (median {float(np.median(err)):.3g}{zeros})")
        if kept.size < 3:
            prof = _profile(smin, grid, gen, n_boot=n_boot, min_count=min_count,
                            fit_points=fit_points)
            expected = 0.0
            passed, reason = False, (
                f"inconclusive: {what} is below what finite differences resolve: only "
                f"{kept.size} of the {grid.size} deltas (largest {grid[0]:.3g}) are >= the "
                f"resolvable delta {res_delta:.3g}; {note}; median {what} {med:.3g}; supply "
                "an analytic `jacobian` (or `deltas` above the resolution)")
        else:
            prof = _profile(smin, kept, gen, n_boot=n_boot, min_count=min_count,
                            fit_points=fit_points)
            expected = _unresolved_expected(prof, np.maximum(err, thr))
            passed, reason = _decay_verdict(prof, 0, thr, what)
            excess = unresolved >= ZERO_MIN and unresolved > expected + 3.0 * math.sqrt(expected)
            dropped = grid.size - kept.size
            left_out = (f"; {dropped} deltas below the resolvable delta {res_delta:.3g} left out"
                        if dropped else "")
            if passed and excess:
                passed, reason = False, (
                    f"inconclusive: the resolved profile decays ({reason}), but {note}, "
                    f"{expected:.3g} expected from the tail: a bad set of positive measure may "
                    f"hide below the resolution; supply an analytic `jacobian`" + left_out)
            else:
                reason = f"{reason}; {note}, {expected:.3g} expected from the tail{left_out}"
    status = "passed" if passed else ("inconclusive" if reason.startswith("inconclusive")
                                      else "failed")
    return NondegeneracyReport(
        passed=bool(passed), status=status, reason=reason, n=n, dim=int(X.shape[1]),
        jacobian="analytic" if analytic else "finite differences", profile=prof,
        zero_count=zero_count, zero_tol=zero_tol, scale=scale, unresolved_count=unresolved,
        unresolved_expected=float(expected), resolvable_delta=float(res_delta),
        fd_safety=float(kappa), sigma_min_quantiles=_quantiles(smin),
        log_abs_det_quantiles=_quantiles(logdet),
        fd_error_quantiles={} if analytic else _quantiles(err),
        log_abs_det_mean=float(np.mean(logdet)), sigma_min=smin, log_abs_det=logdet,
        fd_error=err,
    )


def _as_map_arg(map: Any) -> Map:
    if isinstance(map, Map):
        return map
    if callable(map):
        return as_map(map)
    raise InputError(f"`map` must be a csm.Map or a batched callable (B, d) -> (B, d), got "
                     f"{type(map).__name__}")


def _fit_settings(min_count: Any, fit_points: Any, n_boot: Any) -> tuple[int, int, int]:
    return (positive_int(min_count, "min_count"), positive_int(fit_points, "fit_points", minimum=3),
            positive_int(n_boot, "n_boot", minimum=2))


# --------------------------------------------------------------------------------------
# 2. Null preimages (conclusion of Lemma 2.4)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreimageReport(_ProfileReport):
    """Result of :func:`check_preimage_null`.

    Attributes
    ----------
    passed, reason : bool, str
        See the rule in :func:`check_preimage_null`.
    n, dim : int
    profile : SmallValueProfile
        ``p(delta) = P(dist(g(X), Z) <= delta)``.
    zero_count : int
        Samples with ``dist(g(X), Z) <= zero_tol * scale`` (``g(X)`` lands on ``Z``).
    zero_tol, scale : float
        ``scale`` = median of ``|g(X)|`` (1 if that is 0).
    distance_quantiles : dict
    distances : ndarray (n,)
        Per-sample ``|distance(g(X_i))|`` (not in :meth:`to_dict`).
    """

    _ARRAYS = ('distances',)

    passed: bool
    reason: str
    n: int
    dim: int
    profile: SmallValueProfile
    zero_count: int
    zero_tol: float
    scale: float
    distance_quantiles: dict
    distances: np.ndarray = field(repr=False)


def check_preimage_null(
    map: Any,
    distance: Callable[[np.ndarray], np.ndarray],
    sampler: Any,
    n: int,
    *,
    rng: Any = None,
    deltas: Any = None,
    zero_tol: float = ZERO_TOL,
    min_count: int = 10,
    fit_points: int = 5,
    n_boot: int = 200,
) -> PreimageReport:
    """Probe the conclusion of Lemma 2.4: ``g^{-1}(Z)`` is null for a null set ``Z`` (MATH.md §1.4 (b)).

    For ``X`` from an absolutely continuous law, ``X in g^{-1}(Z)`` iff ``g(X) in Z``; the check
    measures ``p(delta) = P(dist(g(X), Z) <= delta)`` over decades of ``delta``.

    Reading the figures: if ``g`` is a local diffeomorphism off a null set, ``g(X)`` has a
    density, so ``p(delta) ~ C delta^c`` with ``c`` the codimension of ``Z`` (a hyperplane:
    slope ~ 1; a point in ``R^2``: slope ~ 2; ``c`` smaller where ``g`` folds onto ``Z``, e.g.
    ``x -> x^2`` onto ``{0}``: slope 1/2).  A map that collapses an open set onto ``Z`` gives a
    plateau at the mass of that set, and exact zeros.

    Parameters
    ----------
    map : Map or callable
        ``g`` (batched).
    distance : callable
        Vectorised ``distance(Y) -> (n,)``: distance (or any function comparable to it, e.g. a
        signed distance, whose absolute value is used) of each row of ``Y`` to ``Z``.
    sampler : callable or Problem
        ``sampler(rng, n) -> (n, d)``, absolutely continuous law.
    n : int
        Number of samples (>= 2).
    rng, deltas, zero_tol, min_count, fit_points, n_boot
        As in :func:`check_jacobian_nondegenerate`; the default grid starts at the median
        distance (or ``scale`` when that is zero), and ``zero_tol`` is relative to
        ``scale`` = median ``|g(X)|``.

    Returns
    -------
    PreimageReport

    Notes
    -----
    ``passed`` follows the rule of :func:`check_jacobian_nondegenerate` with ``sigma_min``
    replaced by the distance: exact zeros (``g(X)`` on ``Z``) not in excess of what the tail
    power law predicts (at least ``ZERO_MIN`` = 3 and more than ``E + 3 sqrt(E)`` fail), and
    either no sample at or below the smallest ``delta`` (with the 95% upper bound there at most
    half of ``p(delta_max)``) or a tail slope with ``slope - 2 se > 0`` and
    ``p(delta_min) <= p(delta_max)/2``.
    Cost: one batched evaluation of ``g`` and of ``distance``.

    Examples
    --------
    >>> import numpy as np, csm
    >>> g = csm.Map(lambda X: np.stack([X[:, 0] ** 3 + X[:, 0], X[:, 1]], 1))
    >>> gauss = lambda rng, n: rng.standard_normal((n, 2))
    >>> rep = check_preimage_null(g, lambda Y: Y[:, 0], gauss, 20000)
    >>> rep.passed, round(rep.slope, 1)
    (True, 1.0)
    """
    g = _as_map_arg(map)
    if not callable(distance):
        raise InputError(f"`distance` must be a vectorised callable (n, d) -> (n,), got "
                         f"{type(distance).__name__}")
    n = positive_int(n, "n", minimum=2)
    zero_tol = positive_float(zero_tol, "zero_tol", allow_zero=True)
    min_count, fit_points, n_boot = _fit_settings(min_count, fit_points, n_boot)
    gen = as_rng(rng)
    X = _draw(sampler, gen, n, g.dim)
    Y = g(X)
    D = np.asarray(distance(Y), dtype=float)
    if D.shape != (n,):
        raise ShapeError(f"`distance` must return shape ({n},) for {n} points, got shape {D.shape}")
    check_finite(D, "`distance`", Y)
    D = np.abs(D)
    scale = float(np.median(np.linalg.norm(Y, axis=1)))
    if scale <= 0:
        scale = 1.0
    thr = zero_tol * scale
    zero_count = int(np.sum(D <= thr))
    med = float(np.median(D))
    if med > thr:
        ref = med
    else:
        pos = D[D > thr]
        ref = float(np.median(pos)) if pos.size else scale
    grid = _deltas(deltas, _decades(ref))
    prof = _profile(D, grid, gen, n_boot=n_boot, min_count=min_count, fit_points=fit_points)
    passed, reason = _decay_verdict(prof, zero_count, thr, "dist(g(X), Z)")
    return PreimageReport(
        passed=passed, reason=reason, n=n, dim=int(X.shape[1]), profile=prof,
        zero_count=zero_count, zero_tol=zero_tol, scale=scale,
        distance_quantiles=_quantiles(D), distances=D,
    )


# --------------------------------------------------------------------------------------
# 3. Bad step sizes (Proposition 2.5 / Lemma 4.4)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadStepReport(_Report):
    """Result of :func:`bad_step_sizes`.

    Attributes
    ----------
    passed, reason : bool, str
        See the rule in :func:`bad_step_sizes`.
    n, dim : int
    n_bad_steps : int
        Number of pooled bad steps ``1/lambda`` (distinct positive eigenvalues, all samples).
    positive_fraction : float
        Fraction of samples with at least one positive Hessian eigenvalue.
    step_quantiles : dict
        Quantiles of the pooled bad steps ``gamma = 1/lambda``.
    deltas : ndarray (K,)
        Window widths in ``log gamma`` (decreasing).
    window_mass : ndarray (K,)
        ``M(delta)``: the largest number of pooled bad steps in a window
        ``[log gamma, log gamma + delta]``, divided by ``n``.
    window_counts : ndarray (K,)
        ``n * M(delta)``.
    slope, slope_se, intercept : float
        Tail fit of ``log M`` against ``log delta`` (1 for a density, 0 for an atom).
    fit_indices : tuple of int
    atom_count : int
        Largest number of samples sharing a bad step to within ``ATOM_WIDTH`` in ``log gamma``.
    atoms : list of dict
        Up to 5 detected atoms (clusters of >= ``atom_min`` samples within ``ATOM_WIDTH``):
        ``{"step": gamma, "mass": fraction of samples, "lower": 95% lower bound}``.
    step : float or None
        The step size asked about.
    step_tol : float
        Relative band: ``I - step*H`` counts as singular when ``min_i |1 - step lambda_i| <=
        step_tol`` (equivalently ``sigma_min(I - step H) <= step_tol``).
    step_bad_count, step_bad_fraction, step_bad_upper : int, float, float
        How many samples are in the band, the fraction, its 95% Clopper--Pearson upper bound.
    step_profile : SmallValueProfile or None
        ``P(min_i |1 - step lambda_i| < tau)`` over ``tau = deltas / 2``.
    steps : ndarray
        The pooled bad steps (not in :meth:`to_dict`).
    """

    _ARRAYS = ('steps',)

    passed: bool
    reason: str
    n: int
    dim: int
    n_bad_steps: int
    positive_fraction: float
    step_quantiles: dict
    deltas: np.ndarray
    window_mass: np.ndarray
    window_counts: np.ndarray
    slope: float
    slope_se: float
    intercept: float
    fit_indices: tuple[int, ...]
    atom_count: int
    atoms: list
    step: float | None
    step_tol: float
    step_bad_count: int | None
    step_bad_fraction: float | None
    step_bad_upper: float | None
    step_profile: SmallValueProfile | None
    steps: np.ndarray = field(repr=False)


def _hessian_callable(hessian: Any) -> Callable[[np.ndarray], np.ndarray]:
    h = getattr(hessian, "hessian", None)
    if h is not None and callable(h):
        return h
    if h is None and hasattr(hessian, "gradient") and hasattr(hessian, "step"):
        raise InputError("`hessian`: this gradient-descent map has no Hessian; pass a batched "
                         "Hessian callable (B, d) -> (B, d, d) or a Problem with .hessian")
    if callable(hessian):
        return hessian
    raise InputError(f"`hessian` must be a batched callable (B, d) -> (B, d, d) or a Problem with "
                     f".hessian, got {type(hessian).__name__}")


def _window_max(s: np.ndarray, hi_idx: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Max over windows starting at each sorted value: counts (or weight sums) per row of hi_idx."""
    if w is None:
        return np.max(hi_idx - np.arange(s.size)[None, :], axis=1)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    return np.max(cw[hi_idx] - cw[np.arange(s.size)][None, :], axis=1)


def _atoms(s: np.ndarray, owners: np.ndarray, n: int, width: float, atom_min: int) -> tuple[int, list]:
    """Clusters of sorted log-steps whose consecutive gaps are <= width."""
    if s.size == 0:
        return 0, []
    breaks = np.nonzero(np.diff(s) > width)[0] + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [s.size]])
    sizes = ends - starts
    # count distinct samples per cluster (a sample's own repeated eigenvalues count once)
    cid = np.repeat(np.arange(sizes.size), sizes)
    pairs = np.unique(cid.astype(np.int64) * n + owners)
    distinct = np.bincount(pairs // n, minlength=sizes.size)
    atom_count = int(distinct.max())
    order = np.argsort(-distinct, kind="stable")
    out = []
    for c in order[:5]:
        if distinct[c] < atom_min:
            break
        lo, _ = clopper_pearson(distinct[c], n)
        out.append({"step": float(np.exp(np.mean(s[starts[c]:ends[c]]))),
                    "mass": float(distinct[c] / n), "lower": float(lo)})
    return atom_count, out


def bad_step_sizes(
    hessian: Any,
    sampler: Any,
    n: int,
    *,
    rng: Any = None,
    step: float | None = None,
    deltas: Any = None,
    step_tol: float = 1e-3,
    eig_tol: float = 1e-10,
    atom_min: int = 3,
    min_count: int = 20,
    fit_points: int = 5,
    n_boot: int = 100,
) -> BadStepReport:
    """Bad step sizes of gradient descent and an atom test (Proposition 2.5, Lemma 4.4; MATH.md §1.5).

    ``D Psi(theta) = I - gamma H(theta)`` (``H = DG`` the Hessian) is singular exactly when
    ``gamma = 1/lambda`` for an eigenvalue ``lambda > 0`` of ``H(theta)``.  For ``theta`` drawn
    from an absolutely continuous law this collects the *bad steps* ``gamma = 1/lambda`` of every
    sample (eigenvalues of one sample equal to within ``1e-9`` relative counted once) and
    measures whether their law has atoms: the largest mass ``M(delta)`` of a window of width
    ``delta`` in ``log gamma`` (relative width: ``gamma`` to ``gamma e^delta``), normalised by
    ``n``.  ``M(delta)`` bounds from above the probability that a fixed step in the window is
    bad for ``theta``.

    Reading the figures: a density gives ``M(delta) ~ C delta`` (tail slope ~ 1; the max over
    windows biases it slightly low at small counts); an atom at ``gamma_0`` (a set of positive
    measure on which ``1/gamma_0`` is an eigenvalue, e.g. a region where the Hessian is
    constant) gives a plateau ``M(delta) -> P(gamma_0 bad) > 0`` and exact ties, listed in
    ``atoms`` with their location: those steps make ``Psi`` degenerate on a set of positive
    measure and must be avoided.  Proposition 2.5 only needs the bad set to be null in
    ``(gamma, theta)`` jointly (atoms at countably many steps are allowed); passing this
    check is the stronger statement that *every* step is bad only on a null set of ``theta``.

    Parameters
    ----------
    hessian : callable or Problem
        Batched ``H: (B, d) -> (B, d, d)``, or a Problem (its ``hessian`` is used).  It is
        symmetrised, ``(H + H^T)/2``.
    sampler : callable or Problem
        ``sampler(rng, n) -> (n, d)``, absolutely continuous law.
    n : int
        Number of sample points (>= 2).
    rng : Generator or int, optional
    step : float, optional
        A step size ``gamma`` to assess: the probability that ``I - gamma H(theta)`` is singular
        within ``step_tol``, with its Clopper--Pearson 95% upper bound, and the profile of that
        probability as the band shrinks (``tau = deltas / 2``: the window of width ``delta``
        centred at ``log gamma``).
    deltas : array_like, optional
        Window widths in ``log gamma``; default ``10^(-k/2)``, ``k = 0..12``.
    step_tol : float
        Band for ``step`` (default ``1e-3``).
    eig_tol : float
        Eigenvalues ``lambda <= eig_tol * max_i |lambda_i|`` (per sample) count as zero, not as
        positive (no bad step ``~1/rounding-error``).
    atom_min : int
        A cluster of at least this many samples sharing a bad step (within ``ATOM_WIDTH``) is an
        atom (default 3; two samples coincide by chance with probability ~``N^2 ATOM_WIDTH``).
    min_count, fit_points, n_boot : int
        Tail fit over the ``fit_points`` smallest widths whose window count is ``>= min_count``;
        standard error from ``n_boot`` bootstrap replicates (samples resampled with their bad
        steps).

    Returns
    -------
    BadStepReport

    Notes
    -----
    ``passed`` is True if and only if

    1. no sample has a positive eigenvalue (no bad step at all); or
    2. ``atom_count < atom_min`` (no atom) **and** at least 3 widths are in the tail window,
       ``slope - 2 * slope_se > 0`` and ``M(delta_min fit) <= M(delta_max) / 2``.

    Otherwise it fails (atoms, a plateau, or too few bad steps: increase ``n``).
    Cost: one batched Hessian, batched ``eigvalsh`` ``O(n d^3)``, sorting ``O(N log N)`` for the
    ``N`` pooled bad steps, bootstrap ``O(n_boot K N)``.

    Examples
    --------
    >>> import numpy as np
    >>> H = lambda X: np.einsum("bi,ij->bij", X**2, np.eye(2))   # L = sum x_i^4 / 12
    >>> rep = bad_step_sizes(H, lambda rng, n: rng.standard_normal((n, 2)), 5000, step=0.5)
    >>> rep.passed, rep.atom_count < 3
    (True, True)
    """
    hfun = _hessian_callable(hessian)
    n = positive_int(n, "n", minimum=2)
    step_tol = positive_float(step_tol, "step_tol")
    eig_tol = positive_float(eig_tol, "eig_tol", allow_zero=True)
    atom_min = positive_int(atom_min, "atom_min", minimum=2)
    min_count, fit_points, n_boot = _fit_settings(min_count, fit_points, n_boot)
    if step is not None:
        step = positive_float(step, "step")
    gen = as_rng(rng)
    dim = getattr(hessian, "dim", None) if hasattr(hessian, "gradient") else None
    X = _draw(sampler, gen, n, dim if isinstance(dim, (int, np.integer)) else None)
    d = X.shape[1]
    H = np.asarray(hfun(X), dtype=float)
    if H.shape != (n, d, d):
        raise ShapeError(f"`hessian` must return shape ({n}, {d}, {d}) for {n} points in R^{d}, "
                         f"got shape {H.shape}")
    check_finite(H, "`hessian`", X)
    lam = np.linalg.eigvalsh(0.5 * (H + np.swapaxes(H, 1, 2)))  # (n, d) ascending
    top = np.max(np.abs(lam), axis=1, keepdims=True)
    pos = lam > eig_tol * top
    # drop repeated eigenvalues of one sample (relative 1e-9): they are one bad step
    rep = np.zeros_like(pos)
    rep[:, 1:] = np.abs(np.diff(lam, axis=1)) <= 1e-9 * np.abs(lam[:, 1:])
    keep = pos & ~rep
    owners = np.nonzero(keep)[0]
    logs = -np.log(lam[keep])  # log gamma
    order = np.argsort(logs, kind="stable")
    s, owners = logs[order], owners[order]
    N = s.size
    positive_fraction = float(np.mean(pos.any(axis=1)))
    grid = _deltas(deltas, _decades(1.0))
    K = grid.size

    # the given step
    step_fields: dict[str, Any] = dict(step_bad_count=None, step_bad_fraction=None,
                                       step_bad_upper=None, step_profile=None)
    if step is not None:
        r = np.min(np.abs(1.0 - step * lam), axis=1)
        cnt = int(np.sum(r <= step_tol))
        _, up = clopper_pearson(cnt, n)
        step_fields = dict(
            step_bad_count=cnt, step_bad_fraction=cnt / n, step_bad_upper=float(up),
            step_profile=_profile(r, grid / 2.0, gen, n_boot=200, min_count=10,
                                  fit_points=fit_points),
        )

    common = dict(n=n, dim=d, n_bad_steps=int(N), positive_fraction=positive_fraction,
                  step_quantiles=_quantiles(np.exp(s)), deltas=grid, step=step,
                  step_tol=step_tol, steps=np.exp(s), **step_fields)
    if N == 0:
        return BadStepReport(
            passed=True, reason="no sample has a positive Hessian eigenvalue: no step is bad",
            window_mass=np.zeros(K), window_counts=np.zeros(K, dtype=int), slope=float("nan"),
            slope_se=float("nan"), intercept=float("nan"), fit_indices=(), atom_count=0,
            atoms=[], **common,
        )
    # window [s_i, s_i + delta] holds the values s_i..s_{hi-1}; one row of K at a time (memory)
    counts = np.array([_window_max(s, np.searchsorted(s, s + dl, side="right")[None, :])[0]
                       for dl in grid])
    mass = counts / n
    atom_count, atoms = _atoms(s, owners, n, ATOM_WIDTH, atom_min)
    qual = np.nonzero(counts >= min_count)[0]
    idx = qual[-fit_points:] if qual.size else qual
    slope = se = intercept = float("nan")
    if idx.size >= 3:
        x = np.log(grid[idx])
        sl, b = _ols_slope(x, np.log(mass[idx])[None, :])
        slope, intercept = float(sl[0]), float(b[0])
        sub = np.searchsorted(s, s[None, :] + grid[idx][:, None], side="right")  # (<= 5, N)
        slopes_b = np.empty(n_boot)
        for t in range(n_boot):  # loop over bootstrap replicates, each fully vectorised
            wsamp = gen.multinomial(n, np.full(n, 1.0 / n))
            mb = _window_max(s, sub, wsamp[owners].astype(float))
            slopes_b[t] = _ols_slope(x, np.log(np.maximum(mb, 0.5) / n)[None, :])[0][0]
        se = float(np.std(slopes_b, ddof=1))
    if atom_count >= atom_min:
        where = ", ".join(f"step {a['step']:.6g} (mass {a['mass']:.3g})" for a in atoms)
        passed, reason = False, (
            f"atoms: {atom_count} samples share a bad step to {ATOM_WIDTH:g} in log step; "
            f"D Psi is singular on a set of positive measure for {where}")
    elif idx.size < 3:
        passed, reason = False, (
            f"inconclusive: only {idx.size} window widths hold >= {min_count} bad steps; increase `n`")
    else:
        drop = mass[idx[-1]] <= 0.5 * mass[0]
        passed = bool(slope - 2 * se > 0 and drop)
        reason = (f"window-mass tail slope {slope:.3f} +- {se:.3f} (1 s.e.), no atom "
                  f"(at most {atom_count} sample(s) share a bad step)")
        reason += ": no step size is bad on a set of positive measure" if passed else ": plateau"
    return BadStepReport(
        passed=passed, reason=reason, window_mass=mass, window_counts=counts, slope=slope,
        slope_se=se, intercept=intercept, fit_indices=tuple(int(i) for i in idx),
        atom_count=atom_count, atoms=atoms, **common,
    )


# --------------------------------------------------------------------------------------
# 4. Escape rate (Corollary 2.3, quantitative)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EscapeRateReport(_Report):
    """Result of :func:`escape_rate`.

    Attributes
    ----------
    passed, reason : bool, str
        ``|ratio - 1| <= rtol`` (and a valid fitting window).
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

    _ARRAYS = ('exit_times',)
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


def _exit_times(g: Map, X: np.ndarray, n_steps: int,
                inside: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """First k in 1..n_steps with g^k(x) outside (n_steps + 1 if it stays); batched."""
    T = np.full(X.shape[0], n_steps + 1, dtype=np.int64)
    alive = np.arange(X.shape[0])
    Y = X.copy()
    for k in range(1, n_steps + 1):
        if alive.size == 0:
            break
        Y = g(Y)
        ok = inside(Y)
        T[alive[~ok]] = k
        alive, Y = alive[ok], Y[ok]
    return T


def _fixed_point_jacobian(g: Map, x: np.ndarray, jacobian: Any, fixed_tol: float) -> np.ndarray:
    d = x.size
    res = float(np.linalg.norm(g(x) - x))
    if res > fixed_tol * max(1.0, float(np.linalg.norm(x))):
        raise NotFixedPointError(
            f"`fixed_point` is not a fixed point of the map: |g(x*) - x*| = {res:.3e} > "
            f"fixed_tol * max(1, |x*|) = {fixed_tol * max(1.0, float(np.linalg.norm(x))):.3e}")
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
    fixed_tol: float = 1e-8,
    n_boot: int = 200,
) -> EscapeRateReport:
    """Exponential escape from a ball around a saddle (Corollary 2.3, quantitative; MATH.md §1.6).

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
        ``x*``; ``|g(x*) - x*| <= fixed_tol * max(1, |x*|)`` is required.
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
    fixed_tol : float
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
    g = _as_map_arg(map)
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
    fixed_tol = positive_float(fixed_tol, "fixed_tol", allow_zero=True)
    n_boot = positive_int(n_boot, "n_boot", minimum=2)
    gen = as_rng(rng)
    A = _fixed_point_jacobian(g, x, jacobian, fixed_tol)
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
    r2 = radius * radius
    T = _exit_times(g, X0, n_steps, lambda Y: np.sum((Y - x) ** 2, axis=1) <= r2)
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
        fitted = float(-_wls_slope(kf, np.log(S / n_points)[None, :], S[None, :])[0])
        reps = gen.multinomial(n_points, hist / n_points, size=n_boot)
        Sb = np.maximum(n_points - np.cumsum(reps, axis=1)[:, ks], 0.5)
        sb = _wls_slope(kf, np.log(Sb / n_points), Sb)
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
class ManifoldStayReport(_Report):
    """Result of :func:`manifold_stay_fraction`.

    Attributes
    ----------
    passed, reason : bool, str
        ``fraction >= min_fraction``.
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

    _ARRAYS = ('exit_times',)

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

    The counterpart of :func:`escape_rate` (Theorem 2.2 / Corollary 2.3): points drawn on the
    manifold (``csm.center_stable_manifold(map, x*).sample(n, rng)``) should stay in the ball
    ``|Q^{-1}(x - x*)| <= eps`` (the manifold's own norm, :meth:`eigen_norm`), whereas uniform
    points leave at rate ``sum log|lambda_u|``.  The graph is computed to ``tol`` (default
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
    g = _as_map_arg(map)
    x = as_point(fixed_point, g.dim, name="fixed_point")
    n_points = positive_int(n_points, "n_points", minimum=2)
    n_steps = positive_int(n_steps, "n_steps", minimum=1)
    min_fraction = positive_float(min_fraction, "min_fraction")
    gen = as_rng(rng)
    if manifold is None:
        from .manifold import center_stable_manifold

        kw: dict[str, Any] = {}
        if radius is not None:
            kw["radius"] = radius
        if jacobian is not None:
            kw["jacobian"] = jacobian
        manifold = center_stable_manifold(g, x, **kw)
    eps = float(manifold.radius)
    lim = eps * (1.0 + 1e-9)
    X0 = np.asarray(manifold.sample(n_points, gen), dtype=float)
    T = _exit_times(g, X0, n_steps, lambda Y: manifold.eigen_norm(Y) <= lim)
    stayed = int(np.sum(T > n_steps))
    frac = stayed / n_points
    lo, _ = clopper_pearson(stayed, n_points)
    ball = None
    if compare_ball:
        Z = _uniform_ball(gen, n_points, np.zeros(x.size), 1.0) * eps
        Q = manifold.split.Q if getattr(manifold, "split", None) is not None else None
        Xb = x + (Z @ Q.T if Q is not None else Z)  # uniform in the eigen-coordinate ball
        Tb = _exit_times(g, Xb, n_steps, lambda Y: manifold.eigen_norm(Y) <= lim)
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
        exit_quantiles=_quantiles(left.astype(float)), ball_fraction=ball, exit_times=T,
    )

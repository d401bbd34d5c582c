"""The tail-fit toolkit shared by the measure checks (docs/theory.md §1.4--§1.5).

The measure checks of Lemma 2.4 and Proposition 2.5 cannot observe "null" directly: a sample
never hits a null set.  They measure a *rate* instead, with the tools of this module: how fast
the probability of coming within ``delta`` of the bad set goes to zero as ``delta`` shrinks.
A null set of codimension ``c`` gives ``P ~ C delta^c`` (a straight line of slope ``c > 0`` in
log-log); a bad set of positive measure gives a plateau (slope 0).

Samplers
--------
A *sampler* is a callable ``sampler(rng, n) -> ndarray (n, d)`` that draws ``n`` points from an
**absolutely continuous** law on ``R^d`` (one with a density: Gaussian, uniform on a box, ...)
using the numpy ``Generator`` ``rng``.  Only such laws see null sets as null.  A
:class:`~csm.Problem` is accepted too: its ``sample(rng, n)`` method is used
(:func:`as_sampler`, :func:`draw_sample`).

Fits over ``delta`` (the *tail fit*)
------------------------------------
For a sample ``v_1..v_n >= 0`` of "distances to the bad set" and a grid ``delta_0 > delta_1 >
...`` the count ``c_k = #{i : v_i <= delta_k}`` and ``p_k = c_k / n`` are reported with exact
(Clopper--Pearson) upper confidence bounds.  The slope is the least-squares slope of
``log p_k`` against ``log delta_k`` over the *tail window*: the ``fit_points`` smallest
``delta_k`` whose count is at least ``min_count`` (smaller counts are dominated by Poisson
noise; :func:`tail_window`).  Its standard error is the standard deviation of the same slope
over ``n_boot`` multinomial bootstrap replicates of the sample (counts of zero are read as
0.5).  The tail window looks at the smallest resolvable ``delta``: a small plateau hiding
under a large regular part shows there.  :func:`small_value_profile` computes it,
:func:`decay_verdict` turns it into the ``passed`` rule of checks 1 and 2.

Examples
--------
>>> import numpy as np
>>> v = np.abs(np.random.default_rng(0).standard_normal(20000))   # P(|x| <= d) ~ d: slope 1
>>> prof = small_value_profile(v, decades(1.0), np.random.default_rng(1))
>>> prof.counts[:4], prof.fit_indices
(array([13685,  4907,  1513,   464]), (2, 3, 4, 5, 6))
>>> f"{prof.slope:.2f} +- {prof.slope_se:.2f}", abs(prof.slope - 1) < 2 * prof.slope_se
('1.08 +- 0.07', True)
>>> decay_verdict(prof, 0, 1e-12, "|x|")[0]
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._results import to_jsonable
from .._validation import check_finite, positive_int
from ..confidence import clopper_pearson
from ..errors import InputError, ShapeError

__all__ = [
    "ZERO_TOL",
    "ZERO_MIN",
    "CONFIDENCE",
    "QUANTILE_LEVELS",
    "Sampler",
    "as_sampler",
    "draw_sample",
    "delta_grid",
    "decades",
    "fit_settings",
    "exact_zeros",
    "ols_slope",
    "wls_slope",
    "quantiles",
    "tail_window",
    "SmallValueProfile",
    "small_value_profile",
    "expected_below",
    "decay_verdict",
]

#: Relative threshold below which a singular value / distance counts as exactly zero.
ZERO_TOL = 1e-12
#: Exact zeros fail a check only when there are at least this many (and more than the tail
#: predicts).
ZERO_MIN = 3
#: Confidence level of all Clopper--Pearson bounds.
CONFIDENCE = 0.95
#: Levels of the quantile summaries (:func:`quantiles`): keys ``q00, q01, ..., q100``.
QUANTILE_LEVELS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)

Sampler = Callable[[np.random.Generator, int], np.ndarray]


# --------------------------------------------------------------------------------------
# Samples and grids
# --------------------------------------------------------------------------------------


def as_sampler(sampler: Any, name: str = "sampler") -> Sampler:
    """Return ``sampler`` as a callable ``(rng, n) -> (n, d)``; a Problem gives its ``sample``.

    Parameters
    ----------
    sampler : callable or object with a ``sample(rng, n)`` method
        Draws from an absolutely continuous law (module docstring).
    name : str
        The argument's name in error messages.

    Raises
    ------
    InputError
        When ``sampler`` is neither.
    """
    meth = getattr(sampler, "sample", None)
    if meth is not None and callable(meth):
        return meth  # a Problem (or any object with a .sample(rng, n) method)
    if callable(sampler):
        return sampler
    raise InputError(
        f"`{name}` must be a callable sampler(rng, n) -> (n, d) drawing from an absolutely "
        f"continuous law, or a Problem with a .sample(rng, n) method; got {type(sampler).__name__}"
    )


def draw_sample(sampler: Any, rng: np.random.Generator, n: int, dim: int | None,
                name: str = "sampler") -> np.ndarray:
    """Draw ``n`` points with ``sampler`` and check shape ``(n, dim)`` and finiteness.

    ``dim=None`` accepts any number of columns.  Raises :class:`~csm.ShapeError` or
    :class:`~csm.NonFiniteError` naming ``name``.
    """
    fn = as_sampler(sampler, name)
    X = np.asarray(fn(rng, n), dtype=float)
    if X.ndim != 2 or X.shape[0] != n or (dim is not None and X.shape[1] != dim):
        want = f"({n}, {dim})" if dim is not None else f"({n}, d)"
        raise ShapeError(f"`{name}` must return an array of shape {want} for n={n}, got shape {X.shape}")
    check_finite(X, f"`{name}`")
    return X


def delta_grid(deltas: Any, default: np.ndarray, name: str = "deltas") -> np.ndarray:
    """The validated grid of ``delta``: sorted in *decreasing* order, duplicates removed.

    ``deltas=None`` gives ``default``.  At least 3 distinct finite values ``> 0`` are required
    (:class:`~csm.InputError` / :class:`~csm.ShapeError` otherwise).
    """
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


def decades(top: float, n_decades: int = 6, per_decade: int = 2) -> np.ndarray:
    """The default grid ``top * 10^(-k / per_decade)``, ``k = 0..n_decades * per_decade``."""
    return top * 10.0 ** (-np.arange(n_decades * per_decade + 1) / per_decade)


def fit_settings(min_count: Any, fit_points: Any, n_boot: Any) -> tuple[int, int, int]:
    """Validated tail-fit settings ``(min_count >= 1, fit_points >= 3, n_boot >= 2)``."""
    return (positive_int(min_count, "min_count"), positive_int(fit_points, "fit_points", minimum=3),
            positive_int(n_boot, "n_boot", minimum=2))


def exact_zeros(values: np.ndarray, scale: float, zero_tol: float) -> tuple[float, float, int]:
    """Values that count as exactly zero: ``v <= thr = zero_tol * scale``.

    ``scale`` (the typical size of the quantity, e.g. the median largest singular value) is read
    as 1 when it is not positive.  Returns ``(scale, thr, count)``.
    """
    if scale <= 0:
        scale = 1.0
    thr = zero_tol * scale
    return scale, thr, int(np.sum(values <= thr))


# --------------------------------------------------------------------------------------
# Slopes, windows, quantiles
# --------------------------------------------------------------------------------------


def ols_slope(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of ``Y`` against ``x``."""
    xc = x - x.mean()
    slope = (Y - Y.mean(axis=-1, keepdims=True)) @ xc / np.sum(xc**2)
    return slope, Y.mean(axis=-1) - slope * x.mean()


def wls_slope(x: np.ndarray, Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted least-squares slope of each row of ``Y`` against ``x`` (weights ``W``, same shape)."""
    sw = W.sum(axis=-1, keepdims=True)
    xm = (W * x).sum(axis=-1, keepdims=True) / sw
    ym = (W * Y).sum(axis=-1, keepdims=True) / sw
    return ((W * (x - xm) * (Y - ym)).sum(axis=-1)) / (W * (x - xm) ** 2).sum(axis=-1)


def tail_window(counts: np.ndarray, min_count: int, fit_points: int) -> np.ndarray:
    """Grid indices of the tail window: the last ``fit_points`` with ``counts >= min_count``.

    ``counts`` decrease along the decreasing grid, so the qualifying indices are a prefix and
    the window is its end (the smallest resolvable ``delta``).
    """
    qual = np.nonzero(counts >= min_count)[0]
    return qual[-fit_points:] if qual.size else qual


def quantiles(v: np.ndarray) -> dict[str, float]:
    """Quantiles of ``v`` at :data:`QUANTILE_LEVELS` as ``{"q00": ..., "q50": ..., "q100": ...}``.

    Empty for an empty ``v``.  With infinite values the quantiles are sample values
    (``"inverted_cdf"``), no interpolation between ``-inf`` and a number.
    """
    if v.size == 0:
        return {}
    q = np.quantile(v, QUANTILE_LEVELS, method="linear" if np.all(np.isfinite(v)) else "inverted_cdf")
    return {f"q{int(round(100 * p)):02d}": float(x) for p, x in zip(QUANTILE_LEVELS, q)}


# --------------------------------------------------------------------------------------
# The small-value profile and its verdict
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
        """Number of grid points in the tail fit."""
        return len(self.fit_indices)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary of all fields."""
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


def small_value_profile(values: np.ndarray, deltas: np.ndarray, rng: np.random.Generator, *,
                        n_boot: int = 200, min_count: int = 10,
                        fit_points: int = 5) -> SmallValueProfile:
    """The profile ``P(v <= delta)`` of a sample and its tail fit (docs/theory.md §1.4).

    Parameters
    ----------
    values : ndarray (n,)
        The sample ``v_i >= 0`` (distances to the bad set, smallest singular values, ...).
    deltas : ndarray (K,)
        Decreasing grid (see :func:`delta_grid`).
    rng : Generator
        Randomness of the multinomial bootstrap.
    n_boot, min_count, fit_points : int
        Tail-fit settings (module docstring).

    Returns
    -------
    SmallValueProfile
    """
    n = values.size
    v = np.sort(values)
    asc = deltas[::-1]
    counts_asc = np.searchsorted(v, asc, side="right")  # #{v <= delta}
    counts = counts_asc[::-1].copy()
    fractions = counts / n
    _, upper = clopper_pearson(counts, n)
    idx = tail_window(counts, min_count, fit_points)
    slope = se = intercept = float("nan")
    if idx.size >= 3:
        x = np.log(deltas[idx])
        s, b = ols_slope(x, np.log(counts[idx] / n)[None, :])
        slope, intercept = float(s[0]), float(b[0])
        masses = np.diff(np.concatenate([[0], counts_asc, [n]]))
        reps = rng.multinomial(n, masses / n, size=n_boot)
        cum = np.cumsum(reps, axis=1)[:, :-1][:, ::-1][:, idx]
        sb, _ = ols_slope(x, np.log(np.maximum(cum, 0.5) / n))
        se = float(np.std(sb, ddof=1))
    return SmallValueProfile(
        deltas=deltas, counts=counts, fractions=fractions, upper=upper, slope=slope,
        slope_se=se, intercept=intercept, fit_indices=tuple(int(i) for i in idx), n=n,
        n_boot=n_boot, min_count=min_count,
    )


def expected_below(prof: SmallValueProfile, thresholds: float | np.ndarray) -> float:
    """Samples the fitted tail law ``P(v <= t) = exp(intercept) t^slope`` puts below ``t``.

    ``thresholds`` is one threshold for all ``n`` samples (``n min(1, exp(intercept)
    t^slope)``, 0 for ``t <= 0``) or one per sample (``sum_i min(1, exp(intercept)
    t_i^slope)``).  0 without a fit (fewer than 3 points) or with ``slope <= 0``.
    """
    if prof.n_fit < 3 or not prof.slope > 0:
        return 0.0
    if np.ndim(thresholds) == 0:
        thr = float(thresholds)
        if thr <= 0:
            return 0.0
        return float(prof.n * min(1.0, math.exp(prof.intercept + prof.slope * math.log(thr))))
    with np.errstate(divide="ignore", over="ignore"):
        p = np.exp(prof.intercept + prof.slope * np.log(thresholds))
    return float(np.sum(np.minimum(1.0, p)))


def decay_verdict(prof: SmallValueProfile, zero_count: int, thr: float,
                  what: str) -> tuple[bool, str]:
    """The ``passed`` rule shared by the checks of Lemma 2.4 (docs/theory.md §1.4).

    1. Exact zeros (``zero_count`` values ``<= thr``) fail when there are at least
       :data:`ZERO_MIN` and more than ``E + 3 sqrt(E)``, ``E = expected_below(prof, thr)``.
    2. Otherwise the check passes if no sample is at or below the smallest ``delta`` and the
       95% upper bound there is at most half of ``p(delta_max)``, or if at least 3 grid points
       are in the tail window, ``slope - 2 slope_se > 0`` and ``p(delta_min) <= p(delta_max) / 2``.

    Returns ``(passed, reason)``; a reason starting with ``"inconclusive"`` means the data
    cannot decide (too few samples, or a grid above all values).  ``what`` names the value in
    the reason.
    """
    n = prof.n
    expected = expected_below(prof, thr)
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

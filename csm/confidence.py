"""Exact binomial confidence intervals (docs/theory.md §8), shared by every estimator in csm."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["clopper_pearson"]


def clopper_pearson(k: Any, n: int, confidence: float = 0.95) -> tuple[Any, Any]:
    """Exact (Clopper--Pearson) confidence interval for a binomial proportion.

    Parameters
    ----------
    k : int or array of int
        Successes, ``0 <= k <= n`` (an array gives arrays of bounds, elementwise).
    n : int
        Trials, ``n >= 1``.
    confidence : float
        Coverage, in (0, 1).

    Returns
    -------
    (low, high)
        ``low = B^{-1}(a/2; k, n-k+1)`` (0 if ``k = 0``), ``high = B^{-1}(1-a/2; k+1, n-k)``
        (1 if ``k = n``), with ``a = 1 - confidence`` and ``B^{-1}`` the beta quantile.  For
        ``k = 0`` the upper bound is ``1 - (a/2)^{1/n}`` (``~= 3.69/n`` at 95%).  Floats for a
        scalar ``k``, arrays for an array.

    Examples
    --------
    >>> lo, hi = clopper_pearson(0, 10_000)
    >>> lo, round(hi * 10_000, 2)
    (0.0, 3.69)
    """
    from scipy.special import betaincinv  # beta quantile B^{-1}(q; a, b) = betaincinv(a, b, q)

    scalar = np.ndim(k) == 0
    kk = np.asarray(k, dtype=float)
    n = int(n)
    if n < 1 or np.any(kk < 0) or np.any(kk > n) or np.any(kk != np.round(kk)):
        raise InputError(f"clopper_pearson needs integers 0 <= k <= n and n >= 1, got k={k}, n={n}")
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise InputError(f"`confidence` must be in (0, 1), got {confidence!r}")
    a = 1.0 - c
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(kk > 0, betaincinv(np.maximum(kk, 1.0), n - kk + 1, a / 2.0), 0.0)
        hi = np.where(kk < n, betaincinv(kk + 1, np.maximum(n - kk, 1.0), 1.0 - a / 2.0), 1.0)
    if scalar:
        return float(lo), float(hi)
    return lo, hi

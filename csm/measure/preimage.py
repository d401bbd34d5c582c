"""Lemma 2.4 / Proposition 2.5, the conclusion: preimages of null sets are null.

docs/theory.md §1.4 (b).  For ``X`` from an absolutely continuous law, ``X in g^{-1}(Z)`` iff
``g(X) in Z``; :func:`check_preimage_null` measures ``p(delta) = P(dist(g(X), Z) <= delta)``
and judges its decay with the tail fit of :mod:`csm.measure.tailfit` (the same rule as
:func:`csm.measure.check_jacobian_nondegenerate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validation import as_rng, check_finite, positive_float, positive_int
from ..errors import InputError, ShapeError
from ..maps import as_map
from ._common import ProfileReport
from .tailfit import (
    ZERO_TOL,
    SmallValueProfile,
    decades,
    decay_verdict,
    delta_grid,
    draw_sample,
    exact_zeros,
    fit_settings,
    quantiles,
    small_value_profile,
)

__all__ = ["PreimageReport", "check_preimage_null"]


@dataclass(frozen=True)
class PreimageReport(ProfileReport):
    """Result of :func:`check_preimage_null`.

    Attributes
    ----------
    passed, reason : bool, str
        See the rule in :func:`check_preimage_null`; ``passed`` is also ``success``
        (:class:`csm._results.Result`), with ``message`` the verdict and reason in one sentence.
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

    _CLAIM = "check of Lemma 2.4's conclusion (g^-1(Z) is null)"
    _NOT_SERIALISED = ('distances',)

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
    """Probe the conclusion of Lemma 2.4: ``g^{-1}(Z)`` is null for a null ``Z`` (docs/theory.md §1.4 (b)).

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
    g = as_map(map)
    if not callable(distance):
        raise InputError(f"`distance` must be a vectorised callable (n, d) -> (n,), got "
                         f"{type(distance).__name__}")
    n = positive_int(n, "n", minimum=2)
    zero_tol = positive_float(zero_tol, "zero_tol", allow_zero=True)
    min_count, fit_points, n_boot = fit_settings(min_count, fit_points, n_boot)
    gen = as_rng(rng)
    X = draw_sample(sampler, gen, n, g.dim)
    Y = g(X)
    D = np.asarray(distance(Y), dtype=float)
    if D.shape != (n,):
        raise ShapeError(f"`distance` must return shape ({n},) for {n} points, got shape {D.shape}")
    check_finite(D, "`distance`", Y)
    D = np.abs(D)
    scale, thr, zero_count = exact_zeros(D, float(np.median(np.linalg.norm(Y, axis=1))), zero_tol)
    med = float(np.median(D))
    if med > thr:
        ref = med
    else:
        pos = D[D > thr]
        ref = float(np.median(pos)) if pos.size else scale
    grid = delta_grid(deltas, decades(ref))
    prof = small_value_profile(D, grid, gen, n_boot=n_boot, min_count=min_count,
                               fit_points=fit_points)
    passed, reason = decay_verdict(prof, zero_count, thr, "dist(g(X), Z)")
    return PreimageReport(
        passed=passed, reason=reason, n=n, dim=int(X.shape[1]), profile=prof,
        zero_count=zero_count, zero_tol=zero_tol, scale=scale,
        distance_quantiles=quantiles(D), distances=D,
    )

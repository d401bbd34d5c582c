"""Lemma 2.4, its hypothesis: the Jacobian of ``g`` is non-degenerate almost everywhere.

docs/theory.md §1.4 (a).  :func:`check_jacobian_nondegenerate` measures
``p(delta) = P(sigma_min(Dg(X)) <= delta)`` for ``X`` from an absolutely continuous law and
judges its decay with the tail fit of :mod:`csm.measure.tailfit`.  Without a Jacobian function
the central-difference Jacobians are judged against their own error model (``fd_error``;
docs/theory.md §1.9): a ``sigma_min`` below what differences resolve is "unresolved", never
evidence of a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validation import as_rng, positive_float, positive_int
from ..maps import FD_STEP_FACTOR, Map, as_map
from ._common import INCONCLUSIVE, ProfileReport
from .tailfit import (
    ZERO_MIN,
    ZERO_TOL,
    SmallValueProfile,
    decades,
    decay_verdict,
    delta_grid,
    draw_sample,
    exact_zeros,
    expected_below,
    fit_settings,
    quantiles,
    small_value_profile,
)

__all__ = [
    "FD_SAFETY",
    "FD_RESOLUTION_QUANTILE",
    "NondegeneracyReport",
    "check_jacobian_nondegenerate",
]


#: Safety factor of the finite-difference error model of :func:`check_jacobian_nondegenerate`:
#: a sample's ``sigma_min`` is resolved only above ``FD_SAFETY`` times its estimated error.
FD_SAFETY = 10.0
#: Quantile of the per-sample finite-difference error that sets the smallest resolvable ``delta``.
FD_RESOLUTION_QUANTILE = 0.99


@dataclass(frozen=True)
class NondegeneracyReport(ProfileReport):
    """Result of :func:`check_jacobian_nondegenerate`.

    Attributes
    ----------
    passed : bool
        See the rule in :func:`check_jacobian_nondegenerate`; also ``success``
        (:class:`csm._results.Result`), with ``message`` the verdict and ``reason`` in one
        sentence.
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

    _CLAIM = "check of Lemma 2.4's hypothesis (det Dg != 0 a.e.)"
    _NOT_SERIALISED = ('sigma_min', 'log_abs_det', 'fd_error')

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
    func = g.evaluate  # the map without its finiteness check
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
    """Probe the hypothesis of Lemma 2.4: ``det Dg != 0`` a.e. (docs/theory.md §1.4 (a)).

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
        ``sampler(rng, n) -> (n, d)``, absolutely continuous law (:mod:`csm.measure.tailfit`).
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
        Tail fit settings (:mod:`csm.measure.tailfit`).
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
    g = as_map(map)
    n = positive_int(n, "n", minimum=2)
    zero_tol = positive_float(zero_tol, "zero_tol", allow_zero=True)
    fd_safety = positive_float(fd_safety, "fd_safety")
    min_count, fit_points, n_boot = fit_settings(min_count, fit_points, n_boot)
    gen = as_rng(rng)
    X = draw_sample(sampler, gen, n, g.dim)
    J = g.jacobian(X)
    sv = np.linalg.svd(J, compute_uv=False)  # (n, d), decreasing
    smin, smax = sv[:, -1], sv[:, 0]
    _, logdet = np.linalg.slogdet(J)
    scale, thr, zero_count = exact_zeros(smin, float(np.median(smax)), zero_tol)
    med = float(np.median(smin))
    ref = med if med > thr else scale
    grid = delta_grid(deltas, decades(ref))
    what = "sigma_min(Dg)"
    fit = dict(n_boot=n_boot, min_count=min_count, fit_points=fit_points)
    analytic = g.has_analytic_jacobian
    if analytic:
        err = np.zeros(n)
        unresolved = 0
        expected = res_delta = kappa = 0.0
        prof = small_value_profile(smin, grid, gen, **fit)
        passed, reason = decay_verdict(prof, zero_count, thr, what)
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
            prof = small_value_profile(smin, grid, gen, **fit)
            expected = 0.0
            passed, reason = False, (
                f"inconclusive: {what} is below what finite differences resolve: only "
                f"{kept.size} of the {grid.size} deltas (largest {grid[0]:.3g}) are >= the "
                f"resolvable delta {res_delta:.3g}; {note}; median {what} {med:.3g}; supply "
                "an analytic `jacobian` (or `deltas` above the resolution)")
        else:
            prof = small_value_profile(smin, kept, gen, **fit)
            expected = expected_below(prof, np.maximum(err, thr))
            passed, reason = decay_verdict(prof, 0, thr, what)
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
    status = "passed" if passed else ("inconclusive" if reason.startswith(INCONCLUSIVE)
                                      else "failed")
    return NondegeneracyReport(
        passed=bool(passed), status=status, reason=reason, n=n, dim=int(X.shape[1]),
        jacobian="analytic" if analytic else "finite differences", profile=prof,
        zero_count=zero_count, zero_tol=zero_tol, scale=scale, unresolved_count=unresolved,
        unresolved_expected=float(expected), resolvable_delta=float(res_delta),
        fd_safety=float(kappa), sigma_min_quantiles=quantiles(smin),
        log_abs_det_quantiles=quantiles(logdet),
        fd_error_quantiles={} if analytic else quantiles(err),
        log_abs_det_mean=float(np.mean(logdet)), sigma_min=smin, log_abs_det=logdet,
        fd_error=err,
    )

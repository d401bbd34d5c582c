"""Proposition 2.5 / Lemma 4.4: the bad step sizes of gradient descent form a null set.

docs/theory.md §1.5.  ``D Psi(theta) = I - gamma H(theta)`` is singular exactly when
``gamma = 1/lambda`` for an eigenvalue ``lambda > 0`` of the Hessian ``H(theta)``.
:func:`bad_step_sizes` pools these *bad steps* over a sample of ``theta`` and tests their law
for atoms (a step that is bad on a set of positive measure) with the window-mass tail fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validation import as_rng, check_finite, positive_float, positive_int
from ..confidence import clopper_pearson
from ..errors import InputError, ShapeError
from ._common import MeasureReport
from .tailfit import (
    SmallValueProfile,
    decades,
    delta_grid,
    draw_sample,
    fit_settings,
    ols_slope,
    quantiles,
    small_value_profile,
    tail_window,
)

__all__ = ["ATOM_WIDTH", "BadStepReport", "bad_step_sizes"]

#: Width (in log step size) within which bad steps of different samples count as one atom.
ATOM_WIDTH = 1e-10


@dataclass(frozen=True)
class BadStepReport(MeasureReport):
    """Result of :func:`bad_step_sizes`.

    Attributes
    ----------
    passed, reason : bool, str
        See the rule in :func:`bad_step_sizes`; ``passed`` is also ``success``
        (:class:`csm._results.Result`), with ``message`` the verdict and reason in one sentence.
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

    _CLAIM = "check of Proposition 2.5 (no step size is bad on a set of positive measure)"
    _NOT_SERIALISED = ('steps',)

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
    """Bad step sizes of gradient descent and an atom test (Proposition 2.5, Lemma 4.4; docs/theory.md §1.5).

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
    min_count, fit_points, n_boot = fit_settings(min_count, fit_points, n_boot)
    if step is not None:
        step = positive_float(step, "step")
    gen = as_rng(rng)
    dim = getattr(hessian, "dim", None) if hasattr(hessian, "gradient") else None
    X = draw_sample(sampler, gen, n, dim if isinstance(dim, (int, np.integer)) else None)
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
    grid = delta_grid(deltas, decades(1.0))
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
            step_profile=small_value_profile(r, grid / 2.0, gen, n_boot=200, min_count=10,
                                              fit_points=fit_points),
        )

    common = dict(n=n, dim=d, n_bad_steps=int(N), positive_fraction=positive_fraction,
                  step_quantiles=quantiles(np.exp(s)), deltas=grid, step=step,
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
    idx = tail_window(counts, min_count, fit_points)
    slope = se = intercept = float("nan")
    if idx.size >= 3:
        x = np.log(grid[idx])
        sl, b = ols_slope(x, np.log(mass[idx])[None, :])
        slope, intercept = float(sl[0]), float(b[0])
        sub = np.searchsorted(s, s[None, :] + grid[idx][:, None], side="right")  # (<= 5, N)
        slopes_b = np.empty(n_boot)
        for t in range(n_boot):  # loop over bootstrap replicates, each fully vectorised
            wsamp = gen.multinomial(n, np.full(n, 1.0 / n))
            mb = _window_max(s, sub, wsamp[owners].astype(float))
            slopes_b[t] = ols_slope(x, np.log(np.maximum(mb, 0.5) / n)[None, :])[0][0]
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

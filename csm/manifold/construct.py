"""Theorem 2.2: choose the radius and horizon and build the :class:`CenterStableManifold`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import as_point, positive_float, positive_int
from ..errors import InputError, NoContractionError, ShapeError
from ..maps import as_map, check_fixed_point
from ..spectral import DEFAULT_MAX_CONDITION, DEFAULT_UNIT_TOL, split_spectrum
from .frames import DenseFrame, MatrixFreeFrame, unstable_eigenpairs
from .lipschitz import adversarial_lipschitz, proved_lipschitz
from .result import CenterStableManifold

__all__ = ["center_stable_manifold", "kappa_factor"]

#: Dense eigen-decomposition up to this dimension by default for symmetric maps.
DENSE_MAX_DIM = 400


def kappa_factor(lam_min: float) -> tuple[float, float]:
    """``(mu, 1/(mu-1) + 1/(lambda_min-mu))`` with ``mu = (1 + lambda_min)/2``; ``kappa = l * factor``."""
    mu = 0.5 * (1.0 + lam_min)
    return mu, 1.0 / (mu - 1.0) + 1.0 / (lam_min - mu)


def center_stable_manifold(
    map: Any,
    fixed_point: Any,
    *,
    radius: float | None = None,
    tol: float = 1e-10,
    jacobian: Any = None,
    derivative_lipschitz: Any = None,
    unit_tol: float = DEFAULT_UNIT_TOL,
    max_condition: float = DEFAULT_MAX_CONDITION,
    contraction_target: float = 0.5,
    max_radius: float = 1.0,
    fixed_point_tol: float = 1e-8,
    max_iter: int = 200,
    max_horizon: int = 200_000,
    matrix_free: bool | None = None,
    n_lipschitz: int | None = None,
    lipschitz_rounds: int = 2,
    safety: float = 1.25,
    seed: int = 0,
) -> CenterStableManifold:
    """Compute the center-stable manifold of Theorem 2.2 at ``fixed_point``.

    Parameters
    ----------
    map : Map or callable
        The dynamical system ``g`` (batched).  A :class:`~csm.GradientDescentMap` or a problem's
        ``local_map`` for gradient descent.
    fixed_point : array_like (d,)
        ``x*`` with ``g(x*) = x*``.
    radius : float, optional
        ``eps``.  If None, the largest ``eps <= max_radius`` whose Lipschitz constant of the
        cut-off remainder gives ``kappa <= contraction_target`` (halving, then bisection in
        log eps).
    tol : float
        Accuracy of ``phi``: the truncation tail plus the Banach-iteration error are below it.
    jacobian : array_like (d, d), optional
        ``Dg(x*)`` if known (else the map's Jacobian, analytic or finite differences).
    derivative_lipschitz : float or callable, optional
        ``M`` with ``|Dg(x) - Dg(y)|_2 <= M |x - y|`` on the ambient ball ``B(x*, R)`` (a callable
        ``(fixed_point, R) -> M``).  Makes ``kappa`` a proved bound (``kappa_certified``).
        Default: the map's own ``derivative_lipschitz`` (a :class:`~csm.GradientDescentMap`
        derives it from the problem's ``hessian_lipschitz``), else an adversarial estimate.
    unit_tol, max_condition : float
        Passed to :func:`csm.split_spectrum`.
    contraction_target : float
        Wanted ``kappa`` when choosing the radius (``< 1``).
    max_radius : float
        Upper end of the radius search.
    fixed_point_tol : float
        ``|g(x*) - x*| <= fixed_point_tol * max(1, |x*|)`` is required.
    max_iter, max_horizon : int
        Limits of the Banach iteration and of the horizon ``K``.
    matrix_free : bool, optional
        Use the Lanczos / Jacobian-vector-product path (default: when ``map.symmetric`` and
        ``d > 400``).
    n_lipschitz : int, optional
        Random points of the adversarial Lipschitz search (default 96 dense, 16 matrix-free).
    lipschitz_rounds : int
        Ascent rounds of the adversarial search at the chosen radius.
    safety : float
        Factor applied to the adversarial estimate (not to a proved bound).
    seed : int
        Seed of the Lipschitz search (the result is deterministic).

    Returns
    -------
    CenterStableManifold

    Raises
    ------
    NotFixedPointError
        ``|g(x*) - x*|`` too large (the value is reported).
    NotDiagonalizableError, NoUnstableDirectionError
        Assumption 2.1 fails at ``x*``.
    NoContractionError
        With a given ``radius``: ``kappa >= 1`` (the message gives kappa, the Lipschitz
        constant and a radius that works); or no radius contracts.
    ShapeError, NonFiniteError, InputError
        Bad shapes, NaN/inf from the map, bad parameters.

    Notes
    -----
    Cost: ``O(iterations * K * B)`` map evaluations for ``B`` base points (all batched), with
    ``K ~ log(1/tol)/log lambda_min``.  ``kappa = l (1/(mu-1) + 1/(lambda_min-mu))`` with
    ``mu = (1 + lambda_min)/2`` (docs/theory.md, "The contraction constant").

    Examples
    --------
    >>> import numpy as np, csm
    >>> lam, mu = 0.5, 2.0
    >>> g = csm.Map(lambda X: np.stack([lam * X[:, 0], mu * X[:, 1] + X[:, 0] ** 2], 1), dim=2)
    >>> m = csm.center_stable_manifold(g, np.zeros(2))
    >>> x = 0.1
    >>> bool(abs(m.graph([x])[0] * np.sign(m.basis_u[1, 0]) - x**2 / (lam**2 - mu)) < 1e-9)
    True
    """
    g = as_map(map)
    x_star = as_point(fixed_point, g.dim, name="fixed_point")
    d = x_star.shape[0]
    tol = positive_float(tol, "tol")
    contraction_target = positive_float(contraction_target, "contraction_target")
    if contraction_target >= 1:
        raise InputError(f"`contraction_target` must be < 1, got {contraction_target}")
    max_radius = positive_float(max_radius, "max_radius")
    safety = positive_float(safety, "safety")
    if safety < 1:
        raise InputError(f"`safety` must be >= 1 (it inflates an estimate), got {safety}")
    max_iter = positive_int(max_iter, "max_iter")
    max_horizon = positive_int(max_horizon, "max_horizon")
    lipschitz_rounds = positive_int(lipschitz_rounds, "lipschitz_rounds", minimum=0)
    if radius is not None:
        radius = positive_float(radius, "radius")
    if n_lipschitz is not None:
        n_lipschitz = positive_int(n_lipschitz, "n_lipschitz")
    check_fixed_point(g, x_star, fixed_point_tol)
    if matrix_free is None:
        matrix_free = bool(g.symmetric and d > DENSE_MAX_DIM and jacobian is None)
    if matrix_free and not g.symmetric:
        raise InputError(
            "`matrix_free=True` needs a map with symmetric Jacobian (a GradientDescentMap); "
            f"got {g!r}"
        )
    if derivative_lipschitz is None:
        derivative_lipschitz = getattr(g, "derivative_lipschitz", None)
    if derivative_lipschitz is not None and jacobian is None and not g.has_analytic_jacobian and not (
            matrix_free and g.has_analytic_jvp):
        # a proof needs Dg(x*) itself: a finite-difference Jacobian leaves Dr(0) ~ 1e-10, not 0
        derivative_lipschitz = None

    split = None
    if matrix_free:
        lam_u, U = unstable_eigenpairs(g, x_star, positive_float(unit_tol, "unit_tol"))
        frame: Any = MatrixFreeFrame(U, lam_u, x_star, g)
        eig_u, basis_u = lam_u.astype(complex), U
    else:
        if jacobian is None:
            A = g.jacobian(x_star)
        else:
            A = np.asarray(jacobian, dtype=float)
            if A.shape != (d, d):
                raise ShapeError(
                    f"`jacobian` must have shape ({d}, {d}) for a fixed point in R^{d}, got {A.shape}"
                )
        split = split_spectrum(A, unit_tol, max_condition=max_condition)
        frame = DenseFrame(split, x_star, g,
                           exact_linear=jacobian is None and g.has_analytic_jacobian)
        eig_u, basis_u = split.eigenvalues_u, split.basis_u
    dim_u = basis_u.shape[1]
    lam_min = frame.lambda_min
    mu, factor = kappa_factor(lam_min)

    n_lip = n_lipschitz or (16 if matrix_free else 96)
    found: list[np.ndarray] = []
    last: list = []

    def kappa_of(eps: float, rounds: int, stop: float | None = None):
        """``(kappa, estimate)`` at radius ``eps``; with ``stop``, the adversarial search may
        end as soon as it has shown ``kappa > stop`` (then kappa is a lower bound above stop)."""
        if derivative_lipschitz is not None:
            est = proved_lipschitz(frame, eps, derivative_lipschitz)
        else:
            dirs = found[-1] if found else None
            # a screening (0 rounds) at this very radius already probed the random points and
            # the unstable directions: start from its best probes instead of repeating them
            prior = last[0] if last and last[0].top is not None and last[0].top[0] == eps else None
            est = adversarial_lipschitz(frame, eps, n_random=n_lip, n_rounds=rounds,
                                        safety=safety, seed=seed, directions=dirs, prior=prior,
                                        stop_above=None if stop is None else stop / (safety * factor))
            found.append(est.directions)
            last[:] = [est]
        return est.value * factor, est

    if radius is not None:
        eps = radius
        kap, est = kappa_of(eps, lipschitz_rounds)
        if kap >= 1.0:
            good = eps
            for _ in range(80):
                good /= 2
                if kappa_of(good, 1)[0] <= contraction_target:
                    break
            raise NoContractionError(
                f"radius={radius:.3g} gives no contraction: kappa = {kap:.3g} >= 1 (Lipschitz "
                f"constant of the cut-off remainder {est.value:.3g}, kappa = "
                f"l*(1/(mu-1) + 1/(lambda_min-mu)) with lambda_min = {lam_min:.6g}); try a smaller "
                f"`radius`, e.g. {good:.3g}"
            )
    else:
        eps, kap, est = _search_radius(kappa_of, max_radius, contraction_target, lipschitz_rounds)
    ell = est.value
    # horizon: the neglected tail of the unstable sum at n = 0 is <= l 2 eps lambda_min^-K /
    # (lambda_min - 1); the tails missing at n > 0 feed back into q_0 through r~ with weights
    # lambda_min^-(n+1), adding at most a factor (1 + K l) (docs/theory.md §1.3, "Truncation"),
    # which the second term absorbs.
    if ell == 0:
        K = 1
    else:
        tail = ell * 2 * eps / ((lam_min - 1.0) * tol * (1.0 - kap))
        K = max(1, int(math.ceil(math.log(max(tail, 1.0)) / math.log(lam_min))) + 1)
        K += int(math.ceil(math.log(2.0 * (1.0 + K * ell)) / math.log(lam_min)))
    if K > max_horizon:
        raise InputError(
            f"the horizon K = {K} needed for tol={tol:g} exceeds max_horizon={max_horizon} "
            f"(lambda_min = {lam_min:.9g} is very close to 1); raise `tol` or `max_horizon`"
        )
    search = {"method": "proved" if est.certified else "adversarial", "points": est.n_points,
              "rounds": est.n_rounds, "raw": est.raw,
              "argmax_norm": None if est.argmax is None else float(np.linalg.norm(est.argmax))}
    dirs = found[-1] if found else np.zeros((0, d))
    return CenterStableManifold(
        fixed_point=x_star, dim_cs=d - dim_u, dim_u=dim_u, radius=float(eps), contraction=float(kap),
        kappa_certified=bool(est.certified), lipschitz_bound=float(kap / (1 - kap)),
        lipschitz_remainder=float(ell), lipschitz_search=search, mu=float(mu), horizon=int(K),
        split=split, eigenvalues_u=np.asarray(eig_u), basis_u=basis_u, matrix_free=bool(matrix_free),
        tol=tol, max_iter=max_iter, frame=frame, lipschitz_directions=dirs,
    )


def _search_radius(kappa_of, max_radius: float, target: float, rounds: int):
    """Largest radius (up to 4 refinements) with ``kappa <= target``.

    From a radius with ``kappa > target`` the next candidate is ``eps * 0.9 target / kappa`` (at
    least ``eps / 64``): exact when ``l`` grows linearly in ``eps`` (a C^2 map), still
    geometric otherwise.  Between the good radius found and the last bad one, up to 4
    refinements, each the linear model's ``eps * 0.95 target / kappa`` when that lies inside
    the bracket, else the midpoint in log eps; none once ``kappa >= 0.9 target`` (the radius is
    then within about 10 % of the linear model's optimum).  Candidates are screened without
    ascent rounds (random points, the unstable directions and the best directions found so
    far); the chosen radius is re-checked
    with ``rounds`` rounds (starting from the screening's best probes at that radius) and the
    search resumes below it if the stronger search raises ``kappa``: the ascent is spent only
    at radii that are candidates for the answer.
    """
    hi = max_radius
    # a screened radius is abandoned as soon as kappa is shown to exceed this: the next
    # candidate is then eps / 64 whatever the exact kappa
    far = 64.0 * target / 0.9
    for _ in range(8):
        eps, bad = hi, None
        kap, est = kappa_of(eps, 0, far)
        while kap > target:
            bad = eps
            eps *= max(1.0 / 64.0, 0.9 * target / kap)
            if eps < max_radius * 2.0**-60:
                raise NoContractionError(
                    f"no radius gives a contraction: at radius {eps:.3e} kappa = {kap:.3g} "
                    f"(Lipschitz constant {est.value:.3g}); the remainder is not o(1) near "
                    "`fixed_point` (is the map differentiable there? is `jacobian` right?)"
                )
            kap, est = kappa_of(eps, 0, far)
        if bad is not None:  # refine between eps (good) and bad
            lo, up = eps, bad
            for _ in range(4):
                if kap >= 0.9 * target:  # within 10 % of the target: a larger radius gains little
                    break
                # the linear model (kappa ~ eps) when it stays below the known bad radius,
                # else bisection in log eps
                mid = lo * 0.95 * target / kap if kap > 0 else up
                if not lo < mid < up:
                    mid = math.sqrt(lo * up)
                km, em = kappa_of(mid, 0, target)  # only "above the target" matters there
                if km <= target:
                    lo, kap, est = mid, km, em
                else:
                    up = mid
            eps = lo
        if rounds == 0 or est.certified:
            return eps, kap, est
        kap, est = kappa_of(eps, rounds)
        if kap <= target:
            return eps, kap, est
        hi = eps * max(1.0 / 64.0, 0.9 * target / kap)
    raise NoContractionError(
        f"the adversarial Lipschitz search kept raising kappa (last {kap:.3g} at radius {eps:.3g}); "
        "supply `derivative_lipschitz` or a `radius`")

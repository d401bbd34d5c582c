"""The one batched iteration engine: orbits of any map, exit times, trajectories.

Every instrument that iterates a map (manifold verification, escape rates and times, stable
sets, transition graphs) runs its orbits here, so the stopping conventions are the same
everywhere:

* an **exit time** is the first ``k >= 1`` with ``norm(g^k(x)) > radius``; ``-1`` means the orbit
  did not leave within ``n_steps`` (``NEVER_LEFT``);
* finished orbits leave the batch, so the work per step is proportional to the orbits still
  running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._validation import check_finite, positive_int

__all__ = [
    "NEVER_LEFT", "exit_times", "trajectories", "descend", "Descent", "step_sizes",
    "CONVERGED", "DIVERGED", "UNCONVERGED", "RULE_NONE", "RULE_GRADIENT", "RULE_SUBLEVEL", "RULE_TRAVEL",
]

#: Exit time of an orbit that stayed for all ``n_steps`` steps.
NEVER_LEFT = -1


def exit_times(g: Callable[[np.ndarray], np.ndarray], X: np.ndarray, n_steps: int,
               norm: Callable[[np.ndarray], np.ndarray], radius: float | np.ndarray) -> np.ndarray:
    """First ``k`` in ``1..n_steps`` with ``norm(g^k(x)) > radius`` for each row of ``X``.

    Parameters
    ----------
    g : callable
        The batched map ``(B, d) -> (B, d)``.
    X : ndarray (B, d)
        Starting points (not modified).
    n_steps : int
        Largest number of steps.
    norm : callable
        ``norm(Y) -> (B,)`` distances that define the ball (e.g. the eigen-norm around ``x*``).
    radius : float or ndarray (B,)
        The ball's radius (per orbit if an array).

    Returns
    -------
    ndarray of int (B,)
        Exit steps, :data:`NEVER_LEFT` where the orbit stayed ``n_steps`` steps.  A NaN or
        infinite iterate counts as having left.
    """
    n_steps = positive_int(n_steps, "n_steps")
    Y = np.array(X, dtype=float, copy=True)
    B = Y.shape[0]
    rad = np.broadcast_to(np.asarray(radius, dtype=float), (B,))
    out = np.full(B, NEVER_LEFT, dtype=int)
    idx = np.arange(B)
    for k in range(1, n_steps + 1):
        if idx.size == 0:
            break
        Y = np.asarray(g(Y), dtype=float)
        with np.errstate(invalid="ignore"):
            left = ~(norm(Y) <= rad[idx])  # NaN counts as left
        out[idx[left]] = k
        keep = ~left
        idx, Y = idx[keep], Y[keep]
    return out


def trajectories(g: Callable[..., np.ndarray], X: np.ndarray, n_steps: int, *,
                 every: int = 1, nonautonomous: bool = False,
                 allow_nonfinite: bool = False) -> np.ndarray:
    """Iterate ``g`` from every row of ``X (R, d)`` and record every ``every``-th iterate.

    Returns ``(R, T, d)`` with ``T = n_steps // every + 1``: record ``t`` is the iterate after
    ``t * every`` steps.  With ``nonautonomous=True`` the map is called as ``g(Y, k)`` at step
    ``k`` (step schedules).  A NaN or infinite iterate raises :class:`~csm.NonFiniteError`
    unless ``allow_nonfinite`` (then the orbit carries NaN/inf from there on).
    """
    n_steps = positive_int(n_steps, "n_steps", minimum=0)
    every = positive_int(every, "every")
    Y = np.array(X, dtype=float, copy=True)
    T = n_steps // every + 1
    out = np.empty((Y.shape[0], T, Y.shape[1]))
    out[:, 0] = Y
    with np.errstate(all="ignore" if allow_nonfinite else "warn"):
        for k in range(1, (T - 1) * every + 1):
            Y = np.asarray(g(Y, k - 1) if nonautonomous else g(Y), dtype=float)
            if not allow_nonfinite:
                check_finite(Y, "map (while iterating)")
            if k % every == 0:
                out[:, k // every] = Y
    return out


# ---------------------------------------------------------------------------------------
# gradient descent with per-run stopping
# ---------------------------------------------------------------------------------------
#: Status codes of a run.
CONVERGED, DIVERGED, UNCONVERGED = 0, 1, 2

#: Which rule stopped a converged run (array ``rule`` of :class:`Descent`).
RULE_NONE, RULE_GRADIENT, RULE_SUBLEVEL, RULE_TRAVEL = 0, 1, 2, 3


@dataclass(frozen=True)
class Descent:
    """Per-run outcome of :func:`descend` (arrays of length ``B``).

    ``theta`` the limit (or last iterate), ``grad_norm`` ``|G|`` there, ``steps`` the steps
    taken, ``status`` (:data:`CONVERGED`, :data:`DIVERGED`, :data:`UNCONVERGED`), ``rule`` the
    convergence rule that fired (:data:`RULE_GRADIENT`, :data:`RULE_SUBLEVEL`, else
    :data:`RULE_NONE`).
    """

    theta: np.ndarray
    grad_norm: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    rule: np.ndarray


def step_sizes(step: Any, max_steps: int) -> Callable[[int], float]:
    """``k -> gamma_k`` from a number or a callable, each value checked when it is used.

    Raises :class:`~csm.InputError` naming ``step`` and ``k`` when a step is not a finite
    positive number.
    """
    from .errors import InputError

    if callable(step):
        def gamma(k: int) -> float:
            try:
                g = float(step(k))
            except (TypeError, ValueError) as exc:
                raise InputError(f"`step` schedule failed at k={k}: {exc}") from None
            if not (g > 0 and np.isfinite(g)):
                raise InputError(f"`step` schedule gave gamma_{k} = {g!r}; accepted: finite numbers > 0")
            return g
        return gamma
    g0 = float(step)
    return lambda k: g0


def descend(problem: Any, X: np.ndarray, step: Any, *, max_steps: int, tol: float,
            patience: int = 10, diverge_norm: float = 1e8,
            sublevel: float | None = None, check_every: int = 10,
            momentum: float = 0.0, nesterov: bool = False, width: int | None = None) -> Descent:
    """Batched gradient descent ``theta <- theta - gamma_k G(theta)`` with per-run stopping.

    A run stops as **converged** when either rule fires (docs/theory.md §8):

    * *gradient*: ``|G| <= tol`` at ``patience`` consecutive iterates and the gradient did not
      grow across that window (orbits passing a saddle, where ``|G|`` grows geometrically, are
      not stopped there); with momentum also ``|theta_k - theta_{k-1}| <= gamma_k tol``;
    * *sublevel* (only with ``sublevel``, the problem's level below which every critical point
      is a global minimum, and without momentum): ``L(theta_k) < sublevel`` and the loss
      decreased over the last ``check_every`` steps.  Descent keeps the loss below
      ``sublevel``, every limit point of a descent orbit is critical, so the orbit can only
      converge to a global minimum.  (Momentum methods are not descent methods: no such rule.)

    * *travel* (a schedule with summable steps, ``step.tail(k) < inf``, e.g. geometric; no
      momentum): ``max |G| over the last patience steps * tail(k) <= tol``: the orbit moves at
      most that far from here on, so it converges to a point within ``tol`` (the subgradient
      methods of non-smooth losses, whose ``|G|`` does not vanish at the limit).

    It stops as **diverged** when an iterate or gradient is not finite or
    ``|theta| > diverge_norm``, and is **unconverged** at ``max_steps``.  Only running rows
    are evaluated (the batch is compacted as runs finish).

    ``width`` bounds the number of orbits evaluated together: as orbits finish, pending ones
    join (continuous batching), so the gradient is always evaluated on about ``width`` rows
    (its efficient batch size) instead of a batch that shrinks to the slowest runs.  Each orbit
    keeps its own step counter, and its divergence and loss checks fall on its own steps
    ``k = 0, check_every, 2 check_every, ...`` (orbits join only at iterations that are
    multiples of ``lcm(patience, check_every)``; when the batch runs dry in between, the
    next orbits join at the next such iteration), so every orbit takes exactly the steps and
    stops exactly where it would alone: results do not depend on ``width`` (tested against
    one-row runs).  (With a schedule, all orbits run together.)  Cost per iteration:
    one gradient call on the running rows plus about a dozen vectorised operations on them;
    finished rows are compacted out of preallocated buffers.

    ``step`` is a number or a schedule ``k -> gamma_k``.  ``momentum = beta > 0`` runs the heavy
    ball ``theta+ = theta - gamma G(theta) + beta (theta - theta_prev)``, or with ``nesterov``
    ``theta+ = y - gamma G(y)``, ``y = theta + beta (theta - theta_prev)`` (the maps of
    :mod:`csm.momentum`), from ``theta_prev = theta_0``.
    """
    B, d = X.shape
    gamma = step_sizes(step, max_steps)
    beta = float(momentum)
    if not 0.0 <= beta < 1.0:
        from .errors import InputError

        raise InputError(f"`momentum` must lie in [0, 1), got {momentum!r}")
    tail = getattr(step, "tail", None)
    if beta > 0:
        sublevel, tail = None, None
    if tail is not None and not np.isfinite(tail(0)):
        tail = None
    # continuous batching (constant steps only: a schedule needs one k for the whole batch)
    cap = B if (width is None or callable(step)) else max(1, min(int(width), B))
    theta = np.array(X, dtype=float, copy=True)
    gnorm = np.full(B, np.nan)
    steps = np.full(B, max_steps, dtype=np.int64)
    status = np.full(B, UNCONVERGED, dtype=np.int8)
    rule = np.full(B, RULE_NONE, dtype=np.int8)
    # Per-run state of the running orbits: rows 0..n-1 of buffers allocated once (finished
    # rows are compacted out, pending ones appended, so the order of the rows is the order in
    # which they joined).  A run's step counter is ``k = it - joined``: joins happen only at
    # iterations ``it`` that are multiples of ``period``, so every running orbit has
    # ``k = it`` modulo ``patience`` and ``check_every``: the ring-buffer column and the
    # divergence / loss checks are the same for all rows (scalars, no per-row indexing), and
    # every run sees exactly the iterations it would see alone -- results do not depend on
    # ``width``.  Rows are ordered by decreasing ``k``: row 0 has the largest.
    Xb = np.empty((cap, d))
    Pb = np.empty((cap, d)) if beta else Xb
    Sb = np.empty((cap, d))  # gamma_k G, the step
    idx = np.empty(cap, dtype=np.int64)
    joined = np.empty(cap, dtype=np.int64)
    streak = np.empty(cap, dtype=np.int64)
    window = np.empty((cap, patience))
    last = np.empty(cap)
    run_state = (Xb, Pb, idx, joined, streak, window, last) if beta else (
        Xb, idx, joined, streak, window, last)
    n = 0  # running rows
    pending = 0  # runs 0..pending-1 have joined
    period = patience * check_every // math.gcd(patience, check_every)
    it = 0

    def refill() -> int:
        nonlocal pending
        m = min(cap - n, B - pending)
        if m <= 0:
            return n
        new = slice(pending, pending + m)
        rows = slice(n, n + m)
        Xb[rows] = theta[new]
        if beta:
            Pb[rows] = theta[new]
        idx[rows] = np.arange(pending, pending + m)
        joined[rows] = it
        streak[rows] = 0
        window[rows] = 0.0
        last[rows] = np.inf
        pending += m
        return n + m

    def finish(mask: np.ndarray, code: Any, gn: Any, why: Any) -> int:
        rows = idx[:n][mask]
        theta[rows] = Xb[:n][mask]
        steps[rows] = it - joined[:n][mask]
        status[rows] = code
        gnorm[rows] = gn
        rule[rows] = why
        keep = ~mask
        m = int(np.count_nonzero(keep))
        for arr in run_state:
            arr[:m] = arr[:n][keep]
        return m

    def advance() -> None:
        # nothing is running: the next runs join at the next multiple of `period`
        nonlocal it
        it = -(-it // period) * period

    n = refill()
    inf = np.inf
    vmax = np.maximum.reduce  # (NaN-propagating, without the ndarray.max wrapper)
    with np.errstate(all="ignore"):
        while n:
            Xa = Xb[:n]
            k = it - int(joined[0])  # the largest k (all equal unless refilling: constant step)
            # 1. divergence of the iterate itself (before asking for a gradient there); a NaN
            #    gradient is caught below at every step, the norm test every check_every steps
            if it % check_every == 0:
                xn = np.einsum("ij,ij->i", Xa, Xa)
                np.sqrt(xn, out=xn)
                if not vmax(xn) <= diverge_norm:  # a NaN, an inf or a large norm
                    n = finish(~np.isfinite(xn) | (xn > diverge_norm), DIVERGED, np.nan, RULE_NONE)
                    if not n:
                        advance()
                        n = refill()
                    continue
            Ya = Xa + beta * (Xa - Pb[:n]) if (beta and nesterov) else Xa
            G = np.asarray(problem.gradient(Ya), dtype=float)
            if G.shape != Xa.shape:
                from .errors import ShapeError

                raise ShapeError(f"`problem.gradient` must return shape {Xa.shape} for a batch of "
                                 f"shape {Xa.shape}, got {G.shape}")
            gn = np.einsum("ij,ij->i", G, G)
            np.sqrt(gn, out=gn)
            g_k = gamma(k)
            small = gn <= tol
            if beta:
                dx = Xa - Pb[:n]
                small &= np.sqrt(np.einsum("ij,ij->i", dx, dx)) <= g_k * tol
            st = streak[:n]
            st += 1
            st *= small  # consecutive iterates with a small gradient
            pos = it % patience  # = k % patience for every running orbit
            win = window[:n]
            win[:, pos] = gn
            # the stopping tests, each evaluated only where it can fire
            bad = conv = sub = trav = hit = None
            if not vmax(gn) < inf:  # a NaN or an infinite gradient
                bad = ~np.isfinite(gn)
            if vmax(st) >= patience:
                oldest = win[:, (pos + 1) % patience]  # |G| at step k - patience + 1
                conv = (st >= patience) & (gn <= oldest)
                if bad is not None:
                    conv &= ~bad
            if tail is not None and k >= patience:
                trav = np.max(win, axis=1) * tail(k) <= tol
                if conv is not None:
                    trav &= ~conv
                if bad is not None:
                    trav &= ~bad
            if sublevel is not None and it % check_every == 0 and k > 0:
                check = it - joined[:n] > 0
                if check.all():
                    La = np.array(problem.loss(Xa), dtype=float).reshape(-1)
                else:
                    La = np.full(n, inf)
                    La[check] = np.asarray(problem.loss(Xa[check]), dtype=float).reshape(-1)
                lst = last[:n]
                sub = check & (La < sublevel) & (La <= lst)
                if bad is not None:
                    sub &= ~bad
                if conv is not None:
                    sub &= ~conv
                lst[check] = La[check]
            if k >= max_steps:
                hit = it - joined[:n] >= max_steps
            done = None
            for a in (bad, conv, sub, trav, hit):
                if a is not None:
                    done = a if done is None else done | a
            if done is not None:
                if done.any():
                    zero = np.zeros(n, dtype=bool)
                    bad_ = zero if bad is None else bad
                    conv_ = zero if conv is None else conv
                    sub_ = zero if sub is None else sub
                    trav_ = zero if trav is None else trav
                    code = np.where(bad_, DIVERGED, np.where(conv_ | sub_ | trav_, CONVERGED,
                                                             UNCONVERGED))[done]
                    why = np.where(conv_, RULE_GRADIENT, np.where(
                        sub_, RULE_SUBLEVEL, np.where(trav_, RULE_TRAVEL, RULE_NONE)))[done]
                    keep = ~done
                    G = G[keep]
                    if beta and nesterov:
                        Ya = Ya[keep]
                    n = finish(done, code, gn[done], why)
                    Xa = Xb[:n]
                    if not (beta and nesterov):
                        Ya = Xa
            # 2. the step (theta_{k+1} from theta_k; finished rows are out)
            if beta:
                Xn = Ya - g_k * G
                if not nesterov:
                    Xn = Xn + beta * (Xa - Pb[:n])
                Pb[:n] = Xa
                Xa[...] = Xn
            else:
                Sa = Sb[:n]
                np.multiply(G, g_k, out=Sa)
                np.subtract(Xa, Sa, out=Xa)
            it += 1
            if not n:
                advance()
                n = refill()
            elif it % period == 0:
                n = refill()
    return Descent(theta=theta, grad_norm=gnorm, steps=steps, status=status, rule=rule)

"""Saddle-to-saddle dynamics from small initialisation (docs/theory.md §1.6, §8).

Gradient descent started at ``sigma * theta0`` with ``sigma -> 0`` passes a sequence of
saddles: it lingers on a *plateau* of the loss near each one and escapes along an unstable
direction.  Near a saddle whose gradient-descent map has unstable multiplier
``lambda_u = 1 + gamma * r`` the distance from the saddle's stable set grows by ``lambda_u`` per
step, so a plateau entered at distance ``~ sigma`` lasts

    T(sigma) = log(1/sigma) / log(lambda_u) + O(1)  steps,

i.e. **``1 / log(lambda_u)`` steps per e-fold of ``1/sigma``** (Corollary 2.3 made quantitative).
:func:`small_init_dynamics` measures the plateaus for several ``sigma``, locates and certifies
the saddle each sits at (:func:`csm.critical.find_critical_points` from the plateau's closest
approach, :func:`csm.identify.certify_limits`), fits the plateau length against
``log(1/sigma)`` and compares the slope with ``1 / log(1 + gamma r)``, with ``r`` the negative
of the certified least Hessian eigenvalue unless the caller supplies the growth rate (for
saddles where the Hessian does not exist, e.g. a ReLU network with every neuron at zero, where
the rate comes from the homogeneous linearisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ._results import Result
from ._validation import as_point, positive_float, positive_int
from .errors import InputError

__all__ = ["Plateau", "SmallInitDynamics", "small_init_dynamics", "loss_plateaus",
           "detect_plateaus"]


@dataclass(frozen=True)
class Plateau:
    """A maximal stretch of steps with ``|L - level| <= rtol * level`` (``end`` exclusive)."""

    sigma: float
    level: float
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def loss_plateaus(losses: np.ndarray, levels: Sequence[float], rtol: float, sigma: float,
                  min_length: int = 3) -> list[Plateau]:
    """Plateaus of one loss curve at the given levels (each level's longest stretch)."""
    out = []
    for lv in levels:
        tol = rtol * max(abs(lv), 1e-300)
        near = np.abs(losses - lv) <= tol
        if not near.any():
            continue
        pad = np.concatenate([[0], near.astype(np.int8), [0]])
        d = np.diff(pad)
        starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
        j = int(np.argmax(ends - starts))
        if ends[j] - starts[j] >= min_length:
            out.append(Plateau(float(sigma), float(lv), int(starts[j]), int(ends[j])))
    return out


def detect_plateaus(losses: Any, *, flat: float, min_length: int = 10,
                    floor: float = 0.0, merge: float = 0.01) -> list[tuple[int, int, float]]:
    """Plateaus of one loss curve found without being told the levels: maximal runs of at least
    ``min_length`` steps with ``|L_{k+1} - L_k| <= flat L_k`` and ``L > floor``; consecutive runs
    whose median levels agree within ``merge`` (relative) are one plateau.  Returns
    ``[(start, end, level)]`` (``end`` exclusive, ``level`` the median over the run)."""
    L = np.asarray(losses, dtype=float)
    ok = (np.abs(np.diff(L)) <= flat * L[:-1]) & (L[:-1] > floor)
    pad = np.concatenate([[0], ok.astype(np.int8), [0]])
    d = np.diff(pad)
    out: list[tuple[int, int, float]] = []
    for s, e in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]):
        if e - s < min_length:
            continue
        lv = float(np.median(L[s:e]))
        if out and abs(lv - out[-1][2]) <= merge * out[-1][2]:
            s0 = out[-1][0]
            out[-1] = (s0, int(e), float(np.median(L[s0:e])))
        else:
            out.append((int(s), int(e), lv))
    return out


@dataclass(frozen=True)
class SmallInitDynamics(Result):
    """Outcome of :func:`small_init_dynamics`.

    ``plateaus`` per ``sigma``; per level: ``lengths`` (one per sigma, -1 where absent), the
    fitted ``slope`` (steps per e-fold of 1/sigma), the ``predicted`` slope ``1/log(1+gamma r)``,
    the ``rate`` ``r`` used and where it came from (``rate_source``), the certified ``saddle``
    (a :class:`~csm.CriticalPoint` or None) and ``relative_error``; ``escape_alignment`` the
    ``|cos|`` between the escape direction and the saddle's least-eigenvalue eigenvector.
    """

    step: float
    sigmas: tuple
    levels: tuple
    lengths: dict
    slope: dict
    predicted: dict
    rate: dict
    rate_source: dict
    relative_error: dict
    escape_alignment: dict
    saddles: dict = field(default_factory=dict)
    plateaus: tuple = ()
    tolerance: float = 0.1

    _NOT_SERIALISED = ("saddles", "plateaus")

    @property
    def success(self) -> bool:
        errs = [e for e in self.relative_error.values() if np.isfinite(e)]
        return bool(errs) and all(e <= self.tolerance for e in errs)

    @property
    def message(self) -> str:
        parts = [f"level {lv:.6g}: {self.slope[lv]:.4g} steps per e-fold of 1/sigma vs predicted "
                 f"{self.predicted[lv]:.4g} ({self.rate_source[lv]}), relative error "
                 f"{self.relative_error[lv]:.2%}" for lv in self.levels]
        return "; ".join(parts) or "no plateau found at any level"


def small_init_dynamics(
    problem: Any,
    step: float,
    theta0: Any,
    sigmas: Sequence[float],
    *,
    n_steps: int,
    levels: Sequence[float] | None = None,
    rtol: float = 0.01,
    rate: float | dict | None = None,
    certify: bool = True,
    tolerance: float = 0.1,
) -> SmallInitDynamics:
    """Plateau lengths of gradient descent from ``sigma * theta0`` against the linear prediction.

    Parameters
    ----------
    problem : Problem
    step : float
        ``gamma``.
    theta0 : array (d,)
        Direction of the initialisation.
    sigmas : sequence of float
        Scales (at least two, distinct).
    n_steps : int
        Steps per run.
    levels : sequence of float, optional
        Loss levels of the saddles (default ``problem.critical_values()`` without ``min_loss``).
    rtol : float
        A step is on the plateau at level ``l`` when ``|L - l| <= rtol * l``.
    rate : float or dict level -> float, optional
        Growth rate ``r`` of the escape (``lambda_u = 1 + gamma r``); default: minus the least
        Hessian eigenvalue of the certified saddle at that level.
    certify : bool
        Locate (Levenberg--Marquardt from the plateau's closest approach) and certify the saddle.
    tolerance : float
        ``success`` when every measured slope is within this relative error of its prediction.

    Returns
    -------
    SmallInitDynamics
    """
    from .critical import find_critical_points
    from .identify import critical_values
    from .orbits import trajectories

    d = int(problem.dim)
    step = positive_float(step, "step")
    theta0 = as_point(theta0, d, "theta0")
    sig = np.asarray(sigmas, dtype=float).reshape(-1)
    if sig.size < 2 or np.any(~np.isfinite(sig)) or np.any(sig <= 0) or np.unique(sig).size < sig.size:
        raise InputError(f"`sigmas` must be at least two distinct positive numbers, got {sigmas!r}")
    n_steps = positive_int(n_steps, "n_steps")
    rtol = positive_float(rtol, "rtol")
    if levels is None:
        lv = critical_values(problem)
        floor = getattr(problem, "min_loss", None)
        levels = [float(v) for v in lv if floor is None or v > floor]
    levels = tuple(float(v) for v in levels)
    if not levels:
        raise InputError("`levels` is empty and the problem lists no critical values above its "
                         "minimum: say which loss levels to look for")

    def gd(Y: np.ndarray) -> np.ndarray:
        return Y - step * np.asarray(problem.gradient(Y), dtype=float)

    T = trajectories(gd, sig[:, None] * theta0[None, :], n_steps, allow_nonfinite=True)
    R = T.shape[0]
    with np.errstate(all="ignore"):
        L = np.asarray(problem.loss(T.reshape(-1, d)), dtype=float).reshape(R, -1)
    plateaus = [loss_plateaus(L[i], levels, rtol, sig[i]) for i in range(R)]
    lengths, slope, pred, rates, src, err, align, saddles = {}, {}, {}, {}, {}, {}, {}, {}
    for lv in levels:
        per = [next((p for p in plats if p.level == lv), None) for plats in plateaus]
        lengths[lv] = [p.length if p else -1 for p in per]
        have = [i for i, p in enumerate(per) if p is not None]
        slope[lv] = (float(np.polyfit(np.log(1.0 / sig[have]), [per[i].length for i in have], 1)[0])
                     if len(have) >= 2 else float("nan"))
        saddle, vec = None, None
        if certify and have:
            i = have[-1]  # the smallest sigma: the longest stay, the closest approach
            p = per[i]
            seg = T[i, p.start:p.end]
            G = np.asarray(problem.gradient(seg), dtype=float)
            closest = seg[int(np.argmin(np.linalg.norm(G, axis=1)))]
            found = find_critical_points(problem, starts=closest[None], gtol=1e-10)
            if found.points:
                saddle = found.points[0]
                from .identify import certify_limits

                cert = certify_limits(problem, saddle.theta[None])
                vec = cert.eigenvector[0]
            saddles[lv] = saddle
            k = min(p.end + 5, T.shape[1] - 1)
            esc = T[i, k] - closest
            if vec is not None and np.linalg.norm(esc) > 0:
                align[lv] = float(abs(esc @ vec) / np.linalg.norm(esc))
        r = rate.get(lv) if isinstance(rate, dict) else rate
        if r is not None:
            rates[lv], src[lv] = float(r), "given"
        elif saddle is not None:
            rates[lv], src[lv] = -float(saddle.info["least_eigenvalue"]), "certified Hessian"
        else:
            rates[lv], src[lv] = float("nan"), "none"
        lam = 1.0 + step * rates[lv]
        pred[lv] = 1.0 / math.log(lam) if lam > 1 else float("nan")
        err[lv] = abs(slope[lv] - pred[lv]) / pred[lv] if np.isfinite(pred[lv]) else float("nan")
        align.setdefault(lv, float("nan"))
    return SmallInitDynamics(
        step=step, sigmas=tuple(float(s) for s in sig), levels=levels, lengths=lengths,
        slope=slope, predicted=pred, rate=rates, rate_source=src, relative_error=err,
        escape_alignment=align, saddles=saddles,
        plateaus=tuple(p for plats in plateaus for p in plats), tolerance=float(tolerance))

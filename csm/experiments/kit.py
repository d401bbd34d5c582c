"""Building blocks for reproducible experiments (used by the built-in plugins' ``csm_experiments``).

Each block works for **any** problem and returns table rows (lists of dicts), falsifiable
:class:`Claim` objects (numbers measured, numbers expected, the rule) and, where useful, a PNG
figure -- so a plugin's experiment is mostly glue:

* :func:`critical_point_claims` -- the listed critical points are critical by a criterion
  *other* than the one that produced them (a gradient from an independent evaluation, e.g.
  central differences of the loss in 50-digit arithmetic), and every strict saddle has a
  direction along which the **loss itself** curves down (second-order difference quotient of
  loss values along the least eigenvector, not the eigenvalue that assigned the kind);
* :func:`stable_set_sweep` -- Monte Carlo fraction of initialisations converging into saddles,
  with exact intervals (Corollary 2.3, Theorem 4.7); unconverged runs near a saddle count
  against the claim;
* :func:`positive_control` -- beside every "0/n into saddles": runs started *on* the computed
  center-stable manifold stay at the saddle far longer than a push off it takes to escape, and
  pushed runs escape inside the predicted band -- so the 0/n is evidence, not the absence of a
  detector;
* :func:`manifold_claims`, :func:`manifold_slice` -- a center-stable manifold, verified
  (invariance; escape times inside the band between the ``lambda_max`` and ``lambda_min``
  predictions, 15 % slack, pushes above the graph tolerance), and a slice figure;
* :func:`heavy_ball_claims` -- the center-stable manifold of the heavy-ball map at a saddle and
  its unstable multiplier against the root of ``lambda^2 - (1 + beta - gamma h) lambda + beta``;
* :func:`mp_gradient`, :func:`curvature_quotient` -- the independent evaluations.

Figures are written with :func:`csm.plotting.save_figure` (atomic, inside the output folder).
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._io import atomic_write
from .._results import to_jsonable
from ..maps import GradientDescentMap, local_curvature
from ..plotting import figure_path, new_figure, save_figure
from ..problem import CriticalPoint
from .types import Claim

__all__ = [
    "critical_point_claims",
    "stable_set_sweep",
    "positive_control",
    "positive_control_figure",
    "PositiveControl",
    "manifold_claims",
    "manifold_slice",
    "heavy_ball_claims",
    "mp_gradient",
    "curvature_quotient",
    "save_estimate",
    "Timer",
]

_SADDLES = ("strict_saddle", "saddle", "local_maximum")
_EPS = float(np.finfo(float).eps)

#: Relative slack of the escape band (the same rule as ``ManifoldVerification.checks``).
BAND = 0.15


class Timer:
    """Seconds per named part of an experiment: ``with timer("stable sets"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> "Timer._Part":
        return Timer._Part(self, name)

    class _Part:
        def __init__(self, timer: "Timer", name: str) -> None:
            self.timer, self.name = timer, name

        def __enter__(self) -> None:
            self.t = time.perf_counter()

        def __exit__(self, *exc: Any) -> None:
            dt = time.perf_counter() - self.t
            self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + dt


def local_map(problem: Any, point: Any, step: Any) -> Any:
    """``problem.local_map(point, step)`` where the plugin has one, else the plain GD map."""
    lm = getattr(problem, "local_map", None)
    return lm(point, step) if callable(lm) else GradientDescentMap(problem, step)


# ------------------------------------------------------------------ independent evaluations
def mp_gradient(loss_mp: Callable[[list], Any], theta: Any, *, dps: int = 50,
                h: str = "1e-20") -> np.ndarray:
    """Gradient by central differences of ``loss_mp`` in ``dps``-digit arithmetic (mpmath).

    ``loss_mp(x)`` takes a list of ``mpmath.mpf`` and returns an ``mpf``; the float ``theta``
    is converted exactly.  With ``h = 1e-20`` and 50 digits the truncation error is
    ``O(h^2 |L'''|) ~ 1e-40`` and the rounding error ``~1e-50 / h = 1e-30``: the result is the
    gradient of the loss at the stored point, independent of the problem's gradient code.
    """
    import mpmath as mp

    with mp.workdps(dps):
        x = [mp.mpf(float(t)) for t in np.asarray(theta, dtype=float).ravel()]
        hh = mp.mpf(h)
        out = []
        for i in range(len(x)):
            xp, xm = list(x), list(x)
            xp[i] += hh
            xm[i] -= hh
            out.append(float((loss_mp(xp) - loss_mp(xm)) / (2 * hh)))
    return np.array(out)


def curvature_quotient(loss: Callable[[np.ndarray], np.ndarray] | None, theta: Any, v: Any,
                       hs: Sequence[float], *, loss_mp: Callable[[list], Any] | None = None,
                       dps: int = 50) -> dict[str, np.ndarray]:
    """``(L(x + h v) - 2 L(x) + L(x - h v)) / h^2`` for each ``h``, with its round-off bound.

    Uses ``loss_mp`` (``dps`` digits) when given, else the batched float ``loss``.  Returns
    ``quotient``, ``noise`` (``1e3 eps_work |L| / h^2``), ``decrease``
    (``min(L(x + h v), L(x - h v)) - L(x)``) per ``h``.
    """
    x = np.asarray(theta, dtype=float).ravel()
    v = np.asarray(v, dtype=float).ravel()
    v = v / np.linalg.norm(v)
    hs = np.asarray(hs, dtype=float)
    if loss_mp is not None:
        import mpmath as mp

        with mp.workdps(dps):
            X = [mp.mpf(float(t)) for t in x]
            V = [mp.mpf(float(t)) for t in v]
            L0 = loss_mp(X)
            q, dec, noise = [], [], []
            for h in hs:
                H = mp.mpf(float(h))
                Lp = loss_mp([a + H * b for a, b in zip(X, V)])
                Lm = loss_mp([a - H * b for a, b in zip(X, V)])
                q.append(float((Lp - 2 * L0 + Lm) / H**2))
                dec.append(float(min(Lp, Lm) - L0))
                noise.append(float(1e3 * mp.mpf(10) ** (-dps) * max(abs(L0), mp.mpf(1e-300)) / H**2))
        return {"quotient": np.array(q), "decrease": np.array(dec), "noise": np.array(noise)}
    P = np.concatenate([x[None], x[None] + hs[:, None] * v[None], x[None] - hs[:, None] * v[None]])
    L = np.asarray(loss(P), dtype=float).ravel()
    L0, Lp, Lm = L[0], L[1:1 + len(hs)], L[1 + len(hs):]
    return {"quotient": (Lp - 2 * L0 + Lm) / hs**2, "decrease": np.minimum(Lp, Lm) - L0,
            "noise": 1e3 * _EPS * max(abs(L0), 1e-300) / hs**2}


# ------------------------------------------------------------------ critical points
def critical_point_claims(
    problem: Any,
    *,
    independent_gradient: Callable[[np.ndarray], np.ndarray],
    how: str,
    grad_tol: float = 1e-10,
    step: float = 1e-2,
    reference: str = "Proposition 2.5",
    points: Sequence[CriticalPoint] | None = None,
    loss_mp: Callable[[list], Any] | None = None,
    hs: Sequence[float] = (1e-3, 1e-4),
    analytic_least: Mapping[str, float] | None = None,
    tag: str = "",
) -> tuple[list[dict], list[Claim]]:
    """Table of the listed critical points and two (or three) independent claims.

    * criticality: ``max |grad L|`` by ``independent_gradient`` (described by ``how``) is at
      most ``grad_tol`` -- not the problem's own gradient, which produced (or was used to
      locate) the points;
    * strictness: at every point listed as ``strict_saddle``, with ``v`` the eigenvector of the
      least eigenvalue of the local curvature (``DG_J`` for the ReLU loss, the Hessian
      elsewhere; :func:`csm.maps.local_curvature`), the loss itself decreases along ``v`` and
      ``(L(x + h v) - 2 L(x) + L(x - h v)) / h^2 < -noise`` for every ``h`` in ``hs``
      (:func:`curvature_quotient`; loss values only, in ``dps`` digits when ``loss_mp`` is given);
    * with ``analytic_least`` (label -> closed-form least eigenvalue): the computed least
      eigenvalue equals it to ``1e-10`` relative.
    """
    cps = list(problem.critical_points() if points is None else points)
    rows = []
    worst_g, worst_own = 0.0, 0.0
    quot_max, dec_max, n_strict, strict_ok = -np.inf, -np.inf, 0, True
    analytic_err, analytic_n = 0.0, 0

    def batched_loss(X: np.ndarray) -> np.ndarray:
        return np.asarray(problem.loss(X), dtype=float)

    for cp in cps:
        th = np.asarray(cp.theta, dtype=float)
        g_own = float(np.linalg.norm(np.asarray(problem.gradient(th), dtype=float)))
        g_ind = float(np.linalg.norm(independent_gradient(th)))
        worst_g, worst_own = max(worst_g, g_ind), max(worst_own, g_own)
        row: dict[str, Any] = {"label": cp.label, "kind": cp.kind, "loss": float(cp.loss),
                               "|G| (own)": g_own, f"|G| ({how})": g_ind}
        H = local_curvature(problem, cp, step)
        if H is not None:
            w, V = np.linalg.eigh(0.5 * (H + H.T))
            scale = max(1.0, float(np.abs(w).max()))
            row.update({"least eigenvalue": float(w[0]),
                        "negative": int(np.sum(w < -1e-9 * scale)),
                        "zero": int(np.sum(np.abs(w) <= 1e-9 * scale))})
            if analytic_least and cp.label in analytic_least:
                a = float(analytic_least[cp.label])
                analytic_err = max(analytic_err, abs(float(w[0]) - a) / max(1.0, abs(a)))
                analytic_n += 1
                row["analytic least"] = a
            if cp.kind == "strict_saddle":
                n_strict += 1
                cq = curvature_quotient(batched_loss, th, V[:, 0], hs, loss_mp=loss_mp)
                ok = bool(np.all(cq["quotient"] < -cq["noise"]) and np.all(cq["decrease"] < 0))
                strict_ok &= ok
                quot_max = max(quot_max, float(np.max(cq["quotient"])))
                dec_max = max(dec_max, float(np.max(cq["decrease"])))
                for h, qv in zip(hs, cq["quotient"]):
                    row[f"loss quotient h={h:g}"] = float(qv)
        rows.append(row)
    where = f" ({tag})" if tag else ""
    claims = [Claim(
        f"every listed critical point is critical{where}, checked independently of the "
        "gradient code that produced it", reference,
        measured={"points": len(cps), "max_grad_independent": worst_g,
                  "max_grad_own_code": worst_own},
        expected={"max_grad_independent": 0.0},
        criterion=f"max |grad L| by {how} <= {grad_tol:g}", agrees=worst_g <= grad_tol)]
    if n_strict:
        claims.append(Claim(
            f"every saddle listed as strict{where} has a direction along which the loss curves "
            "down (loss values only, not the eigenvalue that assigned the kind)", reference,
            measured={"strict_saddles": n_strict, "max_quotient": quot_max,
                      "max_decrease": dec_max},
            expected={"max_quotient_below": 0.0, "max_decrease_below": 0.0},
            criterion="at every strict saddle, along the least eigenvector v of the local "
                      "curvature and for h in " + ", ".join(f"{h:g}" for h in hs) + ": "
                      "(L(x+hv) - 2L(x) + L(x-hv))/h^2 < -1e3 eps |L| / h^2 and "
                      "min(L(x+hv), L(x-hv)) < L(x)"
                      + (" (50-digit loss)" if loss_mp is not None else ""),
            agrees=strict_ok))
    if analytic_n:
        claims.append(Claim(
            f"the least curvature eigenvalue at the listed points{where} equals its closed form",
            reference, measured={"points": analytic_n, "max_relative_error": analytic_err},
            expected={"max_relative_error": 0.0},
            criterion="|computed - closed form| <= 1e-10 max(1, |closed form|) at every point",
            agrees=analytic_err <= 1e-10))
    return rows, claims


# ------------------------------------------------------------------ stable sets
def save_estimate(est: Any, path: Path, root: Path) -> Path:
    """Write a :class:`~csm.StableSetEstimate` (per-run arrays + summary) atomically.

    The layout is that of :meth:`StableSetEstimate.save` (``StableSetEstimate.load`` reads it).
    """
    meta = {f: getattr(est, f) for f in est.__dataclass_fields__ if f != "arrays"}
    buf = io.BytesIO()
    np.savez_compressed(buf, _meta=np.array(json.dumps(to_jsonable(meta))),
                        **{k: np.asarray(v) for k, v in est.arrays.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, buf.getvalue(), root=root)


def stable_set_sweep(
    problem: Any,
    steps: Sequence[Any],
    n: int,
    *,
    max_steps: int,
    tol: float = 1e-6,
    seed: int = 0,
    executor: Any = None,
    progress: bool = False,
    reference: str = "Corollary 2.3",
    statement: str | None = None,
    out_dir: Path | str | None = None,
    name: str | None = None,
    adjudicate: Callable[[np.ndarray], np.ndarray] | None = None,
    adjudicator: str = "",
    **kwargs: Any,
) -> tuple[list[dict], list[Claim], list[Any]]:
    """Run :func:`csm.estimate_stable_set` for each step; claim: no run converges to a saddle.

    Criterion per step: 0 runs certified to converge to a critical point of a saddle kind,
    0 unconverged runs ending within ``slow_radius`` (0.1) of a listed saddle (a run parked at
    a saddle counts against the claim, it is not hidden), and every run whose listed kind
    disagrees with its own spectral certificate (``disagree``) is settled by a third,
    independent test ``adjudicate(thetas) -> bool array`` (True: verified not a saddle;
    described by ``adjudicator``) -- without one, any disagreement fails the claim.
    ``measured`` carries the exact 95 % upper
    bound (``1 - 0.025^{1/n}`` for 0 hits) and the bound when every undecided run is counted as
    a saddle.  With ``out_dir`` and ``name`` every estimate's per-run arrays go to
    ``out_dir/data/{name}-step{gamma}.npz`` (rows carry the path relative to ``out_dir``).
    The claim is falsifiable only together with :func:`positive_control` at a saddle of the
    same problem and step.
    """
    from ..stable_sets import estimate_stable_set

    rows, claims, ests = [], [], []
    for i, gamma in enumerate(steps):
        est = estimate_stable_set(problem, gamma, n=n, max_steps=max_steps, tol=tol,
                                  seed=seed + i, executor=executor, progress=progress, **kwargs)
        ests.append(est)
        tag = getattr(gamma, "spec", None)
        gtxt = tag() if callable(tag) else f"{gamma}"
        row = {"step": gtxt, "runs": est.n, "to saddles": est.saddle_count,
               "95% CI (saddles)": f"[{est.saddle_ci[0]:.2g}, {est.saddle_ci[1]:.2g}]",
               "unconverged": est.unconverged_count, "slow escapes": est.slow_escape_count,
               "95% CI (saddles + undecided)":
                   f"[{est.saddle_ci_undecided[0]:.2g}, {est.saddle_ci_undecided[1]:.2g}]"}
        for label in est.labels:
            row[label] = est.counts[label]
        if out_dir is not None and name is not None:
            out = Path(out_dir)
            p = save_estimate(est, out / "data" / f"{name}-step{gtxt}.npz", out)
            row["arrays"] = p.relative_to(out).as_posix()
        rows.append(row)
        dis = np.nonzero(np.asarray(est.arrays.get("disagree", np.zeros(est.n)), bool))[0]
        settled = 0
        if len(dis) and adjudicate is not None:
            settled = int(np.sum(np.asarray(adjudicate(np.asarray(est.arrays["theta"])[dis]),
                                            bool)))
        row["disagree (settled)"] = f"{len(dis)} ({settled})"
        ok = est.saddle_count == 0 and est.slow_escape_count == 0 and settled == len(dis)
        crit = ("to_saddles = 0, slow_escapes = 0 (no unconverged run ends within 0.1 of a "
                "listed saddle), and every run whose listed kind disagrees with its spectral "
                "certificate is settled as not a saddle by "
                + (adjudicator or "(no independent test given: disagree must be 0)")
                + "; see the positive control for the same step")
        claims.append(Claim(
            statement or f"gradient descent (step {gtxt}) does not converge to saddles",
            reference,
            measured={"runs": est.n, "to_saddles": est.saddle_count,
                      "ci95_high": float(est.saddle_ci[1]),
                      "unconverged": est.unconverged_count,
                      "slow_escapes": est.slow_escape_count,
                      "undecided": est.undecided_count,
                      "ci95_high_counting_undecided": float(est.saddle_ci_undecided[1]),
                      "disagree": est.disagree_count, "disagree_settled_not_saddle": settled,
                      "max_steps": max_steps},
            expected={"to_saddles": 0, "slow_escapes": 0,
                      "disagree_settled_not_saddle": len(dis)},
            criterion=crit, agrees=ok))
    return rows, claims, ests


# ------------------------------------------------------------------ positive controls
@dataclass
class PositiveControl:
    """Orbits started on the computed manifold vs orbits pushed off it (:func:`positive_control`)."""

    label: str
    step: Any
    radius: float
    lambda_min: float
    lambda_max: float
    tol: float
    n: int
    n_steps: int
    stayed: int
    contraction: float
    deltas: tuple
    exit_median: tuple
    band_low: tuple
    band_high: tuple
    pushed_left: tuple
    graph_horizon: float
    traces: dict = field(default_factory=dict, repr=False)
    manifold: Any = field(default=None, repr=False)

    @property
    def stay_fraction(self) -> float:
        return self.stayed / self.n


def positive_control(
    problem: Any,
    point: CriticalPoint,
    step: Any,
    *,
    n: int = 32,
    deltas_rel: Sequence[float] = (1e-2, 1e-3),
    t_factor: float = 3.0,
    tol: float = 1e-12,
    seed: int = 0,
    reference: str = "Theorem 2.2, Corollary 2.3",
    manifold: Any = None,
    map: Any = None,
    min_stay: float = 0.95,
) -> tuple[PositiveControl, Claim, list[dict]]:
    """Runs started on the center-stable manifold at ``point`` stay; runs pushed off escape.

    The manifold of the local map (``problem.local_map(point, step)`` where the plugin has one)
    is computed to ``tol``; ``n`` points of its graph (``m.sample(n, seed, fraction=0.5)``) are
    iterated for ``T = min(t_factor * log(eps/delta_1) / log lambda_max,
    0.9 * log(eps/tol) / log lambda_max)`` steps (the second bound: the graph's own error
    ``tol`` grows by up to ``lambda_max`` per step, so graph orbits are only *guaranteed* to
    stay that long).  The same points pushed ``delta = deltas_rel * eps`` along the fastest
    unstable eigen-direction (both signs; the offset is multiplied by ``lambda_max`` per step)
    must all leave the ``eps``-ball by ``T``, with a median exit step within 15 % (+- 3 steps)
    of ``log(eps/delta)/log lambda_max``.  (Pushes along the *slowest* direction are the
    business of :func:`manifold_claims`; when ``lambda_max >> lambda_min`` they need longer
    than the graph's accuracy lets orbits stay, so they cannot serve as a control.)

    Claim: at least ``min_stay`` of the graph orbits are still in the ball after ``T`` steps,
    ``T >= 2 x`` the predicted exit of the largest push, and the pushes behave as
    predicted.  This is what makes a "0/n runs converge to a saddle" count evidence: an orbit
    on the stable set does stay at the saddle, and the instruments see it.
    """
    from ..manifold import center_stable_manifold

    g = local_map(problem, point, step) if map is None else map
    x0 = np.asarray(getattr(point, "theta", point), dtype=float)
    m = manifold if manifold is not None else center_stable_manifold(g, x0, tol=tol)
    eps = float(m.radius)
    lmin, lmax = float(m.lambda_min), float(m.lambda_max)
    # pushes go along the fastest unstable eigen-direction, whose multiplier lambda_max sets
    # the predicted exit log(eps/delta)/log lambda_max; graph orbits are only guaranteed to
    # stay until the graph error tol, amplified by up to lambda_max per step, reaches eps
    horizon = math.log(eps / m.tol) / math.log(lmax)
    deltas = tuple(float(r) * eps for r in deltas_rel)
    pred = [math.log(eps / d) / math.log(lmax) for d in deltas]
    T = int(math.ceil(min(t_factor * pred[0], 0.9 * horizon)))
    rng = np.random.default_rng(seed)
    X = m.sample(n, rng, fraction=0.5)
    p, q = m.frame.to_z(X - m.fixed_point)
    signs = rng.choice([-1.0, 1.0], size=n)
    fastest = int(np.argmax(np.abs(m.eigenvalues_u)))
    starts = [X]
    for d in deltas:
        dq = np.zeros_like(q)
        dq[:, fastest] = d * signs
        starts.append(m.fixed_point + m.frame.from_z(p, q + dq))
    Y = np.concatenate(starts)
    B = len(Y)
    norms = np.full((B, T + 1), np.nan)
    qnorm = np.full((B, T + 1), np.nan)

    def record(k: int, rows: np.ndarray, Z: np.ndarray) -> np.ndarray:
        pp, qq = m.frame.to_z(Z - m.fixed_point)
        r = np.sqrt(np.sum(pp**2, axis=1) + np.sum(qq**2, axis=1))
        norms[rows, k] = r
        qnorm[rows, k] = np.sqrt(np.sum(qq**2, axis=1))
        return r

    record(0, np.arange(B), Y)
    exits = np.full(B, -1)
    alive = np.arange(B)
    with np.errstate(all="ignore"):
        for k in range(1, T + 1):
            if alive.size == 0:
                break
            Y = np.asarray(g(Y), dtype=float)
            r = record(k, alive, Y)
            left = ~(r <= 4 * eps)  # keep tracing a little beyond the ball for the figure
            out_now = ~(r <= eps) & (exits[alive] < 0)
            exits[alive[out_now]] = k
            Y, alive = Y[~left], alive[~left]
    ex = exits.reshape(len(deltas) + 1, n)
    stayed = int(np.sum(ex[0] < 0))
    on = norms[:n]
    last = on[:, -1]
    contraction = float(np.nanmedian(last / on[:, 0])) if np.any(np.isfinite(last)) else float("nan")
    med = tuple(float(np.median(np.where(e < 0, T + 1, e))) for e in ex[1:])
    left_frac = tuple(float(np.mean(e >= 0)) for e in ex[1:])
    lo = tuple((1 - BAND) * f - 3 for f in pred)
    hi = tuple((1 + BAND) * f + 3 for f in pred)
    pc = PositiveControl(
        label=str(getattr(point, "label", "x*")), step=step, radius=eps, lambda_min=lmin,
        lambda_max=lmax, tol=float(m.tol), n=n, n_steps=T, stayed=stayed, contraction=contraction,
        deltas=deltas, exit_median=med, band_low=lo, band_high=hi, pushed_left=left_frac,
        graph_horizon=horizon, traces={"norms": norms, "q": qnorm, "exits": exits}, manifold=m)
    band_ok = all(a <= md <= b for a, md, b in zip(lo, med, hi))
    ok = (stayed >= min_stay * n and T >= 2 * pred[0] and band_ok
          and all(f == 1.0 for f in left_frac))
    measured = {"on_manifold_runs": n, "stayed_in_ball": stayed, "stay_fraction": stayed / n,
                "steps_T": T, "median_radius_ratio_T": contraction, "radius_eps": eps,
                "lambda_min": lmin, "lambda_max": lmax}
    expected = {"stay_fraction_min": min_stay, "T_over_predicted_exit_min": 2.0}
    for i, d in enumerate(deltas):
        measured[f"delta{i + 1}"] = d
        measured[f"exit_median_delta{i + 1}"] = med[i]
        measured[f"pushed_left_fraction_delta{i + 1}"] = left_frac[i]
        expected[f"exit_band_delta{i + 1}"] = [lo[i], hi[i]]
    claim = Claim(
        f"positive control at {pc.label} (step {getattr(step, 'spec', lambda: step)()}): "
        "orbits started on the computed center-stable manifold stay at the saddle, orbits "
        "pushed a distance delta off it escape at the predicted rate", reference,
        measured=measured, expected=expected,
        criterion=f"stay_fraction >= {min_stay} after T = min({t_factor:g} x log(eps/delta1)/"
                  "log lambda_max, 0.9 log(eps/tol)/log lambda_max) steps, with T >= 2 x "
                  "log(eps/delta1)/log lambda_max; every orbit pushed along the fastest unstable "
                  "direction leaves, median exit within 15 % (+-3 steps) of log(eps/delta)/log "
                  "lambda_max", agrees=ok)
    rows = [{"saddle": pc.label, "step": getattr(step, "spec", lambda: step)(),
             "eps": eps, "lambda_min": lmin, "lambda_max": lmax, "graph tol": m.tol, "T": T,
             "on manifold: stayed": f"{stayed}/{n}", "median |z_T|/|z_0|": contraction,
             **{f"delta={d:.3g}: median exit [band]":
                f"{md:.0f} [{a:.0f}, {b:.0f}]" for d, md, a, b in zip(deltas, med, lo, hi)}}]
    return pc, claim, rows


def positive_control_figure(pc: PositiveControl, out_dir: Path | str, name: str,
                            title: str) -> str:
    """Left: distance to the saddle against the step (graph orbits stay in the ball, pushed
    orbits leave inside the predicted band).  Right: the E_u coordinates |q_k|, which the
    linear part multiplies by lambda_max per step along the push (dotted: delta lambda_max^k)."""
    fig = new_figure(12.0, 4.6)
    axes = fig.add_subplot(121), fig.add_subplot(122)
    n, T = pc.n, pc.n_steps
    k = np.arange(T + 1)
    colours = ["tab:red", "tab:orange", "tab:purple"]
    for ax, key in zip(axes, ("norms", "q")):
        data = pc.traces[key]
        for i in range(min(n, 24)):
            ax.semilogy(k, data[i], color="tab:blue", lw=1.0, alpha=0.8, zorder=3,
                        label=f"started on the computed manifold ({pc.stayed}/{n} stay all "
                              f"{T} steps)" if i == 0 else None)
        for j, d in enumerate(pc.deltas):
            rows = data[(j + 1) * n:(j + 2) * n]
            for i in range(min(n, 16)):
                ax.semilogy(k, rows[i], color=colours[j % 3], lw=0.7, alpha=0.6,
                            label=f"pushed δ = {d:.2g} along the fastest E_u direction"
                            if i == 0 else None)
            if key == "norms":
                ax.axvspan(pc.band_low[j], pc.band_high[j], color=colours[j % 3], alpha=0.12,
                           label=f"predicted exit band, δ = {d:.2g} (median exit "
                                 f"{pc.exit_median[j]:.0f})")
            else:
                ax.semilogy(k, d * pc.lambda_max ** k, "k:", lw=1,
                            label="δ λ_max^k (linear prediction)" if j == 0 else None)
        ax.axhline(pc.radius, color="k", ls="-.", lw=1, label=f"ball radius ε = {pc.radius:.3g}")
        ax.set_xlabel("step k of the map")
        ax.set_xlim(0, T)
        finite = data[np.isfinite(data) & (data > 0)]
        lo = float(finite.min()) if finite.size else 1e-16
        ax.set_ylim(max(lo / 3, 1e-18), 5 * pc.radius)
        ax.legend(fontsize=6.5, loc="lower right")
    axes[0].set_ylabel("distance to the saddle |z_k| (eigen-coordinates, θ units)", fontsize=8)
    axes[0].set_title("ball membership: graph orbits stay, pushed orbits leave", fontsize=9)
    axes[1].set_ylabel("unstable coordinate |q_k| (θ units)", fontsize=8)
    axes[1].set_title(f"escape rate: |q| grows like λ_max^k (λ_max = {pc.lambda_max:.6g})",
                      fontsize=9)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, figure_path(out_dir, name))


# ------------------------------------------------------------------ manifolds
def manifold_claims(m: Any, ver: Any, label: str, *, reference: str = "Theorem 2.2",
                    what: str = "gradient-descent map") -> tuple[list[dict], list[Claim]]:
    """Invariance, escape band (>= 2 pushes above the graph tolerance) and Lipschitz probe."""
    rows = [{"label": label, "map": what, "dim E_cs": m.dim_cs, "dim E_u": m.dim_u,
             "lambda_min": m.lambda_min, "lambda_max": m.lambda_max, "radius eps": m.radius,
             "kappa": m.contraction, "kappa proved": m.kappa_certified, "K": m.horizon,
             "graph tol": m.tol, "invariance residual": ver.invariance_residual,
             "pushes delta": ", ".join(f"{d:.3g}" for d in ver.deltas),
             "median exit [band]": ", ".join(
                 f"{e:.0f} [{(1 - BAND) * f - 3:.0f}, {(1 + BAND) * s + 3:.0f}]"
                 for e, f, s in zip(ver.exit_median, ver.exit_predicted_fast,
                                    ver.exit_predicted_slow))}]
    claims = [Claim(
        f"the computed center-stable manifold of the {what} at {label} is invariant",
        reference, measured={"invariance_residual": ver.invariance_residual, "tol": m.tol,
                             "points": ver.n},
        expected={"invariance_residual_max": 100 * m.tol},
        criterion="max |offset(g(x))| <= 100 tol over graph points x whose image stays in the "
                  "eps-ball", agrees=bool(ver.checks["invariance"]))]
    measured = {"pushes": len(ver.deltas), "lambda_min": m.lambda_min,
                "lambda_max": m.lambda_max, "radius_eps": m.radius}
    expected = {"pushes_min": 2}
    for i, (d, e, f, s) in enumerate(zip(ver.deltas, ver.exit_median, ver.exit_predicted_fast,
                                         ver.exit_predicted_slow)):
        measured[f"delta{i + 1}"] = d
        measured[f"exit_median{i + 1}"] = e
        expected[f"band{i + 1}"] = [(1 - BAND) * f - 3, (1 + BAND) * s + 3]
    claims.append(Claim(
        f"orbits pushed off the manifold at {label} escape between the fastest and the slowest "
        "unstable rate", reference, measured=measured, expected=expected,
        criterion="at least 2 pushes delta in [100 tol, eps) (below, a push is not resolved); "
                  "for each, median exit step in [0.85 log(eps/delta)/log lambda_max - 3, "
                  "1.15 log(eps/delta)/log lambda_min + 3] and every pushed orbit leaves",
        agrees=len(ver.deltas) >= 2 and bool(ver.checks["escape_band"])
        and bool(ver.checks["pushed_orbits_leave"])))
    if not m.kappa_certified:
        claims.append(Claim(
            f"the contraction constant of the construction at {label} is not undercut by a "
            "fresh search", reference,
            measured={"lipschitz_probe": ver.lipschitz_probe,
                      "lipschitz_used": ver.lipschitz_used, "kappa": m.contraction},
            expected={"lipschitz_probe_max": ver.lipschitz_used},
            criterion="a fresh adversarial search (new seed) finds |D r~| <= the l used",
            agrees=bool(ver.checks["lipschitz_probe"])))
    return rows, claims


def manifold_slice(
    problem: Any,
    point: CriticalPoint,
    step: float,
    *,
    out_dir: Path | str,
    name: str,
    n_orbits: int = 10,
    tol: float = 1e-12,
    reference: str = "Theorem 2.2",
    manifold: Any = None,
    verify_n: int = 32,
) -> tuple[Any, Any, list[dict], list[Claim], str]:
    """Center-stable manifold at ``point``, its verification, and a phase-portrait slice.

    The slice is the plane (in eigen-coordinates) spanned by the center-stable eigenvector
    ``e_k`` along which the graph bends most and the slowest unstable eigenvector.  Left: the
    graph ``q_1 = phi(s e_k)_1`` (zoomed so its bend shows), the map's displacement field on the
    plane (arrows), orbits started on the graph and orbits pushed off it.  Right: the offset
    ``|q - phi(p)|`` of pushed orbits against the step, with the rates ``lambda_min^k`` and
    ``lambda_max^k``.
    """
    from ..manifold import center_stable_manifold

    g = local_map(problem, point, step)
    m = manifold if manifold is not None else center_stable_manifold(g, point.theta, tol=tol)
    ver = m.verify(n=verify_n)
    rows, claims = manifold_claims(m, ver, point.label, reference=reference)
    C = m.frame
    rho = 0.45 * m.radius / math.sqrt(1 + m.lipschitz_bound**2)
    dim_repr = C.dim_cs_repr
    mults = None if m.split is None else np.asarray(m.split.eigenvalues)
    if m.matrix_free:
        cand = C.project_cs(np.eye(dim_repr)[: min(dim_repr, 64)])
        cand = cand / np.linalg.norm(cand, axis=1, keepdims=True)
    else:
        cand = np.eye(dim_repr)
    bend = np.abs(m.graph(rho * cand)[:, 0]) + np.abs(m.graph(-rho * cand)[:, 0])
    kbest = int(np.argmax(bend))
    e = cand[kbest]
    s = np.linspace(-rho, rho, 121)
    curve = m.graph(s[:, None] * e[None, :])[:, 0]
    fig = new_figure(11.0, 4.6)
    ax = fig.add_subplot(121)
    ax2 = fig.add_subplot(122)
    span = max(float(np.ptp(curve)), 1e-3 * rho)
    ymid = 0.5 * (float(curve.max()) + float(curve.min()))
    ylo, yhi = ymid - 1.5 * span, ymid + 1.5 * span
    # displacement field on the plane (normalised arrows)
    gx, gy = np.meshgrid(np.linspace(-rho, rho, 17), np.linspace(ylo, yhi, 13))
    P = gx.ravel()[:, None] * e[None, :]
    Q = np.zeros((P.shape[0], m.dim_u))
    Q[:, 0] = gy.ravel()
    Xg = m.fixed_point + C.from_z(P, Q)
    Pg, Qg = C.to_z(np.asarray(g(Xg), dtype=float) - m.fixed_point)
    du = (Pg @ e - gx.ravel()), (Qg[:, 0] - gy.ravel())
    mag = np.hypot(du[0] / rho, du[1] / span) + 1e-300
    ax.quiver(gx, gy, (du[0] / rho / mag).reshape(gx.shape), (du[1] / span / mag).reshape(gx.shape),
              color="0.6", angles="xy", scale=30, width=0.003, zorder=1,
              label="direction of one GD step (normalised)")
    ax.plot(s, curve, "k-", lw=2, zorder=2, label="graph of φ: center-stable manifold")
    rng = np.random.default_rng(0)
    starts = rng.uniform(-0.8 * rho, 0.8 * rho, n_orbits)
    base = m.point(starts[:, None] * e[None, :])
    pb, qb = C.to_z(base - m.fixed_point)
    delta = max(0.05 * span, 100 * m.tol)
    n_iter = int(min(2000, math.ceil(math.log(max(m.radius / delta, 2.0)) / math.log(m.lambda_min)) + 5))
    offsets = []
    for kind, colour, lab, mk in (("on", "tab:blue", "orbits started on the graph", "o"),
                                  ("off", "tab:red", f"orbits pushed δ = {delta:.2g} off it", ".")):
        if kind == "off":
            sg = np.where(np.arange(n_orbits) % 2 == 0, 1.0, -1.0)
            qq = qb.copy()
            qq[:, 0] += delta * sg
            X = m.fixed_point + C.from_z(pb, qq)
        else:
            X = base.copy()
        traj = [X]
        with np.errstate(all="ignore"):
            for _ in range(n_iter):
                X = np.asarray(g(X), dtype=float)
                traj.append(X)
        T = np.stack(traj, 1)
        flat = T.reshape(-1, T.shape[-1])
        Pz, Qz = C.to_z(flat - m.fixed_point)
        pe = (Pz @ e).reshape(T.shape[0], -1)
        qu = Qz[:, 0].reshape(T.shape[0], -1)
        inside = (m.eigen_norm(flat) <= m.radius).reshape(T.shape[0], -1)
        if kind == "off":  # the offset needs a graph solve per point: every `sub`-th step
            sub = max(1, T.shape[1] // 60)
            Ts = T[:, ::sub]
            offs = np.abs(m.offset(Ts.reshape(-1, T.shape[-1]))[:, 0]).reshape(T.shape[0], -1)
            offsets.append((np.arange(T.shape[1])[::sub],
                            np.where(inside[:, ::sub], offs, np.nan)))
        for i in range(T.shape[0]):
            kk = int(np.argmin(inside[i])) if not inside[i].all() else inside.shape[1]
            ax.plot(pe[i, :max(kk, 1)], qu[i, :max(kk, 1)], "-", marker=mk,
                    color=colour, ms=3 if kind == "on" else 2, lw=0.8,
                    alpha=0.9, zorder=4 if kind == "on" else 3, markevery=max(1, kk // 12),
                    label=lab if i == 0 else None)
    lam_txt = f"{m.lambda_min:.6g}"
    if mults is not None:
        mu_k = mults[kbest]
        xdesc = f"E_cs eigenvector e_{kbest + 1} (multiplier {np.real(mu_k):.6g})"
    else:
        xdesc = "E_cs direction of largest bend (projected basis vector)"
    ax.set_xlim(-1.05 * rho, 1.05 * rho)
    ax.set_ylim(ylo, yhi)
    ax.set_xlabel(f"p along {xdesc}  [θ units]", fontsize=8)
    ax.set_ylabel(f"q₁ along slowest E_u eigenvector (λ = {lam_txt})  [θ units]", fontsize=8)
    ax.set_title(f"{point.label}: slice through the center-stable manifold (GD step {step};\n"
                 f"dim E_cs = {m.dim_cs}, dim E_u = {m.dim_u}, ε = {m.radius:.2g}; q axis "
                 f"magnified {rho / span:.0f}x: the graph bends by {np.ptp(curve):.2g})",
                 fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    ks, off = offsets[0]
    k = np.arange(n_iter + 1)
    ax2.semilogy(k, delta * m.lambda_min ** k, "--", color="0.3", lw=2.5, alpha=0.5,
                 label=f"δ λ_min^k (λ_min = {m.lambda_min:.6g})")
    if m.lambda_max > m.lambda_min * (1 + 1e-9):
        ax2.semilogy(k, delta * m.lambda_max ** k, ":", color="0.3", lw=2,
                     label=f"δ λ_max^k (λ_max = {m.lambda_max:.6g})")
    for i in range(off.shape[0]):
        ax2.semilogy(ks, off[i], color="tab:red", lw=0.8, alpha=0.8, zorder=3,
                     label="pushed orbits: |q − φ(p)|" if i == 0 else None)
    ax2.axhline(m.radius, color="0.4", lw=0.8, label=f"ε = {m.radius:.2g}")
    ax2.set_ylim(delta / 3, 3 * m.radius)
    ax2.set_xlabel("gradient-descent step k")
    ax2.set_ylabel("offset from the graph along E_u [θ units]")
    ax2.set_title("escape of pushed orbits: offset grows like λ^k", fontsize=9)
    ax2.legend(fontsize=7, loc="lower right")
    path = save_figure(fig, figure_path(out_dir, name))
    return m, ver, rows, claims, path


# ------------------------------------------------------------------ momentum
def heavy_ball_claims(problem: Any, point: CriticalPoint, step: float, momentum: float,
                      h_least: float, h_source: str, *, reference: str,
                      tol: float = 1e-10, expected_dims: tuple[int, int] | None = None,
                      ) -> tuple[list[dict], list[Claim], Any]:
    """Center-stable manifold of the heavy-ball map at ``(theta*, theta*)``, verified, and its
    unstable multiplier against the root of ``lambda^2 - (1 + beta - gamma h) lambda + beta = 0``
    with ``h = h_least`` from an independent source (``h_source``)."""
    from ..manifold import center_stable_manifold
    from ..momentum import HeavyBallMap

    hb = HeavyBallMap(problem, step, momentum)
    z = hb.fixed_point(point.theta)
    m = center_stable_manifold(hb, z, tol=tol)
    ver = m.verify(n=32)
    b = 1 + momentum - step * h_least
    root = (b + math.sqrt(b * b - 4 * momentum)) / 2
    lam = float(np.max(np.abs(m.eigenvalues_u)))
    rows, claims = manifold_claims(m, ver, f"({point.label}, {point.label})",
                                   reference=reference,
                                   what=f"heavy-ball map (γ = {step}, β = {momentum})")
    rows[0]["largest multiplier"] = lam
    rows[0]["formula root"] = root
    ok_dims = expected_dims is None or (m.dim_u, m.dim_cs) == tuple(expected_dims)
    meas = {"largest_unstable_multiplier": lam, "h_least": h_least, "dim_E_u": m.dim_u,
            "dim_E_cs": m.dim_cs}
    exp = {"formula_root": root}
    if expected_dims is not None:
        exp.update({"dim_E_u": expected_dims[0], "dim_E_cs": expected_dims[1]})
    claims.insert(0, Claim(
        f"heavy ball (γ = {step}, β = {momentum}) at {point.label}: the largest unstable "
        "multiplier of the momentum map is the root of λ² − (1 + β − γh)λ + β = 0 with h the "
        f"least Hessian eigenvalue ({h_source})", reference, measured=meas, expected=exp,
        criterion="|multiplier - root| <= 1e-8"
                  + ("; (dim E_u, dim E_cs) as expected" if expected_dims is not None else ""),
        agrees=abs(lam - root) <= 1e-8 and ok_dims))
    return rows, claims, m

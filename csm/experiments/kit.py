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
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._io import atomic_write
from .._results import to_jsonable
from ..maps import local_curvature
from ..problem import CriticalPoint
from .controls import (  # noqa: F401 - re-exported: the kit is what plugins import
    BAND, PositiveControl, heavy_ball_claims, manifold_claims, manifold_slice, positive_control,
    positive_control_figure)
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

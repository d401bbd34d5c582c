"""Positive controls and manifold claims for reproducible experiments.

* :func:`positive_control` -- beside every "0/n into saddles": runs started *on* the computed
  center-stable manifold stay at the saddle far longer than a push off it takes to escape, and
  pushed runs escape inside the predicted band -- so the 0/n is evidence, not the absence of a
  detector;
* :func:`manifold_claims`, :func:`manifold_slice` -- a center-stable manifold, verified
  (invariance; escape times inside the band between the ``lambda_max`` and ``lambda_min``
  predictions, 15 % slack, pushes above the graph tolerance), and a slice figure;
* :func:`heavy_ball_claims` -- the center-stable manifold of the heavy-ball map at a saddle and
  its unstable multiplier against the root of ``lambda^2 - (1 + beta - gamma h) lambda + beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..plotting import figure_path, new_figure, save_figure
from ..orbits import trajectories
from ..problem import CriticalPoint, gd_map
from .types import Claim

__all__ = ["PositiveControl", "positive_control", "positive_control_figure", "manifold_claims",
           "manifold_slice", "heavy_ball_claims", "BAND"]

#: Relative slack of the escape band (the same rule as ``ManifoldVerification.checks``).
BAND = 0.15




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

    g = gd_map(problem, point, step) if map is None else map
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

    g = gd_map(problem, point, step)
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
        T = trajectories(g, X, n_iter, allow_nonfinite=True)
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

"""Building blocks for reproducible experiments (used by the built-in plugins' ``csm_experiments``).

Each block works for **any** problem and returns table rows (lists of dicts), :class:`Claim`
objects and, where useful, a PNG figure -- so a plugin's experiment is a few lines of glue:

* :func:`critical_point_claims` -- every listed critical point is critical, and every strict
  saddle has a negative curvature direction (Lemma 4.6 / Proposition 2.5's hypothesis);
* :func:`stable_set_sweep` -- Monte Carlo fraction of initialisations converging into saddles,
  with exact intervals, for several step sizes (Corollary 2.3, Theorem 4.7);
* :func:`manifold_slice` -- the center-stable manifold at a saddle, verified, with a 2-D slice
  figure showing the graph, orbits that stay and orbits that escape (Theorem 2.2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..maps import GradientDescentMap, local_curvature
from ..plotting import figure_path, new_figure, save_figure
from ..problem import CriticalPoint
from .types import Claim

__all__ = [
    "critical_point_claims",
    "stable_set_sweep",
    "manifold_slice",
]

_SADDLES = ("strict_saddle", "saddle", "local_maximum")


def critical_point_claims(
    problem: Any,
    *,
    step: float = 1e-2,
    grad_tol: float = 1e-10,
    reference: str = "Proposition 2.5",
    points: Sequence[CriticalPoint] | None = None,
) -> tuple[list[dict], list[Claim]]:
    """Table of the known critical points with gradient norm and curvature; two claims.

    Curvature is the spectrum of ``(I - D Psi_loc)/step`` (:func:`csm.maps.local_curvature`),
    i.e. of the Hessian, or of ``DG_J`` for the ReLU plugin's modified map.
    """
    cps = list(problem.critical_points() if points is None else points)
    rows = []
    worst_g = 0.0
    strict_ok = True
    least_strict = []
    for cp in cps:
        g = float(np.linalg.norm(problem.gradient(cp.theta)))
        worst_g = max(worst_g, g)
        H = local_curvature(problem, cp, step)
        row: dict[str, Any] = {"label": cp.label, "kind": cp.kind, "loss": float(cp.loss),
                               "|G|": g}
        if H is not None:
            w = np.linalg.eigvalsh(0.5 * (H + H.T))
            scale = max(1.0, float(np.abs(w).max()))
            row.update({"least eigenvalue": float(w[0]),
                        "negative": int(np.sum(w < -1e-9 * scale)),
                        "zero": int(np.sum(np.abs(w) <= 1e-9 * scale))})
            if cp.kind == "strict_saddle":
                least_strict.append(float(w[0]))
                strict_ok &= bool(w[0] < -1e-9 * scale)
        rows.append(row)
    claims = [
        Claim("every listed critical point is critical", reference,
              f"max |G| over {len(cps)} points = {worst_g:.2e}", worst_g <= grad_tol),
    ]
    if least_strict:
        claims.append(Claim(
            "every saddle listed as strict has a negative curvature direction", reference,
            f"{len(least_strict)} strict saddles; largest least eigenvalue "
            f"{max(least_strict):.4g}, smallest {min(least_strict):.4g}", strict_ok))
    return rows, claims


def stable_set_sweep(
    problem: Any,
    steps: Sequence[float],
    n: int,
    *,
    max_steps: int,
    tol: float = 1e-6,
    seed: int = 0,
    executor: Any = None,
    progress: bool = False,
    reference: str = "Corollary 2.3",
    statement: str | None = None,
    save_to: Path | str | None = None,
    **kwargs: Any,
) -> tuple[list[dict], list[Claim], list[Any]]:
    """Run :func:`csm.estimate_stable_set` for each step size; claim: no run converges to a saddle.

    The claim for each step is that 0 of the ``n`` runs converged to a critical point of a
    saddle kind (strict or not, or a local maximum); the measured figure gives the exact 95%
    upper bound ``1 - 0.025^{1/n}`` on the probability.  Unconverged and slow-escape runs are
    reported, not counted as hits.  With ``save_to`` (a path prefix) every estimate's per-run
    arrays go to ``{save_to}-step{gamma}.npz`` (:meth:`StableSetEstimate.save`).
    """
    from ..stable_sets import estimate_stable_set

    rows, claims, ests = [], [], []
    for i, gamma in enumerate(steps):
        est = estimate_stable_set(problem, gamma, n=n, max_steps=max_steps, tol=tol,
                                  seed=seed + i, executor=executor, progress=progress, **kwargs)
        ests.append(est)
        row = {"step": gamma, "runs": est.n, "to saddles": est.saddle_count,
               "95% CI (saddles)": f"[{est.saddle_ci[0]:.2g}, {est.saddle_ci[1]:.2g}]"}
        for label in est.labels:
            row[label] = est.counts[label]
        if save_to is not None:
            Path(save_to).parent.mkdir(parents=True, exist_ok=True)
            row["arrays"] = str(est.save(f"{save_to}-step{gamma}.npz"))
        rows.append(row)
        claims.append(Claim(
            statement or f"gradient descent (step {gamma}) does not converge to saddles",
            reference,
            f"{est.saddle_count}/{est.n} runs converged to a saddle (95% CI "
            f"[{est.saddle_ci[0]:.2g}, {est.saddle_ci[1]:.2g}]); "
            f"{est.counts.get('unconverged', 0)} unconverged after {max_steps} steps "
            f"({est.slow_escape_count} of them near a saddle)",
            est.saddle_count == 0))
    return rows, claims, ests


def manifold_slice(
    problem: Any,
    point: CriticalPoint,
    step: float,
    *,
    out_dir: Path | str,
    name: str,
    n_orbits: int = 12,
    delta: float = 1e-4,
    tol: float = 1e-10,
    reference: str = "Theorem 2.2",
) -> tuple[Any, Any, list[dict], list[Claim], str]:
    """Center-stable manifold at ``point``, its verification, and a 2-D slice figure.

    The slice is spanned by the center-stable direction along which the graph bends most
    (among the E_cs basis vectors) and the slowest unstable direction.  Orbits started on the
    graph stay near the saddle; orbits pushed off by ``delta`` along E_u escape after about
    ``log(eps/delta)/log lambda_min`` steps.
    """
    from ..manifold import center_stable_manifold

    lm = getattr(problem, "local_map", None)
    g = lm(point, step) if callable(lm) else GradientDescentMap(problem, step)
    m = center_stable_manifold(g, point.theta, tol=tol)
    ver = m.verify(n=32)
    lam = float(np.min(np.abs(m.eigenvalues_u)))
    rows = [{"label": point.label, "dim E_cs": m.dim_cs, "dim E_u": m.dim_u,
             "lambda_min": lam, "radius": m.radius, "kappa": m.contraction, "K": m.horizon,
             "invariance residual": ver.invariance_residual,
             "exit steps (delta)": ", ".join(f"{e:.0f} ({d:g})" for e, d in
                                               zip(ver.exit_median, ver.deltas)),
             "predicted band": ", ".join(f"[{f:.0f}, {p:.0f}]" for f, p in
                                         zip(ver.exit_predicted_fast, ver.exit_predicted_slow))}]
    claims = [Claim(
        f"the center-stable manifold at {point.label} is computed and verified: dim E_u equals "
        "the number of unstable eigenvalues, the graph is invariant, off-graph orbits escape "
        "inside the band between log(eps/delta)/log(lambda_max) and log(eps/delta)/log(lambda_min) "
        "steps (15 % slack)", reference,
        f"dim E_u = {m.dim_u}, kappa = {m.contraction:.3f} "
        f"({'proved' if m.kappa_certified else 'estimated'}), invariance residual "
        f"{ver.invariance_residual:.1e}, exits {ver.exit_median} vs band "
        f"{tuple((round(f, 1), round(p, 1)) for f, p in zip(ver.exit_predicted_fast, ver.exit_predicted_slow))}; "
        f"{ver.message}", bool(ver.success))]

    # the slice: pick the cs basis direction where the graph bends most
    rho = 0.9 * m.radius / math.sqrt(1 + m.lipschitz_bound**2)
    C = m.frame
    dim_repr = C.dim_cs_repr
    if m.dim_cs > 0:
        cand = np.eye(dim_repr)[: min(dim_repr, 64)] if not m.matrix_free else \
            C.project_cs(np.eye(dim_repr)[: min(dim_repr, 64)])
        cand = cand / np.linalg.norm(cand, axis=1, keepdims=True)
        bend = np.abs(m.graph(0.5 * rho * cand)[:, 0])
        e = cand[int(np.argmax(bend))]
    else:
        e = np.zeros(dim_repr)
    s = np.linspace(-rho, rho, 81)
    curve = m.graph(s[:, None] * e[None, :])[:, 0]
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot(111)
    ax.plot(s, curve, "k-", lw=2, label="graph of φ (center-stable manifold)")
    rng = np.random.default_rng(0)
    starts = rng.uniform(-0.8 * rho, 0.8 * rho, n_orbits)
    base = m.point(starts[:, None] * e[None, :])
    uvec = m.basis_u[:, 0]
    n_iter = int(min(400, math.ceil(2 * math.log(m.radius / delta) / math.log(lam)) + 5))
    for sign, colour, lab in ((0.0, "tab:blue", "orbits on the graph (stay)"),
                              (1.0, "tab:red", f"pushed off by δ={delta:g} (escape)")):
        X = base.copy()
        if sign:
            X = base + delta * rng.choice([-1, 1], size=(len(base), 1)) * uvec[None, :]
        traj = [X]
        for _ in range(n_iter):
            X = g(X)
            traj.append(X)
        T = np.stack(traj, 1)  # (orbits, steps, d)
        P, Q = C.to_z(T.reshape(-1, T.shape[-1]) - m.fixed_point)
        pe = (P @ e).reshape(T.shape[0], -1)
        qu = Q[:, 0].reshape(T.shape[0], -1)
        inside = np.sqrt(np.sum(P**2, 1) + np.sum(Q**2, 1)).reshape(T.shape[0], -1) <= 1.5 * m.radius
        for i in range(T.shape[0]):
            k = np.argmin(inside[i]) if not inside[i].all() else inside.shape[1]
            ax.plot(pe[i, :max(k, 1)], qu[i, :max(k, 1)], ".-", color=colour, ms=2, lw=0.6,
                    alpha=0.8, label=lab if i == 0 else None)
    ax.set_xlim(-1.1 * rho, 1.1 * rho)
    ax.set_ylim(-1.1 * m.radius, 1.1 * m.radius)
    ax.set_xlabel("center-stable coordinate")
    ax.set_ylabel("slowest unstable coordinate")
    ax.set_title(f"{point.label}: center-stable manifold (GD step {step})")
    ax.legend(fontsize=7, loc="best")
    path = save_figure(fig, figure_path(out_dir, name))
    return m, ver, rows, claims, path

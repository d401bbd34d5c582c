"""``csm reproduce`` experiment for low-rank matrix recovery (paper §3.2, MATH.md §7).

Claims checked: the closed-form critical points ``V_S Lambda_S^{1/2}`` of the full-observation
loss are critical; every saddle is strict with least Hessian eigenvalue ``-lambda_k`` (``k`` the
largest missing top index); the global minima carry ``r(r-1)/2`` zero eigenvalues (their O(r)
orbit: center directions); the center-stable manifold at a saddle is computed and verified; no
gradient-descent run converges to a saddle, for the full-observation and the ℓ2 sensing loss.
"""

from __future__ import annotations

from pathlib import Path

import csm
from csm.experiments.kit import critical_point_claims, manifold_slice, stable_set_sweep

REFERENCE = "Paper §3.2, Proposition 2.5, Theorem 2.2"


def run(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    n, r = 6, 2
    full = csm.get_problem("matrix_recovery", n=n, r=r, loss="full", seed=config.seed)
    sens = csm.get_problem("matrix_recovery", n=n, r=r, m=60, loss="l2", seed=config.seed)
    tables, claims, figures = {}, [], {}
    rows, cl = critical_point_claims(full, reference="MATH.md §7")
    tables["full observation: critical points"] = rows
    claims += cl
    zero_min = [row["zero"] for row in rows if row["kind"] == "global_minimum"]
    claims.append(csm.Claim(
        "global minima have r(r-1)/2 zero Hessian eigenvalues (the O(r) orbit)", "MATH.md §7",
        f"zero eigenvalues at the global minima: {sorted(set(zero_min))}, r(r-1)/2 = {r * (r - 1) // 2}",
        bool(zero_min) and all(z == r * (r - 1) // 2 for z in zero_min)))
    rows, cl = critical_point_claims(sens, reference="Paper §3.2 (ℓ2 sensing)", grad_tol=1e-9)
    tables["ℓ2 sensing (m = 60): critical points"] = rows
    claims += cl

    saddle = next(c for c in full.critical_points()
                  if c.kind == "strict_saddle" and c.label != "origin")
    m, ver, rows, cl, fig = manifold_slice(full, saddle, 0.05, out_dir=config.out_dir,
                                           name="matrix_recovery_manifold")
    tables[f"center-stable manifold at {saddle.label}"] = rows
    figures[f"center-stable manifold at {saddle.label} (matrix recovery)"] = fig
    claims += cl

    runs = 1000 if config.quick else 10_000
    for prob, tag in ((full, "full-observation"), (sens, "ℓ2 sensing")):
        rows, cl, _ = stable_set_sweep(
            prob, [0.01], runs, max_steps=20_000 if config.quick else 100_000, tol=1e-7,
            seed=config.seed, executor=config.executor, progress=config.progress,
            reference="Proposition 2.5",
            statement=f"GD on the {tag} loss does not converge to a saddle",
            save_to=Path(config.out_dir) / "data" / f"matrix_recovery_{prob.loss_type}")
        tables[f"gradient descent, {tag} loss"] = rows
        claims += cl
    return csm.ExperimentResult("matrix_recovery", REFERENCE, claims, tables, figures)


EXPERIMENT = csm.Experiment(
    "matrix_recovery", REFERENCE,
    "strict saddles with curvature -lambda_k, O(r) center directions, GD avoids saddles", run)

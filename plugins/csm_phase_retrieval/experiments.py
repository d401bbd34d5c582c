"""``csm reproduce`` experiment for phase retrieval (paper §3.1, MATH.md §6).

Claims checked: the known critical points are critical; the saddles are strict (population:
least Hessian eigenvalue ``-2|z|^2``; empirical ℓ2: Newton-located, negative curvature); the
center-stable manifold at a point of the population saddle sphere has ``dim E_u = 1`` and
``n - 1`` center-stable directions (``n - 2`` of them center directions along the sphere); no
gradient-descent run from Gaussian initialisations converges to a saddle (Proposition 2.5).
"""

from __future__ import annotations

from pathlib import Path

import csm
from csm.experiments.kit import critical_point_claims, manifold_slice, stable_set_sweep

REFERENCE = "Paper §3.1, Proposition 2.5, Theorem 2.2"


def run(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    n = 8
    pop = csm.get_problem("phase_retrieval", n=n, loss="population", seed=config.seed)
    emp = csm.get_problem("phase_retrieval", n=n, m=64, loss="l2", seed=config.seed)
    tables, claims, figures = {}, [], {}

    rows, cl = critical_point_claims(pop, reference="MATH.md §6")
    tables["population loss: critical points"] = rows
    claims += cl
    zz = float(pop.x_star @ pop.x_star)
    saddle = next(c for c in pop.critical_points() if c.kind == "strict_saddle")
    least = min(r["least eigenvalue"] for r in rows if r["kind"] == "strict_saddle")
    claims.append(csm.Claim("population saddles have least Hessian eigenvalue -2|z|^2",
                            "MATH.md §6", f"{least:.12g} vs {-2 * zz:.12g}",
                            abs(least + 2 * zz) <= 1e-10))
    rows, cl = critical_point_claims(emp, reference="Paper §3.1 (empirical ℓ2)", grad_tol=1e-9)
    tables["empirical ℓ2 loss (m = 64): critical points (saddles Newton-located)"] = rows
    claims += cl

    m, ver, rows, cl, fig = manifold_slice(pop, saddle, 0.05, out_dir=config.out_dir,
                                           name="phase_retrieval_manifold")
    tables["center-stable manifold at a population saddle"] = rows
    figures["center-stable manifold at a population saddle (phase retrieval)"] = fig
    claims += cl
    claims.append(csm.Claim(
        "at a point of the saddle sphere: dim E_u = 1, dim E_cs = n - 1 (n - 2 center directions)",
        "MATH.md §6", f"dim E_u = {m.dim_u}, dim E_cs = {m.dim_cs} (n = {n})",
        m.dim_u == 1 and m.dim_cs == n - 1))

    runs = 1000 if config.quick else 10_000
    for prob, step, tag in ((pop, 0.01, "population"), (emp, 0.002, "empirical ℓ2")):
        rows, cl, _ = stable_set_sweep(
            prob, [step], runs, max_steps=20_000 if config.quick else 100_000, tol=1e-7,
            seed=config.seed, executor=config.executor, progress=config.progress,
            reference="Proposition 2.5",
            statement=f"GD on the {tag} loss does not converge to a saddle",
            save_to=Path(config.out_dir) / "data" / f"phase_retrieval_{prob.loss_type}")
        tables[f"gradient descent, {tag} loss"] = rows
        claims += cl
    return csm.ExperimentResult("phase_retrieval", REFERENCE, claims, tables, figures)


EXPERIMENT = csm.Experiment(
    "phase_retrieval", REFERENCE,
    "strict saddles, center-stable manifold at the saddle sphere, GD avoids saddles", run)

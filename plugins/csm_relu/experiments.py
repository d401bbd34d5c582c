"""``csm reproduce`` experiments for shallow ReLU networks (paper §4, MATH.md §2–§4, §8).

* ``relu-critical-points`` -- Proposition 4.5 (iv): the constructed critical points have the
  layer values ``rho^2 (beta-alpha)^3 / (12 (2n+1)^4)``; Lemma 4.6: every saddle in S is strict
  (least eigenvalue of ``DG_J`` < 0).
* ``relu-stable-sets`` -- Theorem 4.7: the fraction of random initialisations whose GD orbit
  converges into S is 0 (exact 95% interval), for several step sizes; Proposition 4.8: among
  runs whose limit loss is below the layer-0 value, all reach loss 0.
* ``relu-manifold`` -- Theorem 2.2 at a layer-1 zigzag saddle for the modified map Psi_J
  (figure: a 2-D slice with the graph and orbits that stay vs escape), and Corollary 2.3's
  escape rate against ``sum log|lambda_u|``.
* ``relu-measure`` -- Lemma 2.4 / Lemma 4.4: the GD map's Jacobian is non-degenerate a.e.
  and the bad step sizes ``1/lambda(H)`` carry no atom.
* ``relu-transitions`` -- saddle-to-saddle dynamics from small initialisation: the loss layers
  are visited top-down (transition graph, GraphML/JSON and a figure).
"""

from __future__ import annotations

from pathlib import Path

from typing import Any

import numpy as np

import csm
from csm.experiments.kit import critical_point_claims, manifold_slice, stable_set_sweep
from csm.plotting import figure_path, new_figure, save_figure

N_DEFAULT = 4


def _problem(config: csm.ExperimentConfig, **kw: Any):
    return csm.get_problem("relu", N=kw.pop("N", N_DEFAULT), **kw)


def _zigzag(problem, layer: int, variant: str = "inactive"):
    label = f"zigzag-n{layer}-{variant}" if layer < problem.N // 2 else f"zigzag-n{layer}"
    for c in problem.critical_points():
        if c.label == label or (c.label.startswith(f"zigzag-n{layer}") and c.kind == "strict_saddle"):
            return c
    raise LookupError(f"no zigzag saddle of layer {layer}")


# ------------------------------------------------------------------ critical points
def run_critical_points(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    claims, tables = [], {}
    worst = 0.0
    for N, interval, target in ((4, (0.0, 1.0), (0.0, 1.0)), (6, (-2.0, 3.0), (0.5, -1.5))):
        p = csm.get_problem("relu", N=N, interval=interval, target=target)
        vals = p.critical_values()
        rows = []
        for c in p.critical_points():
            layer = c.info.get("layer")
            pred = 0.0 if c.kind == "global_minimum" else float(vals[layer])
            lv = float(p.loss(c.theta))
            worst = max(worst, abs(lv - pred) / max(pred, 1e-300) if pred else abs(lv))
            rows.append({"label": c.label, "kind": c.kind, "layer": layer, "loss": lv,
                         "layer value": pred, "in S": c.info.get("in_S"),
                         "least eig DG_J": c.info.get("least_eigenvalue"),
                         "negative": c.info.get("n_negative")})
        tables[f"N = {N}, [α, β] = {interval}, f = {target}"] = rows
        _, cl = critical_point_claims(p, reference="Proposition 4.5 / Lemma 4.6",
                                      grad_tol=1e-12)
        claims += cl
        s_rows = [r for r in rows if r["in S"]]
        claims.append(csm.Claim(
            f"every constructed saddle in S is strict (N = {N}, interval {interval})",
            "Lemma 4.6", f"{len(s_rows)} saddles in S; least eigenvalues of DG_J from "
            f"{min(r['least eig DG_J'] for r in s_rows):.4g} to "
            f"{max(r['least eig DG_J'] for r in s_rows):.4g}",
            all(r["least eig DG_J"] < 0 for r in s_rows)))
    claims.insert(0, csm.Claim(
        "the loss of each constructed critical point equals its layer value "
        "rho^2 (beta-alpha)^3 / (12 (2n+1)^4) (0 for global minima)", "Proposition 4.5 (iv)",
        f"max relative deviation {worst:.2e}", worst <= 1e-12))
    return csm.ExperimentResult("relu-critical-points", "Proposition 4.5, Lemma 4.6", claims,
                                tables)


# ------------------------------------------------------------------ stable sets
def run_stable_sets(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    p = _problem(config)
    if config.quick:
        steps, n, max_steps = [0.1, 0.3], 1000, 40_000
    else:
        steps, n, max_steps = [0.05, 0.1, 0.3], 2000, 200_000
    rows, claims, ests = stable_set_sweep(
        p, steps, n, max_steps=max_steps, tol=1e-8, seed=config.seed, executor=config.executor,
        progress=config.progress, reference="Theorem 4.7", polish=True,
        save_to=Path(config.out_dir) / "data" / "relu_stable_set",
        statement=None)
    claims = [csm.Claim(c.statement.replace("does not converge to saddles",
                                            "does not converge into S (nor any other saddle)"),
                        c.reference, c.measured, c.agrees) for c in claims]
    threshold = float(p.critical_values()[0])  # layer-0 value rho^2 (beta-alpha)^3 / 12
    pos_rows = []
    for gamma, est in zip(steps, ests):
        A = est.arrays
        conv = (A["status"] == 0) & A["polished"]  # limits actually computed (not inferred)
        below = conv & (A["loss"] < threshold * (1 - 1e-6))
        nonzero = below & (A["loss"] > 1e-8 * threshold)
        pos_rows.append({"step": gamma, "converged, limit computed": int(conv.sum()),
                         "converged, limit inferred (sublevel)": int(
                             ((A["status"] == 0) & ~A["polished"]).sum()),
                         "limit loss < layer-0 value": int(below.sum()),
                         "of which loss > 0": int(nonzero.sum()),
                         "unconverged": int((A["status"] == 2).sum()),
                         "median final loss (unconverged)":
                             float(np.median(A["loss"][A["status"] == 2]))
                             if (A["status"] == 2).any() else float("nan")})
        claims.append(csm.Claim(
            f"step {gamma}: every converged run with limit loss below rho^2(beta-alpha)^3/12 "
            "reaches loss 0", "Proposition 4.8",
            f"{int(below.sum())} converged runs below the threshold, {int(nonzero.sum())} of "
            "them with positive loss", int(nonzero.sum()) == 0))
    tables = {"classes of the limits": rows, "Proposition 4.8": pos_rows}
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot(111)
    for gamma, est in zip(steps, ests):
        L = est.arrays["loss"][est.arrays["status"] == 0]
        ax.hist(np.log10(np.maximum(L, 1e-16)), bins=60, histtype="step", label=f"step {gamma}")
    for k, v in enumerate(p.critical_values()[:-1]):
        ax.axvline(np.log10(v), color="grey", ls=":", lw=0.8)
        ax.text(np.log10(v), ax.get_ylim()[1] * 0.9, f"n={k}", fontsize=7, ha="center")
    ax.set_xlabel("log10 limit loss (converged runs); dotted: layer values")
    ax.set_ylabel("runs")
    ax.legend(fontsize=8)
    figs = {"limit losses of gradient descent (ReLU, N = 4)":
            save_figure(fig, figure_path(config.out_dir, "relu_limit_losses"))}
    return csm.ExperimentResult("relu-stable-sets", "Theorem 4.7, Proposition 4.8", claims,
                                tables, figs)


# ------------------------------------------------------------------ manifold and escape rate
def run_manifold(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    p = _problem(config)
    s = _zigzag(p, 1)
    step = 0.5
    m, ver, rows, claims, fig = manifold_slice(p, s, step, out_dir=config.out_dir,
                                               name="relu_manifold_layer1", tol=1e-8)
    n_neg = int(s.info["n_negative"])
    claims.append(csm.Claim(
        f"dim E_u at {s.label} equals the number of negative eigenvalues of DG_J",
        "Lemma 4.6, Theorem 2.2", f"dim E_u = {m.dim_u}, negative eigenvalues = {n_neg}",
        m.dim_u == n_neg))
    s0 = next(c for c in p.critical_points() if c.label == "zigzag-n0-semi-inactive-plus")
    g0 = p.local_map(s0, step)
    m0 = csm.center_stable_manifold(g0, s0.theta)
    rate = csm.escape_rate(g0, s0.theta, radius=0.1 * m0.radius,
                           n_points=20_000 if config.quick else 200_000, n_steps=60,
                           rng=config.seed)
    claims.append(csm.Claim(
        f"a small ball around {s0.label} empties at the rate sum log|lambda_u| of the "
        "linearised map Psi_J", "Corollary 2.3", str(rate.reason), bool(rate.passed)))
    rd = rate.to_dict()
    tables = {"center-stable manifold (Psi_J, step 0.5)": rows + m0_rows(m0, s0),
              "escape rate": [{k: rd[k] for k in rd if not isinstance(rd[k], (list, dict))}]}
    return csm.ExperimentResult("relu-manifold", "Theorem 2.2, Corollary 2.3", claims, tables,
                                {f"center-stable manifold at {s.label}": fig})


def m0_rows(m, s) -> list[dict]:
    return [{"label": s.label, "dim E_cs": m.dim_cs, "dim E_u": m.dim_u,
             "lambda_min": float(np.min(np.abs(m.eigenvalues_u))), "radius": m.radius,
             "kappa": m.contraction, "K": m.horizon}]


# ------------------------------------------------------------------ measure checks
def run_measure(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    p = _problem(config)
    n = 4000 if config.quick else 40_000
    claims, tables = [], {}
    for step in (0.05, 0.3):
        rep = csm.check_jacobian_nondegenerate(csm.GradientDescentMap(p, step), p.sample, n,
                                               rng=config.seed)
        claims.append(csm.Claim(
            f"the GD map (step {step}) has a Jacobian that is non-degenerate a.e.",
            "Lemma 2.4 hypothesis, Lemma 4.4", rep.reason, bool(rep.passed)))
    bad = csm.bad_step_sizes(p, p.sample, n, rng=config.seed, step=0.05)
    # Where every neuron is inactive the Hessian is the constant diag(0, ..., 0, 2(beta-alpha)):
    # the single step gamma0 = 1/(2(beta-alpha)) is bad on that open set.  Lemma 4.4 allows this
    # (the bad set is null in (gamma, theta) jointly); every other step is bad on a null set.
    gamma0 = 1.0 / (2.0 * (p.beta - p.alpha))
    X = p.sample(np.random.default_rng(config.seed + 1), 20 * n)
    dead = int(np.all(p.neuron_types(X).inactive, axis=1).sum())
    lo, hi = csm.measure.clopper_pearson(dead, len(X))
    lo, hi = float(lo), float(hi)
    atoms = list(bad.atoms)
    at_gamma0 = [a for a in atoms if abs(a["step"] / gamma0 - 1) <= 1e-9]
    mass = at_gamma0[0]["mass"] if at_gamma0 else 0.0
    ok_atoms = len(at_gamma0) == len(atoms) and (not atoms or lo * 0.5 <= mass <= hi * 2)
    claims.append(csm.Claim(
        "the only atom of bad step sizes is gamma0 = 1/(2(beta-alpha)), carried by the open set "
        "where every neuron is inactive (constant Hessian); a null set of steps, as Lemma 4.4 "
        "allows", "Lemma 4.4, Prop. 2.5",
        f"atoms: {[(round(a['step'], 12), round(a['mass'], 4)) for a in atoms]}; "
        f"P(all neurons inactive) in [{lo:.4f}, {hi:.4f}] (95%, {len(X)} samples)", ok_atoms))
    prof = bad.step_profile
    claims.append(csm.Claim(
        "at the step 0.05 (not an atom) I - gamma H is singular with probability 0: "
        "P(min_i |1 - gamma lambda_i| < tau) -> 0 as tau -> 0", "Lemma 4.4",
        f"{bad.step_bad_count}/{bad.n} samples within {bad.step_tol:g} of singular; tail slope "
        f"{prof.slope:.2f} +- {prof.slope_se:.2f} (1 = a density, 0 = an atom)",
        bool(prof.slope - 2 * prof.slope_se > 0)))
    bd = bad.to_dict()
    tables["bad step sizes"] = [{k: v for k, v in bd.items() if not isinstance(v, (list, dict))}]
    return csm.ExperimentResult("relu-measure", "Lemma 2.4, Lemma 4.4", claims, tables)


# ------------------------------------------------------------------ transitions
def run_transitions(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    from csm.transitions import draw_transition_graph, record_trajectories, to_graphml, to_json

    p = _problem(config)
    rng = np.random.default_rng(config.seed)
    R = 16 if config.quick else 64
    n_steps = 20_000 if config.quick else 100_000
    theta0 = 1e-3 * rng.standard_normal((R, p.dim))
    every = 2
    traj = record_trajectories(p, 0.3, theta0, n_steps, every=every)
    # a plateau: |G| <= 1e-2 for >= 40 consecutive GD steps
    G = csm.transition_graph(p, traj, every=every, grad_tol=1e-2, min_plateau=20)
    out = figure_path(config.out_dir, "relu_transitions")
    fig = str(draw_transition_graph(G, out, title="ReLU N = 4: plateaus visited by GD "
                                    "from small initialisation"))
    to_graphml(G, out.with_suffix(".graphml"))
    to_json(G, out.with_suffix(".json"))
    rows = [{"node": nd, **{k: v for k, v in d.items() if isinstance(v, (int, float, str))}}
            for nd, d in G.nodes(data=True)]
    edges = [{"from": u, "to": v, "count": d.get("count")} for u, v, d in G.edges(data=True)]
    downhill = all(G.nodes[u].get("loss", 0) >= G.nodes[v].get("loss", 0) - 1e-12
                   for u, v in G.edges)
    n_levels = len({round(float(d.get("loss", 0)), 10) for _, d in G.nodes(data=True)})
    claims = [csm.Claim(
        "from small initialisation GD visits the loss layers top-down (every observed "
        "transition goes to a lower layer)", "Section 4 (layers), MATH.md §4",
        f"{G.number_of_nodes()} plateaus on {n_levels} loss levels, {G.number_of_edges()} "
        f"transitions, all downhill: {downhill}", downhill and G.number_of_edges() > 0)]
    return csm.ExperimentResult("relu-transitions", "Section 4 (saddle-to-saddle dynamics)",
                                claims, {"plateaus": rows, "transitions": edges},
                                {"transition graph": fig})


EXPERIMENTS = [
    csm.Experiment("relu-critical-points", "Proposition 4.5, Lemma 4.6",
                   "layer values and strictness of the constructed critical points",
                   run_critical_points),
    csm.Experiment("relu-stable-sets", "Theorem 4.7, Proposition 4.8",
                   "where GD from random initialisations converges", run_stable_sets),
    csm.Experiment("relu-manifold", "Theorem 2.2, Corollary 2.3",
                   "center-stable manifold of Psi_J at a layer-1 saddle; escape rate",
                   run_manifold),
    csm.Experiment("relu-measure", "Lemma 2.4, Lemma 4.4",
                   "non-degenerate Jacobian a.e.; no atom of bad step sizes", run_measure),
    csm.Experiment("relu-transitions", "Section 4",
                   "saddle-to-saddle dynamics from small initialisation", run_transitions),
]

"""``csm reproduce`` experiment for low-rank matrix recovery (paper §3.2; docs/theory.md §7).

Claims checked (each with measured numbers, the expected value and its criterion):

* the closed-form critical points ``V_S Lambda_S^{1/2}`` of the full-observation loss and the
  Newton-located ones of the ℓ2 sensing loss are critical by central differences of the loss
  in 50-digit arithmetic; the least Hessian eigenvalue at every full-observation critical
  point equals ``-max_{k not in S} lambda_k`` (0 at the global minima); along the explicit
  direction ``Delta = v_p e_c^T`` (``p`` the top missing index, ``c`` a zero column) the loss
  changes by exactly ``-lambda_p h^2 / 2 + h^4 / 4``; every strict saddle of the sensing loss
  curves the loss itself down;
* the global minima have ``r(r-1)/2`` zero Hessian eigenvalues (the O(r) orbit), and the loss
  is flat to ``O(h^2)`` along the explicit orbit direction ``U S`` (``S`` skew);
* Theorem 2.2 at ``saddle-S1``: invariance and escape band;
* Proposition 2.5: no gradient-descent run converges to a saddle (full observation and ℓ2
  sensing), each beside its positive control;
* issue 13 (a): ℓ1 sensing with the geometric schedule ``0.05 * 0.995^k`` (the schedule of the
  phase-retrieval experiment; it sums to 10, enough to travel from N(0, I) starts, and its
  steps fall below 1e-9 after 4,000 steps): at least 95 % of 200 runs reach
  ``|U U^T - M*|_F <= 1e-6`` (measured on the matrix, independent of labels and of the O(r)
  ambiguity of U); the constant step 0.05 does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

import csm
from csm.experiments.kit import (Timer, critical_point_claims, curvature_quotient,
                                 manifold_claims, mp_gradient, positive_control,
                                 positive_control_figure, stable_set_sweep)
from csm.plotting import figure_path, new_figure, save_figure

REFERENCE = "Paper §3.2, Proposition 2.5, Theorem 2.2"
#: Gradient-descent step of the stable sets and their positive controls (largest Hessian
#: eigenvalue at the global minima: 4 (full), 4.46 (sensing), so 0.05 is well below 2/h).
STEP = 0.05


def full_loss_mp(M: np.ndarray, n: int, r: int) -> Callable[[list], Any]:
    """``F(U) = |U U^T - M|_F^2 / 4`` in mpmath arithmetic (``theta = vec(U)`` row-major)."""
    import mpmath as mp

    Mm = [[mp.mpf(float(M[i, j])) for j in range(n)] for i in range(n)]

    def loss(x: list) -> Any:
        U = [x[i * r:(i + 1) * r] for i in range(n)]
        tot = mp.mpf(0)
        for i in range(n):
            for j in range(n):
                e = mp.fsum(U[i][k] * U[j][k] for k in range(r)) - Mm[i][j]
                tot += e * e
        return tot / 4

    return loss


def sensing_loss_mp(A: np.ndarray, y: np.ndarray, n: int, r: int) -> Callable[[list], Any]:
    """``F(U) = (1/(4m)) sum_i (<A_i, U U^T> - y_i)^2`` in mpmath arithmetic."""
    import mpmath as mp

    As = [[[mp.mpf(float(a[i, j])) for j in range(n)] for i in range(n)] for a in A]
    Y = [mp.mpf(float(t)) for t in y]
    m = len(As)

    def loss(x: list) -> Any:
        U = [x[i * r:(i + 1) * r] for i in range(n)]
        P = [[mp.fsum(U[i][k] * U[j][k] for k in range(r)) for j in range(n)] for i in range(n)]
        tot = mp.mpf(0)
        for a, yi in zip(As, Y):
            s = mp.fsum(a[i][j] * P[i][j] for i in range(n) for j in range(n)) - yi
            tot += s * s
        return tot / (4 * m)

    return loss


def _explicit_direction_claim(p: Any) -> tuple[list[dict], csm.Claim]:
    """At each full-observation saddle: the loss along Delta = v_p e_c^T is
    L + (-lambda_p h^2 / 2 + h^4 / 4) / ... exactly, i.e. the second difference quotient is
    -lambda_p + h^2/2 (docs/theory.md §7)."""
    n, r = p.n, p.r
    rows, worst, count = [], 0.0, 0
    hs = (1e-2, 1e-3)
    for c in p.critical_points():
        if c.kind != "strict_saddle":
            continue
        U = c.theta.reshape(n, r)
        S = [k - 1 for k in c.info.get("eigenpairs", [])]
        missing = [k for k in range(r) if k not in S]
        zero_cols = [j for j in range(r) if np.linalg.norm(U[:, j]) == 0]
        if not missing or not zero_cols:
            continue
        pidx = missing[int(np.argmax(p.eigenvalues[missing]))]
        D = np.zeros((n, r))
        D[:, zero_cols[0]] = p.eigenvectors[:, pidx]
        cq = curvature_quotient(lambda X: np.asarray(p.loss(X), float), c.theta, D.ravel(), hs)
        exp = [-p.eigenvalues[pidx] + h * h / 2 for h in hs]
        err = max(abs(a - b) for a, b in zip(cq["quotient"], exp))
        worst = max(worst, err)
        count += 1
        rows.append({"saddle": c.label, "direction": f"v_{pidx + 1} e_{zero_cols[0] + 1}^T",
                     "-lambda_p": -float(p.eigenvalues[pidx]),
                     **{f"quotient h={h:g}": float(q) for h, q in zip(hs, cq["quotient"])},
                     "max |quotient - (-lambda_p + h^2/2)|": err})
    claim = csm.Claim(
        "full observation: along the explicit direction Delta = v_p e_c^T (p the top eigenpair "
        "missing from S, c a zero column) the loss curves down with curvature exactly -lambda_p",
        "docs/theory.md §7; paper §3.2",
        measured={"saddles": count, "max_abs_error": worst},
        expected={"max_abs_error": 0.0},
        criterion="(L(U+hD) - 2L(U) + L(U-hD))/h^2 = -lambda_p + h^2/2 to 1e-9 for h = 1e-2, "
                  "1e-3 (float loss; exact identity L(U + hD) = L - lambda_p h^2/2 + h^4/4)",
        agrees=count > 0 and worst <= 1e-9)
    return rows, claim


def _schedule_figure(l1: Any, sched: Any, X0: np.ndarray, K: int, out: Path) -> str:
    from csm.orbits import trajectories

    def step_s(Y: np.ndarray, k: int) -> np.ndarray:
        return Y - sched(k) * np.asarray(l1.gradient(Y), dtype=float)

    def step_c(Y: np.ndarray, k: int) -> np.ndarray:
        return Y - 0.05 * np.asarray(l1.gradient(Y), dtype=float)

    def err(T: np.ndarray) -> np.ndarray:
        U = T.reshape(T.shape[0], T.shape[1], l1.n, l1.r)
        P = np.einsum("btik,btjk->btij", U, U) - l1.m_star
        return np.linalg.norm(P, axis=(2, 3))

    every = 20
    Ts = trajectories(step_s, X0, K, every=every, nonautonomous=True)
    Tc = trajectories(step_c, X0, K, every=every, nonautonomous=True)
    fig = new_figure(7.5, 4.4)
    ax = fig.add_subplot(111)
    k = np.arange(Ts.shape[1]) * every
    Es, Ec = err(Ts), err(Tc)
    for i in range(len(X0)):
        ax.semilogy(k, Es[i], color="tab:blue", lw=0.8, alpha=0.7,
                    label="geometric schedule γ_k = 0.05·0.995^k" if i == 0 else None)
        ax.semilogy(k, Ec[i], color="tab:red", lw=0.8, alpha=0.7,
                    label="constant step 0.05" if i == 0 else None)
    ax.axhline(1e-6, color="k", ls="--", lw=1, label="criterion |UUᵀ − M*|_F ≤ 1e-6")
    ax.set_xlabel("subgradient step k")
    ax.set_ylabel("|U_k U_kᵀ − M*|_F")
    ax.set_title(f"ℓ1 matrix sensing (n = {l1.n}, r = {l1.r}, m = {l1.m}): {len(X0)} runs from "
                 "N(0, I)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, figure_path(out, "matrix_recovery_l1_schedule"))


def run(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    n, r = 6, 2
    timer = Timer()
    out = Path(config.out_dir)
    full = csm.get_problem("matrix_recovery", n=n, r=r, loss="full", seed=config.seed)
    sens = csm.get_problem("matrix_recovery", n=n, r=r, m=60, loss="l2", seed=config.seed)
    tables, claims, figures = {}, [], {}
    with timer("critical points"):
        f_full = full_loss_mp(full.m_star, n, r)
        lam = full.eigenvalues
        analytic = {}
        for c in full.critical_points():
            S = [k - 1 for k in c.info.get("eigenpairs", [])]
            missing = [k for k in range(r) if k not in S]
            analytic[c.label] = -float(max(lam[missing])) if missing else 0.0
        rows, cl = critical_point_claims(
            full, independent_gradient=lambda th: mp_gradient(f_full, th),
            how="central differences of the 50-digit loss", grad_tol=1e-12,
            reference="docs/theory.md §7", loss_mp=f_full, analytic_least=analytic,
            tag="full observation")
        tables["full observation: critical points"] = rows
        claims += cl
        rows, cl = _explicit_direction_claim(full)
        tables["full observation: curvature along the explicit escape direction"] = rows
        claims.append(cl)
        zero_min = [row["zero"] for row in tables["full observation: critical points"]
                    if row["kind"] == "global_minimum"]
        # flat along the O(r) orbit: U S, S skew, to O(h^2)
        gm = next(c for c in full.critical_points() if c.kind == "global_minimum")
        Sk = np.zeros((r, r))
        Sk[0, 1], Sk[1, 0] = 1.0, -1.0
        V = (gm.theta.reshape(n, r) @ Sk).ravel()
        cq = curvature_quotient(lambda X: np.asarray(full.loss(X), float), gm.theta, V, (1e-3,))
        claims.append(csm.Claim(
            "global minima have r(r-1)/2 zero Hessian eigenvalues (the O(r) orbit), and the loss "
            "is flat along the explicit orbit direction U S (S skew)", "docs/theory.md §7",
            measured={"zero_eigenvalues": zero_min, "quotient_along_US_h1e-3":
                      float(cq["quotient"][0])},
            expected={"zero_eigenvalues": r * (r - 1) // 2, "quotient_along_US": 0.0},
            criterion="every global minimum has exactly r(r-1)/2 eigenvalues with |h| <= 1e-9 "
                      "max|h|; |quotient| <= 1e-5 (it is O(h^2|US|^4), not -lambda)",
            agrees=bool(zero_min) and all(z == r * (r - 1) // 2 for z in zero_min)
            and abs(float(cq["quotient"][0])) <= 1e-5))
        f_sens = sensing_loss_mp(sens.A, sens.y, n, r)
        rows, cl = critical_point_claims(
            sens, independent_gradient=lambda th: mp_gradient(f_sens, th),
            how="central differences of the 50-digit sensing loss (the saddles were located by "
                "Newton's method on the float gradient)", grad_tol=1e-12,
            reference="Paper §3.2 (ℓ2 sensing)", loss_mp=f_sens, tag="ℓ2 sensing, m = 60")
        tables["ℓ2 sensing (m = 60): critical points"] = rows
        claims += cl

    saddle = next(c for c in full.critical_points()
                  if c.kind == "strict_saddle" and c.label != "origin")
    with timer("manifold"):
        m = csm.center_stable_manifold(full.local_map(saddle, 0.05), saddle.theta, tol=1e-12)
        ver = m.verify(n=32)
    rows, cl = manifold_claims(m, ver, saddle.label)
    tables[f"center-stable manifold at {saddle.label} (GD step 0.05)"] = rows
    claims += cl

    runs = 1000 if config.quick else 10_000
    for k, (prob, tag) in enumerate(((full, "full-observation"), (sens, "ℓ2 sensing"))):
        with timer("stable sets"):
            rows, cl, _ = stable_set_sweep(
                prob, [STEP], runs, max_steps=20_000 if config.quick else 100_000, tol=1e-7,
                seed=config.seed, executor=config.executor, progress=config.progress,
                reference="Proposition 2.5",
                statement=f"GD on the {tag} loss does not converge to a saddle",
                out_dir=out, name=f"matrix_recovery_{prob.loss_type}")
        tables[f"gradient descent, {tag} loss"] = rows
        # the ℓ2 sensing saddle-S1 has lambda_u from 1.0024 to 1.040 at this step (a graph
        # horizon of ~10^4 steps, slow to sample); saddle-S2 (three unstable directions) is used
        s = next(c for c in prob.critical_points()
                 if c.label == ("saddle-S1" if prob is full else "saddle-S2"))
        with timer("positive controls"):
            pc, pcl, prow = positive_control(prob, s, STEP, seed=config.seed + 100 + k)
        tables[f"positive control, {tag} loss"] = prow
        claims += cl + [pcl]
        if prob is sens:
            with timer("figures"):
                figures[f"positive control at {s.label} (ℓ2 sensing)"] = positive_control_figure(
                    pc, out, "matrix_recovery_positive_control",
                    f"matrix sensing ℓ2 (n = {n}, r = {r}, m = 60), {s.label} (dim E_u = "
                    f"{pc.manifold.dim_u}), GD step {STEP}")

    # issue 13 (a): ℓ1 sensing with a geometric schedule, measured on U U^T
    from csm.orbits import descend
    from csm.schedules import Geometric

    l1 = csm.get_problem("matrix_recovery", n=n, r=r, m=60, loss="l1", seed=config.seed)
    sched = Geometric(0.05, 0.995)
    X0 = l1.sample(np.random.default_rng(config.seed + 7), 200)
    K = 5000  # the schedule's steps are below 1e-12 after 5,000 steps
    with timer("ℓ1 schedule"):
        d_s = descend(l1, X0, sched, max_steps=K, tol=1e-9)
        d_c = descend(l1, X0, 0.05, max_steps=K, tol=1e-9)

    def err(T: np.ndarray) -> np.ndarray:
        U = T.reshape(-1, n, r)
        return np.linalg.norm(U @ np.swapaxes(U, 1, 2) - l1.m_star, axis=(1, 2))

    es, ec = err(d_s.theta), err(d_c.theta)
    fs, fc = float(np.mean(es <= 1e-6)), float(np.mean(ec <= 1e-6))
    claims.append(csm.Claim(
        "ℓ1 matrix sensing (n = 6, r = 2, m = 60) with the geometric schedule gamma_k = 0.05 * "
        "0.995^k recovers the low-rank matrix", "Issue 13 (a); Proposition 2.5 for non-autonomous maps",
        measured={"runs": len(es), "fraction_within_1e-6": fs,
                  "median_error": float(np.median(es)), "max_error": float(np.max(es)),
                  "max_steps": K},
        expected={"fraction_within_1e-6_min": 0.95},
        criterion="fraction of runs with |U U^T - M*|_F <= 1e-6 at the last iterate >= 0.95",
        agrees=fs >= 0.95))
    claims.append(csm.Claim(
        "control: at the constant step 0.05 the ℓ1 subgradient method does not reach 1e-6",
        "Issue 13 (a)", measured={"fraction_within_1e-6": fc, "median_error": float(np.median(ec))},
        expected={"fraction_within_1e-6_max": 0.05},
        criterion="fraction with |U U^T - M*|_F <= 1e-6 after the same number of steps <= 0.05",
        agrees=fc <= 0.05))
    tables["ℓ1 sensing: geometric schedule vs constant step (200 runs)"] = [
        {"step": sched.spec(), "|UUᵀ − M*| ≤ 1e-6": f"{int(np.sum(es <= 1e-6))}/200",
         "median error": float(np.median(es)), "max error": float(np.max(es))},
        {"step": "0.05 (constant)", "|UUᵀ − M*| ≤ 1e-6": f"{int(np.sum(ec <= 1e-6))}/200",
         "median error": float(np.median(ec)), "max error": float(np.max(ec))}]
    with timer("figures"):
        figures["ℓ1 matrix sensing: geometric schedule vs constant step"] = _schedule_figure(
            l1, sched, X0[:8], 4500, out)
    return csm.ExperimentResult("matrix_recovery", REFERENCE, claims, tables, figures,
                                seeds={"data": config.seed, "stable sets": config.seed,
                                       "positive controls": config.seed + 100,
                                       "ℓ1 starts": config.seed + 7},
                                timings=timer.seconds)


EXPERIMENT = csm.Experiment(
    "matrix_recovery", REFERENCE,
    "independent criticality, curvature -lambda_p along explicit directions, O(r) center "
    "directions, GD avoids saddles (with positive controls), ℓ1 with a geometric schedule", run)

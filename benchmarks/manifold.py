"""Benchmark: the center-stable manifold (Theorem 2.2) end to end against a fair baseline.

1. **d = 31, 1,000 base points, tol 1e-10**, two maps: the conjugated example
   (``csm.testing.conjugated_graph_map``, dim_u = 3, exact graph known) and the GD map of
   ``csm.testing.RotatedQuartic(31, 3, coupling=0.5)`` (step 0.5, dense path).  csm: set-up
   (``center_stable_manifold``: spectral split, Lipschitz estimate, radius search) and the
   batched solve ``m.solve(xi)``, timed separately and end to end (set-up + solve).  Baseline:
   per point, ``scipy.optimize.root(method="krylov")`` on the *same* finite-horizon
   fixed-point problem ``y = T_xi(y)`` (unknowns: the K x d sequence), with its stopping
   tolerance **matched** to csm: ``fatol`` (max-norm of ``y - T_xi(y)``) = the increment csm
   actually achieved (``GraphSolve.residual``, floored at ``--fatol-floor``, below which the
   residual is rounding noise), all other tolerances off.  A second baseline row uses csm's
   own stopping target ``tol (1 - kappa)`` (looser).  The baseline gets csm's frame, radius
   and horizon for free (no set-up charged to it) and is timed on ``--baseline-points``
   points, extrapolated to all (printed as such).  Both are checked against the exact graph
   (conjugated example) or against each other (RotatedQuartic).
2. **Dense set-up at d = 400** (the largest dense default): ``center_stable_manifold`` on the
   RotatedQuartic GD map, ``matrix_free=False``.
3. **Matrix-free set-up at d = 10^4 and 10^5** (RotatedQuartic, coupling 0.5, dim_u 3): set-up
   time, peak memory (tracemalloc: Python and NumPy allocations), time per graph point.

Sections 2 and 3 run in child processes with a time limit (``--timeout``); a set-up that does
not finish is reported as such.  Timings: interleaved rounds, min and median
(``benchmarks/_harness.py``); JSON record ``benchmarks/results/manifold.json``.

Run::

    python benchmarks/manifold.py                    # everything, 45 s limit per child (~4 min)
    python benchmarks/manifold.py --timeout 240      # the figures of benchmarks/README.md
    python benchmarks/manifold.py --skip-large       # section 1 and d = 400 only
    python benchmarks/manifold.py --mf-dims 10000 100000 --timeout 600
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# BLAS threads: one per process unless the environment says otherwise (``--blas-threads N``
# or OPENBLAS_NUM_THREADS).  Every contender runs under the same setting; on a shared 2-core
# machine a multi-threaded BLAS on small batched products oversubscribes (issue 16).
_BLAS = sys.argv[sys.argv.index("--blas-threads") + 1] if "--blas-threads" in sys.argv else "1"
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _BLAS)

import numpy as np  # noqa: E402
from scipy import optimize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import csm  # noqa: E402
from _harness import Record, compare, fmt_s, peak_memory, timed  # noqa: E402
from csm.manifold import bump  # noqa: E402
from csm.testing import RotatedQuartic, conjugated_graph_map  # noqa: E402


def conjugated_case():
    cs = [0.0, -1.0, 1.0, 0.5 + 0.5j, 0.3, -0.2, 0.6, 0.1, 0.7, -0.5, 0.45, 0.2, 0.33, 0.9,
          0.15, 0.05, -0.8, 0.25, 0.4, -0.35, 0.55, 0.05, -0.15, 0.6, 0.12, 0.22, 0.8]
    tc = conjugated_graph_map(cs, [1.8, 2.5, 1.3], nonlinearity="mixed", seed=1)
    assert tc.map.dim == 31 and tc.dim_u == 3
    return tc


def per_point_root(m, xi: np.ndarray, method: str, fatol: float):
    """The baseline: ``T_xi`` written for one point, solved by ``scipy.optimize.root``.

    Stops when ``max |y - T_xi(y)| <= fatol`` (``xtol``, ``ftol``, ``xatol`` off).
    Returns ``(q_0, nfev-ish iterations, final max-norm residual)``.
    """
    C = m.frame  # eigen-coordinates of the same split (dense mode)
    K, eps, k = m.horizon, m.radius, C.dim_cs
    Lcs, Lu_inv = C.L_cs, C.L_u_inv

    def T(yflat: np.ndarray) -> np.ndarray:
        Y = yflat.reshape(K, -1)
        P, Q = Y[:, :k], Y[:, k:]
        eta = bump(np.linalg.norm(Y, axis=1) / eps)[:, None]
        gp, gq = C.g_z(eta * P, eta * Q)
        Rcs = gp - (eta * P) @ Lcs.T
        Ru = gq - (eta * Q) @ C.L_u.T
        newP = np.empty_like(P)
        newP[0] = xi
        for n in range(1, K):
            newP[n] = Lcs @ newP[n - 1] + Rcs[n - 1]
        newQ = np.empty_like(Q)
        acc = np.zeros(Q.shape[1])
        for n in range(K - 1, -1, -1):
            acc = Lu_inv @ (acc - Ru[n])
            newQ[n] = acc
        return np.concatenate([newP, newQ], axis=1).ravel()

    y0 = np.zeros((K, C.split.block.shape[0]))
    y0[0, :k] = xi
    for n in range(1, K):
        y0[n, :k] = Lcs @ y0[n - 1, :k]

    def F(y):
        return y - T(y)

    if method in ("hybr", "lm"):
        sol = optimize.root(F, y0.ravel(), method=method, tol=fatol)
    else:
        opts = {"fatol": fatol, "xtol": np.inf, "xatol": np.inf, "ftol": np.inf}
        sol = optimize.root(F, y0.ravel(), method=method, options=opts)
    res = float(np.max(np.abs(F(sol.x))))
    return sol.x.reshape(K, -1)[0, k:], int(getattr(sol, "nit", getattr(sol, "nfev", -1))), res


# ----------------------------------------------------------------------------- section 1
def bench_d31(args, rec: Record) -> None:
    print(f"## 1. d = 31, {args.points} base points, tol 1e-10 -- end to end "
          f"(set-up + solve) vs per-point scipy.optimize.root({args.method})")
    cases = {}
    tc = conjugated_case()
    cases["conjugated"] = (tc.map, tc.fixed_point, tc)
    pb = RotatedQuartic(31, 3, coupling=0.5, seed=0)
    cases["rotated_quartic_gd"] = (csm.GradientDescentMap(pb, args.step), np.zeros(31), None)
    hdr = (f"{'map':>20} {'setup':>9} {'solve':>9} {'csm e2e':>9} | {'fatol':>8} "
           f"{'root/pt':>9} {'root e2e':>9} | {'x e2e':>12} {'x solve':>8} | "
           f"{'err csm':>8} {'err root':>8}")
    lines = []
    for name, (g, x0, tc_) in cases.items():
        mk = lambda: csm.center_stable_manifold(g, x0, tol=1e-10)  # noqa: E731
        m = mk()
        xi = m.sample_cs(args.points, 0, fraction=0.9)
        sol = m.solve(xi)
        sub = xi[:args.baseline_points]
        f_match = max(sol.residual, args.fatol_floor)
        f_target = sol.target
        fns = {
            "csm_setup": mk,
            "csm_solve": lambda: m.solve(xi),
            "root_matched": lambda: [per_point_root(m, x, args.method, f_match) for x in sub],
            "root_target": lambda: [per_point_root(m, x, args.method, f_target) for x in sub],
        }
        res = compare(fns, rounds=args.rounds, number={k: 1 for k in fns})
        q = sol.q
        out_m = [per_point_root(m, x, args.method, f_match) for x in sub]
        out_t = [per_point_root(m, x, args.method, f_target) for x in sub]
        qb_m = np.array([o[0] for o in out_m])
        qb_t = np.array([o[0] for o in out_t])
        if tc_ is not None:
            err_csm = float(tc_.graph_error(x0 + m.frame.from_z(xi, q)).max())
            err_m = float(tc_.graph_error(x0 + m.frame.from_z(sub, qb_m)).max())
            err_t = float(tc_.graph_error(x0 + m.frame.from_z(sub, qb_t)).max())
            err_kind = "vs exact graph"
        else:
            err_csm = float("nan")
            err_m = float(np.max(np.abs(qb_m - q[:len(sub)])))
            err_t = float(np.max(np.abs(qb_t - q[:len(sub)])))
            err_kind = "root vs csm |dq|"
        row = {"map": name, "points": args.points, "baseline_points": len(sub),
               "radius": m.radius, "kappa": m.contraction, "horizon": m.horizon,
               "nit": sol.nit, "csm_residual": sol.residual, "csm_target": sol.target,
               "fatol_matched": f_match, "fatol_target": f_target, "error_kind": err_kind,
               "err_csm": err_csm, "err_root_matched": err_m, "err_root_target": err_t,
               "root_matched_iters_mean": float(np.mean([o[1] for o in out_m])),
               "root_matched_final_residual_max": float(max(o[2] for o in out_m)),
               "root_target_final_residual_max": float(max(o[2] for o in out_t)),
               "timings": res.as_dict()}
        for stat in ("min", "median"):
            su = getattr(res["csm_setup"], stat)
            so = getattr(res["csm_solve"], stat)
            e2e = su + so
            for b in ("root_matched", "root_target"):
                per_pt = getattr(res[b], stat) / len(sub)
                row[f"{b}_per_point_{stat}_s"] = per_pt
                row[f"{b}_e2e_{stat}_s"] = per_pt * args.points
                row[f"ratio_e2e_{b}_{stat}"] = per_pt * args.points / e2e
                row[f"ratio_solve_only_{b}_{stat}"] = per_pt * args.points / so
            row[f"csm_setup_{stat}_s"] = su
            row[f"csm_solve_{stat}_s"] = so
            row[f"csm_e2e_{stat}_s"] = e2e
        rec.add(section="d31", **row)
        for b, fat, err in (("root_matched", f_match, err_m), ("root_target", f_target, err_t)):
            lines.append(
                f"{name if b == 'root_matched' else '':>20} {fmt_s(row['csm_setup_min_s']):>9} "
                f"{fmt_s(row['csm_solve_min_s']):>9} {fmt_s(row['csm_e2e_min_s']):>9} | "
                f"{fat:8.1e} {fmt_s(row[f'{b}_per_point_min_s']):>9} "
                f"{fmt_s(row[f'{b}_e2e_min_s']):>9} | "
                f"{row[f'ratio_e2e_{b}_min']:5.1f} [{row[f'ratio_e2e_{b}_median']:4.1f}] "
                f"{row[f'ratio_solve_only_{b}_min']:8.1f} | {err_csm:8.1e} {err:8.1e}")
        print(f"   {name}: radius {m.radius:.3g}, kappa {m.contraction:.3f}, K = {m.horizon}, "
              f"{sol.nit} sweeps, csm increment {sol.residual:.1e} (target {sol.target:.1e}); "
              f"root mean iterations {row['root_matched_iters_mean']:.1f}, final |F| "
              f"<= {row['root_matched_final_residual_max']:.1e}; errors: {err_kind}")
    print()
    print(hdr)
    print("-" * len(hdr))
    for ln in lines:
        print(ln)
    print(f"(mins of {args.rounds} interleaved rounds [median ratio]; root timed on "
          f"{args.baseline_points} points, extrapolated to {args.points}; first row per map: "
          f"fatol = csm's achieved increment (floor {args.fatol_floor:g}), second: csm's target "
          f"tol(1 - kappa); x e2e = root e2e / csm e2e, x solve = excluding csm's set-up)")


# ----------------------------------------------------------------------------- children
def _child_dense(d: int, step: float) -> dict:
    pb = RotatedQuartic(d, 3, coupling=0.5, seed=0)
    g = csm.GradientDescentMap(pb, step)
    m, t = timed(lambda: csm.center_stable_manifold(g, np.zeros(d), matrix_free=False))
    xi = m.sample_cs(16, 0)
    sol, ts = timed(lambda: m.solve(xi))
    return {"d": d, "setup_s": t, "solve_16_points_s": ts, "horizon": m.horizon,
            "radius": m.radius, "dim_u": m.dim_u}


def _child_mf(d: int, step: float, n_points: int) -> dict:
    pb = RotatedQuartic(d, 3, coupling=0.5, seed=0)
    g = csm.GradientDescentMap(pb, step)
    m, t, peak = peak_memory(
        lambda: csm.center_stable_manifold(g, np.zeros(d), matrix_free=True))
    xi = m.sample_cs(n_points, 0)
    sol, ts, peak_s = peak_memory(lambda: m.solve(xi))
    X = m.fixed_point + m.frame.from_z(xi, sol.q)
    inv = float(np.max(np.abs(m.offset(g(X[:min(4, n_points)])))))
    return {"d": d, "setup_s": t, "setup_peak_bytes": peak, "solve_points": n_points,
            "solve_s": ts, "per_point_s": ts / n_points, "solve_peak_bytes": peak_s,
            "horizon": m.horizon, "radius": m.radius, "nit": sol.nit,
            "invariance_residual": inv, "eigenvalues_u": np.real(m.eigenvalues_u).tolist()}


def _run_child(args, kind: str, d: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", kind, "--_d", str(d),
           "--step", str(args.step), "--mf-points", str(args.mf_points)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"d": d, "timeout_s": args.timeout, "finished": False}
    if p.returncode != 0:
        return {"d": d, "finished": False, "error": p.stderr[-2000:],
                "wall_s": time.perf_counter() - t0}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["finished"] = True
    return out


def bench_setups(args, rec: Record) -> None:
    print(f"\n## 2. dense set-up, RotatedQuartic(d, 3, coupling=0.5) GD map (step {args.step}),"
          f" matrix_free=False  [target: <= 10 s at d = 400]")
    for d in args.dense_dims:
        r = _run_child(args, "dense", d)
        rec.add(section="dense_setup", **r)
        if r["finished"]:
            print(f"   d = {d}: set-up {r['setup_s']:.2f} s (K = {r['horizon']}), "
                  f"solve of 16 points {r['solve_16_points_s']:.3f} s")
        else:
            print(f"   d = {d}: did not finish: "
                  + (f"> {r['timeout_s']} s (time limit)" if "timeout_s" in r
                     else r.get("error", "")[-300:]))
    if args.skip_large:
        return
    print(f"\n## 3. matrix-free set-up, RotatedQuartic(d, 3, coupling=0.5) GD map "
          f"(step {args.step})  [targets at d = 1e5: set-up <= 15 s, <= 1 s per point]")
    print(f"{'d':>8} {'setup':>9} {'peak MiB':>9} {'s/point':>9} {'solve peak':>10} "
          f"{'K':>5} {'nit':>4} {'invariance':>10}")
    for d in args.mf_dims:
        r = _run_child(args, "mf", d)
        rec.add(section="matrix_free", **r)
        if r["finished"]:
            print(f"{d:8d} {r['setup_s']:9.2f} {r['setup_peak_bytes'] / 2**20:9.1f} "
                  f"{r['per_point_s']:9.3f} {r['solve_peak_bytes'] / 2**20:10.1f} "
                  f"{r['horizon']:5d} {r['nit']:4d} {r['invariance_residual']:10.1e}")
        else:
            why = (f"> {r['timeout_s']} s (time limit)" if "timeout_s" in r
                   else r.get("error", "")[-300:])
            print(f"{d:8d} did not finish: {why}")
    print("(set-up time measured under tracemalloc, single run; peak = tracemalloc peak "
          "above the start, MiB)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--baseline-points", type=int, default=20)
    ap.add_argument("--method", default="krylov", help="scipy.optimize.root method")
    ap.add_argument("--fatol-floor", type=float, default=1e-14,
                    help="lowest fatol given to the baseline (rounding floor of |y - T(y)|)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--step", type=float, default=0.5, help="GD step of the RotatedQuartic maps")
    ap.add_argument("--dense-dims", type=int, nargs="*", default=[400])
    ap.add_argument("--mf-dims", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--mf-points", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=45.0,
                    help="seconds per child set-up run (sections 2, 3)")
    ap.add_argument("--skip-large", action="store_true", help="skip section 3")
    ap.add_argument("--skip-d31", action="store_true", help="skip section 1")
    ap.add_argument("--blas-threads", default="1",
                    help="BLAS threads per process (set before NumPy loads; env vars win)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_d", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        if args._child == "dense":
            out = _child_dense(args._d, args.step)
        else:
            out = _child_mf(args._d, args.step, args.mf_points)
        print(json.dumps(out))
        return 0
    print(f"csm {csm.__version__}, numpy {np.__version__}; one process, BLAS threads as set "
          f"by the environment (OMP/OPENBLAS_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}/"
          f"{os.environ.get('OPENBLAS_NUM_THREADS')})\n")
    rec = Record("manifold", args)
    if not args.skip_d31:
        bench_d31(args, rec)
    bench_setups(args, rec)
    rec.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

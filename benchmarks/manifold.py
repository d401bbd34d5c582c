"""Benchmark: the batched Lyapunov--Perron solver of ``csm.center_stable_manifold``.

1. d = 31 conjugated example (``csm.testing.conjugated_graph_map``, dim_u = 3, C^1 "mixed"
   nonlinearity, eigenvalue 0, center eigenvalues +-1, complex pairs), 1,000 base points,
   tol 1e-10: csm's batched Banach iteration against the baseline a user would write -- a
   per-point ``scipy.optimize.root`` on the *same* finite-horizon fixed-point problem
   ``y = T_xi(y)`` (unknowns: the K x d sequence).  The baseline is timed on a subset and
   extrapolated (printed as such).  Both are compared with the exact graph.
2. The matrix-free path (Lanczos + Hessian-vector products) on ``csm.testing.RotatedQuartic``
   with coupling (no closed form), dim_u = 3, at d = 1,000 and 5,000: time per base point and
   peak memory (tracemalloc, which sees numpy's allocations).

Run:  python benchmarks/manifold.py [--points 1000] [--baseline-points 20] [--method krylov]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy import optimize

import csm
from csm.manifold import bump
from csm.testing import RotatedQuartic, conjugated_graph_map


def conjugated_case():
    cs = [0.0, -1.0, 1.0, 0.5 + 0.5j, 0.3, -0.2, 0.6, 0.1, 0.7, -0.5, 0.45, 0.2, 0.33, 0.9,
          0.15, 0.05, -0.8, 0.25, 0.4, -0.35, 0.55, 0.05, -0.15, 0.6, 0.12, 0.22, 0.8]
    tc = conjugated_graph_map(cs, [1.8, 2.5, 1.3], nonlinearity="mixed", seed=1)
    assert tc.map.dim == 31 and tc.dim_u == 3
    return tc


def per_point_root(m: csm.manifold.CenterStableManifold, xi: np.ndarray, method: str, tol: float):
    """The baseline: T_xi written for one point, solved by scipy.optimize.root."""
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
    sol = optimize.root(lambda y: y - T(y), y0.ravel(), method=method, tol=tol)
    return sol.x.reshape(K, -1)[0, k:], sol.nfev


def bench_dense(n_points: int, n_base: int, method: str) -> None:
    tc = conjugated_case()
    t = time.perf_counter()
    m = csm.center_stable_manifold(tc.map, tc.fixed_point, tol=1e-10)
    t_setup = time.perf_counter() - t
    xi = m.sample_cs(n_points, 0, fraction=0.9)
    t = time.perf_counter()
    sol = m.solve(xi)
    q = sol.q
    t_ours = time.perf_counter() - t
    X = tc.fixed_point + m.frame.from_z(xi, q)
    err_ours = float(tc.graph_error(X).max())

    sub = xi[:n_base]
    t = time.perf_counter()
    out = [per_point_root(m, x, method, 1e-12) for x in sub]
    t_base = (time.perf_counter() - t) * n_points / n_base
    qb = np.array([o[0] for o in out])
    err_base = float(tc.graph_error(tc.fixed_point + m.frame.from_z(sub, qb)).max())
    print(f"## d = 31 conjugated example (dim_u = 3), {n_points} base points, tol 1e-10")
    print(f"setup (spectral split, Lipschitz estimate, radius search): {t_setup:.3f} s; "
          f"radius {m.radius:.4g}, kappa {m.contraction:.3f}, horizon K = {m.horizon}, "
          f"Banach iterations {sol.nit}")
    print(f"csm batched solver      : {t_ours:8.3f} s   max error vs exact graph {err_ours:.2e}")
    print(f"scipy.optimize.root/{method:5s}: {t_base:8.3f} s   max error vs exact graph {err_base:.2e}"
          f"   (timed on {n_base} points, extrapolated; mean nfev "
          f"{np.mean([o[1] for o in out]):.0f})")
    print(f"speed-up: {t_base / t_ours:.1f}x")


def bench_matrix_free(dims, n_points: int, step: float) -> None:
    print(f"\n## matrix-free path: RotatedQuartic(coupling=0.5, dim_u=3), GD step {step}, tol 1e-10")
    print(f"{'d':>6} {'setup s':>8} {'K':>5} {'nit':>4} {'s/point':>9} {'peak MiB':>9} "
          f"{'max|offset| dense-check':>24}")
    for d in dims:
        pb = RotatedQuartic(d, 3, coupling=0.5, seed=0)
        g = csm.GradientDescentMap(pb, step)
        tracemalloc.start()
        t = time.perf_counter()
        m = csm.center_stable_manifold(g, np.zeros(d), matrix_free=True)
        t_setup = time.perf_counter() - t
        xi = m.sample_cs(n_points, 0)
        t = time.perf_counter()
        sol = m.solve(xi)
        q = sol.q
        t_solve = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        # invariance check of the result: g maps graph points onto the graph
        X = m.fixed_point + m.frame.from_z(xi, q)
        GX = g(X)
        res = float(np.max(np.abs(m.offset(GX[: min(4, n_points)]))))
        print(f"{d:6d} {t_setup:8.2f} {m.horizon:5d} {sol.nit:4d} {t_solve / n_points:9.4f} "
              f"{peak:9.1f} {res:24.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--baseline-points", type=int, default=20)
    ap.add_argument("--method", default="krylov", help="scipy.optimize.root method of the baseline")
    ap.add_argument("--dims", type=int, nargs="*", default=[1000, 5000])
    ap.add_argument("--mf-points", type=int, default=20)
    ap.add_argument("--step", type=float, default=0.5)
    a = ap.parse_args()
    bench_dense(a.points, a.baseline_points, a.method)
    bench_matrix_free(a.dims, a.mf_points, a.step)


if __name__ == "__main__":
    main()

"""Benchmark: batched gradient-descent steps on the shallow ReLU integral loss (paper §4).

Compares csm's exact ``O(N log N)`` loss + gradient (``ReluProblem.loss_and_gradient``) with
the baseline a user would otherwise write: the integral replaced by a Riemann sum on a uniform
grid of ``--grid`` midpoints, differentiated by PyTorch autograd (skipped with a message when
torch is not importable) and a hand-written NumPy version of the same grid loss.

Printed: network-steps per second (batch size x steps / seconds), time per batched step, the
ratios, each baseline's loss error against the exact value, and the growth exponent of our
time per step in N (log-log fit; N log N growth shows as an exponent slightly above 1).

The grid baselines need ``batch x N x grid`` floats per array; they are evaluated in chunks of
at most ``--chunk`` networks and, to keep the run short, timed on ``--baseline-batch``
networks (throughput is linear in the batch).  Run::

    python benchmarks/relu_gd.py                       # N = 4, 16, 64, batch 10^4
    python benchmarks/relu_gd.py --N 4 8 16 32 64 128 --batch 20000 --repeats 5
    /tmp/venv-torch/bin/python benchmarks/relu_gd.py   # with the torch baseline
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import csm


def _best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def grid_numpy_step(X: np.ndarray, x: np.ndarray, fx: np.ndarray, hgrid: float, N: int,
                    step: float, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """One GD step of the grid loss ``hgrid * sum_i e(x_i)^2`` with a hand-written backward."""
    L = np.empty(len(X))
    Xn = np.empty_like(X)
    for s in range(0, len(X), chunk):
        T = X[s:s + chunk]
        W, B, V, c = T[:, :N, None], T[:, N:2 * N, None], T[:, 2 * N:3 * N], T[:, 3 * N]
        pre = W * x + B                       # (b, N, K)
        act = np.maximum(pre, 0.0)
        e = c[:, None] + np.einsum("bj,bjk->bk", V, act) - fx
        L[s:s + chunk] = hgrid * np.einsum("bk,bk->b", e, e)
        ge = 2.0 * hgrid * e                  # dL/de
        gv = np.einsum("bk,bjk->bj", ge, act)
        gpre = (pre > 0) * (V[:, :, None] * ge[:, None, :])
        gw = np.einsum("bjk,k->bj", gpre, x)
        gb = gpre.sum(axis=2)
        gc = ge.sum(axis=1)
        G = np.concatenate([gw, gb, gv, gc[:, None]], axis=1)
        Xn[s:s + chunk] = T - step * G
    return L, Xn


def make_torch_step(torch, x_np: np.ndarray, fx_np: np.ndarray, hgrid: float, N: int,
                    step: float, chunk: int):
    x = torch.tensor(x_np, dtype=torch.float64)
    fx = torch.tensor(fx_np, dtype=torch.float64)

    def loss_fn(T):
        W, B, V, c = T[:, :N, None], T[:, N:2 * N, None], T[:, 2 * N:3 * N, None], T[:, 3 * N:]
        out = c + (V * torch.relu(W * x + B)).sum(dim=1)
        return hgrid * ((out - fx) ** 2).sum(dim=1)

    def gd_step(X_np: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        L = np.empty(len(X_np))
        Xn = np.empty_like(X_np)
        for s in range(0, len(X_np), chunk):
            T = torch.tensor(X_np[s:s + chunk], dtype=torch.float64, requires_grad=True)
            loss = loss_fn(T)
            loss.sum().backward()
            with torch.no_grad():
                Xn[s:s + chunk] = (T - step * T.grad).numpy()
            L[s:s + chunk] = loss.detach().numpy()
        return L, Xn

    return gd_step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, nargs="+", default=[4, 16, 64], help="neuron counts")
    ap.add_argument("--batch", type=int, default=10_000, help="networks per batched step")
    ap.add_argument("--baseline-batch", type=int, default=2_000,
                    help="networks used to time the grid baselines (throughput is linear)")
    ap.add_argument("--grid", type=int, default=1000, help="grid points of the baselines")
    ap.add_argument("--chunk", type=int, default=0,
                    help="networks per chunk in the baselines (default: ~2e7 floats per array)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    args = ap.parse_args(argv)

    try:
        if args.no_torch:
            raise ImportError("--no-torch")
        import torch  # noqa: F401

        torch.set_num_threads(max(1, torch.get_num_threads()))
        torch_msg = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError as exc:
        torch = None
        torch_msg = f"torch baseline skipped ({exc}); see the module docstring"
    print(f"csm {csm.__version__}, numpy {np.__version__}; {torch_msg}")
    print(f"batch {args.batch} (baselines timed on {min(args.batch, args.baseline_batch)}), "
          f"grid {args.grid} midpoints, best of {args.repeats}, float64\n")

    header = (f"{'N':>4} {'ours steps/s':>13} {'ms/step':>9} {'numpy-grid':>11} "
              f"{'ratio':>7} {'torch-grid':>11} {'ratio':>7} {'grid loss err (np / torch)':>28}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed)
    times = []
    for N in args.N:
        p = csm.get_problem("relu", N=N)
        X = p.sample(rng, args.batch)
        gamma = args.step_size

        def ours():
            L, G = p.loss_and_gradient(X)
            return X - gamma * G

        ours()
        t_ours = _best_time(ours, args.repeats)
        times.append(t_ours)
        thr_ours = args.batch / t_ours

        Bb = min(args.batch, args.baseline_batch)
        Xb = X[:Bb]
        K = args.grid
        hgrid = (p.beta - p.alpha) / K
        xg = p.alpha + (np.arange(K) + 0.5) * hgrid
        fx = p.target_function(xg)
        chunk = args.chunk or max(1, int(2e7 // (N * K)))
        L_exact = p.loss(Xb)
        Lnp, _ = grid_numpy_step(Xb, xg, fx, hgrid, N, gamma, chunk)
        t_np = _best_time(lambda: grid_numpy_step(Xb, xg, fx, hgrid, N, gamma, chunk),
                          args.repeats)
        thr_np = Bb / t_np
        err_np = float(np.median(np.abs(Lnp - L_exact) / L_exact))
        if torch is not None:
            tstep = make_torch_step(torch, xg, fx, hgrid, N, gamma, chunk)
            Lt, _ = tstep(Xb)
            t_t = _best_time(lambda: tstep(Xb), args.repeats)
            thr_t = Bb / t_t
            err_t = float(np.median(np.abs(Lt - L_exact) / L_exact))
            tcol = f"{thr_t:11.3g} {thr_ours / thr_t:6.1f}x"
            ecol = f"{err_np:.1e} / {err_t:.1e}"
        else:
            tcol = f"{'skipped':>11} {'-':>7}"
            ecol = f"{err_np:.1e} / -"
        print(f"{N:4d} {thr_ours:13.3g} {1e3 * t_ours:9.2f} {thr_np:11.3g} "
              f"{thr_ours / thr_np:6.1f}x {tcol} {ecol:>28}")

    if len(args.N) >= 2:
        lN = np.log(np.asarray(args.N, float))
        slope = np.polyfit(lN, np.log(times), 1)[0]
        nlogn = np.asarray(args.N) * np.log2(np.maximum(2, np.asarray(args.N)))
        print(f"\nours: time per step vs N -- fitted exponent {slope:.2f} "
              f"(N log N over this range would give "
              f"{np.polyfit(lN, np.log(nlogn), 1)[0]:.2f})")
        for N, t, nl in zip(args.N, times, nlogn):
            print(f"  N={N:4d}: {1e3 * t:8.2f} ms/step, {1e9 * t / (args.batch * nl):7.2f} "
                  f"ns per network per N log2 N")
    print("\n'grid loss err' = median |L_grid - L_exact| / L_exact at the sampled networks "
          "(ours is exact to rounding).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

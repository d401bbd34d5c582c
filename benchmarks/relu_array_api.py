"""Benchmark: the ReLU engine on torch tensors (array-API path) vs its NumPy path (issue 16).

``ReluProblem.loss_and_gradient`` and ``hvp`` compute a torch tensor in torch, on the tensor's
device (plugins/csm_relu/_engine.py, :class:`ArrayApiEngine`; the algorithm of
docs/theory.md §2).  This script times, interleaved (benchmarks/_harness.py), per (N, batch):

* ``numpy``  -- the NumPy reference path, ``Engine(..., fast=False).loss_and_gradient(X)``;
* ``kernel`` -- the default path of a NumPy input (the compiled numba kernel when installed;
  omitted without numba);
* ``torch``  -- the public ``ReluProblem.loss_and_gradient(Xt)`` on a tensor on ``--device``
  (input validation included: one host synchronisation for the finiteness check);
* ``torch-engine`` -- ``ArrayApiEngine.loss_and_gradient`` without the validation;

and, with ``--hvp``, the Hessian-vector products (``numpy`` vs ``torch``).  On CUDA every
torch call ends with ``torch.cuda.synchronize()`` so that a call's time is its whole work.
Each row also prints the largest row-wise relative difference of the torch results from the
NumPy path (float64: rounding, ~1e-16; float32: ~1e-6).

Run::

    python benchmarks/relu_array_api.py                          # CPU, 1 torch thread
    python benchmarks/relu_array_api.py --N 4 64 --batch 100 100000 --rounds 7
    python benchmarks/relu_array_api.py --device cuda --dtype float32 float64 --hvp

Needs torch and ``array-api-compat`` (``pip install -e '.[array-api,bench]'``).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import csm  # noqa: E402
from _harness import Record, compare, fmt_s  # noqa: E402


def _rowrel(a: np.ndarray, ref: np.ndarray) -> float:
    a, ref = np.atleast_2d(a.T).T, np.atleast_2d(ref.T).T
    den = np.abs(ref).max(axis=1)
    return float(np.max(np.abs(a - ref).max(axis=1) / np.where(den > 0, den, 1.0)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 100, 10_000])
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    ap.add_argument("--dtype", nargs="+", default=["float64"], choices=["float64", "float32"],
                    help="torch dtype(s); the NumPy path is float64 always")
    ap.add_argument("--target", type=float, nargs="+", default=[0.0, 1.0],
                    help="polynomial coefficients of f, lowest degree first")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the NumPy path runs on one thread)")
    ap.add_argument("--hvp", action="store_true", help="also time Hessian-vector products")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (>= 5)")
    ap.add_argument("--round-s", type=float, default=0.05, help="seconds per round and contender")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="record path (default benchmarks/results/)")
    args = ap.parse_args(argv)

    try:
        import torch
        import array_api_compat  # noqa: F401
    except ImportError as exc:
        sys.exit(f"needs torch and array-api-compat ({exc}): pip install -e '.[array-api,bench]'")
    from csm_relu import ReluProblem
    from csm_relu._engine import ArrayApiEngine, Engine, numba_kernel

    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"--device {args.device}: torch sees no CUDA device "
                     f"(torch {torch.__version__}, cuda build: {torch.version.cuda})")
        sync = torch.cuda.synchronize
        gpu = torch.cuda.get_device_name(dev)
    else:
        def sync() -> None:
            return None
        gpu = None
    if args.threads:
        torch.set_num_threads(args.threads)

    rec = Record("relu_array_api" + ("" if dev.type == "cpu" else f"_{dev.type}"), args)
    rec.note(torch=torch.__version__, device=str(dev), gpu=gpu,
             torch_threads=torch.get_num_threads(), numba=numba_kernel() is not None)
    print(f"csm {csm.__version__}, numpy {np.__version__}, torch {torch.__version__} on {dev}"
          + (f" ({gpu})" if gpu else f", {torch.get_num_threads()} torch thread(s)")
          + f"; numba kernel: {'yes' if numba_kernel() is not None else 'no'}")
    print(f"target {tuple(args.target)}; {args.rounds} interleaved rounds, min [median]; "
          f"load average {os.getloadavg()[0]:.2f}")
    hdr = (f"{'what':>4} {'N':>4} {'B':>7} {'dtype':>7} | {'numpy':>9} {'kernel':>9} "
           f"{'torch':>9} {'t-engine':>9} | {'numpy/torch':>15} {'kernel/torch':>12} | "
           f"{'max rel diff':>12}")
    print(hdr)
    print("-" * len(hdr))
    rng = np.random.default_rng(args.seed)
    for N in args.N:
        p = ReluProblem(N, (0.0, 1.0), tuple(args.target))
        ref = Engine(N, 0.0, 1.0, np.array(p.target), fast=False)
        xpe = ArrayApiEngine(ref)
        for B in args.batch:
            X = p.sample(rng, B)
            Vd = rng.standard_normal(X.shape)
            L0, G0 = ref.loss_and_gradient(X)
            H0 = ref.hvp(X, Vd) if args.hvp else None
            for dt in args.dtype:
                tdt = torch.float64 if dt == "float64" else torch.float32
                Xt = torch.as_tensor(X, dtype=tdt, device=dev)
                Vt = torch.as_tensor(Vd, dtype=tdt, device=dev)
                xp = array_api_compat.array_namespace(Xt)

                def t_api():
                    out = p.loss_and_gradient(Xt)
                    sync()
                    return out

                def t_eng():
                    out = xpe.loss_and_gradient(xp, Xt)
                    sync()
                    return out

                fns = {"numpy": lambda: ref.loss_and_gradient(X)}
                if numba_kernel() is not None:
                    fns["kernel"] = lambda: p.loss_and_gradient(X)
                fns["torch"] = t_api
                fns["torch-engine"] = t_eng
                Lt, Gt = t_api()
                diff = max(_rowrel(Lt.cpu().double().numpy()[:, None], L0[:, None]),
                           _rowrel(Gt.cpu().double().numpy(), G0))
                res = compare(fns, rounds=args.rounds, round_s=args.round_s)
                k = res["kernel"].min if "kernel" in fns else float("nan")
                kr = res.ratio("kernel", "torch") if "kernel" in fns else float("nan")
                print(f"{'lg':>4} {N:4d} {B:7d} {dt:>7} | {fmt_s(res['numpy'].min):>9} "
                      f"{fmt_s(k):>9} {fmt_s(res['torch'].min):>9} "
                      f"{fmt_s(res['torch-engine'].min):>9} | "
                      f"{res.ratio('numpy', 'torch'):6.2f} "
                      f"[{res.ratio('numpy', 'torch', 'median'):6.2f}] {kr:12.2f} | "
                      f"{diff:12.2e}", flush=True)
                rec.add(what="loss_and_gradient", N=N, B=B, dtype=dt, max_rel_diff=diff,
                        numpy_over_torch=res.ratio("numpy", "torch"), **res.as_dict())
                if not args.hvp:
                    continue

                def h_api():
                    out = p.hvp(Xt, Vt)
                    sync()
                    return out

                res = compare({"numpy": lambda: ref.hvp(X, Vd), "torch": h_api},
                              rounds=args.rounds, round_s=args.round_s)
                diff = _rowrel(h_api().cpu().double().numpy(), H0)
                print(f"{'hvp':>4} {N:4d} {B:7d} {dt:>7} | {fmt_s(res['numpy'].min):>9} "
                      f"{'':>9} {fmt_s(res['torch'].min):>9} {'':>9} | "
                      f"{res.ratio('numpy', 'torch'):6.2f} "
                      f"[{res.ratio('numpy', 'torch', 'median'):6.2f}] {'':>12} | "
                      f"{diff:12.2e}", flush=True)
                rec.add(what="hvp", N=N, B=B, dtype=dt, max_rel_diff=diff,
                        numpy_over_torch=res.ratio("numpy", "torch"), **res.as_dict())
    print("columns: seconds per call on the whole batch (min over the rounds); ratios > 1: "
          "torch faster; max rel diff: torch vs the NumPy path, row-wise relative")
    rec.write(args.json)


if __name__ == "__main__":
    main()

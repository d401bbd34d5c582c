"""Benchmark: the unstable spectrum of a gradient-descent map, matrix-free, vs plain ``eigsh``.

csm: :func:`csm.manifold.frames.unstable_eigenpairs` on
``csm.GradientDescentMap(RotatedQuartic(d, 3, coupling=0.5), step)`` at the saddle 0 -- what the
matrix-free set-up of ``center_stable_manifold`` calls (Lanczos on Jacobian-vector products of
the map; it must find every eigenvalue of modulus > 1 without knowing how many there are).

Baselines: what a user who knows the answer's size would write -- ``scipy.sparse.linalg.eigsh``
on a ``LinearOperator`` of Hessian-vector products, ``which="SA"`` (the unstable directions
of ``x - step grad L`` are the negative Hessian eigenvalues), the same start vector:

* ``eigsh k+1``: ``k = dim_u + 1`` (one more than the unstable ones, to see the gap),
  ``tol=--tol`` (default 1e-8): **the baseline of the ratio**;
* ``eigsh k``  : ``k = dim_u``, ``tol=1e-12`` (the tolerance csm's Lanczos uses; only the
  well-separated negative eigenvalues, so it cannot tell where the unstable part ends).

The ``(dim_u + 1)``-th smallest Hessian eigenvalue lies in a cluster of ``d - dim_u``
eigenvalues in ``[0.5, 2]``: Lanczos needs many more iterations for it than for the
separated negative ones, the more so the smaller ``tol``.

Every contender's first call runs in a child process with a time limit (``--timeout``); when
all finish and their sum times ``--rounds`` fits ``--budget``, they are timed again in
interleaved rounds (min and median, ``benchmarks/_harness.py``), else the single first call is
reported (flagged "1 run").  Checks: the unstable eigenvalues of the map agree, and the
residuals ``max_i |H v_i - lambda_i v_i|`` are printed.  JSON record
``benchmarks/results/spectrum.json``.

Run::

    python benchmarks/spectrum.py                   # d = 1e4, 1e5, 45 s per first call
    python benchmarks/spectrum.py --timeout 150     # the figures of benchmarks/README.md
    python benchmarks/spectrum.py --dims 10000 --rounds 7 --tol 1e-10
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import csm  # noqa: E402
from _harness import Record, compare, fmt_s  # noqa: E402
from csm.manifold.frames import unstable_eigenpairs  # noqa: E402
from csm.spectral import DEFAULT_UNIT_TOL  # noqa: E402
from csm.testing import RotatedQuartic  # noqa: E402


def baseline_eigsh(pb, x, k: int, tol: float):
    from scipy.sparse.linalg import LinearOperator, eigsh

    d = x.shape[0]

    def mv(v):
        v = np.asarray(v, dtype=float)
        if v.ndim == 1:
            return pb.hvp(x, v)
        return pb.hvp(x, v.T).T

    op = LinearOperator((d, d), matvec=mv, matmat=mv, dtype=float)
    v0 = np.ones(d) / np.sqrt(d)
    return eigsh(op, k=k, which="SA", tol=tol, v0=v0)


def _setup(d: int, dim_u: int, step: float):
    pb = RotatedQuartic(d, dim_u, coupling=0.5, seed=0)
    return pb, csm.GradientDescentMap(pb, step), np.zeros(d)


def _contenders(args, d: int):
    pb, g, x = _setup(d, args.dim_u, args.step)
    return pb, g, x, {
        "csm": lambda: unstable_eigenpairs(g, x, DEFAULT_UNIT_TOL),
        "eigsh_k+1": lambda: baseline_eigsh(pb, x, args.dim_u + 1, args.tol),
        "eigsh_k": lambda: baseline_eigsh(pb, x, args.dim_u, 1e-12),
    }


def _checks(args, pb, x, name, out) -> dict:
    """Unstable map eigenvalues and the largest residual |H v - lambda v|."""
    if name == "csm":
        lam_u, U = out
        mu = (1.0 - np.real(lam_u)) / args.step
        V = U
    else:
        mu, V = out
    HV = pb.hvp(x, V.T).T
    res = float(np.max(np.linalg.norm(HV - V * mu, axis=0)))
    lam = np.sort(1.0 - args.step * mu[mu < 0])
    return {"residual": res, "unstable_map_eigenvalues": lam.tolist(),
            "hessian_eigenvalues": np.sort(mu).tolist()}


def _child(args) -> int:
    pb, g, x, fns = _contenders(args, args._d)
    if args._child == "rounds":
        res = compare(fns, rounds=args.rounds, number={k: 1 for k in fns}, warmup=False)
        print(json.dumps(res.as_dict()))
        return 0
    name = args._child
    t0 = time.perf_counter()
    out = fns[name]()
    t = time.perf_counter() - t0
    print(json.dumps({"seconds": t, **_checks(args, pb, x, name, out)}))
    return 0


def _run(args, kind: str, d: int, timeout: float):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", kind, "--_d", str(d),
           "--dim-u", str(args.dim_u), "--step", str(args.step), "--tol", str(args.tol),
           "--rounds", str(args.rounds)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"> {timeout:g} s (time limit)"
    if p.returncode != 0:
        return None, "error: " + p.stderr[-300:]
    return json.loads(p.stdout.strip().splitlines()[-1]), ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim-u", type=int, default=3)
    ap.add_argument("--step", type=float, default=0.5)
    ap.add_argument("--tol", type=float, default=1e-8, help="eigsh tol of the k+1 baseline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=45.0,
                    help="seconds allowed for one first call of one contender")
    ap.add_argument("--budget", type=float, default=90.0,
                    help="seconds allowed for the interleaved rounds of one dimension")
    ap.add_argument("--blas-threads", default="1",
                    help="BLAS threads per process (set before NumPy loads; env vars win)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_d", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return _child(args)

    print(f"csm {csm.__version__}, numpy {np.__version__}; unstable spectrum of "
          f"x - {args.step} grad L, L = RotatedQuartic(d, {args.dim_u}, coupling=0.5); "
          f"eigsh k+1: which='SA', k={args.dim_u + 1}, tol={args.tol:g}; eigsh k: k="
          f"{args.dim_u}, tol=1e-12\n")
    rec = Record("spectrum", args)
    names = ["csm", "eigsh_k+1", "eigsh_k"]
    hdr = (f"{'d':>7} | {'csm':>9} | {'eigsh k+1':>9} {'csm/it':>7} | {'eigsh k':>9} "
           f"{'csm/it':>7} | {'res csm':>8} {'res k+1':>8} {'res k':>8} | "
           f"{'max|dlam|':>9} | note")
    print(hdr)
    print("-" * len(hdr))
    for d in args.dims:
        first, why = {}, {}
        for n in names:
            first[n], why[n] = _run(args, n, d, args.timeout)
        t1 = {n: (first[n]["seconds"] if first[n] else float("nan")) for n in names}
        row = {"d": d, "first_call": first, "not_finished": {n: w for n, w in why.items() if w}}
        ok = all(first[n] for n in names)
        stat = dict(t1)
        med = dict(t1)
        note = "1 run"
        if ok and sum(t1.values()) * args.rounds <= args.budget:
            rounds, w = _run(args, "rounds", d, args.budget * 3)
            if rounds:
                stat = {n: min(rounds[n]["rounds_s"]) for n in names}
                med = {n: rounds[n]["median_s"] for n in names}
                note = f"{args.rounds} rounds"
                row["rounds"] = rounds
        row.update({f"{n}_min_s": stat[n] for n in names})
        row.update({f"{n}_median_s": med[n] for n in names})
        lam_c = np.array(first["csm"]["unstable_map_eigenvalues"]) if first["csm"] else None
        dl = float("nan")
        if lam_c is not None and first["eigsh_k"]:
            lam_b = np.array(first["eigsh_k"]["unstable_map_eigenvalues"])
            if lam_b.shape == lam_c.shape:
                dl = float(np.max(np.abs(lam_b - lam_c)))
        row["max_abs_dlambda_csm_vs_eigsh"] = dl
        r1 = stat["csm"] / stat["eigsh_k+1"]
        r2 = stat["csm"] / stat["eigsh_k"]
        row["ratio_csm_over_eigsh_k+1"] = r1
        row["ratio_csm_over_eigsh_k"] = r2

        def cell(n):
            return fmt_s(stat[n]) if first[n] else why[n].split(" (")[0]

        def res(n):
            return f"{first[n]['residual']:8.1e}" if first[n] else f"{'-':>8}"

        def ratio(r):  # two significant digits; a contender that did not finish: "<" bound
            return f"{r:6.2g}x" if np.isfinite(r) else f"{'-':>6} "

        if not first["eigsh_k+1"] and first["csm"]:
            r1b = stat["csm"] / args.timeout  # csm / (a baseline slower than the time limit)
            row["ratio_csm_over_eigsh_k+1_upper_bound"] = r1b
            r1s = f"<{r1b:5.2g}x"
        else:
            r1s = ratio(r1)
        print(f"{d:7d} | {cell('csm'):>9} | {cell('eigsh_k+1'):>9} {r1s:>7} | "
              f"{cell('eigsh_k'):>9} {ratio(r2)} | {res('csm')} {res('eigsh_k+1')} "
              f"{res('eigsh_k')} | {dl:9.1e} | {note}", flush=True)
        rec.add(**row)
    print("\ncsm/it = csm time / that baseline's time (mins; target of issue 16: <= 2 against "
          "plain eigsh on HVPs); res = max_i |H v_i - lambda_i v_i| (unit vectors); "
          "max|dlam| = csm's unstable eigenvalues vs eigsh k")
    rec.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: matrix-free certification of a limit at large d (issue 11).

``csm.identify.certify_limits`` at the strict saddle 0 of ``csm.testing.RotatedQuartic(d, 3,
coupling=0.5)``: Lanczos on Hessian-vector products for the smallest eigenvalues.  Printed:
wall time (min and median of 5 repetitions), peak traced memory, the certified kind and the
relative error of the least eigenvalue against the exact ``min(a)`` (the Hessian at 0 is
``R diag(a) R^T``).  Baseline: ``scipy.sparse.linalg.eigsh`` on the same HVP operator asking for
the one eigenvalue needed (``which="SA"``, ``k=1``) -- what a user would write to get the
least eigenvalue alone (no scale, no probe, no kind).

Run:  python benchmarks/certify.py [--dims 10000 100000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from csm.identify import certify_limits
from csm.testing import RotatedQuartic


def baseline(pb: RotatedQuartic, x: np.ndarray) -> float:
    d = x.shape[0]
    op = LinearOperator((d, d), matvec=lambda v: pb.hvp(x[None], v.reshape(1, -1))[0], dtype=float)
    return float(eigsh(op, k=1, which="SA", tol=1e-10, v0=np.ones(d) / np.sqrt(d),
                       return_eigenvectors=False)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'d':>7} {'csm min/med s':>15} {'eigsh k=1 min/med s':>20} {'ratio(med)':>10} "
          f"{'peak MiB':>9} {'kind':>14} {'rel. error':>10}")
    for d in args.dims:
        pb = RotatedQuartic(d, 3, coupling=0.5, seed=0)
        x = np.zeros((1, d))
        t_csm, t_base = [], []
        for _ in range(args.repeats):  # interleaved
            t = time.perf_counter()
            cert = certify_limits(pb, x)
            t_csm.append(time.perf_counter() - t)
            t = time.perf_counter()
            lam = baseline(pb, x[0])
            t_base.append(time.perf_counter() - t)
        tracemalloc.start()
        certify_limits(pb, x)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        exact = float(pb.a.min())
        err = abs(cert.least_eigenvalue[0] - exact) / abs(exact)
        assert abs(lam - exact) / abs(exact) < 1e-6
        print(f"{d:>7} {min(t_csm):7.2f}/{statistics.median(t_csm):6.2f} "
              f"{min(t_base):10.2f}/{statistics.median(t_base):8.2f} "
              f"{statistics.median(t_csm) / statistics.median(t_base):10.2f} {peak:9.1f} "
              f"{cert.kind[0]:>14} {err:10.1e}")


if __name__ == "__main__":
    main()

"""Stable sets end to end: ReLU runs per second, 1 and 2 workers, parallel efficiency (issue 16).

What a user runs: ``csm.estimate_stable_set(csm.get_problem("relu", N=4), 0.05, n=10_000,
max_steps=3_000)`` -- sampling, gradient descent with per-run stopping, naming every limit
(``classify``, listed points, and with ``certify=True``, the default, the Hessian spectrum
of every limit the gradient rule stopped) and the summary -- timed

* in this process (``executor=None``), and on :func:`csm.parallel.process_pool` pools of 1 and
  2 workers (the pool of ``csm stable-set --workers``; its start-up is timed separately as
  set-up and the end-to-end figure with a fresh pool is ``setup + run``);
* with the default chunk scheduling and, as the reference, one chunk per task (the scheduling
  before continuous batching across chunks: ``TASK_RUNS = 1``);
* with ``certify`` on (default) and off.

Contenders run interleaved (A, B, C, A, B, C, ...; ``--rounds`` >= 5), min and median per
contender.  Wall time on a shared machine depends on the load, so every round also records the
**CPU time** of the parent and of the pool's workers (``/proc/<pid>/stat``): runs per
CPU-second is load-independent, and ``runs per CPU-second x cores`` is the capacity of the
machine.  The load average is recorded before and after every round.

Parallel efficiency = (runs/s with 2 workers) / (runs/s with 1 worker), both on warm pools,
from the wall times (pessimistic on a shared machine) and, load-independent, from the CPU
times: (CPU time of the 1-worker run) / (CPU time of the busiest of the 2 workers + the
parent's), i.e. the speed-up the run would have on two dedicated cores (it counts the
imbalance between workers and the parent's serial work, not memory-bandwidth contention).

Usage::

    python benchmarks/stable_sets.py                 # n = 10^4, 5 rounds
    python benchmarks/stable_sets.py --n 2000 --rounds 5 --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Record, fmt_s, timed  # noqa: E402

import csm  # noqa: E402
import csm.stable_sets.chunks as est_mod  # noqa: E402
from csm.parallel import process_pool  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return float("nan")


def pool_pids(pool: Any) -> list[int]:
    """The worker pids of a ProcessPoolExecutor (benchmark-only peek at a private field)."""
    return sorted(getattr(pool, "_processes", {}) or {})


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="runs per estimate")
    ap.add_argument("--N", type=int, default=4, help="neurons")
    ap.add_argument("--step", type=float, default=0.05)
    ap.add_argument("--max-steps", type=int, default=3_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true",
                    help="fewer contenders: certify on only, no one-chunk-per-task reference")
    args = ap.parse_args()
    if args.rounds < 5:
        raise SystemExit("at least 5 interleaved rounds")

    problem = csm.get_problem("relu", N=args.N)
    rec = Record("stable_sets", args)
    kw = dict(n=args.n, max_steps=args.max_steps)
    print(f"estimate_stable_set(relu N={args.N}, step {args.step}, n={args.n}, "
          f"max_steps={args.max_steps}); load average {os.getloadavg()}")

    # warm-up here (imports, numba cache load) so that no contender pays it
    csm.estimate_stable_set(problem, args.step, n=200, max_steps=args.max_steps)

    pools = {}
    for w in (1, 2):
        pool, t = timed(lambda w=w: process_pool(w))
        # first task: unpickling the spec imports the plugin and loads the compiled kernel
        _, t_first = timed(lambda pool=pool: csm.estimate_stable_set(
            problem, args.step, n=200 * w, chunk_size=100, max_steps=args.max_steps,
            executor=pool))
        pools[w] = pool
        rec.add(kind="setup", workers=w, pool_start_s=t, first_small_estimate_s=t_first)
        print(f"process_pool({w}): start {fmt_s(t)}, then a first 200x{w}-run estimate "
              f"{fmt_s(t_first)} (worker imports, kernel load)")

    certs = (True,) if args.quick else (True, False)
    contenders: dict[str, tuple[Callable[[], Any], Any]] = {}
    for cert in certs:
        c = "cert" if cert else "nocert"
        contenders[f"serial/{c}"] = (lambda cert=cert: csm.estimate_stable_set(
            problem, args.step, certify=cert, **kw), None)
        if not args.quick:
            contenders[f"serial-1chunk-per-task/{c}"] = (lambda cert=cert: one_chunk_per_task(
                lambda: csm.estimate_stable_set(problem, args.step, certify=cert, **kw)), None)
        for w in (1, 2):
            contenders[f"pool{w}/{c}"] = (lambda cert=cert, w=w: csm.estimate_stable_set(
                problem, args.step, certify=cert, executor=pools[w], **kw), pools[w])

    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    # CPU-bound wall estimate: the busiest worker's CPU + the parent's (what the run takes on
    # dedicated cores, whatever the load); equals the CPU time without workers
    crit: dict[str, list[float]] = {k: [] for k in contenders}
    loads: dict[str, list[float]] = {k: [] for k in contenders}
    refs: dict[str, Any] = {}
    for r in range(args.rounds):
        for name, (fn, pool) in contenders.items():
            pids = pool_pids(pool) if pool is not None else []
            w0 = [proc_cpu(p) for p in pids]
            p0 = time.process_time()
            l0 = loadavg()
            t0 = time.perf_counter()
            res = fn()
            t = time.perf_counter() - t0
            pc = time.process_time() - p0
            wc = [proc_cpu(p) - c for p, c in zip(pids, w0)]
            c = pc + sum(wc)
            wall[name].append(t)
            cpu[name].append(c)
            crit[name].append(pc + max(wc, default=0.0))
            loads[name].append(max(l0, loadavg()))
            same = check_same(refs.setdefault(name.split("/")[1], res), res)
            print(f"  round {r} {name:32s} {fmt_s(t):>9s} wall {args.n / t:7.0f} runs/s | "
                  f"cpu {fmt_s(c):>9s} {args.n / c:7.0f} runs/cpu-s | load {loads[name][-1]:.2f}"
                  f"{'' if same else '  RESULTS DIFFER'}")
    for pool in pools.values():
        pool.shutdown()

    print(f"\n{'contender':32s} {'runs/s min-time':>16s} {'runs/s median':>14s} "
          f"{'runs/cpu-s':>11s} {'x2 cores':>9s} {'load':>5s}")
    summary = {}
    for name in contenders:
        tmin, tmed = min(wall[name]), statistics.median(wall[name])
        cmin = min(cpu[name])
        i = wall[name].index(tmin)
        row = dict(kind="estimate", contender=name, n=args.n, wall_min_s=tmin, wall_median_s=tmed,
                   wall_rounds_s=wall[name], cpu_min_s=cmin, cpu_rounds_s=cpu[name],
                   critical_cpu_rounds_s=crit[name], critical_cpu_min_s=min(crit[name]),
                   runs_per_s=args.n / tmin, runs_per_s_median=args.n / tmed,
                   runs_per_cpu_s=args.n / cmin, capacity_2_cores=2 * args.n / cmin,
                   loadavg_rounds=loads[name], loadavg_at_min=loads[name][i])
        summary[name] = row
        rec.add(**row)
        print(f"{name:32s} {row['runs_per_s']:16.0f} {row['runs_per_s_median']:14.0f} "
              f"{row['runs_per_cpu_s']:11.0f} {row['capacity_2_cores']:9.0f} "
              f"{row['loadavg_at_min']:5.2f}")
    print()
    for cert in certs:
        c = "cert" if cert else "nocert"
        p1, p2 = summary[f"pool1/{c}"], summary[f"pool2/{c}"]
        eff = p2["runs_per_s"] / p1["runs_per_s"]
        eff_med = p2["runs_per_s_median"] / p1["runs_per_s_median"]
        cpu_ratio = p2["cpu_min_s"] / p1["cpu_min_s"]
        # load-independent estimate: 1-worker CPU time / (busiest worker + parent) with 2
        eff_cpu = p1["critical_cpu_min_s"] / p2["critical_cpu_min_s"]
        ser = summary[f"serial/{c}"]
        rec.add(kind="ratios", certify=cert, parallel_efficiency=eff,
                parallel_efficiency_cpu_bound=eff_cpu,
                parallel_efficiency_median=eff_med, cpu_2_over_1=cpu_ratio,
                pool1_over_serial=p1["runs_per_s"] / ser["runs_per_s"])
        print(f"certify={cert}: parallel efficiency (2 workers / 1 worker) {eff:.2f}x from the "
              f"mins, {eff_med:.2f}x from the medians; CPU per run 2 vs 1 worker "
              f"{cpu_ratio:.2f}x; pool(1) / serial {p1['runs_per_s'] / ser['runs_per_s']:.2f}x")
        print(f"certify={cert}: CPU-bound parallel efficiency (1-worker CPU / (busiest of 2 "
              f"workers + parent)) {eff_cpu:.2f}x; capacity on 2 cores from the CPU time of "
              f"pool(2): {p2['capacity_2_cores']:.0f} runs/s")
        if not args.quick:
            bal = task_balance(problem, args, cert)
            rec.add(kind="balance", certify=cert, **bal)
            print(f"certify={cert}: tasks run one by one here (CPU, min of {args.rounds}): "
                  f"1-worker plan {bal['one_worker_cpu_s']:.2f} s, 2-worker plan "
                  f"{', '.join(f'{x:.2f} s' for x in bal['task_cpu_min_s'])}; speed-up on 2 "
                  f"dedicated cores {bal['parallel_efficiency_balance']:.2f}x, capacity "
                  f"{bal['capacity_2_cores']:.0f} runs/s")
        old = summary.get(f"serial-1chunk-per-task/{c}")
        if old is not None:
            g = ser["runs_per_s"] / old["runs_per_s"]
            rec.add(kind="ratios", certify=cert, tasks_vs_one_chunk_per_task=g)
            print(f"certify={cert}: continuous batching across chunks vs one chunk per task "
                  f"{g:.2f}x (serial)")
    rec.write()


def task_balance(problem: Any, args: Any, cert: bool) -> dict[str, Any]:
    """CPU time of the tasks of the 1- and 2-worker plans, run one after the other here.

    The tasks are exactly those the pools get (:func:`task_groups`), each timed with
    ``time.process_time`` in ``--rounds`` interleaved rounds (min).  (1-worker CPU) / (largest
    2-worker task) is the speed-up of two dedicated cores over one: the imbalance between
    the workers and the extra task's tail count; other processes on the machine hardly do.
    """
    import numpy as np

    from csm.identify import listed_points

    d = problem.dim
    spec = est_mod.ChunkSpec(problem, args.step, None, args.max_steps, problem.default_tol, 10,
                             1e8, 1e-2, 0.1, cert, problem.global_sublevel,
                             listed_points(problem, d))
    full, rest = divmod(args.n, 500)  # the default chunk_size
    sizes = [500] * full + ([rest] if rest else [])
    seeds = np.random.SeedSequence(0).spawn(len(sizes))
    plans = {w: est_mod.task_groups(list(range(len(sizes))), sizes, w) for w in (1, 2)}
    tasks = sorted({tuple(g) for plan in plans.values() for g in plan})
    cpu: dict[tuple, list[float]] = {g: [] for g in tasks}
    for _ in range(args.rounds):
        for g in tasks:
            c0 = time.process_time()
            est_mod.run_chunks(spec, [seeds[i] for i in g], [sizes[i] for i in g])
            cpu[g].append(time.process_time() - c0)
    mins = {g: min(c) for g, c in cpu.items()}
    one = sum(mins[tuple(g)] for g in plans[1])
    two = [mins[tuple(g)] for g in plans[2]]
    return {"tasks_chunks_1_worker": [len(g) for g in plans[1]],
            "tasks_chunks_2_workers": [len(g) for g in plans[2]],
            "task_cpu_rounds_s": {str(list(g)): c for g, c in cpu.items()},
            "one_worker_cpu_s": one, "task_cpu_min_s": two,
            "parallel_efficiency_balance": one / max(two),
            "runs_per_cpu_s": args.n / one, "capacity_2_cores": args.n / max(two)}


def one_chunk_per_task(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the scheduling of one chunk per task (the reference)."""
    old = est_mod.TASK_RUNS
    est_mod.TASK_RUNS = 1
    try:
        return fn()
    finally:
        est_mod.TASK_RUNS = old


def check_same(ref: Any, res: Any) -> bool:
    """Results of every contender with the same ``certify`` must be identical (per-run arrays)."""
    import numpy as np

    for k, a in ref.arrays.items():
        b = res.arrays[k]
        ok = (np.array_equal(a, b, equal_nan=True) if a.dtype.kind == "f"
              else np.array_equal(a, b))
        if not ok:
            return False
    return True


if __name__ == "__main__":
    main()

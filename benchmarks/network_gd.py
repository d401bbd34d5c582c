"""Benchmark: batched gradient descent on the network loss of the ``network`` plugin (paper §3).

Issue 12 acceptance: against the baseline a user would write (PyTorch autograd, batched or
``torch.func.vmap``), same batch, data, initialisation and step, **>= 5x the network-steps/s for
shallow nets with d <= 100, not slower for deep nets**, and **HVP cost <= 4x a gradient**.

Contenders, each running ``--steps`` GD steps on the same ``B = --batch`` networks from the
same start (one thread each):

* **csm**: ``T -= step * problem.loss_and_gradient(T)[1]`` (float64; the compiled kernel of
  :mod:`csm_network.engine` when numba is installed, else the NumPy path);
* **csm-f32**: the same loop on float32 parameters (the plugin then computes in float32);
* **csm-numpy**: the same with the NumPy reference path forced (``engine._NK = None``), shown
  for information when numba is installed;
* **torch-f32 / torch-f64**: the best of two hand-written PyTorch programs, each in float32 and
  float64, each with its chunk size tuned (the batch run in chunks of ``B``, 256, 64 or 16
  networks, best chunk kept): (a) ``torch.func.vmap(torch.func.grad(loss))`` over the batch;
  (b) the batched network written with ``torch.bmm`` / ``matmul`` on ``(B, h, m)`` activations
  and one ``autograd.grad`` of the summed losses (the per-network gradients, since networks do
  not interact).  The fastest (form, chunk) of each dtype enters the timed rounds.

Timing (``benchmarks/_harness.py``): at least 5 interleaved rounds, min and median of the
seconds per GD run.  Ratios from the mins (median ratio alongside): **matched precision**,
torch-f32 / csm-f32 and torch-f64 / csm (the criterion: the smaller of the two), and the
cross-precision ratio (fastest torch, either dtype) / csm in float64.  Also measured: one ``hvp`` over one ``loss_and_gradient`` of csm on the batch
(interleaved), and the largest difference between csm's and torch-f64's final iterates
(agreement).  Writes ``benchmarks/results/network_gd.json`` and prints a markdown table.

Run::

    python benchmarks/network_gd.py                       # all configurations
    python benchmarks/network_gd.py --batch 2000 --steps 20 --repeats 7
    CSM_DISABLE_NUMBA=1 python benchmarks/network_gd.py   # the NumPy path as "csm"
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _harness import Record, compare  # noqa: E402

try:
    import csm_network
except ImportError:  # environment installed before the entry point existed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "plugins"))
    import csm_network
import csm  # noqa: E402
from csm_network import NetworkProblem, engine  # noqa: E402

if "network" not in csm.list_problems():  # entry point not installed yet: register by hand
    csm.plugin_manager().register(csm_network, name="network")

#: (title, widths, activation, data); "shallow" rows with d <= 100 carry the 5x criterion.
CONFIGS = [
    ("shallow 1-4-1 relu, grid m=64", (1, 4, 1), "relu", "grid:64"),
    ("shallow 1-16-1 relu, grid m=64", (1, 16, 1), "relu", "grid:64"),
    ("shallow 1-32-1 relu, grid m=64", (1, 32, 1), "relu", "grid:64"),
    ("shallow 2-16-1 relu, teacher m=128", (2, 16, 1), "relu", "teacher:128,0"),
    ("shallow 5-10-1 leaky, teacher m=128", (5, 10, 1), "leaky_relu:0.1", "teacher:128,0"),
    ("shallow 2-64-1 relu, teacher m=128", (2, 64, 1), "relu", "teacher:128,0"),
    ("deep 4-32-32-2 leaky, teacher m=128", (4, 32, 32, 2), "leaky_relu:0.1", "teacher:128,0"),
]
CHUNKS = (None, 256, 64, 16)  # None: the whole batch


def csm_run(p: NetworkProblem, T0: np.ndarray, step: float, steps: int):
    def run():
        T = T0.copy()
        for _ in range(steps):
            T -= step * p.loss_and_gradient(T)[1]
        return T
    return run


def csm_numpy_run(p: NetworkProblem, T0: np.ndarray, step: float, steps: int):
    inner = csm_run(p, T0, step, steps)

    def run():
        saved = engine._NK
        engine._NK = None
        try:
            return inner()
        finally:
            engine._NK = saved
    return run


def torch_runs(p: NetworkProblem, T0: np.ndarray, dtype, step: float, steps: int, chunk):
    """``{"vmap": run, "bmm": run}``: GD on the batch in chunks of ``chunk`` networks."""
    import torch
    from torch.func import grad, vmap

    act = p.activation
    am, ap = act.relu_like
    slope = am / ap
    X = torch.tensor(p.inputs, dtype=dtype)
    Y = torch.tensor(p.targets, dtype=dtype)
    XT = X.T.contiguous()
    YT = Y.T.contiguous()[None]
    m = X.shape[0]
    nl = len(p.widths) - 1
    lay = p._lay
    params0 = []
    for sw, sb, shp in lay.slices:
        params0.append(torch.tensor(T0[:, sw].reshape((-1,) + shp), dtype=dtype))
        params0.append(torch.tensor(T0[:, sb], dtype=dtype))
    B = T0.shape[0]
    c = B if chunk is None else chunk

    def sigma(z):
        out = torch.nn.functional.leaky_relu(z, slope) if slope else torch.relu(z)
        return out if ap == 1.0 else ap * out

    def loss1(params, X, Y):
        a = X
        for l in range(nl):
            z = a @ params[2 * l].T + params[2 * l + 1]
            a = z if l == nl - 1 else sigma(z)
        return ((a - Y) ** 2).sum(-1).mean()

    g = vmap(grad(loss1), in_dims=(0, None, None))

    def run_vmap():
        out = []
        with torch.no_grad():
            for s in range(0, B, c):
                ps = [q[s:s + c] for q in params0]
                for _ in range(steps):
                    gs = g(ps, X, Y)
                    ps = [q - step * gq for q, gq in zip(ps, gs)]
                out.append(ps)
        return out

    def run_bmm():
        out = []
        for s in range(0, B, c):
            ps = [q[s:s + c].clone().requires_grad_(True) for q in params0]
            for _ in range(steps):
                a = None
                for l in range(nl):
                    W, b = ps[2 * l], ps[2 * l + 1]
                    z = (torch.matmul(W, XT) if l == 0 else torch.bmm(W, a)) + b[:, :, None]
                    a = z if l == nl - 1 else sigma(z)
                e = a - YT
                tot = (e * e).sum() / m
                gs = torch.autograd.grad(tot, ps)
                with torch.no_grad():
                    ps = [(q - step * gq).requires_grad_(True) for q, gq in zip(ps, gs)]
            out.append([q.detach() for q in ps])
        return out

    return {"vmap": run_vmap, "bmm": run_bmm}


def torch_flat(p: NetworkProblem, out) -> np.ndarray:
    """Parameter vectors ``(B, d)`` from the chunks of a torch run."""
    rows = []
    for ps in out:
        n = ps[0].shape[0]
        T = np.empty((n, p.dim))
        for (sw, sb, _), W, b in zip(p._lay.slices, ps[0::2], ps[1::2]):
            T[:, sw] = W.double().numpy().reshape(n, -1)
            T[:, sb] = b.double().numpy()
        rows.append(T)
    return np.concatenate(rows)


def tune_torch(p, T0, dtype, step, steps):
    """The fastest (form, chunk) for ``dtype``: each candidate timed twice (min)."""
    best = None
    for chunk in CHUNKS:
        if chunk is not None and chunk >= T0.shape[0]:
            continue
        for form, fn in torch_runs(p, T0, dtype, step, steps, chunk).items():
            fn()  # warm-up
            t = min(_once(fn) for _ in range(2))
            if best is None or t < best[0]:
                best = (t, form, chunk, fn)
    return best


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds (>= 5)")
    ap.add_argument("--step", type=float, default=0.01)
    ap.add_argument("--only", type=str, default=None, help="configurations whose title contains this")
    ap.add_argument("--no-numpy", action="store_true", help="skip the csm-numpy contender")
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    try:
        import torch

        torch.set_num_threads(1)
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not importable: the PyTorch baselines are skipped (pip install torch)")
    kernel = "numba" if engine.numba_kernel() is not None else "numpy"
    print(f"batch {args.batch} networks, {args.steps} GD steps per run, {args.repeats} interleaved "
          f"rounds, 1 thread; csm path: {kernel}")
    rec = Record("network_gd", args)
    rec.note(csm_path=kernel, threads=1,
             torch_forms="vmap(grad) and bmm+autograd, float32 and float64, chunk tuned over "
                         + ", ".join("B" if c is None else str(c) for c in CHUNKS))
    table = []
    for title, widths, act, data in CONFIGS:
        if args.only and args.only not in title:
            continue
        p = csm.get_problem("network", widths=widths, activation=act, data=data)
        T0 = p.sample(np.random.default_rng(0), args.batch)
        fns = {"csm": csm_run(p, T0, args.step, args.steps),
               "csm-f32": csm_run(p, T0.astype(np.float32), args.step, args.steps)}
        if kernel == "numba" and not args.no_numpy:
            fns["csm-numpy"] = csm_numpy_run(p, T0, args.step, args.steps)
        tuned = {}
        if have_torch:
            for name, dt in (("torch-f32", torch.float32), ("torch-f64", torch.float64)):
                t, form, chunk, fn = tune_torch(p, T0, dt, args.step, args.steps)
                tuned[name] = {"form": form, "chunk": chunk or args.batch}
                fns[name] = fn
        res = compare(fns, rounds=args.repeats, round_s=0.2)
        # HVP vs gradient, csm, same batch
        V = np.random.default_rng(1).standard_normal(T0.shape)
        hg = compare({"gradient": lambda: p.loss_and_gradient(T0), "hvp": lambda: p.hvp(T0, V)},
                     rounds=max(args.repeats, 7), round_s=0.1)
        hvp_ratio = hg.ratio("hvp", "gradient")
        print(f"\n{title}: dim {p.dim}, m {p.m}")
        print(f"  {'':10s} {'min s':>9s} {'median s':>9s} {'net-steps/s':>12s}  {'vs csm (min, med)':>18s}")
        nsteps = args.batch * args.steps
        for n in fns:
            tm = res[n]
            extra = (f"   [{tuned[n]['form']}, chunk {tuned[n]['chunk']}]" if n in tuned else "")
            print(f"  {n:10s} {tm.min:9.4f} {tm.median:9.4f} {nsteps / tm.min:12.4g}  "
                  f"{res.ratio(n, 'csm'):8.2f} {res.ratio(n, 'csm', 'median'):8.2f}{extra}")
        row = {"title": title, "widths": widths, "activation": act, "data": data, "dim": p.dim,
               "m": p.m, "batch": args.batch, "steps": args.steps, "csm_path": kernel,
               "timings": res.as_dict(), "torch_tuned": tuned,
               "gradient_s": hg["gradient"].min, "hvp_s": hg["hvp"].min, "hvp_over_gradient": hvp_ratio}
        print(f"  HVP / gradient: {hvp_ratio:.2f}  (gradient {hg['gradient'].min * 1e3:.2f} ms, "
              f"HVP {hg['hvp'].min * 1e3:.2f} ms for {args.batch} networks)")
        if have_torch:
            best_t = min(("torch-f32", "torch-f64"), key=lambda n: res[n].min)
            ratio = res.ratio(best_t, "csm")
            ratio_med = res[min(("torch-f32", "torch-f64"), key=lambda n: res[n].median)].median \
                / res["csm"].median
            r32, r64 = res.ratio("torch-f32", "csm-f32"), res.ratio("torch-f64", "csm")
            r32m = res.ratio("torch-f32", "csm-f32", "median")
            r64m = res.ratio("torch-f64", "csm", "median")
            matched, matched_med = min(r32, r64), min(r32m, r64m)
            Tc = fns["csm"]()
            Tt = torch_flat(p, fns["torch-f64"]())
            dev = float(np.max(np.abs(Tc - Tt)))
            dev32 = float(np.max(np.abs(fns["csm-f32"]().astype(float)
                                        - torch_flat(p, fns["torch-f32"]()))))
            print(f"  matched precision: csm-f32 {r32:.2f}x torch-f32, csm {r64:.2f}x torch-f64 "
                  f"(medians {r32m:.2f}x, {r64m:.2f}x); cross: fastest torch {best_t}, csm (f64) "
                  f"{ratio:.2f}x (min), {ratio_med:.2f}x (median)")
            print(f"  agreement after {args.steps} steps: max |csm - torch-f64| {dev:.1e}, "
                  f"max |csm-f32 - torch-f32| {dev32:.1e}")
            shallow = len(widths) == 3
            need = 5.0 if (shallow and p.dim <= 100) else (1.0 if not shallow else None)
            row.update(fastest_torch=best_t, speedup_min=ratio, speedup_median=ratio_med,
                       speedup_f32_min=r32, speedup_f64_min=r64, speedup_f32_median=r32m,
                       speedup_f64_median=r64m, speedup_matched_min=matched,
                       speedup_matched_median=matched_med, max_dev_torch_f64=dev,
                       max_dev_f32_torch_f32=dev32, criterion=need,
                       speedup_ok=None if need is None else bool(matched >= need),
                       hvp_ok=bool(hvp_ratio <= 4.0))
            table.append((title, p.dim, p.m, nsteps / res["csm"].min,
                          nsteps / res["csm-f32"].min, nsteps / res["torch-f64"].min,
                          nsteps / res["torch-f32"].min, r64, r32, ratio, best_t,
                          tuned[best_t], need, hvp_ratio,
                          (nsteps / res["csm-numpy"].min) if "csm-numpy" in fns else None))
        rec.add(**row)
    rec.write()
    if table:
        print("\n| configuration | d | m | csm f64 / f32 net-steps/s | torch f64 / f32 "
              "net-steps/s | **× f64** | **× f32** | × cross (fastest torch) | needed | "
              "HVP / grad | csm NumPy path net-steps/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for (t, d, m, c64, c32, t64, t32, r64, r32, rx, bt, tu, need, hr, npth) in table:
            ok = "" if need is None else (" ✅" if min(r64, r32) >= need else " ❌")
            needs = "—" if need is None else f"≥ {need:g}×"
            print(f"| {t} | {d} | {m} | {c64:.3g} / {c32:.3g} | {t64:.3g} / {t32:.3g} | "
                  f"{r64:.1f}× | {r32:.1f}×{ok} | {rx:.1f}× ({bt}, {tu['form']}, {tu['chunk']}) | "
                  f"{needs} | {hr:.2f}{' ✅' if hr <= 4 else ' ❌'} | "
                  f"{'—' if npth is None else f'{npth:.3g}'} |")


if __name__ == "__main__":
    main()

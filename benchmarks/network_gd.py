"""Benchmark: batched gradient descent on the network loss of the ``network`` plugin (paper §3).

csm's kernels (:mod:`csm_network.engine`: one batched forward pass and backpropagation for
``B`` networks at once, float64) against the baselines a user would otherwise write, on the
same batch, data and step:

* **PyTorch** ``torch.func.vmap(torch.func.grad(loss))`` over the batch of networks, one
  thread, in float32 and float64 (skipped with a message when ``import torch`` fails);
* a **NumPy per-network loop** (forward and hand-written backward, one network at a time),
  timed on ``--loop-batch`` networks and scaled to the batch (throughput is linear in it).

Each configuration runs ``--repeats`` (>= 5) interleaved rounds (csm, torch32, torch64, loop,
csm, ...) of ``--steps`` GD steps; printed: min and median seconds per round of each, and the
ratios baseline / csm of the minima and of the medians (> 1: csm is faster).  Also printed:
the cost of one Hessian-vector product (R-operator) over the cost of one gradient (minima of
``3 * repeats`` interleaved calls each), and the
largest difference between csm's and torch's float64 iterates (agreement check).

BLAS and torch run on one thread (``OMP_NUM_THREADS=1`` etc. are set before numpy is imported
unless already set).  Run::

    python benchmarks/network_gd.py
    python benchmarks/network_gd.py --batch 2000 --steps 20 --repeats 7
    /tmp/venv-torch/bin/python benchmarks/network_gd.py   # a venv with torch (see README)
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

try:
    import csm_network
except ImportError:  # environment installed before the entry point existed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "plugins"))
    import csm_network
import csm  # noqa: E402
from csm_network import NetworkProblem  # noqa: E402

if "network" not in csm.list_problems():  # entry point not installed yet: register by hand
    csm.plugin_manager().register(csm_network, name="network")

CONFIGS = [
    ("shallow 1-16-1, grid m=64", (1, 16, 1), "relu", "grid:64"),
    ("shallow 2-64-1, teacher m=128", (2, 64, 1), "relu", "teacher:128,0"),
    ("deep 4-32-32-2 leaky, teacher m=128", (4, 32, 32, 2), "leaky_relu:0.1", "teacher:128,0"),
]


def csm_run(p: NetworkProblem, T0: np.ndarray, step: float, steps: int) -> np.ndarray:
    T = T0.copy()
    for _ in range(steps):
        T -= step * p.loss_and_gradient(T)[1]
    return T


def loop_run(p: NetworkProblem, T0: np.ndarray, step: float, steps: int, act: str) -> np.ndarray:
    """What one writes without batching: one network at a time, NumPy forward/backward."""
    slope = 0.0 if act == "relu" else float(act.split(":")[1])
    X, Y, m = p.inputs, p.targets, p.m
    out = np.empty_like(T0)
    for b in range(T0.shape[0]):
        layers = p.unpack(T0[b])
        for _ in range(steps):
            acts, zs = [X], []
            for l, (W, c) in enumerate(layers):
                z = acts[-1] @ W.T + c
                zs.append(z)
                acts.append(z if l == len(layers) - 1 else np.where(z > 0, z, slope * z))
            delta = 2.0 / m * (acts[-1] - Y)
            grads = []
            for l in range(len(layers) - 1, -1, -1):
                grads.append((delta.T @ acts[l], delta.sum(0)))
                if l:
                    delta = (delta @ layers[l][0]) * np.where(zs[l - 1] > 0, 1.0, slope)
            layers = [(W - step * gW, c - step * gc) for (W, c), (gW, gc) in zip(layers, grads[::-1])]
        out[b] = p.pack(layers)
    return out


def torch_setup(p: NetworkProblem, T0: np.ndarray, dtype, act: str):
    import torch
    from torch.func import grad, vmap

    slope = 0.0 if act == "relu" else float(act.split(":")[1])
    X = torch.tensor(p.inputs, dtype=dtype)
    Y = torch.tensor(p.targets, dtype=dtype)
    layers = [(torch.tensor(np.stack([p.unpack(t)[l][0] for t in T0]), dtype=dtype),
               torch.tensor(np.stack([p.unpack(t)[l][1] for t in T0]), dtype=dtype))
              for l in range(len(p.widths) - 1)]
    params0 = [x for wb in layers for x in wb]

    def loss(params, X, Y):
        a = X
        n = len(params) // 2
        for l in range(n):
            z = a @ params[2 * l].T + params[2 * l + 1]
            a = z if l == n - 1 else torch.nn.functional.leaky_relu(z, slope)
        return ((a - Y) ** 2).sum(-1).mean()

    g = vmap(grad(loss), in_dims=(0, None, None))

    def run(step: float, steps: int):
        params = list(params0)
        with torch.no_grad():
            for _ in range(steps):
                gs = g(params, X, Y)
                params = [q - step * gq for q, gq in zip(params, gs)]
        return params

    return run


def flat(p: NetworkProblem, params) -> np.ndarray:
    n = len(params) // 2
    B = params[0].shape[0]
    return np.stack([p.pack([(params[2 * l][b].double().numpy(), params[2 * l + 1][b].double().numpy())
                             for l in range(n)]) for b in range(B)])


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loop-batch", type=int, default=50)
    ap.add_argument("--step", type=float, default=0.01)
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    try:
        import torch

        torch.set_num_threads(1)
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not importable: the PyTorch baseline is skipped "
              "(pip install torch, or run with a venv that has it)")
    print(f"batch {args.batch} networks, {args.steps} GD steps per round, {args.repeats} "
          f"interleaved rounds, BLAS threads {os.environ.get('OMP_NUM_THREADS')}")
    for title, widths, act, data in CONFIGS:
        p = csm.get_problem("network", widths=widths, activation=act, data=data)
        T0 = p.sample(np.random.default_rng(0), args.batch)
        k = min(args.loop_batch, args.batch)
        runs = {"csm": lambda: csm_run(p, T0, args.step, args.steps),
                "numpy-loop": lambda: loop_run(p, T0[:k], args.step, args.steps, act)}
        scale = {"csm": 1.0, "numpy-loop": args.batch / k}
        if have_torch:
            for name, dt in (("torch-f32", torch.float32), ("torch-f64", torch.float64)):
                runs[name] = lambda f=torch_setup(p, T0, dt, act): f(args.step, args.steps)
                scale[name] = 1.0
        times = {n: [] for n in runs}
        outs = {}
        for _ in range(args.repeats):
            for n, f in runs.items():
                t, outs[n] = timed(f)
                times[n].append(t * scale[n])
        V = np.random.default_rng(1).standard_normal(T0.shape)
        tgs, ths = [], []
        for _ in range(3 * args.repeats):  # interleaved, cheap: more rounds
            tgs.append(timed(lambda: p.gradient(T0))[0])
            ths.append(timed(lambda: p.hvp(T0, V))[0])
        tg, th = min(tgs), min(ths)
        print(f"\n{title}: dim {p.dim}, m {p.m}")
        c_min, c_med = min(times["csm"]), statistics.median(times["csm"])
        print(f"  {'':12s} {'min s':>9s} {'median s':>9s}  {'ratio min':>9s} {'ratio med':>9s}")
        for n in runs:
            mn, md = min(times[n]), statistics.median(times[n])
            extra = f"   (timed on {k} networks, scaled)" if n == "numpy-loop" else ""
            print(f"  {n:12s} {mn:9.4f} {md:9.4f}  {mn / c_min:9.2f} {md / c_med:9.2f}{extra}")
        print(f"  HVP cost / gradient cost: {th / tg:.2f}  (gradient {tg * 1e3:.1f} ms, HVP "
              f"{th * 1e3:.1f} ms for {args.batch} networks)")
        err = float(np.abs(outs["numpy-loop"] - outs["csm"][:k]).max())
        line = f"  max |csm - numpy-loop| after {args.steps} steps: {err:.1e}"
        if have_torch:
            dev = float(np.abs(flat(p, outs["torch-f64"]) - outs["csm"]).max())
            line += f"; max |csm - torch-f64|: {dev:.1e}"
        print(line)


if __name__ == "__main__":
    main()

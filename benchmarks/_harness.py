"""The one timing helper every benchmark in this folder uses (issue 16).

Rules it enforces:

* **interleaved repetitions** -- the contenders run A, B, C, A, B, C, ... (at least 5 rounds),
  so that a slow phase of the machine (other processes, frequency changes) hits every
  contender alike; each contender's **min** and **median** over the rounds are reported, and
  ratios are formed from the mins (the median ratio is printed alongside);
* one round of a contender is ``number`` back-to-back calls, ``number`` calibrated once so that a
  round lasts about ``round_s`` (short rounds: the min then catches the quiet moments);
* **set-up is timed separately** (:func:`timed`) and end-to-end figures are
  ``setup + n * per_call``, never per-call alone;
* every benchmark writes a JSON record next to its printout:
  ``benchmarks/results/<name>.json`` (:class:`Record`), with the machine, the versions, the
  command line and every measured row.

Usage::

    from _harness import Record, compare, timed

    rec = Record("relu_gd", args)
    res = compare({"csm": f, "torch": g}, rounds=7)
    print(res["csm"].min, res["torch"].median, res.ratio("torch", "csm"))
    rec.add(N=4, B=100, **res.as_dict())
    rec.write()
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    """Seconds per call of one contender: every round's value, min and median."""

    rounds: list[float]
    number: int

    @property
    def min(self) -> float:
        return min(self.rounds)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    def as_dict(self) -> dict[str, Any]:
        return {"min_s": self.min, "median_s": self.median, "number": self.number,
                "rounds_s": self.rounds}


@dataclass
class Comparison:
    """Result of :func:`compare`: ``res[name]`` is a :class:`Timing`."""

    timings: dict[str, Timing] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def ratio(self, slow: str, fast: str, stat: str = "min") -> float:
        """``time(slow) / time(fast)`` from the mins (or ``stat="median"``)."""
        return getattr(self[slow], stat) / getattr(self[fast], stat)

    def as_dict(self) -> dict[str, Any]:
        return {k: v.as_dict() for k, v in self.timings.items()}


def _calibrate(fn: Callable[[], Any], round_s: float, max_number: int) -> int:
    t0 = time.perf_counter()
    fn()
    t = time.perf_counter() - t0
    if t >= round_s:
        return 1
    # a second, better estimate for fast functions (the first call may include warm-up)
    n = max(1, min(max_number, int(round_s / max(t, 1e-7) / 4)))
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t = (time.perf_counter() - t0) / n
    return max(1, min(max_number, int(round(round_s / max(t, 1e-9)))))


def compare(fns: dict[str, Callable[[], Any]], *, rounds: int = 7, round_s: float = 0.05,
            max_number: int = 1_000_000, warmup: bool = True,
            number: dict[str, int] | None = None) -> Comparison:
    """Time the callables interleaved: ``rounds`` rounds of A, B, ... (at least 5 rounds).

    Each callable is warmed up once (``warmup``; compilation, caches, lazy imports), its
    ``number`` of calls per round is calibrated to ``round_s`` (or given), and the seconds
    per call of every round are kept.
    """
    if rounds < 5:
        raise ValueError("at least 5 interleaved rounds")
    if warmup:
        for fn in fns.values():
            fn()
    num = {k: (number or {}).get(k) or _calibrate(fn, round_s, max_number)
           for k, fn in fns.items()}
    out = {k: [] for k in fns}
    for r in range(rounds):
        for k, fn in fns.items():
            n = num[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out[k].append((time.perf_counter() - t0) / n)
    return Comparison({k: Timing(out[k], num[k]) for k in fns})


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` for one call: set-up times, end-to-end runs."""
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """``(fn(), seconds, peak bytes)``: peak of Python + NumPy allocations (tracemalloc) during
    the call, above what was allocated before it.  Tracing slows allocations down: time a
    separate call without it for the time figure."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        res = fn()
        t = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return res, t, peak


def fmt_s(t: float) -> str:
    """Seconds with a unit (``12.3 us``, ``4.56 ms``, ``7.89 s``)."""
    if not math.isfinite(t):
        return str(t)
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if t >= f or unit == "ns":
            return f"{t / f:.3g} {unit}"
    return f"{t:g} s"


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parent,
                              timeout=5).stdout.strip() or None
    except Exception:
        return None


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "git_commit": _git_commit(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numpy", "scipy", "numba", "torch", "csm"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    return info


class Record:
    """JSON record of one benchmark run: ``benchmarks/results/<name>.json``."""

    def __init__(self, name: str, args: Any = None) -> None:
        self.name = name
        self.data: dict[str, Any] = {
            "benchmark": name,
            "argv": sys.argv,
            "args": vars(args) if args is not None and hasattr(args, "__dict__") else args,
            "rows": [],
        }
        try:
            self.data["loadavg_start"] = os.getloadavg()
        except OSError:
            pass

    def add(self, **row: Any) -> None:
        self.data["rows"].append(row)

    def note(self, **kw: Any) -> None:
        self.data.setdefault("notes", {}).update(kw)

    def write(self, path: str | os.PathLike | None = None) -> Path:
        self.data["machine"] = machine()
        try:
            self.data["loadavg_end"] = os.getloadavg()
        except OSError:
            pass
        p = Path(path) if path else RESULTS / f"{self.name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.data, indent=1, default=_jsonable) + "\n")
        print(f"\nJSON record: {p}")
        return p


def _jsonable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)

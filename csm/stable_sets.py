"""Monte Carlo estimation of stable sets, and escape times near saddles.

The theory (MATH.md §1.6, §8; Corollary 2.3, Proposition 2.5, Theorem 4.7 of the paper)
says that for an absolutely continuous initial law and almost every step size, gradient
descent ``theta <- theta - step * G(theta)`` converges to a point of ``Z`` (saddles with an
unstable direction) with probability **zero**.  :func:`estimate_stable_set` measures this:
it runs many batched gradient-descent orbits, classifies their limits and reports counts with
exact binomial confidence intervals.  :func:`escape_times` measures the other side of the
coin, the time an orbit started at distance ``delta`` from the center-stable manifold of a
saddle needs to leave a ball around it, and compares with ``log(eps/delta) / log lambda_min``.

Work is split into chunks seeded by ``numpy.random.SeedSequence(seed).spawn(n_chunks)``;
chunks run on any :class:`concurrent.futures.Executor` (Dask's ``Client.get_executor()``
included) and are checkpointed atomically (:mod:`csm.checkpoint`), so results do not depend
on the number of workers and survive a killed run.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._validation import as_point, positive_float, positive_int
from .confidence import clopper_pearson
from .errors import InputError, ShapeError
from .problem import KINDS, CriticalPoint, to_jsonable

__all__ = [
    "estimate_stable_set",
    "StableSetEstimate",
    "escape_times",
    "EscapeTimes",
    "clopper_pearson",
    "SADDLE_KINDS",
    "CONVERGED",
    "DIVERGED",
    "UNCONVERGED",
]

#: Kinds of critical points counted as "converged into a saddle" (not a local minimum).
SADDLE_KINDS = ("strict_saddle", "saddle", "local_maximum")

#: Status codes of a run (array ``status`` of :class:`StableSetEstimate`).
CONVERGED, DIVERGED, UNCONVERGED = 0, 1, 2

#: Labels used for runs that have no critical point as limit.
UNIDENTIFIED_LABEL = "unidentified"
UNCONVERGED_LABEL = "unconverged"
DIVERGED_LABEL = "diverged"
_SPECIAL = (UNIDENTIFIED_LABEL, UNCONVERGED_LABEL, DIVERGED_LABEL)

_ARRAY_KEYS = ("theta0", "theta", "loss", "grad_norm", "steps", "status", "label", "kind",
               "layer", "slow_label", "slow_distance")


# ---------------------------------------------------------------------------------------
# confidence intervals
# ---------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------
# the chunk worker (module level: picklable for process pools and Dask)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ChunkSpec:
    problem: Any
    step: float
    sampler: Any
    max_steps: int
    tol: float
    patience: int
    diverge_norm: float
    match_tol: float
    slow_radius: float
    cp_theta: np.ndarray  # (K, d)
    cp_label: tuple[str, ...]
    cp_kind: tuple[str, ...]
    cp_layer: tuple[int, ...]


def _gd_batch(problem: Any, X: np.ndarray, step: float, max_steps: int, tol: float,
              patience: int, diverge_norm: float) -> tuple[np.ndarray, ...]:
    """Batched gradient descent with per-run stopping (the convergence rule of the module).

    Returns ``theta, grad_norm, steps, status`` for the batch ``X (B, d)``.  Only the rows
    still running are evaluated at each step (the active set is compacted).
    """
    B = X.shape[0]
    theta = np.array(X, dtype=float, copy=True)
    gnorm = np.full(B, np.nan)
    steps = np.full(B, max_steps, dtype=np.int64)
    status = np.full(B, UNCONVERGED, dtype=np.int8)
    idx = np.arange(B)
    Xa = theta.copy()
    streak = np.zeros(B, dtype=np.int64)
    window = np.zeros((B, patience))  # last `patience` gradient norms (ring buffer)
    with np.errstate(all="ignore"):
        for k in range(max_steps + 1):
            # 1. divergence of the iterate itself (before asking for a gradient there)
            xn = np.sqrt(np.einsum("ij,ij->i", Xa, Xa))
            bad = ~np.isfinite(xn) | (xn > diverge_norm)
            if bad.any():
                theta[idx[bad]] = Xa[bad]
                steps[idx[bad]] = k
                status[idx[bad]] = DIVERGED
                keep = ~bad
                Xa, idx, streak, window = Xa[keep], idx[keep], streak[keep], window[keep]
                if idx.size == 0:
                    break
            G = np.asarray(problem.gradient(Xa), dtype=float).reshape(Xa.shape)
            gn = np.sqrt(np.einsum("ij,ij->i", G, G))
            bad = ~np.isfinite(gn)
            streak = np.where(gn <= tol, streak + 1, 0)
            pos = k % patience
            window[:, pos] = gn
            oldest = window[:, (pos + 1) % patience]  # |G| at step k - patience + 1
            conv = (streak >= patience) & (gn <= oldest) & ~bad
            done = bad | conv
            if k == max_steps:
                done = np.ones_like(done)
            if done.any():
                rows = idx[done]
                theta[rows] = Xa[done]
                gnorm[rows] = gn[done]
                steps[rows] = k
                status[rows] = np.where(bad[done], DIVERGED,
                                        np.where(conv[done], CONVERGED, UNCONVERGED))
                keep = ~done
                Xa, G, idx = Xa[keep], G[keep], idx[keep]
                streak, window = streak[keep], window[keep]
                if idx.size == 0:
                    break
            Xa = Xa - step * G
    return theta, gnorm, steps, status


def _nearest(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest center for each point (``(m,)``, ``(m,)``)."""
    m, K = points.shape[0], centers.shape[0]
    if K == 0 or m == 0:
        return np.zeros(m, dtype=np.int64), np.full(m, np.inf)
    j = np.empty(m, dtype=np.int64)
    dist = np.empty(m)
    c2 = np.einsum("ij,ij->i", centers, centers)
    block = max(1, 4_000_000 // K)  # bound the (block, K) distance matrix to ~32 MB
    for a in range(0, m, block):
        P = points[a:a + block]
        D2 = np.einsum("ij,ij->i", P, P)[:, None] - 2.0 * P @ centers.T + c2[None, :]
        jj = np.argmin(D2, axis=1)
        j[a:a + block] = jj
        # exact distance to the chosen center (no cancellation error)
        dist[a:a + block] = np.linalg.norm(P - centers[jj], axis=1)
    return j, dist


def _run_chunk(spec: _ChunkSpec, seedseq: np.random.SeedSequence,
               size: int) -> dict[str, np.ndarray]:
    """Sample ``size`` initialisations, run GD, classify the limits (one chunk)."""
    problem = spec.problem
    d = int(problem.dim)
    rng = np.random.default_rng(seedseq)
    if spec.sampler is None:
        X0 = problem.sample(rng, size)
        who = "problem.sample"
    else:
        X0 = spec.sampler(rng, size)
        who = "sampler"
    X0 = np.asarray(X0, dtype=float)
    if X0.shape != (size, d):
        raise ShapeError(f"`{who}(rng, {size})` must return shape ({size}, {d}), got {X0.shape}")
    theta, gnorm, steps, status = _gd_batch(problem, X0, spec.step, spec.max_steps, spec.tol,
                                            spec.patience, spec.diverge_norm)
    loss = np.full(size, np.nan)
    fin = np.isfinite(theta).all(axis=1)
    if fin.any():
        with np.errstate(all="ignore"):
            loss[fin] = np.asarray(problem.loss(theta[fin]), dtype=float).reshape(-1)

    label = np.array([DIVERGED_LABEL] * size, dtype=object)
    kind = np.array([DIVERGED_LABEL] * size, dtype=object)
    layer = np.full(size, -1, dtype=np.int64)
    slow_label = np.array([""] * size, dtype=object)
    slow_dist = np.full(size, np.nan)
    label[status == UNCONVERGED] = UNCONVERGED_LABEL
    kind[status == UNCONVERGED] = UNCONVERGED_LABEL

    classify = getattr(problem, "classify", None)
    classify = classify if callable(classify) else None
    cps = spec.cp_theta
    # converged runs: problem.classify, else the nearest listed critical point
    conv = np.nonzero(status == CONVERGED)[0]
    if conv.size:
        rest = conv
        if classify is not None:
            for i in conv:
                c = classify(theta[i])
                label[i], kind[i] = str(c.label), str(c.kind)
                layer[i] = -1 if c.layer is None else int(c.layer)
            # classify says "not critical" (its own threshold is stricter than `tol`):
            # a listed critical point within match_tol still names the limit
            rest = conv[kind[conv] == "not_critical"]
        if rest.size:
            j, dist = _nearest(theta[rest], cps)
            hit = dist <= spec.match_tol
            for i, jj, h in zip(rest, j, hit):
                if h:
                    label[i], kind[i] = spec.cp_label[jj], spec.cp_kind[jj]
                    layer[i] = spec.cp_layer[jj]
                else:  # converged by `tol`, but nothing certifies a critical point there
                    label[i], kind[i] = UNIDENTIFIED_LABEL, UNIDENTIFIED_LABEL
    # runs still going at the budget: near a saddle? ("slow escape")
    unc = np.nonzero(status == UNCONVERGED)[0]
    if unc.size:
        saddle = np.array([k in SADDLE_KINDS for k in spec.cp_kind], dtype=bool)
        if saddle.any():
            sidx = np.nonzero(saddle)[0]
            j, dist = _nearest(theta[unc], cps[sidx])
            near = dist <= spec.slow_radius
            slow_label[unc[near]] = [spec.cp_label[sidx[jj]] for jj in j[near]]
            slow_dist[unc[near]] = dist[near]
        elif classify is not None:
            for i in unc:
                c = classify(theta[i])
                if c.kind in SADDLE_KINDS:
                    slow_label[i] = str(c.label)
    return {
        "theta0": X0, "theta": theta, "loss": loss, "grad_norm": gnorm, "steps": steps,
        "status": status, "label": label.astype(str), "kind": kind.astype(str),
        "layer": layer, "slow_label": slow_label.astype(str), "slow_distance": slow_dist,
    }


# ---------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StableSetEstimate:
    """Outcome of :func:`estimate_stable_set`.

    Every run has a *class* (its ``label``): the label of the critical point it converged to,
    or ``"unidentified"`` (converged, but no known critical point within ``match_tol`` and no
    ``problem.classify``), ``"unconverged"`` (step budget exhausted) or ``"diverged"``.

    Attributes
    ----------
    problem : str
        Problem name.
    dim, step, n, seed, max_steps, tol, patience, chunk_size : settings of the run.
    confidence : float
        Coverage of every interval (Clopper--Pearson, exact).
    labels : tuple of str
        The classes, critical points first (by increasing limit loss), then the special ones.
    counts : dict label -> int
    kinds : dict label -> str
        Kind of each class (one of :data:`csm.KINDS`, ``"not_critical"``, or the class name
        itself for the special classes).
    losses : dict label -> float
        Median limit loss of the runs in the class.
    ci : dict label -> (low, high)
        Exact interval for the probability of the class.
    kind_counts, kind_ci : dict kind -> int / (low, high)
        The same per kind (every kind of :data:`csm.KINDS` listed, zeros included).
    saddle_count, saddle_fraction, saddle_ci :
        Runs that converged to a critical point of a kind in :data:`SADDLE_KINDS`
        (strict or non-strict saddle, local maximum): the stable set of Corollary 2.3 /
        Theorem 4.7.  For 0 hits ``saddle_ci[1] = 1 - (a/2)^{1/n} ~= 3.69/n``.
    target, target_count, target_fraction, target_ci :
        The same for the kinds/labels named by ``target`` (default: :data:`SADDLE_KINDS`).
    slow_escape_count : int
        Unconverged runs that ended within ``slow_radius`` of a known saddle.
    slow_escape : dict label -> int
        Those runs by nearest saddle.
    loss_histogram : dict
        ``{"edges": [...], "counts": [...]}`` of the limit losses of converged runs.
    steps_summary : dict
        Mean, median, max of the steps used (all runs).
    chunks, chunks_loaded : int
        Number of chunks, and how many were read back from a checkpoint.
    seconds : float
        Wall-clock time of this call.
    arrays : dict name -> ndarray
        Per run: ``theta0 (n, d)``, ``theta (n, d)`` (limit or last iterate), ``loss``,
        ``grad_norm`` (at the last iterate), ``steps``, ``status`` (0 converged, 1 diverged,
        2 unconverged), ``label``, ``kind``, ``layer`` (-1: none), ``slow_label`` ("" when
        not a slow escape), ``slow_distance`` (distance to that saddle, NaN otherwise).
        Not part of :meth:`to_dict`; written by :meth:`save`.
    """

    problem: str
    dim: int
    step: float
    n: int
    seed: int
    max_steps: int
    tol: float
    patience: int
    chunk_size: int
    confidence: float
    labels: tuple[str, ...]
    counts: Mapping[str, int]
    kinds: Mapping[str, str]
    losses: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]
    kind_counts: Mapping[str, int]
    kind_ci: Mapping[str, tuple[float, float]]
    saddle_count: int
    saddle_fraction: float
    saddle_ci: tuple[float, float]
    target: tuple[str, ...]
    target_count: int
    target_fraction: float
    target_ci: tuple[float, float]
    slow_escape_count: int
    slow_escape: Mapping[str, int]
    loss_histogram: Mapping[str, Any]
    steps_summary: Mapping[str, float]
    chunks: int
    chunks_loaded: int
    seconds: float
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    def fraction(self, label: str) -> float:
        """Fraction of runs in class ``label`` (0 for a class never seen)."""
        return self.counts.get(label, 0) / self.n

    def table(self) -> list[dict[str, Any]]:
        """One row per class: label, kind, loss, count, fraction, ci_low, ci_high."""
        return [
            {"label": lab, "kind": self.kinds[lab], "loss": self.losses[lab],
             "count": self.counts[lab], "fraction": self.counts[lab] / self.n,
             "ci_low": self.ci[lab][0], "ci_high": self.ci[lab][1]}
            for lab in self.labels
        ]

    def summary(self) -> str:
        """A plain-text table of the classes, the saddle fraction and the slow escapes."""
        pct = f"{100 * self.confidence:g}%"
        lines = [
            (f"stable set of {self.problem} (d = {self.dim}): {self.n} runs, step {self.step:g}, "
             f"<= {self.max_steps} steps, converged when |G| <= {self.tol:g} for "
             f"{self.patience} steps"),
            f"{'class':<28} {'kind':<16} {'loss':>11} {'count':>7} {'fraction':>9}  {pct} CI",
        ]
        for row in self.table():
            lines.append(
                f"{row['label'][:28]:<28} {row['kind'][:16]:<16} {row['loss']:>11.4g} "
                f"{row['count']:>7d} {row['fraction']:>9.4f}  "
                f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}]")
        lines.append(
            f"into saddles ({', '.join(SADDLE_KINDS)}): {self.saddle_count}/{self.n}, "
            f"{pct} CI [{self.saddle_ci[0]:.3g}, {self.saddle_ci[1]:.3g}]")
        if self.slow_escape_count:
            near = ", ".join(f"{k}: {v}" for k, v in self.slow_escape.items())
            lines.append(f"slow escapes (unconverged near a saddle): {self.slow_escape_count} "
                         f"({near})")
        st = self.steps_summary
        lines.append(f"steps: mean {st['mean']:.1f}, median {st['median']:.0f}, max {st['max']}"
                     f" ({self.seconds:.1f} s, {self.chunks} chunks, {self.chunks_loaded} "
                     "from checkpoint)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no per-run arrays; see :meth:`save`)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "arrays"}
        out["table"] = self.table()
        return to_jsonable(out)

    def save(self, path: str | Path) -> Path:
        """Write the per-run arrays and the summary (as JSON) to one ``.npz`` file."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "arrays"}
        np.savez_compressed(path, _meta=np.array(json.dumps(to_jsonable(meta))),
                            **{k: np.asarray(v) for k, v in self.arrays.items()})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "StableSetEstimate":
        """Read an estimate written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["_meta"]))
            arrays = {k: z[k] for k in z.files if k != "_meta"}
        for key in ("saddle_ci", "target_ci"):
            meta[key] = tuple(meta[key])
        meta["labels"] = tuple(meta["labels"])
        meta["target"] = tuple(meta["target"])
        meta["ci"] = {k: tuple(v) for k, v in meta["ci"].items()}
        meta["kind_ci"] = {k: tuple(v) for k, v in meta["kind_ci"].items()}
        meta["losses"] = {k: float(v) for k, v in meta["losses"].items()}  # "nan" -> nan
        return cls(**meta, arrays=arrays)


# ---------------------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------------------
def _critical_arrays(problem: Any, d: int) -> tuple[np.ndarray, tuple, tuple, tuple]:
    getter = getattr(problem, "critical_points", None)
    cps: Sequence[CriticalPoint] = list(getter()) if callable(getter) else []
    if not cps:
        return np.zeros((0, d)), (), (), ()
    theta = np.stack([np.asarray(c.theta, dtype=float).reshape(d) for c in cps])
    layers = []
    for c in cps:
        lay = (c.info or {}).get("layer")
        layers.append(-1 if lay is None else int(lay))
    return (theta, tuple(str(c.label) for c in cps), tuple(str(c.kind) for c in cps),
            tuple(layers))


def _chunk_sizes(n: int, chunk_size: int) -> list[int]:
    full, rest = divmod(n, chunk_size)
    return [chunk_size] * full + ([rest] if rest else [])


def estimate_stable_set(
    problem: Any,
    step: float,
    sampler: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    n: int = 10_000,
    *,
    max_steps: int = 10_000,
    tol: float = 1e-6,
    patience: int = 10,
    diverge_norm: float = 1e8,
    match_tol: float = 1e-2,
    slow_radius: float = 0.1,
    target: Sequence[str] | str | None = None,
    confidence: float = 0.95,
    bins: int = 50,
    executor: cf.Executor | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    chunk_size: int = 500,
    progress: bool = False,
) -> StableSetEstimate:
    """Estimate where gradient descent from random initialisations converges.

    Runs ``n`` orbits of ``theta <- theta - step * G(theta)`` (the map Psi of Proposition
    2.5, MATH.md §1.5) from ``sampler(rng, n)`` (default ``problem.sample``, which must be
    an absolutely continuous law for Corollary 2.3 to apply), classifies each limit and
    reports per-class counts with exact binomial intervals (MATH.md §8).

    Parameters
    ----------
    problem : Problem
        Needs ``dim``, batched ``gradient``, ``loss`` and ``sample`` (unless ``sampler`` is
        given); ``classify`` and ``critical_points`` are used when present.
    step : float
        Step size ``gamma > 0``.
    sampler : callable, optional
        ``sampler(rng, m) -> (m, d)`` initial points.  Must be picklable (a module-level
        function or a picklable object) to run on a process pool or Dask.
    n : int
        Number of runs.
    max_steps : int
        Step budget per run.
    tol, patience : float, int
        **Convergence rule.** A run has converged at step ``k`` when

        1. ``||G(theta_j)|| <= tol`` for the ``patience`` consecutive iterates
           ``j = k - patience + 1, ..., k`` (GD moved by at most ``step * tol`` in each of
           these steps), and
        2. the gradient did not grow across that window:
           ``||G(theta_k)|| <= ||G(theta_{k - patience + 1})||``.

        Its limit is ``theta_k`` and ``steps = k``.  Rule 2 keeps orbits that merely pass
        close to a saddle (where ``||G||`` grows geometrically, by ``lambda_u`` per step,
        MATH.md §8) from being counted as converged there; at a genuine limit the gradient
        decays, and round-off fluctuations only delay the decision by a few steps.
        ``patience = 1`` gives the plain threshold rule.
    diverge_norm : float
        A run whose iterate or gradient is not finite, or with ``||theta|| > diverge_norm``,
        is stopped and classed ``"diverged"``.
    match_tol : float
        Without ``problem.classify`` (or where it answers ``"not_critical"``), a converged
        run gets the label of the nearest ``problem.critical_points()`` entry within this
        Euclidean distance, else ``"unidentified"`` (converged by ``tol``, but not certified
        critical: lower ``tol`` to match the problem's own criticality threshold).
    slow_radius : float
        An unconverged run within this distance of a known saddle (kind in
        :data:`SADDLE_KINDS`) is reported as a *slow escape*, with its distance.  (Without
        listed critical points, ``classify`` decides, and the distance is NaN.)
    target : str or sequence of str, optional
        Kinds and/or labels whose total count is reported as ``target_*``
        (default :data:`SADDLE_KINDS`).
    confidence : float
        Coverage of the Clopper--Pearson intervals.
    bins : int
        Bins of the limit-loss histogram.
    executor : concurrent.futures.Executor, optional
        Runs the chunks (e.g. ``ProcessPoolExecutor(8)`` or a Dask
        ``Client(...).get_executor()``).  ``None`` runs them here, one after the other.
        Results are identical for every executor and number of workers.
    checkpoint : path, optional
        Directory where each finished chunk is stored atomically; rerunning with the same
        arguments resumes (losing at most the chunks that were in flight).
    seed : int
        Chunk ``i`` draws from ``SeedSequence(seed).spawn(n_chunks)[i]``.
    chunk_size : int
        Runs per chunk (the unit of parallelism and of checkpointing; does not depend on
        the number of workers).
    progress : bool
        Show a tqdm progress bar on stderr (runs done, rate, ETA).

    Returns
    -------
    StableSetEstimate

    Raises
    ------
    InputError
        An argument is invalid (named in the message).
    CheckpointMismatchError
        ``checkpoint`` holds chunks of a run with different arguments.

    Notes
    -----
    Cost: ``O(n * steps * cost(G))``, vectorised over the runs of a chunk (the set of
    running orbits is compacted each step).  Classification calls ``problem.classify`` once
    per converged run.  Convergence is a numerical statement: an orbit parked within
    ``~tol / |lambda|`` of a strict saddle is counted as converged there (for an absolutely
    continuous start this happens with probability ~0, which is what the interval bounds).

    Examples
    --------
    >>> est = estimate_stable_set(problem, 0.1, n=2000)          # doctest: +SKIP
    >>> est.saddle_count, est.saddle_ci                          # doctest: +SKIP
    (0, (0.0, 0.00184...))
    """
    from .checkpoint import ChunkStore, array_digest, callable_fingerprint, problem_fingerprint

    t_start = time.perf_counter()
    if not callable(getattr(problem, "gradient", None)):
        raise InputError(
            f"`problem` must have a batched .gradient method, got {type(problem).__name__}")
    d = getattr(problem, "dim", None)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise InputError(f"`problem.dim` must be a positive integer, got {d!r}")
    d = int(d)
    step = positive_float(step, "step")
    n = positive_int(n, "n")
    max_steps = positive_int(max_steps, "max_steps", minimum=0)
    tol = positive_float(tol, "tol", allow_zero=True)
    patience = positive_int(patience, "patience")
    diverge_norm = positive_float(diverge_norm, "diverge_norm")
    match_tol = positive_float(match_tol, "match_tol", allow_zero=True)
    slow_radius = positive_float(slow_radius, "slow_radius", allow_zero=True)
    bins = positive_int(bins, "bins")
    chunk_size = positive_int(chunk_size, "chunk_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"`seed` must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(f"`confidence` must be in (0, 1), got {confidence!r}")
    if sampler is None and not callable(getattr(problem, "sample", None)):
        raise InputError("`sampler` is required: the problem has no .sample(rng, n) method")
    if sampler is not None and not callable(sampler):
        raise InputError(f"`sampler` must be callable sampler(rng, n) -> (n, d), got {sampler!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InputError(
            f"`executor` must be a concurrent.futures.Executor (with .submit), got "
            f"{type(executor).__name__}")
    if target is None:
        target_t: tuple[str, ...] = SADDLE_KINDS
    elif isinstance(target, str):
        target_t = (target,)
    else:
        target_t = tuple(str(t) for t in target)

    cp_theta, cp_label, cp_kind, cp_layer = _critical_arrays(problem, d)
    spec = _ChunkSpec(problem, step, sampler, max_steps, tol, patience, diverge_norm, match_tol,
                      slow_radius, cp_theta, cp_label, cp_kind, cp_layer)
    sizes = _chunk_sizes(n, chunk_size)
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))

    store = None
    results: list[dict[str, np.ndarray] | None] = [None] * len(sizes)
    if checkpoint is not None:
        if sampler is None:  # (a bound method would pickle the whole problem: probe only)
            samp_id = "problem.sample:probe=" + array_digest(
                problem.sample(np.random.default_rng(0), 4))
        else:
            samp_id = callable_fingerprint(sampler, lambda: sampler(np.random.default_rng(0), 4))
        fingerprint = {
            "problem": problem_fingerprint(problem), "step": step, "n": n, "seed": seed,
            "max_steps": max_steps, "tol": tol, "patience": patience,
            "diverge_norm": diverge_norm, "match_tol": match_tol, "slow_radius": slow_radius,
            "chunk_size": chunk_size, "sampler": samp_id,
            "critical_points": list(cp_label),
        }
        store = ChunkStore(checkpoint, fingerprint, len(sizes))
        for i in store.done():
            arr = store.load(i)
            if arr is not None and set(arr) == set(_ARRAY_KEYS) and len(arr["steps"]) == sizes[i]:
                results[i] = arr
    loaded = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]

    from tqdm.auto import tqdm

    bar = tqdm(total=n, initial=sum(sizes[i] for i, r in enumerate(results) if r is not None),
               unit="run", desc=f"stable set [{getattr(problem, 'name', 'problem')}]",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        if executor is None:
            for i in todo:
                res = _run_chunk(spec, seeds[i], sizes[i])
                if store is not None:
                    store.save(i, res)
                results[i] = res
                bar.update(sizes[i])
        else:
            futures = {executor.submit(_run_chunk, spec, seeds[i], sizes[i]): i for i in todo}
            try:
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    res = fut.result()
                    if store is not None:
                        store.save(i, res)
                    results[i] = res
                    bar.update(sizes[i])
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()

    arrays = {k: np.concatenate([r[k] for r in results], axis=0) for k in _ARRAY_KEYS}
    return _summarise(arrays, problem=str(getattr(problem, "name", type(problem).__name__)),
                      dim=d, step=step, n=n, seed=seed, max_steps=max_steps, tol=tol,
                      patience=patience, chunk_size=chunk_size, confidence=float(confidence),
                      target=target_t, bins=bins, chunks=len(sizes), chunks_loaded=loaded,
                      seconds=time.perf_counter() - t_start)


def _summarise(arrays: dict[str, np.ndarray], *, target: tuple[str, ...], bins: int,
               **settings: Any) -> StableSetEstimate:
    n = settings["n"]
    conf = settings["confidence"]
    label, kind, status, loss = arrays["label"], arrays["kind"], arrays["status"], arrays["loss"]
    uniq, counts = np.unique(label, return_counts=True)
    count_of = dict(zip(uniq.tolist(), counts.tolist()))
    kinds: dict[str, str] = {}
    losses: dict[str, float] = {}
    for lab in count_of:
        m = label == lab
        ks, kc = np.unique(kind[m], return_counts=True)
        kinds[lab] = str(ks[np.argmax(kc)])
        vals = loss[m][np.isfinite(loss[m])]
        losses[lab] = float(np.median(vals)) if vals.size else float("nan")
    finite = [abs(v) for v in losses.values() if math.isfinite(v)]
    quantum = 1e-8 * max([1.0] + finite)  # order by loss level, ties (to 1e-8) by label
    crit = sorted((lab for lab in count_of if lab not in _SPECIAL),
                  key=lambda s: (round(losses[s] / quantum) if math.isfinite(losses[s])
                                 else math.inf, s))
    labels = tuple(crit + [s for s in _SPECIAL if s in count_of])
    ci = {lab: clopper_pearson(count_of[lab], n, conf) for lab in labels}

    conv = status == CONVERGED
    kind_names = list(KINDS) + sorted(set(kind[conv].tolist()) - set(KINDS))
    kind_counts = {k: int(np.count_nonzero(conv & (kind == k))) for k in kind_names}
    kind_ci = {k: clopper_pearson(c, n, conf) for k, c in kind_counts.items()}
    saddle = int(np.count_nonzero(conv & np.isin(kind, SADDLE_KINDS)))
    tmask = conv & (np.isin(kind, target) | np.isin(label, target))
    tcount = int(np.count_nonzero(tmask))

    slow = arrays["slow_label"] != ""
    sl, sc = np.unique(arrays["slow_label"][slow], return_counts=True)
    lv = loss[conv & np.isfinite(loss)]
    if lv.size:
        lo, hi = float(lv.min()), float(lv.max())
        width = 1e-6 * max(abs(lo), abs(hi), 1.0)
        if hi - lo < width:  # (near-)constant losses: a window of relative width 1e-6
            lo, hi = 0.5 * (lo + hi) - width / 2, 0.5 * (lo + hi) + width / 2
        hc, he = np.histogram(lv, bins=bins, range=(lo, hi))
    else:
        hc, he = np.zeros(0, dtype=int), np.zeros(0)
    st = arrays["steps"]
    return StableSetEstimate(
        labels=labels,
        counts={lab: int(count_of[lab]) for lab in labels},
        kinds={lab: kinds[lab] for lab in labels},
        losses={lab: losses[lab] for lab in labels},
        ci=ci,
        kind_counts=kind_counts,
        kind_ci=kind_ci,
        saddle_count=saddle,
        saddle_fraction=saddle / n,
        saddle_ci=clopper_pearson(saddle, n, conf),
        target=target,
        target_count=tcount,
        target_fraction=tcount / n,
        target_ci=clopper_pearson(tcount, n, conf),
        slow_escape_count=int(np.count_nonzero(slow)),
        slow_escape=dict(zip(sl.tolist(), (int(c) for c in sc))),
        loss_histogram={"edges": he.tolist(), "counts": hc.tolist()},
        steps_summary={"mean": float(st.mean()), "median": float(np.median(st)),
                       "max": int(st.max())},
        arrays=arrays,
        **settings,
    )


# ---------------------------------------------------------------------------------------
# escape times
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EscapeTimes:
    """Outcome of :func:`escape_times`.

    Attributes
    ----------
    point : str
        Label (or coordinates) of the saddle.
    radius : float
        The ball ``B_eps(x*)`` the orbits have to leave.
    deltas : ndarray (m,)
        Initial distances from the center-stable manifold (along ``E_u``).
    steps : ndarray (m, n)
        Exit step of each run (``max_steps`` when it did not leave; see ``escaped``).
    escaped : ndarray (m,)
        Number of runs per ``delta`` that left the ball within ``max_steps``.
    median_steps, mean_steps : ndarray (m,)
        Over the runs that escaped (NaN when none did).
    lambda_min, lambda_max : float
        Smallest and largest unstable ``|eigenvalue|`` of the map's Jacobian at ``x*``.
    predicted : ndarray (m,)
        ``log(eps / delta) / log(lambda_min)`` (MATH.md §8): the sojourn time of the
        linearisation when the push is along the least unstable direction; pushes with a
        component along faster directions leave sooner (down to ``log(eps/delta)/log
        lambda_max``).
    slope : float
        Least-squares slope of ``median_steps`` against ``log(1/delta)`` (deltas where every
        run escaped).
    slope_theory : float
        ``1 / log(lambda_min)``.
    slope_theory_fast : float
        ``1 / log(lambda_max)``.
    intercept : float
        Intercept of that fit.
    """

    point: str
    radius: float
    deltas: np.ndarray
    steps: np.ndarray
    escaped: np.ndarray
    median_steps: np.ndarray
    mean_steps: np.ndarray
    lambda_min: float
    lambda_max: float
    predicted: np.ndarray
    slope: float
    slope_theory: float
    slope_theory_fast: float
    intercept: float
    n: int
    max_steps: int
    seed: int

    @property
    def relative_slope_error(self) -> float:
        """``|slope - slope_theory| / slope_theory``."""
        return abs(self.slope - self.slope_theory) / self.slope_theory

    def table(self) -> list[dict[str, Any]]:
        """One row per ``delta``: delta, median, mean, predicted, escaped."""
        return [
            {"delta": float(dl), "median_steps": float(md), "mean_steps": float(mn),
             "predicted": float(p), "escaped": int(e), "n": self.n}
            for dl, md, mn, p, e in zip(self.deltas, self.median_steps, self.mean_steps,
                                        self.predicted, self.escaped)
        ]

    def summary(self) -> str:
        """Plain-text table: delta, median/mean steps, prediction; the fitted slope."""
        lines = [(f"escape from B_eps({self.point}), eps = {self.radius:.4g}, lambda_min = "
                  f"{self.lambda_min:.6g}, lambda_max = {self.lambda_max:.6g}, "
                  f"{self.n} runs/delta"),
                 f"{'delta':>10} {'median':>8} {'mean':>9} {'predicted':>10} {'escaped':>8}"]
        for r in self.table():
            lines.append(f"{r['delta']:>10.3g} {r['median_steps']:>8.1f} {r['mean_steps']:>9.2f} "
                         f"{r['predicted']:>10.2f} {r['escaped']:>8d}")
        lines.append(f"slope of steps vs log(1/delta): {self.slope:.5g} (theory 1/log lambda_min"
                     f" = {self.slope_theory:.5g}; relative error {self.relative_slope_error:.2%})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the per-run ``steps`` matrix included only as the table)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "steps"}
        out["relative_slope_error"] = self.relative_slope_error
        out["table"] = self.table()
        return to_jsonable(out)


def _resolve_point(problem: Any, point: Any, d: int) -> tuple[Any, np.ndarray, str]:
    if isinstance(point, CriticalPoint):
        return point, as_point(point.theta, d, "point.theta"), point.label
    if isinstance(point, str):
        getter = getattr(problem, "critical_points", None)
        cps = list(getter()) if callable(getter) else []
        for c in cps:
            if c.label == point:
                return c, as_point(c.theta, d, "point.theta"), c.label
        raise InputError(
            f"`point` {point!r} is not the label of a known critical point of "
            f"{getattr(problem, 'name', 'the problem')}; known: {[c.label for c in cps]}"
        )
    theta = as_point(point, d, "point")
    return theta, theta, np.array2string(theta, precision=4, separator=", ")


def escape_times(
    problem: Any,
    point: Any,
    step: float,
    deltas: Sequence[float],
    n: int,
    *,
    radius: float | None = None,
    max_steps: int = 100_000,
    seed: int = 0,
    manifold: Any = None,
    local_map: bool = True,
) -> EscapeTimes:
    """Steps needed to leave ``B_eps(x*)`` from distance ``delta`` off the center-stable manifold.

    For each ``delta``: take ``n`` points ``p`` on the local center-stable manifold
    (``manifold.sample(n, rng)``, Theorem 2.2 / MATH.md §1.3), push each along a random unit
    direction ``u`` of ``E_u`` (``x0 = p + delta u``), iterate the map until
    ``||x_k - x*|| > eps`` and record ``k``.  The linearisation predicts
    ``k ~= log(eps/delta) / log(lambda)`` (MATH.md §8), ``lambda`` between the smallest and
    the largest unstable ``|eigenvalue|``; hence ``k`` grows linearly in ``log(1/delta)``
    with slope ``1/log(lambda_min)`` when ``E_u`` is one-dimensional (or all unstable
    eigenvalues agree), which is what ``slope`` vs ``slope_theory`` checks.

    Parameters
    ----------
    problem : Problem
    point : CriticalPoint, str or array (d,)
        The saddle (a label is looked up in ``problem.critical_points()``).
    step : float
        Step size of gradient descent.
    deltas : sequence of float
        Distances off the manifold, ``0 < delta < eps``; keep them well above the manifold's
        accuracy (its ``tol``), otherwise the distance is dominated by that error.
    n : int
        Runs per ``delta``.
    radius : float, optional
        ``eps``; default the manifold's radius.
    max_steps : int
        Budget; runs that do not leave are counted in ``escaped``.
    seed : int
        Seeds the manifold points and directions.
    manifold : CenterStableManifold, optional
        Precomputed manifold (anything with ``radius``, ``sample(n, rng)`` and ``split`` with
        ``basis_u`` and ``eigenvalues``); computed with :func:`csm.center_stable_manifold`
        otherwise.
    local_map : bool
        Use ``problem.local_map(point, step)`` (e.g. the ReLU plugin's modified map Psi_J)
        when the problem has one, else ``GradientDescentMap(problem, step)``.  The same map
        is iterated.

    Returns
    -------
    EscapeTimes
    """
    from .maps import GradientDescentMap

    d = int(problem.dim)
    step = positive_float(step, "step")
    n = positive_int(n, "n")
    max_steps = positive_int(max_steps, "max_steps")
    dl = np.asarray(deltas, dtype=float).reshape(-1)
    if dl.size == 0 or not np.all(np.isfinite(dl)) or np.any(dl <= 0):
        raise InputError(
            f"`deltas` must be a non-empty sequence of positive numbers, got {deltas!r}")
    cp, x_star, name = _resolve_point(problem, point, d)
    lm = getattr(problem, "local_map", None)
    gmap = lm(cp, step) if (local_map and callable(lm)) else GradientDescentMap(problem, step)
    if manifold is None:
        from .manifold import center_stable_manifold

        manifold = center_stable_manifold(gmap, x_star)
    eps = float(manifold.radius) if radius is None else positive_float(radius, "radius")
    if np.any(dl >= eps):
        raise InputError(f"`deltas` must be smaller than the radius {eps:g}, got max {dl.max():g}")
    split = getattr(manifold, "split", None)
    U = getattr(manifold, "basis_u", None)
    if U is None:
        U = split.basis_u
    U = np.asarray(U, dtype=float).reshape(d, -1)
    k_u = U.shape[1]
    ev_u = getattr(manifold, "eigenvalues_u", None)
    if ev_u is None:
        ev_u = np.sort(np.abs(np.asarray(split.eigenvalues)))[::-1][:k_u]
    mod = np.sort(np.abs(np.asarray(ev_u)))[::-1]
    lam_max, lam_min = float(mod[0]), float(mod[-1])
    eigen_norm = getattr(manifold, "eigen_norm", None)

    def dist(Y: np.ndarray) -> np.ndarray:  # the ball's norm (eigen-coordinates if known)
        if callable(eigen_norm):
            return np.asarray(eigen_norm(Y), dtype=float).reshape(-1)
        return np.linalg.norm(Y - x_star, axis=1)

    if lam_min <= 1.0:
        raise InputError(f"the map has no unstable eigenvalue at {name} (|lambda| = {mod})")

    rng = np.random.default_rng(seed)
    P = np.asarray(manifold.sample(n, rng), dtype=float).reshape(n, d)
    C = rng.standard_normal((n, k_u))
    V = C @ U.T
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    X = (P[None, :, :] + dl[:, None, None] * V[None, :, :]).reshape(-1, d)
    m = X.shape[0]
    steps = np.full(m, max_steps, dtype=np.int64)
    out = np.zeros(m, dtype=bool)
    idx = np.arange(m)
    Xa = X
    for k in range(max_steps + 1):
        with np.errstate(all="ignore"):
            r = dist(Xa)
        left = ~(r <= eps)  # NaN (overflow) counts as having left
        if left.any():
            steps[idx[left]] = k
            out[idx[left]] = True
            Xa, idx = Xa[~left], idx[~left]
        if idx.size == 0 or k == max_steps:
            break
        Xa = np.asarray(gmap(Xa), dtype=float)
    steps = steps.reshape(dl.size, n)
    out = out.reshape(dl.size, n)
    escaped = out.sum(axis=1)
    med = np.array([np.median(s[o]) if o.any() else np.nan for s, o in zip(steps, out)])
    mean = np.array([np.mean(s[o]) if o.any() else np.nan for s, o in zip(steps, out)])
    pred = np.log(eps / dl) / math.log(lam_min)
    ok = escaped == n
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(np.log(1.0 / dl[ok]), med[ok], 1)
    else:
        slope, intercept = float("nan"), float("nan")
    return EscapeTimes(
        point=name, radius=eps, deltas=dl, steps=steps, escaped=escaped, median_steps=med,
        mean_steps=mean, lambda_min=lam_min, lambda_max=lam_max, predicted=pred,
        slope=float(slope), slope_theory=1.0 / math.log(lam_min),
        slope_theory_fast=1.0 / math.log(lam_max), intercept=float(intercept), n=n,
        max_steps=max_steps, seed=int(seed),
    )

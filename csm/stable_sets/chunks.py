"""The worker side of stable-set estimation: what one chunk, and one task of chunks, computes.

A chunk samples its initial points from its own seed, runs gradient descent
(:func:`csm.orbits.descend`, optionally after an SGD phase, :mod:`csm.stochastic`) and names
each limit (:func:`csm.identify.identify_limits`).  A task runs several chunks in one
continuously refilled batch (:func:`run_chunks`); :func:`task_groups` decides the tasks.
Results never depend on the grouping (docs/theory.md §8.2).  The orchestration (validation,
checkpoints, executors, the summary) is :func:`csm.stable_sets.estimate_stable_set`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, NonFiniteError, ShapeError
from ..identify import DENSE_MAX_DIM, SADDLE_KINDS, identify_limits, nearest
from ..orbits import CONVERGED, RULE_GRADIENT, RULE_SUBLEVEL, RULE_TRAVEL, UNCONVERGED, descend
from ..schedules import shifted
from ..stochastic import sgd_steps
from .result import DIVERGED_LABEL, UNCONVERGED_LABEL

__all__ = ["ChunkSpec", "polish_limits", "run_chunk", "run_chunks", "task_groups",
           "chunk_sizes", "SUBLEVEL_LABEL", "TASK_RUNS", "TASK_WIDTH", "TASKS_PER_WORKER"]


@dataclass(frozen=True)
class ChunkSpec:
    """Everything a chunk worker needs (module level: picklable for process pools and Dask)."""

    problem: Any
    step: Any
    sampler: Any
    max_steps: int
    tol: float
    patience: int
    diverge_norm: float
    match_tol: float
    slow_radius: float
    certify: bool
    sublevel: float | None
    listed: tuple
    momentum: float = 0.0
    nesterov: bool = False
    polish: bool = False
    width: int | None = None
    stochastic: Any = None
    stochastic_steps: int = 0


def polish_limits(problem: Any, theta: np.ndarray, loss: np.ndarray, gtol: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg--Marquardt polish of converged limits that provably stays in their basin.

    Each row is refined towards a zero of the gradient (:func:`csm.critical.locate_zeros`,
    dense Hessians).  The refined point is kept only when ``|G| <= gtol`` there and the loss on
    33 points of the segment from the stopping point to it never exceeds the loss at the
    stopping point (the two are joined inside the sublevel set, so descent from either ends in
    the same connected component: the polish cannot carry a run over a barrier into another
    basin).  Returns ``(theta, grad_norm, polished)``.
    """
    from ..critical import locate_zeros

    d = theta.shape[1]
    Xp, gp = locate_zeros(lambda Y: np.asarray(problem.gradient(Y), dtype=float),
                          lambda Y: np.asarray(problem.hessian(Y), dtype=float).reshape(len(Y), d, d),
                          theta, gtol=min(gtol, 1e-12), max_iter=100)
    ts = np.linspace(0.0, 1.0, 33)
    seg = theta[:, None, :] + ts[None, :, None] * (Xp - theta)[:, None, :]
    with np.errstate(all="ignore"):
        Ls = np.asarray(problem.loss(seg.reshape(-1, d)), dtype=float).reshape(len(theta), -1)
    slack = 64 * np.finfo(float).eps * np.maximum(np.abs(loss), 1e-300)
    ok = np.isfinite(gp) & (gp <= gtol) & np.all(Ls <= (loss + slack)[:, None], axis=1)
    out = theta.copy()
    out[ok] = Xp[ok]
    return out, gp, ok


#: Class name of runs certified by the sublevel rule (no limit computed: a descent argument).
SUBLEVEL_LABEL = "global minimum (below global_sublevel)"


def run_chunk(spec: ChunkSpec, seedseq: np.random.SeedSequence, size: int) -> dict[str, np.ndarray]:
    """Sample ``size`` initialisations, run gradient descent, identify the limits (one chunk)."""
    problem = spec.problem
    d = int(problem.dim)
    rng = np.random.default_rng(seedseq)
    who = "problem.sample" if spec.sampler is None else "sampler"
    X0 = problem.sample(rng, size) if spec.sampler is None else spec.sampler(rng, size)
    X0 = np.asarray(X0)
    if X0.shape != (size, d):
        raise ShapeError(f"`{who}(rng, {size})` must return shape ({size}, {d}), got {X0.shape}")
    if not np.isrealobj(X0):
        raise InputError(f"`{who}(rng, {size})` returned complex values; accepted: real arrays")
    X0 = X0.astype(float)
    if not np.all(np.isfinite(X0)):
        raise NonFiniteError(f"`{who}(rng, {size})` returned NaN or infinity")
    start, step, sgd_div = X0, spec.step, None
    if spec.stochastic is not None and spec.stochastic_steps:
        # SGD phase (docs/theory.md §9), then GD with the schedule continued
        start, sgd_div = sgd_steps(problem, X0, spec.step, spec.stochastic, spec.stochastic_steps,
                                   rng, diverge_norm=spec.diverge_norm)
        start[sgd_div >= 0] = np.nan  # diverged in the SGD phase: descend stops them at once
        step = shifted(spec.step, spec.stochastic_steps)
    run = descend(problem, start, step, max_steps=spec.max_steps, tol=spec.tol,
                  patience=spec.patience, diverge_norm=spec.diverge_norm, sublevel=spec.sublevel,
                  momentum=spec.momentum, nesterov=spec.nesterov, width=spec.width)
    theta, status, grad_norm, rule = run.theta.copy(), run.status, run.grad_norm.copy(), run.rule.copy()
    run_steps = run.steps
    if sgd_div is not None:
        run_steps = np.where(sgd_div >= 0, sgd_div, run.steps + spec.stochastic_steps)
    loss = np.full(size, np.nan)
    fin = np.isfinite(theta).all(axis=1)
    if fin.any():
        with np.errstate(all="ignore"):
            loss[fin] = np.asarray(problem.loss(theta[fin]), dtype=float).reshape(-1)
    polished = np.zeros(size, dtype=bool)
    conv_all = np.nonzero(status == CONVERGED)[0]
    if spec.polish and conv_all.size and d <= DENSE_MAX_DIM:
        th, gp, ok = polish_limits(problem, theta[conv_all], loss[conv_all], max(spec.tol, 1e-10))
        rows = conv_all[ok]
        theta[rows], grad_norm[rows], polished[rows] = th[ok], gp[ok], True
        loss[rows] = np.asarray(problem.loss(theta[rows]), dtype=float).reshape(-1)
        rule[rows] = RULE_GRADIENT  # now a critical point to the polish tolerance: name it

    label = np.array([DIVERGED_LABEL] * size, dtype=object)
    kind = np.array([DIVERGED_LABEL] * size, dtype=object)
    via = np.array([""] * size, dtype=object)
    cert = np.array([""] * size, dtype=object)
    least = np.full(size, np.nan)
    disagree = np.zeros(size, dtype=bool)
    layer = np.full(size, -1, dtype=np.int64)
    slow_label = np.array([""] * size, dtype=object)
    slow_dist = np.full(size, np.nan)
    label[status == UNCONVERGED] = UNCONVERGED_LABEL
    kind[status == UNCONVERGED] = UNCONVERGED_LABEL

    # converged by the sublevel rule: a global minimum by the descent argument
    sub = np.nonzero((status == CONVERGED) & (rule == RULE_SUBLEVEL))[0]
    if sub.size:
        label[sub], kind[sub], via[sub] = SUBLEVEL_LABEL, "global_minimum", "sublevel"
    grad = np.nonzero((status == CONVERGED) & np.isin(rule, (RULE_GRADIENT, RULE_TRAVEL)))[0]
    if grad.size:
        ident = identify_limits(problem, theta[grad], grad_norm=grad_norm[grad],
                                match_tol=spec.match_tol, certify=spec.certify,
                                listed=spec.listed)
        label[grad], kind[grad], via[grad] = ident.label, ident.kind, ident.via
        cert[grad], least[grad], disagree[grad] = ident.certified_kind, ident.least_eigenvalue, ident.disagree
        layer[grad] = ident.layer
    # runs still going at the budget: near a listed saddle? ("slow escape")
    unc = np.nonzero(status == UNCONVERGED)[0]
    cp_theta, cp_label, cp_kind, _ = spec.listed
    if unc.size:
        saddle = np.array([k in SADDLE_KINDS for k in cp_kind], dtype=bool)
        if saddle.any():
            sidx = np.nonzero(saddle)[0]
            j, dist = nearest(theta[unc], cp_theta[sidx])
            near = dist <= spec.slow_radius
            slow_label[unc[near]] = [cp_label[sidx[jj]] for jj in j[near]]
            slow_dist[unc[near]] = dist[near]
    return {
        "theta0": X0, "theta": theta, "loss": loss, "grad_norm": grad_norm, "steps": run_steps,
        "status": status, "rule": run.rule, "polished": polished, "label": label.astype(str),
        "kind": kind.astype(str),
        "via": via.astype(str), "certified_kind": cert.astype(str), "least_eigenvalue": least,
        "disagree": disagree, "layer": layer, "slow_label": slow_label.astype(str),
        "slow_distance": slow_dist,
    }


def chunk_sizes(n: int, chunk_size: int) -> list[int]:
    full, rest = divmod(n, chunk_size)
    return [chunk_size] * full + ([rest] if rest else [])


class _Given:
    """A "sampler" that returns initial points drawn beforehand (:func:`run_chunks`)."""

    def __init__(self, X0: np.ndarray) -> None:
        self.X0 = X0

    def __call__(self, rng: Any, size: int) -> np.ndarray:
        return self.X0


def run_chunks(spec: ChunkSpec, seedseqs: Sequence[np.random.SeedSequence],
               sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Several chunks as one task: ``[run_chunk(spec, s, m) for s, m in zip(seedseqs, sizes)]``.

    Each chunk draws its initial points from its own seed as in :func:`run_chunk`; then the
    runs of all the chunks share one gradient-descent batch with continuous batching
    (:func:`csm.orbits.descend` with ``width = spec.width`` or :data:`TASK_WIDTH`: finished runs
    are replaced by pending ones), so the engine stays fed and the steps of the slowest runs
    (the batch's tail, paid once per :func:`~csm.orbits.descend` call) are paid once per task
    instead of once per chunk.  The result is identical to running the chunks one by one:
    every run's orbit, stopping step and identification depend on that run alone
    (docs/theory.md §8.2).  With a stochastic phase (its noise is drawn from each chunk's own
    generator) the chunks run one by one.
    """
    if len(sizes) <= 1 or getattr(spec, "stochastic", None) is not None:
        return [run_chunk(spec, s, m) for s, m in zip(seedseqs, sizes)]
    d = int(spec.problem.dim)
    parts = []
    for s, m in zip(seedseqs, sizes):
        rng = np.random.default_rng(s)
        X0 = spec.problem.sample(rng, m) if spec.sampler is None else spec.sampler(rng, m)
        X0 = np.asarray(X0)
        if X0.shape != (m, d) or not np.isrealobj(X0) or not np.all(np.isfinite(X0)):
            # run_chunk raises the error that names this chunk's call
            return [run_chunk(spec, s, m) for s, m in zip(seedseqs, sizes)]
        parts.append(X0.astype(float))
    X0 = np.concatenate(parts)
    width = spec.width or max(max(sizes), min(TASK_WIDTH, TASK_WIDTH_BYTES // (8 * d)))
    merged = replace(spec, sampler=_Given(X0), width=width)
    res = run_chunk(merged, seedseqs[0], X0.shape[0])
    ends = np.cumsum(sizes)
    return [{k: v[e - m:e] for k, v in res.items()} for e, m in zip(ends, sizes)]


#: Runs stepped together in a task (:func:`run_chunks`, unless ``width`` is given): the chunk
#: size, raised to ``TASK_WIDTH`` rows while a ``(width, d)`` array stays within
#: ``TASK_WIDTH_BYTES`` (measured on the ReLU engine, N = 4: 1024 rows amortise the
#: per-step overhead of the loop 10-20 % better than 500; benchmarks/stable_sets.py).
TASK_WIDTH, TASK_WIDTH_BYTES = 1024, 2**20
#: Tasks of :func:`estimate_stable_set`: about this many runs at most (and one chunk at least)
TASK_RUNS = 8192
#: ... and at least this many tasks per worker.  Each task pays once the tail of its slowest
#: run (up to ``max_steps`` iterations on a nearly empty batch: ~0.1 s, 5-10 % of a 5,000-run
#: ReLU task at ``max_steps = 3000``), so one task per worker is cheapest on dedicated cores
#: (benchmarks/stable_sets.py); more only help when workers run at unequal speeds.
TASKS_PER_WORKER = 1


def task_groups(todo: Sequence[int], sizes: Sequence[int], workers: int) -> list[list[int]]:
    """Consecutive chunks of ``todo`` grouped into tasks for :func:`run_chunks`.

    ``max(ceil(runs / TASK_RUNS), TASKS_PER_WORKER * workers)`` tasks (at most one per chunk)
    with as equal numbers of chunks as possible: tasks are as large as load balance, the
    progress bar and checkpointing allow, because each pays the tail of its slowest run once.
    Never changes results.
    """
    todo = list(todo)
    if not todo:
        return []
    total = sum(sizes[i] for i in todo)
    m = max(-(-total // max(1, int(TASK_RUNS))), TASKS_PER_WORKER * max(1, int(workers)))
    m = min(m, len(todo))
    q, r = divmod(len(todo), m)
    groups, at = [], 0
    for j in range(m):
        step = q + (j < r)
        groups.append(todo[at:at + step])
        at += step
    return groups

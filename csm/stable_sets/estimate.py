"""Monte Carlo estimation of stable sets (Corollary 2.3, Proposition 2.5, Theorem 4.7).

The theory (docs/theory.md §1.6, §8) says that for an absolutely continuous initial law and
almost every step size, gradient descent ``theta <- theta - step * G(theta)`` converges to a
point with an unstable direction with probability **zero**.  :func:`estimate_stable_set`
measures this: it runs many batched gradient-descent orbits (:func:`csm.orbits.descend`),
names each limit (:func:`csm.identify.identify_limits`) and reports per-class counts with
exact binomial confidence intervals.

Work is split into chunks seeded by ``numpy.random.SeedSequence(seed).spawn(n_chunks)``;
consecutive chunks are grouped into tasks whose runs share one continuously refilled batch
(:func:`csm.stable_sets.chunks.run_chunks`); tasks run on any :class:`concurrent.futures.Executor` (Dask's
``Client.get_executor()`` included) and chunks are checkpointed atomically
(:mod:`csm.stable_sets.checkpoint`), so results do not depend on the number of workers or the
grouping and survive a killed run.
"""

from __future__ import annotations

import concurrent.futures as cf
import difflib
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._validation import positive_float, positive_int
from ..errors import InputError
from ..identify import SADDLE_KINDS, UNDECIDED_KINDS, listed_points
from ..parallel import executor_workers
from ..problem import KINDS
from ..stochastic import StochasticGradient
from .chunks import ChunkSpec, chunk_sizes, run_chunks, task_groups
from .result import ARRAY_KEYS, DIVERGED_LABEL, UNCONVERGED_LABEL, StableSetEstimate, summarise

__all__ = ["estimate_stable_set", "DEFAULT_TOL", "DEFAULT_MAX_STEPS"]

#: Defaults when neither the caller nor the problem (``default_tol``, ``default_max_steps``) says.
DEFAULT_TOL, DEFAULT_MAX_STEPS = 1e-6, 10_000


#: Largest memory the per-run arrays of one estimate may take.
MEMORY_LIMIT = 8 * 2**30


def estimated_bytes(n: int, d: int) -> int:
    """Bytes of the per-run arrays of an estimate with ``n`` runs in dimension ``d``."""
    return int(n) * (16 * int(d) + 400)


def chunk_problem(arr: dict[str, np.ndarray], spec: ChunkSpec, seedseq: np.random.SeedSequence,
                  size: int, d: int) -> str:
    """Why a checkpointed chunk cannot be used ("" when it can).

    Checks the keys, lengths, dtypes and label vocabulary, and that ``theta0`` is exactly what
    this chunk's seed draws (a chunk from another seed or run is refused).
    """
    if set(arr) != set(ARRAY_KEYS):
        return f"keys {sorted(arr)} instead of {sorted(ARRAY_KEYS)}"
    for k, v in arr.items():
        if v.shape[:1] != (size,):
            return f"{k!r} has {v.shape[0] if v.ndim else 0} rows, expected {size}"
    for k in ("theta0", "theta"):
        if arr[k].shape != (size, d) or arr[k].dtype.kind != "f":
            return f"{k!r} has shape {arr[k].shape} and dtype {arr[k].dtype}, expected ({size}, {d}) floats"
    for k in ("loss", "grad_norm", "least_eigenvalue", "slow_distance"):
        if arr[k].dtype.kind != "f":
            return f"{k!r} has dtype {arr[k].dtype}, expected floats"
    for k in ("steps", "status", "rule", "layer"):
        if arr[k].dtype.kind not in "iu":
            return f"{k!r} has dtype {arr[k].dtype}, expected integers"
    if arr["polished"].dtype.kind != "b":
        return f"'polished' has dtype {arr['polished'].dtype}, expected booleans"
    for k in ("label", "kind", "via", "certified_kind", "slow_label"):
        if arr[k].dtype.kind != "U":
            return f"{k!r} has dtype {arr[k].dtype}, expected strings"
    known = set(KINDS) | set(UNDECIDED_KINDS) | {DIVERGED_LABEL, UNCONVERGED_LABEL, "unknown"}
    bad = set(arr["kind"].tolist()) - known
    if bad:
        return f"unknown kinds {sorted(bad)}"
    if not np.isin(arr["status"], (0, 1, 2)).all():
        return "status codes outside {0, 1, 2}"
    rng = np.random.default_rng(seedseq)
    X0 = spec.problem.sample(rng, size) if spec.sampler is None else spec.sampler(rng, size)
    if not np.array_equal(np.asarray(X0, dtype=float), arr["theta0"]):
        return "its initial points are not the ones its seed draws (another seed or run)"
    return ""


def _targets(target: Any, labels: Sequence[str]) -> tuple[str, ...]:
    """Validate ``target`` against the kinds and the listed labels (with a "did you mean")."""
    if target is None:
        return SADDLE_KINDS
    items = (target,) if isinstance(target, str) else target
    try:
        items = tuple(items)
    except TypeError:
        raise InputError(f"`target` must be a kind, a label or a sequence of them, got {target!r}") from None
    known = tuple(KINDS) + UNDECIDED_KINDS + tuple(labels)
    for t in items:
        if not isinstance(t, str) or t not in known:
            close = difflib.get_close_matches(str(t), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"`target` entry {t!r} is neither a kind {tuple(KINDS)} nor a listed "
                             f"critical-point label{hint}")
    return items


def estimate_stable_set(
    problem: Any,
    step: float,
    sampler: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    n: int = 10_000,
    *,
    max_steps: int | None = None,
    tol: float | None = None,
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
    certify: bool = True,
    momentum: float = 0.0,
    nesterov: bool = False,
    polish: bool = False,
    width: int | None = None,
    stochastic: StochasticGradient | None = None,
    stochastic_steps: int = 1000,
) -> StableSetEstimate:
    """Estimate where gradient descent from random initialisations converges.

    Runs ``n`` orbits of ``theta <- theta - step * G(theta)`` (the map Psi of Proposition
    2.5, docs/theory.md §1.5) from ``sampler(rng, n)`` (default ``problem.sample``, which must be
    an absolutely continuous law for Corollary 2.3 to apply), names each limit
    (:mod:`csm.identify`: ``classify``, listed points, then the limit's own Hessian spectrum)
    and reports per-class counts with exact binomial intervals (docs/theory.md §8).  Runs that
    stay undecided are reported as such (``undecided_count``, ``saddle_ci_undecided``).

    Parameters
    ----------
    problem : Problem
        Needs ``dim``, batched ``gradient``, ``loss`` and ``sample`` (unless ``sampler`` is
        given); ``classify`` and ``critical_points`` are used when present.
    step : float or callable
        Step size ``gamma > 0``, or a schedule ``k -> gamma_k`` (picklable for pools).
    sampler : callable, optional
        ``sampler(rng, m) -> (m, d)`` initial points.  Must be picklable (a module-level
        function or a picklable object) to run on a process pool or Dask.
    n : int
        Number of runs.
    max_steps : int, optional
        Step budget per run (default ``problem.default_max_steps``, else 10,000).
    tol, patience : float, int
        ``tol`` defaults to ``problem.default_tol`` (else 1e-6).
        **Convergence rule.** A run has converged at step ``k`` when

        1. ``||G(theta_j)|| <= tol`` for the ``patience`` consecutive iterates
           ``j = k - patience + 1, ..., k`` (GD moved by at most ``step * tol`` in each of
           these steps), and
        2. the gradient did not grow across that window:
           ``||G(theta_k)|| <= ||G(theta_{k - patience + 1})||``.

        Its limit is ``theta_k`` and ``steps = k``.  Rule 2 keeps orbits that merely pass
        close to a saddle (where ``||G||`` grows geometrically, by ``lambda_u`` per step,
        docs/theory.md §8) from being counted as converged there; at a genuine limit the gradient
        decays, and round-off fluctuations only delay the decision by a few steps.
        ``patience = 1`` gives the plain threshold rule.  A problem that declares
        ``global_sublevel`` (every critical point with a lower loss is a global minimum)
        also stops runs whose loss went below it while decreasing: they can only converge to
        a global minimum (:func:`csm.orbits.descend`).
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
        arguments resumes (losing at most the chunks of the tasks that were in flight).
    seed : int
        Chunk ``i`` draws from ``SeedSequence(seed).spawn(n_chunks)[i]``.
    chunk_size : int
        Runs per chunk (the unit of seeding and of checkpointing; does not depend on the
        number of workers).  Consecutive chunks are grouped into tasks (:func:`task_groups`,
        one per worker) whose runs share one continuous batch (:func:`run_chunks`);
        the grouping never changes results.
    progress : bool
        Show a tqdm progress bar on stderr (runs done, rate, ETA).
    momentum, nesterov : float, bool
        Run the heavy-ball (or Nesterov) method with momentum ``beta`` in ``[0, 1)`` instead of
        plain gradient descent (:mod:`csm.momentum`; limits are identified the same way).
    width : int, optional
        Continuous batching inside a task: at most ``width`` runs are stepped together and
        finished runs are replaced by pending ones (:func:`csm.orbits.descend`); results are
        identical for every ``width``.  Default: the chunk size, raised to
        :data:`TASK_WIDTH` rows for small dimensions.
    polish : bool
        Refine every converged limit by Levenberg--Marquardt on the gradient before naming it,
        keeping the refined point only when a path inside the sublevel set joins it to where
        gradient descent stopped (:func:`csm.stable_sets.chunks.polish_limits`; reported per run in ``polished``).
        Runs stopped by the sublevel rule then get a measured limit too.
    certify : bool
        Certify every converged limit by its Hessian spectrum (fallback name and
        cross-check; :func:`csm.identify.certify_limits`).  Off: limits that neither
        ``classify`` nor a listed point names are ``"unidentified"``.
    stochastic, stochastic_steps : StochasticGradient, int
        Run stochastic gradient descent (:mod:`csm.stochastic`: mini-batches and/or additive
        noise, independent per run) for the first ``stochastic_steps`` steps, then gradient
        descent with the schedule continued until the run stops as above (``max_steps``
        counts the deterministic steps; ``steps`` in the result counts both).  Compares the
        basins of SGD with those of GD from the same initial law (docs/theory.md §9).

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
    Cost: ``O(n * steps * cost(G))``, vectorised over the runs of a task (the set of
    running orbits is compacted as runs finish and refilled from the task's pending runs).
    Classification calls ``problem.classify`` once per converged run.  Convergence is a
    numerical statement: an orbit parked within ``~tol / |lambda|`` of a strict saddle is
    counted as converged there (for an absolutely continuous start this happens with
    probability ~0, which is what the interval bounds).

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
    if not callable(step):
        step = positive_float(step, "step")
    n = positive_int(n, "n")
    if max_steps is None:
        max_steps = getattr(problem, "default_max_steps", None) or DEFAULT_MAX_STEPS
    max_steps = positive_int(max_steps, "max_steps", minimum=0)
    if tol is None:
        tol = getattr(problem, "default_tol", None) or DEFAULT_TOL
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
    try:
        conf_ok = 0.0 < float(confidence) < 1.0
    except (TypeError, ValueError):
        conf_ok = False
    if not conf_ok:
        raise InputError(f"`confidence` must be a number in (0, 1), got {confidence!r}")
    if sampler is None and not callable(getattr(problem, "sample", None)):
        raise InputError("`sampler` is required: the problem has no .sample(rng, n) method")
    if sampler is not None and not callable(sampler):
        raise InputError(f"`sampler` must be callable sampler(rng, n) -> (n, d), got {sampler!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InputError(
            f"`executor` must be a concurrent.futures.Executor (with .submit), got "
            f"{type(executor).__name__}")
    if estimated_bytes(n, d) > MEMORY_LIMIT:
        raise InputError(f"`n` = {n} runs of dimension {d} need about "
                         f"{estimated_bytes(n, d) / 2**30:.1f} GiB for the per-run arrays "
                         f"(limit {MEMORY_LIMIT / 2**30:.0f} GiB); use fewer runs")
    listed = listed_points(problem, d)
    target_t = _targets(target, listed[1])
    sublevel = getattr(problem, "global_sublevel", None)
    sublevel = None if sublevel is None else float(sublevel)
    try:
        momentum = float(momentum)
    except (TypeError, ValueError):
        momentum = float("nan")
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"`momentum` must be a number in [0, 1), got {momentum!r}")
    if stochastic is not None:
        if not isinstance(stochastic, StochasticGradient):
            raise InputError(f"`stochastic` must be a csm.StochasticGradient or None, got "
                             f"{type(stochastic).__name__}")
        if momentum:
            raise InputError("`stochastic` and `momentum` cannot be combined (stochastic "
                             "momentum methods are not implemented)")
        stochastic.check(problem)
        stochastic_steps = positive_int(stochastic_steps, "stochastic_steps", minimum=0)
    else:
        stochastic_steps = 0
    spec = ChunkSpec(problem, step, sampler, max_steps, tol, patience, diverge_norm, match_tol,
                     slow_radius, bool(certify), sublevel, listed, momentum, bool(nesterov),
                     bool(polish), None if width is None else positive_int(width, "width"),
                     stochastic, stochastic_steps)
    sizes = chunk_sizes(n, chunk_size)
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
            "critical_points": list(listed[1]), "certify": bool(certify), "sublevel": sublevel,
            "momentum": momentum, "nesterov": bool(nesterov), "polish": bool(polish),
            "schedule": (callable_fingerprint(step, lambda: [step(k) for k in range(8)])
                         if callable(step) else None),
        }
        if stochastic is not None:  # (key absent for GD: earlier checkpoints stay valid)
            fingerprint["stochastic"] = [repr(stochastic), stochastic_steps]
        store = ChunkStore(checkpoint, fingerprint, len(sizes))
        for i in store.done():
            arr = store.load(i)
            if arr is not None:
                problem_with = chunk_problem(arr, spec, seeds[i], sizes[i], d)
                if problem_with:
                    warnings.warn(f"checkpoint chunk {i} rejected ({problem_with}); recomputing it",
                                  RuntimeWarning, stacklevel=2)
                else:
                    results[i] = arr
    loaded = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]

    from tqdm.auto import tqdm

    bar = tqdm(total=n, initial=sum(sizes[i] for i, r in enumerate(results) if r is not None),
               unit="run", desc=f"stable set [{getattr(problem, 'name', 'problem')}]",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        groups = task_groups(todo, sizes, executor_workers(executor))

        def collect(group: list[int], out: list[dict[str, np.ndarray]]) -> None:
            for i, res in zip(group, out):
                if store is not None:
                    store.save(i, res)
                results[i] = res
                bar.update(sizes[i])

        if executor is None:
            for group in groups:
                collect(group, run_chunks(spec, [seeds[i] for i in group],
                                          [sizes[i] for i in group]))
        else:
            futures = {executor.submit(run_chunks, spec, [seeds[i] for i in group],
                                       [sizes[i] for i in group]): group for group in groups}
            try:
                for fut in cf.as_completed(futures):
                    collect(futures[fut], fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()
        if store is not None:
            store.close()

    arrays = {k: np.concatenate([r[k] for r in results], axis=0) for k in ARRAY_KEYS}
    return summarise(arrays, problem=str(getattr(problem, "name", type(problem).__name__)),
                     dim=d, step=float("nan") if callable(step) else step,
                     step_rule=(step.describe() if callable(getattr(step, "describe", None))
                                else "step schedule" if callable(step) else f"step {step:g}")
                     + (f", {'Nesterov' if nesterov else 'heavy-ball'} momentum {momentum:g}"
                        if momentum else "")
                     + (f", {stochastic.describe()} for {stochastic_steps} steps, then GD"
                        if stochastic is not None else ""), n=n, seed=seed,
                     max_steps=max_steps, tol=tol, patience=patience, chunk_size=chunk_size,
                     confidence=float(confidence), target=target_t, bins=bins,
                     chunks=len(sizes), chunks_loaded=loaded, seconds=time.perf_counter() - t_start)



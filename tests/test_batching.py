"""Continuous batching and task scheduling do not change results (issue 16, docs/theory.md §8.2).

The gradient-descent runs of :func:`csm.orbits.descend` are independent: each run's orbit,
stopping step and stopping rule depend on that run alone.  So

* ``descend`` on a batch, with any ``width`` (continuous batching: finished runs replaced by
  pending ones), gives for every run exactly what ``descend`` gives on that run alone
  (the independent reference: a batch of one row, no refilling, no compaction);
* ``run_chunks`` (several chunks sharing one batch) gives exactly ``run_chunk`` chunk by chunk;
* ``estimate_stable_set`` gives byte-identical per-run arrays for every executor, number of
  workers and grouping of chunks into tasks -- on the ReLU problem (sublevel rule,
  ``classify``, certification, and a problem that holds a module, which must travel to
  process-pool workers).

The problems are chosen so that every stopping rule fires (asserted: the comparisons bite).
"""

from __future__ import annotations

import concurrent.futures as cf
import os

import numpy as np
import pytest

import _toy_problems as toy  # noqa: E402 - on sys.path through tests/conftest.py

import csm  # noqa: E402
import csm.stable_sets.chunks as est_mod  # noqa: E402
from csm.identify import listed_points  # noqa: E402
from csm.orbits import CONVERGED, DIVERGED, UNCONVERGED, descend  # noqa: E402
from csm.parallel import BLAS_ENV, executor_workers, process_pool  # noqa: E402
from csm.stable_sets import estimate_stable_set  # noqa: E402

FIELDS = ("theta", "grad_norm", "steps", "status", "rule")


def _rows_alone(problem, X, step, **kw):
    """The reference: every run descended on its own (a batch of one row)."""
    outs = [descend(problem, X[i:i + 1], step, **kw) for i in range(X.shape[0])]
    return {f: np.concatenate([getattr(o, f) for o in outs]) for f in FIELDS}


def _assert_same_runs(ref, got):
    for f in FIELDS:
        a, b = ref[f], getattr(got, f)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f


@pytest.fixture(scope="module")
def relu():
    return csm.get_problem("relu", N=4)


@pytest.fixture(scope="module")
def relu_case(relu):
    # sublevel rule (checked every check_every steps), gradient rule, and the step budget
    X = relu.sample(np.random.default_rng(3), 30)
    kw = dict(max_steps=1500, tol=1e-8, sublevel=relu.global_sublevel)
    ref = _rows_alone(relu, X, 0.05, **kw)
    assert set(np.unique(ref["rule"])) == {0, 1, 2}  # budget, gradient and sublevel all fire
    return X, kw, ref


def test_descend_width_gives_each_run_its_own_orbit_relu(relu, relu_case):
    X, kw, ref = relu_case
    for width in (None, 1, 3, 16):
        _assert_same_runs(ref, descend(relu, X, 0.05, width=width, **kw))


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.5, False), (0.5, True)])
def test_descend_width_with_divergence_and_momentum(momentum, nesterov):
    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, (40, 2))
    X[::7] *= 1e3  # these diverge (step 0.1 on a quartic)
    kw = dict(max_steps=400, tol=1e-6, patience=7, check_every=3, momentum=momentum,
              nesterov=nesterov)
    ref = _rows_alone(toy.DoubleWell(), X, 0.1, **kw)
    assert {CONVERGED, DIVERGED} <= set(np.unique(ref["status"]))
    for width in (None, 1, 4, 25):
        _assert_same_runs(ref, descend(toy.DoubleWell(), X, 0.1, width=width, **kw))


def test_descend_width_keeps_the_check_phase_when_the_batch_runs_dry(relu, relu_case):
    # width = 1: the batch empties at steps that are not multiples of check_every; the next
    # run must still be checked at its own k = 10, 20, ... (before the fix it was checked at
    # the global iteration's multiples, which moved the sublevel stops of most runs)
    X, kw, ref = relu_case
    got = descend(relu, X, 0.05, width=1, **kw)
    assert np.all(got.steps[got.rule == 2] % 10 == 0)
    _assert_same_runs(ref, got)


def _spec(problem, certify=True, sampler=None, **kw):
    listed = listed_points(problem, problem.dim)
    sub = getattr(problem, "global_sublevel", None)
    args = dict(max_steps=1500, tol=1e-8, patience=10, diverge_norm=1e8, match_tol=1e-2,
                slow_radius=0.1)
    args.update(kw)
    return est_mod.ChunkSpec(problem, 0.05, sampler, args["max_steps"], args["tol"],
                             args["patience"], args["diverge_norm"], args["match_tol"],
                             args["slow_radius"], certify, sub, listed)


@pytest.mark.parametrize("certify", [True, False])
def test_run_chunks_equals_chunk_by_chunk(relu, certify):
    spec = _spec(relu, certify)
    seeds = np.random.SeedSequence(7).spawn(3)
    sizes = [50, 50, 23]
    one_by_one = [est_mod.run_chunk(spec, s, m) for s, m in zip(seeds, sizes)]
    together = est_mod.run_chunks(spec, seeds, sizes)
    assert len(together) == 3
    kinds = set()
    for a, b in zip(one_by_one, together):
        assert set(a) == set(b)
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
        kinds |= set(a["kind"].tolist())
    assert {"global_minimum", "unconverged"} <= kinds  # several classes: the check bites


def test_run_chunks_reports_a_bad_sampler_like_run_chunk(relu):
    def bad(rng, m):
        return np.full((m, relu.dim), np.nan)

    spec = _spec(relu, sampler=bad)
    seeds = np.random.SeedSequence(0).spawn(2)
    with pytest.raises(csm.NonFiniteError, match=r"`sampler\(rng, 10\)`"):
        est_mod.run_chunks(spec, seeds, [10, 10])


def test_task_groups_cover_every_chunk_once_in_order():
    sizes = [100] * 37 + [7]
    todo = [i for i in range(len(sizes)) if i % 5]
    for workers in (1, 2, 3, 64):
        groups = est_mod.task_groups(todo, sizes, workers)
        assert [i for g in groups for i in g] == todo
        m = max(-(-sum(sizes[i] for i in todo) // est_mod.TASK_RUNS),
                est_mod.TASKS_PER_WORKER * workers)
        assert len(groups) == min(m, len(todo))
        assert max(map(len, groups)) - min(map(len, groups)) <= 1  # balanced
    assert len(est_mod.task_groups(todo, sizes, 64)) == len(todo)  # one chunk per task
    assert est_mod.task_groups([], sizes, 2) == []


def test_executor_workers():
    assert executor_workers(None) == 1
    with cf.ThreadPoolExecutor(3) as ex:
        assert executor_workers(ex) == 3
    assert executor_workers(object()) == (os.cpu_count() or 1)


def _blas_env(_):
    return {k: os.environ.get(k) for k in BLAS_ENV}, os.getpid()


def test_stable_set_identical_for_every_executor_and_grouping(relu, monkeypatch):
    kw = dict(n=400, chunk_size=100, max_steps=1500)
    ref = estimate_stable_set(relu, 0.05, **kw)
    assert ref.kind_counts.get("global_minimum", 0) and ref.arrays["status"].max() == UNCONVERGED
    runs = {}
    with process_pool(2) as pool:
        envs = list(pool.map(_blas_env, range(4)))
        # the ReLU problem holds its compiled kernel's module: it must still reach the workers
        runs["process_pool(2)"] = estimate_stable_set(relu, 0.05, executor=pool, **kw)
    assert all(env == BLAS_ENV for env, _ in envs)
    with cf.ThreadPoolExecutor(3) as ex:
        runs["threads(3)"] = estimate_stable_set(relu, 0.05, executor=ex, **kw)
    monkeypatch.setattr(est_mod, "TASK_RUNS", 1)  # one chunk per task (no shared batches)
    runs["one chunk per task"] = estimate_stable_set(relu, 0.05, **kw)
    monkeypatch.setattr(est_mod, "TASK_RUNS", 200)
    runs["tasks of 2 chunks"] = estimate_stable_set(relu, 0.05, width=7, **kw)
    for name, est in runs.items():
        for k in ref.arrays:
            a, b = ref.arrays[k], est.arrays[k]
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (name, k)

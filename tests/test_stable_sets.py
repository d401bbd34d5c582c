"""Tests of csm.stable_sets (Monte Carlo stable sets, executors, checkpoints, escape times).

Every expected value comes from an analytic fact about a toy problem (tests/_toy_problems.py):
the sign of x is preserved by GD on the double well, the non-strict saddle attracts the half
plane {x > 0}, the escape time from distance delta off the stable manifold grows like
log(1/delta) / log(1 + step), etc.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import binom

import _toy_problems as toy  # noqa: E402 - on sys.path through tests/conftest.py

import csm  # noqa: E402
from csm.errors import CheckpointMismatchError, InputError, ShapeError  # noqa: E402
from csm.stable_sets import (  # noqa: E402
    CONVERGED,
    DIVERGED,
    UNCONVERGED,
    StableSetEstimate,
    clopper_pearson,
    escape_times,
    estimate_stable_set,
)

TESTS_DIR = str(pathlib.Path(__file__).parent)
DW_ARGS = dict(n=600, chunk_size=100, tol=1e-6, max_steps=2000)


def _same(a: StableSetEstimate, b: StableSetEstimate) -> None:
    """Byte-identical per-run arrays and identical summaries (timing fields aside)."""
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        assert a.arrays[k].dtype == b.arrays[k].dtype, k
        assert a.arrays[k].tobytes() == b.arrays[k].tobytes(), k
    da, db = a.to_dict(), b.to_dict()
    for key in ("seconds", "chunks_loaded"):
        da.pop(key), db.pop(key)
    assert da == db


@pytest.fixture(scope="module")
def dw_reference():
    """Uninterrupted, single-process run on the double well (the reference for identity tests)."""
    return estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, **DW_ARGS)


# ---------------------------------------------------------------------------------------
# confidence intervals
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 10, 137, 10_000])
def test_clopper_pearson_zero_and_full(n):
    lo, hi = clopper_pearson(0, n)
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-12)
    lo, hi = clopper_pearson(n, n)
    assert hi == 1.0
    assert lo == pytest.approx(0.025 ** (1 / n), rel=1e-12)
    if n == 10_000:
        assert clopper_pearson(0, n)[1] * n == pytest.approx(3.69, abs=0.005)


@pytest.mark.parametrize("k,n", [(1, 10), (7, 40), (500, 1000), (3, 10_000)])
def test_clopper_pearson_tail_equations(k, n):
    # exact interval: P(Bin(n, hi) <= k) = 0.025 and P(Bin(n, lo) >= k) = 0.025
    lo, hi = clopper_pearson(k, n)
    assert binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-8)
    assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-8)
    lo99, hi99 = clopper_pearson(k, n, confidence=0.99)
    assert lo99 < lo and hi99 > hi


def test_clopper_pearson_rejects_bad_input():
    with pytest.raises(InputError, match="k=5, n=3"):
        clopper_pearson(5, 3)
    with pytest.raises(InputError, match="confidence"):
        clopper_pearson(1, 3, confidence=1.5)


# ---------------------------------------------------------------------------------------
# classification against analytic answers
# ---------------------------------------------------------------------------------------
def test_double_well_counts_are_exact(dw_reference):
    est = dw_reference
    n = est.n
    # independent regeneration of the initial points from the documented seeding rule
    seqs = np.random.SeedSequence(0).spawn(6)
    X0 = np.concatenate([toy.box_sampler(np.random.default_rng(s), 100) for s in seqs])
    assert np.array_equal(X0, est.arrays["theta0"])
    # GD with step 0.1 preserves sign(x) on [-2, 2]: the limit is (sign x0, 0)
    assert est.counts == {"min+": int((X0[:, 0] > 0).sum()), "min-": int((X0[:, 0] < 0).sum())}
    assert est.kinds == {"min+": "global_minimum", "min-": "global_minimum"}
    assert np.all(est.arrays["status"] == CONVERGED)
    lim = np.stack([np.sign(X0[:, 0]), np.zeros(n)], axis=1)
    assert np.max(np.abs(est.arrays["theta"] - lim)) < 1e-5
    # 0 runs into the saddle: the exact upper bound 1 - 0.025^(1/n)
    assert est.saddle_count == 0 and est.saddle_fraction == 0.0
    assert est.saddle_ci[0] == 0.0
    assert est.saddle_ci[1] == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-12)
    assert est.kind_counts["strict_saddle"] == 0 and est.kind_counts["global_minimum"] == n
    assert est.target == csm.stable_sets.SADDLE_KINDS and est.target_count == 0
    for lab in est.labels:
        assert est.ci[lab] == clopper_pearson(est.counts[lab], n)
    assert sum(est.loss_histogram["counts"]) == n
    assert est.slow_escape_count == 0


def test_convergence_rule_matches_a_scalar_reimplementation(dw_reference):
    """Steps used = first k with ||G(theta_j)|| <= tol for `patience` consecutive j <= k
    and ||G(theta_k)|| <= ||G(theta_{k-patience+1})||."""
    est = dw_reference
    tol, patience, step = 1e-6, 10, 0.1
    for i in range(0, est.n, 97):
        x, y = est.arrays["theta0"][i]
        streak, history = 0, []
        for k in range(2001):
            g = np.hypot(x**3 - x, y)
            history.append(g)
            streak = streak + 1 if g <= tol else 0
            if streak >= patience and g <= history[k - patience + 1]:
                break
            x, y = x - step * (x**3 - x), y - step * y
        assert est.arrays["steps"][i] == k
        assert np.allclose(est.arrays["theta"][i], [x, y], rtol=0, atol=1e-13)


def test_runs_starting_within_tol_of_a_maximum_are_not_counted_as_converged():
    # the staircase's critical point 0 is a local maximum: every direction is unstable.
    # Every start has |G| < tol = 1e-6, and |G| then grows by ~1 + step a_i per step, so
    # rule 2 of the convergence rule keeps these runs going, down to a minimum.
    def tiny(rng, m):
        return 1e-9 * rng.uniform(-1, 1, size=(m, 2))

    p = toy.Staircase((1.0, 0.5))
    est = estimate_stable_set(p, 0.1, tiny, n=200, chunk_size=200)
    assert est.saddle_count == 0 and est.kind_counts["global_minimum"] == 200
    # the plain threshold rule (patience=1) is fooled: all 200 "converge" to the maximum
    naive = estimate_stable_set(p, 0.1, tiny, n=200, chunk_size=200, patience=1)
    assert naive.saddle_count == 200 == naive.kind_counts["local_maximum"]
    assert np.all(naive.arrays["steps"] == 0)


def test_target_counts_labels_and_kinds(dw_reference):
    est = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, target=("min+",), **DW_ARGS)
    assert est.target == ("min+",)
    assert est.target_count == dw_reference.counts["min+"]
    assert est.target_ci == clopper_pearson(est.target_count, est.n)


def test_open_set_converging_to_non_strict_saddle_is_detected():
    # GD on x^3/3 + x^4/4 + y^2/2 sends every x0 > 0 to the non-strict saddle (0, 0).
    tol = 1e-4
    est = estimate_stable_set(toy.NonStrict(), 0.1, toy.strip_sampler, n=1000, tol=tol,
                              match_tol=0.05, max_steps=3000, chunk_size=250)
    x0 = est.arrays["theta0"][:, 0]
    assert est.kinds["flat-saddle"] == "saddle"
    # runs starting in (-r, 0), where |G| <= tol, may be counted too while |y| still
    # dominates |G| (rule 2 cannot see the slow growth of x^2 under a decaying y)
    r = brentq(lambda s: s**2 * (1 - s) - tol, 0.0, 0.5)
    assert (x0 > 0).sum() <= est.saddle_count <= (x0 > -r).sum()
    assert est.counts["flat-saddle"] == est.saddle_count == est.kind_counts["saddle"]
    # P(x0 > 0) = 0.4 for x0 ~ U(-1.5, 1): inside the interval, far from 0
    lo, hi = est.saddle_ci
    assert lo <= 0.4 <= hi and lo > 0.3
    assert est.counts["min"] + est.saddle_count == est.n


def test_slow_escape_reported_with_distance():
    # start within 1e-4 of the saddle's stable set {x = 0}; 30 steps are too few to leave
    def near_line(rng, m):
        return np.stack([1e-4 * rng.uniform(-1, 1, m), rng.uniform(-1, 1, m)], axis=1)

    est = estimate_stable_set(toy.DoubleWell(), 0.1, near_line, n=300, max_steps=30,
                              tol=1e-12, chunk_size=300)
    assert np.all(est.arrays["status"] == UNCONVERGED)
    assert est.counts == {"unconverged": 300}
    assert est.slow_escape_count == 300 and est.slow_escape == {"saddle": 300}
    x, y = est.arrays["theta0"].T.copy()
    for _ in range(30):  # the separable dynamics, coordinate by coordinate
        x, y = x - 0.1 * (x**3 - x), 0.9 * y
    assert np.allclose(est.arrays["slow_distance"], np.hypot(x, y), rtol=1e-12, atol=0)
    # with enough steps every run escapes to a minimum: nothing converges to the saddle
    est = estimate_stable_set(toy.DoubleWell(), 0.1, near_line, n=300, max_steps=3000,
                              chunk_size=300)
    assert est.saddle_count == 0 and est.slow_escape_count == 0
    assert est.counts["min+"] + est.counts["min-"] == 300


def test_summary_and_histogram_of_nearly_equal_limit_losses():
    # with tol = 1e-8 the runs heading for the non-strict saddle are still creeping after
    # 2000 steps (x_k ~ 1/(step k)): unconverged, near the saddle = slow escapes
    est = estimate_stable_set(toy.NonStrict(), 0.1, toy.strip_sampler, n=400, tol=1e-8,
                              max_steps=2000, chunk_size=200)
    x0 = est.arrays["theta0"][:, 0]
    assert est.counts["min"] + est.counts["unconverged"] == 400
    slow = est.arrays["slow_label"] == "flat-saddle"
    assert np.all(slow[x0 > 0]) and np.all(est.arrays["status"][x0 > 0] == UNCONVERGED)
    assert np.all(est.arrays["label"][x0 < -0.05] == "min")
    assert est.slow_escape_count == est.slow_escape["flat-saddle"] == slow.sum()
    # distance to the saddle after k = 2000 steps: x' = -x^2 gives x_k ~ 1/(1/x0 + 0.1 k)
    # (the x^3 term and the discretisation change this by < 5%); y_k = 0.9^k y0 ~ 0
    dist = est.arrays["slow_distance"][x0 > 0]
    assert np.allclose(dist, 1 / (1 / x0[x0 > 0] + 0.1 * 2000), rtol=0.05, atol=0)
    assert est.saddle_count == 0
    # all converged runs share the loss -1/12 up to ~1e-16: the histogram still works
    assert sum(est.loss_histogram["counts"]) == est.counts["min"]
    edges = est.loss_histogram["edges"]
    assert edges[0] <= -1 / 12 <= edges[-1] and len(edges) == 51
    text = est.summary()
    assert "slow escapes" in text and "flat-saddle" in text and "into saddles" in text
    assert str(est) == text


def test_diverged_runs():
    def far(rng, m):
        return np.stack([rng.uniform(50, 60, m), rng.uniform(-1, 1, m)], axis=1)

    est = estimate_stable_set(toy.DoubleWell(), 0.1, far, n=50, chunk_size=50)
    assert est.counts == {"diverged": 50}
    assert np.all(est.arrays["status"] == DIVERGED)
    assert np.all(est.arrays["steps"] <= 5)
    assert est.kinds["diverged"] == "diverged"


def test_unidentified_without_known_critical_points():
    class Anonymous(toy.DoubleWell):
        def critical_points(self):
            return []

    # without certification nothing names the limits ...
    est = estimate_stable_set(Anonymous(), 0.1, toy.box_sampler, n=50, chunk_size=50,
                              certify=False)
    assert est.counts == {"unidentified": 50}
    assert est.undecided_count == 50 and not est.success
    assert est.saddle_ci_undecided[1] == 1.0 and "undecided 50/50" in est.message
    # ... with it (the default) their own Hessian does: the minima (+-1, 0), L = 0
    est = estimate_stable_set(Anonymous(), 0.1, toy.box_sampler, n=50, chunk_size=50)
    assert est.counts == {"local_minimum L=0": 50} and est.via_counts == {"spectrum": 50}
    assert est.undecided_count == 0 and est.success

    class Declared(Anonymous):
        min_loss = 0.0

    est = estimate_stable_set(Declared(), 0.1, toy.box_sampler, n=50, chunk_size=50)
    assert est.counts == {"global_minimum L=0": 50}


def test_classify_is_used_when_present():
    est = estimate_stable_set(toy.StaircaseLayers((1.0, 0.5)), 0.1, n=200, chunk_size=100)
    # from a standard Gaussian start every coordinate leaves 0: all runs reach a minimum
    assert est.counts == {"0 zero coordinate(s)": 200}
    assert est.kinds["0 zero coordinate(s)"] == "global_minimum"
    assert np.all(est.arrays["layer"] == 0)


# ---------------------------------------------------------------------------------------
# results: serialisation
# ---------------------------------------------------------------------------------------
def test_to_dict_json_safe_and_save_load_roundtrip(dw_reference, tmp_path):
    d = dw_reference.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert "arrays" not in d and json.loads(text)["n"] == 600
    assert d["table"][0].keys() >= {"label", "kind", "count", "ci_low", "ci_high"}
    path = dw_reference.save(tmp_path / "est")
    assert path.suffix == ".npz"
    back = StableSetEstimate.load(path)
    _same(dw_reference, back)


# ---------------------------------------------------------------------------------------
# executors: identical results for any number of workers
# ---------------------------------------------------------------------------------------
def test_process_pool_gives_identical_results(dw_reference):
    with ProcessPoolExecutor(2) as ex:
        est = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, executor=ex, **DW_ARGS)
    _same(dw_reference, est)


def test_chunking_does_not_depend_on_n():
    # chunk i is seeded by SeedSequence(seed).spawn(.)[i]: a longer run extends a shorter one
    a = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, n=200, chunk_size=100)
    b = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, n=250, chunk_size=100)
    assert np.array_equal(a.arrays["theta"], b.arrays["theta"][:200])
    c = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, n=200, chunk_size=100, seed=1)
    assert not np.array_equal(a.arrays["theta0"], c.arrays["theta0"])


def test_dask_local_cluster(dw_reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            est = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler,
                                      executor=client.get_executor(), **DW_ARGS)
    _same(dw_reference, est)


# ---------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------
_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import _toy_problems as toy
from csm.stable_sets import estimate_stable_set
estimate_stable_set(toy.DoubleWell(delay={delay}), 0.1, toy.box_sampler, checkpoint={ck!r},
                    n={n}, chunk_size={chunk_size}, tol={tol}, max_steps={max_steps})
"""


def test_kill_and_resume_is_identical_to_uninterrupted(dw_reference, tmp_path):
    ck = tmp_path / "ck"
    script = _SCRIPT.format(tests=TESTS_DIR, delay=0.004, ck=str(ck), **DW_ARGS)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(ck.glob("chunk-*.npz")):
            if proc.poll() is not None:
                pytest.fail(f"worker exited early: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no chunk written within 120 s")
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    written = len(list(ck.glob("chunk-*.npz")))
    assert 1 <= written < 6, "the run must be interrupted between chunks for this test to bite"
    est = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, checkpoint=ck, **DW_ARGS)
    assert est.chunks_loaded == written
    _same(dw_reference, est)
    assert not list(ck.glob(".chunk-*.tmp"))  # stray temporaries cleaned up


def test_resume_loads_every_chunk_and_recomputes_a_corrupt_one(dw_reference, tmp_path):
    ck = tmp_path / "ck"
    first = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, checkpoint=ck, **DW_ARGS)
    assert first.chunks_loaded == 0
    _same(dw_reference, first)
    manifest = json.loads((ck / "manifest.json").read_text())
    assert manifest["n_chunks"] == 6 and manifest["arguments"]["step"] == 0.1
    again = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, checkpoint=ck, **DW_ARGS)
    assert again.chunks_loaded == 6
    _same(dw_reference, again)
    (ck / "chunk-000003.npz").write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable|digest"):
        fixed = estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, checkpoint=ck,
                                    **DW_ARGS)
    assert fixed.chunks_loaded == 5
    _same(dw_reference, fixed)


def test_checkpoint_mismatch_names_the_arguments(tmp_path):
    ck = tmp_path / "ck"
    args = dict(n=200, chunk_size=100, max_steps=500)
    estimate_stable_set(toy.LineSaddle(0.0), 0.1, toy.box_sampler, checkpoint=ck, **args)
    step_diff = r"step: checkpoint has 0\.1, this run has 0\.2"
    with pytest.raises(CheckpointMismatchError, match=step_diff):
        estimate_stable_set(toy.LineSaddle(0.0), 0.2, toy.box_sampler, checkpoint=ck, **args)
    with pytest.raises(CheckpointMismatchError) as err:
        estimate_stable_set(toy.LineSaddle(0.0), 0.1, toy.box_sampler, checkpoint=ck,
                            n=300, chunk_size=50, max_steps=500, seed=3)
    for name in ("n:", "chunk_size:", "seed:"):
        assert name in str(err.value)
    assert "step:" not in str(err.value)
    with pytest.raises(CheckpointMismatchError, match="problem"):  # other parameter value
        estimate_stable_set(toy.LineSaddle(0.3), 0.1, toy.box_sampler, checkpoint=ck, **args)
    with pytest.raises(CheckpointMismatchError, match="sampler"):
        estimate_stable_set(toy.LineSaddle(0.0), 0.1, toy.strip_sampler, checkpoint=ck, **args)
    with pytest.raises(CheckpointMismatchError, match="sampler"):
        estimate_stable_set(toy.LineSaddle(0.0), 0.1, None, checkpoint=ck, **args)
    # nothing was mixed in: the original arguments still resume everything
    est = estimate_stable_set(toy.LineSaddle(0.0), 0.1, toy.box_sampler, checkpoint=ck, **args)
    assert est.chunks_loaded == 2
    # a non-empty directory that is not a checkpoint is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointMismatchError, match="no manifest.json"):
        estimate_stable_set(toy.LineSaddle(0.0), 0.1, toy.box_sampler, checkpoint=other, **args)


# ---------------------------------------------------------------------------------------
# input validation and progress
# ---------------------------------------------------------------------------------------
def test_input_validation():
    p = toy.DoubleWell()
    with pytest.raises(InputError, match="`step`"):
        estimate_stable_set(p, -0.1, n=10)
    with pytest.raises(InputError, match="`n`"):
        estimate_stable_set(p, 0.1, n=0)
    with pytest.raises(InputError, match="`executor`"):
        estimate_stable_set(p, 0.1, n=10, executor=object())
    with pytest.raises(ShapeError, match=r"sampler\(rng, 10\)"):
        estimate_stable_set(p, 0.1, lambda rng, m: rng.standard_normal((m, 3)), n=10)
    with pytest.raises(InputError, match="`seed`"):
        estimate_stable_set(p, 0.1, n=10, seed=-1)


def test_progress_bar_goes_to_stderr(capsys):
    estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, n=100, chunk_size=50, progress=True)
    err = capsys.readouterr().err
    assert "100/100" in err and "run" in err
    estimate_stable_set(toy.DoubleWell(), 0.1, toy.box_sampler, n=100, chunk_size=50)
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == ""


# ---------------------------------------------------------------------------------------
# escape times (docs/theory.md §8): steps ~ log(eps/delta) / log(lambda_min)
# ---------------------------------------------------------------------------------------
DELTAS = np.logspace(-3, -9, 7)


@pytest.mark.parametrize("angle", [0.0, 0.7])
def test_escape_times_slope_with_exact_manifold(angle):
    step = 0.1
    p = toy.LineSaddle(angle)
    res = escape_times(p, "saddle", step, DELTAS, 40, manifold=toy.LineSaddleManifold(p, step))
    assert res.lambda_min == pytest.approx(1 + step)
    assert np.all(res.escaped == 40)
    # slope of median steps vs log(1/delta) = 1/log(1.1) = 10.49, within 1%
    assert res.slope == pytest.approx(1 / np.log(1 + step), rel=0.01)
    assert res.relative_slope_error < 0.01
    # and the steps themselves are within a few steps of log(eps/delta)/log(lambda_min)
    assert np.max(np.abs(res.median_steps - res.predicted)) < 5
    json.dumps(res.to_dict(), allow_nan=False)


def test_escape_times_with_computed_manifold_on_a_curved_saddle():
    pytest.importorskip("csm.manifold")
    step = 0.1
    p = toy.CurvedSaddle(1.0)
    res = escape_times(p, "saddle", step, DELTAS, 40)
    assert np.all(res.escaped == 40)
    assert res.slope == pytest.approx(1 / np.log(1 + step), rel=0.02)

    # control: pretending the manifold is the flat tangent line {y = 0} breaks the law
    # (the true manifold bends like y ~ x^2, so tiny deltas no longer delay the escape)
    m = csm.center_stable_manifold(csm.GradientDescentMap(p, step), np.zeros(2))

    class FlatTangent:
        radius, basis_u, eigenvalues_u = m.radius, m.basis_u, m.eigenvalues_u

        def sample(self, n, rng):
            P = m.sample(n, rng)
            P[:, 1] = 0.0
            return P

    bad = escape_times(p, "saddle", step, DELTAS, 40, manifold=FlatTangent())
    assert bad.relative_slope_error > 0.2


def test_escape_times_input_errors():
    p = toy.LineSaddle()
    m = toy.LineSaddleManifold(p, 0.1)
    with pytest.raises(InputError, match="not the label"):
        escape_times(p, "nowhere", 0.1, DELTAS, 5, manifold=m)
    with pytest.raises(InputError, match="`deltas`"):
        escape_times(p, "saddle", 0.1, [1e-3, -1.0], 5, manifold=m)
    with pytest.raises(InputError, match="smaller than the radius"):
        escape_times(p, "saddle", 0.1, [0.9], 5, manifold=m)


# ---------------------------------------------------------------------------------------
# the user guide's examples print what the page says
# ---------------------------------------------------------------------------------------
def test_docs_page_examples():
    import doctest

    page = pathlib.Path(__file__).parents[1] / "docs" / "stable-sets.md"
    if not page.exists():
        pytest.skip("docs/stable-sets.md not present")
    res = doctest.testfile(str(page), module_relative=False, verbose=False,
                           optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 10

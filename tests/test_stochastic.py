"""SGD as a random map (csm.stochastic; docs/theory.md §9)."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest
from scipy import stats

import csm
from csm.stochastic import SGDMap, StochasticGradient, sample_weights, sgd_steps


@pytest.fixture(scope="module")
def pr():
    return csm.get_problem("phase_retrieval", n=4, m=32, loss="l2", seed=3)


@pytest.fixture(scope="module")
def pop():
    return csm.get_problem("phase_retrieval", n=8, loss="population", seed=0)


def direct_weighted(p, x, idx):
    """(1/(4b)) sum_{i in idx} (<a_i,x>^2 - y_i)^2 straight from the data (not the kernel)."""
    A, y = p.A[idx], p.y[idx]
    r = (A @ x) ** 2 - y
    return float(np.sum(r * r)) / (4 * len(idx))


def test_weighted_loss_matches_direct_formula_and_finite_differences(pr):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4)
    idx = np.array([1, 5, 7, 30])
    W = np.zeros(32)
    W[idx] = 1 / 4
    L, G = pr.loss_and_gradient(x, sample_weights=W)
    assert L == pytest.approx(direct_weighted(pr, x, idx), rel=1e-13)
    h = 1e-6
    fd = np.array([(direct_weighted(pr, x + h * e, idx) - direct_weighted(pr, x - h * e, idx)) / (2 * h)
                   for e in np.eye(4)])
    np.testing.assert_allclose(G, fd, rtol=1e-7, atol=1e-9)
    # uniform weights 1/m are the loss itself
    L0, G0 = pr.loss_and_gradient(x, sample_weights=np.full(32, 1 / 32))
    assert L0 == pytest.approx(float(pr.loss(x)), rel=1e-13)
    np.testing.assert_allclose(G0, pr.gradient(x), rtol=1e-12, atol=1e-14)


def test_weights_are_minibatches():
    rng = np.random.default_rng(1)
    W = StochasticGradient(batch_size=5).weights(rng, 200, 12)
    assert np.all((W == 0) | (W == 0.2)) and np.allclose(W.sum(axis=1), 1.0)
    assert np.all((W > 0).sum(axis=1) == 5)  # without replacement: 5 distinct indices
    Wr = StochasticGradient(batch_size=5, replace=True).weights(rng, 2000, 3)
    assert np.allclose(Wr.sum(axis=1), 1.0) and np.any(Wr > 0.2)  # repeats occur
    # each index is in a batch with probability b/m = 5/12: binomial test at 1e-3
    hits = int((W[:, 0] > 0).sum())
    assert stats.binomtest(hits, 200, 5 / 12).pvalue > 1e-3


def test_minibatch_gradient_is_unbiased(pr):
    """Mean of 4000 independent draws vs the full gradient: within 4.5 standard errors."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4)
    X = np.repeat(x[None], 4000, axis=0)
    G = StochasticGradient(batch_size=4).sample(pr, X, rng)
    full = pr.gradient(x)
    se = G.std(axis=0, ddof=1) / np.sqrt(len(G))
    assert np.all(np.abs(G.mean(axis=0) - full) <= 4.5 * se)
    assert np.all(G.std(axis=0) > 1e-3 * np.abs(full).max())  # and random (positive control)
    # full batch without replacement: exactly the gradient
    G1 = StochasticGradient(batch_size=32).sample(pr, X[:3], rng)
    np.testing.assert_allclose(G1, np.repeat(full[None], 3, axis=0), rtol=1e-12, atol=1e-14)


def test_additive_noise_variance(pop):
    rng = np.random.default_rng(3)
    X = np.zeros((5000, 8))  # gradient 0 at the origin: the draw is the noise alone
    G = StochasticGradient(noise=0.3).sample(pop, X, rng)
    s2 = G.var(ddof=1)
    dof = G.size - 1
    lo, hi = stats.chi2.ppf([5e-4, 1 - 5e-4], dof) / dof * 0.09
    assert lo <= s2 <= hi


def test_runs_are_independent_and_reproducible(pop):
    X = np.repeat(pop.sample(np.random.default_rng(4), 1), 3, axis=0)
    a, da = sgd_steps(pop, X, 0.05, StochasticGradient(noise=0.1), 20, np.random.default_rng(5))
    b, _ = sgd_steps(pop, X, 0.05, StochasticGradient(noise=0.1), 20, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert np.all(da == -1)
    assert np.linalg.norm(a[0] - a[1]) > 1e-3  # same start, own noise per run


def test_sgd_map_call_matches_run_and_schedule(pr):
    sched = csm.schedules.Geometric(0.05, 0.9)
    m1 = SGDMap(pr, sched, batch_size=8, seed=7)
    m2 = SGDMap(pr, sched, batch_size=8, seed=7)
    X = pr.sample(0, 5)
    Y = X
    for k in range(6):
        Y = m1(Y, k)
    np.testing.assert_allclose(m2.run(X, 6), Y, rtol=0, atol=1e-15)
    T = csm.orbits.trajectories(SGDMap(pr, sched, batch_size=8, seed=7), X, 6, nonautonomous=True)
    np.testing.assert_allclose(T[:, -1], Y, rtol=0, atol=1e-15)


def on_hyperplane(pop):
    xs = pop.x_star

    def sampler(rng, n):
        X = 0.5 * rng.standard_normal((n, pop.dim))
        return X - np.outer(X @ xs, xs)
    return sampler


def test_stable_set_gd_vs_sgd_on_a_saddles_stable_set(pop):
    """Starts on the hyperplane orthogonal to x*, which population GD leaves invariant.

    Positive control: GD converges to the saddle sphere from every start.  SGD with additive
    noise (then GD) reaches a saddle from none (docs/theory.md §9).
    """
    samp = on_hyperplane(pop)
    gd = csm.estimate_stable_set(pop, 0.05, samp, n=100, seed=1)
    assert gd.saddle_count == 100
    sgd = csm.estimate_stable_set(pop, 0.05, samp, n=100, seed=1,
                                  stochastic=StochasticGradient(noise=1e-3), stochastic_steps=100)
    assert sgd.saddle_count == 0 and sgd.kind_counts.get("global_minimum", 0) == 100
    assert "SGD" in sgd.step_rule
    assert np.all(sgd.arrays["steps"] >= 100)


def test_stable_set_minibatch_independent_of_executor(pr):
    kw = dict(n=60, seed=2, chunk_size=20, stochastic=StochasticGradient(batch_size=4),
              stochastic_steps=50)
    a = csm.estimate_stable_set(pr, 0.02, **kw)
    with cf.ThreadPoolExecutor(2) as ex:
        b = csm.estimate_stable_set(pr, 0.02, executor=ex, **kw)
    np.testing.assert_array_equal(a.arrays["theta"], b.arrays["theta"])
    # interpolation: every sample's residual vanishes at +-x*, so mini-batch SGD converges there
    assert a.kind_counts.get("global_minimum", 0) >= 55


def test_stable_set_stochastic_checkpoint_resume(pr, tmp_path):
    kw = dict(n=40, seed=3, chunk_size=20, stochastic=StochasticGradient(batch_size=4, noise=1e-4),
              stochastic_steps=30, checkpoint=tmp_path / "ck")
    a = csm.estimate_stable_set(pr, 0.02, **kw)
    b = csm.estimate_stable_set(pr, 0.02, **kw)
    assert b.chunks_loaded == 2
    np.testing.assert_array_equal(a.arrays["theta"], b.arrays["theta"])
    with pytest.raises(csm.CheckpointMismatchError):  # another oracle: refused, not mixed
        csm.estimate_stable_set(pr, 0.02, **{**kw, "stochastic": StochasticGradient(batch_size=8)})


def test_bad_input(pr, pop):
    with pytest.raises(csm.InputError, match="batch_size. or .noise"):
        StochasticGradient()
    with pytest.raises(csm.InputError, match="noise"):
        StochasticGradient(noise=-1.0)
    with pytest.raises(csm.InputError, match="batch_size"):
        StochasticGradient(batch_size=0)
    with pytest.raises(csm.InputError, match="at most problem.n_samples = 32"):
        SGDMap(pr, 0.1, batch_size=33)
    with pytest.raises(csm.InputError, match="finite-sum"):
        SGDMap(pop, 0.1, batch_size=2)
    with pytest.raises(csm.InputError, match="momentum"):
        csm.estimate_stable_set(pr, 0.1, n=4, stochastic=StochasticGradient(noise=0.1),
                                momentum=0.5)
    with pytest.raises(csm.InputError, match="StochasticGradient"):
        csm.estimate_stable_set(pr, 0.1, n=4, stochastic="sgd")
    with pytest.raises(csm.ShapeError, match=r"\(32,\) or \(B, m\) = \(2, 32\)"):
        sample_weights(np.ones(5), 2, 32)
    with pytest.raises(csm.InputError, match="non-negative, got -1.0 at index 0"):
        pr.loss_and_gradient(np.ones((2, 4)), sample_weights=-np.ones(32))
    with pytest.raises(csm.NonFiniteError, match="NaN or infinity"):
        sample_weights(np.full(32, np.nan), 1, 32)
    with pytest.raises(csm.InputError, match="population"):
        pop.loss_and_gradient(np.ones(8), sample_weights=np.ones(3))


def test_cli_stable_set_with_sgd(capsys):
    import json

    from csm.cli import main

    assert main(["--json", "stable-set", "phase_retrieval", "-p", "n=4", "-p", "m=32", "-n", "20",
                 "--step", "0.02", "--sgd-batch", "4", "--sgd-steps", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "mini-batches of 4 for 50 steps" in out["step_rule"] and out["n"] == 20


def test_network_minibatch_sgd_matches_the_subset_problem():
    """Mini-batch SGD on the network plugin: one step equals GD on the batch's own data set."""
    X = np.linspace(0.0, 1.0, 12)[:, None]
    Y = np.sin(3 * X)
    p = csm.get_problem("network", widths=(1, 3, 1), inputs=X, targets=Y)
    assert p.n_samples == 12
    th = p.sample(np.random.default_rng(0), 1)
    sgd = SGDMap(p, 0.1, batch_size=4, seed=5)
    W = StochasticGradient(batch_size=4).weights(np.random.default_rng(5), 1, 12)
    idx = np.nonzero(W[0])[0]
    sub = csm.get_problem("network", widths=(1, 3, 1), inputs=X[idx], targets=Y[idx])
    np.testing.assert_allclose(sgd(th), th - 0.1 * sub.gradient(th), rtol=1e-12, atol=1e-14)


def test_network_stable_set_gd_vs_sgd():
    X = np.linspace(-1.0, 1.0, 8)[:, None]
    p = csm.get_problem("network", widths=(1, 2, 1), inputs=X, targets=np.abs(X))
    kw = dict(n=40, seed=4, chunk_size=20, max_steps=20_000, tol=1e-7)
    gd = csm.estimate_stable_set(p, 0.05, **kw)
    sgd = csm.estimate_stable_set(p, 0.05, stochastic=StochasticGradient(batch_size=2),
                                  stochastic_steps=500, **kw)
    assert sgd.n == gd.n == 40 and sgd.saddle_count == 0
    assert np.all(sgd.arrays["steps"][sgd.arrays["status"] == 0] >= 500)

"""Phase retrieval (paper §3.1, docs/theory.md §6): parameters, derivatives, closed forms.

Independent references: a 5-point finite-difference stencil written here (error O(h^4)),
explicit per-measurement sums, and Monte Carlo averages over independent measurement draws
(tolerance 4 standard errors; a false alarm has probability < 1e-4 per comparison).
"""

from __future__ import annotations

import numpy as np
import pytest

import csm

LOSSES = ["l2", "l1", "population"]


def fd5(f, X, h=1e-3):
    """5-point central differences of a batched ``f: (B, d) -> (B, k)``: ``(B, k, d)``."""
    B, d = X.shape
    cols = []
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        cols.append((f(X - 2 * e) - 8 * f(X - e) + 8 * f(X + e) - f(X + 2 * e)) / (12 * h))
    return np.stack(cols, axis=-1)


def smooth_points(p, n_points, rng, h=1e-3):
    """Gaussian points at which no ℓ1 residual changes sign within the FD stencil."""
    X = rng.standard_normal((8 * n_points, p.dim))
    keep = []
    for x in X:
        pts = x + np.concatenate([k * h * np.eye(p.dim) for k in (-2, -1, 1, 2)])
        sg = np.sign((pts @ p.A.T) ** 2 - p.y)
        s0 = np.sign((x @ p.A.T) ** 2 - p.y)
        if np.all(sg == s0):
            keep.append(x)
        if len(keep) == n_points:
            break
    return np.array(keep)


# -- construction and parameters ----------------------------------------------------------

def test_registered_and_reproducible():
    assert "phase_retrieval" in csm.list_problems()
    p = csm.get_problem("phase_retrieval", n=5, m=40, loss="l2", seed=3)
    q = csm.get_problem("phase_retrieval", n=5, m=40, loss="l2", seed=3)
    assert p.dim == 5 and p.name == "phase_retrieval"
    assert np.isclose(np.linalg.norm(p.x_star), 1.0, rtol=0, atol=1e-14)
    assert np.array_equal(p.A, q.A) and np.array_equal(p.x_star, q.x_star)
    assert np.allclose(p.y, (p.A @ p.x_star) ** 2, rtol=1e-14)
    other = csm.get_problem("phase_retrieval", n=5, m=40, loss="l2", seed=4)
    assert not np.allclose(other.x_star, p.x_star)
    # the same seed gives the same signal for every loss variant
    for loss in ("l1", "population"):
        assert np.array_equal(csm.get_problem("phase_retrieval", n=5, loss=loss, seed=3).x_star,
                              p.x_star)
    assert csm.get_problem("phase_retrieval", loss="population").A is None
    assert p.params == {"n": 5, "m": 40, "loss": "l2", "seed": 3}


@pytest.mark.parametrize("params, name", [
    ({"n": 1}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n"), ({"m": 0}, "m"),
    ({"loss": "l3"}, "loss"), ({"loss": None}, "loss"), ({"seed": -1}, "seed"),
])
def test_parameter_errors(params, name):
    with pytest.raises(csm.ParameterError, match=f"`{name}`"):
        csm.get_problem("phase_retrieval", **params)


def test_unknown_parameter_and_bad_arguments():
    with pytest.raises(csm.ParameterError, match="accepted"):
        csm.get_problem("phase_retrieval", rank=2)
    p = csm.get_problem("phase_retrieval", n=4, m=16)
    with pytest.raises(csm.ParameterError, match="tol"):
        p.classify(np.zeros(4), tol=-1.0)
    with pytest.raises(csm.ShapeError):
        p.gradient(np.zeros(5))
    with pytest.raises(csm.ShapeError):
        p.hvp(np.zeros(4), np.zeros(3))
    with pytest.raises(csm.ShapeError):
        p.local_map(np.zeros(3), 0.1)
    with pytest.raises(csm.InputError):
        p.local_map(np.zeros(4), -0.1)
    with pytest.raises(csm.ParameterError):
        p.sample(np.random.default_rng(0), 0)


@pytest.mark.parametrize("loss", LOSSES)
def test_conformance(loss):
    testing = pytest.importorskip("csm.testing")
    report = testing.check_problem(csm.get_problem("phase_retrieval", n=6, m=48, loss=loss))
    assert report.passed


def test_sample_law_and_reproducibility():
    p = csm.get_problem("phase_retrieval", n=6, m=16)
    X = p.sample(np.random.default_rng(5), 4000)
    assert X.shape == (4000, 6)
    assert np.array_equal(X, p.sample(np.random.default_rng(5), 4000))
    assert np.array_equal(X, p.sample(5, 4000))  # int seed accepted
    # N(0, I): mean within 4 SE (SE = 1/sqrt(4000)), variance within 4 SE (sqrt(2/4000))
    assert np.all(np.abs(X.mean(axis=0)) < 4 / np.sqrt(4000))
    assert np.all(np.abs(X.var(axis=0) - 1) < 4 * np.sqrt(2 / 4000))


# -- loss values against explicit formulas -------------------------------------------------

def test_losses_match_explicit_sums():
    rng = np.random.default_rng(1)
    p2 = csm.get_problem("phase_retrieval", n=5, m=30, loss="l2", seed=2)
    p1 = csm.get_problem("phase_retrieval", n=5, m=30, loss="l1", seed=2)
    pp = csm.get_problem("phase_retrieval", n=5, loss="population", seed=2)
    z = p2.x_star
    for x in rng.standard_normal((3, 5)):
        l2 = sum((np.dot(a, x) ** 2 - np.dot(a, z) ** 2) ** 2 for a in p2.A) / (4 * 30)
        l1 = sum(abs(np.dot(a, x) ** 2 - np.dot(a, z) ** 2) for a in p1.A) / 30
        xx, zz, xz = x @ x, z @ z, x @ z
        pop = 0.25 * (3 * xx**2 - 2 * xx * zz - 4 * xz**2 + 3 * zz**2)
        assert np.isclose(p2.loss(x), l2, rtol=1e-13)
        assert np.isclose(p1.loss(x), l1, rtol=1e-13)
        assert np.isclose(pp.loss(x), pop, rtol=1e-13)


# -- derivatives ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_hessian_hvp_against_finite_differences(loss):
    p = csm.get_problem("phase_retrieval", n=6, m=40, loss=loss, seed=1)
    rng = np.random.default_rng(7)
    X = smooth_points(p, 12, rng) if loss == "l1" else rng.standard_normal((12, 6))
    assert len(X) == 12

    G = p.gradient(X)
    Gfd = fd5(lambda Y: p.loss(Y)[:, None], X)[:, 0, :]
    assert np.max(np.abs(G - Gfd)) <= 1e-8 * max(1.0, np.max(np.abs(G)))

    H = p.hessian(X)
    Hfd = fd5(p.gradient, X)
    assert np.max(np.abs(H - Hfd)) <= 1e-8 * max(1.0, np.max(np.abs(H)))
    assert np.max(np.abs(H - np.swapaxes(H, 1, 2))) <= 1e-12 * np.max(np.abs(H))

    V = rng.standard_normal(X.shape)
    assert np.allclose(p.hvp(X, V), np.einsum("bij,bj->bi", H, V), rtol=1e-12, atol=1e-12)
    # single point / broadcast conventions
    assert np.allclose(p.hvp(X[0], V[0]), H[0] @ V[0], rtol=1e-12, atol=1e-12)
    assert np.allclose(p.hvp(X[0], V), V @ H[0].T, rtol=1e-12, atol=1e-12)
    assert np.allclose(p.hessian(X[3]), H[3], rtol=1e-13, atol=1e-13)


def test_l1_gradient_is_the_sign0_convention():
    """At ±x* every residual is 0: the a.e. gradient with sign(0) = 0 vanishes exactly,
    although the one-sided slopes are nonzero (the loss is not differentiable there)."""
    p = csm.get_problem("phase_retrieval", n=6, m=40, loss="l1", seed=1)
    z = p.x_star
    for x in (z, -z, np.stack([z, -z, z])):
        assert np.all(p.gradient(x) == 0.0)
    v = np.random.default_rng(0).standard_normal(6)
    t = 1e-6
    slope_plus = (p.loss(z + t * v) - p.loss(z)) / t
    slope_minus = (p.loss(z - t * v) - p.loss(z)) / t
    assert slope_plus > 1e-3 and slope_minus > 1e-3  # a kink (V-shape), not a smooth minimum
    # the a.e. gradient formula 2 sign(r_i) <a_i,x> a_i / m, explicitly
    x = np.random.default_rng(2).standard_normal(6)
    s = p.A @ x
    expected = 2 * (np.sign(s**2 - p.y) * s) @ p.A / p.m
    assert np.allclose(p.gradient(x), expected, rtol=1e-13)


# -- population loss = expectation of the empirical ℓ2 loss (Monte Carlo) -------------------

def test_population_equals_expected_empirical_loss_monte_carlo():
    """E over the Gaussian a_i of the empirical ℓ2 loss (and gradient) is the closed form.

    K = 3000 independent problems (seeds), each with m = 32 fresh measurements; the point is
    x = alpha x* + beta w (w ⟂ x*, unit) for each problem, so the population values are the
    same closed-form numbers for every draw.  Pass: |mean - closed form| <= 4 SE.
    """
    n, m, K = 5, 32, 3000
    alpha, beta = 0.6, 0.9
    losses = np.empty(K)
    grads = np.empty((K, 2))
    for k in range(K):
        p = csm.get_problem("phase_retrieval", n=n, m=m, loss="l2", seed=10_000 + k)
        z = p.x_star
        w = np.linalg.qr(np.column_stack([z, np.eye(n)]))[0][:, 1]
        x = alpha * z + beta * w
        losses[k] = p.loss(x)
        g = p.gradient(x)
        grads[k] = (g @ z, g @ w)
    pop = csm.get_problem("phase_retrieval", n=n, loss="population")
    z = pop.x_star
    w = np.linalg.qr(np.column_stack([z, np.eye(n)]))[0][:, 1]
    x = alpha * z + beta * w
    gpop = pop.gradient(x)
    expected = [pop.loss(x), gpop @ z, gpop @ w]
    q = alpha**2 + beta**2  # closed form independent of the problem object:
    assert np.isclose(expected[0], 0.25 * (3 * q**2 - 2 * q - 4 * alpha**2 + 3), rtol=1e-14)
    assert np.isclose(expected[1], (3 * q - 1) * alpha - 2 * alpha, rtol=1e-14)
    samples = [losses, grads[:, 0], grads[:, 1]]
    for s, e in zip(samples, expected):
        se = s.std(ddof=1) / np.sqrt(K)
        assert abs(s.mean() - e) <= 4 * se, (s.mean(), e, se)
    # the test has power: a 10% error in the closed form would be detected
    assert abs(1.1 * expected[0] - losses.mean()) > 4 * losses.std(ddof=1) / np.sqrt(K)


def test_population_hessian_equals_expected_empirical_hessian():
    """E[hess of empirical ℓ2] = population Hessian, from one problem with m = 200,000
    measurements (the average over measurements is the Monte Carlo mean; 4.5 SE per entry)."""
    n, m = 4, 200_000
    p = csm.get_problem("phase_retrieval", n=n, m=m, loss="l2", seed=5)
    pop = csm.get_problem("phase_retrieval", n=n, loss="population", seed=5)
    x = np.array([0.3, -0.7, 0.2, 0.5])
    s = p.A @ x
    terms = (3 * s**2 - p.y)[:, None, None] * p.A[:, :, None] * p.A[:, None, :]
    se = terms.std(axis=0, ddof=1) / np.sqrt(m)
    H = p.hessian(x)
    assert np.allclose(H, terms.mean(axis=0), rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(H - pop.hessian(x)) <= 4.5 * se)

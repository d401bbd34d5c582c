"""Phase retrieval: critical points, their kinds, classification, center-stable manifolds.

References: the closed-form critical set of the population loss (docs/theory.md §6), Hessian
eigenvalues computed here with ``numpy.linalg.eigvalsh``, gradient norms, and for the
manifold the exact invariance of the hyperplane ``x ⟂ x*`` under gradient descent on the
population loss (``grad F(x) = (3|x|^2 - |z|^2) x`` there), which makes the center-stable
manifold at a sphere saddle exactly that hyperplane near the saddle.
"""

from __future__ import annotations

import numpy as np
import pytest

import csm

N = 6


def eig(p, theta):
    return np.linalg.eigvalsh(p.hessian(theta))


def kind_from_eigs(ev, tol=1e-8):
    if ev[0] < -tol and ev[-1] > tol:
        return "strict_saddle"
    if ev[-1] < -tol:
        return "local_maximum"
    if ev[0] > tol:
        return "minimum"
    return "degenerate"


@pytest.fixture(scope="module")
def pop():
    return csm.get_problem("phase_retrieval", n=N, loss="population", seed=2)


@pytest.fixture(scope="module")
def emp():
    return csm.get_problem("phase_retrieval", n=N, m=64, loss="l2", seed=2)


# -- population loss -----------------------------------------------------------------------

def test_population_critical_points_closed_form(pop):
    z = pop.x_star
    cps = pop.critical_points()
    labels = [c.label for c in cps]
    assert labels[:3] == ["origin", "global-min+", "global-min-"]
    assert sum(c.kind == "strict_saddle" for c in cps) == 4
    for c in cps:
        assert np.linalg.norm(pop.gradient(c.theta)) <= 1e-10
        ev = eig(pop, c.theta)
        assert c.info["closed_form"] is True
        assert np.isclose(c.info["least_eigenvalue"], ev[0], atol=1e-10)
        assert c.info["n_negative"] == int(np.sum(ev < -1e-8))
        assert c.info["n_zero"] == int(np.sum(np.abs(ev) <= 1e-8))
        if c.kind == "strict_saddle":
            x = c.theta
            assert abs(x @ z) <= 1e-14 and np.isclose(x @ x, (z @ z) / 3, rtol=1e-14)
            # eigenvalues 2|z|^2, -2|z|^2 and n - 2 zeros (center directions)
            assert np.allclose(ev, np.sort(np.r_[-2.0, np.zeros(N - 2), 2.0]), atol=1e-12)
            assert c.info["least_eigenvalue"] == pytest.approx(-2 * (z @ z), abs=1e-12)
            assert c.info["n_negative"] == 1 and c.info["n_zero"] == N - 2
            assert c.loss == pytest.approx(2 / 3, abs=1e-14)
            assert kind_from_eigs(ev) == "strict_saddle"
        elif c.kind == "global_minimum":
            assert c.loss == pytest.approx(0, abs=1e-15)
            assert np.allclose(ev, np.sort(np.r_[np.full(N - 1, 2.0), 6.0]), atol=1e-12)
        else:
            assert c.kind == "local_maximum" and c.loss == pytest.approx(0.75, abs=1e-15)
            assert np.allclose(ev, np.sort(np.r_[-3.0, np.full(N - 1, -1.0)]), atol=1e-12)


def test_population_critical_set_is_complete(pop):
    """From random starts, Newton on the gradient only finds points of the listed set
    (0, ±x*, the saddle sphere): the closed-form classification is complete."""
    from csm.critical import locate_zeros

    X0 = np.random.default_rng(3).standard_normal((60, N)) * 0.8
    X, gn = locate_zeros(pop.gradient, pop.hessian, X0)
    conv = gn <= 1e-12
    assert conv.sum() >= 40
    kinds = {c.kind for c in pop.classify(X[conv], tol=1e-8, grad_tol=1e-10)}
    assert "not_critical" not in kinds
    assert kinds <= {"local_maximum", "global_minimum", "strict_saddle"}


def test_population_classify(pop):
    z = pop.x_star
    rng = np.random.default_rng(4)
    for c in pop.critical_points():
        got = pop.classify(c.theta)
        assert got.kind == c.kind
        if c.kind != "strict_saddle":
            assert got.label == c.label
    # any point of the sphere, not only the listed representatives
    w = rng.standard_normal(N)
    w -= (w @ z) * z
    x = w / np.linalg.norm(w) * np.sqrt(z @ z / 3)
    got = pop.classify(x)
    assert (got.kind, got.label) == ("strict_saddle", "saddle-sphere")
    assert got.info["least_eigenvalue"] == pytest.approx(-2.0)
    # near but not at a critical point: the gradient rule rejects it
    assert pop.classify(x + 1e-3 * z).kind == "not_critical"
    assert pop.classify(z + 1e-9 * w).kind == "global_minimum"
    assert pop.classify(rng.standard_normal(N)).kind == "not_critical"
    # batch = list of single results
    X = np.stack([x, z, np.zeros(N), rng.standard_normal(N)])
    batch = pop.classify(X)
    assert [b.kind for b in batch] == [pop.classify(v).kind for v in X]


def test_gradient_descent_endpoints_are_global_minima(pop):
    """GD from Gaussian initialisations escapes the saddle sphere and the origin: all
    end points classify as global minima (Corollary 2.3 / Proposition 2.5 in action)."""
    X = pop.sample(np.random.default_rng(8), 40)
    g = pop.local_map(pop.critical_points()[0], 0.01)  # step * lambda_max(hess) < 2 on the orbits
    X = g.iterate(X, 4000)
    kinds = [c.kind for c in pop.classify(X, tol=1e-6, grad_tol=1e-8)]
    assert kinds == ["global_minimum"] * 40


def test_center_stable_manifold_at_population_saddle_sphere(pop):
    """dim_u = 1 (the direction x*), dim_cs = n - 1 (the radial stable direction and the n - 2
    center directions along the sphere).  Since {x ⟂ x*} is invariant under GD and attracted
    to the sphere, the manifold is locally that hyperplane: the graph is 0."""
    pytest.importorskip("csm.manifold")
    z = pop.x_star
    s = next(c for c in pop.critical_points() if c.kind == "strict_saddle")
    step = 0.1
    W = csm.center_stable_manifold(pop.local_map(s, step), s.theta)
    assert (W.dim_u, W.dim_cs) == (1, N - 1)
    assert W.dim_cs == 1 + s.info["n_zero"]
    assert np.allclose(W.eigenvalues_u, [1 + step * 2 * (z @ z)], rtol=1e-10)
    assert W.contraction < 1
    pts = W.sample(40, np.random.default_rng(1))
    assert np.max(np.abs(pts @ z)) <= 1e-10
    # points of the hyperplane near the saddle are on the graph; moving along x* by t
    # gives offset ±t (E_u = span(x*), unit basis vector)
    rng = np.random.default_rng(12)  # not seed 2: its first draw is x* itself
    D = rng.standard_normal((10, N))
    D -= np.outer(D @ z, z)
    D *= 0.3 * W.radius / np.linalg.norm(D, axis=1, keepdims=True)
    assert np.max(np.abs(W.offset(s.theta + D))) <= 1e-10
    t = 0.2 * W.radius
    assert np.allclose(np.abs(W.offset(s.theta + D + t * z)), t, rtol=1e-6)


# -- empirical ℓ2 loss ---------------------------------------------------------------------

def test_empirical_l2_exact_critical_points(emp):
    z = emp.x_star
    cps = {c.label: c for c in emp.critical_points()}
    o = cps["origin"]
    assert np.all(emp.gradient(o.theta) == 0)
    ev = eig(emp, o.theta)
    assert o.kind == "local_maximum" and ev[-1] < 0
    assert np.allclose(emp.hessian(o.theta), -(emp.A.T * emp.y) @ emp.A / emp.m, rtol=1e-12)
    for lab, x in (("global-min+", z), ("global-min-", -z)):
        c = cps[lab]
        assert np.array_equal(c.theta, x) and c.kind == "global_minimum"
        assert c.loss <= 1e-30 and np.linalg.norm(emp.gradient(x)) <= 1e-14
        assert eig(emp, x)[0] > 0


def test_empirical_l2_newton_located_saddles(emp):
    located = [c for c in emp.critical_points() if c.info.get("numerically_located")]
    assert len(located) >= 2 and len(located) % 2 == 0
    pairs = {}
    for c in located:
        g = np.linalg.norm(emp.gradient(c.theta))
        assert g <= 1e-9 and c.info["gradient_norm"] == pytest.approx(g, abs=1e-15)
        ev = eig(emp, c.theta)
        assert c.kind == kind_from_eigs(ev) == "strict_saddle"
        assert c.info["least_eigenvalue"] == pytest.approx(ev[0], abs=1e-10)
        assert c.info["n_negative"] == int(np.sum(ev < -1e-8)) >= 1
        assert c.info["n_zero"] == 0  # the sphere breaks into isolated critical points
        pairs.setdefault(c.label[:-1], []).append(c.theta)
    for a, b in pairs.values():  # listed as ±pairs (the loss is even)
        assert np.allclose(a, -b, atol=0)
    # deduplicated
    T = np.array([c.theta for c in located])
    dist = np.linalg.norm(T[:, None] - T[None], axis=2) + np.eye(len(T))
    assert dist.min() > 1e-6


def test_empirical_saddles_converge_to_the_population_sphere():
    """As m grows the located saddles approach the population sphere at rate ~ sqrt(n/m)."""
    dists = []
    for m in (2048, 32768):
        p = csm.get_problem("phase_retrieval", n=N, m=m, loss="l2", seed=2)
        z = p.x_star
        X = np.array([c.theta for c in p.critical_points() if c.info.get("numerically_located")])
        a = X @ z
        perp = np.linalg.norm(X - np.outer(a, z), axis=1)
        dists.append(np.max(np.sqrt(a**2 + (perp - 1 / np.sqrt(3)) ** 2)))
    assert dists[1] < 0.5 * dists[0] and dists[1] < 3 * np.sqrt(N / 32768)


def test_empirical_classify_and_kinds(emp):
    for c in emp.critical_points():
        got = emp.classify(c.theta)
        assert (got.kind, got.label) == (c.kind, c.label)
    assert emp.classify(np.full(N, 0.3)).kind == "not_critical"


def test_center_stable_manifold_at_empirical_saddle(emp):
    """At an isolated empirical saddle there are no center directions: dim_u is the number
    of negative Hessian eigenvalues and the graph passes the a-posteriori verification."""
    pytest.importorskip("csm.manifold")
    s = next(c for c in emp.critical_points() if c.kind == "strict_saddle")
    step = 0.5 / eig(emp, s.theta)[-1]  # step * lambda_max < 2: no flip instability
    W = csm.center_stable_manifold(emp.local_map(s, step), s.theta)
    assert W.dim_u == s.info["n_negative"] and W.dim_cs == N - W.dim_u
    assert W.verify(n=16, deltas=(1e-2 * W.radius, 1e-4 * W.radius)).passed


# -- empirical ℓ1 loss ---------------------------------------------------------------------

def test_l1_critical_points():
    p = csm.get_problem("phase_retrieval", n=N, m=64, loss="l1", seed=2)
    cps = {c.label: c for c in p.critical_points()}
    assert set(cps) == {"origin", "global-min+", "global-min-"}
    o = cps["origin"]
    assert np.all(p.gradient(o.theta) == 0)
    # smooth near 0: F(x) = F(0) - x^T A^T A x / m, so the Hessian is -2 A^T A / m
    assert np.allclose(p.hessian(o.theta), -2 * p.A.T @ p.A / p.m, rtol=1e-12)
    x = 1e-3 * np.random.default_rng(0).standard_normal(N)
    assert p.loss(x) == pytest.approx(p.loss(o.theta) - x @ p.A.T @ p.A @ x / p.m, rel=1e-12)
    assert o.kind == "local_maximum" and o.info["n_negative"] == N
    for lab in ("global-min+", "global-min-"):
        c = cps[lab]
        assert c.kind == "global_minimum" and c.loss == 0.0 and c.info["smooth"] is False
        assert np.all(p.gradient(c.theta) == 0)
        assert p.classify(c.theta).kind == "global_minimum"
        # non-smooth minimum: classified by distance only (the gradient is O(1) nearby)
        near = c.theta + 1e-6 * np.ones(N)
        assert np.linalg.norm(p.gradient(near)) > 1e-2
        assert p.classify(near).kind == "global_minimum"


def test_underdetermined_l2_zero_loss_points_are_global_minima():
    """m < n: the zero-loss set is large; located points with loss 0 are global minima."""
    p = csm.get_problem("phase_retrieval", n=5, m=3, loss="l2", seed=0)
    kinds = {}
    for c in p.critical_points():
        assert np.linalg.norm(p.gradient(c.theta)) <= 1e-9
        kinds[c.label] = c.kind
        if c.loss <= 1e-20:
            assert c.kind == "global_minimum"
        else:
            assert c.kind != "global_minimum"
        assert p.classify(c.theta).kind == c.kind
    assert kinds["origin"] == "local_maximum"
    assert "global-min-1+" in kinds and "strict_saddle" in kinds.values()

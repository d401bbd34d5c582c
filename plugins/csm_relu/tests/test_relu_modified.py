"""The modified gradient G_J, its Jacobian and the local maps Psi_J (docs/theory.md §4, Lemmas 4.2-4.3)."""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm.maps import fd_jacobian
from csm_relu import ReluProblem


def _near_semi_inactive(p: ReluProblem, rng, n: int, spread: float):
    """Networks whose neuron 0 has w > 0, t near beta and neuron 1 w < 0, t near alpha."""
    N = p.N
    X = p.sample(rng, n)
    X[:, 0] = np.abs(X[:, 0]) + 0.2
    t0 = p.beta + spread * rng.standard_normal(n)
    X[:, N] = -X[:, 0] * t0
    X[:, 1] = -np.abs(X[:, 1]) - 0.2
    t1 = p.alpha + spread * rng.standard_normal(n)
    X[:, N + 1] = -X[:, 1] * t1
    return X, t0, t1


@pytest.mark.parametrize("tg", [(0.0, 1.0), (0.3, -1.0, 0.5, 0.8)])
def test_modified_gradient_equals_gradient_for_matching_neurons(tg):
    p = ReluProblem(5, (-1.0, 2.0), tg)
    X, t0, t1 = _near_semi_inactive(p, np.random.default_rng(0), 400, 0.1)
    # make some of them exactly semi-inactive
    X[:50, p.N] = -X[:50, 0] * p.beta
    X[25:75, p.N + 1] = -X[25:75, 1] * p.alpha
    t0[:50], t1[25:75] = p.beta, p.alpha
    G = p.gradient(X)
    GJ = p.modified_gradient(X, [0], [1])
    match = (t0 <= p.beta) & (t1 >= p.alpha)   # type-2-active or semi-inactive, matching sign
    assert match.sum() > 100 and (~match).sum() > 100
    np.testing.assert_array_equal(GJ[match], G[match])
    # elsewhere only the J coordinates differ, and they do differ
    other = [i for i in range(p.dim) if i not in (0, 1, p.N, p.N + 1, 2 * p.N, 2 * p.N + 1)]
    np.testing.assert_array_equal(GJ[:, other], G[:, other])
    assert np.all(np.max(np.abs(GJ[~match] - G[~match]), axis=1) > 0)


@pytest.mark.parametrize("tg", [(0.0, 1.0), (0.3, -1.0, 0.5, 0.8)])
def test_modified_jacobian_equals_finite_differences(tg):
    p = ReluProblem(5, (-1.0, 2.0), tg)
    X, _, _ = _near_semi_inactive(p, np.random.default_rng(1), 150, 0.05)
    D = p.modified_jacobian(X, [0], [1])
    Dfd = fd_jacobian(lambda Y: p.modified_gradient(Y, [0], [1]), X)
    rel = np.max(np.abs(D - Dfd), axis=(1, 2)) / np.max(np.abs(D), axis=(1, 2))
    assert rel.max() <= 1e-6, rel.max()
    # rows of the other neurons and of c are the Hessian's rows; empty J gives the Hessian
    H = p.hessian(X)
    rows = [i for i in range(p.dim) if i not in (0, 1, p.N, p.N + 1, 2 * p.N, 2 * p.N + 1)]
    np.testing.assert_array_equal(D[:, rows], H[:, rows])
    np.testing.assert_array_equal(p.modified_jacobian(X), H)


def test_jacobian_symmetric_at_semi_inactive_while_gradient_has_kinks():
    """Lemma 4.3 (ii): D G_J symmetric at semi-inactive J-neurons; G itself is not
    differentiable there (one-sided difference quotients disagree)."""
    p = ReluProblem(4, (0.0, 1.0), (0.0, 1.0))
    checked = 0
    for c in p.critical_points():
        jp, jm = c.info["J_plus"], c.info["J_minus"]
        if not (jp or jm):
            continue
        D = p.modified_jacobian(c.theta, jp, jm)
        assert np.max(np.abs(D - D.T)) <= 1e-15 * np.max(np.abs(D)), c.label
        th = c.theta
        h = 1e-7
        for j in jp + jm:
            if th[2 * p.N + j] == 0.0:   # flat: G is differentiable
                continue
            e = np.zeros(p.dim)
            e[p.N + j] = 1.0
            fwd = (p.gradient(th + h * e) - p.gradient(th)) / h
            bwd = (p.gradient(th) - p.gradient(th - h * e)) / h
            gap = abs(fwd[p.N + j] - bwd[p.N + j])
            # the jump is 2 v_j e(t_j) / |w_j| (docs/theory.md §4)
            t = p.beta if j in jp else p.alpha
            et = p.realization(th, np.array([t]))[0] - p.target_function(t)
            expected = abs(2 * th[2 * p.N + j] * et / abs(th[j]))
            assert expected > 1e-3 and abs(gap - expected) <= 1e-5, (c.label, gap, expected)
            # G_J is differentiable: its one-sided quotients agree with D G_J
            fJ = (p.modified_gradient(th + h * e, jp, jm) - p.modified_gradient(th, jp, jm)) / h
            bJ = (p.modified_gradient(th, jp, jm) - p.modified_gradient(th - h * e, jp, jm)) / h
            np.testing.assert_allclose(fJ, D[:, p.N + j], atol=1e-5)
            np.testing.assert_allclose(bJ, D[:, p.N + j], atol=1e-5)
            checked += 1
    assert checked >= 4


def test_local_map_is_plain_or_modified():
    p = ReluProblem(4)
    cps = {c.label: c for c in p.critical_points()}
    g = p.local_map(cps["zigzag-n1-inactive"], 0.1)
    assert isinstance(g, csm.GradientDescentMap) and g.problem is p
    s = cps["zigzag-n1-semi-inactive-plus"]
    g = p.local_map(s, 0.1)
    np.testing.assert_allclose(g(s.theta), s.theta, atol=1e-15)
    D = p.modified_jacobian(s.theta, s.info["J_plus"], s.info["J_minus"])
    np.testing.assert_allclose(g.jacobian(s.theta), np.eye(p.dim) - 0.1 * D, atol=1e-15)
    # array input works too, and J is taken from the point's semi-inactive neurons
    g2 = p.local_map(s.theta, 0.1)
    x = s.theta + 1e-3 * np.random.default_rng(0).standard_normal(p.dim)
    np.testing.assert_array_equal(g2(x), x - 0.1 * p.modified_gradient(x, [2], []))


def test_modified_gradient_input_validation():
    p = ReluProblem(3)
    th = p.sample(np.random.default_rng(0), 1)[0]
    with pytest.raises(csm.InputError, match="J_plus"):
        p.modified_gradient(th, [3], [])
    with pytest.raises(csm.InputError, match="disjoint"):
        p.modified_gradient(th, [1], [1])
    with pytest.raises(csm.ShapeError, match="J_minus"):
        p.modified_gradient(th, [], np.array([True, False]))
    np.testing.assert_array_equal(p.modified_gradient(th, np.array([False] * 3)),
                                  p.gradient(th))


@pytest.mark.parametrize("label,step,dim_u", [
    ("zigzag-n0-semi-inactive-plus", 0.1, 1),
    ("zigzag-n0-flat-semi-active", 0.1, 1),
    ("zigzag-n1-inactive", 0.2, 2),
    ("zigzag-n1-semi-inactive-plus", 0.2, 3),
    ("zigzag-n2", 0.5, 4),
])
def test_center_stable_manifold_at_zigzag_saddles(label, step, dim_u):
    """Theorem 2.2 applied to Psi_J at zigzag saddles of layers 0, 1, 2 (N = 4):
    dim E_u = number of negative eigenvalues of D G_J."""
    p = ReluProblem(4)
    s = next(c for c in p.critical_points() if c.label == label)
    W = csm.center_stable_manifold(p.local_map(s, step), s.theta, tol=1e-9)
    assert W.dim_u == s.info["n_negative"] == dim_u
    assert W.dim_cs == p.dim - W.dim_u
    assert W.contraction < 1
    # the fixed point lies on its own manifold
    assert np.max(np.abs(W.offset(s.theta))) <= 1e-9

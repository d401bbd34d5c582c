"""Stationarity and escape neurons (arXiv 2402.05626), differentiable regions (arXiv
2002.04763) and network embedding."""

from __future__ import annotations

import math

import numpy as np
import pytest

import csm
from csm_network import NetworkProblem
from csm_network.stationarity import line_derivatives, special_points

SHALLOW = [
    ((1, 3, 1), "relu", "grid:7"),
    ((2, 3, 1), "relu", "teacher:8,1"),
    ((2, 3, 2), "relu", "teacher:8,2"),
    ((1, 4, 2), "leaky_relu:0.2", "teacher:6,3"),
]


def _loss_on_line(p, theta, delta, t):
    return float(p.loss(theta + t * delta))


@pytest.mark.parametrize("widths,act,data", SHALLOW)
def test_zero_neuron_point_is_stationary_every_neuron_escapes_not_a_minimum(widths, act, data):
    p = NetworkProblem(widths, act, data=data)
    theta = special_points(p)["zero-neurons"]
    rep = p.stationarity(theta)
    assert rep.stationary is True and rep.local_minimum is False
    assert rep.escape_indices == list(range(widths[1]))
    L0 = p.loss(theta)
    for e in rep.escape_neurons:
        assert e.second_derivative < 0 and abs(np.linalg.norm(e.direction) - 1) < 1e-12
        # the direction only moves neuron e.index; the loss really goes down along it
        t = 1e-3
        assert _loss_on_line(p, theta, e.direction, t) < L0
        fd = 2 * (_loss_on_line(p, theta, e.direction, t) - L0) / t ** 2
        assert fd == pytest.approx(e.second_derivative, rel=1e-2)


@pytest.mark.parametrize("widths,act,data", [s for s in SHALLOW if s[1] == "relu"])
def test_all_dead_point_is_a_stationary_local_minimum_without_escape_neurons(widths, act, data):
    p = NetworkProblem(widths, act, data=data)
    theta = special_points(p)["all-dead"]
    assert np.all(p.activation_pattern(theta) == -1)
    rep = p.stationarity(theta)
    assert rep.stationary is True and rep.escape_neurons == () and rep.local_minimum is True
    rng = np.random.default_rng(0)  # no first- or second-order descent along random directions
    for v in rng.standard_normal((20, p.dim)):
        d1, d2 = line_derivatives(p, theta, v)
        assert d1 >= -1e-12 and (abs(d1) > 1e-12 or d2 >= -1e-12)


def test_non_stationary_points_come_with_a_descent_direction():
    p = NetworkProblem((2, 3, 2), "relu", data="teacher:8,2")
    for theta in p.sample(np.random.default_rng(1), 5):
        rep = p.stationarity(theta)
        assert rep.stationary is False and rep.local_minimum is False
        assert rep.directional_derivative < 0
        assert p.loss(theta + 1e-6 * rep.descent_direction) < p.loss(theta)


def test_kinks_decided_by_the_cone_programs():
    """Data exactly on a kink of an output-weighted neuron (the non-differentiable case)."""
    x = np.array([[-1.0], [0.0], [1.0], [2.0]])
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(12):
        y = rng.standard_normal(4)
        p = NetworkProblem((1, 1, 1), "relu", inputs=x, targets=y)
        # w = 1, b = 0: datum x = 0 on the kink; (a, c) by least squares => smooth conditions hold
        A = np.stack([np.maximum(x[:, 0], 0), np.ones(4)], axis=1)
        a, c = np.linalg.lstsq(A, y, rcond=None)[0]
        theta = p.pack([(np.array([[1.0]]), np.array([0.0])), (np.array([[a]]), np.array([c]))])
        rep = p.stationarity(theta)
        assert rep.kinks == (1,)
        seen.add(rep.stationary)
        if rep.stationary:
            for v in np.random.default_rng(0).standard_normal((200, p.dim)):
                assert line_derivatives(p, theta, v)[0] >= -1e-9
        else:
            assert line_derivatives(p, theta, rep.descent_direction)[0] < 0
    assert seen == {True, False}


def test_vector_output_escape_neuron_with_nonzero_output_weight():
    """A rank-one ("PCA") saddle: a_j != 0, psi_j(u) orthogonal to a_j; descent needs the
    output bias too (the exact block second-order form finds it)."""
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    Y = np.c_[2 * X[:, 0], X[:, 1]]
    p = NetworkProblem((2, 1, 2), "leaky_relu:0.1", inputs=X, targets=Y)
    theta = p.pack([(np.array([[0.0, 1.0]]), np.array([5.0])),
                    (np.array([[0.0], [1.0]]), np.array([0.0, -5.0]))])
    assert np.abs(p.gradient(theta)).max() == 0.0
    rep = p.stationarity(theta)
    assert rep.stationary and rep.escape_indices == [0] and rep.local_minimum is False
    lam = np.linalg.eigvalsh(p.hessian(theta))[0]  # smooth here: the Hessian agrees
    assert rep.escape_neurons[0].second_derivative == pytest.approx(lam, rel=1e-8)


def test_line_derivatives_match_finite_differences():
    p = NetworkProblem((2, 3, 2), "leaky_relu:0.3", data="teacher:7,5")
    rng = np.random.default_rng(2)
    theta, delta = p.sample(rng, 2)
    d1, d2 = line_derivatives(p, theta, delta)
    h = 1e-4
    Lp, L0, Lm = (_loss_on_line(p, theta, delta, t) for t in (h, 0.0, -h))
    assert d1 == pytest.approx((Lp - Lm) / (2 * h), rel=1e-6)
    assert d2 == pytest.approx((Lp - 2 * L0 + Lm) / h ** 2, rel=1e-4)


def test_stationarity_needs_a_shallow_relu_like_network():
    with pytest.raises(csm.InputError, match="ReLU-like"):
        NetworkProblem((1, 2, 1), "square", data="grid:4").stationarity(np.zeros(7))
    with pytest.raises(csm.InputError, match="one hidden layer"):
        NetworkProblem((1, 2, 2, 1), "relu", data="grid:4").stationarity(np.zeros(13))


# ---------------------------------------------------------------------- regions (Liu)
def test_region_minimum_of_a_random_pattern():
    p = NetworkProblem((1, 3, 1), "relu", data="grid:7", target="poly:0,-1,2")
    theta = p.sample(np.random.default_rng(4), 1)[0]
    pat = p.activation_pattern(theta)
    assert pat.shape == (3, 7) and set(np.unique(pat)) <= {-1, 1}
    r = p.region_minimum(pat)
    assert r.nonempty and r.loss <= p.loss(theta) + 1e-15
    if r.genuine:
        assert np.array_equal(p.activation_pattern(r.theta) > 0, r.pattern)
        assert p.loss(r.theta) == pytest.approx(r.loss, abs=1e-12)


def test_enumeration_of_genuine_differentiable_local_minima():
    p = NetworkProblem((1, 2, 1), "relu", data="grid:6", target="poly:0,0,1")
    mins = p.differentiable_local_minima()
    assert len(mins) > 0 and all(r.genuine for r in mins)
    assert [r.loss for r in mins] == sorted(r.loss for r in mins)
    for r in mins:
        assert np.array_equal(p.activation_pattern(r.theta) > 0, r.pattern)
        assert p.loss(r.theta) == pytest.approx(r.loss, abs=1e-12)
        assert np.abs(p.gradient(r.theta)).max() < 1e-9
        # a differentiable local minimum has no escape neuron (arXiv 2402.05626)
        assert p.stationarity(r.theta).local_minimum is True
    # unique least-squares regions: genuineness is the plain sign test of the products
    X = np.hstack([p.inputs, np.ones((p.m, 1))])
    for r in (r for r in mins if r.unique):
        for j in range(2):
            s = np.where(r.pattern[j], 1.0, -1.0) * (X @ r.products[j])
            assert np.all(s > 0) or np.all(s < 0) or np.allclose(r.products[j], 0)
    # 6 grid points -> 12 patterns per neuron -> 78 unordered pairs of regions examined
    assert math.comb(12 + 1, 2) == 78


def test_region_errors():
    p = NetworkProblem((1, 2, 1), "relu", data="grid:3")
    with pytest.raises(csm.InputError, match="kink"):
        p.region_minimum([[1, 0, -1], [1, 1, 1]])
    with pytest.raises(csm.ShapeError):
        p.region_minimum(np.ones((3, 3), dtype=bool))
    empty = p.region_minimum([[True, False, True], [True, True, True]])  # not a half-line
    assert not empty.nonempty and not empty.genuine
    with pytest.raises(csm.InputError, match="scalar output"):
        NetworkProblem((1, 2, 2), "relu", data="teacher:3").region_minimum(np.ones((2, 3), bool))
    with pytest.raises(csm.InputError, match="max_combinations"):
        NetworkProblem((1, 3, 1), data="grid:12").differentiable_local_minima(max_combinations=10)


# ---------------------------------------------------------------------- embedding
def test_embedding_changes_types_as_expected():
    p = NetworkProblem((1, 2, 1), "relu", data="grid:8", target="poly:0,0,1")
    best = p.differentiable_local_minima()[0]
    zero = p.embed(best.theta, "zero")
    assert zero.problem.widths == (1, 3, 1)
    assert zero.before.local_minimum is True and zero.after.local_minimum is False
    assert zero.after.escape_indices == [2] and "saddle" in zero.change
    dead = p.embed(best.theta, "zero", weights=[0.0, -1.0])
    assert dead.after.local_minimum is True
    split = p.embed(best.theta, "split", neuron=0, ratio=0.3)
    assert split.after.local_minimum is True
    np.testing.assert_allclose(split.problem.loss(split.theta), p.loss(best.theta), rtol=1e-12)
    with pytest.raises(csm.InputError, match="neuron"):
        p.embed(best.theta, "split", neuron=5)
    with pytest.raises(csm.InputError, match="kind"):
        p.embed(best.theta, "duplicate")

"""Orthogonal inputs from small initialisation (Boursier, Pillaud-Vivien, Flammarion, arXiv
2206.00939; issue 13 (d)): the closed forms, the reparametrisation of the plugin, the saddle
certificate and the quick ``network-orthogonal`` experiment (docs/theory.md §1.11)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import csm
from csm_network import orthogonal as O


@pytest.fixture(scope="module")
def model():
    return O.orthogonal_model(O.LABELS_A, 8, seed=3)


def test_simplex_inputs_make_the_augmented_inputs_orthogonal():
    for n, dim in ((2, None), (4, None), (5, 7)):
        X = O.simplex_inputs(n, dim, seed=1)
        Xt = np.hstack([X, np.ones((n, 1))])
        assert X.shape == (n, n - 1 if dim is None else dim)
        assert np.allclose(Xt @ Xt.T, n * np.eye(n), atol=1e-13)


def test_model_is_the_plugin_with_frozen_biases(model):
    rng = np.random.default_rng(0)
    th = model.sample(rng, 3)
    Th = model.embed(th)
    q = model.net
    (W1, b1), (W2, c) = q.unpack(Th[0])
    assert c[0] == 0.0 and model.dim == q.dim - 1
    assert np.allclose(model.loss(th), q.loss(Th), rtol=1e-15, atol=0)
    G = q.gradient(Th)
    assert np.array_equal(model.gradient(th), G[:, :-1])  # the output bias is not a variable
    assert np.allclose(model.restrict(Th), th)
    with pytest.raises(csm.InputError):
        model.restrict(Th + 1.0)  # non-zero output bias
    # balanced initialisation: |a_j| = |w~_j|
    Wt, a = model.neurons(th[0])
    assert np.allclose(np.abs(a), np.linalg.norm(Wt, axis=1))
    assert np.allclose(model.from_neurons(Wt, a), th[0])
    # the hidden bias is the constant input coordinate: same loss and gradient as the plugin on
    # x~ = (x, 1) with hidden biases frozen, and as a plain forward pass
    eq = O.equivalence(model, rng, 4)
    assert max(eq.values()) <= 1e-13


def test_min_norm_interpolator_closed_form_against_a_numerical_minimum():
    """The closed form interpolates and no interpolating network found by SLSQP has a smaller
    (1/2)|theta|^2; the best one reaches it (unequal norms: the weights are |x~_k|^-2)."""
    from scipy.optimize import minimize

    m = O.orthogonal_model((1.0, 0.5, -0.8), 4, hidden_bias=False, norms=(0.7, 1.6, 1.2), seed=2)
    mn = O.min_norm_interpolator(m)
    Xt, y = m.inputs_aug, m.labels
    assert np.allclose(mn(Xt), y, atol=1e-14)
    n2 = np.sum(Xt**2, axis=1)
    assert math.isclose(mn.norm, math.sqrt(np.sum((y**2 / n2)[y > 0]))
                        + math.sqrt(np.sum((y**2 / n2)[y < 0])), rel_tol=1e-12)
    # one neuron per datum interpolates with a larger norm
    assert sum(abs(v) / np.linalg.norm(x) for v, x in zip(y, Xt)) > mn.norm + 0.05

    rng = np.random.default_rng(0)
    best = math.inf
    cons = {"type": "eq", "fun": lambda v: O.forward(m, v) - y}
    for _ in range(12):
        v0 = m.sample(rng, 1)[0]
        r = minimize(lambda v: 0.5 * v @ v, v0, jac=lambda v: v, constraints=[cons],
                     method="SLSQP", options={"maxiter": 500, "ftol": 1e-14})
        if r.success and np.max(np.abs(O.forward(m, r.x) - y)) <= 1e-8:
            assert 0.5 * r.x @ r.x >= mn.norm - 1e-6
            best = min(best, 0.5 * r.x @ r.x)
    assert abs(best - mn.norm) <= 1e-5


def test_growth_rate_is_the_multiplier_of_the_linearisation(model):
    """w~ . D^ + |a| of one neuron is multiplied by exactly 1 + gamma r per step near 0, with
    r = (2/n) |(y_k |x~_k|)_{k in A}|; a wrong factor (1/n, |x~|^2, ...) fails by > 10 %."""
    gamma = 0.1
    th0 = model.sample(np.random.default_rng(5), 1)[0]
    Wt, a = model.neurons(th0)
    sets = O.growing_sets(model, th0)
    j = int(np.argmax(O.growth_rates(model, sets)))
    keep = np.zeros(model.N, dtype=bool)
    keep[j] = True
    Wt[~keep], a[~keep] = 0.0, 0.0
    # make neuron j active exactly on its growing set (so no kill transient)
    Xt = model.inputs_aug
    for k in range(model.n):
        if not sets[j, k] and Wt[j] @ Xt[k] > 0:
            Wt[j] -= 2 * (Wt[j] @ Xt[k]) / (Xt[k] @ Xt[k]) * Xt[k]
    th = 1e-9 * model.from_neurons(Wt, a)
    r = float(O.growth_rates(model, sets[j][None])[0])
    D = np.sign(a[j]) * (sets[j] * model.labels) @ Xt
    e = D / np.linalg.norm(D)
    T, _ = O.run(model, th, [1.0], gamma, 60)
    q = [float(model.neurons(t)[0][j] @ e + abs(model.neurons(t)[1][j])) for t in T[0]]
    ratio = (q[60] / q[20]) ** (1 / 40)
    assert abs(ratio - (1 + gamma * r)) <= 1e-9
    c2 = model.labels**2 * np.sum(Xt**2, axis=1)
    assert abs(ratio - (1 + gamma / model.n * math.sqrt(sets[j] @ c2))) > 0.01  # wrong factor


def test_prediction_levels_and_order(model):
    th0, _ = O.draw_start(model, np.random.default_rng(1), 2000)
    pr = O.predict(model, th0, 0.1)
    y = np.asarray(O.LABELS_A)
    assert pr.levels == pytest.approx((np.mean(y**2), np.sum(y[y < 0] ** 2) / 4))
    assert pr.first == "positive"
    # |x~_k|^2 = 4: r_class = (2/4) * 2 |y_class|
    assert pr.rate["positive"] == pytest.approx(math.hypot(1.0, 0.7))
    assert pr.rate["negative"] == pytest.approx(math.hypot(0.5, 0.35))
    with pytest.raises(csm.InputError):
        O.predict(O.orthogonal_model((1.0, -1.0), 4), th0[:0], 0.1)  # equal class rates


def test_certificate_accepts_the_saddles_and_rejects_other_points(model):
    zero = np.zeros(model.dim)
    c0 = O.certify_saddle(model, zero)
    assert c0.stationary and c0.saddle and len(c0.escapes) == model.N
    assert all(d1 == 0.0 and d2 < 0 and drop < 0 for (_, _, d1, d2, drop) in c0.escapes)
    # the saddle where the positive class is fitted: one neuron along u+, the others 0
    mn = O.min_norm_interpolator(model)
    Wt = np.zeros((model.N, model.inputs_aug.shape[1]))
    a = np.zeros(model.N)
    s = math.sqrt(np.linalg.norm(mn.u_plus))
    Wt[0], a[0] = mn.u_plus / s, s
    S1 = model.from_neurons(Wt, a)
    c1 = O.certify_saddle(model, S1)
    assert c1.stationary and c1.saddle
    assert c1.loss == pytest.approx(np.sum(np.asarray(O.LABELS_A)[2:] ** 2) / 4, rel=1e-14)
    # the global minimum: stationary, not a saddle
    Wt[1], a[1] = mn.u_minus / math.sqrt(np.linalg.norm(mn.u_minus)), -math.sqrt(
        np.linalg.norm(mn.u_minus))
    cg = O.certify_saddle(model, model.from_neurons(Wt, a))
    assert cg.stationary and not cg.saddle and cg.loss <= 1e-28
    # a fitted output weight off by 1 %: not stationary
    a2 = a.copy()
    a2[0] *= 1.01
    Wt[1], a2[1] = 0.0, 0.0
    assert not O.certify_saddle(model, model.from_neurons(Wt, a2)).stationary
    # snapping a point near S1 returns S1's kind
    rng = np.random.default_rng(0)
    near = S1 + 1e-4 * rng.standard_normal(model.dim)
    S, nz = O.snap_to_saddle(model, near, 0.1, zero_below=1e-2)
    assert nz == model.N - 1 and O.certify_saddle(model, S).saddle


def test_detect_plateaus_finds_the_levels_of_a_synthetic_curve():
    k = np.arange(400)
    L = 0.5 - 0.4 / (1 + np.exp(-(k - 100) / 3.0)) - 0.1 / (1 + np.exp(-(k - 250) / 3.0))
    L = np.maximum(L, 1e-16)
    found = O.detect_plateaus(L, flat=3e-3, floor=1e-12)
    assert [round(v, 3) for (_, _, v) in found] == [0.5, 0.1]
    assert O.detect_plateaus(np.full(5, 1.0), flat=1e-3) == []  # shorter than min_length


def test_violating_the_condition(model):
    th0, _ = O.draw_start(model, np.random.default_rng(1), 2000)
    assert min(O.paper_condition(model, th0).values()) >= 1
    k = int(np.argmax(model.labels))
    th1, n = O.violate_condition(model, th0, k, which="full")
    assert n >= 1 and O.paper_condition(model, th1)["positive"] == 0
    th2, _ = O.violate_condition(model, th0, k, which="all")
    assert not O.growing_sets(model, th2)[:, k].any()
    # the reflection only flips the pre-activation on datum k
    Z0 = model.neurons(th0)[0] @ model.inputs_aug.T
    Z2 = model.neurons(th2)[0] @ model.inputs_aug.T
    other = np.arange(model.n) != k
    assert np.allclose(Z0[:, other], Z2[:, other], atol=1e-14)
    with pytest.raises(csm.InputError):
        O.violate_condition(model, th0, k, which="some")


@pytest.mark.parametrize("kw", [
    {"labels": (1.0, 2.0)}, {"labels": (1.0, 0.0, -1.0)}, {"labels": (1.0, float("nan"), -1.0)},
    {"labels": (1.0, -1.0, 0.5), "dim": 1}, {"labels": (1.0, -0.5), "norms": (1.0, 1.0)},
    {"labels": (1.0, -0.5), "hidden_bias": False, "norms": (1.0, -1.0)}])
def test_bad_input_is_a_clear_error(kw):
    labels = kw.pop("labels")
    with pytest.raises(csm.InputError):
        O.orthogonal_model(labels, 4, **kw)


def test_bias_free_network_needs_one_hidden_relu_layer():
    q = csm.get_problem("network", widths=(1, 3, 3, 1), data="grid:5")
    with pytest.raises(csm.InputError):
        O.BiasFreeNetwork(q)
    q = csm.get_problem("network", widths=(1, 3, 1), activation="square", data="grid:5")
    with pytest.raises(csm.InputError):
        O.BiasFreeNetwork(q)


def test_quick_experiment_every_claim_agrees(tmp_path):
    assert "network-orthogonal" in {e.name for e in csm.list_experiments()}
    res = O.EXPERIMENT.run(csm.ExperimentConfig(quick=True, out_dir=tmp_path, seed=0))
    assert res.name == "network-orthogonal" and len(res.claims) >= 10
    for c in res.claims:
        assert c.agrees, (c.statement, c.measured, c.criterion)
    kap = next(c for c in res.claims if "sigma^kappa" in c.statement)
    assert kap.measured["sub_maximal_neurons"] > 0 and kap.measured["max_relative_error"] <= 0.03
    # gradient descent, not gradient flow: the flow's exponent is off by more than the tolerance
    assert abs(kap.expected["kappa_first_run"] / kap.expected["kappa_flow_first_run"] - 1) > 0.04
    for path in res.figures.values():
        assert (tmp_path / "figures").resolve() in [p.resolve() for p in
                                                     type(tmp_path)(path).parents]

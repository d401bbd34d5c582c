"""Critical points, layer values and classification (docs/theory.md §3, Proposition 4.5, Lemma 4.6)."""

from __future__ import annotations

import numpy as np
import pytest

from csm.maps import fd_jacobian
from csm_relu import ReluProblem
from csm_relu.critical import layer_value

AFFINE = [
    (4, (0.0, 1.0), (0.0, 1.0)),
    (5, (-2.0, 3.0), (1.0, -2.0)),
    (6, (0.0, 1.0), (0.5, 3.0)),
    (1, (0.0, 1.0), (0.0, 1.0)),
]
AIDS = [f"N{c[0]}-{c[1]}-{c[2]}" for c in AFFINE]


@pytest.mark.parametrize("N,iv,tg", AFFINE, ids=AIDS)
def test_every_listed_point_is_critical_with_its_layer_value(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    cps = p.critical_points()
    labels = [c.label for c in cps]
    assert len(set(labels)) == len(labels)
    vals = p.critical_values()
    layers = {c.info["layer"] for c in cps if c.info["layer"] is not None}
    assert layers == set(range(N // 2 + 1))
    assert any(c.kind == "global_minimum" for c in cps)
    assert any(c.kind == "local_minimum" for c in cps)
    for c in cps:
        g = p.gradient(c.theta)
        assert np.max(np.abs(g)) <= 1e-12, (c.label, np.max(np.abs(g)))
        L = p.loss(c.theta)
        if c.kind == "global_minimum":
            assert c.loss == 0.0 and L <= 1e-26
        else:
            n = c.info["layer"]
            assert c.loss == layer_value(p.rho, p.alpha, p.beta, n) == vals[n]
            assert abs(L - c.loss) <= 1e-12 * c.loss, (c.label, L, c.loss)


def test_critical_values_closed_form():
    p = ReluProblem(5, (-1.0, 2.0), (0.3, 2.0))
    vals = p.critical_values()
    expected = [4.0 * 27.0 / (12.0 * (2 * n + 1) ** 4) for n in range(3)] + [0.0]
    np.testing.assert_allclose(vals, expected, rtol=1e-15)
    assert ReluProblem(3, target=(2.0,)).critical_values().tolist() == [0.0]
    assert ReluProblem(3, target=(0.0, 1.0, 1.0)).critical_values().size == 0


@pytest.mark.parametrize("N,iv,tg", AFFINE[:3], ids=AIDS[:3])
def test_strict_saddles_have_negative_curvature_of_modified_hessian(N, iv, tg):
    """Lemma 4.6: D G_J has a negative eigenvalue at every saddle in S.  The reported value is
    checked against finite differences of G_J (independent of the analytic Jacobian)."""
    p = ReluProblem(N, iv, tg)
    for c in p.critical_points():
        lam = c.info["least_eigenvalue"]
        jp, jm = c.info["J_plus"], c.info["J_minus"]
        D = fd_jacobian(lambda Y: p.modified_gradient(Y, jp, jm), c.theta[None])[0]
        w = np.linalg.eigvalsh(0.5 * (D + D.T))
        scale = max(1.0, float(np.max(np.abs(w))))
        assert abs(w[0] - lam) <= 1e-5 * scale, (c.label, w[0], lam)
        if c.kind == "strict_saddle":
            assert c.info["in_S"]
            assert lam < -1e-6 and c.info["n_negative"] >= 1, c.label
        else:
            assert lam >= -1e-12 * max(1.0, abs(w[-1])), (c.label, lam)
            assert c.info["n_negative"] == 0
        if c.kind in ("local_minimum", "global_minimum"):
            assert not c.info["in_S"]


def test_zigzag_eigenvalues_of_theory_section_3():
    """docs/theory.md §4: on [0, 1], f(x) = x, layer n has 2n negative eigenvalues, least
    -0.0267 (n=1), -0.0085 (n=2), -0.0037 (n=3)."""
    p = ReluProblem(6, (0.0, 1.0), (0.0, 1.0))
    cps = {c.label: c for c in p.critical_points()}
    for n, least in [(1, -0.0267), (2, -0.0085), (3, -0.0037)]:
        c = cps[f"zigzag-n{n}-inactive"] if n < 3 else cps["zigzag-n3"]
        assert c.info["n_negative"] == 2 * n
        assert round(c.info["least_eigenvalue"], 4) == least
    # an extra negative direction from a semi-inactive neuron with rho v w > 0 ...
    assert cps["zigzag-n1-semi-inactive-plus"].info["n_negative"] == 3
    # ... with eigenvalue 2 v e(t)(1 + t^2)/|w| (docs/theory.md §3): v = 1/2, e(1) = -1/2 at layer 0
    assert abs(cps["zigzag-n0-semi-inactive-plus"].info["least_eigenvalue"] + 1.0) <= 1e-13
    # and none from semi-inactive neurons with rho v w < 0
    assert cps["zigzag-n1-semi-inactive-minus"].info["n_negative"] == 2


def test_zigzag_rescaling_gives_a_curve_of_critical_points():
    p = ReluProblem(4)
    c = next(c for c in p.critical_points() if c.label == "zigzag-n1-semi-inactive-plus")
    N = p.N
    for lam in (0.3, 2.5):
        th = c.theta.copy()
        for j in (0, 2):
            th[j] *= lam
            th[N + j] *= lam
            th[2 * N + j] /= lam
        assert np.max(np.abs(p.gradient(th))) <= 1e-13
        assert abs(p.loss(th) - c.loss) <= 1e-14
        assert p.classify(th).kind == "strict_saddle"


@pytest.mark.parametrize("label", ["dead-inactive", "dead-semi-inactive-minus"])
def test_dead_neuron_local_minima_survive_random_perturbations(label):
    p = ReluProblem(4, (0.0, 1.0), (0.0, 1.0))
    c = next(c for c in p.critical_points() if c.label == label)
    rng = np.random.default_rng(0)
    n = 10_000
    U = rng.standard_normal((n, p.dim))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    r = 10 ** rng.uniform(-7, -2, size=(n, 1))
    L = p.loss(c.theta + r * U)
    assert np.all(L >= c.loss * (1 - 1e-14)), (L.min() - c.loss)


def test_saddles_are_decreased_by_some_perturbation():
    """The same probe does detect the saddles (so the previous test can fail)."""
    p = ReluProblem(4, (0.0, 1.0), (0.0, 1.0))
    rng = np.random.default_rng(1)
    for label in ("zigzag-n0-semi-inactive-plus", "zigzag-n0-flat-semi-active",
                  "zigzag-n1-inactive"):
        c = next(c for c in p.critical_points() if c.label == label)
        U = rng.standard_normal((10_000, p.dim))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        L = p.loss(c.theta + 1e-2 * U)
        assert np.any(L < c.loss * (1 - 1e-12)), label


@pytest.mark.parametrize("N,iv,tg", AFFINE, ids=AIDS)
def test_classify_agrees_with_stated_kinds(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    for c in p.critical_points():
        cl = p.classify(c.theta)
        assert cl.kind == c.kind, (c.label, cl)
        assert cl.layer == c.info["layer"], (c.label, cl.layer)
        if c.kind in ("strict_saddle", "saddle"):
            assert cl.info["in_S"] == c.info["in_S"]
    X = p.sample(np.random.default_rng(4), 20)
    assert all(p.classify(x).kind == "not_critical" for x in X)


def test_classify_degenerate_saddle_is_outside_S():
    """A zigzag whose unused neuron is degenerate (w = b = 0, v != 0): critical for G (whose
    coordinates of a degenerate neuron vanish), a saddle, but not in S."""
    p = ReluProblem(3)
    c = next(c for c in p.critical_points() if c.label == "zigzag-n1-inactive")
    th = c.theta.copy()
    th[2], th[5], th[8] = 0.0, 0.0, 0.7
    assert np.max(np.abs(p.gradient(th))) <= 1e-14
    cl = p.classify(th)
    assert cl.kind == "saddle" and cl.layer == 1 and not cl.info["in_S"]


def test_non_affine_and_constant_targets():
    p = ReluProblem(3, (0.0, 1.0), (0.0, 0.0, 1.0))
    assert p.critical_points() == []
    q = ReluProblem(3, (0.0, 2.0), (1.5,))
    cps = q.critical_points()
    assert [c.kind for c in cps] == ["global_minimum"]
    assert q.loss(cps[0].theta) == 0.0 and np.all(q.gradient(cps[0].theta) == 0)
    assert q.classify(cps[0].theta).kind == "global_minimum"
    # the heuristic classification for non-affine targets is flagged as uncertified
    th = np.concatenate([np.ones(3), -2 * np.ones(3), np.zeros(3), [1.0 / 3.0]])
    cl = p.classify(th)   # constant network = mean of x^2: critical, L > 0
    assert cl.kind in ("strict_saddle", "local_minimum") and cl.info["certified"] is False


def test_global_minima_for_negative_slope_and_shifted_interval():
    p = ReluProblem(2, (-3.0, -1.0), (0.5, -4.0))
    for c in p.critical_points():
        if c.kind == "global_minimum":
            assert p.loss(c.theta) <= 1e-26
            x = np.linspace(-3, -1, 7)
            np.testing.assert_allclose(p.realization(c.theta, x), 0.5 - 4 * x, atol=1e-13)

"""Leaky ReLU via the neuron-doubling reduction D (paper §5, docs/theory.md §5)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

import csm
from csm.maps import fd_jacobian
from csm_leaky_relu import LeakyReluProblem
from csm_relu import ReluProblem

CONFIGS = [
    (2, 0.1, (0.0, 1.0), (0.0, 1.0)),
    (5, 0.3, (-2.0, 3.0), (1.0, -2.0)),
    (8, 0.7, (-2.0, 3.0), (0.5, -1.0, 2.0, 0.7)),
]
IDS = [f"N{c[0]}-a{c[1]}-deg{len(c[3]) - 1}" for c in CONFIGS]


def test_registered_and_validated():
    p = csm.get_problem("leaky_relu", N=3, slope=0.2, interval=(-1.0, 2.0), target=(0.0, 2.0))
    assert isinstance(p, LeakyReluProblem) and p.dim == 10 and p.name == "leaky_relu"
    for bad in (0.0, 1.0, -0.5, float("nan"), "x", True):
        with pytest.raises(csm.ParameterError, match="slope"):
            csm.get_problem("leaky_relu", slope=bad)
    with pytest.raises(csm.ParameterError, match="`N`"):
        csm.get_problem("leaky_relu", N=0)
    with pytest.raises(csm.ParameterError, match="interval"):
        csm.get_problem("leaky_relu", interval=(1.0, 0.0))


@pytest.mark.parametrize("N,a,iv,tg", CONFIGS, ids=IDS)
def test_reduction_identities(N, a, iv, tg):
    """L_leaky(theta) = L_relu,2N(D theta), grad = D^T G(D theta), H = D^T H D, realization."""
    p = LeakyReluProblem(N, a, iv, tg)
    r = ReluProblem(2 * N, iv, tg)
    X = p.sample(np.random.default_rng(0), 500)
    Y = p.reduce(X)
    np.testing.assert_array_equal(Y, X @ p.D.T)
    np.testing.assert_array_equal(p.loss(X), r.loss(Y))
    np.testing.assert_allclose(p.gradient(X), r.gradient(Y) @ p.D, rtol=0,
                               atol=1e-13 * np.abs(r.gradient(Y)).max())
    H = p.hessian(X[:20])
    np.testing.assert_allclose(H, p.D.T @ r.hessian(Y[:20]) @ p.D, rtol=1e-13,
                               atol=1e-13 * np.abs(H).max())
    # the realization is c + sum v sigma_a(w x + b) with sigma_a(z) = max(z, a z)
    x = np.linspace(iv[0], iv[1], 11)
    th = X[0]
    pre = th[:N, None] * x + th[N:2 * N, None]
    direct = th[-1] + th[2 * N:3 * N] @ np.maximum(pre, a * pre)
    np.testing.assert_allclose(p.realization(th, x), direct, rtol=1e-13, atol=1e-13)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("N,a,iv,tg", CONFIGS, ids=IDS)
def test_loss_equals_quadrature_of_the_leaky_network(N, a, iv, tg):
    p = LeakyReluProblem(N, a, iv, tg)
    X = p.sample(np.random.default_rng(1), 6)
    for th in X:
        t = -th[N:2 * N] / th[:N]
        pts = sorted(x for x in t if iv[0] < x < iv[1]) or None

        def e2(x):
            z = th[:N] * x + th[N:2 * N]
            return (th[-1] + th[2 * N:3 * N] @ np.maximum(z, a * z)
                    - np.polyval(tg[::-1], x)) ** 2

        ref = quad(e2, iv[0], iv[1], points=pts, epsabs=0, epsrel=1.2e-14, limit=500)[0]
        assert abs(p.loss(th) - ref) <= 1e-12 * ref


@pytest.mark.parametrize("N,a,iv,tg", CONFIGS, ids=IDS)
def test_gradient_hessian_hvp_against_finite_differences(N, a, iv, tg):
    p = LeakyReluProblem(N, a, iv, tg)
    rng = np.random.default_rng(2)
    X = p.sample(rng, 2000)
    G = p.gradient(X)
    D = rng.standard_normal(X.shape)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    h = 1e-5

    def f(s):
        return p.loss(X + s * D)

    fd = (4 * (f(h) - f(-h)) / (2 * h) - (f(2 * h) - f(-2 * h)) / (4 * h)) / 3
    an = np.einsum("bi,bi->b", G, D)
    rel = np.abs(fd - an) / np.maximum(np.abs(an), np.abs(G).max(axis=1))
    assert rel.max() <= 1e-7, rel.max()
    Xs = X[:30]
    assert np.all(p.hessian_exists(Xs))
    H = p.hessian(Xs)
    np.testing.assert_array_equal(H, np.swapaxes(H, 1, 2))
    Hfd = fd_jacobian(p.gradient, Xs)
    relh = np.max(np.abs(H - Hfd), axis=(1, 2)) / np.max(np.abs(H), axis=(1, 2))
    assert relh.max() <= 1e-6, relh.max()
    V = rng.standard_normal(Xs.shape)
    np.testing.assert_allclose(p.hvp(Xs, V), np.einsum("bij,bj->bi", H, V), rtol=0,
                               atol=1e-12 * np.abs(H).max() * np.abs(V).max() * p.dim)


def test_degenerate_neuron_convention():
    p = LeakyReluProblem(3, 0.2)
    th = p.sample(np.random.default_rng(3), 1)[0]
    th[1] = th[4] = 0.0
    g = p.gradient(th)
    assert g[1] == g[4] == g[7] == 0.0      # sigma_a'(0) = 0
    assert not p.hessian_exists(th)


@pytest.mark.parametrize("N,a,iv,tg", CONFIGS + [(6, 0.9, (0.0, 1.0), (0.0, 1.0)),
                                                     (4, 0.01, (0.0, 1.0), (0.0, 1.0))])
def test_critical_points(N, a, iv, tg):
    p = LeakyReluProblem(N, a, iv, tg)
    cps = p.critical_points()
    if len(tg) > 2:
        assert cps == [] and p.critical_values().size == 0
        return
    labels = [c.label for c in cps]
    assert len(set(labels)) == len(labels)
    # the labels other code uses, and one representative of each of the 2N kink families
    assert {"leaky-zigzag-n1", "global-type1", "leaky-layer0-inactive"} <= set(labels)
    assert sum(c.info["family"] == "kinks" for c in cps) == 2 * N
    assert not any(c.kind == "local_minimum" for c in cps)
    vals = p.critical_values()
    for c in cps:
        assert np.max(np.abs(p.gradient(c.theta))) <= 1e-12 * max(1.0, vals[0]), c.label
        assert abs(p.loss(c.theta) - c.loss) <= 1e-12 * max(c.loss, 1e-300) or c.loss == 0.0
        cl = p.classify(c.theta)
        assert cl.kind == c.kind, (c.label, cl)
        if c.kind != "global_minimum":
            assert cl.layer == c.info["layer"] and c.loss == vals[c.info["layer"]]
            assert cl.info["family"] == (c.label if c.info["family"] == "kinks" else "layer0")
        if c.kind == "strict_saddle":
            assert c.info["in_S"] and c.info["least_eigenvalue"] < 0
            w = np.linalg.eigvalsh(fd_jacobian(p.gradient, c.theta[None])[0])
            assert abs(w[0] - c.info["least_eigenvalue"]) <= 1e-5 * max(1, np.abs(w).max())
        if c.info.get("n_zero") is not None:
            # the Hessian's kernel is exactly the tangent space of the family (Morse-Bott)
            assert c.info["n_zero"] == c.info["dimension"], c.label
    assert np.all(np.diff(vals) < 0) and vals[-1] == 0.0
    assert p.global_sublevel == vals[-2]
    if a == 0.01:
        # a -> 0: the zigzags tend to the ReLU layers (all families: test_leaky_classification)
        relu_vals = ReluProblem(N, iv, tg).critical_values()
        zz = [c.loss for c in cps if c.label.startswith("leaky-zigzag-n")]
        np.testing.assert_allclose(zz, relu_vals[1:-1], rtol=0.1)
    assert all(p.classify(x).kind == "not_critical"
               for x in p.sample(np.random.default_rng(5), 10))


def test_layer0_saddles_are_preimages_of_relu_critical_points():
    """'Map ReLU critical points back': D theta is a ReLU (2N) critical point of layer 0."""
    p = LeakyReluProblem(3, 0.25, (0.0, 2.0), (1.0, 3.0))
    r = ReluProblem(6, (0.0, 2.0), (1.0, 3.0))
    for c in p.critical_points():
        if c.info["family"] == "layer0":
            Y = p.reduce(c.theta)
            assert np.max(np.abs(r.gradient(Y))) <= 1e-14
            assert r.classify(Y).layer == 0


def test_center_stable_manifold_at_a_leaky_saddle():
    p = LeakyReluProblem(2, 0.1)
    s = next(c for c in p.critical_points() if c.label == "leaky-zigzag-n1")
    W = csm.center_stable_manifold(p.local_map(s, 0.2), s.theta, tol=1e-9)
    assert W.dim_u == s.info["n_negative"] == 2
    assert W.contraction < 1
    assert np.max(np.abs(W.offset(s.theta))) <= 1e-9


@pytest.mark.parametrize("kw", [dict(N=2), dict(N=4, slope=0.5, interval=(-2.0, 3.0),
                                                 target=(1.0, -2.0))])
def test_conformance_suite(kw):
    from csm.testing import check_problem

    assert check_problem(csm.get_problem("leaky_relu", **kw)).passed

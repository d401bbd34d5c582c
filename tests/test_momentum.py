"""Heavy-ball and Nesterov maps on R^{2d}: Jacobians, multipliers, fixed points, Theorem 2.2."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

import csm
from csm.maps import fd_jacobian
from csm.momentum import HeavyBallMap, NesterovMap, multipliers
from csm.problem import ProblemBase

MAPS = (HeavyBallMap, NesterovMap)


class Wiggle(ProblemBase):
    """Non-quadratic: ``sum theta^4/4 + theta_0 theta_1^2 + sin(theta_2) + theta^T S theta/2``."""

    name = "wiggle"
    dim = 4

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        S = rng.standard_normal((4, 4))
        self.S = 0.5 * (S + S.T)

    def _loss(self, X):
        return (0.25 * (X**4).sum(1) + X[:, 0] * X[:, 1] ** 2 + np.sin(X[:, 2])
                + 0.5 * np.einsum("bi,ij,bj->b", X, self.S, X))

    def _gradient(self, X):
        G = X**3 + X @ self.S
        G[:, 0] += X[:, 1] ** 2
        G[:, 1] += 2 * X[:, 0] * X[:, 1]
        G[:, 2] += np.cos(X[:, 2])
        return G

    def _hessian(self, X):
        H = np.zeros((X.shape[0], 4, 4)) + self.S
        H[:, np.arange(4), np.arange(4)] += 3 * X**2
        H[:, 0, 1] += 2 * X[:, 1]
        H[:, 1, 0] += 2 * X[:, 1]
        H[:, 1, 1] += 2 * X[:, 0]
        H[:, 2, 2] -= np.sin(X[:, 2])
        return H


def _match(pred: np.ndarray, got: np.ndarray) -> float:
    """Largest distance of a greedy one-to-one matching of two multisets of complex numbers."""
    got = list(got)
    worst = 0.0
    for p in pred:
        i = int(np.argmin([abs(p - g) for g in got]))
        worst = max(worst, abs(p - got.pop(i)))
    return worst


# -- (a) Jacobians and Jacobian-vector products ------------------------------------------
@pytest.mark.parametrize("cls", MAPS)
def test_jacobian_matches_central_differences(cls):
    p = Wiggle()
    g = cls(p, 0.07, 0.8)
    assert g.dim == 8 and not g.symmetric and g.has_analytic_jacobian
    Z = np.random.default_rng(0).standard_normal((5, 8))
    J = g.jacobian(Z)
    Jfd = fd_jacobian(g.evaluate, Z)
    np.testing.assert_allclose(J, Jfd, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(g.jacobian(Z[0]), J[0])


@pytest.mark.parametrize("cls", MAPS)
def test_jvp_from_hvp_matches_jacobian(cls):
    p = Wiggle()
    rng = np.random.default_rng(1)
    Z, V = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    g = cls(p, 0.05, 0.6)
    ref = np.einsum("bij,bj->bi", g.jacobian(Z), V)
    np.testing.assert_allclose(g.jvp(Z, V), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.jvp(Z[0], V), V @ g.jacobian(Z[0]).T, atol=1e-12)
    # hvp only: no dense Hessian anywhere; the Jacobian is assembled exactly from hvp columns
    calls = []

    def hvp(X, W):
        calls.append(X.shape)
        return p.hvp(X, W)

    g2 = cls(p.gradient, 0.05, 0.6, hvp=hvp, dim=4)
    assert g2.hessian is None
    np.testing.assert_allclose(g2.jvp(Z, V), ref, rtol=1e-12, atol=1e-12)
    assert calls == [(6, 4)]
    np.testing.assert_allclose(g2.jacobian(Z), g.jacobian(Z), atol=1e-12)
    # gradient only: finite differences
    g3 = cls(p.gradient, 0.05, 0.6, dim=4)
    assert not g3.has_analytic_jacobian
    np.testing.assert_allclose(g3.jacobian(Z), g.jacobian(Z), atol=1e-7)


def test_updates_are_the_momentum_recursions():
    p = Wiggle()
    rng = np.random.default_rng(2)
    th, prev = rng.standard_normal(4), rng.standard_normal(4)
    gam, b = 0.03, 0.7
    hb, ne = HeavyBallMap(p, gam, b), NesterovMap(p, gam, b)
    z = hb.state(th, prev)
    np.testing.assert_allclose(hb(z), np.r_[th - gam * p.gradient(th) + b * (th - prev), th])
    y = th + b * (th - prev)
    np.testing.assert_allclose(ne(z), np.r_[y - gam * p.gradient(y), th])
    assert hb.state(th).tolist() == np.r_[th, th].tolist()
    assert hb.state(np.ones((3, 4))).shape == (3, 8)
    t2, p2 = ne.split_state(z)
    assert np.array_equal(t2, th) and np.array_equal(p2, prev)


@pytest.mark.parametrize("cls", MAPS)
def test_determinant_and_proposition_2_5(cls):
    """det D(heavy ball) = beta^d; det D(Nesterov) = beta^d det(I - gamma H(y))."""
    p = Wiggle()
    gam, b = 0.05, 0.6
    g = cls(p, gam, b)
    Z = np.random.default_rng(4).standard_normal((4, 8))
    det = np.linalg.det(g.jacobian(Z))
    if cls is HeavyBallMap:
        expect = np.full(4, b**4)
    else:
        Y = (1 + b) * Z[:, :4] - b * Z[:, 4:]
        expect = b**4 * np.linalg.det(np.eye(4) - gam * p.hessian(Y))
    np.testing.assert_allclose(det, expect, rtol=1e-10)


# -- (b) multipliers against numpy.linalg.eigvals ------------------------------------------
@pytest.mark.parametrize("method,cls", [("heavy_ball", HeavyBallMap), ("nesterov", NesterovMap)])
@pytest.mark.parametrize("gam,b", [(0.01, 0.9), (0.3, 0.5), (0.9, 0.2), (0.05, 0.0)])
def test_multiplier_formula_against_eigvals(method, cls, gam, b):
    rng = np.random.default_rng(5)
    Qm, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    h = np.array([-2.0, -0.3, 0.0, 1.1, 3.0])
    S = (Qm * h) @ Qm.T
    g = cls(lambda X: X @ S, gam, b, hessian=lambda X: np.broadcast_to(S, (len(X), 5, 5)), dim=5)
    z = g.fixed_point(np.zeros(5))
    got = np.linalg.eigvals(g.jacobian(z))
    pred = multipliers(np.linalg.eigvalsh(S), gam, b, method=method).reshape(-1)
    assert _match(pred, got) < 1e-10
    # each pair solves its quadratic
    r = multipliers(h, gam, b, method=method)
    bb, cc = ((1 + b - gam * h, b + 0 * h) if method == "heavy_ball"
              else ((1 + b) * (1 - gam * h), b * (1 - gam * h)))
    np.testing.assert_allclose(r.sum(-1), bb, atol=1e-12)
    np.testing.assert_allclose(r.prod(-1), cc, atol=1e-12)
    assert np.all(np.abs(r[:, 0]) >= np.abs(r[:, 1]))


def test_multipliers_at_phase_retrieval_critical_points():
    p = csm.get_problem("phase_retrieval", n=5, loss="population")
    for c in p.critical_points():
        h = np.linalg.eigvalsh(p.hessian(c.theta))
        for cls in MAPS:
            g = cls(p, 0.02, 0.85)
            got = np.linalg.eigvals(g.jacobian(g.fixed_point(c.theta)))
            assert _match(g.multipliers(h).reshape(-1), got) < 1e-8, (c.label, cls)


def test_multipliers_values_and_errors():
    r = multipliers(-2.0, 0.01, 0.9)
    assert r.shape == (2,) and r.dtype == complex
    assert abs(r[0] - (1.92 + np.sqrt(1.92**2 - 3.6)) / 2) < 1e-15
    assert multipliers([[0.0]], 0.1, 0.5).shape == (1, 1, 2)
    np.testing.assert_allclose(multipliers(0.0, 0.1, 0.5), [1.0, 0.5])
    np.testing.assert_allclose(multipliers(10.0, 0.1, 0.5, method="nesterov"), [0.0, 0.0])
    with pytest.raises(csm.InputError, match="`method`"):
        multipliers(1.0, 0.1, 0.5, method="adam")
    with pytest.raises(csm.InputError, match="`momentum`"):
        multipliers(1.0, 0.1, 1.0)


# -- validation, fixed points -----------------------------------------------------------------
@pytest.mark.parametrize("cls", MAPS)
def test_parameter_validation(cls):
    p = Wiggle()
    for bad in (1.0, -0.1, float("nan"), "x", 1.5):
        with pytest.raises(csm.InputError, match="`momentum`"):
            cls(p, 0.1, bad)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(csm.InputError, match="`step`"):
            cls(p, bad, 0.5)
    with pytest.raises(csm.InputError, match="`problem_or_grad`"):
        cls(3.0, 0.1, 0.5)
    with pytest.raises(csm.ShapeError):
        cls(p, 0.1, 0.5)(np.zeros(7))


@pytest.mark.parametrize("cls", MAPS)
def test_fixed_points(cls):
    p = csm.get_problem("phase_retrieval", n=4, loss="population")
    s = next(c for c in p.critical_points() if c.kind == "strict_saddle")
    g = cls(p, 0.01, 0.9)
    z = g.fixed_point(s.theta)
    assert z.shape == (8,) and np.array_equal(z[:4], z[4:])
    np.testing.assert_allclose(g.check_state_fixed_point(z), s.theta)
    with pytest.raises(csm.NotFixedPointError, match="`fixed_point`"):
        g.fixed_point(s.theta + 0.1)
    with pytest.raises(csm.InputError, match="`fixed_point`.*equal halves"):
        g.check_state_fixed_point(np.r_[s.theta, s.theta + 1e-3])
    with pytest.raises(csm.NotFixedPointError):
        g.check_state_fixed_point(g.state(s.theta + 0.1))


def test_momentum_maps_pickle_and_matrix_free_is_refused():
    p = csm.get_problem("phase_retrieval", n=4, loss="population")
    hb = HeavyBallMap(p, 0.01, 0.9)
    hb2 = pickle.loads(pickle.dumps(hb))
    z = np.arange(8.0) / 10
    np.testing.assert_array_equal(hb2(z), hb(z))
    s = next(c for c in p.critical_points() if c.kind == "strict_saddle")
    with pytest.raises(csm.InputError, match="symmetric"):
        csm.center_stable_manifold(hb, hb.fixed_point(s.theta), matrix_free=True)


def test_derivative_lipschitz_from_hessian_lipschitz():
    p = Wiggle()
    hb = HeavyBallMap(p, 0.1, 0.5, hessian_lipschitz=2.0)
    ne = NesterovMap(p, 0.1, 0.5, hessian_lipschitz=2.0)
    assert hb.derivative_lipschitz == pytest.approx(0.2)
    assert ne.derivative_lipschitz == pytest.approx(0.2 * (1.5**2 + 0.25))
    ne2 = NesterovMap(p, 0.1, 0.5, hessian_lipschitz=lambda c, r: 2.0 * r)
    assert ne2.derivative_lipschitz(np.zeros(8), 1.0) == pytest.approx(0.2 * 2.5 ** 1.5)


# -- (c) acceptance: Theorem 2.2 at the population phase-retrieval saddle ---------------------
@pytest.mark.parametrize("cls,method", [(HeavyBallMap, "heavy_ball"), (NesterovMap, "nesterov")])
def test_center_stable_manifold_at_phase_retrieval_saddle(cls, method):
    p = csm.get_problem("phase_retrieval", n=8, loss="population")
    assert abs(np.linalg.norm(p.x_star) - 1) < 1e-15
    saddle = next(c for c in p.critical_points() if c.kind == "strict_saddle")
    g = cls(p, 0.01, 0.9)
    t0 = time.perf_counter()
    m = csm.center_stable_manifold(g, g.fixed_point(saddle.theta))  # default construction
    built = time.perf_counter() - t0
    assert (m.dim_u, m.dim_cs) == (1, 15)
    lam = multipliers(-2.0, 0.01, 0.9, method=method)[0].real
    if method == "heavy_ball":  # the larger root of lambda^2 - 1.92 lambda + 0.9
        assert abs(lam - (1.92 + np.sqrt(1.92**2 - 3.6)) / 2) < 1e-15
        assert abs(lam - 1.10696938) < 1e-8
    assert abs(m.eigenvalues_u[0] - lam) < 1e-8
    v = m.verify()
    assert v.success, v.message
    assert built + (time.perf_counter() - t0 - built) < 30.0


# -- the docs page and the docstring examples ----------------------------------------------
def test_docs_page_examples():
    import doctest
    import pathlib

    import csm.momentum
    import csm.schedules

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "momentum-and-schedules.md"
    res = doctest.testfile(str(page), module_relative=False, optionflags=flags)
    assert res.failed == 0 and res.attempted > 20
    for mod in (csm.momentum, csm.schedules):
        res = doctest.testmod(mod, optionflags=flags)
        assert res.failed == 0 and res.attempted > 0, mod.__name__

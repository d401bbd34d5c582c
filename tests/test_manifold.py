"""Theorem 2.2: the Lyapunov--Perron construction against exactly known manifolds."""

import math

import numpy as np
import pytest

import csm
from csm.manifold import CUTOFF_LIPSCHITZ, bump, bump_derivative
from csm.testing import RotatedQuartic, conjugated_graph_map


def planar(lam=0.5, mu=2.0):
    return csm.Map(lambda X: np.stack([lam * X[:, 0], mu * X[:, 1] + X[:, 0] ** 2], 1), dim=2)


def test_bump_is_the_lemma_6_1_cutoff():
    s = np.linspace(0, 3, 30001)
    e = bump(s)
    assert np.all(e[s <= 1] == 1) and np.all(e[s >= 2] == 0)
    # derivative against finite differences, and |eta'| <= 2 as Lemma 6.1 needs
    h = 1e-6
    fd = (bump(s + h) - bump(s - h)) / (2 * h)
    inner = (s > 1 + 1e-3) & (s < 2 - 1e-3)
    assert np.max(np.abs(fd[inner] - bump_derivative(s)[inner])) < 1e-6
    assert np.max(np.abs(bump_derivative(s))) <= 2.0 + 1e-12
    # Lip(chi) <= 5 for every eps (Lemma 6.1); ours is the exact sup of the singular values
    assert 1.0 < CUTOFF_LIPSCHITZ <= 5.0


def test_linear_map_graph_is_zero():
    A = np.diag([0.3, -0.7, 0.0, 2.5, 1.7])
    g = csm.Map(lambda X: X @ A.T, lambda X: np.broadcast_to(A, (len(X), 5, 5)), dim=5)
    m = csm.center_stable_manifold(g, np.zeros(5))
    assert (m.dim_cs, m.dim_u) == (3, 2)
    assert m.contraction == 0.0 and m.horizon == 1
    xi = m.sample_cs(100, 0)
    assert np.max(np.abs(m.graph(xi))) == 0.0


@pytest.mark.parametrize("lam,mu", [(0.5, 2.0), (-0.4, 3.0), (0.0, 1.5), (0.9, -2.5)])
def test_planar_exact_graph(lam, mu):
    m = csm.center_stable_manifold(planar(lam, mu), np.zeros(2))
    xi = np.linspace(-m.radius, m.radius, 401)[:, None]
    X = m.point(xi)
    inside = np.linalg.norm(X, axis=1) <= m.radius
    assert inside.sum() > 300
    err = np.abs(X[:, 1] - X[:, 0] ** 2 / (lam**2 - mu))
    assert err[inside].max() <= 1e-9
    assert m.contraction < 1 and m.lipschitz_bound == pytest.approx(m.contraction / (1 - m.contraction))


def _check_case(tc, n=400, tol=1e-8):
    m = csm.center_stable_manifold(tc.map, tc.fixed_point)
    assert (m.dim_cs, m.dim_u) == (tc.dim_cs, tc.dim_u)
    X = m.point(m.sample_cs(n, 1, fraction=1.0))
    inside = m.eigen_norm(X) <= m.radius
    assert inside.mean() > 0.9
    err = tc.graph_error(X[inside])
    assert err.max() <= tol, err.max()
    return m


def test_conjugated_quadratic_d20():
    tc = conjugated_graph_map(np.linspace(-0.8, 0.8, 17), [1.5, 2.0, 3.0], seed=3)
    m = _check_case(tc)
    assert m.split.condition_number < 10


def test_conjugated_degenerate_center_complex_nonsmooth():
    """Eigenvalue 0 (singular Jacobian), -1 and +1 (center), complex pairs in E_cs and E_u,
    and a C^1-but-not-C^2 remainder (terms p|p|)."""
    cs = [0.0, -1.0, 1.0, 0.5 + 0.5j, 0.3, -0.2, 0.6, 0.1, 0.7, -0.5, 0.45, 0.2, 0.33, 0.9,
          0.15, 0.05, -0.8, 0.25]
    tc = conjugated_graph_map(cs, [1.8 + 0.9j, 2.5, 1.3], nonlinearity="mixed", seed=1)
    m = _check_case(tc)
    A = tc.map.jacobian(tc.fixed_point)
    assert abs(np.linalg.det(A)) < 1e-12  # the Jacobian is degenerate
    expected = sorted([1.3, 2.5, abs(1.8 + 0.9j), abs(1.8 + 0.9j)])
    assert np.sort(np.abs(m.eigenvalues_u)) == pytest.approx(expected)


def test_nonsmooth_abs_remainder_only():
    tc = conjugated_graph_map(np.linspace(-0.9, 0.9, 20), [1.4, 2.2], nonlinearity="abs", seed=5)
    _check_case(tc)


def test_verify_measures_escape():
    tc = conjugated_graph_map(np.linspace(-0.8, 0.8, 17), [1.5, 2.0, 3.0], seed=3)
    m = csm.center_stable_manifold(tc.map, tc.fixed_point)
    v = m.verify(n=32)
    assert v.passed, v
    assert v.invariance_residual <= 1e-12
    # exit times grow like log(1/delta)/log(lambda_min): slope against the prediction
    lam = min(abs(m.eigenvalues_u))
    slope = np.polyfit(np.log(1 / np.array(v.deltas)), v.exit_median, 1)[0]
    assert slope == pytest.approx(1 / math.log(lam), rel=0.15)
    assert v.graph_stay_median > max(v.exit_median)


def test_given_radius_and_contraction_error():
    g = planar()
    m = csm.center_stable_manifold(g, np.zeros(2))
    small = csm.center_stable_manifold(g, np.zeros(2), radius=m.radius / 4)
    assert small.contraction < m.contraction
    with pytest.raises(csm.ContractionError, match=r"kappa = .* >= 1.*try a smaller `radius`, e.g."):
        csm.center_stable_manifold(g, np.zeros(2), radius=5.0)


def test_tolerance_sets_horizon_and_accuracy():
    g = planar(0.5, 1.2)
    m1 = csm.center_stable_manifold(g, np.zeros(2), tol=1e-4)
    m2 = csm.center_stable_manifold(g, np.zeros(2), tol=1e-12)
    assert m2.horizon > m1.horizon
    xi = np.linspace(-m2.radius, m2.radius, 51)[:, None] * 0.9
    exact = lambda X: X[:, 0] ** 2 / (0.25 - 1.2)  # noqa: E731
    for m, tol in ((m1, 1e-4), (m2, 1e-12)):
        X = m.point(xi * m.radius / m2.radius)
        assert np.max(np.abs(X[:, 1] - exact(X))) <= tol


def test_rotated_quartic_matches_its_definition_and_finite_differences():
    """The test problem behind the matrix-free benchmarks: its loss equals the formula with a
    dense R built reflection by reflection (1e-13), its gradient central differences of the
    loss and its HVP central differences of the gradient (1e-6 relative)."""
    d = 40
    pb = RotatedQuartic(d, 3, coupling=0.5, seed=3)
    R = np.eye(d)
    for h in pb.reflections:
        R = R @ (np.eye(d) - 2.0 * np.outer(h, h))
    rng = np.random.default_rng(0)
    X = 0.5 * rng.standard_normal((3, d))
    U = X @ R
    s, w = U[:, :3].sum(axis=1), np.sum(U[:, 3:] ** 2, axis=1)
    direct = 0.5 * U**2 @ pb.a + 0.25 * np.sum(U**4, axis=1) + 0.5 * s * w
    np.testing.assert_allclose(pb.loss(X), direct, rtol=1e-13)
    G, hstep = pb.gradient(X), 1e-6
    E = np.eye(d)
    fd = np.stack([(pb.loss(X + hstep * e) - pb.loss(X - hstep * e)) / (2 * hstep) for e in E], 1)
    assert np.max(np.abs(G - fd)) <= 1e-6 * np.max(np.abs(G))
    V = rng.standard_normal((3, d))
    fdh = (pb.gradient(X + hstep * V) - pb.gradient(X - hstep * V)) / (2 * hstep)
    Hv = pb.hvp(X, V)
    assert np.max(np.abs(Hv - fdh)) <= 1e-6 * np.max(np.abs(Hv))


def test_offset_and_sample():
    m = csm.center_stable_manifold(planar(), np.zeros(2))
    X = m.sample(50, 0)
    assert X.shape == (50, 2)
    assert np.max(np.abs(m.offset(X))) < 1e-12
    Y = X + np.array([0.0, 1e-3])
    assert np.allclose(np.abs(m.offset(Y)), 1e-3, rtol=1e-6)
    np.testing.assert_array_equal(m.sample(5, 7), m.sample(5, 7))


def test_matrix_free_exact_manifold_and_agreement_with_dense():
    pb = RotatedQuartic(60, 3, coupling=0.0, seed=0)
    g = csm.GradientDescentMap(pb, 0.3)
    m = csm.center_stable_manifold(g, np.zeros(60), matrix_free=True)
    assert m.matrix_free and (m.dim_cs, m.dim_u) == (57, 3)
    assert np.allclose(np.sort(m.eigenvalues_u.real), np.sort(1 - 0.3 * pb.a[:3]))
    X = m.sample(20, 0)
    assert pb.manifold_error(X).max() < 1e-12
    # coupled problem (no closed form): dense eigen-decomposition and Lanczos path agree
    pc = RotatedQuartic(60, 3, coupling=0.5, seed=0)
    gc = csm.GradientDescentMap(pc, 0.3)
    mf = csm.center_stable_manifold(gc, np.zeros(60), matrix_free=True)
    dn = csm.center_stable_manifold(gc, np.zeros(60), matrix_free=False, radius=mf.radius)
    X = mf.sample(10, 1)
    assert np.abs(mf.graph(mf.coordinates(X)[0])).max() > 1e-6  # the graph is not flat
    assert np.abs(dn.offset(X)).max() < 1e-9


def test_gradient_descent_map_strict_saddle():
    # L(x, y) = x^2/2 - y^2/2 + y^4/4 + x^2 y: saddle at 0, GD map has D Psi = diag(1-g, 1+g)
    def grad(X):
        x, y = X[:, 0], X[:, 1]
        return np.stack([x + 2 * x * y, -y + y**3 + x**2], 1)

    g = csm.GradientDescentMap(grad, 0.2, dim=2)
    m = csm.center_stable_manifold(g, np.zeros(2))
    assert m.dim_u == 1 and m.eigenvalues_u[0].real == pytest.approx(1.2)
    assert m.verify(n=16).passed


# -- issue 9.2: the contraction constant must bound the true one ---------------------------


class AnisotropicQuartic:
    """``L(x) = x^T diag(-1, 0, 1, ..., 1) x / 2 + (a.x)^4 / 4``, ``a`` in two coordinates.

    The nonlinearity lives in one direction, so random sampling of ``|Dr|`` misses it.  Exact:
    ``Dr(x) = -step * 3 (a.x)^2 a a^T`` for the GD map, so ``|Dr(eps a/|a|)| = 3 step eps^2 |a|^4``
    is a lower bound of ``l`` at radius ``eps``; ``|H(x) - H(y)| <= 6 |a|^4 (|c| + R) |x - y|``
    on ``B(c, R)``.
    """

    def __init__(self, d, coords=(1, 2), scale=1.0):
        self.dim = d
        self.h = np.ones(d)
        self.h[0], self.h[1] = -1.0, 0.0
        self.a = np.zeros(d)
        self.a[list(coords)] = scale

    def gradient(self, X):
        X = np.atleast_2d(X)
        return X * self.h + (X @ self.a)[:, None] ** 3 * self.a

    def hessian(self, X):
        X = np.atleast_2d(X)
        return np.diag(self.h)[None] + 3 * (X @ self.a)[:, None, None] ** 2 * np.outer(self.a, self.a)[None]

    def hvp(self, X, V):
        return V * self.h + 3 * ((X @ self.a) ** 2 * (V @ self.a))[:, None] * self.a

    def lower_kappa(self, m, step):
        a4 = float(self.a @ self.a) ** 2
        ell = 3 * step * m.radius**2 * a4
        mu = (1 + m.lambda_min) / 2
        return ell * (1 / (mu - 1) + 1 / (m.lambda_min - mu))


@pytest.mark.parametrize("d,matrix_free", [(40, False), (800, True)])
def test_contraction_bounds_a_nonlinearity_living_in_two_coordinates(d, matrix_free):
    pb = AnisotropicQuartic(d)
    step = 0.5
    g = csm.GradientDescentMap(pb.gradient, step, pb.hessian, hvp=pb.hvp, dim=d)
    m = csm.center_stable_manifold(g, np.zeros(d), matrix_free=matrix_free)
    assert (m.dim_cs, m.dim_u) == (d - 1, 1)
    assert not m.kappa_certified and m.lipschitz_search["method"] == "adversarial"
    lower = pb.lower_kappa(m, step)
    assert m.contraction >= lower, (m.contraction, lower)
    assert m.contraction < 1
    # the probe of verify() finds nothing above the constant used
    v = m.verify(n=16)
    assert v.checks["lipschitz_probe"], (v.lipschitz_probe, v.lipschitz_used)


def test_proved_kappa_from_a_hessian_lipschitz_constant():
    pb = AnisotropicQuartic(40)
    step = 0.5
    a4 = float(pb.a @ pb.a) ** 2
    hl = lambda c, R: 6 * a4 * (np.linalg.norm(c) + R)  # noqa: E731
    g = csm.GradientDescentMap(pb.gradient, step, pb.hessian, dim=40, hessian_lipschitz=hl)
    m = csm.center_stable_manifold(g, np.zeros(40))
    assert m.kappa_certified and m.lipschitz_search["method"] == "proved"
    assert pb.lower_kappa(m, step) <= m.contraction <= 0.5
    est = csm.center_stable_manifold(g, np.zeros(40), radius=m.radius, derivative_lipschitz=None)
    # a map-level constant is used unless overridden: same value; an estimate never exceeds it
    assert est.kappa_certified
    g2 = csm.GradientDescentMap(pb.gradient, step, pb.hessian, dim=40)
    est2 = csm.center_stable_manifold(g2, np.zeros(40), radius=m.radius)
    assert not est2.kappa_certified
    assert est2.lipschitz_search["raw"] <= m.lipschitz_remainder * (1 + 1e-12)
    X = m.sample(30, 2)
    # exact graph: E_u is e_0 and the quartic does not couple to it, so phi = 0
    assert np.max(np.abs(X[:, 0])) < 1e-12


def test_failures_are_split_into_bad_input_and_non_convergence():
    g = planar()
    with pytest.raises(csm.NoContractionError) as e:
        csm.center_stable_manifold(g, np.zeros(2), radius=5.0)
    assert isinstance(e.value, csm.InputError) and isinstance(e.value, csm.ContractionError)
    m = csm.center_stable_manifold(g, np.zeros(2), max_iter=1)
    with pytest.raises(csm.ConvergenceError) as e:
        m.graph(np.array([[0.5 * m.radius]]))
    assert e.value.nit == 1 and e.value.residual > 0
    sol = m.solve(np.array([[0.5 * m.radius]]), throw=False)
    assert not sol.success and sol.nit == 1 and "max_iter" in sol.message
    d = m.to_dict()
    assert d["success"] is True and "kappa" in d["message"]


# -- issue 16: the faster set-up and solve must compute the same things ---------------------


def _quadratic_gd(h, step=1.0, seed=3):
    """GD map of ``L(x) = x^T H x / 2``, ``H = R diag(h) R^T``: ``Dg = I - step H`` exactly."""
    d = len(h)
    R = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]
    H = (R * h) @ R.T
    g = csm.GradientDescentMap(lambda X: np.atleast_2d(X) @ H, step, hvp=lambda X, V: V @ H, dim=d)
    return g, np.sort(1.0 - step * np.asarray(h)), np.eye(d) - step * H


def test_unstable_eigenpairs_both_ends_and_near_the_threshold():
    """Lanczos count + certificate against numpy.linalg.eigh of the same symmetric matrix."""
    from csm.manifold.frames import unstable_eigenpairs

    rng = np.random.default_rng(0)
    # Dg eigenvalues: 1.6 and 1 + 1e-5 (unstable, LA end), -1.5 (unstable, SA end),
    # 1 - 1e-5 (stable, next to the threshold), the rest in [-0.8, 0.8]
    h = np.concatenate([[-0.6, -1e-5, 2.5, 1e-5], rng.uniform(0.2, 1.8, 296)])
    g, lam, A = _quadratic_gd(h)
    w, U = unstable_eigenpairs(g, np.zeros(300), 1e-9)
    expect = lam[np.abs(lam) > 1 + 1e-9]
    assert len(expect) == 3  # positive control: 1 + 1e-5 counts, 1 - 1e-5 does not
    np.testing.assert_allclose(np.sort(w), np.sort(expect), atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-12)
    assert np.max(np.abs(A @ U - U @ (U.T @ A @ U))) < 1e-9  # U spans an invariant subspace
    # no unstable eigenvalue at all: refused
    g2, _, _ = _quadratic_gd(rng.uniform(0.2, 1.8, 50))
    with pytest.raises(csm.NoUnstableDirectionError):
        unstable_eigenpairs(g2, np.zeros(50), 1e-9)


def _dense_sigma(frame, z, eps):
    """``|D r~(z)|_2`` from the full matrix (products with every basis vector)."""
    from csm.manifold.cutoff import cutoff

    n = len(z)
    W, eta, seta, U = cutoff(z[None], eps)
    dr, _ = frame.remainder_derivative(np.repeat(W, n, axis=0))
    E = np.eye(n)
    cols = dr(eta[0] * E + seta[0] * (E @ U[0])[:, None] * U[0][None])  # rows: M e_j
    return np.linalg.norm(cols, 2)


def test_ambient_lipschitz_search_equals_the_eigen_coordinate_one():
    """Orthonormal Q: |D r~| at z (eigen-coordinates) equals |D r~_amb| at Q z."""
    from csm.manifold.frames import AmbientSearchFrame
    from csm.manifold.lipschitz import power_top

    pb = RotatedQuartic(40, 3, coupling=0.5, seed=1)
    g = csm.GradientDescentMap(pb, 0.5)
    m = csm.center_stable_manifold(g, np.zeros(40), matrix_free=False)
    amb = m.frame.lipschitz_frame
    assert isinstance(amb, AmbientSearchFrame)
    Z = np.random.default_rng(2).standard_normal((8, 40))
    Z *= (2 * m.radius * np.linspace(0.1, 0.95, 8) / np.linalg.norm(Z, axis=1))[:, None]
    s_z = np.array([_dense_sigma(m.frame, z, m.radius) for z in Z])
    s_a = np.array([_dense_sigma(amb, z, m.radius) for z in Z @ m.frame.Q.T])
    assert s_z.max() > 1e-3  # positive control: the remainder is not flat there
    np.testing.assert_allclose(s_a, s_z, rtol=1e-7, atol=1e-12)
    # the same with A given by the caller: A v from the split's dense Q Lambda Q^T
    m2 = csm.center_stable_manifold(g, np.zeros(40), matrix_free=False, radius=m.radius,
                                    jacobian=g.jacobian(np.zeros(40)))
    amb2 = m2.frame.lipschitz_frame
    assert isinstance(amb2, AmbientSearchFrame) and not m2.frame.exact_linear
    s_2 = np.array([_dense_sigma(amb2, z, m.radius) for z in Z @ m.frame.Q.T])
    np.testing.assert_allclose(s_2, s_z, rtol=1e-7, atol=1e-12)
    # power iteration (a lower bound) gets close to the top singular value
    s_p = power_top(amb, Z @ m.frame.Q.T, m.radius)[0]
    assert np.all(s_p <= s_a * (1 + 1e-9)) and s_p.max() >= 0.95 * s_a.max()


def test_blocked_solve_is_independent_of_the_blocking():
    tc = conjugated_graph_map([0.5, -0.3, 0.9], [1.7, 2.2], nonlinearity="mixed", seed=4)
    m = csm.center_stable_manifold(tc.map, tc.fixed_point)
    xi = m.sample_cs(40, 3)
    together = m.solve(xi)
    alone = np.concatenate([m.solve(xi[i:i + 1]).q for i in range(len(xi))])
    np.testing.assert_allclose(together.q, alone, atol=1e-14)
    assert np.abs(together.q).max() > 1e-6  # the graph is not flat
    assert tc.graph_error(m.point(xi)).max() < 1e-12

"""Spectral split (Assumption 2.1), maps and finite differences, and every error class."""

import numpy as np
import pytest

import csm
from csm.maps import fd_jacobian
from csm.spectral import split_spectrum


def test_split_diagonal_with_zero_and_center():
    s = split_spectrum(np.diag([0.0, 1.0, -1.0, 0.5, 3.0, -2.0]))
    assert (s.dim_cs, s.dim_u) == (4, 2)
    assert sorted(np.abs(s.eigenvalues_u)) == [2.0, 3.0]
    assert s.condition_number == 1.0 and s.symmetric


def test_split_complex_pairs_real_blocks():
    rng = np.random.default_rng(0)
    L = np.zeros((6, 6))
    L[0:2, 0:2] = [[0.6, 0.7], [-0.7, 0.6]]
    L[2:4, 2:4] = [[1.5, 1.0], [-1.0, 1.5]]
    L[4, 4], L[5, 5] = 0.0, 1.0
    Q = rng.standard_normal((6, 6))
    A = Q @ L @ np.linalg.inv(Q)
    s = split_spectrum(A)
    assert (s.dim_cs, s.dim_u) == (4, 2)
    np.testing.assert_allclose(A @ s.Q, s.Q @ s.block, atol=1e-12)
    np.testing.assert_allclose(s.Q_inv @ s.Q, np.eye(6), atol=1e-12)
    assert np.all(np.abs(s.eigenvalues[:4]) <= 1 + 1e-12)
    assert np.allclose(np.abs(s.eigenvalues_u), abs(1.5 + 1j))
    assert s.to_dict()["dim_u"] == 2


def test_split_errors():
    with pytest.raises(csm.NotDiagonalizableError,
                       match="algebraic multiplicity 2 but geometric multiplicity 1"):
        split_spectrum([[2.0, 1.0], [0.0, 2.0]])
    with pytest.raises(csm.NoUnstableDirectionError, match="largest modulus 0.9"):
        split_spectrum(np.diag([0.9, 0.1]))
    with pytest.raises(csm.ShapeError, match=r"square matrix, got shape \(2, 3\)"):
        split_spectrum(np.zeros((2, 3)))
    with pytest.raises(csm.NonFiniteError):
        split_spectrum([[np.nan, 0], [0, 2.0]])
    assert issubclass(csm.NotDiagonalizableError, ValueError)


def test_map_batching_and_fd_jacobian_order():
    f = lambda X: np.stack([np.sin(X[:, 0]) * X[:, 1], np.exp(X[:, 1]) + X[:, 0] ** 3], 1)  # noqa: E731
    g = csm.Map(f, dim=2)
    X = np.random.default_rng(1).standard_normal((7, 2))
    np.testing.assert_allclose(g(X)[3], g(X[3]))
    J = g.jacobian(X)
    x, y = X[:, 0], X[:, 1]
    exact = np.stack([np.stack([np.cos(x) * y, np.sin(x)], 1),
                      np.stack([3 * x**2, np.exp(y)], 1)], 1)
    assert np.max(np.abs(J - exact)) < 1e-8
    v = np.random.default_rng(2).standard_normal((7, 2))
    np.testing.assert_allclose(g.jvp(X, v), np.einsum("bij,bj->bi", exact, v), atol=1e-8)
    # loop mode for scalar-point functions
    g2 = csm.Map(lambda x: np.array([x[0] ** 2, x[1]]), vectorized=False)
    np.testing.assert_allclose(g2(X)[:, 0], X[:, 0] ** 2)


def test_fd_error_is_second_order():
    f = lambda X: np.exp(X)  # noqa: E731
    X = np.array([[0.3]])
    # error of the central difference for exp at the documented step is ~ h^2/6 * e^x
    J = fd_jacobian(f, X)[0, 0, 0]
    h = np.finfo(float).eps ** (1 / 3)
    assert abs(J - np.exp(0.3)) < 10 * h**2 * np.exp(0.3)


def test_gradient_descent_map():
    H = np.array([[2.0, 0.5], [0.5, -1.0]])
    g = csm.GradientDescentMap(lambda X: X @ H, 0.1, hessian=lambda X: np.broadcast_to(H, (len(X), 2, 2)))
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(g(x), x - 0.1 * H @ x)
    np.testing.assert_allclose(g.jacobian(x), np.eye(2) - 0.1 * H)
    assert g.symmetric
    with pytest.raises(csm.InputError, match="`step` must be a finite number > 0, got -1"):
        csm.GradientDescentMap(lambda X: X, -1)


def test_map_errors_name_the_value():
    g = csm.Map(lambda X: X[:, :1], dim=2)
    with pytest.raises(csm.ShapeError, match=r"must return shape \(1, 2\).*got \(1, 1\)"):
        g(np.zeros(2))
    g = csm.Map(lambda X: np.sqrt(X) if False else np.full_like(X, np.inf), dim=1)
    with pytest.raises(csm.NonFiniteError, match="NaN or infinity"):
        g(np.array([-1.0]))
    with pytest.raises(csm.ShapeError, match=r"shape \(d,\) or \(batch, d\)"):
        csm.Map(lambda X: X)(np.zeros((2, 2, 2)))
    with pytest.raises(csm.InputError, match="`func` must be callable"):
        csm.Map(3)


def test_manifold_input_errors():
    g = csm.Map(lambda X: np.stack([0.5 * X[:, 0], 2 * X[:, 1] + X[:, 0] ** 2], 1), dim=2)
    with pytest.raises(csm.NotFixedPointError, match=r"\|g\(x\*\) - x\*\| = 1.000e\+00"):
        csm.center_stable_manifold(g, np.array([0.0, 1.0]))
    with pytest.raises(csm.ShapeError, match=r"`fixed_point` must be 1-dimensional, got shape \(1, 2\)"):
        csm.center_stable_manifold(g, np.zeros((1, 2)))
    with pytest.raises(csm.ShapeError, match=r"`fixed_point` must have shape \(2,\), got shape \(3,\)"):
        csm.center_stable_manifold(g, np.zeros(3))
    with pytest.raises(csm.ShapeError, match=r"`jacobian` must have shape \(2, 2\).*got \(2, 3\)"):
        csm.center_stable_manifold(g, np.zeros(2), jacobian=np.zeros((2, 3)))
    bad = csm.Map(lambda X: np.where(np.abs(X) > 1e-3, np.nan, 2 * X), dim=2)
    with pytest.raises(csm.NonFiniteError, match="NaN or infinity"):
        csm.center_stable_manifold(bad, np.zeros(2))
    stable = csm.Map(lambda X: 0.5 * X, dim=2)
    with pytest.raises(csm.NoUnstableDirectionError):
        csm.center_stable_manifold(stable, np.zeros(2))
    jordan = csm.Map(lambda X: X @ np.array([[2.0, 0.0], [1.0, 2.0]]), dim=2)
    with pytest.raises(csm.NotDiagonalizableError):
        csm.center_stable_manifold(jordan, np.zeros(2))
    with pytest.raises(csm.InputError, match="`tol` must be a finite number > 0"):
        csm.center_stable_manifold(g, np.zeros(2), tol=0)
    with pytest.raises(csm.NonFiniteError, match="`fixed_point` contains NaN"):
        csm.center_stable_manifold(g, np.array([np.nan, 0.0]))

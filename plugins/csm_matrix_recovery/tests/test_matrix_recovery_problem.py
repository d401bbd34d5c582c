"""Matrix recovery (paper §3.2, docs/theory.md §7): parameters, flattening, derivatives, sensing law.

Independent references: a 5-point finite-difference stencil written here (error O(h^4)),
explicit per-measurement sums over ``A_k``, and Monte Carlo averages over independent
draws of the sensing matrices (tolerance 4 standard errors).
"""

from __future__ import annotations

import numpy as np
import pytest

import csm

LOSSES = ["l2", "l1", "full"]


def fd5(f, X, h=1e-3):
    """5-point central differences of a batched ``f: (B, d) -> (B, k)``: ``(B, k, d)``."""
    B, d = X.shape
    cols = []
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        cols.append((f(X - 2 * e) - 8 * f(X - e) + 8 * f(X + e) - f(X + 2 * e)) / (12 * h))
    return np.stack(cols, axis=-1)


def residuals(p, X):
    U = X.reshape(-1, p.n, p.r)
    P = U @ np.swapaxes(U, 1, 2)
    return np.einsum("kij,bij->bk", p.A, P) - p.y


def smooth_points(p, n_points, rng, h=1e-3):
    """Gaussian points at which no ℓ1 residual changes sign within the FD stencil."""
    keep = []
    for x in rng.standard_normal((8 * n_points, p.dim)):
        pts = x + np.concatenate([k * h * np.eye(p.dim) for k in (-2, -1, 1, 2)])
        if np.all(np.sign(residuals(p, pts)) == np.sign(residuals(p, x[None]))):
            keep.append(x)
        if len(keep) == n_points:
            break
    return np.array(keep)


# -- construction, parameters, flattening -------------------------------------------------

def test_registered_data_and_reproducibility():
    assert "matrix_recovery" in csm.list_problems()
    p = csm.get_problem("matrix_recovery", n=5, r=3, m=20, loss="l2", seed=4)
    assert p.dim == 15 and p.name == "matrix_recovery"
    assert np.array_equal(p.eigenvalues, [3.0, 2.0, 1.0])
    assert np.allclose(p.eigenvectors.T @ p.eigenvectors, np.eye(3), atol=1e-14)
    ev, vecs = np.linalg.eigh(p.m_star)
    assert np.allclose(ev, [0, 0, 1, 2, 3], atol=1e-13)  # distinct, well separated
    assert np.allclose(p.m_star, p.u_star @ p.u_star.T, atol=0)
    assert np.allclose(p.A, np.swapaxes(p.A, 1, 2), atol=0)
    assert np.allclose(p.y, np.einsum("kij,ij->k", p.A, p.m_star), rtol=1e-13)
    q = csm.get_problem("matrix_recovery", n=5, r=3, m=20, loss="l2", seed=4)
    assert np.array_equal(p.A, q.A) and np.array_equal(p.m_star, q.m_star)
    for loss in ("l1", "full"):
        other = csm.get_problem("matrix_recovery", n=5, r=3, m=20, loss=loss, seed=4)
        assert np.array_equal(other.m_star, p.m_star)
    assert csm.get_problem("matrix_recovery", loss="full").A is None
    assert not np.allclose(csm.get_problem("matrix_recovery", n=5, r=3, seed=5).m_star, p.m_star)


def test_row_major_flattening():
    p = csm.get_problem("matrix_recovery", n=4, r=3, loss="full")
    U = np.arange(12.0).reshape(4, 3)
    theta = p.to_theta(U)
    assert np.array_equal(theta, U.ravel()) and theta[2 * 3 + 1] == U[2, 1]
    assert np.array_equal(p.to_matrix(theta), U)
    assert p.to_matrix(np.stack([theta, theta])).shape == (2, 4, 3)
    assert np.isclose(p.loss(theta), 0.25 * np.sum((U @ U.T - p.m_star) ** 2), rtol=1e-14)
    with pytest.raises(csm.ShapeError):
        p.to_theta(np.zeros((3, 4)))


@pytest.mark.parametrize("params, name", [
    ({"n": 0}, "n"), ({"r": 0}, "r"), ({"n": 3, "r": 4}, "r"), ({"r": 1.0}, "r"),
    ({"m": 0}, "m"), ({"loss": "l2sq"}, "loss"), ({"seed": -2}, "seed"), ({"n": False}, "n"),
])
def test_parameter_errors(params, name):
    with pytest.raises(csm.ParameterError, match=f"`{name}`"):
        csm.get_problem("matrix_recovery", **params)


def test_bad_arguments():
    with pytest.raises(csm.ParameterError, match="accepted"):
        csm.get_problem("matrix_recovery", rank=2)
    p = csm.get_problem("matrix_recovery", n=4, r=2, m=10)
    with pytest.raises(csm.ShapeError):
        p.gradient(np.zeros(7))
    with pytest.raises(csm.ShapeError):
        p.hvp(np.zeros((2, 8)), np.zeros((3, 8)))
    with pytest.raises(csm.ParameterError, match="grad_tol"):
        p.classify(np.zeros(8), grad_tol=0)


@pytest.mark.parametrize("loss", LOSSES)
def test_conformance(loss):
    testing = pytest.importorskip("csm.testing")
    report = testing.check_problem(csm.get_problem("matrix_recovery", n=5, r=2, m=40, loss=loss))
    assert report.passed


def test_sensing_law():
    """Diagonal entries N(0, 1), off-diagonal N(0, 1/2): sample variances within 4 SE
    (SE of a Gaussian sample variance: sigma^2 sqrt(2/(N-1)))."""
    p = csm.get_problem("matrix_recovery", n=4, r=1, m=5000, seed=1)
    diag = np.einsum("kii->ki", p.A).ravel()
    iu = np.triu_indices(4, 1)
    off = p.A[:, iu[0], iu[1]].ravel()
    for vals, var in ((diag, 1.0), (off, 0.5)):
        assert abs(vals.var(ddof=1) - var) <= 4 * var * np.sqrt(2 / (vals.size - 1))
        assert abs(vals.mean()) <= 4 * np.sqrt(var / vals.size)


# -- loss values against explicit sums ------------------------------------------------------

def test_losses_match_explicit_sums():
    rng = np.random.default_rng(0)
    kw = dict(n=4, r=2, m=25, seed=3)
    p2 = csm.get_problem("matrix_recovery", loss="l2", **kw)
    p1 = csm.get_problem("matrix_recovery", loss="l1", **kw)
    pf = csm.get_problem("matrix_recovery", loss="full", **kw)
    for theta in rng.standard_normal((3, 8)):
        U = theta.reshape(4, 2)
        E = U @ U.T - p2.m_star
        res = [np.sum(A * (U @ U.T)) - np.sum(A * p2.m_star) for A in p2.A]
        assert np.isclose(p2.loss(theta), sum(x**2 for x in res) / (4 * 25), rtol=1e-12)
        assert np.isclose(p1.loss(theta), sum(abs(x) for x in res) / 25, rtol=1e-12)
        assert np.isclose(pf.loss(theta), 0.25 * np.sum(E * E), rtol=1e-13)


# -- derivatives ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_hessian_hvp_against_finite_differences(loss):
    p = csm.get_problem("matrix_recovery", n=4, r=2, m=30, loss=loss, seed=1)
    rng = np.random.default_rng(9)
    X = smooth_points(p, 10, rng) if loss == "l1" else rng.standard_normal((10, p.dim))
    assert len(X) == 10

    G = p.gradient(X)
    Gfd = fd5(lambda Y: p.loss(Y)[:, None], X)[:, 0, :]
    assert np.max(np.abs(G - Gfd)) <= 1e-8 * max(1.0, np.max(np.abs(G)))

    H = p.hessian(X)
    Hfd = fd5(p.gradient, X)
    assert np.max(np.abs(H - Hfd)) <= 1e-8 * max(1.0, np.max(np.abs(H)))
    assert np.max(np.abs(H - np.swapaxes(H, 1, 2))) <= 1e-12 * np.max(np.abs(H))

    V = rng.standard_normal(X.shape)
    assert np.allclose(p.hvp(X, V), np.einsum("bij,bj->bi", H, V), rtol=1e-12, atol=1e-12)
    assert np.allclose(p.hvp(X[0], V[0]), H[0] @ V[0], rtol=1e-12, atol=1e-12)
    assert np.allclose(p.hvp(X[0], V), V @ H[0].T, rtol=1e-12, atol=1e-12)
    assert np.allclose(p.hessian(X[2]), H[2], rtol=1e-13, atol=1e-13)


def test_full_gradient_and_hessian_formulas():
    """grad = (U U^T - M) U and hess[D, D] = 1/2 |U D^T + D U^T|^2 + <U U^T - M, D D^T>."""
    p = csm.get_problem("matrix_recovery", n=5, r=2, loss="full", seed=2)
    rng = np.random.default_rng(1)
    U = rng.standard_normal((5, 2))
    D = rng.standard_normal((5, 2))
    E = U @ U.T - p.m_star
    assert np.allclose(p.gradient(U.ravel()).reshape(5, 2), E @ U, rtol=1e-13)
    quad = D.ravel() @ p.hessian(U.ravel()) @ D.ravel()
    assert np.isclose(quad, 0.5 * np.sum((U @ D.T + D @ U.T) ** 2) + np.sum(E * (D @ D.T)),
                      rtol=1e-12)


def test_l1_sign0_convention_at_global_minima():
    p = csm.get_problem("matrix_recovery", n=5, r=2, m=40, loss="l1", seed=1)
    R = np.linalg.qr(np.random.default_rng(0).standard_normal((2, 2)))[0]
    for U in (p.u_star, -p.u_star, p.u_star @ R):
        assert np.all(p.gradient(U.ravel()) == 0.0)
        assert p.loss(U.ravel()) <= 1e-14
    x = np.random.default_rng(3).standard_normal(10)
    res = residuals(p, x[None])[0]
    U = x.reshape(5, 2)
    expected = 2 * np.einsum("k,kij->ij", np.sign(res), p.A) @ U / p.m
    assert np.allclose(p.gradient(x), expected.ravel(), rtol=1e-12)


# -- E[sensing ℓ2] = full observation (Monte Carlo) -----------------------------------------

def test_l2_sensing_expectation_is_full_observation_monte_carlo():
    """For K = 2000 independent draws (seeds) of m = 10 sensing matrices, the differences
    F_l2(U) - F_full(U) and grad F_l2(U) - grad F_full(U) (same M* for both: it is drawn first)
    have mean 0 within 4 standard errors; U is fixed."""
    n, r, m, K = 4, 2, 10, 2000
    U = np.random.default_rng(42).standard_normal((n, r)).ravel()
    diffs = np.empty(K)
    gdiffs = np.empty((K, 3))
    for k in range(K):
        sens = csm.get_problem("matrix_recovery", n=n, r=r, m=m, loss="l2", seed=500 + k)
        full = csm.get_problem("matrix_recovery", n=n, r=r, loss="full", seed=500 + k)
        diffs[k] = sens.loss(U) - full.loss(U)
        gdiffs[k] = (sens.gradient(U) - full.gradient(U))[:3]
    for s in (diffs, *gdiffs.T):
        se = s.std(ddof=1) / np.sqrt(K)
        assert abs(s.mean()) <= 4 * se, (s.mean(), se)
    # power: a normalisation off by a factor 2 (e.g. 1/(2m)) would be detected
    full0 = csm.get_problem("matrix_recovery", n=n, r=r, loss="full", seed=500)
    assert full0.loss(U) > 8 * diffs.std(ddof=1) / np.sqrt(K)

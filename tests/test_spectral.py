"""Spectral split with repeated eigenvalues (Assumption 2.1): robust acceptance, Jordan rejection.

Every residual is recomputed here from ``Q``, ``block`` and ``A`` (independently of the checks
inside :func:`csm.split_spectrum`).
"""

import numpy as np
import pytest
from scipy.linalg import block_diag
from scipy.stats import ortho_group

import csm
from csm.spectral import split_spectrum

N_MATRICES = 200


def _random_P(rng, d, kind, max_cond=1e3):
    """A well-conditioned change of basis: Gaussian, or orthogonal @ diag @ orthogonal."""
    while True:
        if kind == "gaussian":
            P = rng.standard_normal((d, d))
        else:
            U = ortho_group.rvs(d, random_state=rng)
            V = ortho_group.rvs(d, random_state=rng)
            P = U @ np.diag(np.geomspace(1.0, max_cond, d)) @ V
        if np.linalg.cond(P) <= 1.01 * max_cond:
            return P


def _similar(rng, L, kind):
    P = _random_P(rng, L.shape[0], kind)
    return P @ L @ np.linalg.inv(P)


def _check_split(A, s, dims, tol=1e-10):
    """Independent checks of the returned split; returns the relative residual."""
    A = np.asarray(A, dtype=float)
    d = A.shape[0]
    nA = np.linalg.norm(A, 2)
    assert (s.dim_cs, s.dim_u) == dims
    Q = np.concatenate([s.basis_cs, s.basis_u], axis=1)
    assert Q.shape == (d, d) and np.all(np.isfinite(Q))
    Lam = np.asarray(s.block)
    # Lambda is real block diagonal: 1x1 blocks for real eigenvalues, [[a, b], [-b, a]] for pairs
    i = 0
    ev = np.asarray(s.eigenvalues)
    while i < d:
        if ev[i].imag == 0:
            assert Lam[i, i] == ev[i].real
            assert not np.any(Lam[i, :i]) and not np.any(Lam[i, i + 1:])
            i += 1
        else:
            a, b = ev[i].real, ev[i].imag
            assert ev[i + 1] == np.conj(ev[i])
            np.testing.assert_array_equal(Lam[i:i + 2, i:i + 2], [[a, b], [-b, a]])
            i += 2
    res = np.linalg.norm(A @ Q - Q @ Lam, 2) / nA
    assert res <= tol, res
    np.testing.assert_allclose(s.Q_inv @ Q, np.eye(d), atol=1e-9 * s.condition_number)
    assert np.isclose(s.condition_number, np.linalg.cond(Q), rtol=1e-6)
    assert np.all(np.abs(ev[:s.dim_cs]) <= 1 + s.unit_tol)
    assert np.all(np.abs(ev[s.dim_cs:]) > 1 + s.unit_tol)
    return res


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_double_zero_eigenvalue_always_accepted(kind):
    """A = P diag(0, 0, 0.5, 2) P^-1: LAPACK often returns the double 0 as a complex pair."""
    rng = np.random.default_rng(20240 + len(kind))
    L = np.diag([0.0, 0.0, 0.5, 2.0])
    spurious = 0
    worst = 0.0
    for _ in range(N_MATRICES):
        A = _similar(rng, L, kind)
        spurious += bool(np.any(np.linalg.eigvals(A).imag != 0))
        s = split_spectrum(A)
        worst = max(worst, _check_split(A, s, (3, 1)))
        np.testing.assert_allclose(np.sort(s.eigenvalues.real), [0, 0, 0.5, 2],
                                   atol=1e-9 * np.linalg.norm(A, 2))
        assert np.all(s.eigenvalues.imag == 0)
        assert s.condition_number < 1e5
    assert spurious > 0  # the family does exercise the spurious-complex-pair case
    assert worst <= 1e-12


@pytest.mark.parametrize("delta", [1e-17, 1e-15, 1e-13])
def test_tiny_imaginary_parts_are_a_real_double_eigenvalue(delta):
    rng = np.random.default_rng(7)
    L = block_diag([[0.0, delta], [-delta, 0.0]], 0.5, 2.0)
    for kind in ("gaussian", "orthogonal"):
        for _ in range(50):
            A = _similar(rng, L, kind)
            s = split_spectrum(A)
            _check_split(A, s, (3, 1))
            assert np.all(s.eigenvalues.imag == 0)
            assert s.eigenvalues[0] == s.eigenvalues[1]  # one cluster, one value
            assert abs(s.eigenvalues[0]) < 1e-9 * np.linalg.norm(A, 2)


@pytest.mark.parametrize("spectrum,dims", [
    ([2.0, 2.0, 0.5, 0.0], (2, 2)),
    ([-1.5, -1.5, 3.0, 0.2], (1, 3)),
    ([1.0, 1.0, 1.0, 3.0, 3.0], (3, 2)),  # repeated center eigenvalue and repeated unstable one
])
def test_repeated_unstable_and_center_eigenvalues(spectrum, dims):
    rng = np.random.default_rng(11)
    L = np.diag(spectrum)
    for kind in ("gaussian", "orthogonal"):
        for _ in range(100):
            A = _similar(rng, L, kind)
            s = split_spectrum(A)
            _check_split(A, s, dims)
            np.testing.assert_allclose(np.sort(np.abs(s.eigenvalues_u)),
                                       np.sort(np.abs(spectrum))[-dims[1]:], rtol=1e-9)


def _rot(theta, r):
    return r * np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("L,dims", [
    (block_diag(_rot(0.7, 1.5), _rot(1.1, 0.5), 0.0, 0.0), (4, 2)),  # pairs + double zero
    # a repeated unstable complex pair, a stable pair and a double zero
    (block_diag(_rot(0.7, 1.5), _rot(0.7, 1.5), _rot(2.0, 0.9), 0.0, 0.0), (4, 4)),
])
def test_complex_pairs_as_real_blocks(L, dims):
    rng = np.random.default_rng(3)
    for kind in ("gaussian", "orthogonal"):
        for _ in range(100):
            A = _similar(rng, L, kind)
            s = split_spectrum(A)
            _check_split(A, s, dims)
            assert np.allclose(np.abs(s.eigenvalues_u), 1.5, rtol=1e-9)
            assert np.allclose(np.abs(np.angle(s.eigenvalues_u)), 0.7, rtol=1e-8)


def test_symmetric_repeated_eigenvalues():
    """Exactly symmetric (eigh route) and symmetric up to finite-difference-size noise."""
    rng = np.random.default_rng(5)
    spectrum = [0.0, 0.0, 0.0, 1.0, 1.0, -0.5, 2.0, 2.0]
    for noise in (0.0, 1e-11):
        for _ in range(100):
            O = ortho_group.rvs(len(spectrum), random_state=rng)
            A = O @ np.diag(spectrum) @ O.T
            A = 0.5 * (A + A.T) + noise * rng.standard_normal(A.shape)
            s = split_spectrum(A)
            _check_split(A, s, (6, 2), tol=1e-10)
            assert s.symmetric == (noise == 0)
            assert s.condition_number < 1 + 1e-6
            if noise == 0:
                assert s.condition_number == 1.0


def _jordan(lam, size=2, nu=1.0):
    return np.diag(np.full(size, float(lam))) + nu * np.eye(size, k=1)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, -1.0, 2.0, -1.5])
def test_jordan_blocks_rejected(lam):
    """P J P^-1 with a genuine Jordan block J (sizes 2 and 3) at stable, center, unstable lam."""
    rng = np.random.default_rng(int(100 * lam) + 1000)
    other = 3.0 if abs(lam) <= 1 else 0.3
    for size in (2, 3):
        L = block_diag(_jordan(lam, size), other, 0.7)
        for kind in ("gaussian", "orthogonal"):
            for _ in range(50):
                A = _similar(rng, L, kind)
                with pytest.raises(csm.NotDiagonalizableError, match="not diagonalisable"):
                    split_spectrum(A, require_unstable=False)


def test_jordan_rejection_names_the_eigenvalue_and_multiplicities():
    with pytest.raises(csm.NotDiagonalizableError,
                       match=r"eigenvalue 1 has algebraic multiplicity 2 but geometric "
                             r"multiplicity 1.* are \[0\.001, 0\] and only those <= 2e-08"):
        split_spectrum(block_diag(_jordan(1.0, nu=1e-3), 2.0))
    with pytest.raises(csm.NotDiagonalizableError,
                       match=r"eigenvalue 2 has algebraic multiplicity 2 but geometric "
                             r"multiplicity 1;.*unstable space"):
        split_spectrum([[2.0, 1.0], [0.0, 2.0]])
    # nearly coinciding eigenvalues with nearly parallel eigenvectors: a near-Jordan block
    with pytest.raises(csm.NotDiagonalizableError, match="algebraic multiplicity 2"):
        split_spectrum(block_diag([[1.0, 1e-3], [0.0, 1.0 + 1e-9]], 2.0))
    # a complex Jordan block (repeated rotation coupled by the identity)
    R = _rot(0.7, 1.5)
    J = np.block([[R, np.eye(2)], [np.zeros((2, 2)), R]])
    P = _random_P(np.random.default_rng(0), 5, "gaussian")
    with pytest.raises(csm.NotDiagonalizableError, match="algebraic multiplicity 2"):
        split_spectrum(P @ block_diag(J, 0.1) @ np.linalg.inv(P))


def test_near_jordan_relative_to_the_norm():
    """The defect is judged relative to |A|: the same block scaled by 1e-6 is still refused."""
    for scale in (1e-6, 1.0, 1e6):
        A = scale * block_diag(_jordan(0.0, nu=1e-3), 1.0)
        with pytest.raises(csm.NotDiagonalizableError, match="geometric multiplicity 1"):
            split_spectrum(A, require_unstable=False)
        s = split_spectrum(scale * np.diag([0.0, 0.0, 1.0]), require_unstable=False)
        assert s.dim_cs + s.dim_u == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, "x"])
def test_parameters_validated(bad):
    A = np.diag([0.5, 2.0])
    with pytest.raises(csm.CsmError, match="`unit_tol`"):
        split_spectrum(A, bad)
    with pytest.raises(csm.CsmError, match="`max_condition`"):
        split_spectrum(A, max_condition=bad)
    with pytest.raises(csm.InputError, match="`max_condition` must be a finite number >= 1"):
        split_spectrum(A, max_condition=0.5)


def test_max_condition_still_applies():
    """Guard (passes before and after the fix): ``max_condition`` keeps its meaning."""
    P = np.array([[1.0, 1.0], [0.0, 1e-4]])
    A = P @ np.diag([0.5, 2.0]) @ np.linalg.inv(P)
    s = split_spectrum(A)
    assert 1e4 < s.condition_number < 1e5
    with pytest.raises(csm.NotDiagonalizableError, match="condition number .* > max_condition=1e"):
        split_spectrum(A, max_condition=1e3)


@pytest.fixture(scope="module")
def population_saddle():
    problem = csm.get_problem("phase_retrieval", n=8, loss="population")
    saddles = [c for c in problem.critical_points() if c.kind == "strict_saddle"]
    assert saddles
    return problem, saddles


@pytest.mark.parametrize("step", [0.05, 0.1, 0.2])
def test_phase_retrieval_population_saddle_finite_differences(population_saddle, step):
    """n - 2 zero Hessian eigenvalues at the saddle sphere; FD Jacobian of gradient descent."""
    problem, saddles = population_saddle
    n = problem.dim
    zz = float(problem.x_star @ problem.x_star)
    g = csm.GradientDescentMap(problem.gradient, step, dim=n)  # no Hessian: finite differences
    assert g.hessian is None
    for saddle in saddles:
        J = g.jacobian(saddle.theta)
        assert np.max(np.abs(J - J.T)) > 0  # not exactly symmetric: the general route
        s = split_spectrum(J)
        _check_split(J, s, (n - 1, 1), tol=1e-8)
        np.testing.assert_allclose(s.eigenvalues_u.real, [1 + 2 * step * zz], rtol=1e-7)
        np.testing.assert_allclose(np.sort(s.eigenvalues.real),
                                   np.sort(np.r_[1 - 2 * step * zz, np.ones(n - 2),
                                                 1 + 2 * step * zz]), atol=1e-7)
        assert s.condition_number < 1 + 1e-6


def test_phase_retrieval_population_saddle_manifold(population_saddle):
    problem, saddles = population_saddle
    n = problem.dim
    zz = float(problem.x_star @ problem.x_star)
    g = csm.GradientDescentMap(problem.gradient, 0.1, dim=n)  # finite-difference Jacobian
    m = csm.center_stable_manifold(g, saddles[0].theta)
    assert (m.dim_cs, m.dim_u) == (n - 1, 1)
    np.testing.assert_allclose(m.eigenvalues_u.real, [1 + 0.2 * zz], rtol=1e-7)

"""Tests of csm.measure.nondegenerate: check_jacobian_nondegenerate (hypothesis of Lemma 2.4).

Positive examples are compared with closed forms (normal-law probabilities, exponents of power
laws); negative controls (Jacobians singular on open sets, everywhere-singular gradient descent
with finite differences) must not pass.

Shared helpers (samplers, binomial tolerances, test maps) live in tests/test_measure.py; pytest
runs with ``--import-mode=importlib``, so the tests folder is put on ``sys.path`` to import
them (as for tests/_toy_problems.py).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
from scipy import stats

import csm
from csm.measure import check_jacobian_nondegenerate

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_measure import binom_close, gauss, quartic_hessian  # noqa: E402


def diag_map(f, df):
    """g(x) = (f(x1), x2) on R^2 with its analytic Jacobian diag(f'(x1), 1)."""

    def jac(X):
        J = np.zeros((len(X), 2, 2))
        J[:, 0, 0] = df(X[:, 0])
        J[:, 1, 1] = 1.0
        return J

    return csm.Map(lambda X: np.stack([f(X[:, 0]), X[:, 1]], 1), jacobian=jac, dim=2)


def test_jacobian_cube_matches_closed_form():
    # g = (x1^3, x2): sigma_min = min(3 x1^2, 1), P(sigma_min <= d) = P(|x1| <= sqrt(d/3)) ~ d^(1/2)
    n = 40_000
    rep = check_jacobian_nondegenerate(diag_map(lambda x: x**3, lambda x: 3 * x**2), gauss(2), n, rng=1)
    assert rep.passed, rep.reason
    assert rep.zero_count == 0
    prof = rep.profile
    for dl, p_hat in zip(prof.deltas, prof.fractions):
        if dl >= 1:  # sigma_min = 1 up to rounding there: P(<= 1) is ambiguous
            continue
        p = 2 * stats.norm.cdf(np.sqrt(dl / 3)) - 1
        assert binom_close(p_hat, p, n), (dl, p_hat, p)
    assert abs(prof.slope - 0.5) < 3 * prof.slope_se + 0.02, (prof.slope, prof.slope_se)
    assert prof.n_fit >= 3
    # the per-sample figures are the exact singular values / log-determinants
    assert rep.sigma_min.shape == (n,) and np.all(rep.sigma_min > 0)


def test_jacobian_square_slope_one_and_fd_jacobian():
    # g = (x1^2, x2), no analytic Jacobian (central differences): sigma_min ~ 2|x1|, slope 1
    g = csm.Map(lambda X: np.stack([X[:, 0] ** 2, X[:, 1]], 1), dim=2)
    rep = check_jacobian_nondegenerate(g, gauss(2), 40_000, rng=2)
    assert rep.passed, rep.reason
    assert abs(rep.slope - 1.0) < 3 * rep.slope_se + 0.05, (rep.slope, rep.slope_se)
    # log|det Dg| = log|2 x1|: its median is log(2 * 0.6745)
    assert abs(rep.log_abs_det_quantiles["q50"] - np.log(2 * stats.norm.ppf(0.75))) < 0.05


def test_jacobian_exact_zeros_explained_by_the_tail_pass():
    # g = (x1^5, x2): sigma_min = 5 x1^4 is <= 1e-12 with probability 2 Phi((2e-13)^(1/4)) - 1
    # ~ 5e-4, so ~21 of 40000 samples are "exactly" singular, as the tail law (slope 1/4)
    # predicts: the singular set is still null and the check passes.
    n = 40_000
    rep = check_jacobian_nondegenerate(diag_map(lambda x: x**5, lambda x: 5 * x**4), gauss(2), n, rng=5)
    p0 = 2 * stats.norm.cdf((rep.zero_tol * rep.scale / 5) ** 0.25) - 1
    assert rep.zero_count >= 3 and binom_close(rep.zero_count / n, p0, n)
    assert rep.passed, rep.reason
    assert abs(rep.slope - 0.25) < 3 * rep.slope_se + 0.02


def test_jacobian_singular_on_open_set_fails():
    # g = (x1, relu(x2)): Dg singular on the half-plane x2 < 0 -> plateau at 1/2, exact zeros
    n = 20_000
    g = diag_map(lambda x: x, lambda x: np.ones_like(x))
    g = csm.Map(lambda X: np.stack([X[:, 0], np.maximum(X[:, 1], 0)], 1),
                jacobian=lambda X: np.einsum("bi,ij->bij",
                                             np.stack([np.ones(len(X)), (X[:, 1] > 0) * 1.0], 1),
                                             np.eye(2)), dim=2)
    rep = check_jacobian_nondegenerate(g, gauss(2), n, rng=3)
    assert not rep.passed
    assert binom_close(rep.zero_count / n, 0.5, n)
    assert abs(rep.slope) < 1e-12 and "positive measure" in rep.reason


def test_jacobian_plateau_without_exact_zeros_fails_then_resolves():
    # sigma_min = 1e-9 on {x2 < q_{1/4}} (a diffeomorphism, numerically degenerate):
    # with the default grid (six decades below the median) the slope rule sees a plateau at 1/4;
    # a grid reaching below 1e-9 resolves it and the check passes.
    q = stats.norm.ppf(0.25)
    h = lambda x: np.where(x < q, 1e-9 * x, x)
    dh = lambda x: np.where(x < q, 1e-9, 1.0)
    g = csm.Map(lambda X: np.stack([X[:, 0], h(X[:, 1])], 1),
                jacobian=lambda X: np.einsum("bi,ij->bij",
                                             np.stack([np.ones(len(X)), dh(X[:, 1])], 1), np.eye(2)),
                dim=2)
    n = 20_000
    rep = check_jacobian_nondegenerate(g, gauss(2), n, rng=4)
    assert not rep.passed and rep.zero_count == 0
    assert rep.slope - 2 * rep.slope_se <= 0
    assert binom_close(rep.profile.fractions[-1], 0.25, n)
    fine = check_jacobian_nondegenerate(g, gauss(2), n, rng=4, deltas=10.0 ** -np.arange(13))
    assert fine.passed, fine.reason


# Finite-difference Jacobians are judged against their own error model ------------------


def quadratic_gd(eigs, gamma, *, rotated=True, analytic=False, seed=1):
    """GD map Psi(x) = x - gamma H x of the quadratic x^T H x / 2, H = Q diag(eigs) Q^T."""
    d = len(eigs)
    Q = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0] if rotated else np.eye(d)
    H = Q @ np.diag(eigs) @ Q.T
    hess = (lambda X: np.broadcast_to(H, (len(X), d, d)).copy()) if analytic else None
    return csm.GradientDescentMap(lambda X: X @ H.T, gamma, hessian=hess, dim=d)


SINGULAR_GD = {  # one Hessian eigenvalue exactly 1/gamma: D Psi is singular *everywhere*
    "rotated-d3-g0.1": ([1 / 0.1, 0.4 / 0.1, -0.3 / 0.1], 0.1, True),
    "rotated-d2-g0.3": ([1 / 0.3, 0.5 / 0.3], 0.3, True),
    "rotated-d4-g0.25": ([1 / 0.25, 0.3 / 0.25, 1.7 / 0.25, -1 / 0.25], 0.25, True),
    "diagonal-d3-g0.1": ([1 / 0.1, 0.4 / 0.1, -0.3 / 0.1], 0.1, False),
}


@pytest.mark.parametrize("case", list(SINGULAR_GD))
@pytest.mark.parametrize("deltas", [None, 10.0 ** -np.arange(13)], ids=["default-grid", "1e0..1e-12"])
def test_jacobian_singular_everywhere_gd_never_passes(case, deltas):
    # With central differences sigma_min(D Psi) is rounding noise (~1e-12..1e-11), which a tail
    # fit over a grid placed in that noise used to read as a regular decay ("passed").  Judged
    # against the finite-difference error model the noise is unresolved: never a pass.
    eigs, gamma, rotated = SINGULAR_GD[case]
    d, n = len(eigs), 20_000
    an = check_jacobian_nondegenerate(quadratic_gd(eigs, gamma, rotated=rotated, analytic=True),
                                      gauss(d), n, rng=0, deltas=deltas)
    fd = check_jacobian_nondegenerate(quadratic_gd(eigs, gamma, rotated=rotated), gauss(d), n,
                                      rng=0, deltas=deltas)
    assert not an.passed, an.reason
    assert not fd.passed, fd.reason
    assert an.status == "failed" and an.jacobian == "analytic"
    assert an.zero_count == n and "positive measure" in an.reason
    assert an.unresolved_count == 0 and an.resolvable_delta == 0.0  # analytic: no FD model
    assert fd.jacobian == "finite differences"
    assert fd.status in ("inconclusive", "failed"), fd.status
    # every sample's sigma_min lies below what the differences resolve
    assert fd.unresolved_count == n
    assert np.all(fd.sigma_min <= fd.fd_error)
    assert fd.sigma_min_quantiles["q99"] < 1e-10 < 1e-9 < fd.resolvable_delta < 1e-7
    if deltas is None and rotated:  # the default grid sits in the noise: nothing is resolvable
        assert fd.status == "inconclusive" and fd.reason.startswith("inconclusive")
        assert "finite differences" in fd.reason
    if fd.status == "failed":  # a resolved plateau: P(sigma_min <= delta) = 1 above the resolution
        assert np.all(fd.profile.deltas >= fd.resolvable_delta)
        assert np.all(fd.profile.fractions == 1.0) and "plateau" in fd.reason


@pytest.mark.parametrize("name", ["quadratic 0.5/gamma", "quartic GD", "cube"])
def test_jacobian_fd_positive_controls_still_pass(name):
    # The instrument can still see a pass with central differences: a non-degenerate quadratic
    # (eigenvalue 1/gamma replaced by 0.5/gamma), and two nonlinear maps singular on null sets.
    n = 20_000
    if name == "quadratic 0.5/gamma":
        fd = quadratic_gd([0.5 / 0.1, 0.4 / 0.1, -0.3 / 0.1], 0.1)
        an = quadratic_gd([0.5 / 0.1, 0.4 / 0.1, -0.3 / 0.1], 0.1, analytic=True)
        d, slope = 3, None  # sigma_min = 0.5 everywhere: no sample below the grid
    elif name == "quartic GD":  # Psi(x) = x - 0.5 x^3 / 3: D Psi = diag(1 - x_i^2 / 2), slope 1
        fd = csm.GradientDescentMap(lambda X: X**3 / 3, 0.5, dim=3)
        an = csm.GradientDescentMap(lambda X: X**3 / 3, 0.5, hessian=quartic_hessian, dim=3)
        d, slope = 3, 1.0
    else:  # (x1^3, x2): slope 1/2
        fd = csm.Map(lambda X: np.stack([X[:, 0] ** 3, X[:, 1]], 1), dim=2)
        an = diag_map(lambda x: x**3, lambda x: 3 * x**2)
        d, slope = 2, 0.5
    rep = check_jacobian_nondegenerate(fd, gauss(d), n, rng=21)
    ref = check_jacobian_nondegenerate(an, gauss(d), n, rng=21)
    assert rep.jacobian == "finite differences" and ref.jacobian == "analytic"
    assert rep.passed and rep.status == "passed", rep.reason
    assert ref.passed and ref.status == "passed", ref.reason
    assert rep.unresolved_count <= 2  # ~ n P(sigma_min <= 1e-9): none
    assert 0 < rep.resolvable_delta < 1e-7
    assert np.all(rep.profile.deltas >= rep.resolvable_delta)
    if slope is not None:
        assert abs(rep.slope - slope) < 3 * rep.slope_se + 0.05, (rep.slope, rep.slope_se)
        # same counts below the median (at delta = median, sigma_min = 1 up to rounding)
        np.testing.assert_array_equal(rep.profile.counts[1:], ref.profile.counts[1:])


def test_jacobian_fd_error_model_bounds_the_actual_error():
    # fd_error (the per-sample resolvable scale) must bound |sigma_min(FD) - sigma_min(exact)|
    # (Weyl) for smooth maps, without being absurdly pessimistic.
    f = lambda X: np.stack([np.sin(3 * X[:, 0]) + X[:, 1] ** 2, X[:, 0] * X[:, 1] + np.exp(0.5 * X[:, 1])], 1)
    jf = lambda X: np.stack([np.stack([3 * np.cos(3 * X[:, 0]), 2 * X[:, 1]], 1),
                             np.stack([X[:, 1], X[:, 0] + 0.5 * np.exp(0.5 * X[:, 1])], 1)], 1)
    for g, ga in ((csm.Map(f, dim=2), csm.Map(f, jacobian=jf, dim=2)),
                  (quadratic_gd([10.0, 4.0, -3.0], 0.1), quadratic_gd([10.0, 4.0, -3.0], 0.1, analytic=True))):
        rep = check_jacobian_nondegenerate(g, gauss(g.dim), 5000, rng=22)
        ref = check_jacobian_nondegenerate(ga, gauss(g.dim), 5000, rng=22)
        err = np.abs(rep.sigma_min - ref.sigma_min)
        # the bound holds even without the safety factor kappa (measured ratio <= ~0.4)
        assert np.all(err <= rep.fd_error / rep.fd_safety), np.max(err / rep.fd_error)
        assert np.median(rep.fd_error) < 1e-7
        assert set(rep.fd_error_quantiles) >= {"q50", "q99"}
        assert np.all(ref.fd_error == 0)


def test_jacobian_fd_small_bad_set_below_resolution_is_inconclusive():
    # g = (x1 - gamma c(x2) x1, x2) with gamma c = 1 on {x2 < q} (mass 2e-4: ~4 of 20000
    # samples, too few for the tail window) and 1 - x2 elsewhere (singular on x2 = 0: slope 1).
    # The resolved profile decays, but the handful of samples on the bad set are below what
    # central differences resolve: not a pass.  The analytic Jacobian sees exact zeros: fails.
    gamma, q = 0.1, stats.norm.ppf(2e-4)
    c = lambda x2: np.where(x2 < q, 1 / gamma, (1 - x2) / gamma)
    f = lambda X: np.stack([X[:, 0] - gamma * (c(X[:, 1]) * X[:, 0]), X[:, 1]], 1)

    def jac(X):
        J = np.zeros((len(X), 2, 2))
        bad = X[:, 1] < q
        J[:, 0, 0] = np.where(bad, 0.0, X[:, 1])
        J[:, 0, 1] = np.where(bad, 0.0, X[:, 0])
        J[:, 1, 1] = 1.0
        return J

    fd = check_jacobian_nondegenerate(csm.Map(f, dim=2), gauss(2), 20_000, rng=0)
    an = check_jacobian_nondegenerate(csm.Map(f, jacobian=jac, dim=2), gauss(2), 20_000, rng=0)
    assert not fd.passed and fd.status == "inconclusive", fd.reason
    assert fd.reason.startswith("inconclusive: the resolved profile decays")
    assert fd.slope - 2 * fd.slope_se > 0  # the resolved part alone would have passed
    assert fd.unresolved_count >= 3 and fd.unresolved_expected < 0.01
    assert not an.passed and an.status == "failed" and "positive measure" in an.reason
    assert an.zero_count == fd.unresolved_count


def test_jacobian_fd_relu_never_passes():
    # the half-plane negative control with central differences: exact zeros are below the FD
    # resolution too, so the verdict may be "failed" (resolved plateau) or "inconclusive"
    g = csm.Map(lambda X: np.stack([X[:, 0], np.maximum(X[:, 1], 0)], 1), dim=2)
    rep = check_jacobian_nondegenerate(g, gauss(2), 20_000, rng=3)
    assert not rep.passed and rep.status in ("failed", "inconclusive")
    assert binom_close(rep.unresolved_count / 20_000, 0.5, 20_000)


def test_jacobian_accepts_problem_as_sampler():
    class P(csm.ProblemBase):
        name, dim = "quartic", 3

        def _loss(self, X):
            return np.sum(X**4, 1) / 12

        def _gradient(self, X):
            return X**3 / 3

        def _hessian(self, X):
            return np.einsum("bi,ij->bij", X**2, np.eye(3))

    prob = P()
    g = csm.GradientDescentMap(prob, 0.5)
    rep = check_jacobian_nondegenerate(g, prob, 5000, rng=0)
    assert rep.passed, rep.reason
    assert rep.dim == 3

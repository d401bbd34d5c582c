"""Tests of csm.measure: Lemma 2.4, Proposition 2.5, Corollary 2.3 as measured numbers.

Every check is run on a positive example and on a negative control that must FAIL; fitted
rates are compared with closed forms (normal-law probabilities, exponents of power laws,
``sum log|lambda_u|``), observed fractions with exact binomial tolerances.
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import csm
from csm.errors import CsmError, InputError, NotFixedPointError, NoUnstableDirectionError, ShapeError
from csm.measure import (
    bad_step_sizes,
    check_jacobian_nondegenerate,
    check_preimage_null,
    clopper_pearson,
    escape_rate,
    manifold_stay_fraction,
)

ROOT = Path(__file__).resolve().parents[1]


def gauss(d):
    return lambda rng, n: rng.standard_normal((n, d))


def binom_close(p_hat, p, n, z=4.5):
    """|p_hat - p| within z binomial standard deviations (+1/n for p ~ 0): false-alarm ~1e-5."""
    return abs(p_hat - p) <= z * np.sqrt(max(p * (1 - p), 1e-300) / n) + 1.0 / n


def diag_map(f, df):
    """g(x) = (f(x1), x2) on R^2 with its analytic Jacobian diag(f'(x1), 1)."""

    def jac(X):
        J = np.zeros((len(X), 2, 2))
        J[:, 0, 0] = df(X[:, 0])
        J[:, 1, 1] = 1.0
        return J

    return csm.Map(lambda X: np.stack([f(X[:, 0]), X[:, 1]], 1), jacobian=jac, dim=2)


# ---------------------------------------------------------------------------------------
# 1. check_jacobian_nondegenerate
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# 2. check_preimage_null
# ---------------------------------------------------------------------------------------


def test_preimage_fold_slope_half():
    # g = (x1^2, x2), Z = {y1 = 0}: P(x1^2 <= d) = P(|x1| <= sqrt d) ~ d^(1/2)
    n = 40_000
    rep = check_preimage_null(lambda X: np.stack([X[:, 0] ** 2, X[:, 1]], 1), lambda Y: Y[:, 0],
                              gauss(2), n, rng=5)
    assert rep.passed, rep.reason
    for dl, p_hat in zip(rep.profile.deltas, rep.profile.fractions):
        assert binom_close(p_hat, 2 * stats.norm.cdf(np.sqrt(dl)) - 1, n)
    assert abs(rep.slope - 0.5) < 3 * rep.slope_se + 0.02


def test_preimage_point_codimension_two():
    # identity, Z = {0} in R^2: P(|X| <= d) = 1 - exp(-d^2/2) ~ d^2/2 (slope 2)
    rep = check_preimage_null(lambda X: X.copy(), lambda Y: np.linalg.norm(Y, axis=1), gauss(2),
                              40_000, rng=6)
    assert rep.passed
    assert abs(rep.slope - 2.0) < 3 * rep.slope_se + 0.1, (rep.slope, rep.slope_se)


def test_preimage_collapse_fails():
    # g = (relu(x1), x2) maps the half-plane x1 < 0 onto Z = {y1 = 0}
    n = 20_000
    rep = check_preimage_null(lambda X: np.stack([np.maximum(X[:, 0], 0), X[:, 1]], 1),
                              lambda Y: Y[:, 0], gauss(2), n, rng=7)
    assert not rep.passed
    assert binom_close(rep.zero_count / n, 0.5, n)
    assert np.all(rep.profile.fractions >= rep.zero_count / n)  # the plateau


# ---------------------------------------------------------------------------------------
# 3. bad_step_sizes
# ---------------------------------------------------------------------------------------


def quartic_hessian(X):  # L = sum x_i^4 / 12, H = diag(x_i^2)
    return np.einsum("bi,ij->bij", X**2, np.eye(X.shape[1]))


def test_bad_steps_density_and_step_band_closed_form():
    n, d, gamma = 20_000, 3, 0.5
    rep = bad_step_sizes(quartic_hessian, gauss(d), n, rng=8, step=gamma)
    assert rep.passed, rep.reason
    assert rep.atom_count < 3 and rep.atoms == []
    assert rep.slope > 0.5 and rep.slope - 2 * rep.slope_se > 0
    # bad steps 1/x_i^2: the median of gamma = 1 / median(x^2) = 1 / chi2_1.ppf(1/2)
    assert abs(rep.step_quantiles["q50"] / (1 / stats.chi2.ppf(0.5, 1)) - 1) < 0.05
    # P(min_i |1 - gamma x_i^2| <= tau) in closed form, against the step profile
    prof = rep.step_profile
    for tau, p_hat in zip(prof.deltas, prof.fractions):
        lo, hi = np.sqrt(max(0.0, (1 - tau) / gamma)), np.sqrt((1 + tau) / gamma)
        p1 = 2 * (stats.norm.cdf(hi) - stats.norm.cdf(lo))
        assert binom_close(p_hat, 1 - (1 - p1) ** d, n), (tau, p_hat)
    # the headline band step_tol = 1e-3 with its Clopper-Pearson bound
    assert rep.step_bad_fraction <= rep.step_bad_upper < 0.01
    assert abs(prof.slope - 1.0) < 3 * prof.slope_se + 0.1


def test_bad_steps_quadratic_atoms_fail():
    A = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, -1.0]])
    lam = np.linalg.eigvalsh(A)
    n = 2000
    rep = bad_step_sizes(lambda X: np.broadcast_to(A, (len(X), 3, 3)).copy(), gauss(3), n, rng=9,
                         step=1 / lam[-1])
    assert not rep.passed
    assert rep.atom_count == n
    got = sorted(a["step"] for a in rep.atoms)
    np.testing.assert_allclose(got, sorted(1 / lam[lam > 0]), rtol=1e-9)
    assert all(a["mass"] == 1.0 for a in rep.atoms)
    assert rep.slope == 0.0  # plateau: every window holds all n samples
    assert rep.step_bad_count == n and rep.step_bad_fraction == 1.0


def test_bad_steps_repeated_eigenvalue_is_not_an_atom():
    # H(x) = |x|^2 I + x x^T: eigenvalue |x|^2 with multiplicity d-1 at every point
    def H(X):
        r2 = np.sum(X**2, 1)
        return r2[:, None, None] * np.eye(X.shape[1]) + np.einsum("bi,bj->bij", X, X)

    rep = bad_step_sizes(H, gauss(4), 5000, rng=10)
    assert rep.passed, rep.reason
    assert rep.n_bad_steps == 2 * 5000  # two distinct eigenvalues per sample


def test_bad_steps_no_positive_eigenvalue_passes():
    rep = bad_step_sizes(lambda X: -quartic_hessian(X) - np.eye(2), gauss(2), 100, rng=0)
    assert rep.passed and rep.n_bad_steps == 0


# ---------------------------------------------------------------------------------------
# A piecewise-polynomial empirical risk: one-hidden-layer ReLU regression on 20 points
# ---------------------------------------------------------------------------------------


class ReluRegression(csm.ProblemBase):
    """L(theta) = (1/m) sum_i (sum_j v_j relu(w_j x_i + b_j) [+ c] - y_i)^2, a.e. derivatives.

    theta = (w_1..w_N, b_1..b_N, v_1..v_N[, c]).  Gradient and Hessian use relu' = 1[z > 0]
    and relu'' = 0 (exact off the null set of kinks).
    """

    def __init__(self, N=4, m=20, bias=False):
        self.N, self.bias = N, bias
        self.x = np.linspace(-1.0, 1.0, m)
        self.y = np.sin(2.0 * self.x) + 0.3 * self.x**2
        self.dim = 3 * N + int(bias)
        self.name = "relu-regression"

    def _parts(self, T):
        N = self.N
        w, b, v = T[:, :N], T[:, N:2 * N], T[:, 2 * N:3 * N]
        c = T[:, 3 * N] if self.bias else np.zeros(len(T))
        Z = w[:, None, :] * self.x[None, :, None] + b[:, None, :]  # (B, m, N)
        A = (Z > 0).astype(float)
        R = Z * A
        e = np.einsum("bij,bj->bi", R, v) + c[:, None] - self.y
        Jf = [v[:, None, :] * A * self.x[None, :, None], v[:, None, :] * A, R]
        if self.bias:
            Jf.append(np.ones((len(T), len(self.x), 1)))
        return A, e, np.concatenate(Jf, axis=2)  # Jf: (B, m, d)

    def _loss(self, T):
        return np.mean(self._parts(T)[1] ** 2, axis=1)

    def _gradient(self, T):
        _, e, Jf = self._parts(T)
        return 2.0 / len(self.x) * np.einsum("bi,bid->bd", e, Jf)

    def _hessian(self, T):
        A, e, Jf = self._parts(T)
        N, m = self.N, len(self.x)
        H = np.einsum("bid,bie->bde", Jf, Jf)
        Swv = np.einsum("bi,bij,i->bj", e, A, self.x)  # sum_i e_i d2f_i / dv_j dw_j
        Sbv = np.einsum("bi,bij->bj", e, A)
        j = np.arange(N)
        for S, off in ((Swv, 0), (Sbv, N)):
            H[:, off + j, 2 * N + j] += S
            H[:, 2 * N + j, off + j] += S
        return 2.0 / m * H


def _fd(f, T, h=1e-6):
    d = T.shape[1]
    cols = [(f(T + h * np.eye(d)[i]) - f(T - h * np.eye(d)[i])) / (2 * h) for i in range(d)]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("bias", [False, True])
def test_relu_regression_derivatives_against_finite_differences(bias):
    prob = ReluRegression(bias=bias)
    T = np.random.default_rng(0).standard_normal((6, prob.dim))
    np.testing.assert_allclose(prob.gradient(T), _fd(prob.loss, T), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(prob.hessian(T), _fd(prob.gradient, T), rtol=1e-5, atol=1e-6)


def test_relu_regression_gd_passes_checks_1_to_3():
    prob = ReluRegression(N=4)  # no output bias
    gd = csm.GradientDescentMap(prob, 0.1)
    n = 5000
    r1 = check_jacobian_nondegenerate(gd, prob, n, rng=11)
    assert r1.passed, r1.reason
    # Z = hyperplane {w_1 x_0 + b_1 = 0} (neuron 1's kink at the first data point)
    x0, N = prob.x[0], prob.N
    dist = lambda Y: (Y[:, 0] * x0 + Y[:, N]) / np.hypot(1.0, x0)
    r2 = check_preimage_null(gd, dist, prob, n, rng=12)
    assert r2.passed, r2.reason
    assert r2.slope - 2 * r2.slope_se > 0.5  # codimension-1 image: slope ~ 1
    r3 = bad_step_sizes(prob, prob, n, rng=13, step=0.1)
    assert r3.passed, r3.reason
    assert r3.step_bad_upper < 0.01


def test_relu_regression_with_output_bias_has_atom_at_one_half():
    # With an output bias c, where every neuron is dead on every data point (b_j + |w_j| <= 0
    # for all j, probability 4^-N) the Hessian is the constant diag(0, ..., 0, 2): the step
    # gamma = 1/2 makes D Psi singular on that open set.  The checks must find it.
    prob = ReluRegression(N=2, bias=True)
    n = 4000
    rep = bad_step_sizes(prob, prob, n, rng=14, step=0.5)
    assert not rep.passed
    atom = rep.atoms[0]
    assert abs(atom["step"] - 0.5) < 1e-9
    assert binom_close(atom["mass"], 1 / 16, n)
    assert binom_close(rep.step_bad_fraction, 1 / 16, n, z=6)  # dead region (+ rare near-misses)
    bad = check_jacobian_nondegenerate(csm.GradientDescentMap(prob, 0.5), prob, n, rng=15)
    assert not bad.passed and binom_close(bad.zero_count / n, 1 / 16, n)
    good = check_jacobian_nondegenerate(csm.GradientDescentMap(prob, 0.1), prob, n, rng=15)
    assert good.passed, good.reason  # "for a.e. step size"


# ---------------------------------------------------------------------------------------
# 4. escape_rate and manifold_stay_fraction
# ---------------------------------------------------------------------------------------


def linear_map(eigs, seed=0):
    """x -> A x with A = Q diag(eigs) Q^{-1}, Q a random non-orthogonal matrix."""
    d = len(eigs)
    r = np.random.default_rng(seed)
    Q = np.eye(d) + 0.3 * r.standard_normal((d, d))
    A = Q @ np.diag(eigs) @ np.linalg.inv(Q)
    return csm.Map(lambda X: X @ A.T, jacobian=lambda X: np.broadcast_to(A, (len(X), d, d)).copy(),
                   dim=d), A


def quadratic_map(eigs, seed=0):
    """x -> A x + C[x, x] (C a random quadratic form): same linearisation at 0."""
    g0, A = linear_map(eigs, seed)
    d = len(eigs)
    C = np.random.default_rng(seed + 100).standard_normal((d, d, d))
    f = lambda X: X @ A.T + np.einsum("ijk,bj,bk->bi", C, X, X)
    jac = lambda X: A[None] + np.einsum("ijk,bk->bij", C, X) + np.einsum("ijk,bj->bik", C, X)
    return csm.Map(f, jacobian=jac, dim=d)


# sample sizes: 5*10^4 points (10^5 for the fast-escaping dim_u = 3 case), 40 steps
ESCAPE_CASES = {
    "dim_u=1": ([0.5, 0.8, 1.5, 0.3], 50_000),
    "dim_u=2+center": ([0.5, 1.0, 1.4, 1.3, 0.2], 50_000),
    "dim_u=3+singular": ([0.6, 1.3, 1.3, 1.35, 0.0], 100_000),
}


@pytest.mark.parametrize("case", list(ESCAPE_CASES))
def test_escape_rate_linear(case):
    eigs, n = ESCAPE_CASES[case]
    g, _ = linear_map(eigs)
    rep = escape_rate(g, np.zeros(len(eigs)), radius=0.1, n_points=n, n_steps=40, rng=16)
    pred = sum(np.log(abs(e)) for e in eigs if abs(e) > 1)
    assert rep.predicted_rate == pytest.approx(pred, rel=1e-10)
    assert rep.dim_u == sum(abs(e) > 1 for e in eigs)
    assert rep.passed, rep.reason
    assert abs(rep.ratio - 1) <= 0.10
    assert rep.rate_se < 0.05 * pred
    k_lo, k_hi = rep.fit_window
    assert k_hi - k_lo >= 2 and rep.survivors[k_hi] >= 100


@pytest.mark.parametrize("case", list(ESCAPE_CASES))
def test_escape_rate_quadratic_perturbation(case):
    eigs, n = ESCAPE_CASES[case]
    rep = escape_rate(quadratic_map(eigs), np.zeros(len(eigs)), radius=0.05, n_points=n,
                      n_steps=40, rng=17)
    assert rep.passed, rep.reason
    assert abs(rep.ratio - 1) <= 0.10


def test_escape_rate_fails_when_not_differentiable_at_the_saddle():
    # g(x) = (x1/2, 1.5 x2 for x2 > 0 else 3 x2): not differentiable at 0 (Assumption 2.1
    # fails).  Central differences give Dg(0) = diag(0.5, 2.25), predicted rate log 2.25, but the
    # slow side escapes at log 1.5 only.
    g = csm.Map(lambda X: np.stack([0.5 * X[:, 0], np.where(X[:, 1] > 0, 1.5, 3.0) * X[:, 1]], 1),
                dim=2)
    rep = escape_rate(g, np.zeros(2), radius=0.1, n_points=50_000, n_steps=40, rng=18)
    assert rep.predicted_rate == pytest.approx(np.log(2.25), rel=1e-6)
    assert not rep.passed
    assert abs(rep.fitted_rate - np.log(1.5)) < 0.1 * np.log(1.5)


def test_escape_rate_wrong_jacobian_fails():
    g, A = linear_map([0.5, 0.8, 1.5, 0.3])
    rep = escape_rate(g, np.zeros(4), radius=0.1, n_points=20_000, n_steps=40, rng=19,
                      jacobian=np.diag([0.5, 0.8, 1.8, 0.3]))
    assert not rep.passed and abs(rep.ratio - np.log(1.5) / np.log(1.8)) < 0.1


def test_manifold_points_stay_uniform_points_leave():
    pytest.importorskip("csm.manifold")
    eigs = [0.5, 0.8, 1.5, 0.3]
    g = quadratic_map(eigs)
    m = csm.center_stable_manifold(g, np.zeros(4))
    n_steps = 30
    rep = manifold_stay_fraction(g, np.zeros(4), n_points=2000, n_steps=n_steps, manifold=m, rng=20)
    assert rep.passed, rep.reason
    assert rep.fraction >= 0.99 and rep.lower > 0.99
    assert rep.ball_fraction < 0.01  # ~ C 1.5^-30

    class Pushed:  # the same manifold, points pushed off it by 1e-6 along E_u: must leave
        radius, split = m.radius, m.split

        def eigen_norm(self, X):
            return m.eigen_norm(X)

        def sample(self, n, rng):
            return m.sample(n, rng) + 1e-6 * m.basis_u[:, 0]

    off = manifold_stay_fraction(g, np.zeros(4), n_points=500, n_steps=n_steps, manifold=Pushed(),
                                 rng=20, compare_ball=False)
    assert not off.passed and off.fraction < 0.01


# ---------------------------------------------------------------------------------------
# Determinism, JSON, input validation, docs
# ---------------------------------------------------------------------------------------


def _all_reports(seed):
    g = csm.Map(lambda X: np.stack([X[:, 0] ** 3, X[:, 1]], 1), dim=2)
    lin, _ = linear_map([0.5, 0.8, 1.5, 0.3])
    return [
        check_jacobian_nondegenerate(g, gauss(2), 3000, rng=seed),
        check_preimage_null(g, lambda Y: Y[:, 0], gauss(2), 3000, rng=seed),
        bad_step_sizes(quartic_hessian, gauss(2), 3000, rng=seed, step=0.3),
        escape_rate(lin, np.zeros(4), radius=0.1, n_points=5000, n_steps=20, rng=seed),
    ]


def test_same_seed_same_report_and_json_safe():
    a, b, c = _all_reports(3), _all_reports(3), _all_reports(4)
    for ra, rb, rc in zip(a, b, c):
        da = ra.to_dict()
        assert da == rb.to_dict()
        assert da != rc.to_dict()
        json.dumps(da, allow_nan=False)
        assert isinstance(da["passed"], bool)
    # a Generator is consumed as given: same state, same report
    r1 = check_jacobian_nondegenerate(csm.Map(lambda X: X**3, dim=1), gauss(1), 500,
                                      rng=np.random.default_rng(7))
    r2 = check_jacobian_nondegenerate(csm.Map(lambda X: X**3, dim=1), gauss(1), 500,
                                      rng=np.random.default_rng(7))
    assert r1.to_dict() == r2.to_dict()


def test_to_npz_roundtrip(tmp_path):
    rep = _all_reports(0)[0]
    rep.to_npz(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as z:
        np.testing.assert_array_equal(z["sigma_min"], rep.sigma_min)


def _ident(X):
    return X.copy()


@pytest.mark.parametrize(
    "call, argname, exc",
    [
        (lambda: check_jacobian_nondegenerate(_ident, gauss(2), 1), "`n`", InputError),
        (lambda: check_jacobian_nondegenerate(_ident, gauss(2), 2.5), "`n`", InputError),
        (lambda: check_jacobian_nondegenerate(3, gauss(2), 10), "`map`", InputError),
        (lambda: check_jacobian_nondegenerate(_ident, "x", 10), "`sampler`", InputError),
        (lambda: check_jacobian_nondegenerate(csm.Map(_ident, dim=3), gauss(2), 10), "`sampler`",
         ShapeError),
        (lambda: check_jacobian_nondegenerate(_ident, lambda rng, n: np.zeros(n), 10), "`sampler`",
         ShapeError),
        (lambda: check_jacobian_nondegenerate(_ident, gauss(2), 10, deltas=[1e-3, -1, 1]),
         "`deltas`", InputError),
        (lambda: check_jacobian_nondegenerate(_ident, gauss(2), 10, deltas=[[1, 2, 3]]),
         "`deltas`", ShapeError),
        (lambda: check_preimage_null(_ident, None, gauss(2), 10), "`distance`", InputError),
        (lambda: check_preimage_null(_ident, lambda Y: Y, gauss(2), 10), "`distance`", ShapeError),
        (lambda: check_preimage_null(_ident, lambda Y: Y[:, 0], gauss(2), 0), "`n`", InputError),
        (lambda: bad_step_sizes(lambda X: X, gauss(2), 10), "`hessian`", ShapeError),
        (lambda: bad_step_sizes(1.0, gauss(2), 10), "`hessian`", InputError),
        (lambda: bad_step_sizes(quartic_hessian, gauss(2), 1), "`n`", InputError),
        (lambda: bad_step_sizes(quartic_hessian, gauss(2), 10, step=-1), "`step`", InputError),
        (lambda: escape_rate(_ident, np.zeros((2, 2)), radius=1, n_points=10, n_steps=2),
         "`fixed_point`", ShapeError),
        (lambda: escape_rate(_ident, np.zeros(2), radius=0, n_points=10, n_steps=2), "`radius`",
         InputError),
        (lambda: escape_rate(_ident, np.zeros(2), radius=1, n_points=1, n_steps=2), "`n_points`",
         InputError),
        (lambda: escape_rate(lambda X: 2 * X, np.zeros(2), radius=1, n_points=10, n_steps=2,
                             jacobian=np.eye(3)), "`jacobian`", ShapeError),
        (lambda: escape_rate(lambda X: 2 * X + 1, np.zeros(2), radius=1, n_points=10, n_steps=2),
         "`fixed_point`", NotFixedPointError),
        (lambda: escape_rate(lambda X: 0.5 * X, np.zeros(2), radius=1, n_points=10, n_steps=2),
         "modulus > 1", NoUnstableDirectionError),
    ],
)
def test_bad_input_raises_csm_error_naming_the_argument(call, argname, exc):
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, CsmError)
    assert argname in str(info.value)


def test_clopper_pearson_zero_hits():
    lo, up = clopper_pearson(0, 1000)
    assert lo == 0 and up == pytest.approx(1 - 0.025 ** (1 / 1000), rel=1e-10)


def test_module_docstring_examples():
    import csm.measure as mod

    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_docs_page_examples_print_what_the_page_says():
    res = doctest.testfile(str(ROOT / "docs" / "measure-checks.md"), module_relative=False,
                           optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_lazy_exports():
    assert csm.check_jacobian_nondegenerate is check_jacobian_nondegenerate
    assert csm.escape_rate is escape_rate

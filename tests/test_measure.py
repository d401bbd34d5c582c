"""Tests of csm.measure: Lemma 2.4, Proposition 2.5, Corollary 2.3 as measured numbers.

Every check is run on a positive example and on a negative control that must FAIL; fitted
rates are compared with closed forms (normal-law probabilities, exponents of power laws,
``sum log|lambda_u|``), observed fractions with exact binomial tolerances.  The checks of one
module each are in ``tests/test_measure_<module>.py``; this file holds the helpers they share,
the ReLU-regression example that runs checks 1-3 together, and what all reports have in common
(determinism, JSON, ``Result`` behaviour, input validation, docstrings, the docs page).
"""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

import csm
from csm.errors import CsmError, InputError, NotFixedPointError, NoUnstableDirectionError, ShapeError
from csm.measure import (
    bad_step_sizes,
    check_jacobian_nondegenerate,
    check_preimage_null,
    escape_rate,
    manifold_stay_fraction,
)

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------
# Helpers shared by tests/test_measure_*.py
# ---------------------------------------------------------------------------------------


def gauss(d):
    return lambda rng, n: rng.standard_normal((n, d))


def binom_close(p_hat, p, n, z=4.5):
    """|p_hat - p| within z binomial standard deviations (+1/n for p ~ 0): false-alarm ~1e-5."""
    return abs(p_hat - p) <= z * np.sqrt(max(p * (1 - p), 1e-300) / n) + 1.0 / n


def quartic_hessian(X):  # L = sum x_i^4 / 12, H = diag(x_i^2)
    return np.einsum("bi,ij->bij", X**2, np.eye(X.shape[1]))


def linear_map(eigs, seed=0):
    """x -> A x with A = Q diag(eigs) Q^{-1}, Q a random non-orthogonal matrix."""
    d = len(eigs)
    r = np.random.default_rng(seed)
    Q = np.eye(d) + 0.3 * r.standard_normal((d, d))
    A = Q @ np.diag(eigs) @ np.linalg.inv(Q)
    return csm.Map(lambda X: X @ A.T, jacobian=lambda X: np.broadcast_to(A, (len(X), d, d)).copy(),
                   dim=d), A


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


@pytest.mark.parametrize("name", ["tailfit", "nondegenerate", "preimage", "bad_steps", "escape"])
def test_module_docstring_examples(name):
    mod = importlib.import_module(f"csm.measure.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_docs_page_examples_print_what_the_page_says():
    res = doctest.testfile(str(ROOT / "docs" / "measure-checks.md"), module_relative=False,
                           optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_lazy_exports():
    assert csm.check_jacobian_nondegenerate is check_jacobian_nondegenerate
    assert csm.escape_rate is escape_rate


def test_reports_are_results_with_success_and_message():
    # every report is a csm._results.Result: success is the passed flag, message one sentence
    # with the verdict and the reason, to_dict carries both and leaves per-sample arrays out
    from csm._results import Result

    g = csm.Map(lambda X: 0.5 * X, dim=2)
    reports = _all_reports(0) + [
        check_jacobian_nondegenerate(g, gauss(2), 200, rng=0),  # sigma_min = 0.5: inconclusive grid
        manifold_stay_fraction(csm.Map(lambda X: X * np.array([0.5, 2.0]), dim=2), np.zeros(2),
                               n_points=200, n_steps=5, rng=0),
    ]
    arrays = {"sigma_min", "log_abs_det", "fd_error", "distances", "steps", "exit_times"}
    for rep in reports:
        assert isinstance(rep, Result)
        assert rep.success is rep.passed
        verdict = "passed" if rep.passed else (
            "inconclusive" if rep.reason.startswith("inconclusive: ") else "failed")
        assert f" {verdict}: " in rep.message and rep.message.startswith("check of ")
        assert rep.message.endswith(rep.reason.removeprefix("inconclusive: "))
        d = rep.to_dict()
        assert d["success"] is d["passed"] is rep.passed and d["message"] == rep.message
        assert not arrays & set(d)
        if hasattr(rep, "status"):
            assert rep.status == verdict


def test_escape_rate_fixed_point_tol():
    # the documented name of the tolerance is fixed_point_tol (csm.maps.check_fixed_point)
    g = csm.Map(lambda X: X * np.array([0.5, 2.0]) + 1e-6, dim=2)
    with pytest.raises(NotFixedPointError, match="fixed_point_tol"):
        escape_rate(g, np.zeros(2), radius=0.1, n_points=100, n_steps=5)
    rep = escape_rate(g, np.zeros(2), radius=0.1, n_points=2000, n_steps=10, fixed_point_tol=1e-5)
    assert rep.dim_u == 1
    with pytest.raises(InputError, match="fixed_point_tol"):
        escape_rate(g, np.zeros(2), radius=0.1, n_points=100, n_steps=5, fixed_point_tol=-1)


def test_exit_times_convention_of_the_reports():
    # orbits that never left have exit time n_steps + 1 in the reports (csm.orbits says -1)
    g = csm.Map(lambda X: X * np.array([0.5, 1.5]), dim=2)
    rep = escape_rate(g, np.zeros(2), radius=0.1, n_points=5000, n_steps=3, rng=0,
                      fit_window=(0, 3))
    T = rep.exit_times
    assert T.min() >= 1 and T.max() == 4
    np.testing.assert_array_equal(rep.survivors, [np.sum(T > k) for k in range(4)])

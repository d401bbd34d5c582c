"""Tests of csm.measure.bad_steps: bad_step_sizes (Proposition 2.5 / Lemma 4.4).

A density of bad steps (closed-form step band) must pass; constant Hessians (atoms at 1/lambda)
must fail, with the atoms located.

Shared helpers (samplers, binomial tolerances, test maps) live in tests/test_measure.py; pytest
runs with ``--import-mode=importlib``, so the tests folder is put on ``sys.path`` to import
them (as for tests/_toy_problems.py).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from scipy import stats

from csm.measure import bad_step_sizes

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_measure import binom_close, gauss, quartic_hessian  # noqa: E402


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

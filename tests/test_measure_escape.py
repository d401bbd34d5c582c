"""Tests of csm.measure.escape: escape_rate and manifold_stay_fraction (Corollary 2.3, Theorem 2.2).

Fitted escape rates are compared with sum log|lambda_u| for linear maps and quadratic
perturbations; a map not differentiable at the saddle and a wrong Jacobian must fail; points
on the center-stable manifold stay, points pushed off it leave.

Shared helpers (samplers, binomial tolerances, test maps) live in tests/test_measure.py; pytest
runs with ``--import-mode=importlib``, so the tests folder is put on ``sys.path`` to import
them (as for tests/_toy_problems.py).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import csm
from csm.measure import escape_rate, manifold_stay_fraction

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_measure import linear_map  # noqa: E402


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

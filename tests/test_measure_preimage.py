"""Tests of csm.measure.preimage: check_preimage_null (conclusion of Lemma 2.4).

Fitted slopes are compared with the codimension of Z (closed forms); a map collapsing an open
set onto Z must fail.

Shared helpers (samplers, binomial tolerances, test maps) live in tests/test_measure.py; pytest
runs with ``--import-mode=importlib``, so the tests folder is put on ``sys.path`` to import
them (as for tests/_toy_problems.py).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from scipy import stats

from csm.measure import check_preimage_null

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_measure import binom_close, gauss  # noqa: E402


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

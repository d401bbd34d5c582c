"""Tests of csm.measure.tailfit: the small-value profile, its tail fit and the decay verdict.

Counts are compared with brute force, slopes with exact power laws, the verdict with a decaying
law (pass), a plateau (fail) and exact zeros in excess (fail).
"""

from __future__ import annotations

import numpy as np
import pytest

from csm.errors import InputError, ShapeError
from csm.measure import clopper_pearson
from csm.measure.tailfit import (
    QUANTILE_LEVELS,
    ZERO_MIN,
    decades,
    decay_verdict,
    delta_grid,
    expected_below,
    ols_slope,
    quantiles,
    small_value_profile,
    tail_window,
    wls_slope,
)


def test_clopper_pearson_zero_hits():
    lo, up = clopper_pearson(0, 1000)
    assert lo == 0 and up == pytest.approx(1 - 0.025 ** (1 / 1000), rel=1e-10)


def test_profile_counts_are_exact_and_slope_recovers_the_power():
    # v = U^(1/c): P(v <= d) = d^c exactly, slope c
    rng = np.random.default_rng(0)
    for c in (0.5, 1.0, 2.0):
        v = rng.random(200_000) ** (1.0 / c)
        grid = decades(1.0, n_decades=3)
        prof = small_value_profile(v, grid, np.random.default_rng(1))
        np.testing.assert_array_equal(prof.counts, [np.sum(v <= d) for d in grid])
        np.testing.assert_array_equal(prof.fractions, prof.counts / v.size)
        assert np.all(prof.upper >= prof.fractions)
        assert prof.n_fit == 5 and prof.fit_indices == tuple(tail_window(prof.counts, 10, 5))
        assert abs(prof.slope - c) < 3 * prof.slope_se + 0.02, (c, prof.slope, prof.slope_se)


def test_tail_window_is_the_end_of_the_qualifying_prefix():
    counts = np.array([100, 50, 20, 10, 9, 0])
    np.testing.assert_array_equal(tail_window(counts, 10, 3), [1, 2, 3])
    np.testing.assert_array_equal(tail_window(counts, 10, 5), [0, 1, 2, 3])
    assert tail_window(counts, 1000, 3).size == 0


def test_slopes_exact_on_lines():
    x = np.arange(5.0)
    s, b = ols_slope(x, np.stack([2 * x + 1, -x]))
    np.testing.assert_allclose(s, [2, -1])
    np.testing.assert_allclose(b, [1, 0], atol=1e-12)
    w = np.arange(1.0, 6.0)[None, :]
    np.testing.assert_allclose(wls_slope(x, (3 * x - 2)[None, :], w), [3])


def test_expected_below_scalar_and_per_sample_thresholds_agree():
    v = np.random.default_rng(2).random(50_000)
    prof = small_value_profile(v, decades(1.0, n_decades=3), np.random.default_rng(3))
    one = expected_below(prof, 1e-3)
    assert one == pytest.approx(prof.n * np.exp(prof.intercept) * 1e-3 ** prof.slope)
    assert expected_below(prof, np.full(prof.n, 1e-3)) == pytest.approx(one, rel=1e-12)
    assert expected_below(prof, 0.0) == 0.0


def test_decay_verdict_pass_plateau_and_exact_zeros():
    rng = np.random.default_rng(4)
    grid = decades(1.0, n_decades=3)
    decaying = small_value_profile(rng.random(20_000), grid, rng)
    assert decay_verdict(decaying, 0, 1e-12, "v")[0]
    # mass 0.3 at 0, the rest uniform on [0.5, 1]: P(v <= delta) = 0.3 for all delta < 0.5
    plateau_v = np.where(rng.random(20_000) < 0.3, 0.0, 0.5 + 0.5 * rng.random(20_000))
    plateau = small_value_profile(plateau_v, grid, rng)
    ok, reason = decay_verdict(plateau, 0, 1e-12, "v")
    assert not ok and "plateau" in reason
    ok, reason = decay_verdict(plateau, int(np.sum(plateau_v == 0)), 1e-12, "v")
    assert not ok and "positive measure" in reason
    assert ZERO_MIN == 3


def test_delta_grid_and_quantiles():
    np.testing.assert_array_equal(delta_grid([1e-3, 1.0, 1e-1, 1.0], None), [1.0, 1e-1, 1e-3])
    np.testing.assert_array_equal(delta_grid(None, decades(2.0)), decades(2.0))
    with pytest.raises(InputError, match="`deltas`"):
        delta_grid([1.0, 1.0, 1.0, 2.0], None)
    with pytest.raises(ShapeError, match="`deltas`"):
        delta_grid([1.0, 2.0], None)
    q = quantiles(np.arange(101.0))
    assert list(q) == [f"q{int(round(100 * p)):02d}" for p in QUANTILE_LEVELS] and q["q50"] == 50.0
    assert quantiles(np.array([])) == {}
    assert quantiles(np.array([-np.inf, 1.0, 2.0]))["q00"] == -np.inf

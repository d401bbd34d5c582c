"""Float32 parameters are computed in float32 (the ``network`` plugin's "Precision").

The float64 results are the reference (themselves checked against an independent forward pass
and finite differences in test_network_derivatives.py).  Criterion, fixed before the run: a
float32 result agrees with the float64 one to 2e-5 relative (row-wise scale; float32 rounding
of sums over m <= 64 terms is about 1e-6), has dtype float32, on both the NumPy path and the
compiled kernels; the analyses (``hessian``) stay float64; and problems that do not opt in
(``ProblemBase.float32 = False``, the default) still convert float32 input to float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_network import NetworkProblem, engine

CASES = [((1, 6, 1), "relu"), ((5, 10, 1), "leaky_relu:0.1"), ((3, 4, 2), "relu"),
         ((2, 5, 4, 2), "leaky_relu:0.2"), ((2, 3, 1), "square")]


def _problem(widths, act, m=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, widths[0]))
    Y = rng.standard_normal((m, widths[-1]))
    return NetworkProblem(widths, act, inputs=X, targets=Y)


def _rowrel(a, b):
    scale = np.maximum(np.max(np.abs(b), axis=-1, keepdims=True), 1e-300)
    return float(np.max(np.abs(np.asarray(a, float) - b) / scale))


def _paths():
    fast = [False]
    if engine.numba_kernel() is not None:
        fast.append(True)
    return fast


@pytest.mark.parametrize("widths,act", CASES, ids=[str(c[0]) for c in CASES])
def test_engine_float32_matches_float64_on_both_paths(widths, act):
    p = _problem(widths, act)
    rng = np.random.default_rng(1)
    T = p.sample(rng, 9)
    V = rng.standard_normal(T.shape)
    wts = rng.random((9, p.m))
    T32, V32 = T.astype(np.float32), V.astype(np.float32)
    for fast in _paths():
        if fast and engine.kernel_for(p._lay, p.activation) is None:
            continue
        for w in (None, wts):
            L64, G64 = engine.loss_and_gradient(p._lay, p.activation, T, p._XT, p._YT, w, fast=fast)
            L32, G32 = engine.loss_and_gradient(p._lay, p.activation, T32, p._XT, p._YT, w,
                                                fast=fast)
            assert L32.dtype == G32.dtype == np.float32
            np.testing.assert_allclose(L32, L64, rtol=2e-5)
            assert _rowrel(G32, G64) <= 2e-5
            H64 = engine.hvp(p._lay, p.activation, T, V, p._XT, p._YT, w, fast=fast)
            H32 = engine.hvp(p._lay, p.activation, T32, V32, p._XT, p._YT, w, fast=fast)
            assert H32.dtype == np.float32
            assert _rowrel(H32, H64) <= 2e-5


def test_public_methods_follow_float32_and_hessian_stays_float64():
    p = _problem((5, 10, 1), "leaky_relu:0.1")
    T = p.sample(np.random.default_rng(2), 4)
    T32 = T.astype(np.float32)
    assert p.loss(T32).dtype == np.float32 and p.gradient(T32).dtype == np.float32
    L, G = p.loss_and_gradient(T32, sample_weights=np.full(p.m, 1.0 / p.m))
    assert L.dtype == G.dtype == np.float32
    assert p.hvp(T32, T32).dtype == np.float32
    assert isinstance(p.loss(T32[0]), float)
    assert p.gradient(T32[0]).shape == (p.dim,)
    assert p.hessian(T32[0]).dtype == np.float64
    np.testing.assert_allclose(p.hessian(T32[0]), p.hessian(T32[0].astype(float)), rtol=0, atol=0)
    # analyses convert float32 to float64: identical results from either input
    theta = T32[0]
    st32, st64 = p.stationarity(theta), p.stationarity(theta.astype(float))
    assert st32.stationary == st64.stationary and st32.local_minimum == st64.local_minimum
    np.testing.assert_array_equal(p.activation_pattern(theta), p.activation_pattern(
        theta.astype(float)))
    assert p.realization(theta, p.inputs).dtype == np.float64
    # float64 and other inputs: float64 as before
    assert p.gradient(T).dtype == np.float64
    assert p.gradient(T.astype(np.float16)).dtype == np.float64
    with pytest.raises(csm.NonFiniteError):
        p.gradient(np.full(p.dim, np.nan, dtype=np.float32))


@pytest.mark.skipif(engine.numba_kernel() is None, reason="numba not installed")
def test_float32_runs_in_a_float32_kernel():
    """Positive control that float32 is not computed in float64 and cast: the compiled kernel
    holds a float32 specialisation after a float32 call."""
    from csm_network import _numba_kernel as nk

    p = _problem((5, 10, 1), "relu")
    p.loss_and_gradient(p.sample(np.random.default_rng(3), 2).astype(np.float32))
    sigs = [str(s[0]) for s in nk.K1_LOSS_GRAD[5].signatures]
    assert any("float32" in s for s in sigs), sigs


def test_float32_gradient_descent_tracks_float64():
    """50 GD steps in float32 stay within 1e-4 (relative to |theta|) of the float64 orbit."""
    p = _problem((2, 8, 1), "relu", m=32)
    T = p.sample(np.random.default_rng(4), 16)
    T32 = T.astype(np.float32)
    for _ in range(50):
        T = T - 0.05 * p.gradient(T)
        T32 = T32 - np.float32(0.05) * p.gradient(T32)
    assert T32.dtype == np.float32
    assert _rowrel(T32, T) <= 1e-4


def test_core_problems_convert_float32_unless_they_opt_in():
    class Quad(csm.ProblemBase):
        dim = 2
        name = "quad"

        def _loss(self, X):
            return 0.5 * np.sum(X * X, axis=1)

        def _gradient(self, X):
            return X

    q = Quad()
    x32 = np.ones((3, 2), dtype=np.float32)
    assert q.gradient(x32).dtype == np.float64 and q.loss(x32).dtype == np.float64
    Quad.float32 = True
    assert q.gradient(x32).dtype == np.float32 and q.loss(x32).dtype == np.float32

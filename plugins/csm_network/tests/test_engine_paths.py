"""The compiled kernels of the network plugin against the NumPy reference path.

:mod:`csm_network._numba_kernel` (used when numba is importable and ``CSM_DISABLE_NUMBA`` is
unset) must give the losses, gradients and Hessian-vector products of the NumPy path
(``fast=False``, itself checked against an independent forward pass and finite differences in
test_network_derivatives.py) to rounding: <= 1e-12 relative (row-wise scale), for every kernel
kind (``scalar`` ``(1, h, 1)``, ``shallow`` fused, ``mlp`` BLAS with thin and wide first and
last layers), every ReLU-like activation, shared and per-network sample weights, and points on
the kinks (the all-dead and zero-neuron points, where the convention ``sigma'(0) = alpha_-``
decides).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from csm_network import NetworkProblem, engine

nk = pytest.importorskip("csm_network._numba_kernel", reason="numba not installed")

ACTS = ["relu", "leaky_relu:0.1", "linear",
        {"breakpoints": [0.0], "pieces": [[0.0, -0.3], [0.0, 2.0]]}]   # ReLU-like, alpha_+ = 2
CASES = [  # widths, m, expected kernel
    ((1, 7, 1), 23, "scalar"),
    ((1, 16, 1), 64, "scalar"),
    ((2, 5, 1), 17, "shallow"),     # one output: one kernel per input width (2, 3, 5, 8 here)
    ((3, 4, 1), 13, "shallow"),
    ((5, 10, 1), 21, "shallow"),
    ((8, 3, 1), 9, "shallow"),
    ((5, 6, 3), 19, "shallow"),     # input columns in a block of 4 plus one
    ((9, 4, 2), 12, "mlp"),         # wide first layer (BLAS), thin output
    ((3, 4, 6), 11, "shallow"),     # several outputs
    ((3, 4, 9), 11, "mlp"),         # thin input, wide output (BLAS)
    ((3, 5, 4, 2), 20, "mlp"),      # deep, thin both ends
    ((1, 6, 5, 1), 15, "mlp"),
    ((6, 7, 5, 6), 9, "mlp"),       # deep, wide both ends
    ((2, 3, 4, 3, 2), 10, "mlp"),
]


def _problem(widths, m, act, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, widths[0]))
    Y = rng.standard_normal((m, widths[-1]))
    return NetworkProblem(widths, act, inputs=X, targets=Y)


def _rowrel(a, b):
    scale = np.maximum(np.max(np.abs(b), axis=-1, keepdims=True), 1e-300)
    return float(np.max(np.abs(a - b) / scale))


def _both(p, fn, *args, **kw):
    return fn(p._lay, p.activation, *args, fast=False, **kw), fn(p._lay, p.activation, *args,
                                                                  fast=True, **kw)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a if isinstance(a, str) else "piecewise")
@pytest.mark.parametrize("widths,m,kind", CASES, ids=[str(c[0]) for c in CASES])
def test_compiled_kernels_agree_with_numpy(widths, m, kind, act):
    p = _problem(widths, m, act)
    assert engine.kernel_for(p._lay, p.activation, True) == kind
    rng = np.random.default_rng(1)
    T = p.sample(rng, 7)
    V = rng.standard_normal(T.shape)
    for wts in (None, rng.random((1, m)), rng.random((7, m))):
        (L0, G0), (L1, G1) = _both(p, engine.loss_and_gradient, T, p._XT, p._YT, wts)
        np.testing.assert_allclose(L1, L0, rtol=1e-12, atol=0)
        assert _rowrel(G1, G0) <= 1e-12
        l0, l1 = _both(p, engine.loss, T, p._XT, p._YT, wts)
        np.testing.assert_allclose(l1, l0, rtol=1e-12, atol=0)
        H0, H1 = _both(p, engine.hvp, T, V, p._XT, p._YT, wts)
        assert _rowrel(H1, H0) <= 1e-12


@pytest.mark.parametrize("widths", [(1, 5, 1), (2, 4, 1), (3, 4, 2), (2, 4, 3, 1)])
def test_kink_points_follow_the_left_piece_convention(widths):
    """All-dead (``W = 0, b < 0``), zero-neuron (everything 0) and exact-kink points: the
    pre-activations are exactly 0 or negative, so both paths select the same pieces."""
    p = _problem(widths, 8, "relu", seed=2)
    lay = p._lay
    zero = np.zeros(p.dim)
    dead = np.zeros(p.dim)
    sw, sb, _ = lay.slices[0]
    dead[sb] = -1.0
    dead[lay.slices[-1][1]] = p.targets.mean(axis=0)
    kink = p.sample(3, 1)[0]
    kink[sw] = 0.0
    kink[sb] = 0.0  # every first-layer pre-activation exactly 0
    T = np.stack([zero, dead, kink])
    V = np.random.default_rng(4).standard_normal(T.shape)
    (L0, G0), (L1, G1) = _both(p, engine.loss_and_gradient, T, p._XT, p._YT)
    np.testing.assert_allclose(L1, L0, rtol=1e-13)
    np.testing.assert_allclose(G1, G0, rtol=1e-12, atol=1e-15)
    H0, H1 = _both(p, engine.hvp, T, V, p._XT, p._YT)
    np.testing.assert_allclose(H1, H0, rtol=1e-12, atol=1e-15)


def test_batches_strided_empty_and_single():
    p = _problem((2, 6, 1), 10, "leaky_relu:0.2")
    T = p.sample(0, 9)
    Ts = np.asfortranarray(T)[::2]            # not C-contiguous
    L, G = p.loss_and_gradient(Ts)
    L0, G0 = engine.loss_and_gradient(p._lay, p.activation, np.ascontiguousarray(Ts), p._XT,
                                      p._YT, fast=False)
    np.testing.assert_allclose(L, L0, rtol=1e-12)
    L, G = engine.loss_and_gradient(p._lay, p.activation, T[:0], p._XT, p._YT, fast=True)
    assert L.shape == (0,) and G.shape == (0, p.dim)
    assert engine.hvp(p._lay, p.activation, T[:0], T[:0], p._XT, p._YT, fast=True).shape == (0, p.dim)
    l1, g1 = p.loss_and_gradient(T[3])
    assert abs(l1 - p.loss_and_gradient(T)[0][3]) <= 1e-15 * l1


def test_non_relu_like_activations_take_the_numpy_path():
    p = _problem((2, 3, 1), 6, "relu^2")
    assert engine.kernel_for(p._lay, p.activation) is None
    with pytest.raises(RuntimeError, match="not ReLU-like"):
        engine.kernel_for(p._lay, p.activation, True)


def test_environment_variable_disables_the_kernel():
    code = ("from csm_network import engine, NetworkProblem; "
            "p = NetworkProblem((1, 3, 1)); "
            "print(engine.numba_kernel() is None, engine.kernel_for(p._lay, p.activation))")
    env = dict(os.environ, CSM_DISABLE_NUMBA="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "None"]
    env["CSM_DISABLE_NUMBA"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "scalar"]

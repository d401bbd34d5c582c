"""Sample weights of the network loss (SGD minibatches, issue 13 item 3).

``loss_and_gradient(theta, sample_weights=w)`` is ``L_b = sum_i w_bi |N_b(x_i) - y_i|^2`` with
its gradient, computed in the same batched pass.  Checked against the unweighted loss of the
sub-dataset (weights ``1_I / |I|``) built as a separate :class:`NetworkProblem` on
``X[I], Y[I]``, on both kernel paths (NumPy reference and compiled, when numba is there).
"""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_network import NetworkProblem
from csm_network import engine

CASES = [
    ((1, 5, 1), "relu"),
    ((2, 4, 1), "leaky_relu:0.1"),
    ((3, 4, 2), "relu"),
    ((3, 5, 4, 2), "leaky_relu:0.2"),   # deep, vector output
    ((2, 3, 1), "relu^2"),              # NumPy path only (not ReLU-like)
    ((2, 3, 2), "square"),
]
PATHS = [False] + ([None] if engine.numba_kernel() is not None else [])


def _data(widths, m=13, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, widths[0])), rng.standard_normal((m, widths[-1]))


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(1e-300, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("fast", PATHS, ids=lambda f: "numpy" if f is False else "default")
@pytest.mark.parametrize("widths,act", CASES, ids=[f"{w}-{a}" for w, a in CASES])
def test_minibatch_weights_equal_the_sub_dataset_loss(widths, act, fast, monkeypatch):
    if fast is False:
        monkeypatch.setattr(engine, "_NK", None)
    X, Y = _data(widths)
    p = NetworkProblem(widths, act, inputs=X, targets=Y)
    rng = np.random.default_rng(1)
    B = 6
    T = p.sample(rng, B)
    idx = [np.sort(rng.choice(p.m, size=s, replace=False)) for s in (1, 4, 7, 13, 5, 9)]
    W = np.zeros((B, p.m))
    for b, I in enumerate(idx):
        W[b, I] = 1.0 / len(I)
    L, G = p.loss_and_gradient(T, sample_weights=W)
    Lw = p.loss(T, sample_weights=W)
    np.testing.assert_allclose(Lw, L, rtol=1e-14, atol=0)
    V = rng.standard_normal(T.shape)
    Hv = p.hvp(T, V, sample_weights=W)
    for b, I in enumerate(idx):
        sub = NetworkProblem(widths, act, inputs=X[I], targets=Y[I])
        Ls, Gs = sub.loss_and_gradient(T[b])
        assert abs(L[b] - Ls) <= 1e-13 * max(1.0, Ls), (b, L[b], Ls)
        assert rel(G[b], Gs) <= 1e-12, b
        assert rel(Hv[b], sub.hvp(T[b], V[b])) <= 1e-12, b
    # one weight vector for the whole batch
    I = idx[2]
    w = np.zeros(p.m)
    w[I] = 1.0 / len(I)
    L1, G1 = p.loss_and_gradient(T, sample_weights=w)
    sub = NetworkProblem(widths, act, inputs=X[I], targets=Y[I])
    Ls, Gs = sub.loss_and_gradient(T)
    np.testing.assert_allclose(L1, Ls, rtol=1e-13, atol=1e-15)
    assert rel(G1, Gs) <= 1e-12


@pytest.mark.parametrize("fast", PATHS, ids=lambda f: "numpy" if f is False else "default")
def test_uniform_weights_are_the_mean_and_single_points_work(fast, monkeypatch):
    if fast is False:
        monkeypatch.setattr(engine, "_NK", None)
    X, Y = _data((2, 4, 3, 1), m=9, seed=3)
    p = NetworkProblem((2, 4, 3, 1), "relu", inputs=X, targets=Y)
    assert p.n_samples == 9 == p.m
    T = p.sample(0, 4)
    L, G = p.loss_and_gradient(T)
    Lw, Gw = p.loss_and_gradient(T, sample_weights=np.full(9, 1 / 9))
    np.testing.assert_allclose(Lw, L, rtol=1e-14)
    assert rel(Gw, G) <= 1e-14
    l1, g1 = p.loss_and_gradient(T[2], sample_weights=np.arange(9.0))
    lb, gb = p.loss_and_gradient(T, sample_weights=np.arange(9.0))
    assert isinstance(l1, float) and g1.shape == (p.dim,)
    assert abs(l1 - lb[2]) <= 1e-14 * lb[2] and rel(g1, gb[2]) <= 1e-14
    # weights scale the loss linearly; zero weights give zero
    l3, g3 = p.loss_and_gradient(T, sample_weights=3.0 * np.arange(9.0))
    np.testing.assert_allclose(l3, 3 * lb, rtol=1e-13)
    l0, g0 = p.loss_and_gradient(T, sample_weights=np.zeros(9))
    assert np.all(l0 == 0) and np.all(g0 == 0)


def test_weighted_gradient_and_hvp_against_finite_differences():
    X, Y = _data((3, 4, 3, 2), m=11, seed=5)
    p = NetworkProblem((3, 4, 3, 2), "leaky_relu:0.1", inputs=X, targets=Y)
    rng = np.random.default_rng(2)
    theta = p.sample(rng, 1)[0]
    w = rng.random(p.m)
    v = rng.standard_normal(p.dim)
    L, G = p.loss_and_gradient(theta, sample_weights=w)
    h = 1e-6
    fd = np.array([(p.loss(theta + h * e, sample_weights=w) - p.loss(theta - h * e, sample_weights=w))
                   / (2 * h) for e in np.eye(p.dim)])
    assert rel(G, fd) <= 1e-7
    Hv_fd = (p.loss_and_gradient(theta + h * v, w)[1] - p.loss_and_gradient(theta - h * v, w)[1]) / (2 * h)
    assert rel(p.hvp(theta, v, sample_weights=w), Hv_fd) <= 1e-6


@pytest.mark.parametrize("w,err,pattern", [
    (np.ones(7), csm.ShapeError, r"`sample_weights` must have shape \(m,\) = \(13,\) or \(B, m\) = \(4, 13\)"),
    (np.ones((3, 13)), csm.ShapeError, r"one weight vector per point.*got shape \(3, 13\)"),
    (np.ones((4, 13, 1)), csm.ShapeError, r"`sample_weights`"),
    (np.r_[np.ones(12), np.nan], csm.NonFiniteError, r"`sample_weights` contains NaN.*index 12"),
    (np.r_[np.ones(5), -0.5, np.ones(7)], csm.InputError, r"non-negative, got -0.5 at index 5"),
    ("uniform", csm.InputError, r"`sample_weights` must be a numeric array"),
])
def test_bad_weights_raise_a_csm_error(w, err, pattern):
    X, Y = _data((2, 3, 1))
    p = NetworkProblem((2, 3, 1), inputs=X, targets=Y)
    T = p.sample(0, 4)
    with pytest.raises(err, match=pattern):
        p.loss_and_gradient(T, sample_weights=w)
    with pytest.raises(err, match=pattern):
        p.hvp(T, T, sample_weights=w)

"""Loss, gradient and Hessian-vector products against an independent forward pass and
central finite differences (deep, vector-output networks; every activation)."""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_network import NetworkProblem

PW = {"breakpoints": [-1.0, 0.5], "pieces": [[-1.0], [-0.5, 0.5], [-0.8125, 1.0, 0.25]]}

REFERENCE = {  # written independently of csm_network.activations
    "relu": lambda z: max(z, 0.0),
    "leaky_relu:0.1": lambda z: z if z > 0 else 0.1 * z,
    "relu^2": lambda z: max(z, 0.0) ** 2,
    "relu^3": lambda z: max(z, 0.0) ** 3,
    "square": lambda z: z * z,
    "linear": lambda z: z,
    "piecewise": lambda z: -1.0 if z <= -1 else (-0.5 + 0.5 * z if z <= 0.5 else
                                                 -0.8125 + z + 0.25 * z * z),
}
SPECS = {k: (PW if k == "piecewise" else k) for k in REFERENCE}


def reference_loss(p: NetworkProblem, theta: np.ndarray, sigma) -> float:
    """``(1/m) sum_i |N(x_i) - y_i|^2`` with a plain loop over samples, neurons and layers."""
    layers = p.unpack(theta)
    total = 0.0
    for x, y in zip(p.inputs, p.targets):
        a = list(x)
        for l, (W, b) in enumerate(layers):
            z = [sum(W[r, c] * a[c] for c in range(len(a))) + b[r] for r in range(len(b))]
            a = z if l == len(layers) - 1 else [sigma(v) for v in z]
        total += sum((ai - yi) ** 2 for ai, yi in zip(a, y))
    return total / len(p.inputs)


def fd_gradient(f, theta: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = h
        g[k] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1e-300, float(np.max(np.abs(b)))))


@pytest.fixture(scope="module")
def deep_data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((6, 3)), rng.standard_normal((6, 2))


def test_pack_order_is_documented_order():
    p = NetworkProblem((2, 3, 1), data="teacher:4,0")
    theta = np.arange(p.dim, dtype=float)
    (W1, b1), (W2, b2) = p.unpack(theta)
    np.testing.assert_array_equal(W1, np.arange(6.0).reshape(3, 2))  # row-major
    np.testing.assert_array_equal(b1, [6.0, 7.0, 8.0])
    np.testing.assert_array_equal(W2, [[9.0, 10.0, 11.0]])
    np.testing.assert_array_equal(b2, [12.0])
    np.testing.assert_array_equal(p.pack(p.unpack(theta)), theta)
    assert p.dim == 3 * 2 + 3 + 3 + 1


@pytest.mark.parametrize("name", list(REFERENCE))
def test_every_activation_against_reference_and_fd(name, deep_data):
    X, Y = deep_data
    p = NetworkProblem((3, 4, 3, 2), SPECS[name], inputs=X, targets=Y)
    rng = np.random.default_rng(11)
    T = p.sample(rng, 2)
    sigma = REFERENCE[name]
    for theta in T:
        L, G = p.loss_and_gradient(theta)
        assert abs(L - reference_loss(p, theta, sigma)) <= 1e-13 * max(1.0, L)
        G_fd = fd_gradient(lambda t: reference_loss(p, t, sigma), theta)
        assert rel(G, G_fd) <= 1e-7, name
        V = rng.standard_normal(p.dim)
        h = 1e-5
        Hv_fd = (p.gradient(theta + h * V) - p.gradient(theta - h * V)) / (2 * h)
        assert rel(p.hvp(theta, V), Hv_fd) <= 1e-6, name
    # batched rows equal single calls; the dense Hessian is the HVP against the identity
    V = rng.standard_normal(T.shape)
    np.testing.assert_allclose(p.hvp(T, V)[1], p.hvp(T[1], V[1]), rtol=1e-13, atol=1e-14)
    H = p.hessian(T[0])
    np.testing.assert_allclose(H @ V[0], p.hvp(T[0], V[0]), rtol=1e-10, atol=1e-12)


def test_deep_leaky_vector_output_fd_accuracy(deep_data):
    """The acceptance case: >= 2 hidden layers, vector output, leaky ReLU."""
    X, Y = deep_data
    p = NetworkProblem((3, 5, 4, 2), "leaky_relu:0.2", inputs=X, targets=Y)
    rng = np.random.default_rng(5)
    theta = p.sample(rng, 1)[0]
    G = p.gradient(theta)
    G_fd = fd_gradient(lambda t: reference_loss(p, t, lambda z: z if z > 0 else 0.2 * z), theta)
    assert rel(G, G_fd) <= 1e-7
    for _ in range(3):
        V = rng.standard_normal(p.dim)
        h = 1e-5
        Hv_fd = (p.gradient(theta + h * V) - p.gradient(theta - h * V)) / (2 * h)
        assert rel(p.hvp(theta, V), Hv_fd) <= 1e-6


def test_relu_derivative_at_zero_is_zero_like_pytorch():
    p = NetworkProblem((1, 1, 1), "relu", inputs=[[1.0]], targets=[[3.0]])
    # w = 1, b = -1: the pre-activation is exactly 0, so relu'(0) = 0 kills dL/dw, dL/db
    theta = p.pack([(np.array([[1.0]]), np.array([-1.0])), (np.array([[2.0]]), np.array([0.0]))])
    g = p.gradient(theta)
    assert g[0] == 0.0 and g[1] == 0.0 and g[2] == 0.0 and g[3] == 2 * (0.0 - 3.0)
    q = NetworkProblem((1, 1, 1), "leaky_relu:0.25", inputs=[[1.0]], targets=[[3.0]])
    assert q.gradient(theta)[0] == 2 * (0.0 - 3.0) * 2.0 * 0.25  # left piece: slope a


def test_gradient_descent_map_uses_the_hvp():
    p = csm.get_problem("network", widths=(2, 3, 2), activation="relu^2", data="teacher:7,1")
    g = csm.GradientDescentMap(p, 0.05)
    assert g.hvp is not None
    rng = np.random.default_rng(0)
    X, V = p.sample(rng, 4), rng.standard_normal((4, p.dim))
    np.testing.assert_allclose(g.jvp(X, V), V - 0.05 * p.hvp(X, V), rtol=1e-14)

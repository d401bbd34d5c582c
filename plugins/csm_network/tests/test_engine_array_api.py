"""The network plugin on array-API arrays (issue 16 item 5).

``NetworkProblem.loss``, ``gradient``, ``loss_and_gradient`` and ``hvp`` compute a non-NumPy
array-API input (torch on any device, CuPy, array_api_strict) in its own namespace, device and
dtype and return that kind of array.  Reference: the NumPy path (checked against an independent
forward pass and finite differences in test_network_derivatives.py).  Criteria: float64 results
equal the NumPy path to <= 1e-12 relative (row-wise scale), on every activation, deep and
vector-output networks, with and without sample weights; a float32 torch input gives float32
results within 1e-4 relative of the float64 reference.

Backends: ``array_api_strict``, torch on the CPU, torch on CUDA when a GPU is visible; each is
skipped when its package (or ``array-api-compat``) is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_network import NetworkProblem

pytest.importorskip("array_api_compat", reason="array-api-compat not installed")

PW = {"breakpoints": [-1.0, 0.5], "pieces": [[-1.0], [-0.5, 0.5], [-0.8125, 1.0, 0.25]]}
CASES = [
    ((1, 5, 1), "relu"),
    ((3, 4, 3, 2), "leaky_relu:0.1"),
    ((2, 3, 2), "relu^3"),
    ((2, 3, 4, 1), PW),
    ((2, 3, 1), "square"),
    ((2, 4, 2), "linear"),
]
IDS = [f"{w}-{a if isinstance(a, str) else 'piecewise'}" for w, a in CASES]


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        if name == "strict":
            xs = pytest.importorskip("array_api_strict")
            self.xp = xs
            self.type = type(xs.asarray(0.0))
            self.to = lambda a, f32=False: xs.asarray(np.asarray(a), dtype=xs.float32 if f32 else xs.float64)
            self.back = lambda a: np.asarray(a, dtype=float)
        else:
            torch = pytest.importorskip("torch")
            dev = "cuda" if name == "torch-cuda" else "cpu"
            if dev == "cuda" and not torch.cuda.is_available():
                pytest.skip("no CUDA device")
            self.xp = torch
            self.type = torch.Tensor
            self.to = lambda a, f32=False: torch.tensor(np.asarray(a), device=dev,
                                                        dtype=torch.float32 if f32 else torch.float64)
            self.back = lambda a: a.detach().cpu().double().numpy()


@pytest.fixture(params=["strict", "torch-cpu", "torch-cuda"])
def backend(request):
    return Backend(request.param)


def _rowrel(a, b):
    scale = np.maximum(np.max(np.abs(b), axis=-1, keepdims=True), 1e-300)
    return float(np.max(np.abs(a - b) / scale))


def _problem(widths, act, m=9, seed=0):
    rng = np.random.default_rng(seed)
    return NetworkProblem(widths, act, inputs=rng.standard_normal((m, widths[0])),
                          targets=rng.standard_normal((m, widths[-1])))


@pytest.mark.parametrize("widths,act", CASES, ids=IDS)
def test_array_api_inputs_match_the_numpy_path(backend, widths, act):
    p = _problem(widths, act)
    rng = np.random.default_rng(1)
    T = p.sample(rng, 5)
    V = rng.standard_normal(T.shape)
    for W in (None, rng.random(p.m), rng.random((5, p.m))):
        Wx = None if W is None else backend.to(W)
        L, G = p.loss_and_gradient(T, W)
        Lx, Gx = p.loss_and_gradient(backend.to(T), Wx)
        assert isinstance(Lx, backend.type) and isinstance(Gx, backend.type)
        assert tuple(Gx.shape) == G.shape
        np.testing.assert_allclose(backend.back(Lx), L, rtol=1e-12)
        assert _rowrel(backend.back(Gx), G) <= 1e-12
        np.testing.assert_allclose(backend.back(p.loss(backend.to(T), Wx)), L, rtol=1e-12)
        Hx = p.hvp(backend.to(T), backend.to(V), Wx)
        assert isinstance(Hx, backend.type)
        assert _rowrel(backend.back(Hx), p.hvp(T, V, W)) <= 1e-12
    assert _rowrel(backend.back(p.gradient(backend.to(T))), p.gradient(T)) <= 1e-12


def test_single_points_broadcasting_and_numpy_weights(backend):
    p = _problem((2, 4, 3, 1), "relu")
    T = p.sample(2, 4)
    V = np.random.default_rng(3).standard_normal(T.shape)
    l1, g1 = p.loss_and_gradient(backend.to(T[1]))
    assert tuple(l1.shape) == () and tuple(g1.shape) == (p.dim,)
    assert abs(float(backend.back(l1)) - p.loss(T[1])) <= 1e-13 * p.loss(T[1])
    h = p.hvp(backend.to(T[1]), backend.to(V))       # one theta against a batch of v
    assert tuple(h.shape) == V.shape
    assert _rowrel(backend.back(h), p.hvp(T[1], V)) <= 1e-12
    w = np.linspace(0.0, 1.0, p.m)                     # NumPy weights with an array-API theta
    Lx, _ = p.loss_and_gradient(backend.to(T), w)
    np.testing.assert_allclose(backend.back(Lx), p.loss(T, w), rtol=1e-12)


def test_float32_inputs_stay_float32():
    torch = pytest.importorskip("torch")
    p = _problem((3, 5, 4, 2), "leaky_relu:0.1")
    T = p.sample(4, 6)
    L, G = p.loss_and_gradient(torch.tensor(T, dtype=torch.float32))
    assert L.dtype == torch.float32 and G.dtype == torch.float32
    L0, G0 = p.loss_and_gradient(T)
    np.testing.assert_allclose(L.double().numpy(), L0, rtol=1e-4)
    assert _rowrel(G.double().numpy(), G0) <= 1e-4


def test_array_api_bad_input(backend):
    p = _problem((2, 3, 1), "relu")
    T = p.sample(0, 3)
    bad = T.copy()
    bad[1, 2] = np.nan
    with pytest.raises(csm.NonFiniteError, match=r"`theta`.*first bad row: 1"):
        p.loss_and_gradient(backend.to(bad))
    with pytest.raises(csm.ShapeError, match=r"`theta` must have shape \(13,\)"):
        p.loss_and_gradient(backend.to(T[:, :5]))
    with pytest.raises(csm.ShapeError, match=r"`sample_weights` must have shape"):
        p.loss_and_gradient(backend.to(T), backend.to(np.ones((2, p.m))))
    with pytest.raises(csm.InputError, match=r"`sample_weights` must be non-negative"):
        p.loss_and_gradient(backend.to(T), backend.to(-np.ones(p.m)))
    with pytest.raises(csm.ShapeError, match="batch sizes differ"):
        p.hvp(backend.to(T), backend.to(np.zeros((2, p.dim))))


def test_mixed_array_kinds_are_refused():
    torch = pytest.importorskip("torch")
    xs = pytest.importorskip("array_api_strict")
    p = _problem((2, 3, 1), "relu")
    T = p.sample(0, 2)
    with pytest.raises(csm.InputError, match="arrays of one kind"):
        p.hvp(torch.tensor(T), xs.asarray(T))

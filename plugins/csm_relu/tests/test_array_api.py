"""The ReLU plugin on array-API arrays (issue 16 item 5; algorithm: docs/theory.md §2).

``ReluProblem.loss``, ``gradient``, ``loss_and_gradient`` and ``hvp`` compute a non-NumPy
array-API input (torch on any device, CuPy, array_api_strict) in its own namespace and return
that kind of array.  The reference is the NumPy path (:class:`csm_relu._engine.Engine` with
``fast=False``) and the default path of NumPy inputs (the compiled kernel when numba is
installed); both are checked independently of the array-API code by the quadrature and
finite-difference tests of test_relu_integrals.py.  Criteria: float64 results equal the NumPy
path to <= 1e-13 relative (row-wise scale), dead neurons get exactly 0, a float32 torch input
gives float32 results within 1e-5 of the float64 reference.

Backends: ``array_api_strict`` (float64; also at standard version 2023.12, where the engine
gathers with a flat ``take``), torch on the CPU, torch on CUDA when a GPU is visible.  Each
is skipped when its package (or ``array-api-compat``) is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_relu import ReluProblem
from csm_relu._engine import Engine

pytest.importorskip("array_api_compat", reason="array-api-compat not installed")

CONFIGS = [
    (4, (0.0, 1.0), (0.0, 1.0)),                # the paper's setting (closed-form moments)
    (20, (-2.0, 3.0), (0.5, -1.0, 2.0, 0.7)),   # cubic target: Gauss--Legendre moments
    (9, (-2.0, 3.0), (1.0, 2.0)),
    (1, (0.5, 2.0), (3.0,)),                    # constant target, one neuron
    (12, (0.0, 1.0), (0.0, 0.0, 1.0)),          # quadratic
]
IDS = [f"N{c[0]}-{c[1]}-deg{len(c[2]) - 1}" for c in CONFIGS]

RTOL = 1e-13


class Backend:
    """How to move NumPy arrays into one array-API library and back."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "strict":
            xs = pytest.importorskip("array_api_strict")
            self.xp = xs
            self.array_type = type(xs.asarray(0.0))
            self.to = lambda a, dtype=None: xs.asarray(
                np.asarray(a), dtype=xs.float32 if dtype == "float32" else xs.float64)
            self.back = lambda a: np.from_dlpack(a).copy()
            self.dtype_name = lambda a: str(a.dtype).rsplit(".", 1)[-1]
        else:
            torch = pytest.importorskip("torch")
            dev = "cuda" if name == "torch-cuda" else "cpu"
            if dev == "cuda" and not torch.cuda.is_available():
                pytest.skip("no CUDA device")
            self.xp = torch
            self.array_type = torch.Tensor
            self.device = torch.device(dev)
            self.to = lambda a, dtype=None: torch.as_tensor(
                np.asarray(a), dtype=torch.float32 if dtype == "float32" else torch.float64,
                device=dev)
            self.back = lambda a: a.detach().cpu().numpy().copy()
            self.dtype_name = lambda a: str(a.dtype).rsplit(".", 1)[-1]


@pytest.fixture(params=["strict", "torch", "torch-cuda"])
def be(request) -> Backend:
    return Backend(request.param)


def _special_networks(p: ReluProblem, rng) -> np.ndarray:
    """Random networks plus ``w = 0`` (semi-active / inactive), ``w = -0.0``, degenerate
    neurons, coinciding breakpoints, breakpoints exactly at alpha / beta and far outside."""
    N, al, be_ = p.N, p.alpha, p.beta
    X = p.sample(rng, 16)
    W, B = X[:, :N], X[:, N:2 * N]
    W[0, :] = 0.0
    B[0, : N // 2] = np.abs(B[0, : N // 2]) + 0.1
    W[1, 0] = B[1, 0] = 0.0
    if N >= 2:
        W[2, :2] = [1.3, -0.7]
        B[2, :2] = [-1.3 * (0.3 * al + 0.7 * be_), 0.7 * (0.3 * al + 0.7 * be_)]
        W[6, :] = np.where(np.arange(N) % 2 == 0, 1.0, -2.0)   # all breakpoints tied
        B[6, :] = -W[6, :] * (0.5 * (al + be_))
    W[3, 0], B[3, 0] = 2.0, -2.0 * be_
    W[3, -1], B[3, -1] = -1.5, 1.5 * al
    W[4, 0], B[4, 0] = 1.0, -(be_ + 10.0)
    W[5, :] = -0.0
    B[5, :] = 0.5
    return X


def _rowrel(a: np.ndarray, ref: np.ndarray) -> float:
    """max over rows of ``max|a - ref| / max|ref|`` (for a 1-D loss: elementwise relative)."""
    a, ref = np.atleast_1d(a), np.atleast_1d(ref)
    if ref.ndim == 1:
        return float(np.max(np.abs(a - ref) / np.abs(ref)))
    return float(np.max(np.abs(a - ref).max(axis=1) / np.abs(ref).max(axis=1)))


def _check_kind(be: Backend, out, dtype: str = "float64", shape=None) -> np.ndarray:
    assert isinstance(out, be.array_type), type(out)
    assert be.dtype_name(out) == dtype
    if be.name == "torch-cuda":
        assert out.device.type == "cuda"
    if shape is not None:
        assert tuple(out.shape) == shape
    return be.back(out)


@pytest.mark.parametrize("N,iv,tg", CONFIGS, ids=IDS)
def test_float64_equals_numpy_path(be, N, iv, tg):
    p = ReluProblem(N, iv, tg)
    ref = Engine(N, iv[0], iv[1], np.array(p.target), fast=False)
    rng = np.random.default_rng(N)
    X = _special_networks(p, rng)
    Vd = rng.standard_normal(X.shape)
    L0, G0 = ref.loss_and_gradient(X)
    H0 = ref.hvp(X, Vd)
    Ld, Gd = p.loss_and_gradient(X)   # default path (compiled kernel when numba is present)
    Xt, Vt = be.to(X), be.to(Vd)
    L, G = p.loss_and_gradient(Xt)
    L, G = _check_kind(be, L, shape=(16,)), _check_kind(be, G, shape=X.shape)
    H = _check_kind(be, p.hvp(Xt, Vt), shape=X.shape)
    Ls = _check_kind(be, p.loss(Xt), shape=(16,))
    Gs = _check_kind(be, p.gradient(Xt), shape=X.shape)
    assert _rowrel(L, L0) <= RTOL and _rowrel(Ls, L0) <= RTOL
    assert _rowrel(G, G0) <= RTOL and _rowrel(Gs, G0) <= RTOL
    assert _rowrel(H, H0) <= RTOL
    assert _rowrel(L, Ld) <= RTOL and _rowrel(G, Gd) <= RTOL
    # the degenerate neuron of row 1 (w = b = 0): its three coordinates are exactly 0
    assert np.all(G[1, [0, N, 2 * N]] == 0.0)
    # positive control: the same comparison sees a perturbation of one network by 1e-11
    Lp = be.back(p.loss(be.to(X + 1e-11 * (np.arange(16) == 7)[:, None])))
    assert _rowrel(Lp, L0) > RTOL


def test_inputs_are_not_modified_and_numpy_stays_numpy(be):
    p = ReluProblem(5, (-1.0, 2.0), (0.0, 1.0, 1.0))
    X = p.sample(np.random.default_rng(3), 6)
    Xt = be.to(X)
    p.loss_and_gradient(Xt)
    p.hvp(Xt, Xt)
    assert np.array_equal(be.back(Xt), X)
    L, G = p.loss_and_gradient(X)
    assert type(L) is np.ndarray and type(G) is np.ndarray
    assert type(p.loss(X[0])) is float


def test_single_point_and_broadcast_shapes(be):
    p = ReluProblem(6, (0.0, 1.0), (0.0, 1.0))
    rng = np.random.default_rng(5)
    X = p.sample(rng, 4)
    Vd = rng.standard_normal(X.shape)
    d = p.dim
    L0, G0 = p.loss_and_gradient(X)
    th, v = be.to(X[2]), be.to(Vd[2])
    L, G = p.loss_and_gradient(th)
    L = _check_kind(be, L, shape=())
    G = _check_kind(be, G, shape=(d,))
    assert abs(L - L0[2]) <= RTOL * L0[2]
    assert _rowrel(G[None], G0[2:3]) <= RTOL
    assert abs(_check_kind(be, p.loss(th), shape=()) - L0[2]) <= RTOL * L0[2]
    assert _rowrel(_check_kind(be, p.gradient(th), shape=(d,))[None], G0[2:3]) <= RTOL
    Hs = _check_kind(be, p.hvp(th, v), shape=(d,))
    assert _rowrel(Hs[None], p.hvp(X[2], Vd[2])[None]) <= RTOL
    # one theta against a batch of v, and a batch of theta against one v
    Hb = _check_kind(be, p.hvp(th, be.to(Vd)), shape=(4, d))
    assert _rowrel(Hb, p.hvp(X[2], Vd)) <= RTOL
    Hb = _check_kind(be, p.hvp(be.to(X), v), shape=(4, d))
    assert _rowrel(Hb, p.hvp(X, Vd[2])) <= RTOL


# ---------------------------------------------------------------------- exactness cases
HUGE_V = [3.3e3, -3.3e9, 3.3e15, 1e306]


def _inactive_patterns(al: float, be_: float) -> list[tuple[float, float]]:
    """``(w, b)`` of neurons with ``A_j`` empty: both orientations, far away and at the ends."""
    return [(-0.7, -1234.567), (-2.0, 2.0 * al), (0.7, -0.7 * (be_ + 1234.5)),
            (2.0, -2.0 * be_), (0.0, -3.0), (0.0, 0.0)]


def _insert(X2: np.ndarray, w: float, b: float, v: float, at: int) -> np.ndarray:
    """Insert neuron ``(w, b, v)`` at position ``at`` of 2-neuron networks ``X2 (B, 7)``."""
    W, Bb, V, c = X2[:, 0:2], X2[:, 2:4], X2[:, 4:6], X2[:, 6:]
    return np.concatenate([np.insert(W, at, w, axis=1), np.insert(Bb, at, b, axis=1),
                           np.insert(V, at, v, axis=1), c], axis=1)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("iv,tg", [((0.0, 1.0), (0.0, 1.0)),
                                   ((-2.0, 3.0), (0.5, -1.0, 2.0, 0.7))],
                         ids=["affine-0-1", "cubic--2-3"])
def test_dead_neuron_weight_is_exactly_zero(be, iv, tg):
    """A neuron inactive on all of [alpha, beta] changes neither L nor G, however large its v
    (docs/theory.md §2), and its own coordinates of G are exactly 0."""
    p3, p2 = ReluProblem(3, iv, tg), ReluProblem(2, iv, tg)
    base = p2.sample(np.random.default_rng(41), 6)
    L2, G2 = (be.back(a) for a in p2.loss_and_gradient(be.to(base)))
    for w, b in _inactive_patterns(*iv):
        for at in (0, 2):
            Xh = np.concatenate([_insert(base, w, b, v, at) for v in HUGE_V])
            L, G = (be.back(a) for a in p3.loss_and_gradient(be.to(Xh)))
            L = L.reshape(len(HUGE_V), len(base))
            G = G.reshape(len(HUGE_V), len(base), 10)
            own = [at, 3 + at, 6 + at]
            other = [k for k in range(10) if k not in own]
            assert np.all(G[:, :, own] == 0.0), (w, b, at)
            assert np.max(np.abs(L - L2) / L2) <= RTOL, (w, b, at)
            scale = np.abs(G2).max(axis=1)
            assert np.max(np.abs(G[:, :, other] - G2).max(axis=2) / scale) <= RTOL
    # positive control: the same neuron turned active (breakpoint inside, v = 3.3e3) changes L
    mid = 0.5 * (iv[0] + iv[1])
    La = be.back(p3.loss(be.to(_insert(base, 1.0, -mid, 3.3e3, 0))))
    assert np.min(np.abs(La - L2) / L2) > 1.0


def test_kinks_at_the_closed_form_critical_points(be):
    """Zigzag saddles, semi-inactive neurons (breakpoint on alpha / beta: a kink of G), flat
    and dead neurons, global minima: G = 0 there, and the array-API G, loss and hvp equal the
    NumPy path's."""
    p = ReluProblem(4, (0.0, 1.0), (0.0, 1.0))
    cps = p.critical_points()
    X = np.stack([c.theta for c in cps])
    assert len(cps) >= 10
    Vd = np.random.default_rng(9).standard_normal(X.shape)
    L0, G0 = p.loss_and_gradient(X)
    L, G = (be.back(a) for a in p.loss_and_gradient(be.to(X)))
    H = be.back(p.hvp(be.to(X), be.to(Vd)))
    pos = L0 > 0
    assert pos.sum() >= 5 and (~pos).sum() >= 1
    assert np.max(np.abs(L[pos] - L0[pos]) / L0[pos]) <= RTOL
    assert np.max(np.abs(L[~pos])) <= 1e-28
    # G vanishes up to rounding (|G_i| <= 1e-14 against terms of size ~1): no relative test
    assert np.max(np.abs(G)) <= 1e-14 and np.max(np.abs(G - G0)) <= 1e-14
    assert _rowrel(H, p.hvp(X, Vd)) <= RTOL
    # positive control: shifting c by 1e-6 leaves every critical point (G_c = 2e-6)
    Y = X.copy()
    Y[:, -1] += 1e-6
    assert np.all(np.abs(be.back(p.gradient(be.to(Y)))).max(axis=1) > 1e-6)


def test_strict_at_standard_2023_12():
    """Before take_along_axis (standard 2024.12) the engine gathers with a flat take."""
    xs = pytest.importorskip("array_api_strict")
    p = ReluProblem(7, (-2.0, 3.0), (0.5, -1.0, 2.0))
    X = _special_networks(p, np.random.default_rng(2))
    Vd = np.random.default_rng(3).standard_normal(X.shape)
    L0, G0 = p.loss_and_gradient(X)
    with xs.ArrayAPIStrictFlags(api_version="2023.12"):
        assert xs.__array_api_version__ == "2023.12"
        L, G = p.loss_and_gradient(xs.asarray(X))
        H = p.hvp(xs.asarray(X), xs.asarray(Vd))
    assert _rowrel(np.from_dlpack(L), L0) <= RTOL
    assert _rowrel(np.from_dlpack(G), G0) <= RTOL
    assert _rowrel(np.from_dlpack(H), p.hvp(X, Vd)) <= RTOL


@pytest.mark.parametrize("N,iv,tg", CONFIGS, ids=IDS)
def test_torch_float32_within_1e5(N, iv, tg):
    torch = pytest.importorskip("torch")
    p = ReluProblem(N, iv, tg)
    X = _special_networks(p, np.random.default_rng(N + 100))
    Vd = np.random.default_rng(N + 200).standard_normal(X.shape)
    # rows whose float32 rounding is exact enough to compare: inputs rounded to float32 first
    X32 = X.astype(np.float32).astype(np.float64)
    V32 = Vd.astype(np.float32).astype(np.float64)
    L0, G0 = p.loss_and_gradient(X32)
    Xt = torch.as_tensor(X32, dtype=torch.float32)
    L, G = p.loss_and_gradient(Xt)
    H = p.hvp(Xt, torch.as_tensor(V32, dtype=torch.float32))
    assert L.dtype == G.dtype == H.dtype == torch.float32
    assert _rowrel(L.numpy().astype(float), L0) <= 1e-5
    assert _rowrel(G.numpy().astype(float), G0) <= 1e-5
    assert _rowrel(H.numpy().astype(float), p.hvp(X32, V32)) <= 1e-5


def test_bad_array_api_input_raises_csm_errors(be):
    p = ReluProblem(3, (0.0, 1.0), (0.0, 1.0))
    d = p.dim
    X = p.sample(np.random.default_rng(0), 3)
    with pytest.raises(csm.ShapeError, match=r"shape \(10,\) or \(batch, 10\), got shape \(2, 11\)"):
        p.loss(be.to(np.zeros((2, d + 1))))
    with pytest.raises(csm.ShapeError, match=r"shape \(10,\) or \(batch, 10\)"):
        p.gradient(be.to(np.zeros((2, 2, d))))
    bad = X.copy()
    bad[1, 4] = np.nan
    with pytest.raises(csm.NonFiniteError, match="first bad row: 1"):
        p.loss_and_gradient(be.to(bad))
    with pytest.raises(csm.ShapeError, match="batch sizes differ"):
        p.hvp(be.to(X), be.to(np.ones((2, d))))
    with pytest.raises(csm.InputError, match="real floating"):
        if be.name == "strict":
            p.loss(be.xp.asarray(np.zeros(d, dtype=np.int64)))
        else:
            p.loss(be.xp.zeros(d, dtype=be.xp.int64, device=be.device))
    # theta of this backend, v NumPy: not one namespace
    with pytest.raises(csm.InputError, match="one kind"):
        p.hvp(be.to(X), np.ones((3, d)))


def test_engine_dispatches_array_api_inputs(be):
    """``Engine.loss``, ``loss_and_gradient`` and ``hvp`` hand non-NumPy arrays to the
    array-API path (both engine flavours); ``ori`` / ``out`` stay NumPy-only."""
    p = ReluProblem(6, (-1.0, 2.0), (0.2, 1.0, -0.5))
    X = _special_networks(p, np.random.default_rng(8))
    Vd = np.random.default_rng(9).standard_normal(X.shape)
    L0, G0 = p.loss_and_gradient(X)
    H0 = p.hvp(X, Vd)
    for fast in (False, None):
        eng = Engine(p.N, p.alpha, p.beta, np.array(p.target), fast=fast)
        L, G = eng.loss_and_gradient(be.to(X))
        assert _rowrel(_check_kind(be, L), L0) <= RTOL
        assert _rowrel(_check_kind(be, G), G0) <= RTOL
        assert eng.loss_and_gradient(be.to(X), need_loss=False)[0] is None
        assert _rowrel(_check_kind(be, eng.loss(be.to(X))), L0) <= RTOL
        assert _rowrel(_check_kind(be, eng.hvp(be.to(X), be.to(Vd))), H0) <= RTOL
        with pytest.raises(TypeError, match="ori not supported"):
            eng.loss_and_gradient(be.to(X), ori=np.zeros(p.N, dtype=int))

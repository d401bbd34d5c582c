"""The engine's fast paths against its NumPy reference (issue 16).

* the optional compiled kernel (:mod:`csm_relu._numba_kernel`, used when numba is importable
  and ``CSM_DISABLE_NUMBA`` is unset) must agree with the NumPy path to <= 1e-12 relative on
  random and adversarial batches (huge inactive weights, breakpoints at the interval ends,
  ``w = 0``, ties, breakpoints far outside), keep dead neurons at exactly 0, and be
  row-wise deterministic (a row's result does not depend on the batch);
* the NumPy path's internal blocking must not change a single bit;
* ``out=`` buffers and ``gd_steps`` give what the plain calls give.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from csm_relu import ReluProblem
from csm_relu._engine import Engine

nk = pytest.importorskip("csm_relu._numba_kernel", reason="numba not installed")

CONFIGS = [
    (1, (0.5, 2.0), (3.0,)),                    # constant target, one neuron
    (4, (0.0, 1.0), (0.0, 1.0)),                # the paper's setting
    (7, (-2.0, 3.0), (1.0, 2.0)),
    (20, (-2.0, 3.0), (0.5, -1.0, 2.0, 0.7)),   # cubic: Gauss--Legendre moments
    (12, (0.0, 1.0), (0.0, 0.0, 1.0)),          # quadratic
    (nk.SMALL_N, (0.0, 1.0), (0.0, 1.0)),       # largest N of the counting sort
    (nk.SMALL_N + 1, (-1.0, 2.0), (0.3, 1.0)),  # smallest N of the quicksort
    (100, (0.0, 1.0), (0.0, 1.0)),
    (300, (-1.0, 1.0), (0.2, -0.5, 1.5)),
]
IDS = [f"N{c[0]}-deg{len(c[2]) - 1}" for c in CONFIGS]
HUGE_V = [3.3e3, -3.3e9, 3.3e15, 1e306, -1e306]


def _engines(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    coef = np.asarray(p.target)
    return p, Engine(N, *iv, coef, fast=False), Engine(N, *iv, coef, fast=True)


def _adversarial(p: ReluProblem, rng) -> np.ndarray:
    """Rows with w = 0 (b > 0, b < 0, b = 0), w = -0.0, breakpoints exactly at alpha / beta,
    far outside, coinciding, and huge v on neurons that are dead on [alpha, beta]."""
    N, al, be = p.N, p.alpha, p.beta
    rows = []
    for _ in range(6):
        X = p.sample(rng, 1)[0]
        W, B, V = X[:N], X[N:2 * N], X[2 * N:3 * N]
        k = rng.integers(0, 9, N)
        for j in range(N):
            if k[j] == 0:
                W[j], B[j] = 0.0, abs(B[j]) + 0.1           # w = 0, active everywhere
            elif k[j] == 1:
                W[j], B[j] = 0.0, -abs(B[j]) - 0.1          # w = 0, dead
            elif k[j] == 2:
                W[j], B[j] = -0.0, 0.0                      # degenerate
            elif k[j] == 3:
                W[j] = 2.0 ** int(rng.integers(-3, 4))
                B[j] = -W[j] * be                           # t = beta exactly, right: dead
                V[j] = HUGE_V[j % len(HUGE_V)]
            elif k[j] == 4:
                W[j] = -(2.0 ** int(rng.integers(-3, 4)))
                B[j] = -W[j] * al                           # t = alpha exactly, left: dead
                V[j] = HUGE_V[(j + 1) % len(HUGE_V)]
            elif k[j] == 5:
                W[j], B[j] = -0.7, -1234.567                # far below alpha, left: dead
                V[j] = HUGE_V[(j + 2) % len(HUGE_V)]
            elif k[j] == 6:
                W[j], B[j] = 0.7, -0.7 * (be + 1234.5)      # far above beta, right: dead
                V[j] = HUGE_V[(j + 3) % len(HUGE_V)]
            elif k[j] == 7:
                W[j], B[j] = 1.3, -1.3 * (0.3 * al + 0.7 * be)  # shared breakpoint
            elif k[j] == 8 and j % 2:
                W[j] = abs(W[j]) + 0.1                      # t = beta up to rounding:
                B[j] = -W[j] * (al if j % 4 == 1 else be)  # live on a tiny piece or dead
            # k == 8, j even: untouched random neuron
        rows.append(X)
    # all neurons tied at one breakpoint, alternating orientation (the sort's worst case)
    X = p.sample(rng, 1)[0]
    X[:N] = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
    X[N:2 * N] = -X[:N] * (0.5 * (al + be))
    rows.append(X)
    # breakpoints already sorted and reverse sorted
    for sgn in (1.0, -1.0):
        X = p.sample(rng, 1)[0]
        X[:N] = 1.0
        X[N:2 * N] = -np.linspace(al, be, N)[::int(sgn)]
        rows.append(X)
    return np.array(rows)


def _check_close(ref, fast, rtol=1e-12):
    (Lr, Gr), (Lf, Gf) = ref, fast
    scale_l = np.maximum(np.abs(Lr), 1e-300)
    assert np.all(np.abs(Lf - Lr) <= rtol * scale_l), np.max(np.abs(Lf - Lr) / scale_l)
    scale_g = np.maximum(np.max(np.abs(Gr), axis=1, keepdims=True), 1e-300)
    err = np.abs(Gf - Gr) / scale_g
    assert err.max() <= rtol, err.max()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("N,iv,tg", CONFIGS, ids=IDS)
def test_kernel_equals_numpy_reference_on_random_and_adversarial_batches(N, iv, tg):
    p, ref, fast = _engines(N, iv, tg)
    rng = np.random.default_rng(1000 + N)
    X = np.concatenate([p.sample(rng, 200 if N < 100 else 20), _adversarial(p, rng)])
    Lr, Gr = ref.loss_and_gradient(X)
    Lf, Gf = fast.loss_and_gradient(X)
    _check_close((Lr, Gr), (Lf, Gf))
    # dead neurons: exactly 0 in both paths, whatever their v
    al, be = p.alpha, p.beta
    W, B = X[:, :N], X[:, N:2 * N]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -B / W
    dead = ((W > 0) & (t >= be)) | ((W < 0) & (t <= al)) | ((W == 0) & (B <= 0))
    for base in (0, N, 2 * N):
        assert np.all(Gr[:, base:base + N][dead] == 0.0)
        assert np.all(Gf[:, base:base + N][dead] == 0.0)
    # loss() and loss_and_gradient() agree bitwise within each path
    np.testing.assert_array_equal(fast.loss(X), Lf)
    np.testing.assert_array_equal(ref.loss(X), Lr)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_huge_inactive_neuron_is_invisible_to_the_kernel():
    """Inserting a dead neuron with |v| up to 1e306 changes neither L nor G (kernel path)."""
    iv, tg = (0.0, 1.0), (0.0, 1.0)
    p3, ref3, fast3 = _engines(3, iv, tg)
    p2, _, fast2 = _engines(2, iv, tg)
    base = p2.sample(np.random.default_rng(3), 30)
    L2, G2 = fast2.loss_and_gradient(base)
    for w, b in [(-0.7, -1234.567), (-2.0, 0.0), (0.7, -0.7 * 1235.5), (2.0, -2.0),
                 (0.0, -3.0), (0.0, 0.0)]:
        for v in HUGE_V + [0.0]:
            X = np.concatenate([base[:, :2], [[w]] * 30, base[:, 2:4], [[b]] * 30,
                                base[:, 4:6], [[v]] * 30, base[:, 6:]], axis=1)
            L, G = fast3.loss_and_gradient(X)
            np.testing.assert_allclose(L, L2, rtol=1e-12, atol=0)
            keep = [0, 1, 3, 4, 6, 7, 9]
            np.testing.assert_allclose(G[:, keep], G2, rtol=0,
                                       atol=1e-12 * np.abs(G2).max())
            assert np.all(G[:, [2, 5, 8]] == 0.0)


@pytest.mark.parametrize("N,iv,tg", [CONFIGS[1], CONFIGS[3], CONFIGS[6]],
                         ids=[IDS[1], IDS[3], IDS[6]])
def test_rows_do_not_depend_on_the_batch(N, iv, tg):
    p, ref, fast = _engines(N, iv, tg)
    X = p.sample(np.random.default_rng(5), 9)
    for eng in (ref, fast):
        L, G = eng.loss_and_gradient(X)
        for i in range(len(X)):
            Li, Gi = eng.loss_and_gradient(X[i:i + 1])
            assert Li[0] == L[i]
            np.testing.assert_array_equal(Gi[0], G[i])


def test_numpy_blocking_changes_no_bit():
    p, ref, _ = _engines(5, (-1.0, 2.0), (0.3, -1.0, 0.5, 0.8))
    X = p.sample(np.random.default_rng(6), 157)
    L, G = ref.loss_and_gradient(X)
    small = Engine(5, -1.0, 2.0, np.asarray(p.target), fast=False)
    small.BLOCK_ELEMS = 7 * 5  # blocks of 7 rows, a short last block
    Ls, Gs = small.loss_and_gradient(X)
    np.testing.assert_array_equal(Ls, L)
    np.testing.assert_array_equal(Gs, G)
    np.testing.assert_array_equal(small.loss(X), ref.loss(X))


@pytest.mark.parametrize("use_fast", [False, True], ids=["numpy", "kernel"])
def test_out_buffers_and_input_layouts(use_fast):
    p, ref, fast = _engines(6, (0.0, 1.0), (0.0, 1.0))
    eng = fast if use_fast else ref
    X = p.sample(np.random.default_rng(7), 40)
    L0, G0 = eng.loss_and_gradient(X)
    L, G = np.full(40, np.nan), np.full_like(X, np.nan)
    Lo, Go = eng.loss_and_gradient(X, out=(L, G))
    assert Lo is L and Go is G
    np.testing.assert_array_equal(L, L0)
    np.testing.assert_array_equal(G, G0)
    none, Gn = eng.loss_and_gradient(X, need_loss=False, out=(None, G))
    assert none is None and Gn is G
    np.testing.assert_array_equal(G, G0)
    # Fortran order, strided rows and float32 input: converted, same values
    np.testing.assert_array_equal(eng.loss_and_gradient(np.asfortranarray(X))[1], G0)
    Xs = np.repeat(X, 2, axis=0)[::2]
    np.testing.assert_array_equal(eng.loss_and_gradient(Xs)[1], G0)


@pytest.mark.parametrize("N,iv,tg", [CONFIGS[1], CONFIGS[3], CONFIGS[7]],
                         ids=[IDS[1], IDS[3], IDS[7]])
def test_gd_steps_equal_a_loop_of_gradient_steps(N, iv, tg):
    p, ref, fast = _engines(N, iv, tg)
    X = p.sample(np.random.default_rng(8), 25)
    step, steps = 0.02 / (p.beta - p.alpha) ** 3, 60  # stable for these samples
    Y = X.copy()
    for _ in range(steps):
        Lprev, G = ref.loss_and_gradient(Y)
        Y = Y - step * G
    Yr, Lr = ref.gd_steps(X, step, steps)
    np.testing.assert_array_equal(Yr, Y)            # NumPy fallback: the same loop
    np.testing.assert_array_equal(Lr, Lprev)        # loss of the last step's iterate
    np.testing.assert_array_equal(ref.gd_steps(X, step, steps, final_loss=True)[1],
                                  ref.loss(Y))
    Yf, Lf = fast.gd_steps(X, step, steps)
    scale = np.max(np.abs(Y), axis=1, keepdims=True)
    assert np.max(np.abs(Yf - Y) / scale) <= 1e-10
    np.testing.assert_allclose(Lf, Lr, rtol=1e-9)
    # the kernel's steps are the kernel's loss_and_gradient steps, bit for bit
    Z = X.copy()
    for _ in range(steps):
        Zprev, G = fast.loss_and_gradient(Z)
        Z = Z - step * G
    np.testing.assert_array_equal(Yf, Z)
    np.testing.assert_array_equal(Lf, Zprev)
    Yf2, Lf2 = fast.gd_steps(X, step, steps, final_loss=True)
    np.testing.assert_array_equal(Yf2, Z)
    np.testing.assert_array_equal(Lf2, fast.loss(Z))
    # in place
    W = X.copy()
    Wout, _ = fast.gd_steps(W, step, steps, out=W)
    assert Wout is W
    np.testing.assert_array_equal(W, Yf)
    for eng in (ref, fast):
        Y0, L0 = eng.gd_steps(X, step, 0)
        np.testing.assert_array_equal(Y0, X)
        np.testing.assert_array_equal(L0, eng.loss(X))


@pytest.mark.parametrize("tg", [(0.0, 1.0), (0.3, -1.0, 0.5, 0.8)])
def test_modified_gradient_kernel_equals_numpy(tg):
    p, ref, fast = _engines(5, (-1.0, 2.0), tg)
    rng = np.random.default_rng(9)
    X = p.sample(rng, 300)
    # neuron 0 right-facing near beta, neuron 1 left-facing near alpha (both sides of the ends)
    X[:, 0] = np.abs(X[:, 0]) + 0.2
    X[:, 5] = -X[:, 0] * (p.beta + 0.1 * rng.standard_normal(300))
    X[:, 1] = -np.abs(X[:, 1]) - 0.2
    X[:, 6] = -X[:, 1] * (p.alpha + 0.1 * rng.standard_normal(300))
    X[:5, 2] = 0.0  # w = 0 in J: falls back to G
    for ori in ([1, -1, 0, 0, 0], [-1, 1, 1, 0, 0], [0, 0, 1, -1, 0]):
        ori = np.array(ori)
        _, Gr = ref.loss_and_gradient(X, need_loss=False, ori=ori)
        Lf, Gf = fast.loss_and_gradient(X, ori=ori)
        _, G = fast.loss_and_gradient(X)
        scale = np.max(np.abs(Gr), axis=1, keepdims=True)
        assert np.max(np.abs(Gf - Gr) / scale) <= 1e-12
        np.testing.assert_array_equal(Lf, fast.loss(X))
        # coordinates of the non-J neurons and of c: bitwise G
        other = [i for i in range(16) if i % 5 not in np.nonzero(ori)[0] or i == 15]
        np.testing.assert_array_equal(Gf[:, other], G[:, other])


def test_environment_variable_disables_the_kernel():
    code = ("from csm_relu._engine import numba_kernel, Engine; "
            "import numpy as np; "
            "print(numba_kernel() is None, Engine(2, 0.0, 1.0, np.array([0.0, 1.0])).fast)")
    env = dict(os.environ, CSM_DISABLE_NUMBA="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "False"]
    env["CSM_DISABLE_NUMBA"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize("N,iv,tg", [(nk.WARM_N, (0.0, 1.0), (0.0, 1.0)),
                                      (nk.SMALL_N + 1, (-1.0, 2.0), (0.3, 1.0)),
                                      (300, (-1.0, 1.0), (0.2, -0.5, 1.5))],
                         ids=["warm-counting", "warm-quicksort", "warm-N300"])
@pytest.mark.parametrize("step_scale", [0.02, 5.0], ids=["small-step", "large-step"])
def test_warm_sort_of_later_steps_is_bit_exact(N, iv, tg, step_scale):
    """Steps after the first re-sort from the previous order (``N >= WARM_N``).  The sorted
    order is unique (ties by neuron index on every path), so the fused steps equal a loop of
    single evaluations bit for bit -- also with large steps (many breakpoints cross: the
    insertion budget overflows and the step sorts from scratch) and with ties (breakpoints
    clipped to alpha and beta, coinciding breakpoints).  Positive control, measured when this
    test was written: at N = 300 the large step moves up to 1.7e4 pairs of breakpoints past
    each other in one step, beyond the budget 8 N = 2,400; the small one at most 223."""
    p, _, fast = _engines(N, iv, tg)
    rng = np.random.default_rng(11)
    X = np.concatenate([p.sample(rng, 12), _adversarial(p, rng)[:, :3 * N + 1]])
    X = X[np.all(np.isfinite(X), axis=1) & (np.max(np.abs(X), axis=1) < 1e3)]
    step, steps = step_scale * 0.02 / (p.beta - p.alpha) ** 3, 8
    Z = X.copy()
    for _ in range(steps):
        Zprev, G = fast.loss_and_gradient(Z)
        Z = Z - step * G
    Yf, Lf = fast.gd_steps(X, step, steps)
    np.testing.assert_array_equal(Yf, Z)
    np.testing.assert_array_equal(Lf, Zprev)

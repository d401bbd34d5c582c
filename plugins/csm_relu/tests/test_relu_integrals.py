"""Exactness of the ReLU loss, gradient, Hessian and hvp (docs/theory.md §2).

References: scipy's adaptive Gauss--Kronrod quadrature with the breakpoints as ``points``
(exact on every polynomial piece up to rounding), Richardson-extrapolated central differences
and finite differences of the gradient.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy.integrate import quad

from csm.maps import fd_jacobian
from csm_relu import ReluProblem

CONFIGS = [
    (4, (0.0, 1.0), (0.0, 1.0)),              # the paper's setting
    (20, (-2.0, 3.0), (0.5, -1.0, 2.0, 0.7)),  # cubic target, other interval
    (9, (-2.0, 3.0), (1.0, 2.0)),
    (1, (0.5, 2.0), (3.0,)),                   # constant target, one neuron
    (12, (0.0, 1.0), (0.0, 0.0, 1.0)),        # quadratic
]
IDS = [f"N{c[0]}-{c[1]}-deg{len(c[2]) - 1}" for c in CONFIGS]


def _quad(fun, iv, pts):
    return quad(fun, iv[0], iv[1], points=pts or None, epsabs=0.0, epsrel=1.2e-14,
                limit=500)[0]


def _reference(p: ReluProblem, th: np.ndarray):
    """Loss and G of one network by adaptive quadrature (breakpoints as points)."""
    N, iv = p.N, (p.alpha, p.beta)
    W, B, V = th[:N], th[N:2 * N], th[2 * N:3 * N]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -B / W
    pts = sorted({float(x) for x in t if np.isfinite(x) and iv[0] < x < iv[1]})

    def e(x):
        return float(p.realization(th, np.array([x]))[0] - p.target_function(x))

    L = _quad(lambda x: e(x) ** 2, iv, pts)
    G = np.zeros(p.dim)
    for j in range(N):
        def ind(x, j=j):
            return 1.0 if W[j] * x + B[j] > 0 else 0.0
        G[j] = 2 * V[j] * _quad(lambda x: e(x) * x * ind(x), iv, pts)
        G[N + j] = 2 * V[j] * _quad(lambda x: e(x) * ind(x), iv, pts)
        G[2 * N + j] = 2 * _quad(lambda x: e(x) * max(W[j] * x + B[j], 0.0), iv, pts)
    G[3 * N] = 2 * _quad(e, iv, pts)
    return L, G


def _special_networks(p: ReluProblem, rng) -> np.ndarray:
    """Networks with w = 0 (semi-active / inactive), degenerate neurons, coinciding breakpoints,
    breakpoints exactly at alpha / beta and far outside."""
    N, al, be = p.N, p.alpha, p.beta
    X = p.sample(rng, 8)
    W, B = X[:, :N], X[:, N:2 * N]
    W[0, :] = 0.0
    B[0, : N // 2] = np.abs(B[0, : N // 2]) + 0.1
    W[1, 0] = B[1, 0] = 0.0
    if N >= 2:
        W[2, :2] = [1.3, -0.7]
        B[2, :2] = [-1.3 * (0.3 * al + 0.7 * be), 0.7 * (0.3 * al + 0.7 * be)]
    W[3, 0], B[3, 0] = 2.0, -2.0 * be
    W[3, -1], B[3, -1] = -1.5, 1.5 * al
    W[4, 0], B[4, 0] = 1.0, -(be + 10.0)
    W[5, :] = -0.0
    B[5, :] = 0.5
    return X


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("N,iv,tg", CONFIGS, ids=IDS)
def test_loss_and_gradient_equal_adaptive_quadrature(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    rng = np.random.default_rng(N)
    n_rand = 6 if N >= 12 else 10
    X = np.concatenate([p.sample(rng, n_rand), _special_networks(p, rng)])
    L, G = p.loss_and_gradient(X)
    worst_l = worst_g = 0.0
    for i in range(len(X)):
        Lr, Gr = _reference(p, X[i])
        worst_l = max(worst_l, abs(L[i] - Lr) / Lr)
        worst_g = max(worst_g, float(np.max(np.abs(G[i] - Gr)) / np.max(np.abs(Gr))))
    assert worst_l <= 1e-12, worst_l
    assert worst_g <= 1e-12, worst_g


@pytest.mark.parametrize("N,iv,tg", CONFIGS, ids=IDS)
def test_gradient_equals_finite_differences_at_thousands_of_points(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    rng = np.random.default_rng(100 + N)
    X = p.sample(rng, 3000)
    G = p.gradient(X)
    D = rng.standard_normal(X.shape)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    h = 1e-5

    def f(s):
        return p.loss(X + s * D)

    c1 = (f(h) - f(-h)) / (2 * h)
    c2 = (f(2 * h) - f(-2 * h)) / (4 * h)
    fd = (4 * c1 - c2) / 3  # Richardson: O(h^4)
    an = np.einsum("bi,bi->b", G, D)
    rel = np.abs(fd - an) / np.maximum(np.abs(an), np.max(np.abs(G), axis=1))
    assert rel.max() <= 1e-7, (rel.max(), X[np.argmax(rel)])


@pytest.mark.parametrize("N,iv,tg", CONFIGS[:3], ids=IDS[:3])
def test_gradient_coordinatewise_finite_differences(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    X = p.sample(np.random.default_rng(7), 40)
    G = p.gradient(X)
    h = 1e-5
    d = p.dim
    E = np.eye(d)
    P = (X[:, None, :] + h * E[None]).reshape(-1, d)
    M = (X[:, None, :] - h * E[None]).reshape(-1, d)
    P2 = (X[:, None, :] + 2 * h * E[None]).reshape(-1, d)
    M2 = (X[:, None, :] - 2 * h * E[None]).reshape(-1, d)
    c1 = (p.loss(P) - p.loss(M)) / (2 * h)
    c2 = (p.loss(P2) - p.loss(M2)) / (4 * h)
    fd = ((4 * c1 - c2) / 3).reshape(len(X), d)
    rel = np.max(np.abs(fd - G), axis=1) / np.max(np.abs(G), axis=1)
    assert rel.max() <= 1e-7


def test_batch_rows_equal_single_calls():
    p = ReluProblem(7, (-2.0, 3.0), (0.5, -1.0, 2.0, 0.7))
    X = p.sample(np.random.default_rng(1), 5)
    L, G = p.loss(X), p.gradient(X)
    H = p.hessian(X)
    for i in range(5):
        assert L[i] == p.loss(X[i])
        np.testing.assert_array_equal(G[i], p.gradient(X[i]))
        np.testing.assert_array_equal(H[i], p.hessian(X[i]))
    Lc, Gc = p.loss_and_gradient(X)
    np.testing.assert_allclose(Lc, L, rtol=1e-15)
    np.testing.assert_array_equal(Gc, G)


@pytest.mark.parametrize("N,iv,tg", CONFIGS[:3] + CONFIGS[4:], ids=IDS[:3] + IDS[4:])
def test_hessian_equals_finite_differences_of_gradient(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    X = p.sample(np.random.default_rng(11 + N), 60 if N < 12 else 25)
    assert np.all(p.hessian_exists(X))
    H = p.hessian(X)
    np.testing.assert_array_equal(H, np.swapaxes(H, 1, 2))
    Hfd = fd_jacobian(p.gradient, X)
    rel = np.max(np.abs(H - Hfd), axis=(1, 2)) / np.max(np.abs(H), axis=(1, 2))
    assert rel.max() <= 1e-6, rel.max()


@pytest.mark.parametrize("N,iv,tg", CONFIGS[:3], ids=IDS[:3])
def test_hvp_equals_hessian_times_vector_and_fd(N, iv, tg):
    p = ReluProblem(N, iv, tg)
    rng = np.random.default_rng(5)
    X = p.sample(rng, 300)
    V = rng.standard_normal(X.shape)
    Hv = p.hvp(X, V)
    H = p.hessian(X)
    ref = np.einsum("bij,bj->bi", H, V)
    assert np.max(np.abs(Hv - ref)) <= 1e-12 * np.max(np.abs(ref))
    h = 1e-6
    fd = (p.gradient(X + h * V) - p.gradient(X - h * V)) / (2 * h)
    rel = np.max(np.abs(fd - Hv), axis=1) / np.max(np.abs(Hv), axis=1)
    assert np.median(rel) <= 1e-8 and rel.max() <= 1e-4
    # single point against a batch of directions
    np.testing.assert_allclose(p.hvp(X[0], V[:3]), np.einsum("ij,bj->bi", H[0], V[:3]),
                               rtol=1e-12, atol=1e-12 * np.abs(H[0]).max())
    assert p.hvp(X[0], V[0]).shape == (p.dim,)


def test_hessian_convention_at_a_boundary_breakpoint():
    """Semi-inactive neuron with v e(t) != 0: no Hessian; hessian() = Jacobian of G from the
    side where the breakpoint has left (alpha, beta)."""
    p = ReluProblem(3, (0.0, 1.0), (0.0, 1.0))
    th = p.sample(np.random.default_rng(2), 1)[0]
    N = 3
    th[0], th[N] = 1.0, -1.0          # t_0 = beta, w_0 > 0: semi-inactive
    th[2 * N] = 0.8
    assert not p.hessian_exists(th)
    H = p.hessian(th)
    h = 1e-7
    g0 = p.gradient(th)
    e_b = np.zeros(p.dim)
    e_b[N] = 1.0
    outside = (g0 - p.gradient(th - h * e_b)) / h   # b_0 decreases: t_0 moves past beta
    inside = (p.gradient(th + h * e_b) - g0) / h     # t_0 moves into (alpha, beta)
    np.testing.assert_allclose(H[:, N], outside, atol=1e-5)
    assert abs(inside[N] - outside[N]) > 1e-2      # the one-sided quotients disagree
    # flat: the Hessian exists
    th2 = th.copy()
    th2[2 * N] = 0.0
    assert p.hessian_exists(th2)


def test_degenerate_neuron_convention():
    p = ReluProblem(3, (0.0, 1.0), (0.0, 1.0))
    th = p.sample(np.random.default_rng(3), 1)[0]
    th[1] = th[3 + 1] = 0.0
    g = p.gradient(th)
    assert g[1] == g[4] == g[7] == 0.0
    assert not p.hessian_exists(th)
    # the loss equals that of the network without the neuron
    q = ReluProblem(2, (0.0, 1.0), (0.0, 1.0))
    keep = [0, 2]
    small = np.concatenate([th[keep], th[[3, 5]], th[[6, 8]], th[[9]]])
    assert abs(p.loss(th) - q.loss(small)) <= 1e-15 * q.loss(small)


def test_loss_is_exact_for_polynomial_integrand_at_interpolating_network():
    """A network that interpolates an affine target has loss exactly 0 (up to rounding)."""
    p = ReluProblem(2, (-2.0, 3.0), (1.0, -2.0))
    cps = [c for c in p.critical_points() if c.kind == "global_minimum"]
    assert cps
    for c in cps:
        assert p.loss(c.theta) <= 1e-28


# ---------------------------------------------------------------------- huge inactive weights
# A neuron inactive on all of [alpha, beta] must not influence L or G, however large its v:
# the engine's piece sums only ever contain neurons active on the piece (no cancellation).

INACTIVE_CONFIGS = [
    ((0.0, 1.0), (0.0, 1.0)),                 # the paper's setting (closed-form moments)
    ((-2.0, 3.0), (0.5, -1.0, 2.0, 0.7)),     # cubic target (Gauss--Legendre moments)
]
INACTIVE_IDS = ["affine-0-1", "cubic--2-3"]
# the last one makes v_j b_j overflow to -inf for the far-away breakpoints (inf * 0 must not
# turn into nan)
HUGE_V = [3.3e3, 3.3e6, -3.3e9, 3.3e12, -3.3e15, 1e306]


def _inactive_patterns(al: float, be: float) -> list[tuple[float, float]]:
    """``(w, b)`` of neurons with ``A_j`` empty: both sign patterns, far away and at the ends."""
    return [(-0.7, -1234.567),            # w < 0, breakpoint far below alpha (the audit's case)
            (-2.0, 2.0 * al),             # w < 0, breakpoint exactly at alpha
            (0.7, -0.7 * (be + 1234.5)),  # w > 0, breakpoint far above beta
            (2.0, -2.0 * be),             # w > 0, breakpoint exactly at beta
            (0.0, -3.0),                  # w = 0, b < 0
            (0.0, 0.0)]                   # degenerate


def _active_bases(al: float, be: float, rng) -> np.ndarray:
    """Networks with two neurons, breakpoints inside (alpha, beta), some at alpha + 1e-8."""
    L = be - al
    t1, t2 = al + 0.4 * L, al + 1e-8
    rows = [
        # breakpoints at 40% and 80% of the interval, both orientations
        [1.0, -1.3, -t1, 1.3 * (al + 0.8 * L), 0.9, 0.3, 0.05],
        # N = x + 1e-8 on [alpha, beta] (f = x there): L ~ 1e-16 * L, G_c = 2e-8 * L, not critical
        [1.0, -1.0, -t2, t2, 1.0, -1.0, t2 + 1e-8],
        # one neuron with the breakpoint 1e-8 past alpha, one right-facing inside
        [-1.0, 0.8, t2, -0.8 * t1, 0.7, -1.1, 0.2],
    ]
    X = np.array(rows)
    R = rng.standard_normal((3, 7))
    return np.concatenate([X, R])


def _insert(X2: np.ndarray, w: float, b: float, v: float, at: int) -> np.ndarray:
    """Insert neuron ``(w, b, v)`` at position ``at`` of 2-neuron networks ``X2 (B, 7)``."""
    W, Bb, V, c = X2[:, 0:2], X2[:, 2:4], X2[:, 4:6], X2[:, 6:]
    ins = lambda A, val: np.insert(A, at, val, axis=1)  # noqa: E731
    return np.concatenate([ins(W, w), ins(Bb, b), ins(V, v), c], axis=1)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("iv,tg", INACTIVE_CONFIGS, ids=INACTIVE_IDS)
def test_huge_inactive_neuron_changes_neither_loss_nor_gradient(iv, tg):
    p3, p2 = ReluProblem(3, iv, tg), ReluProblem(2, iv, tg)
    base = _active_bases(*iv, np.random.default_rng(41))
    L2, G2 = p2.loss_and_gradient(base)
    for w, b in _inactive_patterns(*iv):
        for at in (0, 1, 2):
            X0 = _insert(base, w, b, 0.0, at)
            L0, G0 = p3.loss_and_gradient(X0)
            other = [k for k in range(10) if k not in (at, 3 + at, 6 + at)]
            # v = 0: the same network as with the neuron removed
            np.testing.assert_allclose(L0, L2, rtol=1e-12, atol=0)
            np.testing.assert_allclose(G0[:, other], G2, rtol=0,
                                       atol=1e-12 * np.abs(G2).max())
            # one batch holding every huge v (and the v = 0 rows): no row may change
            Xh = np.concatenate([_insert(base, w, b, v, at) for v in HUGE_V] + [X0])
            Lh, Gh = p3.loss_and_gradient(Xh)
            assert np.array_equal(p3.loss(Xh), Lh)
            assert np.array_equal(p3.gradient(Xh), Gh)
            Lh = Lh.reshape(len(HUGE_V) + 1, len(base))
            Gh = Gh.reshape(len(HUGE_V) + 1, len(base), 10)
            rel_l = np.abs(Lh - L0) / L0
            assert rel_l.max() <= 1e-9, (w, b, at, rel_l.max(axis=1))
            gscale = np.abs(G0[:, other]).max(axis=1)
            rel_g = np.abs(Gh[:, :, other] - G0[:, other]).max(axis=2) / gscale
            assert rel_g.max() <= 1e-9, (w, b, at, rel_g.max(axis=1))
            # the inactive neuron's own coordinates: int over an empty A_j, exactly 0
            assert np.all(Gh[:, :, [at, 3 + at, 6 + at]] == 0.0)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_huge_inactive_neuron_keeps_the_classification():
    """The audit's case: a non-critical point (L = 1e-16) must not become a global minimum."""
    p = ReluProblem(3, (0.0, 1.0), (0.0, 1.0))
    t2 = 1e-8
    th0 = np.array([1.0, -0.7, -1.0, -t2, -1234.567, t2, 1.0, 0.0, -1.0, 2 * t2])
    L0, G0 = p.loss_and_gradient(th0)
    assert abs(L0 - 1e-16) <= 1e-9 * 1e-16
    assert p.classify(th0).kind == "not_critical"
    for v in HUGE_V:
        th = th0.copy()
        th[7] = v
        L, G = p.loss_and_gradient(th)
        assert abs(L - L0) <= 1e-9 * L0, (v, L, L0)
        assert np.max(np.abs(G - G0)) <= 1e-9 * np.max(np.abs(G0)), (v, G, G0)
        assert p.classify(th).kind == "not_critical", v


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("iv,tg", INACTIVE_CONFIGS, ids=INACTIVE_IDS)
def test_huge_inactive_neuron_loss_equals_adaptive_quadrature(iv, tg):
    p = ReluProblem(3, iv, tg)
    base = _active_bases(*iv, np.random.default_rng(43))[:4]
    X = np.concatenate([_insert(base, w, b, v, 1) for w, b in _inactive_patterns(*iv)[:5]
                        for v in HUGE_V[1::2]])
    L = p.loss(X)
    worst = 0.0
    for i in range(len(X)):
        th = X[i]
        W, Bb = th[:3], th[3:6]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -Bb / W
        pts = sorted({float(x) for x in t if np.isfinite(x) and iv[0] < x < iv[1]})

        def e(x, th=th):
            # exact rational arithmetic, then one rounding: float evaluation of N(x) - f(x)
            # would lose ~1e-8 relative where e ~ 1e-8 (the L = 1e-16 network)
            xq = Fraction(float(x))
            acc = Fraction(float(th[9])) - sum(Fraction(float(a)) * xq ** k
                                               for k, a in enumerate(tg))
            for j in range(3):
                z = Fraction(float(th[j])) * xq + Fraction(float(th[3 + j]))
                if z > 0:
                    acc += Fraction(float(th[6 + j])) * z
            return float(acc)

        Lr = quad(lambda x: e(x) ** 2, iv[0], iv[1], points=pts or None, epsabs=0.0,
                  epsrel=1e-13, limit=500)[0]
        worst = max(worst, abs(L[i] - Lr) / Lr)
    assert worst <= 1e-9, worst

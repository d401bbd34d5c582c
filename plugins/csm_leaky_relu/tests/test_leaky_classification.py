"""The classification of critical points of the leaky ReLU loss for affine targets
(docs/plugins/leaky_relu.md "Classification"; [6] §3, Theorem 3.5), checked independently:
gradients and losses by quadrature of the explicit network (csm_leaky_relu.verify, no use of
the reduction D or of the ReLU plugin's integrals), kinds by loss values only."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import csm
from csm.critical import find_critical_points
from csm_leaky_relu import LeakyReluProblem
from csm_leaky_relu.critical import kink_breakpoints, kink_value, piece_weights
from csm_leaky_relu.verify import (fd_hessian, flat_neuron_direction, probe_minimum,
                                   quad_gradient, quad_loss)
from csm_relu import ReluProblem
from csm_relu.critical import layer_value

CONFIGS = [
    (4, 0.1, (0.0, 1.0), (0.0, 1.0)),
    (3, 0.7, (-2.0, 3.0), (1.0, -2.0)),
    (5, 0.3, (-1.0, 2.0), (0.5, 3.0)),
]
IDS = [f"N{c[0]}-a{c[1]}" for c in CONFIGS]


@pytest.fixture(autouse=True)
def _quiet_quad():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quad's round-off notes where the integral is ~0
        yield


def _scale(p):
    return p.rho ** 2 * (p.beta - p.alpha) ** 3 / 12.0


def _args(p):
    return p.N, p.slope, (p.alpha, p.beta), p.target


def test_closed_form_values_breakpoints_and_relu_limits():
    a = 0.1
    # the zigzag of layer 1 at a = 0.1: the value recorded from the former Newton continuation
    assert kink_value(2, "right", a, 1.0, 0.0, 1.0) == pytest.approx(7.812373319713e-4, rel=1e-12)
    assert kink_value(2, "right", a, 1.0, 0.0, 1.0) == pytest.approx(
        (1 - a) ** 2 / (12 * (2 + math.sqrt(1 + a)) ** 4), rel=1e-15)
    # squared piece lengths in the ratio omega; mirror images share the value
    for k in range(1, 6):
        for first in ("right", "left"):
            t = kink_breakpoints(k, first, a, -1.0, 2.0)
            ell = np.diff(np.concatenate([[-1.0], t, [2.0]]))
            om = piece_weights(k, first, a)
            np.testing.assert_allclose(ell ** 2 / om, (ell ** 2 / om)[0], rtol=1e-13)
        if k % 2:
            assert kink_value(k, "right", a, 2.0, -1.0, 2.0) == kink_value(k, "left", a, 2.0,
                                                                           -1.0, 2.0)
    # a -> 0: (2n, right) -> ReLU layer n; (2n+1, either) -> layer n; (2n, left) -> layer n - 1
    eps = 1e-14
    for n in range(0, 4):
        if n >= 1:
            assert kink_value(2 * n, "right", eps, 1.0, 0.0, 1.0) == pytest.approx(
                layer_value(1.0, 0.0, 1.0, n), rel=1e-6)
            assert kink_value(2 * n, "left", eps, 1.0, 0.0, 1.0) == pytest.approx(
                layer_value(1.0, 0.0, 1.0, n - 1), rel=1e-6)
        for first in ("right", "left"):
            assert kink_value(2 * n + 1, first, eps, 1.0, 0.0, 1.0) == pytest.approx(
                layer_value(1.0, 0.0, 1.0, n), rel=1e-6)
    # a -> 1: every family's loss vanishes like (1 - a)^2
    for k in (1, 2, 5):
        r = [kink_value(k, "left", 1 - d, 1.0, 0.0, 1.0) / d ** 2 for d in (1e-3, 1e-6)]
        assert r[1] == pytest.approx(r[0], rel=2e-3) and r[1] > 0


def test_independent_gradient_is_the_gradient():
    """Positive control of the quadrature gradient: it equals the plugin's at random points,
    where the gradient is far from 0 (so a vanishing value at a critical point means something)."""
    for N, a, iv, tg in CONFIGS[:2]:
        p = LeakyReluProblem(N, a, iv, tg)
        for th in p.sample(np.random.default_rng(7), 4):
            gq, g = quad_gradient(th, *_args(p)), p.gradient(th)
            assert np.max(np.abs(g)) > 1e-3 * _scale(p)
            assert np.max(np.abs(gq - g)) <= 1e-10 * np.max(np.abs(g))
            assert quad_loss(th, *_args(p)) == pytest.approx(p.loss(th), rel=1e-12)


@pytest.mark.parametrize("N,a,iv,tg", CONFIGS, ids=IDS)
def test_every_listed_point_is_critical_by_quadrature(N, a, iv, tg):
    p = LeakyReluProblem(N, a, iv, tg)
    cps = p.critical_points()
    assert len(cps) == (4 if N >= 2 else 3) + 2 * N + (2 if N >= 2 else 1)
    for c in cps:
        g = quad_gradient(c.theta, *_args(p))
        assert np.max(np.abs(g)) <= 1e-10 * _scale(p), (c.label, np.max(np.abs(g)))
        Lq = quad_loss(c.theta, *_args(p))
        if c.kind == "global_minimum":
            assert c.loss == 0.0 and Lq <= 1e-24 * _scale(p)
        else:
            assert abs(Lq - c.loss) <= 1e-12 * c.loss, (c.label, Lq, c.loss)
            if c.info["family"] == "kinks":
                k, first = c.info["kinks"], c.info["first"]
                assert c.loss == p.kink_value(k, first)
                assert c.label == p.kink_label(k, first)
                nt = p.neuron_types(c.theta)
                live = nt.type2_active & ~nt.flat
                assert live.sum() == k and np.allclose(np.sort(nt.breakpoint[live]),
                                                       c.info["breakpoints"], rtol=1e-13)
            else:
                assert c.loss == pytest.approx(layer_value(p.rho, p.alpha, p.beta, 0), rel=1e-15)


def test_family_members_are_critical_with_the_family_value():
    """The other members of a family: shared breakpoints, flat neurons at a breakpoint, other
    unused neurons, rescaling -- and the conditions are sharp (a flat neuron at a breakpoint
    with the wrong orientation, or one with its breakpoint outside, breaks criticality)."""
    p = LeakyReluProblem(5, 0.3, (-1.0, 2.0), (0.5, 3.0))
    members = {
        ("right", 2): p.kink_point(2, "right", multiplicity=(2, 1)),
        ("left", 3): p.kink_point(3, "left", flat_at_kink=1),
        ("left", 2): p.kink_point(2, "left", unused="degenerate"),
        ("right", 1): p.kink_point(1, "right", unused="semi-active", multiplicity=(3,)),
        ("right", 4): p.kink_point(4, "right", unused="inactive"),
        ("left", 5): p.kink_point(5, "left"),
    }
    th = p.kink_point(3, "right")
    th[[0, 5, 10]] *= (2.5, 2.5, 1 / 2.5)         # positive rescaling of neuron 0
    members[("right", 3)] = th
    th = p.kink_point(1, "left", unused="degenerate")
    th[2 * 5 + 4] = 0.7                            # a non-flat degenerate neuron (G convention)
    members[("left", 1)] = th
    for (first, k), th in members.items():
        val = p.kink_value(k, first)
        g = quad_gradient(th, *_args(p))
        assert np.max(np.abs(g)) <= 1e-10 * _scale(p), (first, k)
        assert np.max(np.abs(p.gradient(th))) <= 1e-12 * _scale(p)
        assert quad_loss(th, *_args(p)) == pytest.approx(val, rel=1e-12)
        cl = p.classify(th)
        degenerate = bool(p.neuron_types(th).degenerate.any())
        assert cl.kind == ("saddle" if degenerate else "strict_saddle"), (first, k, cl)
        assert cl.info["family"] == p.kink_label(k, first) and cl.info["kinks"] == k
        assert p.critical_values()[cl.layer] == pytest.approx(val, rel=1e-14)
    base = p.kink_point(2, "right", unused="inactive")
    t1 = kink_breakpoints(2, "right", 0.3, -1.0, 2.0)[0]
    for w in (-1.0, 1.0):                           # flat neuron at t_1; t_1 is right-facing
        th = base.copy()
        th[4], th[9], th[14] = w, -w * t1, 0.0
        gmax = np.max(np.abs(quad_gradient(th, *_args(p))))
        assert (gmax <= 1e-10 * _scale(p)) == (w > 0), (w, gmax)
    th = base.copy()
    th[4], th[9], th[14] = 1.0, 3.0, 0.0            # flat, breakpoint -3 outside: not critical
    assert np.max(np.abs(quad_gradient(th, *_args(p)))) > 1e-3 * _scale(p)


@pytest.mark.parametrize("N,a,iv,tg", CONFIGS[:2], ids=IDS[:2])
def test_saddles_descend_along_explicit_directions(N, a, iv, tg):
    """Kinds by loss values (quadrature), not by the Hessian eigenvalue that assigned them:
    with a flat w = 0 neuron, the explicit direction of verify.flat_neuron_direction lowers the
    loss by exactly its predicted amount; without one (k = N), the least eigenvector of a
    finite-difference Hessian of the quadrature loss is a descent direction."""
    p = LeakyReluProblem(N, a, iv, tg)

    def Lq(x):
        return quad_loss(x, *_args(p))

    for c in p.critical_points():
        if c.kind == "global_minimum":
            continue
        th = c.theta
        flat = [j for j in range(N) if th[j] == 0.0 and th[2 * N + j] == 0.0 and th[N + j] != 0]
        if flat:
            d, change = flat_neuron_direction(th, *_args(p), flat[0])
            for t in (1e-2, 1e-3):
                dl = Lq(th + t * d) - c.loss
                assert dl < 0 and dl == pytest.approx(change(t), rel=1e-6, abs=1e-14 * c.loss), \
                    (c.label, t, dl, change(t))
        elif c.info["family"] == "layer0":               # all neurons degenerate
            # w_0 = t, v_0 = -t sign(int e sigma_a(x)): L changes by -2 t^2 |int e sigma_a(x)|
            # + O(t^4)
            e1 = np.zeros_like(th)
            e1[0] = 1e-3
            d = e1.copy()
            d[2 * N] = -1e-3 * np.sign(quad_gradient(th + e1, *_args(p))[2 * N])
            assert Lq(th + d) < c.loss * (1 - 1e-9), c.label
        else:
            assert c.info["kinks"] == N
            H = fd_hessian(Lq, th, h=1e-4 * max(1.0, np.abs(th).max()))
            w, V = np.linalg.eigh(H)
            assert w[0] < 0
            for h in (1e-3, 1e-4):
                assert min(Lq(th + h * V[:, 0]), Lq(th - h * V[:, 0])) < c.loss * (1 - 1e-12)


def test_kinds_by_probe_with_positive_controls():
    """probe_minimum says 'not a minimum' at every listed saddle and 'minimum' at the global
    minima -- and, as a positive control, 'minimum' at the ReLU dead-neuron local minimum (a
    non-global minimum with positive loss) and 'not a minimum' at a ReLU zigzag saddle."""
    p = LeakyReluProblem(3, 0.7, (-2.0, 3.0), (1.0, -2.0))
    kw = dict(radii=(1e-2,), n_random=200, maxiter=30, rng=1)
    for c in p.critical_points():
        pr = probe_minimum(p.loss, c.theta, loss_and_gradient=p.loss_and_gradient, **kw)
        want = "minimum" if c.kind == "global_minimum" else "not a minimum"
        assert pr["verdict"] == want, (c.label, pr)
    r = ReluProblem(3, (-2.0, 3.0), (1.0, -2.0))
    cps = {c.label: c for c in r.critical_points()}
    for label, want in (("dead-inactive", "minimum"), ("dead-semi-inactive-minus", "minimum"),
                        ("zigzag-n1-inactive", "not a minimum"),
                        ("zigzag-n0-semi-inactive-flat", "not a minimum")):
        pr = probe_minimum(r.loss, cps[label].theta, loss_and_gradient=r.loss_and_gradient,
                           **kw)
        assert pr["verdict"] == want, (label, pr)


def test_no_other_critical_values_by_random_search():
    """Levenberg-Marquardt from random starts: every critical point found has a listed value,
    and its breakpoint pattern names the family with that value."""
    p = LeakyReluProblem(2, 0.5)
    res = find_critical_points(p, n=150, rng=3, gtol=1e-10)
    assert res.n_converged >= 140
    vals = p.critical_values()
    found = set()
    for c in res.points:
        if c.loss <= 1e-12 * vals[0]:
            found.add(len(vals) - 1)
            continue
        i = int(np.argmin(np.abs(vals - c.loss)))
        assert abs(vals[i] - c.loss) <= 1e-8 * vals[i], c.loss
        found.add(i)
        fam = p.kink_structure(c.theta, atol=1e-8)["family"]
        if fam != "layer0":
            k, first = int(fam.split("-k")[1].split("-")[0]) if "-k" in fam else \
                2 * int(fam.split("-n")[1]), ("left" if fam.endswith("left") else "right")
            assert p.kink_value(k, first) == pytest.approx(c.loss, rel=1e-8), fam
    assert len(found) >= 4


def test_kink_point_rejects_bad_input():
    p = LeakyReluProblem(3, 0.2)
    for kw in (dict(k=0), dict(k=4), dict(k=2, first="up"), dict(k=2, multiplicity=(1,)),
               dict(k=2, multiplicity=(2, 2)), dict(k=2, flat_at_kink=-1),
               dict(k=1, unused="dead"), dict(k=True)):
        with pytest.raises(csm.ParameterError):
            p.kink_point(**kw)
    with pytest.raises(csm.ParameterError, match="affine"):
        LeakyReluProblem(3, 0.2, target=(0.0, 1.0, 1.0)).kink_point(1)
    with pytest.raises(csm.ParameterError, match="affine"):
        LeakyReluProblem(3, 0.2, target=(2.0,)).kink_value(1)

"""Step schedules: values, pickling, string specs, checks, hits of 1/h, use in descend."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import csm
from csm.orbits import CONVERGED, descend, trajectories
from csm.schedules import (
    CallableSchedule,
    Constant,
    Geometric,
    Polyak,
    PolynomialDecay,
    Schedule,
    as_schedule,
    check_schedule,
    schedule_hits,
)


def _pr(n: int = 4):
    return csm.get_problem("phase_retrieval", n=n, loss="population")


def test_values():
    assert [Constant(0.05)(k) for k in (0, 7)] == [0.05, 0.05]
    g = Geometric(0.05, 0.995)
    assert g(0) == 0.05 and math.isclose(g(10), 0.05 * 0.995**10, rel_tol=1e-15)
    p = PolynomialDecay(0.1, 0.5)
    assert p(0) == 0.1 and math.isclose(p(3), 0.1 / 2.0, rel_tol=1e-15)
    assert PolynomialDecay(0.1, 1.0, offset=2)(2) == 0.1 / 4
    np.testing.assert_allclose(Geometric(1.0, 0.5).values(4), [1, 0.5, 0.25, 0.125])
    assert Geometric(0.1, 1.0)(1000) == 0.1
    for s in (Constant(0.05), g, p, Polyak(_pr(), 0.0, 0.5)):
        assert isinstance(s.describe(), str) and s.describe()
    assert "state-dependent" in Polyak(_pr(), 0.0).describe()
    with pytest.raises(csm.InputError, match="`k`"):
        g(-1)


@pytest.mark.parametrize("s", [Constant(0.05), Geometric(0.05, 0.995),
                               PolynomialDecay(0.1, 0.5, 3.0),
                               CallableSchedule(math.sqrt, "sqrt")])
def test_pickle_round_trip(s):
    t = pickle.loads(pickle.dumps(s))
    assert t == s and type(t) is type(s)
    assert [t(k) for k in range(5)] == [s(k) for k in range(5)]
    hash(s)


def test_polyak_pickles_and_steps():
    p = _pr()
    s = Polyak(p, 0.0, gamma_max=0.5)
    t = pickle.loads(pickle.dumps(s))
    X = np.random.default_rng(0).standard_normal((6, 4))
    G = p.gradient(X)
    expect = np.minimum(p.loss(X) / np.einsum("ij,ij->i", G, G), 0.5)
    np.testing.assert_allclose(s.step(X, G), expect, rtol=1e-14)
    np.testing.assert_allclose(t.step(X), expect, rtol=1e-14)
    assert isinstance(s.step(X[0]), float)
    # a critical point: G = 0, the step is the cap (it does not move the point)
    assert s.step(np.zeros(4)) == 0.5 and Polyak(p, 0.0).step(np.zeros(4)) == 0.0
    # f_star above the loss: clipped to 0
    assert Polyak(p, 1e6).step(X[0]) == 0.0
    # state-dependent: no k -> gamma
    assert s.state_dependent and not Constant(1.0).state_dependent
    with pytest.raises(csm.InputError, match="state-dependent"):
        s(0)
    with pytest.raises(csm.InputError, match="state-dependent"):
        check_schedule(s, 3)
    with pytest.raises(csm.InputError, match="`problem`"):
        Polyak(object(), 0.0)
    with pytest.raises(csm.InputError, match="`gamma_max`"):
        Polyak(p, 0.0, gamma_max=-1)
    with pytest.raises(csm.InputError, match="`f_star`"):
        Polyak(p, float("nan"))


def test_string_specs():
    assert as_schedule("0.05") == Constant(0.05)
    assert as_schedule(" constant:0.05 ") == Constant(0.05)
    assert as_schedule("geometric:0.05,0.995") == Geometric(0.05, 0.995)
    assert as_schedule("poly:0.1,0.5") == PolynomialDecay(0.1, 0.5)
    assert as_schedule("polynomial:0.1,0.5,2") == PolynomialDecay(0.1, 0.5, 2.0)
    assert as_schedule("Geometric:0.05,0.995") == Geometric(0.05, 0.995)
    for s in (Constant(0.05), Geometric(0.05, 0.995), PolynomialDecay(0.1, 0.5, 2.0)):
        assert as_schedule(s.spec()) == s
    pk = as_schedule("polyak:0,0.5", problem=_pr())
    assert isinstance(pk, Polyak) and pk.gamma_max == 0.5
    assert as_schedule(pk.spec(), problem=_pr()).f_star == 0.0
    for bad in ("fast", "geometric:0.05", "geometric:a,b", "exp:0.1", "constant:", "",
                "poly:1,2,3,4"):
        with pytest.raises(csm.InputError, match="accepted forms: <gamma>, constant:<gamma>"):
            as_schedule(bad)
    with pytest.raises(csm.InputError, match="`rate`"):
        as_schedule("geometric:0.05,1.5")
    with pytest.raises(csm.InputError, match="`step` '-0.1'"):
        as_schedule("-0.1")
    with pytest.raises(csm.InputError, match="needs the problem"):
        as_schedule("polyak:0")


def test_as_schedule_objects():
    assert as_schedule(0.1) == Constant(0.1)
    assert as_schedule(np.float64(0.1)) == Constant(0.1)
    g = Geometric(0.1, 0.9)
    assert as_schedule(g) is g
    c = as_schedule(lambda k: 1.0 / (k + 1))
    assert isinstance(c, CallableSchedule) and isinstance(c, Schedule) and c(3) == 0.25
    for bad in (True, None, [0.1], -1.0, float("nan")):
        with pytest.raises(csm.InputError, match="`step`"):
            as_schedule(bad)


def test_constructor_validation_names_the_parameter():
    cases = [(lambda: Constant(0), "`gamma`"), (lambda: Constant(float("inf")), "`gamma`"),
             (lambda: Geometric(-1, 0.5), "`gamma0`"), (lambda: Geometric(0.1, 0), "`rate`"),
             (lambda: Geometric(0.1, 1.01), "`rate`"),
             (lambda: PolynomialDecay(0.1, -1), "`power`"),
             (lambda: PolynomialDecay(0.1, 1, 0), "`offset`"),
             (lambda: CallableSchedule(3), "`func`")]
    for make, name in cases:
        with pytest.raises(csm.InputError, match=name):
            make()


def test_check_schedule():
    np.testing.assert_allclose(check_schedule("geometric:1,0.5", 3), [1, 0.5, 0.25])
    assert check_schedule(0.1, 0).shape == (0,)
    cases = [(lambda k: 0.1 if k < 4 else -0.1, "negative step at k=4"),
             (lambda k: float("nan") if k == 2 else 0.1, "NaN step at k=2"),
             (lambda k: 0.0 if k == 1 else 0.1, "zero step at k=1"),
             (lambda k: math.inf if k == 3 else 0.1, "infinite step at k=3"),
             (lambda k: "x" if k == 1 else 0.1, "failed at k=1")]
    for s, msg in cases:
        with pytest.raises(csm.InputError, match=f"`step` schedule.*{msg}"):
            check_schedule(s, 10)
    # a geometric schedule underflows to 0 eventually
    with pytest.raises(csm.InputError, match="zero step at k="):
        check_schedule(Geometric(1.0, 1e-3), 200)


def test_schedule_hits():
    # quadratic loss with curvatures 4 and 10: gamma_k = 0.5**k hits 1/4 at k = 2
    assert schedule_hits(Geometric(1.0, 0.5), [4.0, 10.0, -2.0], 20).tolist() == [2]
    assert schedule_hits(0.1, [10.0], 5).tolist() == [0, 1, 2, 3, 4]
    assert schedule_hits(Geometric(0.05, 0.995), [3.0, -2.0, 0.0], 500).size == 0
    assert schedule_hits(PolynomialDecay(1.0, 1.0), [2.0, 3.0], 10).tolist() == [1, 2]
    assert schedule_hits(PolynomialDecay(1.0, 1.0), [3.0 + 1e-6], 10).size == 0
    assert schedule_hits(PolynomialDecay(1.0, 1.0), [3.0 + 1e-6], 10, rtol=1e-5).tolist() == [2]
    with pytest.raises(csm.InputError, match="`values`"):
        schedule_hits(0.1, [np.nan], 3)
    with pytest.raises(csm.InputError, match="NaN step at k=1"):
        schedule_hits(lambda k: float("nan") if k else 0.1, [1.0], 3)


def test_descend_with_schedule_objects():
    p = _pr()
    X = np.random.default_rng(1).standard_normal((16, 4))
    res = descend(p, X, Geometric(0.05, 0.999), max_steps=4000, tol=1e-8)
    assert np.all(res.status == CONVERGED)
    dist = np.minimum(np.linalg.norm(res.theta - p.x_star, axis=1),
                      np.linalg.norm(res.theta + p.x_star, axis=1))
    assert np.all(dist < 1e-6)
    ref = descend(p, X, lambda k: 0.05 * 0.999**k, max_steps=4000, tol=1e-8)
    np.testing.assert_array_equal(res.theta, ref.theta)
    same = descend(p, X, as_schedule("constant:0.05"), max_steps=4000, tol=1e-8)
    np.testing.assert_array_equal(same.theta, descend(p, X, 0.05, max_steps=4000, tol=1e-8).theta)
    with pytest.raises(csm.InputError, match="`step`"):
        descend(p, X, Polyak(p, 0.0), max_steps=10, tol=1e-8)


def test_nonautonomous_trajectories_with_a_schedule():
    p = _pr()
    s = PolynomialDecay(0.1, 0.5)

    def psi(Y, k):
        return Y - s(k) * p.gradient(Y)

    X = np.random.default_rng(2).standard_normal((3, 4))
    T = trajectories(psi, X, 3, nonautonomous=True)
    Y = X
    for k in range(3):
        Y = Y - s(k) * p.gradient(Y)
    np.testing.assert_allclose(T[:, -1], Y)


def test_l1_phase_retrieval_with_a_geometric_schedule_reaches_the_signal():
    """Issue 13 acceptance: n = 8, m = 64, gamma_k = 0.05 * 0.995^k, 200 runs: >= 95 % end
    within 1e-6 of +-x* (distance measured here, independently of csm's labels), and the
    stable-set estimate counts them as converged (the travel rule of csm.orbits.descend)."""
    import csm
    from csm.schedules import Geometric

    p = csm.get_problem("phase_retrieval", n=8, m=64, loss="l1")
    xs = np.stack([c.theta for c in p.critical_points() if c.kind == "global_minimum"])
    est = csm.estimate_stable_set(p, Geometric(0.05, 0.995), n=200, chunk_size=200,
                                  max_steps=6000, tol=1e-9)
    theta = est.arrays["theta"]
    dist = np.min(np.linalg.norm(theta[:, None, :] - xs[None], axis=2), axis=1)
    assert (dist <= 1e-6).mean() >= 0.95
    assert est.kind_counts["global_minimum"] >= 190 and est.unconverged_count == 0
    # positive control: a constant step of the same size never stops on its own
    est_c = csm.estimate_stable_set(p, 0.05, n=20, chunk_size=20, max_steps=500, tol=1e-9)
    assert est_c.unconverged_count == 20

"""The ``csm reproduce`` experiments of the network plugin (issue 12, "Reproduce")."""

from __future__ import annotations

import math
import numbers

import numpy as np
import pytest

import csm
from csm_network import experiments as ex

NAMES = ["network-zigzag", "network-escape", "network-genuine-minima", "network-embedding"]


def _numeric(v) -> bool:
    if isinstance(v, list):
        return len(v) > 0 and all(_numeric(x) for x in v)
    return isinstance(v, numbers.Number) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.parametrize("name", NAMES)
def test_experiment_quick_every_claim_agrees_with_numbers(name, tmp_path):
    exp = next(e for e in ex.EXPERIMENTS if e.name == name)
    res = exp.run(csm.ExperimentConfig(quick=True, out_dir=tmp_path, seed=0))
    assert res.name == name and res.claims
    for c in res.claims:
        assert c.agrees, (c.statement, c.measured, c.criterion)
        assert c.measured and any(_numeric(v) for v in c.measured.values()), c.measured
        assert c.expected and c.criterion.strip()
    for path in res.figures.values():
        assert (tmp_path / "figures").resolve() in [p.resolve() for p in
                                                     type(tmp_path)(path).parents]
        assert type(tmp_path)(path).stat().st_size > 10_000
    assert res.timings and all(t >= 0 for t in res.timings.values())


def test_experiments_registered_through_the_hook():
    assert set(NAMES) <= {e.name for e in csm.list_experiments()}


def test_from_relu_maps_the_parameter_vector_to_the_same_network():
    p = csm.get_problem("relu", N=4)
    q = ex.grid_problem()
    x = np.linspace(-0.3, 1.4, 37)
    for c in p.critical_points():
        th = ex.from_relu(q, c.theta)
        (W1, b1), (W2, b2) = q.unpack(th)
        w, b, v, cc = np.split(c.theta, [4, 8, 12])
        assert np.array_equal(W1[:, 0], w) and np.array_equal(b1, b)
        assert np.array_equal(W2[0], v) and b2[0] == cc[0]
        direct = np.maximum(np.outer(x, w) + b, 0) @ v + cc[0]
        assert np.allclose(q.realization(th, x[:, None])[:, 0], direct, atol=1e-15)
        # the grid average approaches the integral (1/(beta - alpha)) int (N - f)^2 on [0, 1]
        # (both end points are data: a relative excess ~ 2/m)
        assert abs(q.loss(th) - c.loss) <= 3e-4 * max(c.loss, 1e-3)


def test_independent_evaluations_agree_with_the_plugin():
    q = csm.get_problem("network", widths=(1, 3, 1), data="grid:9", target="poly:0,0,1")
    rng = np.random.default_rng(5)
    th = q.sample(rng, 1)[0]
    assert abs(ex.loss_fsum(q, th) - q.loss(th)) <= 1e-14 * max(1.0, q.loss(th))
    D = 1e-2 * rng.standard_normal((7, q.dim))
    dl, nz = ex.loss_change(q, th, D)
    ref = np.asarray(q.loss(th[None] + D)) - q.loss(th)
    assert np.allclose(dl, ref, rtol=1e-9, atol=1e-15) and np.all(nz < 1e-12)
    assert np.allclose(ex.hessian_closed_form(q, th[None])[0], q.hessian(th), atol=1e-12)


def test_loss_change_resolves_what_differencing_losses_cannot():
    q = ex.grid_problem()
    th = ex.from_relu(q, next(c for c in csm.get_problem("relu", N=4).critical_points()
                              if c.label == "zigzag-n0-flat-semi-active").theta)
    rep = q.stationarity(th)
    e = rep.escape_neurons[0]
    t = 1e-9  # L changes by ~6e-20, far below eps * L ~ 2e-17
    dl, nz = ex.loss_change(q, th, t * e.direction[None])
    assert dl[0] < -nz[0]
    assert abs(2 * dl[0] / t**2 - e.second_derivative) <= 1e-3 * abs(e.second_derivative)


def test_certificates_reject_points_that_are_not_minima():
    q = csm.get_problem("network", widths=(1, 2, 1), data="grid:8", target="poly:0,0,1")
    mins = q.differentiable_local_minima()
    best = mins[0].theta
    moved = best.copy()
    moved[-1] += 1e-3
    cert = ex.certify_limits(q, np.stack([best, moved]), mins)["certificate"]
    assert cert.tolist() == ["genuine", "unmatched"]
    # a point with a datum on a kink is reported as such
    kink = best.copy()
    (W1, b1), _ = q.unpack(kink)
    kink[2] = -W1[0, 0] * q.inputs[3, 0]  # b_0 = -w_0 x_3: neuron 0's kink on datum 3
    assert ex.certify_limits(q, kink[None], mins)["certificate"].tolist() == ["kink"]


def test_classify_independently_on_the_special_points():
    q = csm.get_problem("network", widths=(1, 3, 1), data="grid:7", target="affine:1,0")
    sp = {c.label: c.theta for c in q.critical_points()}
    rng = np.random.default_rng(0)
    v, _, _ = ex.classify_independently(q, sp["zero-neurons"], q.stationarity(sp["zero-neurons"]),
                                        rng, 50)
    assert v == "saddle"
    v, _, _ = ex.classify_independently(q, sp["all-dead"], q.stationarity(sp["all-dead"]), rng, 50)
    assert v == "minimum"

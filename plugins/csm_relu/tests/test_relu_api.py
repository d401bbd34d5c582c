"""Parameters, plugin registration, neuron types, sampling and the conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_relu import NEURON_KINDS, ReluProblem


def test_registered_through_the_entry_point():
    csm.reset_plugin_manager()
    assert "relu" in csm.list_problems()
    p = csm.get_problem("relu", N=3, interval=(-2.0, 3.0), target=(1.0, 2.0))
    assert isinstance(p, ReluProblem) and p.dim == 10 and p.name == "relu"
    assert p.affine and p.rho == 2.0 and p.s == 1.0
    assert csm.list_problems()["relu"].parameters == {
        "N": 4, "interval": (0.0, 1.0), "target": (0.0, 1.0), "init_scale": 1.0}


@pytest.mark.parametrize("kw,name", [
    ({"N": 0}, "`N`"), ({"N": 2.5}, "`N`"), ({"N": True}, "`N`"),
    ({"interval": (1.0, 1.0)}, "`interval`"), ({"interval": (0.0, np.inf)}, "`interval`"),
    ({"interval": (0.0, 1.0, 2.0)}, "`interval`"), ({"interval": "ab"}, "`interval`"),
    ({"target": ()}, "`target`"), ({"target": (0.0, np.nan)}, "`target`"),
    ({"target": 1.0}, "`target`"), ({"target": "x"}, "`target`"),
    ({"init_scale": 0.0}, "`init_scale`"),
])
def test_bad_parameters_raise_parameter_error_naming_the_parameter(kw, name):
    with pytest.raises(csm.ParameterError, match=name):
        csm.get_problem("relu", **kw)


def test_unknown_parameter_rejected():
    with pytest.raises(csm.ParameterError, match="accepted"):
        csm.get_problem("relu", width=3)


def test_trailing_zero_coefficients_are_trimmed():
    p = ReluProblem(2, target=(0.0, 1.0, 0.0, 0.0))
    assert p.target == (0.0, 1.0) and p.affine


def test_bad_theta():
    p = ReluProblem(2)
    with pytest.raises(csm.ShapeError):
        p.loss(np.zeros(5))
    with pytest.raises(csm.NonFiniteError, match="theta"):
        p.gradient(np.full(7, np.nan))
    with pytest.raises(csm.ShapeError):
        p.hvp(np.zeros((2, 7)), np.zeros((3, 7)))


def test_neuron_types_each_kind():
    p = ReluProblem(8, (0.0, 1.0), (0.0, 1.0))
    W = [1.0, 1.0, 0.0, 1.0, -1.0, 0.0, -1.0, 2.0]
    B = [-2.0, -1.0, 0.5, 0.5, 0.5, 0.0, 0.0, -1e-13]
    V = [1.0, 0.0, 0.0, 1.0, 1.0, 3.0, 1.0, 1.0]
    th = np.array(W + B + V + [0.0])
    nt = p.neuron_types(th)
    assert list(nt.names) == ["inactive", "semi_inactive", "semi_active", "type1_active",
                              "type2_active", "degenerate", "semi_inactive", "type1_active"]
    assert nt.flat.tolist() == [False, True, True, False, False, False, False, False]
    assert nt.J_plus.tolist() == [False, True] + [False] * 6
    assert nt.J_minus.tolist() == [False] * 6 + [True, False]
    assert nt.at_alpha[7] and nt.kind[7] == NEURON_KINDS.index("type1_active")
    assert nt.breakpoint[4] == 0.5 and np.isnan(nt.breakpoint[2])
    # tolerance: a breakpoint 1e-6 from beta is semi-inactive only with a loose rtol
    th2 = th.copy()
    th2[8 + 1] = -(1.0 - 1e-6)
    assert p.neuron_types(th2).names[1] == "type2_active"
    assert p.neuron_types(th2, rtol=1e-5).names[1] == "semi_inactive"
    # batched
    ntb = p.neuron_types(np.stack([th, th2]))
    assert ntb.kind.shape == (2, 8) and ntb.counts()["semi_inactive"].tolist() == [2, 1]
    assert "t=0.5" in nt.describe()[4]


def test_random_networks_are_generic():
    p = ReluProblem(6)
    nt = p.neuron_types(p.sample(np.random.default_rng(0), 2000))
    assert not (nt.semi_inactive | nt.semi_active | nt.degenerate | nt.flat).any()
    assert nt.inactive.any() and nt.type1_active.any() and nt.type2_active.any()


def test_sample_reproducible_gaussian():
    p = ReluProblem(3, init_scale=0.5)
    a = p.sample(np.random.default_rng(7), 4000)
    b = p.sample(7, 4000)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4000, 10)
    # standard deviation 0.5: 4000 * 10 draws, relative s.e. of the sd ~ 0.0035
    assert abs(a.std() - 0.5) < 0.02 and abs(a.mean()) < 0.02


def test_realization_matches_formula():
    p = ReluProblem(2)
    th = np.array([1.0, -2.0, -0.5, 1.0, 3.0, 0.5, 0.25])
    x = np.array([0.0, 0.4, 0.6, 1.0])
    expected = 0.25 + 3.0 * np.maximum(x - 0.5, 0) + 0.5 * np.maximum(-2 * x + 1, 0)
    np.testing.assert_allclose(p.realization(th, x), expected, rtol=1e-15)
    assert p.realization(np.stack([th, th]), x).shape == (2, 4)


@pytest.mark.parametrize("kw", [
    dict(N=4),
    dict(N=5, interval=(-2.0, 3.0), target=(1.0, -2.0)),
    dict(N=6, interval=(0.0, 1.0), target=(0.5, -1.0, 2.0, 0.7)),
])
def test_conformance_suite(kw):
    from csm.testing import check_problem

    report = check_problem(csm.get_problem("relu", **kw))
    assert report.passed

"""Registration, parameters and data, conformance, and the csm instruments on the network loss."""

from __future__ import annotations

import numpy as np
import pytest

import csm
from csm_network import NetworkProblem


def test_registered_with_documented_parameters():
    assert "network" in csm.list_problems()
    params = csm.list_problems()["network"].parameters
    assert params["widths"] == (1, 3, 1) and params["activation"] == "relu"
    p = csm.get_problem("network", widths=(2, 4, 3), inputs=np.ones((5, 2)), targets=np.zeros((5, 3)))
    assert isinstance(p, NetworkProblem) and p.name == "network" and p.dim == 2 * 4 + 4 + 4 * 3 + 3
    assert p.min_loss == 0.0  # constant targets


@pytest.mark.parametrize("kw,pattern", [
    ({"widths": (1, 3, 1), "inputs": np.zeros((4, 1)), "targets": np.zeros((5, 1))},
     r"`inputs` and `targets`.*4 inputs and 5 targets"),
    ({"widths": (1, 3, 1), "inputs": [[0.0], [np.nan]], "targets": [[0.0], [1.0]]},
     r"`inputs`.*NaN.*row 1"),
    ({"widths": (1, 3, 1), "inputs": [[0.0], [1.0]], "targets": [np.inf, 1.0]}, r"`targets`"),
    ({"activation": "rleu"}, r"`activation`.*did you mean 'relu'"),
    ({"activation": "leaky_relu:2"}, r"`activation`.*0 <= a < 1"),
    ({"activation": "relu^1"}, r"`activation`.*k >= 2"),
    ({"widths": (1, 0, 1)}, r"`widths`.*>= 1.*\(1, 0, 1\)"),
    ({"widths": (3,)}, r"`widths`"),
    ({"activation": {"breakpoints": [0.0], "pieces": [[0.0], [1.0, 1.0]]}},
     r"`activation`: pieces 0 and 1 do not join at breakpoint t = 0.0"),
    ({"activation": {"breakpoints": [1.0, 0.0], "pieces": [[0.0], [0.0], [0.0]]}},
     r"`activation`.*increasing"),
    ({"widths": (1, 2, 1), "inputs": np.zeros((3, 2)), "targets": np.zeros(3)},
     r"`inputs`.*shape \(m, 1\)"),
    ({"data": "grid:0"}, r"`data`"),
    ({"data": "grid:5", "target": "cubic:1"}, r"`target`"),
    ({"data": "nowhere.npz"}, r"`data`.*no existing"),
    ({"widths": (2, 2, 1), "data": "orthogonal:3"}, r"`data`.*m <= d_in = 2"),
    ({"data": "teacher:5", "target": "affine:1,0"}, r"`target`.*only used with data='grid:m'"),
    ({"init_scale": 0.0}, r"`init_scale`"),
])
def test_bad_input_raises_a_csm_error_naming_the_argument(kw, pattern):
    with pytest.raises(csm.ParameterError, match=pattern):
        csm.get_problem("network", **kw)


def test_data_sources(tmp_path):
    X = np.linspace(-1, 1, 7)[:, None]
    Y = np.hstack([X ** 2, -X])
    f = tmp_path / "d.npz"
    np.savez(f, inputs=X, targets=Y)
    p = csm.get_problem("network", widths=(1, 4, 2), data=str(f))
    np.testing.assert_array_equal(p.inputs, X)
    np.testing.assert_array_equal(p.targets, Y)
    np.savez(tmp_path / "bad.npz", inputs=X)
    with pytest.raises(csm.ParameterError, match="`data`.*targets"):
        csm.get_problem("network", widths=(1, 4, 2), data=str(tmp_path / "bad.npz"))
    g = csm.get_problem("network", data="grid:5", target="poly:1,0,2")
    np.testing.assert_allclose(g.targets[:, 0], 1 + 2 * np.linspace(0, 1, 5) ** 2)
    a = csm.get_problem("network", data="grid:4", target="affine:2,-1")
    np.testing.assert_allclose(a.targets[:, 0], 2 * np.linspace(0, 1, 4) - 1)
    assert a.min_loss == 0.0  # affine data, relu: one neuron in its linear regime fits it
    t = csm.get_problem("network", widths=(3, 4, 4, 2), activation="leaky_relu:0.1",
                        data="teacher:9,4")
    assert t.min_loss == 0.0 and t.loss(t.teacher) < 1e-28 and t.inputs.shape == (9, 3)
    o = csm.get_problem("network", widths=(5, 2, 1), data="orthogonal:4,1")
    np.testing.assert_allclose(o.inputs @ o.inputs.T, np.eye(4), atol=1e-14)
    assert csm.get_problem("network").data_source.startswith("grid:8")


@pytest.mark.parametrize("kw", [
    {"widths": (1, 3, 1), "data": "grid:6"},
    {"widths": (2, 3, 2), "activation": "leaky_relu:0.1", "data": "teacher:8,2"},
    {"widths": (2, 3, 3, 1), "activation": "relu^3", "data": "teacher:6,1"},
    {"widths": (2, 2, 1), "activation": "linear", "data": "teacher:6,0"},
    {"widths": (1, 3, 1), "activation": "square", "data": "grid:5"},
    {"widths": (2, 2, 2, 2), "activation": "relu^2", "data": "orthogonal:2"},
    {"widths": (1, 2, 1), "activation": {"breakpoints": [0.0, 1.0],
                                         "pieces": [[0.0], [0.0, 0.0, 0.5], [-0.5, 1.0]]}},
])
def test_conformance(kw):
    rep = csm.testing.check_problem(csm.get_problem("network", **kw))
    assert rep.passed


def test_listed_points_and_min_loss():
    p = csm.get_problem("network", widths=(1, 3, 1), data="grid:6", target="poly:0,0,1")
    kinds = {c.label: c.kind for c in p.critical_points()}
    assert kinds == {"zero-neurons": "saddle", "all-dead": "local_minimum"}
    assert p.min_loss is None  # 3 neurons cannot interpolate 6 points of a parabola
    assert csm.get_problem("network", widths=(1, 5, 1), data="grid:6",
                           target="poly:0,0,1").min_loss == 0.0
    lin = csm.get_problem("network", widths=(2, 2, 1), activation="linear",
                          inputs=np.eye(2).repeat(2, 0), targets=[1.0, 2.0, 3.0, 5.0])
    assert lin.min_loss == pytest.approx(0.25 * (0.25 + 0.25 + 1 + 1))


def test_problem_pickles_for_process_pools():
    import pickle

    p = csm.get_problem("network", widths=(2, 3, 1), activation="leaky_relu:0.1", data="teacher:5")
    q = pickle.loads(pickle.dumps(p))
    T = p.sample(np.random.default_rng(0), 3)
    np.testing.assert_array_equal(q.gradient(T), p.gradient(T))


def test_bad_theta():
    p = csm.get_problem("network")
    with pytest.raises(csm.ShapeError):
        p.loss(np.zeros(3))
    with pytest.raises(csm.NonFiniteError, match="theta"):
        p.gradient(np.full(p.dim, np.nan))
    with pytest.raises(csm.ShapeError):
        p.hvp(np.zeros((2, p.dim)), np.zeros((3, p.dim)))
    with pytest.raises(csm.ShapeError, match="layers"):
        p.pack([(np.zeros((3, 2)), np.zeros(3)), (np.zeros((1, 3)), np.zeros(1))])


def test_stable_set_run():
    p = csm.get_problem("network", widths=(1, 3, 1), data="grid:5", target="poly:0,-1,2")
    est = csm.estimate_stable_set(p, 0.2, n=200, max_steps=3000, seed=1)
    assert est.n == 200 and est.diverged_count == 0 and sum(est.counts.values()) == 200
    # limits with a neuron creeping towards its kink converge slowly: most runs still decide
    assert est.undecided_count < 100


def test_center_stable_manifold_at_a_strict_saddle():
    """Linear activation: the zero-neuron point is a strict saddle of a polynomial loss."""
    p = csm.get_problem("network", widths=(2, 2, 1), activation="linear", data="teacher:10,3")
    s = next(c for c in p.critical_points() if c.label == "zero-neurons")
    assert s.kind == "saddle" and np.linalg.eigvalsh(p.hessian(s.theta))[0] < -1.0
    W = csm.center_stable_manifold(csm.GradientDescentMap(p, 0.1), s.theta, matrix_free=True)
    assert W.dim_u == 2 and W.dim_cs == p.dim - 2

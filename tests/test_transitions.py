"""Tests of csm.transitions (saddle-to-saddle transition graphs).

The staircase toy L(x) = sum_i a_i (x_i^2 - 1)^2 / 4 with a_1 > a_2 > a_3 has critical points
x_i in {-1, 0, 1}, loss sum_{x_i = 0} a_i / 4 and Morse index #{i : x_i = 0}.  From a tiny
start coordinate i leaves 0 at rate 1 + step a_i, so gradient descent must visit the levels
top-down: 3 zeros -> 2 zeros -> 1 zero -> minimum.
"""

from __future__ import annotations

import itertools
import json

import networkx as nx
import numpy as np
import pytest

import _toy_problems as toy  # on sys.path through tests/conftest.py

from csm.errors import InputError, ShapeError
from csm.stable_sets import estimate_stable_set
from csm.transitions import (
    detect_plateaus,
    draw_transition_graph,
    read_graphml,
    read_json,
    record_trajectories,
    to_graphml,
    to_json,
    transition_graph,
)

A = (1.0, 0.25, 0.0625)
STEP = 0.2
R = 16
N_STEPS, EVERY = 3000, 3


def level_loss(zeros: int) -> float:
    """Loss of the level with the last `zeros` coordinates still at 0 (analytic)."""
    return float(sum(A[len(A) - zeros:]) / 4) if zeros else 0.0


@pytest.fixture(scope="module")
def small_starts():
    return 1e-6 * np.random.default_rng(1).standard_normal((R, 3))


@pytest.fixture(scope="module")
def trajectories(small_starts):
    return record_trajectories(toy.Staircase(A), STEP, small_starts, N_STEPS, every=EVERY)


def test_record_trajectories_matches_a_plain_loop():
    p = toy.Staircase(A)
    x0 = np.array([[0.3, -0.2, 0.1], [1e-3, 2.0, -0.5]])
    Y = record_trajectories(p, 0.1, x0, 10, every=3)
    assert Y.shape == (2, 4, 3)  # steps 0, 3, 6, 9
    for r in range(2):
        x = x0[r].copy()
        for k in range(10):
            if k % 3 == 0:
                assert np.array_equal(Y[r, k // 3], x)
            x = x - 0.1 * np.asarray(A) * (x**3 - x)
    single = record_trajectories(p, 0.1, x0[0], 10, every=3)
    assert single.shape == (4, 3) and np.array_equal(single, Y[0])
    with pytest.raises(ShapeError):
        record_trajectories(p, 0.1, np.zeros(4), 10)
    with pytest.raises(InputError, match="`every`"):
        record_trajectories(p, 0.1, x0, 10, every=0)


def _check_staircase_chain(G, name_of_level):
    """Nodes are the 4 levels, each visited once by every run, edges only one level down."""
    assert set(G.nodes) == {name_of_level(z) for z in range(4)}
    for z in range(4):
        d = G.nodes[name_of_level(z)]
        assert d["loss"] == pytest.approx(level_loss(z), abs=1e-12)
        assert d["index"] == z  # Morse index = number of zero coordinates
        kind = "local_maximum" if z == 3 else "strict_saddle" if z else "global_minimum"
        assert d["kind"] == kind
        assert d["visits"] == R and d["runs"] == R
    assert set(G.edges) == {(name_of_level(z), name_of_level(z - 1)) for z in (3, 2, 1)}
    for u, v, d in G.edges(data=True):
        assert d["count"] == R
        assert G.nodes[u]["loss"] > G.nodes[v]["loss"]  # top-down
        assert d["mean_transit"] > 0
    assert nx.is_directed_acyclic_graph(G)
    assert [G.nodes[n]["loss"] for n in nx.topological_sort(G)] == sorted(
        (G.nodes[n]["loss"] for n in G), reverse=True)


def test_staircase_levels_visited_top_down_via_classify(trajectories):
    G = transition_graph(toy.StaircaseLayers(A), trajectories, every=EVERY)
    _check_staircase_chain(G, lambda z: f"{z} zero coordinate(s)")
    assert all(d["identified_by"] == "classify" for _, d in G.nodes(data=True))
    assert G.graph["n_trajectories"] == R and G.graph["every"] == EVERY
    # the plateau at the top lasts ~ log(grad_tol / (a_1 |x0|)) / log(1 + step a_1) steps
    top = G.nodes["3 zero coordinate(s)"]
    assert 20 < top["mean_duration"] < 120


def test_staircase_via_critical_values(trajectories):
    p = toy.StaircaseValues(A)
    values = p.critical_values()  # descending; index j names the node "layer j", 0 "zero loss"

    def name(z):
        j = values.index(pytest.approx(level_loss(z)))
        return "zero loss" if values[j] == 0 else f"layer {j}"

    names = {z: name(z) for z in range(4)}
    G = transition_graph(p, trajectories, every=EVERY)
    _check_staircase_chain(G, names.__getitem__)
    assert all(d["identified_by"] == "critical_values" for _, d in G.nodes(data=True))


def test_staircase_via_nearest_critical_point(trajectories, small_starts):
    G = transition_graph(toy.Staircase(A), trajectories, every=EVERY)
    # node = sign pattern; a run starting with signs s visits (0,0,0), (s1,0,0), (s1,s2,0), s
    sign = np.sign(small_starts).astype(int)
    expected_edges: dict[tuple[str, str], int] = {}
    for s in sign:
        path = [toy.Staircase.sign_label(np.r_[s[:k], np.zeros(3 - k, int)]) for k in range(4)]
        for u, v in zip(path[:-1], path[1:]):
            expected_edges[(u, v)] = expected_edges.get((u, v), 0) + 1
    assert {(u, v): d["count"] for u, v, d in G.edges(data=True)} == expected_edges
    for n, d in G.nodes(data=True):
        zeros = n.count("0")
        assert d["loss"] == pytest.approx(level_loss(zeros)) and d["index"] == zeros
        assert d["layer"] == zeros and d["identified_by"] == "critical_point"


def test_detect_plateaus_sorted_and_consistent(trajectories):
    p = toy.StaircaseLayers(A)
    pls = detect_plateaus(p, trajectories, grad_tol=1e-3, min_plateau=5)
    assert [(q.run, q.start) for q in pls] == sorted((q.run, q.start) for q in pls)
    for q in pls:
        assert q.end - q.start >= 5 and q.grad_norm <= 1e-3
        seg = trajectories[q.run, q.start:q.end]
        g = np.linalg.norm(p.gradient(seg), axis=1)
        assert np.all(g <= 1e-3) and q.grad_norm == pytest.approx(g.min())
        assert q.loss == pytest.approx(p.loss(q.point))
    # no plateau at all when the threshold is impossible to meet
    assert detect_plateaus(p, trajectories, grad_tol=1e-300) == []
    assert transition_graph(p, trajectories, grad_tol=1e-300).number_of_nodes() == 0
    with pytest.raises(ShapeError):
        detect_plateaus(p, np.zeros((2, 5, 4)))


def test_graph_from_a_stable_set_estimate():
    p = toy.StaircaseLayers(A)

    def tiny(rng, m):
        return 1e-6 * rng.standard_normal((m, 3))

    est = estimate_stable_set(p, STEP, tiny, n=12, chunk_size=12, max_steps=N_STEPS, tol=1e-6)
    assert est.counts == {"0 zero coordinate(s)": 12}
    G = transition_graph(p, est, max_runs=12)
    assert G.graph["n_trajectories"] == 12
    losses = {n: d["loss"] for n, d in G.nodes(data=True)}
    assert set(losses) == {f"{z} zero coordinate(s)" for z in range(4)}
    for u, v in G.edges:
        assert losses[u] > losses[v]


def test_graphml_and_json_round_trip(trajectories, tmp_path):
    G = transition_graph(toy.Staircase(A), trajectories, every=EVERY)
    G.graph["note"] = {"a": [1, 2]}  # a container attribute: written as JSON text
    back = read_graphml(to_graphml(G, tmp_path / "g.graphml"))
    assert set(back.nodes) == set(G.nodes) and set(back.edges) == set(G.edges)
    assert back.is_directed()
    for n, d in G.nodes(data=True):
        assert back.nodes[n] == d
        assert isinstance(back.nodes[n]["visits"], int) and isinstance(back.nodes[n]["loss"], float)
    for u, v, d in G.edges(data=True):
        assert back.edges[u, v] == d
    assert json.loads(back.graph["note"]) == {"a": [1, 2]}

    path = to_json(G, tmp_path / "g.json")
    again = read_json(path)
    assert dict(again.nodes(data=True)) == dict(G.nodes(data=True))
    assert {(u, v): d for u, v, d in again.edges(data=True)} == {
        (u, v): d for u, v, d in G.edges(data=True)}
    # networkx reads the same file with its own node-link reader
    nxg = nx.node_link_graph(json.loads(path.read_text()), directed=True, multigraph=False,
                             edges="edges")
    assert set(nxg.edges) == set(G.edges)


def test_drawing_writes_a_png(trajectories, tmp_path):
    import matplotlib.image

    G = transition_graph(toy.Staircase(A), trajectories, every=EVERY)
    path = draw_transition_graph(G, tmp_path / "g.png", title="staircase")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # not a blank canvas
    empty = draw_transition_graph(nx.DiGraph(), tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_staircase_critical_points_have_the_stated_index():
    """The toy's own ground truth: index = #zeros (Hessian diag a_i (3 x_i^2 - 1))."""
    p = toy.Staircase(A)
    for s in itertools.product((-1, 0, 1), repeat=3):
        H = p.hessian(np.array(s, dtype=float))
        assert int(np.sum(np.linalg.eigvalsh(H) < 0)) == s.count(0)
        assert np.linalg.norm(p.gradient(np.array(s, dtype=float))) == 0.0

"""Saddle-to-saddle dynamics: the graph of critical points gradient descent lingers near.

Gradient descent from small or unlucky initialisations does not go straight to a minimum: it
passes close to saddles, lingers there (the gradient is small, the loss curve shows a
*plateau*), escapes along an unstable direction (at the rate ``log(eps/delta)/log lambda`` of
docs/theory.md §8) and moves on to a lower saddle.  docs/theory.md §4 reports this for the ReLU network
(runs that pass within 1% of the layer-1 and layer-2 loss values before converging).

:func:`transition_graph` turns recorded trajectories into a :class:`networkx.DiGraph`: one
node per critical point (or loss layer) where some trajectory had a plateau, one edge per
observed transition, with counts.  :func:`record_trajectories` records batched GD orbits;
:func:`detect_plateaus` exposes the plateaus themselves; :func:`to_graphml`,
:func:`to_json` / :func:`read_json` and :func:`draw_transition_graph` export the graph.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import positive_float, positive_int
from ._results import to_jsonable
from .errors import ShapeError
from .identify import critical_values as ident_values
from .identify import identify_limits
from .orbits import step_sizes, trajectories

__all__ = [
    "record_trajectories",
    "detect_plateaus",
    "Plateau",
    "transition_graph",
    "to_graphml",
    "read_graphml",
    "to_json",
    "read_json",
    "draw_transition_graph",
]


# ---------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------
def record_trajectories(problem: Any, step: float, theta0: Any, n_steps: int,
                        every: int = 1) -> np.ndarray:
    """Run batched gradient descent and keep every ``every``-th iterate.

    Parameters
    ----------
    problem : Problem
        Needs ``dim`` and a batched ``gradient``.
    step : float or callable
        Step size ``gamma`` of ``theta <- theta - gamma G(theta)``, or a schedule ``k -> gamma_k``.
    theta0 : array (d,) or (R, d)
        Initial point(s).
    n_steps : int
        Number of GD steps.
    every : int
        Record iterates ``0, every, 2 every, ...`` (up to ``n_steps``).

    Returns
    -------
    ndarray
        ``(T, d)`` for one initial point, ``(R, T, d)`` for a batch, ``T = n_steps // every + 1``;
        record ``t`` is the iterate after ``t * every`` steps.  Orbits that overflow carry
        NaN/inf from then on (they never form plateaus).

    Notes
    -----
    Memory ``8 R T d`` bytes; time ``n_steps`` batched gradient evaluations.
    """
    from ._validation import as_batch

    d = int(problem.dim)
    if not callable(step):
        step = positive_float(step, "step")
    X, single = as_batch(theta0, d, name="theta0")
    gamma = step_sizes(step, n_steps)

    def gd(Y: np.ndarray, k: int) -> np.ndarray:
        return Y - gamma(k) * np.asarray(problem.gradient(Y), dtype=float).reshape(Y.shape)

    out = trajectories(gd, X, n_steps, every=every, nonautonomous=True, allow_nonfinite=True)
    return out[0] if single else out


# ---------------------------------------------------------------------------------------
# plateaus and their identification
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plateau:
    """A stretch of at least ``min_plateau`` consecutive records with ``||G|| <= grad_tol``.

    ``start``/``end`` are record indices (``end`` exclusive); ``point`` is the record with
    the smallest gradient norm in the stretch (the closest approach to the critical point),
    ``grad_norm`` that norm, ``loss`` the loss there.  ``node``, ``kind``, ``node_loss``,
    ``layer``, ``identified_by`` say which critical point (or loss layer) it was attributed
    to and how (``"classify"``, ``"critical_values"``, ``"critical_point"`` or ``"none"``).
    """

    run: int
    start: int
    end: int
    point: np.ndarray
    grad_norm: float
    loss: float
    node: str
    kind: str
    node_loss: float
    layer: int | None
    identified_by: str
    index_hint: int | None = None
    cp_theta: np.ndarray | None = None


def detect_plateaus(problem: Any, trajectories: Any, *, grad_tol: float = 1e-3,
                    min_plateau: int = 5, match_tol: float = 1e-2,
                    loss_tol: float | None = None) -> list[Plateau]:
    """Find and identify the plateaus of recorded trajectories.

    A plateau is a maximal stretch of at least ``min_plateau`` consecutive records with
    ``||G(theta_t)|| <= grad_tol``.  It is attributed to a critical point by, in order:

    1. ``problem.classify(point)`` when it exists and does not answer ``"not_critical"``;
    2. the loss layer: the nearest value of ``problem.critical_values()`` (a sequence, or a
       mapping name -> value) within ``loss_tol`` (default: a tenth of the smallest gap
       between distinct values); node name ``"layer j"`` (``"zero loss"`` for the value 0, or
       the mapping's key), kind the
       most common kind among the listed critical points with that loss (else
       ``"unknown"``);
    3. the nearest entry of ``problem.critical_points()`` within ``match_tol``;
    4. otherwise a node ``"unidentified L=<loss>"`` of kind ``"unknown"``.

    Parameters
    ----------
    trajectories : array (T, d) or (R, T, d)
    grad_tol, min_plateau, match_tol, loss_tol : see above.

    Returns
    -------
    list of Plateau
        Sorted by run, then time.

    Notes
    -----
    One batched gradient evaluation of all ``R T`` records; identification costs one
    ``classify`` call per plateau.
    """
    d = int(problem.dim)
    Y = np.asarray(trajectories, dtype=float)
    if Y.ndim == 2:
        Y = Y[None]
    if Y.ndim != 3 or Y.shape[2] != d:
        raise ShapeError(f"`trajectories` must have shape (T, {d}) or (R, T, {d}), got "
                         f"{np.asarray(trajectories).shape}")
    grad_tol = positive_float(grad_tol, "grad_tol")
    min_plateau = positive_int(min_plateau, "min_plateau")
    match_tol = positive_float(match_tol, "match_tol", allow_zero=True)
    R, T, _ = Y.shape
    flat = Y.reshape(-1, d)
    gn = np.full(R * T, np.inf)
    fin = np.isfinite(flat).all(axis=1)
    with np.errstate(all="ignore"):
        if fin.any():
            G = np.asarray(problem.gradient(flat[fin]), dtype=float).reshape(-1, d)
            gn[fin] = np.linalg.norm(G, axis=1)
    gn = np.where(np.isfinite(gn), gn, np.inf).reshape(R, T)
    small = np.zeros((R, T + 2), dtype=np.int8)
    small[:, 1:-1] = gn <= grad_tol
    dif = np.diff(small, axis=1)
    sr, sc = np.nonzero(dif == 1)   # starts (row-major order: by run, then time)
    _, ec = np.nonzero(dif == -1)  # exclusive ends, paired with starts
    keep = (ec - sc) >= min_plateau
    sr, sc, ec = sr[keep], sc[keep], ec[keep]
    if sr.size == 0:
        return []
    # representative: record of least gradient norm within each plateau
    best = np.array([sc[i] + int(np.argmin(gn[sr[i], sc[i]:ec[i]])) for i in range(sr.size)])
    P = Y[sr, best]
    with np.errstate(all="ignore"):
        L = np.asarray(problem.loss(P), dtype=float).reshape(-1)
    ident = identify_limits(problem, P, match_tol=match_tol, use_layers=True, loss_tol=loss_tol,
                            certify=False)
    cps = list(problem.critical_points()) if callable(getattr(problem, "critical_points", None)) else []
    cv = ident_values(problem)
    out = []
    for i in range(sr.size):
        via, j = ident.via[i], int(ident.cp_index[i])
        if via == "none":
            node, kind, node_loss = f"unidentified L={L[i]:.6g}", "unknown", float(L[i])
        elif via == "critical_point":
            node, kind, node_loss = ident.label[i], ident.kind[i], float(cps[j].loss)
        elif via == "critical_values":
            node, kind, node_loss = ident.label[i], ident.kind[i], float(cv[ident.layer[i]])
        else:  # classify
            node, kind = ident.label[i], ident.kind[i]
            node_loss = float(problem.classify(P[i]).loss)
        out.append(Plateau(
            run=int(sr[i]), start=int(sc[i]), end=int(ec[i]), point=P[i],
            grad_norm=float(gn[sr[i], best[i]]), loss=float(L[i]), node=str(node), kind=str(kind),
            node_loss=node_loss, layer=None if ident.layer[i] < 0 else int(ident.layer[i]),
            identified_by=str(via),
            index_hint=None if ident.info_index[i] < 0 else int(ident.info_index[i]),
            cp_theta=None if j < 0 else np.asarray(cps[j].theta, dtype=float)))
    return out


def _morse_index(problem: Any, theta: np.ndarray, index_tol: float) -> int | None:
    """Number of Hessian eigenvalues below ``-index_tol * max(1, max |eig|)``; None: no Hessian."""
    h = getattr(problem, "hessian", None)
    if not callable(h):
        return None
    try:
        H = np.asarray(h(theta), dtype=float)
        ev = np.linalg.eigvalsh(0.5 * (H + H.T))
    except Exception:  # noqa: BLE001 - no Hessian there (non-smooth point): index unknown
        return None
    if not np.all(np.isfinite(ev)):
        return None
    return int(np.count_nonzero(ev < -index_tol * max(1.0, float(np.max(np.abs(ev))))))


# ---------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------
def transition_graph(
    problem: Any,
    trajectories_or_estimate: Any,
    *,
    grad_tol: float = 1e-3,
    min_plateau: int = 5,
    match_tol: float = 1e-2,
    loss_tol: float | None = None,
    index_tol: float = 1e-3,
    every: int | None = None,
    max_runs: int = 200,
):
    """Directed graph of the critical points GD trajectories linger near, and the transitions.

    Parameters
    ----------
    problem : Problem
    trajectories_or_estimate : array or StableSetEstimate
        Recorded iterates ``(T, d)`` or ``(R, T, d)`` (see :func:`record_trajectories`), or a
        :class:`~csm.stable_sets.StableSetEstimate`: then its first ``max_runs``
        initialisations are rerun with its step for as many steps as the slowest of them
        used, recording every ``every``-th iterate (default: about 1,000 records per run).
    grad_tol, min_plateau, match_tol, loss_tol :
        Plateau detection and identification, see :func:`detect_plateaus`.  ``min_plateau``
        counts *records*, so it means ``min_plateau * every`` GD steps.
    index_tol : float
        The index of a node is the number of Hessian eigenvalues below
        ``-index_tol * max(1, max|eig|)`` at the listed critical point (when matched to one)
        or at the plateau record with the smallest gradient norm; ``classify`` may supply it
        as ``info["index"]``.  Omitted where the problem has no Hessian there.
    every : int, optional
        Records per GD step of the given trajectories (``1`` for arrays unless stated; for
        an estimate, the recording stride).  Used to express durations in GD steps.
    max_runs : int
        Runs taken from an estimate.

    Returns
    -------
    networkx.DiGraph
        Node ids are labels.  Node attributes: ``kind``, ``loss`` (the critical value),
        ``layer`` and ``index`` (when known), ``visits`` (number of visits: consecutive
        plateaus at the same node count once), ``runs`` (trajectories that visited),
        ``mean_duration`` (GD steps per visit), ``identified_by``.  Edge attributes:
        ``count`` (observed transitions), ``mean_transit`` (GD steps from leaving one plateau
        to reaching the next).  Graph attributes: ``problem``, ``grad_tol``, ``min_plateau``,
        ``every``, ``n_trajectories``.

    Examples
    --------
    >>> x0 = 1e-6 * rng.standard_normal((20, 3))                           # doctest: +SKIP
    >>> Y = record_trajectories(problem, 0.1, x0, 800)                       # doctest: +SKIP
    >>> G = transition_graph(problem, Y)                                     # doctest: +SKIP
    >>> sorted(G.nodes(data="loss"), key=lambda t: -t[1])                    # doctest: +SKIP

    See ``docs/stable-sets.md`` for a worked example (the staircase loss).
    """
    import networkx as nx

    from .stable_sets import StableSetEstimate

    if isinstance(trajectories_or_estimate, StableSetEstimate):
        est = trajectories_or_estimate
        max_runs = positive_int(max_runs, "max_runs")
        theta0 = est.arrays["theta0"][:max_runs]
        n_steps = int(np.max(est.arrays["steps"][:max_runs]))
        if every is None:
            every = max(1, math.ceil(n_steps / 1000))
        Y = record_trajectories(problem, est.step, theta0, n_steps, every=every)
    else:
        Y = np.asarray(trajectories_or_estimate, dtype=float)
        if Y.ndim == 2:
            Y = Y[None]
        if every is None:
            every = 1
    every = positive_int(every, "every")
    index_tol = positive_float(index_tol, "index_tol", allow_zero=True)
    plateaus = detect_plateaus(problem, Y, grad_tol=grad_tol, min_plateau=min_plateau,
                               match_tol=match_tol, loss_tol=loss_tol)

    G = nx.DiGraph(problem=str(getattr(problem, "name", type(problem).__name__)),
                   grad_tol=float(grad_tol), min_plateau=int(min_plateau), every=int(every),
                   n_trajectories=int(Y.shape[0]))
    # merge consecutive plateaus of a run at the same node into one visit
    visits: list[list[Any]] = []  # [run, node, start, end, plateau with least gradient]
    for p in plateaus:
        if visits and visits[-1][0] == p.run and visits[-1][1] == p.node:
            v = visits[-1]
            v[3] = p.end
            if p.grad_norm < v[4].grad_norm:
                v[4] = p
        else:
            visits.append([p.run, p.node, p.start, p.end, p])
    node_best: dict[str, Plateau] = {}
    node_runs: dict[str, set[int]] = {}
    node_dur: dict[str, list[int]] = {}
    for run, node, start, end, p in visits:
        if node not in node_best or p.grad_norm < node_best[node].grad_norm:
            node_best[node] = p
        node_runs.setdefault(node, set()).add(run)
        node_dur.setdefault(node, []).append((end - start) * every)
    for node, p in node_best.items():
        attrs: dict[str, Any] = {"kind": p.kind, "loss": float(p.node_loss),
                                 "identified_by": p.identified_by}
        if p.layer is not None:
            attrs["layer"] = int(p.layer)
        idx = p.index_hint
        if idx is None:
            idx = _morse_index(problem, p.cp_theta if p.cp_theta is not None else p.point,
                               index_tol)
        if idx is not None:
            attrs["index"] = int(idx)
        attrs["visits"] = len(node_dur[node])
        attrs["runs"] = len(node_runs[node])
        attrs["mean_duration"] = float(np.mean(node_dur[node]))
        G.add_node(node, **attrs)
    transit: dict[tuple[str, str], list[int]] = {}
    for a, b in zip(visits[:-1], visits[1:]):
        if a[0] != b[0]:
            continue
        transit.setdefault((a[1], b[1]), []).append((b[2] - a[3]) * every)
    for (u, v), ts in transit.items():
        G.add_edge(u, v, count=len(ts), mean_transit=float(np.mean(ts)))
    return G


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------
def _scalar(v: Any) -> Any:
    """A GraphML-safe scalar (None -> dropped by the caller; containers -> JSON text)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, str):
        return v
    return json.dumps(to_jsonable(v))


def to_graphml(G: Any, path: str | Path) -> Path:
    """Write ``G`` as GraphML (attributes: None dropped, containers as JSON strings)."""
    import networkx as nx

    H = G.__class__()
    H.graph.update({k: _scalar(v) for k, v in G.graph.items() if v is not None})
    for n, data in G.nodes(data=True):
        H.add_node(n, **{k: _scalar(v) for k, v in data.items() if v is not None})
    for u, v, data in G.edges(data=True):
        H.add_edge(u, v, **{k: _scalar(x) for k, x in data.items() if x is not None})
    path = Path(path)
    nx.write_graphml(H, path)
    return path


def read_graphml(path: str | Path):
    """Read a graph written by :func:`to_graphml` (a DiGraph with typed attributes)."""
    import networkx as nx

    return nx.read_graphml(Path(path))


def to_json(G: Any, path: str | Path) -> Path:
    """Write ``G`` as node-link JSON (``{"directed", "multigraph", "graph", "nodes", "edges"}``).

    The layout is that of ``networkx.node_link_data(G, edges="edges")``, so
    ``networkx.node_link_graph(data, edges="edges")`` reads it too.
    """
    data = {
        "directed": G.is_directed(),
        "multigraph": G.is_multigraph(),
        "graph": to_jsonable(dict(G.graph)),
        "nodes": [{"id": n, **to_jsonable(dict(d))} for n, d in G.nodes(data=True)],
        "edges": [{"source": u, "target": v, **to_jsonable(dict(d))}
                  for u, v, d in G.edges(data=True)],
    }
    path = Path(path)
    path.write_text(json.dumps(data, indent=2))
    return path


def read_json(path: str | Path):
    """Read a graph written by :func:`to_json`."""
    import networkx as nx

    data = json.loads(Path(path).read_text())
    G = nx.DiGraph() if data.get("directed", True) else nx.Graph()
    G.graph.update(data.get("graph", {}))
    for nd in data["nodes"]:
        nd = dict(nd)
        G.add_node(nd.pop("id"), **nd)
    for ed in data.get("edges", data.get("links", [])):
        ed = dict(ed)
        G.add_edge(ed.pop("source"), ed.pop("target"), **ed)
    return G


_KIND_COLOURS = {
    "global_minimum": "#2ca02c",
    "local_minimum": "#98df8a",
    "strict_saddle": "#ff7f0e",
    "saddle": "#d62728",
    "local_maximum": "#9467bd",
}


def draw_transition_graph(G: Any, path: str | Path, *, title: str | None = None,
                          figsize: tuple[float, float] = (8.0, 6.0), dpi: int = 120) -> Path:
    """Draw the transition graph to a PNG, loss levels from top (high) to bottom (low).

    Nodes with the same loss (to 6 significant digits) share a row; their size grows with
    ``visits`` and their colour shows ``kind``; edge width grows with ``count``.  Uses the
    Agg canvas directly (no pyplot, no display needed).
    """
    from .plotting import new_figure

    fig = new_figure(*figsize, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    nodes = list(G.nodes(data=True))
    levels = sorted({float(f"{float(d.get('loss', np.nan)):.6g}") for _, d in nodes},
                    key=lambda v: (-v if np.isfinite(v) else math.inf))
    rank = {v: i for i, v in enumerate(levels)}
    pos: dict[Any, tuple[float, float]] = {}
    for v in levels:
        row = sorted((n for n, d in nodes if float(f"{float(d.get('loss', np.nan)):.6g}") == v
                      or (np.isnan(v) and np.isnan(float(d.get("loss", np.nan))))), key=str)
        for j, n in enumerate(row):
            pos[n] = (j - (len(row) - 1) / 2.0, -float(rank[v]))
    vmax = max([d.get("visits", 1) for _, d in nodes] + [1])
    cmax = max([d.get("count", 1) for _, _, d in G.edges(data=True)] + [1])
    for u, v, d in G.edges(data=True):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", lw=0.8 + 3.0 * d.get("count", 1) / cmax,
                                    color="0.4", shrinkA=14, shrinkB=14))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, str(d.get("count", "")), fontsize=8,
                color="0.25", ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for n, d in nodes:
        x, y = pos[n]
        ax.scatter([x], [y], s=150 + 650 * d.get("visits", 1) / vmax,
                   c=_KIND_COLOURS.get(d.get("kind"), "#7f7f7f"), edgecolors="k", zorder=3)
        extra = f"\nL={d.get('loss', float('nan')):.4g}"
        if "index" in d:
            extra += f", index {d['index']}"
        ax.annotate(f"{n}{extra}", (x, y), xytext=(12, 8), textcoords="offset points",
                    fontsize=8)
    ax.set_yticks([-float(i) for i in range(len(levels))])
    ax.set_yticklabels([f"{v:.4g}" for v in levels])
    ax.set_ylabel("loss level")
    ax.set_xticks([])
    xs = [p[0] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.5)
    ax.set_ylim(-max(len(levels), 1) + 0.5, 0.5)
    ax.set_title(title or f"saddle-to-saddle transitions [{G.graph.get('problem', '')}]")
    path = Path(path)
    fig.savefig(path, format="png")
    return path

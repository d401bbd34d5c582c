"""Differentiable regions and genuine differentiable local minima of shallow ReLU-like networks.

Implements Liu, "Understanding global loss landscape of one-hidden-layer ReLU networks"
(arXiv 2002.04763), §2--§3, for one hidden layer, scalar output, ReLU-like activation
(``relu``, ``leaky_relu:a``, ``linear``).

An *activation pattern* ``s in {+1, -1}^{N x m}`` fixes the side of every pre-activation
``z_ij = w_j . x~_i`` (``x~_i = (x_i, 1)``); the open *differentiable region* of ``s`` is
``{theta : s_ij z_ij > 0 for all i, j}``.  There the network is linear in the *product variables*
``p_j = v_j w_j`` (``v_j`` the output weight):

    N_theta(x_i) = sum_j alpha(s_ij) x~_i . p_j + c,     alpha(+) = alpha_+, alpha(-) = alpha_-,

so the loss is a convex quadratic in ``(p, c)`` and its minimum over the region's image is a
linear least-squares problem (:func:`region_minimum`).  The minimum is **genuine** when some
parameter in the open region attains it: ``p_j = v_j w_j`` with ``w_j`` in the open cone
``K_j = {u : s_ij x~_i . u > 0}``, i.e. ``p_j in K_j``, ``p_j in -K_j`` or ``p_j = 0`` (then
``v_j = 0``).
Every genuine minimum is a local minimum of ``L`` (the region is open and ``L`` is at least the
least-squares value on it).  When the least-squares solution is not unique the affine set of
minimisers is searched by LPs (one per sign choice ``p_j in K_j / -K_j / {0}``).
:func:`differentiable_local_minima` enumerates every pattern (cells of the data arrangement per
neuron, neurons unordered) for small data.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog

import csm

from .cones import _feasible, cells, unique_hyperplanes

__all__ = ["RegionMinimum", "activation_pattern", "region_minimum", "differentiable_local_minima"]


@dataclass(frozen=True, eq=False)
class RegionMinimum:
    """The least-squares minimum of one differentiable region (Liu, arXiv 2002.04763).

    Attributes
    ----------
    pattern : ndarray (N, m) of bool
        True where neuron ``j`` is active on datum ``i``.
    nonempty : bool
        Whether the open region is non-empty (each neuron's cone ``K_j`` is).
    loss : float
        The region's least-squares value (NaN when empty).
    products : ndarray (N, D)
        The realised minimiser ``p_j = v_j (W_1[j], b_1[j])`` when genuine (zeros otherwise).
    bias : float
        The output bias ``c`` of a minimiser.
    unique : bool
        Whether the least-squares minimiser is unique.
    genuine : bool
        Whether a parameter inside the open region attains the minimum.
    theta : ndarray (d,) or None
        Such a parameter (balanced: ``|v_j| = |w_j|``), when genuine.
    """

    pattern: np.ndarray
    nonempty: bool
    loss: float
    products: np.ndarray
    bias: float
    unique: bool
    genuine: bool
    theta: np.ndarray | None

    def __repr__(self) -> str:
        return (f"RegionMinimum(loss={self.loss:.6g}, genuine={self.genuine}, unique={self.unique}, "
                f"pattern={self.pattern.astype(int).tolist()})")


def _check(problem: Any, what: str) -> tuple[float, float]:
    rl = problem.activation.relu_like
    if not problem.shallow or rl is None or problem.widths[-1] != 1:
        raise csm.InputError(
            f"{what} (arXiv 2002.04763) needs one hidden layer, scalar output and a ReLU-like "
            f"activation ('relu', 'leaky_relu:a', 'linear'), got widths={problem.widths} and "
            f"activation={problem.activation.name!r}")
    return rl


def _xt(problem: Any) -> np.ndarray:
    return np.hstack([problem.inputs, np.ones((problem.m, 1))])


def activation_pattern(problem: Any, T: np.ndarray, *, tol: float = 0.0) -> np.ndarray:
    """Signs ``(B, N, m)`` (int8) of the hidden pre-activations: ``+1`` if ``z > tol``, ``-1`` if
    ``z < -tol``, ``0`` otherwise (a datum on the kink: not a differentiable region)."""
    if not problem.shallow:
        raise csm.InputError(
            f"`activation_pattern` needs one hidden layer, widths are {problem.widths}")
    d, N = problem.widths[0], problem.widths[1]
    W = T[:, :N * d].reshape(-1, N, d)
    b = T[:, N * d:N * d + N]
    Z = np.einsum("bjd,md->bjm", W, problem.inputs) + b[:, :, None]
    return (np.sign(Z) * (np.abs(Z) > tol)).astype(np.int8)


def _as_pattern(problem: Any, pattern: Any) -> np.ndarray:
    N, m = problem.widths[1], problem.m
    P = np.asarray(pattern)
    if P.shape != (N, m):
        raise csm.ShapeError(f"`pattern` must have shape (N, m) = ({N}, {m}), got {P.shape}")
    if P.dtype == bool:
        return np.where(P, 1.0, -1.0)
    if not np.all(np.isin(P, (-1, 0, 1))):
        raise csm.InputError("`pattern` must be boolean or hold signs +1/-1, got values "
                             f"{np.unique(P).tolist()}")
    if np.any(P == 0):
        j, i = np.argwhere(P == 0)[0]
        raise csm.InputError(f"`pattern` puts datum {i} on the kink of neuron {j} (entry [{j}, {i}] "
                             "= 0): not a differentiable region; give signs +1/-1")
    return P.astype(float)


def _realise(problem: Any, S: np.ndarray, p: np.ndarray, c: float, interior: np.ndarray,
             sgn: np.ndarray) -> np.ndarray:
    d, N, _ = problem.widths
    W1, b1, v = np.zeros((N, d)), np.zeros(N), np.zeros((1, N))
    for j in range(N):
        n = float(np.linalg.norm(p[j]))
        if sgn[j] == 0:
            w = interior[j] / np.linalg.norm(interior[j])
        else:
            w, v[0, j] = sgn[j] * p[j] / math.sqrt(n), sgn[j] * math.sqrt(n)
        W1[j], b1[j] = w[:d], w[d]
    return problem.pack([(W1, b1), (v, np.array([c]))])


def _signs(S: np.ndarray, Xt: np.ndarray, p: np.ndarray, tol: float) -> np.ndarray | None:
    """Per neuron +1 (p_j in K_j), -1 (in -K_j), 0 (p_j = 0), or None when some p_j is in none."""
    out = np.zeros(S.shape[0])
    nx = np.linalg.norm(Xt, axis=1)
    for j in range(S.shape[0]):
        n = float(np.linalg.norm(p[j]))
        if n <= tol:
            continue
        t = S[j] * (Xt @ p[j]) / (nx * n)
        if np.all(t > tol):
            out[j] = 1.0
        elif np.all(t < -tol):
            out[j] = -1.0
        else:
            return None
    return out


def _lp(Phi: np.ndarray, fit: np.ndarray, cons: list, choice: tuple, D: int, tol: float
        ) -> np.ndarray | None:
    """Maximise the margin ``delta`` over ``{Phi beta = fit}`` with ``s_g p_g in K_g`` (``s_g = +-1``)
    or ``p_g = 0`` (``s_g = 0``) for the constrained blocks ``cons = [(g, S_g / |x~|-scaled)]``."""
    m, n = Phi.shape
    rows, eq = [], [np.hstack([Phi, np.zeros((m, 1))])]
    for (g, C), s in zip(cons, choice):
        if s:
            blk = np.zeros((C.shape[0], n + 1))
            blk[:, g * D:(g + 1) * D] = -s * C
            blk[:, -1] = 1.0
            rows.append(blk)
        else:
            blk = np.zeros((D, n + 1))
            blk[:, g * D:(g + 1) * D] = np.eye(D)
            eq.append(blk)
    A_eq = np.vstack(eq)
    kw = {"A_ub": np.vstack(rows), "b_ub": np.zeros(sum(r.shape[0] for r in rows))} if rows else {}
    res = linprog(np.r_[np.zeros(n), -1.0], A_eq=A_eq, b_eq=np.r_[fit, np.zeros(A_eq.shape[0] - m)],
                  bounds=[(None, None)] * n + [(None, 1.0)], method="highs", **kw)
    return res.x[:n] if res.status == 0 and -res.fun > tol else None


def _on_line(beta: np.ndarray, n: np.ndarray, cons: list, choice: tuple, D: int, tol: float
             ) -> np.ndarray | None:
    """:func:`_lp` when the minimisers form a line ``beta + t n``: interval arithmetic in ``t``."""
    lo, hi, pts = -np.inf, np.inf, []
    for (g, C), s in zip(cons, choice):
        p0, ng = beta[g * D:(g + 1) * D], n[g * D:(g + 1) * D]
        if s:
            a, b = s * (C @ p0), s * (C @ ng)
            eps = tol * max(1.0, float(np.abs(p0).max()))
            if np.any((np.abs(b) <= 1e-14) & (a <= eps)):
                return None
            pos, neg = b > 1e-14, b < -1e-14
            if pos.any():
                lo = max(lo, float(np.max((eps - a[pos]) / b[pos])))
            if neg.any():
                hi = min(hi, float(np.min((eps - a[neg]) / b[neg])))
        else:
            nn = float(ng @ ng)
            t = -float(p0 @ ng) / nn if nn > 1e-24 else 0.0
            if np.linalg.norm(p0 + t * ng) > tol:
                return None
            pts.append(t)
    if pts:
        t = pts[0]
        if any(abs(x - t) > tol for x in pts) or not lo < t < hi:
            return None
    elif not lo < hi:
        return None
    else:
        t = 0.5 * (lo + hi) if np.isfinite(lo) and np.isfinite(hi) else (
            lo + 1.0 if np.isfinite(lo) else (hi - 1.0 if np.isfinite(hi) else 0.0))
    out = beta + t * n
    for (g, C), s in zip(cons, choice):
        p = out[g * D:(g + 1) * D]
        if s and not np.all(s * (C @ p) > tol * max(1.0, float(np.linalg.norm(p)))):
            return None
    return out


def _region(problem: Any, S: np.ndarray, interior: np.ndarray, tol: float) -> RegionMinimum:
    """Least squares in the product variables of the groups of neurons sharing a pattern (a
    group of two or more realises any total product: ``K - K = R^D`` for an open cone ``K``),
    then the genuineness test on the singletons (fixed blocks directly, free ones by LP)."""
    am, ap = problem.activation.relu_like
    Xt = _xt(problem)
    N, m = S.shape
    D = Xt.shape[1]
    y = problem.targets[:, 0]
    _, first, grp = np.unique(S, axis=0, return_index=True, return_inverse=True)
    grp = grp.ravel()
    G = first.size
    size = np.bincount(grp, minlength=G)
    A = np.where(S[first].T > 0, ap, am)  # (m, G)
    Phi = np.hstack([(A[:, :, None] * Xt[:, None, :]).reshape(m, G * D), np.ones((m, 1))])
    _, sv, Vt = np.linalg.svd(Phi, full_matrices=False)
    rank = int(np.sum(sv > sv[0] * 1e-12)) if sv.size and sv[0] > 0 else 0
    beta = np.linalg.lstsq(Phi, y, rcond=None)[0]
    fit = Phi @ beta
    loss = float(np.mean((fit - y) ** 2))
    unique = rank == Phi.shape[1] and G == N
    null = Vt[rank:].T  # (G D + 1, n_null)
    nx = np.linalg.norm(Xt, axis=1)
    P = beta[:-1].reshape(G, D)

    def not_genuine() -> RegionMinimum:
        return RegionMinimum(S > 0, True, loss, np.zeros((N, D)), float(beta[-1]), unique, False,
                             None)

    sg = np.zeros(G)  # chosen sign per group (0: p_g = 0 or unconstrained)
    free = []
    for g in range(G):
        if size[g] > 1 or not np.any(A[:, g]):
            continue  # unconstrained: a group, or a neuron whose product does not act
        fixed = not null.size or np.abs(null[g * D:(g + 1) * D]).max() <= 1e-12
        s = _signs(S[first[g]][None], Xt, P[g][None], tol)
        if fixed and s is None:
            return not_genuine()
        if s is not None:
            sg[g] = s[0]
        if not fixed:
            free.append(g)
    if free and _signs(S[first[free]], Xt, P[free], tol) is None:
        cons = [(g, S[first[g]][:, None] * Xt / nx[:, None]) for g in free]
        found = None
        for choice in itertools.product((1.0, -1.0, 0.0), repeat=len(free)):
            if null.shape[1] == 1:
                found = _on_line(beta, null[:, 0], cons, choice, D, tol)
            else:
                found = _lp(Phi, fit, cons, choice, D, tol)
            if found is not None:
                beta, sg[free] = found, choice
                break
        if found is None:
            return not_genuine()
    P = beta[:-1].reshape(G, D)
    p, sgn = np.zeros((N, D)), np.zeros(N)
    for g in range(G):
        mem = np.nonzero(grp == g)[0]
        s = _signs(S[first[g]][None], Xt, P[g][None], tol)
        if size[g] == 1 or s is not None:
            sgn[mem[0]] = sg[g] if size[g] == 1 else s[0]
            p[mem[0]] = P[g] if sgn[mem[0]] else 0.0
            continue
        u0 = interior[mem[0]] / np.linalg.norm(interior[mem[0]])
        marg = S[first[g]] * (Xt @ u0)
        lam = 1.0 + max(0.0, float(np.max(-S[first[g]] * (Xt @ P[g]) / marg)))
        p[mem[0]], sgn[mem[0]] = P[g] + lam * u0, 1.0
        p[mem[1]], sgn[mem[1]] = -lam * u0, -1.0
    c = float(beta[-1])
    theta = _realise(problem, S, p, c, interior, sgn)
    return RegionMinimum(S > 0, True, loss, p, c, unique, True, theta)


def region_minimum(problem: Any, pattern: Any, *, tol: float = 1e-9) -> RegionMinimum:
    """The least-squares minimum of the differentiable region ``pattern`` and whether it is genuine.

    ``pattern``: ``(N, m)`` boolean (True = active) or signs ``+1/-1``, e.g. from
    ``problem.activation_pattern(theta)``.  ``tol``: margins and norms below it count as zero.
    """
    _check(problem, "`region_minimum`")
    S = _as_pattern(problem, pattern)
    Xt = _xt(problem)
    interior = np.zeros((S.shape[0], Xt.shape[1]))
    for j in range(S.shape[0]):
        u = _feasible(S[j][:, None] * Xt)
        if u is None:
            N, D = S.shape[0], Xt.shape[1]
            return RegionMinimum(S > 0, False, float("nan"), np.zeros((N, D)), 0.0, False, False, None)
        interior[j] = u
    return _region(problem, S, interior, tol)


def differentiable_local_minima(problem: Any, *, tol: float = 1e-9,
                                max_combinations: int = 20000) -> list[RegionMinimum]:
    """Every genuine differentiable local minimum (one per region), sorted by loss.

    Enumerates the cells of the arrangement ``{x~_i . u = 0}`` (the possible patterns of one
    neuron) and every unordered choice of ``N`` of them -- ``C(P + N - 1, N)`` least-squares
    problems for ``P`` cells; meant for small data (``m <= ~12``, ``N <= 3``).

    Raises :class:`csm.InputError` when that number exceeds ``max_combinations``.
    """
    _check(problem, "`differentiable_local_minima`")
    Xt = _xt(problem)
    U, idx, orient = unique_hyperplanes(Xt)
    cl = cells(U)
    pats = [(sig[idx] * orient, u) for sig, u in cl]
    N = problem.widths[1]
    P = len(pats)
    total = math.comb(P + N - 1, N)
    if total > max_combinations:
        raise csm.InputError(
            f"`max_combinations` = {max_combinations} is below the {total} activation patterns "
            f"({P} per neuron, N = {N}); raise it or use less data")
    out = []
    for combo in itertools.combinations_with_replacement(range(P), N):
        S = np.stack([pats[k][0] for k in combo])
        interior = np.stack([pats[k][1] for k in combo])
        r = _region(problem, S, interior, tol)
        if r.genuine:
            out.append(r)
    out.sort(key=lambda r: r.loss)
    return out

"""Cells of central hyperplane arrangements and linear programs over them.

The one-sided directional derivative of the loss of a ReLU-like network in the input weights
``u`` of a neuron is positively homogeneous and piecewise linear, with pieces on the cells of
the arrangement ``{u : x_i . u = 0}`` of the data on the neuron's kink (Wu, Simsek, Ged,
arXiv 2402.05626, §3); the differentiable regions of Liu (arXiv 2002.04763, §2) are products of
such cells.  This module enumerates the full-dimensional cells (each with a strictly interior
point) and solves the small linear programs over closed cells (scipy's HiGHS).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

import csm

__all__ = ["unique_hyperplanes", "cells", "iter_cells", "cell_lp", "TooManyCells"]


class TooManyCells(csm.CsmError):
    """The arrangement has more cells than the caller allowed."""


def unique_hyperplanes(Xh: np.ndarray, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct hyperplanes ``{u : x . u = 0}`` among the rows of ``Xh (K, D)`` (nonzero rows).

    Returns ``U (K', D)`` unit normals (first nonzero entry positive), ``index (K,)`` (row ->
    hyperplane) and ``orient (K,)`` (``x_i = |x_i| orient_i U[index_i]``).
    """
    K = Xh.shape[0]
    if K == 0:
        return np.zeros((0, Xh.shape[1])), np.zeros(0, dtype=int), np.zeros(0)
    nrm = np.linalg.norm(Xh, axis=1)
    Un = Xh / nrm[:, None]
    lead = np.argmax(np.abs(Un) > tol, axis=1)
    orient = np.sign(Un[np.arange(K), lead])
    Un = Un * orient[:, None]
    key = np.round(Un / (10 * tol), 0)
    _, first, index = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return Un[first], index.ravel(), orient


def _feasible(A: np.ndarray) -> np.ndarray | None:
    """A point ``u`` with ``A u >= 1`` (strict interior of ``{A u >= 0}``), or None."""
    res = linprog(np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(A.shape[0]),
                  bounds=[(None, None)] * A.shape[1], method="highs")
    return res.x if res.status == 0 else None


def cells(U: np.ndarray, max_cells: int = 4096) -> list[tuple[np.ndarray, np.ndarray]]:
    """Full-dimensional cells of the arrangement of hyperplanes with unit normals ``U (K, D)``.

    Returns ``[(sigma (K,) of +-1, u (D,) with sigma_k U_k . u > 0)]``.  In the plane the cells
    are the sectors between consecutive boundary rays; otherwise a depth-first search adds one
    hyperplane at a time and keeps the sign choices whose open cone is non-empty (an LP only
    when the parent's interior point does not already satisfy the new sign).

    Raises :class:`TooManyCells` beyond ``max_cells``.
    """
    K, D = U.shape
    if K == 0:
        u = np.zeros(D)
        u[0] = 1.0
        return [(np.zeros(0), u)]
    if D == 1:
        return [(np.sign(U[:, 0]), np.ones(1)), (-np.sign(U[:, 0]), -np.ones(1))]
    if D == 2:
        ang = np.arctan2(U[:, 0], -U[:, 1])  # direction of the ray perpendicular to each normal
        ang = np.unique(np.mod(np.concatenate([ang, ang + np.pi]), 2 * np.pi))
        mids = 0.5 * (ang + np.roll(ang, -1))
        mids[-1] += np.pi if ang.size > 1 else 0.0
        if ang.size == 1:  # cannot happen (rays come in pairs); kept for safety
            mids = np.array([ang[0] + np.pi / 2, ang[0] - np.pi / 2])
        pts = np.stack([np.cos(mids), np.sin(mids)], axis=1)
        out = [(np.sign(U @ p), p) for p in pts]
        return [(s, p) for s, p in out if np.all(s != 0)]
    return list(iter_cells(U, max_cells))


def iter_cells(U: np.ndarray, max_cells: int = 4096):
    """:func:`cells` as a generator (lazy depth-first search: stop early when one cell suffices)."""
    K, D = U.shape
    if K == 0 or D <= 2:
        yield from cells(U, max_cells)
        return
    count = 0
    stack = [(0, [], U[0].copy())]
    while stack:
        k, signs, p = stack.pop()
        if k == K:
            count += 1
            if count > max_cells:
                raise TooManyCells(f"the arrangement has more than {max_cells} cells")
            yield np.array(signs), p
            continue
        for s in (-1.0, 1.0):
            if s * (U[k] @ p) > 1e-12 * np.linalg.norm(p):
                q = p
            else:
                A = np.vstack([np.array(signs)[:, None] * U[:k], s * U[k]]) if k else s * U[k][None]
                q = _feasible(A)
                if q is None:
                    continue
            stack.append((k + 1, signs + [s], q))


def cell_lp(c: np.ndarray, A_cell: np.ndarray, A_eq: np.ndarray | None = None
            ) -> tuple[float, np.ndarray]:
    """``min c . u`` over ``{A_cell u >= 0, A_eq u = 0, |u|_inf <= 1}`` -> ``(value, u)``."""
    D = c.size
    kw = {}
    if A_cell.size:
        kw.update(A_ub=-A_cell, b_ub=np.zeros(A_cell.shape[0]))
    if A_eq is not None and A_eq.size:
        kw.update(A_eq=A_eq, b_eq=np.zeros(A_eq.shape[0]))
    res = linprog(c, bounds=[(-1.0, 1.0)] * D, method="highs", **kw)
    if res.status != 0:  # pragma: no cover - the feasible set always contains 0
        return 0.0, np.zeros(D)
    return float(res.fun), np.asarray(res.x, dtype=float)

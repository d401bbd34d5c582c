"""Directional stationarity and escape neurons of shallow ReLU-like networks.

Implements Wu, Simsek, Ged, "Loss landscape of shallow ReLU-like networks: stationary points,
saddle escape, and network embedding" (arXiv 2402.05626), §3 (stationarity) and §4 (escape
neurons, local minimality), for one hidden layer, scalar or vector output.

Notation (one hidden layer, ``D = d_in + 1``): neuron ``j`` has input weights
``w_j = (W_1[j], b_1[j])`` in ``R^D``, output weights ``a_j = W_2[:, j]`` in ``R^k``; ``c = b_2``;
``x~_i = (x_i, 1)``, ``z_ij = w_j . x~_i``, residuals ``r_i = N_theta(x_i) - y_i``,
``rho(z) = alpha_+ z`` (``z > 0``), ``alpha_- z`` (``z < 0``).  ``H_j = {i : z_ij = 0}`` (within the
tolerance) are the data on the kink of neuron ``j``.

**Directional stationarity** (§3): ``L'(theta; Delta) >= 0`` for every direction.  The one-sided
derivative splits over the blocks, so this holds iff ``sum_i r_i = 0``,
``sum_i r_i rho(z_ij) = 0`` and, for every neuron, the positively homogeneous piecewise-linear

    phi_j(u) = (2/m) a_j . psi_j(u),   psi_j(u) = sum_{i not in H_j} r_i rho'(z_ij) x~_i . u
                                                 + sum_{i in H_j} r_i rho(x~_i . u)

is ``>= 0``: on each cell of the arrangement ``{x~_i . u = 0, i in H_j}`` it is linear, and one LP per
cell decides (:mod:`csm_network.cones`).

**Escape neurons** (§4, as we read the definition): at a stationary point, neuron ``j`` is an
escape neuron when some ``u`` has ``a_j . psi_j(u) = 0`` (first order flat) but
``psi_j(u) != 0``; for ``a_j = 0`` this says ``psi_j`` is not identically zero.  The line
``w_j + t u``, ``a_j + t alpha``, ``c + t gamma`` has the exact one-sided expansion
``L + t^2/2 L'' + O(t^3)``; the direction reported is the best of ``alpha = -(S a_j + psi)/Q``
(``gamma = 0``) and the negative-curvature eigenvectors of the exact second-order form on the
witness cell (restricted to the flat subspace, kept when ``u`` stays in the closed cell).
``L'' < 0`` certifies that the point is not a local minimum (always so when ``a_j = 0``).  The
paper: no escape neuron => local minimum; scalar output: an escape neuron => not a local minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import csm

from .cones import TooManyCells, cell_lp, cells, iter_cells, unique_hyperplanes

__all__ = ["EscapeNeuron", "Stationarity", "stationarity", "line_derivatives", "special_points"]


@dataclass(frozen=True, eq=False)
class EscapeNeuron:
    """An escape neuron: its ``index``, a unit ``direction`` in parameter space (non-zero only on
    the neuron's own coordinates and the output bias) along which the loss is flat to first
    order, and the exact one-sided ``second_derivative`` ``d^2/dt^2 L(theta + t direction)`` at
    ``t = 0+``."""

    index: int
    direction: np.ndarray
    second_derivative: float


@dataclass(frozen=True, eq=False)
class Stationarity:
    """What :func:`stationarity` found (Wu, Simsek, Ged, arXiv 2402.05626).

    Attributes
    ----------
    stationary : bool or None
        Directional stationarity; None when an arrangement was too large to decide.
    escape_neurons : tuple of EscapeNeuron
    local_minimum : bool or None
        False when not stationary or a descent curve was found (``second_derivative < 0``);
        True when stationary with no escape neuron (the paper's theorem); None otherwise.
    tol : float
        The tolerance used: a pre-activation ``|z| <= tol max(1, |w_j| |x~_i|)`` is on the kink,
        an output weight with ``|a_j| <= tol`` is zero, and a first-order quantity is zero when
        ``<= tol * scale``.
    scale : float
        ``max(1, 2 mean_i |r_i| max_i |x~_i| max(1, max_j |a_j|))``.
    loss : float
    kinks : tuple of int
        Number of data on each neuron's kink.
    descent_direction : ndarray or None
        When not stationary: a unit direction with negative one-sided derivative ...
    directional_derivative : float or None
        ... and that derivative.
    """

    stationary: bool | None
    escape_neurons: tuple[EscapeNeuron, ...]
    local_minimum: bool | None
    tol: float
    scale: float
    loss: float
    kinks: tuple[int, ...]
    descent_direction: np.ndarray | None = None
    directional_derivative: float | None = None

    @property
    def escape_indices(self) -> list[int]:
        return [e.index for e in self.escape_neurons]

    def __repr__(self) -> str:
        return (f"Stationarity(stationary={self.stationary}, escape_neurons="
                f"{self.escape_indices}, local_minimum={self.local_minimum}, tol={self.tol:g})")


def _check(problem: Any) -> tuple[float, float]:
    rl = problem.activation.relu_like
    if not problem.shallow or rl is None:
        raise csm.InputError(
            f"stationarity analysis (arXiv 2402.05626) needs one hidden layer and a ReLU-like "
            f"activation ('relu', 'leaky_relu:a', 'linear'), got widths={problem.widths} and "
            f"activation={problem.activation.name!r}")
    return rl


def _parts(problem: Any, theta: np.ndarray):
    (W1, b1), (W2, b2) = problem.unpack(theta)
    Xt = np.hstack([problem.inputs, np.ones((problem.m, 1))])
    Wt = np.hstack([W1, b1[:, None]])  # (N, D)
    return Xt, Wt, W2, b2


def _kinks(Xt: np.ndarray, Wt: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    Z = Xt @ Wt.T  # (m, N)
    thr = tol * np.maximum(1.0, np.linalg.norm(Xt, axis=1)[:, None] * np.linalg.norm(Wt, axis=1))
    on = np.abs(Z) <= thr
    return np.where(on, 0.0, Z), on


def line_derivatives(problem: Any, theta: Any, delta: Any, *, tol: float = 0.0
                     ) -> tuple[float, float]:
    """Exact one-sided ``(L'(theta; delta), d^2/dt^2 L(theta + t delta) at t = 0+)``.

    One hidden layer, ReLU-like activation: for small ``t > 0`` every pre-activation stays on
    one linear piece (the side of ``z`` or, on the kink, of ``dz``), so ``L(theta + t delta)`` is a
    polynomial in ``t``.  Pre-activations with ``|z| <= tol max(1, |w| |x~|)`` count as on the kink.
    """
    am, ap = _check(problem)
    th = problem._point(theta)
    dl = problem._point(delta)
    Xt, Wt, W2, b2 = _parts(problem, th)
    _, dWt, dW2, db2 = _parts(problem, dl)
    Z, on = _kinks(Xt, Wt, tol)
    Zd = Xt @ dWt.T
    rho = np.where(Z > 0, ap, am) * Z
    side = np.where(on, Zd > 0, Z > 0)
    q = np.where(side, ap, am) * Zd
    R = rho @ W2.T + b2 - problem.targets
    d1 = rho @ dW2.T + q @ W2.T + db2
    d2 = q @ dW2.T
    m = problem.m
    return (float(2.0 / m * np.sum(R * d1)),
            float(2.0 / m * np.sum(d1 * d1) + 4.0 / m * np.sum(R * d2)))


def special_points(problem: Any) -> dict[str, np.ndarray]:
    """``"zero-neurons"`` (all hidden and output weights 0) and, for ``relu``, ``"all-dead"``
    (``W_1 = 0``, ``b_1 = -1``, output weights 0); output bias = mean target in both."""
    am, _ = _check(problem)
    d, N, k = problem.widths
    mean = problem.targets.mean(axis=0)
    out = {"zero-neurons": problem.pack([(np.zeros((N, d)), np.zeros(N)),
                                         (np.zeros((k, N)), mean)])}
    if am == 0.0:
        out["all-dead"] = problem.pack([(np.zeros((N, d)), -np.ones(N)), (np.zeros((k, N)), mean)])
    return out


def _direction(problem: Any, j: int, u: np.ndarray, alpha: np.ndarray,
               gamma: np.ndarray | None = None) -> np.ndarray:
    """Unit direction moving neuron ``j`` (``u``, ``alpha``) and the output bias (``gamma``)."""
    d, N, k = problem.widths
    W1, b1 = np.zeros((N, d)), np.zeros(N)
    W2 = np.zeros((k, N))
    W1[j], b1[j], W2[:, j] = u[:d], u[d], alpha
    v = problem.pack([(W1, b1), (W2, np.zeros(k) if gamma is None else gamma)])
    return v / np.linalg.norm(v)


def _interior_witness(Mc: np.ndarray, uc: np.ndarray, A_cell: np.ndarray, thr: float
                      ) -> tuple[float, np.ndarray | None]:
    """A unit ``u`` inside the open cell with ``|Mc u| > thr`` (None when ``Mc`` vanishes)."""
    u = uc / np.linalg.norm(uc)
    g = float(np.linalg.norm(Mc @ u))
    if g > thr:
        return g, u
    if np.abs(Mc).max() <= thr:
        return 0.0, None
    v = np.linalg.svd(Mc)[2][0]
    marg = float(np.min(A_cell @ u)) if A_cell.size else 1.0
    eps = 0.5 * marg / max(1.0, float(np.abs(A_cell @ v).max()) if A_cell.size else 1.0)
    w = u + eps * v
    w /= np.linalg.norm(w)
    g = float(np.linalg.norm(Mc @ w))
    return (g, w) if g > thr else (0.0, None)


def _eigen_candidates(Xt: np.ndarray, rho_j: np.ndarray, kap: np.ndarray, a: np.ndarray,
                      Mc: np.ndarray, A_cell: np.ndarray, ell: np.ndarray, m: int) -> list:
    """Directions ``(u, alpha, gamma)`` of negative curvature of the exact second-order form of
    the neuron's block and the output bias on one closed cell,
    ``v -> (2/m) sum_i |alpha rho_i + a kappa_i x~_i . u + gamma|^2 + (4/m) alpha . M u``,
    restricted to the first-order flat subspace ``ell . u = 0`` and kept when ``u`` (or ``-u``)
    lies in the closed cell."""
    D, k = Xt.shape[1], a.size
    n = D + 2 * k
    B = np.zeros((Xt.shape[0], k, n))
    B[:, :, :D] = a[None, :, None] * (kap[:, None] * Xt)[:, None, :]
    B[:, :, D:D + k] = rho_j[:, None, None] * np.eye(k)
    B[:, :, D + k:] = np.eye(k)
    Qm = 2.0 / m * np.einsum("ikp,ikq->pq", B, B)
    Qm[D:D + k, :D] += 2.0 / m * Mc
    Qm[:D, D:D + k] += 2.0 / m * Mc.T
    c = np.concatenate([ell, np.zeros(2 * k)])
    P = np.linalg.svd(c[None])[2][1:].T if np.any(c) else np.eye(n)
    w, Y = np.linalg.eigh(P.T @ Qm @ P)
    out = []
    for lam, y in zip(w, Y.T):
        if lam >= 0:
            break
        v = P @ y
        for s in (1.0, -1.0):
            u = s * v[:D]
            if np.linalg.norm(u) > 0 and (not A_cell.size or np.all(A_cell @ u >= -1e-12)):
                out.append((u, s * v[D:D + k], s * v[D + k:]))
    return out


def stationarity(problem: Any, theta: np.ndarray, *, tol: float = 1e-9,
                 max_cells: int = 4096) -> Stationarity:
    """Directional stationarity, escape neurons and local minimality at ``theta`` (module docstring).

    Cost: per neuron with data on its kink, the cells of their arrangement (closed form for
    ``d_in = 1``, else a depth-first search with LPs) and, when its output weight is non-zero,
    ``1 + 2k`` LPs per cell; a neuron with output weight 0 stops at the first witness cell.
    ``max_cells`` bounds the cells per neuron (beyond: ``stationary=None``).
    """
    am, ap = _check(problem)
    m = problem.m
    Xt, Wt, W2, b2 = _parts(problem, theta)
    Z, on = _kinks(Xt, Wt, tol)
    rho = np.where(Z > 0, ap, am) * Z  # (m, N), kinks snapped to 0
    R = rho @ W2.T + b2 - problem.targets  # (m, k)
    L = float(np.sum(R * R) / m)
    anorm = np.linalg.norm(W2, axis=0)
    scale = max(1.0, 2.0 * float(np.mean(np.linalg.norm(R, axis=1)))
                * float(np.max(np.linalg.norm(Xt, axis=1))) * max(1.0, float(anorm.max())))
    thr = tol * scale
    N, k = Wt.shape[0], W2.shape[0]
    kinks = tuple(int(c) for c in on.sum(axis=0))

    def result(stat, esc, lm, dirn=None, dd=None):
        return Stationarity(stat, tuple(esc), lm, tol, scale, L, kinks, dirn, dd)

    # smooth first-order conditions: output bias and output weights
    g_c = 2.0 / m * R.sum(axis=0)
    g_a = 2.0 / m * R.T @ rho  # (k, N)
    if max(np.abs(g_c).max(), np.abs(g_a).max()) > thr:
        d = problem.widths[0]
        v = problem.pack([(np.zeros((N, d)), np.zeros(N)), (-g_a, -g_c)])
        G = v / np.linalg.norm(v)
        return result(False, [], False, G, line_derivatives(problem, theta, G, tol=tol)[0])

    escapes: list[EscapeNeuron] = []
    cache: dict[bytes, list] = {}
    undecided = False
    for j in range(N):
        H = on[:, j]
        slope = np.where(Z[:, j] > 0, ap, am)
        M0 = (R[~H] * slope[~H, None]).T @ Xt[~H]  # (k, D): the smooth part of psi_j
        U, idx, orient = unique_hyperplanes(Xt[H])
        key = U.tobytes()
        a = W2[:, j]
        a_zero = anorm[j] <= tol
        best = None  # (|M u|, u, M, A_cell, kappa, ell) of the best witness
        try:
            if key in cache:
                cl = cache[key]
            elif a_zero:  # phi_j = 0 and a single witness cell decides the escape test: go lazily
                cl = iter_cells(U, max_cells)
            else:
                cl = cache.setdefault(key, cells(U, max_cells))
            for sig, uc in cl:
                s_i = sig[idx] * orient  # sign of x~_i . u in this cell, i in H
                kap = slope.copy()
                kap[H] = np.where(s_i > 0, ap, am)  # rho' on this cell
                Mc = M0 + (R[H] * kap[H, None]).T @ Xt[H]
                A_cell = (sig[:, None] * U) if U.size else np.zeros((0, Xt.shape[1]))
                if a_zero:  # F is the whole closed cell: an interior point is a witness
                    gain, u = _interior_witness(Mc, uc, A_cell, thr)
                    if u is not None:
                        best = (gain, u, Mc, A_cell, kap, np.zeros(Xt.shape[1]))
                        break
                    continue
                ell = 2.0 / m * (a @ Mc)
                if np.abs(ell).max() > thr:
                    val, u = cell_lp(ell, A_cell)
                    if val < -thr:
                        dirn = _direction(problem, j, u, np.zeros(k))
                        return result(False, [], False, dirn,
                                      line_derivatives(problem, theta, dirn, tol=tol)[0])
                for r in range(k):
                    for sgn in (1.0, -1.0):
                        val, u = cell_lp(-sgn * Mc[r], A_cell, ell[None])
                        gain = float(np.linalg.norm(Mc @ u))
                        if -val > thr and (best is None or gain > best[0]):
                            best = (gain, u, Mc, A_cell, kap, ell)
        except TooManyCells:
            undecided = True
            continue
        if best is not None:
            _, u, Mc, A_cell, kap, ell = best
            psi = Mc @ u
            zu = Xt @ u
            q = np.where(np.where(H, zu > 0, Z[:, j] > 0), ap, am) * zu
            Q, S = float(rho[:, j] @ rho[:, j]), float(rho[:, j] @ q)
            if Q > tol:
                alpha = -(S * a + psi) / Q
            else:
                alpha = -psi * (np.linalg.norm(u) / np.linalg.norm(psi))
            cands = [(u, alpha, None)] + _eigen_candidates(Xt, rho[:, j], kap, a, Mc, A_cell, ell, m)
            found = []
            for c_i, (uu, al, ga) in enumerate(cands):
                dirn = _direction(problem, j, uu, al, ga)
                d1, d2 = line_derivatives(problem, theta, dirn, tol=tol)
                if c_i == 0 or abs(d1) <= thr:  # only first-order flat directions compete
                    found.append((d2, dirn))
            d2, dirn = min(found, key=lambda t: t[0])
            escapes.append(EscapeNeuron(j, dirn, d2))
    if undecided:
        lm = False if any(e.second_derivative < -thr for e in escapes) else None
        return result(None, escapes, lm)
    if any(e.second_derivative < -thr for e in escapes):
        lm = False
    else:
        lm = True if not escapes else None
    return result(True, escapes, lm)

"""The Lyapunov--Perron fixed point of Theorem 2.2 (docs/theory.md, "The construction").

For base points ``xi`` in ``E_cs`` the operator on sequences ``y = (p_n, q_n)_{n<K}``

    T_xi(y)_n = ( Lambda_cs^n xi + sum_{j<n} Lambda_cs^{n-1-j} r~_cs(y_j),
                  - sum_{j>=n} Lambda_u^{-(j-n+1)} r~_u(y_j) )

is a contraction with constant ``kappa`` in the weighted norm ``sup_n mu^{-n} |y_n|``;
``phi(xi) = q_0`` at its fixed point.  Banach iteration in blocks of base points (cache-sized
for dense frames, memory-sized for matrix-free ones), each block iterated to convergence: per
sweep one evaluation of ``g`` on ``b*K`` points and ``K`` sequential batched linear steps,
``p_n = Lambda_cs (p_{n-1} - chi_cs(y_{n-1})) + g_cs(chi(y_{n-1}))`` (the same recurrence as
``Lambda_cs p_{n-1} + r~_cs(y_{n-1})`` with one application of ``Lambda_cs`` per step instead
of two).  Sequences are stored time-major, ``(K, b, .)``, so that every step of the
recurrence reads contiguous rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._results import Result
from ..errors import ConvergenceError
from .cutoff import bump

__all__ = ["GraphSolve", "solve_graph"]

#: Floats of one block of sequences (b * K * d) of a matrix-free frame (its one large array).
_SEQ_FLOATS = 1.6e7
#: Sequence points (base points times K) of one block of a dense frame: small enough that a
#: block's sequences and the map's temporaries stay in cache across its sweeps, large enough
#: that one map call amortises the per-call overhead.
_BLOCK_ROWS = 2048


@dataclass(frozen=True)
class GraphSolve(Result):
    """The graph values ``q = phi(xi)`` with the counters of the Banach iteration.

    Attributes
    ----------
    q : ndarray (B, dim_u)
    nit : int
        Sweeps of the largest chunk.
    residual : float
        Largest final weighted increment (the error bound is ``residual / (1 - kappa)``-scaled).
    target : float
        The increment the iteration had to reach, ``tol (1 - kappa)``.
    """

    q: np.ndarray
    nit: int
    residual: float
    target: float
    n: int

    _NOT_SERIALISED = ("q",)

    @property
    def success(self) -> bool:
        return bool(self.residual <= self.target)

    @property
    def message(self) -> str:
        if self.success:
            return f"converged in {self.nit} sweeps (increment {self.residual:.3g} <= {self.target:.3g})"
        return (f"not converged after {self.nit} sweeps (increment {self.residual:.3g} > "
                f"{self.target:.3g}); try a smaller `radius` or a larger `max_iter`")


def solve_graph(frame: Any, xi: np.ndarray, *, dim_u: int, radius: float, contraction: float,
                mu: float, horizon: int, tol: float, max_iter: int, throw: bool = True) -> GraphSolve:
    """Fixed point of the Lyapunov--Perron operator for base points ``xi (B, cs)``.

    The base points are solved in cache-sized blocks (``_BLOCK_ROWS`` sequence points, i.e.
    about ``_BLOCK_ROWS / K`` base points, at a time), each block iterated to convergence
    before the next: a block's sequences stay in cache across its sweeps and every map call
    is batched over the whole block.  Raises :class:`~csm.ConvergenceError` (with ``nit`` and
    ``residual``) when ``max_iter`` sweeps do not reach ``tol (1 - kappa)``, unless
    ``throw=False``.
    """
    B = xi.shape[0]
    K = horizon
    rows = _BLOCK_ROWS if not frame.matrix_free else _SEQ_FLOATS / max(1, frame.dim)
    chunk = max(1, int(rows // K))
    target = tol * (1.0 - contraction)
    qs, nit, res = [], 0, 0.0
    for i in range(0, max(B, 1), chunk):
        q, n_i, r_i = _solve_chunk(frame, xi[i:i + chunk], dim_u, radius, mu, K, target, max_iter)
        qs.append(q)
        nit, res = max(nit, n_i), max(res, r_i)
    out = GraphSolve(q=np.concatenate(qs, axis=0) if qs else np.zeros((0, dim_u)), nit=nit,
                     residual=res, target=target, n=B)
    if throw and not out.success:
        raise ConvergenceError("Lyapunov--Perron iteration " + out.message, nit=nit, residual=res)
    return out


def _advance(C: Any, p: np.ndarray, q: np.ndarray, v: np.ndarray | None
             ) -> tuple[np.ndarray | None, np.ndarray]:
    """``C.advance`` in row blocks of ``C.chunk`` (cache-sized map calls)."""
    if len(p) <= C.chunk:
        return C.advance(p, q, v)
    parts = [C.advance(p[i:i + C.chunk], q[i:i + C.chunk], None if v is None else v[i:i + C.chunk])
             for i in range(0, len(p), C.chunk)]
    gq = np.concatenate([b for _, b in parts])
    return (None if v is None else np.concatenate([a for a, _ in parts])), gq


def _linear_start(C: Any, xi: np.ndarray, dim_u: int, mu: float, K: int
                  ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """Weights ``mu^{-n}`` and the initial guess of the iteration: the linear orbit
    ``p_n = Lambda_cs^n xi`` (a list of ``K`` arrays ``(B, m)``) and ``q = 0``
    (time-major ``(K, B, dim_u)``)."""
    B = xi.shape[0]
    P = [xi]
    for _ in range(1, K):
        P.append(C.lin_cs(P[-1]))
    return (mu ** (-np.arange(K, dtype=float)), P, np.zeros((K, B, dim_u)),
            np.zeros((B, dim_u)))


def _solve_chunk(C: Any, xi: np.ndarray, dim_u: int, eps: float, mu: float, K: int,
                 target: float, max_iter: int) -> tuple[np.ndarray, int, float]:
    """Banach iteration for one block; sequences stored time-major, ``(K, b, .)``."""
    if C.matrix_free:
        return _solve_chunk_streamed(C, xi, dim_u, eps, mu, K, target, max_iter)
    B, m = xi.shape[0], C.dim_cs_repr
    weights, P, Qu, q0 = _linear_start(C, xi, dim_u, mu, K)
    P = np.stack(P)  # (K, B, m)
    active = np.arange(B)
    nit, incr_max = 0, 0.0
    while active.size and nit < max_iter:
        nit += 1
        b = active.size
        nrm = np.sqrt(np.einsum("nbi,nbi->nb", P, P) + np.einsum("nbi,nbi->nb", Qu, Qu))
        eta = bump(nrm * (1.0 / eps))[..., None]  # (K, b, 1)
        cP = eta * P
        cQ = (eta * Qu).reshape(K * b, dim_u)
        gp, gq = C.g_z(cP.reshape(K * b, m), cQ)  # finiteness: checked by the map
        # r~(y) = g_z(chi(y)) - Lambda chi(y); the cs recurrence
        # p_n = Lambda p_{n-1} + r~_cs(y_{n-1}) is applied as Lambda (p_{n-1} - chi_cs(y_{n-1}))
        # + g_cs(chi(y_{n-1})): one application of Lambda_cs per step, none on the whole batch
        gp = gp.reshape(K, b, m)
        Ru = (gq - C.lin_u(cQ)).reshape(K, b, dim_u)
        newP = np.empty_like(P)
        newP[0] = P[0]
        for n in range(1, K):
            newP[n] = C.lin_cs(newP[n - 1] - cP[n - 1])
            newP[n] += gp[n - 1]
        newQ = np.empty_like(Qu)
        acc = C.inv_lin_u(-Ru[K - 1])
        newQ[K - 1] = acc
        for n in range(K - 2, -1, -1):
            acc = C.inv_lin_u(acc - Ru[n])
            newQ[n] = acc
        dP, dQ = newP - P, newQ - Qu
        diff = np.sqrt(np.einsum("nbi,nbi->nb", dP, dP) + np.einsum("nbi,nbi->nb", dQ, dQ))
        incr = np.max(diff * weights[:, None], axis=0)
        incr_max = float(incr.max())
        done = incr <= target
        q0[active] = newQ[0]
        if done.all():
            break
        keep = ~done
        P, Qu, active = newP[:, keep], newQ[:, keep], active[keep]
    return q0, nit, incr_max


def _solve_chunk_streamed(C: Any, xi: np.ndarray, dim_u: int, eps: float, mu: float, K: int,
                          target: float, max_iter: int) -> tuple[np.ndarray, int, float]:
    """The same iteration, one time step at a time (matrix-free frames, large ``d``).

    A sweep walks ``n = 0 .. K-1`` once: the cutoff, the map and the cs recurrence of step
    ``n`` touch only the rows of step ``n`` (cache-resident), and the new ``p_n`` replaces the
    old one (freeing it), so a block holds one sequence of ``K`` arrays ``(b, d)`` and no
    full-size temporaries.
    Same operator, same stopping rule as :func:`_solve_chunk`; per step one map and one
    Jacobian-vector product with one projection (:meth:`MatrixFreeFrame.advance`), and no
    cutoff product where every row lies where the bump is 1.  Finiteness of the map's values is
    checked by the map itself (:class:`csm.Map`).
    """
    B = xi.shape[0]
    weights, P, Qu, q0 = _linear_start(C, xi, dim_u, mu, K)
    active = np.arange(B)
    nit, incr_max = 0, 0.0
    while active.size and nit < max_iter:
        nit += 1
        b = active.size
        Ru = np.empty((K, b, dim_u))
        dP2 = np.empty((K, b))
        nxt = P[0]  # the new p_0 = xi
        for n in range(K):
            old, qn = P[n], Qu[n]
            s = np.sqrt(np.einsum("ij,ij->i", old, old) + np.einsum("ij,ij->i", qn, qn))
            eta = bump(s * (1.0 / eps))
            dlt = nxt - old
            dP2[n] = np.einsum("ij,ij->i", dlt, dlt)
            if np.all(eta == 1.0):  # inside the flat part of the cutoff: chi(y) = y
                cp, cq, v = old, qn, dlt
            else:
                cp, cq = eta[:, None] * old, eta[:, None] * qn
                v = nxt - cp
            following, gq = _advance(C, cp, cq, v if n + 1 < K else None)
            Ru[n] = gq - C.lin_u(cq)
            P[n] = nxt
            nxt = following
        newQ = np.empty_like(Qu)
        acc = C.inv_lin_u(-Ru[K - 1])
        newQ[K - 1] = acc
        for n in range(K - 2, -1, -1):
            acc = C.inv_lin_u(acc - Ru[n])
            newQ[n] = acc
        dQ = newQ - Qu
        diff = np.sqrt(dP2 + np.einsum("nbi,nbi->nb", dQ, dQ))
        incr = np.max(diff * weights[:, None], axis=0)
        incr_max = float(incr.max())
        done = incr <= target
        q0[active] = newQ[0]
        Qu = newQ
        if done.all():
            break
        keep = ~done
        P, Qu, active = [p[keep] for p in P], Qu[:, keep], active[keep]
    return q0, nit, incr_max

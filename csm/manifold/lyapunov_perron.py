"""The Lyapunov--Perron fixed point of Theorem 2.2 (docs/theory.md, "The construction").

For base points ``xi`` in ``E_cs`` the operator on sequences ``y = (p_n, q_n)_{n<K}``

    T_xi(y)_n = ( Lambda_cs^n xi + sum_{j<n} Lambda_cs^{n-1-j} r~_cs(y_j),
                  - sum_{j>=n} Lambda_u^{-(j-n+1)} r~_u(y_j) )

is a contraction with constant ``kappa`` in the weighted norm ``sup_n mu^{-n} |y_n|``;
``phi(xi) = q_0`` at its fixed point.  Banach iteration, batched over all base points: per
sweep one evaluation of ``g`` on ``B*K`` points and ``K`` sequential batched linear steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._results import Result
from .._validation import check_finite
from ..errors import ConvergenceError
from .cutoff import bump

__all__ = ["GraphSolve", "solve_graph"]

#: Floats of one batch of sequences (B * K * d) held at once.
_SEQ_FLOATS = 2e7


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

    Raises :class:`~csm.ConvergenceError` (with ``nit`` and ``residual``) when ``max_iter``
    sweeps do not reach ``tol (1 - kappa)``, unless ``throw=False``.
    """
    B = xi.shape[0]
    K = horizon
    chunk = max(1, int(_SEQ_FLOATS // max(1, K * frame.dim)))
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


def _solve_chunk(C: Any, xi: np.ndarray, dim_u: int, eps: float, mu: float, K: int,
                 target: float, max_iter: int) -> tuple[np.ndarray, int, float]:
    B = xi.shape[0]
    weights = mu ** (-np.arange(K, dtype=float))  # mu^{-n}
    # initial guess: the linear orbit, q = 0
    P = np.empty((B, K, C.dim_cs_repr))
    P[:, 0] = xi
    for n in range(1, K):
        P[:, n] = C.lin_cs(P[:, n - 1])
    Qu = np.zeros((B, K, dim_u))
    active = np.ones(B, dtype=bool)
    nit, incr_max = 0, 0.0
    while active.any() and nit < max_iter:
        nit += 1
        idx = np.nonzero(active)[0]
        Pa, Qa = P[idx], Qu[idx]
        b = len(idx)
        nrm = np.sqrt(np.sum(Pa**2, axis=2) + np.sum(Qa**2, axis=2))  # (b, K)
        eta = bump(nrm / eps)
        flatP = (eta[..., None] * Pa).reshape(b * K, -1)
        flatQ = (eta[..., None] * Qa).reshape(b * K, -1)
        gp, gq = C.g_z(flatP, flatQ)
        check_finite(gp, "map (inside the Lyapunov--Perron iteration)")
        # r~(y) = g_z(chi(y)) - Lambda chi(y)
        Rcs = (gp - C.lin_cs(flatP)).reshape(b, K, -1)
        Ru = (gq - C.lin_u(flatQ)).reshape(b, K, -1)
        newP = np.empty_like(Pa)
        newP[:, 0] = Pa[:, 0]
        for n in range(1, K):
            newP[:, n] = C.lin_cs(newP[:, n - 1]) + Rcs[:, n - 1]
        newQ = np.empty_like(Qa)
        acc = np.zeros((b, dim_u))
        for n in range(K - 1, -1, -1):
            acc = C.inv_lin_u(acc - Ru[:, n])
            newQ[:, n] = acc
        diff = np.sqrt(np.sum((newP - Pa) ** 2, axis=2) + np.sum((newQ - Qa) ** 2, axis=2))
        incr = np.max(diff * weights[None, :], axis=1)
        P[idx], Qu[idx] = newP, newQ
        incr_max = float(incr.max())
        active[idx[incr <= target]] = False
    return Qu[:, 0].copy(), nit, incr_max

"""Closed-form critical points of the leaky ReLU loss for an affine target (docs/theory.md §5).

Target ``f(x) = rho x + s`` with ``rho != 0`` on ``[alpha, beta]``, activation
``sigma_a(z) = max(z, a z)``, ``0 < a < 1``.  Classification (after Cheridito, Jentzen,
Rossmannek, J. Nonlinear Sci. 32 (2022) 64, [6] Section 3, Theorem 3.5 there: no non-global
local minima; the kink families and their loss values below are derived and checked here,
see docs/plugins/leaky_relu.md "Classification"):

* ``L = 0``: global minima, exactly the networks with realization ``f``;
* **layer 0**: ``c`` = mean of ``f`` and every neuron flat (``v_j = 0``) with ``w_j = 0`` (any
  ``b_j``, ``b_j = 0`` included): the realization is constant, ``L = rho^2 (beta-alpha)^3/12``;
* **k-kink family** (``1 <= k <= N``, first orientation ``"right"`` or ``"left"``): the
  non-flat neurons are type-2-active with ``k`` distinct breakpoints ``t_1 < ... < t_k`` whose
  orientations (``sign w``) alternate, starting with ``+`` ("right": active to the right of
  ``t_1``) or ``-``; the residual ``e`` has zero mean on each of the ``k + 1`` pieces, and
  the piece lengths are ``l_p ∝ sqrt(omega_p)`` with

      omega_0 = 1 (first right) or a (first left),   omega_1..omega_{k-1} = 1 + a,
      omega_k = a (last right) or 1 (last left),

  and, with ``Omega = sum_p sqrt(omega_p)``,

      L = (1 - a)^2 rho^2 (beta - alpha)^3 / (12 Omega^4).

  ``a -> 0`` recovers the ReLU layers: ``k = 2n`` first right gives ``Omega = 2n + 1``.
  The other neurons are flat with ``w_j = 0`` or degenerate, or flat type-2-active at one of
  the ``t_i`` with its orientation; several neurons may share a breakpoint (same orientation),
  splitting its kink.  Every positive rescaling ``(w, b, v) -> (l w, l b, v / l)`` stays in
  the family.

Every critical point with positive loss is a saddle; with a flat ``w_j = 0`` neuron the
``(w_j, v_j)`` Hessian block ``[[0, 2 sigma_a'(b_j) int e x], [., .]]`` (``int e x != 0`` at
every positive-loss critical point) makes it strict.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

import csm

__all__ = ["piece_weights", "kink_breakpoints", "kink_value", "kink_network", "layer0_network",
           "FIRST", "UNUSED"]

#: Orientation of the leftmost breakpoint neuron: "right" (w > 0, active right of it) or "left".
FIRST = ("right", "left")
#: Templates for the neurons not used by a kink family (all flat: v = 0).
UNUSED = ("mixed", "semi-active", "inactive", "degenerate")


def _check_k_first(k: int, first: str) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise csm.ParameterError(f"`k` (number of breakpoints) must be an integer >= 1, got {k!r}")
    if first not in FIRST:
        raise csm.ParameterError(f"`first` must be one of {FIRST}, got {first!r}")


def orientations(k: int, first: str) -> list[int]:
    """``sign w`` of the breakpoint neurons, left to right (alternating, from ``first``)."""
    _check_k_first(k, first)
    s0 = 1 if first == "right" else -1
    return [s0 if i % 2 == 0 else -s0 for i in range(k)]


def piece_weights(k: int, first: str, a: float) -> np.ndarray:
    """``omega_0..omega_k``: the squared piece lengths are proportional to them."""
    o = orientations(k, first)
    om = np.full(k + 1, 1.0 + a)
    om[0] = 1.0 if o[0] > 0 else a
    om[k] = a if o[-1] > 0 else 1.0
    return om


def _omega(k: int, first: str, a: float) -> float:
    # summed in a fixed order so that mirror-image families (k odd) get identical values
    om = np.sort(piece_weights(k, first, a))
    return float(math.fsum(math.sqrt(x) for x in om))


def kink_breakpoints(k: int, first: str, a: float, alpha: float, beta: float) -> np.ndarray:
    """The ``k`` breakpoints ``t_1 < ... < t_k`` of the k-kink family."""
    sq = np.sqrt(piece_weights(k, first, a))
    ell = (beta - alpha) * sq / sq.sum()
    return alpha + np.cumsum(ell)[:-1]


def kink_value(k: int, first: str, a: float, rho: float, alpha: float, beta: float) -> float:
    """``(1 - a)^2 rho^2 (beta - alpha)^3 / (12 Omega^4)``, the loss of the k-kink family."""
    om = _omega(k, first, a)
    return (1.0 - a) ** 2 * rho * rho * (beta - alpha) ** 3 / (12.0 * om ** 4)


def _unused(j: int, unused: str) -> tuple[float, float, float]:
    if unused == "semi-active":
        return 0.0, 1.0, 0.0
    if unused == "inactive":
        return 0.0, -1.0, 0.0
    if unused == "degenerate":
        return 0.0, 0.0, 0.0
    return 0.0, (1.0 if j % 2 == 0 else -1.0), 0.0  # mixed


def layer0_network(N: int, rho: float, s: float, alpha: float, beta: float,
                   unused: str = "mixed") -> np.ndarray:
    """``c`` = mean of ``f``, every neuron flat with ``w = 0`` (template ``unused``)."""
    if unused not in UNUSED:
        raise csm.ParameterError(f"`unused` must be one of {UNUSED}, got {unused!r}")
    th = np.zeros(3 * N + 1)
    for j in range(N):
        th[j], th[N + j], th[2 * N + j] = _unused(j, unused)
    th[-1] = rho * 0.5 * (alpha + beta) + s
    return th


def kink_network(N: int, a: float, rho: float, s: float, alpha: float, beta: float, k: int,
                 first: str = "right", *, multiplicity: Sequence[int] | None = None,
                 flat_at_kink: int = 0, unused: str = "mixed") -> np.ndarray:
    """A member of the k-kink family as ``theta = (w, b, v, c)``.

    ``multiplicity[i]`` non-flat neurons share breakpoint ``t_{i+1}`` (default one each; they
    split its kink equally, ``w = +-1``); ``flat_at_kink`` further flat neurons sit at
    ``t_1, t_2, ...`` (cyclically) with the orientation of that breakpoint; the remaining
    neurons follow ``unused`` (:data:`UNUSED`: flat with ``w = 0`` and ``b = +1`` /
    ``-1`` / alternating, or degenerate).  Construction: the residual on piece ``p`` is
    ``e = s_p (x - m_p)`` with ``s_p l_p = (-1)^p q``; the kink at ``t_i`` is
    ``(1 - a) sum v_j |w_j| = s_i - s_{i-1}``; ``q`` solves the slope condition
    ``N'(alpha+) = a R - Lf`` (``R``, ``Lf``: summed ``v |w|`` of right- / left-facing neurons),
    which gives ``|q| = (1 - a) |rho| (beta - alpha) / Omega^2``; ``c`` matches ``e`` at ``alpha``.
    """
    _check_k_first(k, first)
    if unused not in UNUSED:
        raise csm.ParameterError(f"`unused` must be one of {UNUSED}, got {unused!r}")
    mult = [1] * k if multiplicity is None else [int(m) for m in multiplicity]
    if len(mult) != k or min(mult) < 1:
        raise csm.ParameterError(f"`multiplicity` must be {k} integers >= 1, got {multiplicity!r}")
    if isinstance(flat_at_kink, bool) or not isinstance(flat_at_kink, (int, np.integer)) \
            or flat_at_kink < 0:
        raise csm.ParameterError(f"`flat_at_kink` must be an integer >= 0, got {flat_at_kink!r}")
    if sum(mult) + flat_at_kink > N:
        raise csm.ParameterError(
            f"the family needs {sum(mult) + flat_at_kink} neurons (k = {k}, multiplicity "
            f"{mult}, flat_at_kink {flat_at_kink}) but N = {N}")
    o = orientations(k, first)
    om = piece_weights(k, first, a)
    sq = np.sqrt(om)
    ell = (beta - alpha) * sq / sq.sum()
    t = alpha + np.cumsum(ell)[:-1]
    sgn = (-1.0) ** np.arange(k + 1)
    u = 1.0 / ell
    D = sgn[1:] * u[1:] - sgn[:-1] * u[:-1]            # kink of e at t_i per unit q
    R = np.array(o) > 0
    coef = (1.0 - a) * u[0] - (a * D[R].sum() - D[~R].sum())
    q = -(1.0 - a) * rho / coef
    kink = q * D / (1.0 - a)                           # sum of v_j |w_j| at t_i
    slope0 = sgn[0] * q * u[0]
    th = np.zeros(3 * N + 1)
    j = 0
    c = rho * alpha + s - slope0 * ell[0] / 2.0
    for i in range(k):
        for _ in range(mult[i]):
            w = float(o[i])
            v = kink[i] / mult[i]
            th[j], th[N + j], th[2 * N + j] = w, -w * t[i], v
            # sigma_a(w (alpha - t)), alpha < t: a w (alpha - t) (w > 0) or w (alpha - t) (w < 0)
            c -= v * (a if w > 0 else 1.0) * w * (alpha - t[i])
            j += 1
    for m in range(flat_at_kink):
        i = m % k
        th[j], th[N + j], th[2 * N + j] = float(o[i]), -float(o[i]) * t[i], 0.0
        j += 1
    for jj in range(j, N):
        th[jj], th[N + jj], th[2 * N + jj] = _unused(jj - j, unused)
    th[-1] = c
    return th

"""The Lipschitz constant ``l`` of the cut-off remainder, proved or adversarially estimated.

Theorem 2.2's contraction constant is ``kappa = l (1/(mu-1) + 1/(lambda_min-mu))`` with ``l``
the Lipschitz constant of ``r~ = r o chi_eps`` (docs/theory.md, "The contraction constant").
Two routes, and every result says which one it took (``kappa_certified``):

**Proved** (``certified=True``).  If ``Dg`` is Lipschitz with constant ``M`` on the ambient
ball ``B(x*, |Q| 2 eps)`` (spectral norms), then ``|Dr(w)| <= |Q^{-1}| |Q|^2 M |w|`` and, since
``|chi(z)| = s eta(s) eps`` and ``|D chi(z)| = max(|eta|, |eta + s eta'|)`` at ``s = |z|/eps``,

    l <= |Q^{-1}| |Q|^2 M eps CUTOFF_GROWTH,   CUTOFF_GROWTH = sup_s s eta max(|eta|, |eta+s eta'|).

The user supplies ``M`` (``derivative_lipschitz``), or a map carries it
(``Map.derivative_lipschitz``; a :class:`~csm.GradientDescentMap` takes ``step`` times the
problem's ``hessian_lipschitz``).

**Estimated** (``certified=False``).  Otherwise ``l`` is the largest ``|D r~(z) v|`` found by an
adversarial search over ``z`` in ``B_{2 eps}`` and unit ``v``: power iteration in ``v`` (top
singular pair of ``D r~(z)``) at stratified random points, at the unstable directions and at
directions found earlier, then rounds of ascent in ``z``: each of the best points is moved along
its own direction and along the top left and right singular vectors of ``D r~`` there, over a
grid of radii.  A nonlinearity that lives in a few directions (``(a.x)^4``) is found in the first
round because the singular vectors of ``Dr`` point along ``a`` wherever ``a.z != 0``.  The
estimate is a lower bound of the true ``l`` multiplied by ``safety``; the effort (points and
rounds) is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cutoff import CUTOFF_GROWTH, cutoff

__all__ = ["LipschitzEstimate", "power_top", "adversarial_lipschitz", "proved_lipschitz"]

#: Radii (as fractions of 2 eps) scanned along every candidate direction (dense frames).
_RADII = np.array([0.1, 0.25, 0.4, 0.5, 0.6, 0.7, 0.78, 0.85, 0.92, 1.0])
#: The coarser grid of matrix-free frames (each point costs Jacobian-vector products).
_RADII_COARSE = np.array([0.25, 0.5, 0.7, 0.85, 1.0])


@dataclass(frozen=True)
class LipschitzEstimate:
    """``value`` of ``l`` (after ``safety``), whether it is ``certified``, and the search effort."""

    value: float
    certified: bool
    raw: float
    n_points: int
    n_rounds: int
    argmax: np.ndarray | None  # the z-point where the largest |D r~| was found
    directions: np.ndarray  # unit directions worth re-probing (rows)


def power_top(frame: Any, Z: np.ndarray, eps: float, *, n_power: int = 25,
              seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top singular triple ``(sigma, left, right)`` of ``D r~(z)`` at rows of ``Z``.

    ``D r~(z) = Dr(chi(z)) D chi(z)``; power iteration on ``M^T M`` with products only
    (chunked to the frame's memory budget).  ``sigma`` is a lower bound of ``|D r~(z)|_2``
    that converges to it.
    """
    S, n = Z.shape
    sig, left, right = np.zeros(S), np.zeros((S, n)), np.zeros((S, n))
    rng = np.random.default_rng(seed)
    for i in range(0, S, frame.chunk):
        sl = slice(i, min(S, i + frame.chunk))
        W, eta, seta, U = cutoff(Z[sl], eps)
        dr, dr_T = frame.remainder_derivative(W)

        def dchi(V: np.ndarray) -> np.ndarray:
            return eta[:, None] * V + (seta * np.sum(U * V, axis=1))[:, None] * U

        V = rng.standard_normal(W.shape)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        prev = np.zeros(len(W))
        for _ in range(n_power):
            MV = dr(dchi(V))
            V2 = dchi(dr_T(MV))
            nv = np.linalg.norm(V2, axis=1, keepdims=True)
            if np.all(nv == 0):
                break
            V = np.where(nv > 0, V2 / np.where(nv > 0, nv, 1.0), V)
            # |M^T M v| -> sigma^2: stop once every point's estimate has settled
            if np.all(np.abs(nv[:, 0] - prev) <= 1e-4 * np.maximum(nv[:, 0], 1e-300)):
                break
            prev = nv[:, 0]
        MV = dr(dchi(V))
        s = np.linalg.norm(MV, axis=1)
        sig[sl] = s
        right[sl] = V
        left[sl] = MV / np.where(s > 0, s, 1.0)[:, None]
    return sig, left, right


def _unit(V: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(V, axis=1, keepdims=True)
    keep = n[:, 0] > 0
    return V[keep] / n[keep]


def _scan(dirs: np.ndarray, eps: float, radii: np.ndarray) -> np.ndarray:
    """Every direction (both signs) at every radius of the grid: rows of z-points."""
    dirs = np.concatenate([dirs, -dirs], axis=0)
    return (2.0 * eps * radii[None, :, None] * dirs[:, None, :]).reshape(-1, dirs.shape[1])


def adversarial_lipschitz(frame: Any, eps: float, *, n_random: int, n_rounds: int = 2,
                          n_best: int = 4, safety: float = 1.25, seed: int = 0,
                          directions: np.ndarray | None = None) -> LipschitzEstimate:
    """Adversarial estimate of ``l = sup |D r~|`` on ``B_{2 eps}`` (see the module docstring).

    ``directions`` (rows, unit) are probed over the radius grid in addition to the frame's
    unstable directions and ``n_random`` stratified random points; ``n_rounds`` rounds of
    ascent follow from the ``n_best`` best points.
    """
    rng = np.random.default_rng(seed)
    d = frame.dim
    radii = _RADII_COARSE if frame.matrix_free else _RADII
    G = rng.standard_normal((n_random, d))
    G = _unit(G)
    r = 2.0 * eps * (np.arange(1, len(G) + 1) - rng.random(len(G))) / max(1, len(G))
    seeds = [frame.unstable_directions()]
    if directions is not None and len(directions):
        seeds.append(directions)
    Z = np.concatenate([G * r[:, None], _scan(_unit(np.concatenate(seeds)), eps, radii)], axis=0)
    sig, left, right = power_top(frame, Z, eps)
    n_points = len(Z)
    best_dirs = []
    for _ in range(n_rounds):
        top = np.argsort(sig)[::-1][:n_best]
        cand = _unit(np.concatenate([Z[top], left[top], right[top]], axis=0))
        Zr = _scan(cand, eps, radii)
        s2, l2, r2 = power_top(frame, Zr, eps)
        n_points += len(Zr)
        Z = np.concatenate([Z, Zr]); sig = np.concatenate([sig, s2])
        left = np.concatenate([left, l2]); right = np.concatenate([right, r2])
        best_dirs.append(cand)
    i = int(np.argmax(sig))
    top = np.argsort(sig)[::-1][:n_best]
    found = _unit(np.concatenate([Z[top], right[top]] + ([] if not best_dirs else [best_dirs[-1][:n_best]])))
    raw = float(sig[i])
    return LipschitzEstimate(value=safety * raw, certified=False, raw=raw, n_points=int(n_points),
                             n_rounds=int(n_rounds), argmax=Z[i].copy(), directions=found)


def proved_lipschitz(frame: Any, eps: float, derivative_lipschitz: Any) -> LipschitzEstimate:
    """The proved bound ``l <= |Q^{-1}| |Q|^2 M eps CUTOFF_GROWTH`` (see the module docstring).

    ``derivative_lipschitz`` is ``M`` (a float) or a callable ``(fixed_point, radius) -> M``
    valid on the ambient ball of that radius.
    """
    R = frame.norm_Q * 2.0 * eps
    M = derivative_lipschitz(frame.fixed_point, R) if callable(derivative_lipschitz) else derivative_lipschitz
    M = float(M)
    if not np.isfinite(M) or M < 0:
        from ..errors import InputError

        raise InputError(
            f"`derivative_lipschitz` must be a finite number >= 0 (or return one), got {M!r}")
    raw = frame.norm_Q_inv * frame.norm_Q**2 * M * eps * CUTOFF_GROWTH
    return LipschitzEstimate(value=raw, certified=True, raw=raw, n_points=0, n_rounds=0,
                             argmax=None, directions=np.zeros((0, frame.dim)))

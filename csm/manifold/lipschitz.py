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

Cost (issue 16; docs/theory.md §1.7, "An estimated kappa"): products only wherever the map
has symmetric Jacobian-vector products -- in the matrix-free frame, and for a dense frame with
orthonormal ``Q`` in ambient coordinates (``frame.lipschitz_frame``, an isometry that
commutes with the radial cutoff, so the singular values are the same); the probes are
generated and evaluated in blocks and only the ``n_best`` best are kept (memory
``O(n_best d)``); near-parallel candidate directions are scanned once; a point leaves the
power iteration when its estimate has settled; the radius ``2 eps``, where ``D r~ = 0``
identically, is not probed; a search with ascent rounds at a radius already screened starts
from the screening's best probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .cutoff import CUTOFF_GROWTH, cutoff

__all__ = ["LipschitzEstimate", "power_top", "adversarial_lipschitz", "proved_lipschitz"]

#: Radii (as fractions of 2 eps) scanned along every candidate direction (dense frames).  The
#: end of the ball, 2 eps, is left out: ``chi`` vanishes identically for ``|z| >= 2 eps``, so
#: ``D r~ = 0`` there.
_RADII = np.array([0.1, 0.25, 0.4, 0.5, 0.6, 0.7, 0.78, 0.85, 0.92])
#: The coarser grid of matrix-free frames (each point costs Jacobian-vector products).
_RADII_COARSE = np.array([0.25, 0.5, 0.7, 0.85])


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
    #: ``(eps, Z, sigma, left, right)`` of the ``n_best`` best probes (rows), so that a later
    #: search at the same radius can start from them instead of repeating the probes.
    top: tuple | None = field(default=None, repr=False)


def power_top(frame: Any, Z: np.ndarray, eps: float, *, n_power: int = 25, seed: int = 1,
              stop_above: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top singular triple ``(sigma, left, right)`` of ``D r~(z)`` at rows of ``Z``.

    ``D r~(z) = Dr(chi(z)) D chi(z)``; power iteration on ``M^T M`` with products only
    (chunked to the frame's memory budget).  A point stops once its estimate of ``sigma^2``
    has settled (relative change ``<= 1e-4``); with products only (no Jacobians formed) the
    iteration is compacted to the points still running whenever a quarter of them has stopped,
    so the cost follows the slow points only.
    ``sigma = |M v|`` for the unit ``right = v`` returned: a lower bound of ``|D r~(z)|_2``
    that converges to it, with ``left = M v / sigma``.  As soon as some ``sigma`` exceeds
    ``stop_above`` everything stops (the points not reached keep ``sigma = 0``): the caller
    only needed to know that the supremum is above it.
    """
    S, n = Z.shape
    sig, left, right = np.zeros(S), np.zeros((S, n)), np.zeros((S, n))
    rng = np.random.default_rng(seed)
    for i in range(0, S, frame.chunk):
        sl = slice(i, min(S, i + frame.chunk))
        W, eta, seta, U = cutoff(Z[sl], eps)
        V = rng.standard_normal(W.shape)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        s_out, l_out, r_out = np.zeros(len(W)), np.zeros(W.shape), V.copy()
        act = np.arange(len(W))
        prev = np.zeros(len(W))
        dr = dr_T = None
        for _ in range(n_power):
            if dr is None:  # products at the points still iterating
                dr, dr_T = frame.remainder_derivative(W[act])
                e_a, s_a, U_a = eta[act, None], seta[act], U[act]
            DV = e_a * V + (s_a * np.sum(U_a * V, axis=1))[:, None] * U_a
            MV = dr(DV)
            s = np.linalg.norm(MV, axis=1)
            s_out[act], r_out[act] = s, V
            l_out[act] = MV / np.where(s > 0, s, 1.0)[:, None]
            if s.max() > stop_above:
                sig[sl], left[sl], right[sl] = s_out, l_out, r_out
                return sig, left, right
            T = dr_T(MV)
            V2 = e_a * T + (s_a * np.sum(U_a * T, axis=1))[:, None] * U_a
            nv = np.linalg.norm(V2, axis=1)
            pos = nv > 0
            V = np.where(pos[:, None], V2 / np.where(pos, nv, 1.0)[:, None], V)
            # |M^T M v| -> sigma^2: a point stops once its estimate has settled
            done = (~pos) | (np.abs(nv - prev) <= 1e-4 * np.maximum(nv, 1e-300))
            prev = nv
            if done.all():
                break
            if frame.products_only and done.sum() >= 0.25 * len(act):
                keep = ~done
                act, V, prev, dr = act[keep], V[keep], prev[keep], None
        sig[sl], left[sl], right[sl] = s_out, l_out, r_out
    return sig, left, right


def _unit(V: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(V, axis=1, keepdims=True)
    keep = n[:, 0] > 0
    return V[keep] / n[keep]


def _distinct(dirs: np.ndarray, cos_max: float = 0.999) -> np.ndarray:
    """Unit rows of ``dirs`` with near-duplicates dropped (``|cos| > cos_max`` with a kept row).

    Both signs of every kept direction are scanned (:func:`_scan`), so a row parallel or
    antiparallel to a kept one would only repeat its probes.
    """
    U = _unit(dirs)
    if len(U) < 2:
        return U
    C = np.abs(U @ U.T)
    keep: list[int] = []
    for i in range(len(U)):
        if not keep or C[i, keep].max() <= cos_max:
            keep.append(i)
    return U[keep]


def _scan(dirs: np.ndarray, eps: float, radii: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """Every direction (both signs) at every radius of the grid: blocks of ``rows`` z-points.

    Generated block by block, so that at large ``d`` the scan never exists as one array.
    """
    per = max(1, rows // (2 * len(radii)))
    for i in range(0, len(dirs), per):
        D = dirs[i:i + per]
        D = np.concatenate([D, -D], axis=0)
        yield (2.0 * eps * radii[None, :, None] * D[:, None, :]).reshape(-1, D.shape[1])


class _Best:
    """The ``n`` probes with the largest ``sigma`` seen so far (O(n d) memory) and a count."""

    def __init__(self, n: int, d: int) -> None:
        self.n = n
        self.Z, self.left, self.right = np.zeros((0, d)), np.zeros((0, d)), np.zeros((0, d))
        self.sig = np.zeros(0)
        self.count = 0

    def add(self, Z: np.ndarray, sig: np.ndarray, left: np.ndarray, right: np.ndarray,
            count: bool = True) -> None:
        self.count += len(Z) if count else 0
        sig = np.concatenate([self.sig, sig])
        top = np.argsort(sig, kind="stable")[::-1][: self.n]
        self.sig = sig[top]
        self.Z, self.left, self.right = (np.concatenate([a, b])[top] for a, b in
                                         ((self.Z, Z), (self.left, left), (self.right, right)))

    def probe(self, frame: Any, Z: np.ndarray, eps: float, stop_above: float = np.inf) -> bool:
        """Probe the rows of ``Z``; True (and stop) once the best exceeds ``stop_above``."""
        for i in range(0, len(Z), _PROBE_ROWS):
            Zc = Z[i:i + _PROBE_ROWS]
            self.add(Zc, *power_top(frame, Zc, eps, stop_above=stop_above))
            if self.sig[0] > stop_above:
                return True
        return False


#: Probe points handed to :func:`power_top` at once (each holds a few (rows, d) arrays).
_PROBE_ROWS = 512


def adversarial_lipschitz(frame: Any, eps: float, *, n_random: int, n_rounds: int = 2,
                          n_best: int = 4, safety: float = 1.25, seed: int = 0,
                          directions: np.ndarray | None = None,
                          prior: LipschitzEstimate | None = None,
                          stop_above: float | None = None) -> LipschitzEstimate:
    """Adversarial estimate of ``l = sup |D r~|`` on ``B_{2 eps}`` (see the module docstring).

    ``directions`` (rows, unit) are probed over the radius grid in addition to the frame's
    unstable directions and ``n_random`` stratified random points; ``n_rounds`` rounds of
    ascent follow from the ``n_best`` best points.  ``prior``, an estimate at the same
    ``eps`` and ``seed`` (with at least as many random points), stands for those random and
    unstable-direction probes: its best probes are kept and only ``directions`` and the
    rounds are probed anew.  Memory: ``O((n_best + rows) d)``, the probes are generated and
    evaluated in blocks.  ``stop_above``: the search ends as soon as the raw supremum found
    exceeds it (then ``raw`` is only known to be above ``stop_above``; no ascent rounds, and
    the estimate cannot serve as a ``prior``).
    """
    rng = np.random.default_rng(seed)
    frame = frame.lipschitz_frame
    stop = np.inf if stop_above is None else float(stop_above)
    d = frame.dim
    radii = _RADII_COARSE if frame.matrix_free else _RADII
    best = _Best(n_best, d)
    rows = max(2 * len(radii), min(_PROBE_ROWS, int(2**22 // d)))
    reuse = prior is not None and prior.top is not None and prior.top[0] == eps
    if reuse:
        _, Zp, sp, lp, rp = prior.top
        best.add(Zp, sp, lp, rp, count=False)
        best.count = prior.n_points
        seeds = []
    else:
        G = rng.standard_normal((n_random, d))
        G = _unit(G)
        r = 2.0 * eps * (np.arange(1, len(G) + 1) - rng.random(len(G))) / max(1, len(G))
        # outermost first: with ``stop_above`` a too-large radius is rejected soonest there
        best.probe(frame, (G * r[:, None])[::-1], eps, stop)
        seeds = [frame.unstable_directions()]
    if directions is not None and len(directions):
        seeds.append(directions)
    stopped = bool(len(best.sig)) and best.sig[0] > stop
    if seeds and not stopped:
        for Zs in _scan(_distinct(np.concatenate(seeds)), eps, radii, rows):
            if best.probe(frame, Zs, eps, stop):
                stopped = True
                break
    if stopped:
        raw = float(best.sig[0])
        return LipschitzEstimate(value=safety * raw, certified=False, raw=raw,
                                 n_points=int(best.count), n_rounds=0, argmax=best.Z[0].copy(),
                                 directions=_distinct(np.concatenate([best.Z, best.right])))
    cand = np.zeros((0, d))
    for _ in range(n_rounds):
        cand = _distinct(np.concatenate([best.Z, best.left, best.right], axis=0))
        for Zs in _scan(cand, eps, radii, rows):
            best.probe(frame, Zs, eps)
    found = _distinct(np.concatenate([best.Z, best.right, cand[:n_best]]))
    raw = float(best.sig[0])
    return LipschitzEstimate(value=safety * raw, certified=False, raw=raw,
                             n_points=int(best.count), n_rounds=int(n_rounds),
                             argmax=best.Z[0].copy(), directions=found,
                             top=(eps, best.Z, best.sig, best.left, best.right))


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

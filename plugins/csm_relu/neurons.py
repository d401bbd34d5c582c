"""Neuron types of Definition 4.1 (docs/theory.md §2), batched and with a documented tolerance.

For a network ``theta`` and neuron ``j`` let ``I_j = {x in [alpha, beta] : w_j x + b_j >= 0}``.
The neuron is

* **inactive** -- ``I_j`` empty;
* **semi-inactive** -- ``I_j`` a single point: the breakpoint ``t_j = -b_j / w_j`` sits at
  ``beta`` with ``w_j > 0`` or at ``alpha`` with ``w_j < 0`` (pointing outwards);
* **semi-active** -- ``w_j = 0 < b_j``;
* **type-1-active** -- ``w_j != 0`` and ``I_j = [alpha, beta]`` (breakpoint outside, or on the
  boundary pointing inwards);
* **type-2-active** -- ``w_j != 0`` and ``t_j`` strictly inside ``(alpha, beta)``;
* **degenerate** -- ``w_j = b_j = 0``;

and independently **flat** when ``v_j = 0``.  These six kinds partition the neurons.

Tolerance
---------
Exact zero tests are replaced by:

* ``w_j = b_j = 0`` (degenerate) when ``|w_j| <= atol`` and ``|b_j| <= atol``;
* ``v_j = 0`` (flat) when ``|v_j| <= atol``;
* with the neuron's scale ``s_j = |w_j| (|alpha| + |beta|) + |b_j|`` (a bound of the
  pre-activation on the interval): ``w_j = 0`` when ``|w_j| (beta - alpha) <= rtol s_j``, and
  the pre-activation ``P_j(x) = w_j x + b_j`` vanishes at an endpoint ``x`` when
  ``|P_j(x)| <= rtol s_j``.  So a breakpoint counts as "at ``beta``" when it lies within about
  ``rtol (|alpha| + |beta|)`` of it.

Defaults ``rtol = 1e-9``, ``atol = 1e-12``: exact constructions (critical points) are classified
exactly, and generic points (e.g. random initialisations) are never put in a measure-zero class.
For end points of gradient descent use looser values (``classify`` takes them as arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import csm

__all__ = ["NEURON_KINDS", "NeuronTypes", "neuron_types"]

#: The six kinds of Definition 4.1 (codes 0..5 of :attr:`NeuronTypes.kind`).
NEURON_KINDS = ("inactive", "semi_inactive", "semi_active", "type1_active", "type2_active",
                "degenerate")
INACTIVE, SEMI_INACTIVE, SEMI_ACTIVE, TYPE1, TYPE2, DEGENERATE = range(6)


@dataclass(frozen=True)
class NeuronTypes:
    """Per-neuron classes of Definition 4.1 for one network ``(N,)`` or a batch ``(B, N)``.

    Attributes
    ----------
    kind : ndarray of int
        Codes into :data:`NEURON_KINDS`.
    flat : ndarray of bool
        ``v_j = 0`` (within ``atol``).
    breakpoint : ndarray of float
        ``t_j = -b_j / w_j``; NaN where ``w_j = 0`` (within tolerance) or degenerate.
    orientation : ndarray of int
        ``sign(w_j)`` (0 where ``w_j = 0`` within tolerance): +1 active to the right of the
        breakpoint, -1 to the left.
    at_alpha, at_beta : ndarray of bool
        The breakpoint sits at ``alpha`` / ``beta`` (within tolerance).
    rtol, atol : float
        The tolerances used (see the module docstring).
    """

    kind: np.ndarray
    flat: np.ndarray
    breakpoint: np.ndarray
    orientation: np.ndarray
    at_alpha: np.ndarray
    at_beta: np.ndarray
    rtol: float
    atol: float

    def _is(self, code: int) -> np.ndarray:
        return self.kind == code

    @property
    def inactive(self) -> np.ndarray:
        return self._is(INACTIVE)

    @property
    def semi_inactive(self) -> np.ndarray:
        return self._is(SEMI_INACTIVE)

    @property
    def semi_active(self) -> np.ndarray:
        return self._is(SEMI_ACTIVE)

    @property
    def type1_active(self) -> np.ndarray:
        return self._is(TYPE1)

    @property
    def type2_active(self) -> np.ndarray:
        return self._is(TYPE2)

    @property
    def active(self) -> np.ndarray:
        """Type-1- or type-2-active."""
        return self._is(TYPE1) | self._is(TYPE2)

    @property
    def degenerate(self) -> np.ndarray:
        return self._is(DEGENERATE)

    @property
    def names(self) -> np.ndarray:
        """The kinds as strings (same shape as :attr:`kind`)."""
        return np.asarray(NEURON_KINDS, dtype=object)[self.kind]

    @property
    def J_plus(self) -> np.ndarray:
        """Semi-inactive neurons with breakpoint at ``beta`` (``w_j > 0``): the set J_+ of §4."""
        return self.semi_inactive & (self.orientation > 0)

    @property
    def J_minus(self) -> np.ndarray:
        """Semi-inactive neurons with breakpoint at ``alpha`` (``w_j < 0``): the set J_- of §4."""
        return self.semi_inactive & (self.orientation < 0)

    def counts(self) -> dict[str, Any]:
        """Number of neurons of each kind (arrays over the batch for batched input)."""
        out = {k: np.sum(self.kind == i, axis=-1) for i, k in enumerate(NEURON_KINDS)}
        out["flat"] = np.sum(self.flat, axis=-1)
        return out

    def describe(self) -> list[str]:
        """One string per neuron of a single network, e.g. ``"type2_active (t=0.333)"``."""
        if self.kind.ndim != 1:
            raise csm.ShapeError("describe() needs the types of a single network")
        out = []
        for k, fl, t in zip(self.kind, self.flat, self.breakpoint):
            s = NEURON_KINDS[k] + (", flat" if fl else "")
            if np.isfinite(t):
                s += f" (t={t:.6g})"
            out.append(s)
        return out

    def to_dict(self) -> dict[str, Any]:
        return csm.problem.to_jsonable({
            "kind": self.names, "flat": self.flat, "breakpoint": self.breakpoint,
            "orientation": self.orientation, "rtol": self.rtol, "atol": self.atol})


def neuron_types(X: np.ndarray, N: int, alpha: float, beta: float, *, rtol: float = 1e-9,
                 atol: float = 1e-12) -> NeuronTypes:
    """Classify the neurons of a batch ``X (B, 3N+1)`` (Definition 4.1, tolerance above)."""
    W = X[:, :N]
    Bb = X[:, N:2 * N]
    V = X[:, 2 * N:3 * N]
    scale = np.abs(W) * (abs(alpha) + abs(beta)) + np.abs(Bb)
    Pa = W * alpha + Bb
    Pb = W * beta + Bb
    za = np.abs(Pa) <= rtol * scale
    zb = np.abs(Pb) <= rtol * scale
    degenerate = (np.abs(W) <= atol) & (np.abs(Bb) <= atol)
    wzero = (np.abs(W) * (beta - alpha) <= rtol * scale) | degenerate
    pos = ~wzero & (W > 0)
    neg = ~wzero & (W < 0)
    kind = np.full(W.shape, INACTIVE, dtype=int)
    kind[wzero & (Bb > 0)] = SEMI_ACTIVE
    # w > 0: I = [max(t, alpha), beta]
    kind[pos & (Pa > 0) | pos & za] = TYPE1
    kind[pos & ~za & (Pa < 0) & ~zb & (Pb > 0)] = TYPE2
    kind[pos & zb] = SEMI_INACTIVE
    # w < 0: I = [alpha, min(t, beta)]
    kind[neg & (Pb > 0) | neg & zb] = TYPE1
    kind[neg & ~zb & (Pb < 0) & ~za & (Pa > 0)] = TYPE2
    kind[neg & za] = SEMI_INACTIVE
    kind[degenerate] = DEGENERATE
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(wzero, np.nan, -Bb / np.where(wzero, 1.0, W))
    orient = np.where(pos, 1, np.where(neg, -1, 0))
    return NeuronTypes(kind=kind, flat=np.abs(V) <= atol, breakpoint=t, orientation=orient,
                       at_alpha=~wzero & za, at_beta=~wzero & zb, rtol=float(rtol),
                       atol=float(atol))

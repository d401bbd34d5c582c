"""Activation functions of the ``network`` plugin (paper §3: networks on finite data).

Every activation is a continuous piecewise polynomial ``sigma`` with breakpoints
``t_1 < ... < t_K`` and ``K + 1`` polynomial pieces (coefficients lowest degree first).

Convention at a breakpoint ``z = t_k``: the **left** piece is used for ``sigma'`` and
``sigma''``.  For ``relu`` this gives ``relu'(0) = 0`` (as PyTorch), for ``leaky_relu:a`` it
gives ``sigma'(0) = a`` (as PyTorch's ``leaky_relu``).

Accepted specifications (:func:`parse_activation`):

* ``"relu"``, ``"leaky_relu"`` (slope 0.01) or ``"leaky_relu:a"`` (``0 <= a < 1``),
  ``"relu^k"`` (integer ``k >= 2``), ``"square"``, ``"linear"``;
* a user piecewise polynomial: ``{"breakpoints": [...], "pieces": [[c0, c1, ...], ...]}``, the
  pair ``(breakpoints, pieces)`` or a :class:`Activation` built by :func:`piecewise`.  Pieces must
  join continuously at every breakpoint (else :class:`csm.ParameterError`).

*ReLU-like* activations (Wu, Simsek, Ged, arXiv 2402.05626, §2) are the positively
homogeneous ones, ``sigma(z) = alpha_+ z`` for ``z > 0`` and ``alpha_- z`` for ``z < 0``:
:attr:`Activation.relu_like` gives ``(alpha_-, alpha_+)`` or None.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

import csm

__all__ = ["Activation", "parse_activation", "piecewise", "ACTIVATION_NAMES"]

#: The named activations (``relu^k`` stands for ``relu^2``, ``relu^3``, ...).
ACTIVATION_NAMES = ("relu", "leaky_relu", "leaky_relu:a", "relu^k", "square", "linear")


@dataclass(frozen=True, eq=False)
class Activation:
    """A continuous piecewise polynomial activation with its first two derivatives.

    Attributes
    ----------
    name : str
        Canonical specification (``"relu"``, ``"leaky_relu:0.1"``, ``"relu^3"``, ``"piecewise"``).
    kind : str
        ``"relu"``, ``"leaky_relu"``, ``"relu_pow"``, ``"square"``, ``"linear"`` or ``"piecewise"``.
    breakpoints : tuple of float
        ``t_1 < ... < t_K``.
    pieces : tuple of tuple of float
        ``K + 1`` coefficient tuples, lowest degree first.
    param : float or int or None
        Slope ``a`` of ``leaky_relu``, power ``k`` of ``relu^k``.
    """

    name: str
    kind: str
    breakpoints: tuple[float, ...]
    pieces: tuple[tuple[float, ...], ...]
    param: float | int | None = None
    _tables: tuple = field(default=(), repr=False)
    _relu_like: tuple[float, float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        deg = max(len(p) for p in self.pieces)
        C = np.zeros((len(self.pieces), deg))
        for i, p in enumerate(self.pieces):
            C[i, :len(p)] = p
        powers = np.arange(deg)
        D1 = (C * powers)[:, 1:] if deg > 1 else np.zeros((len(self.pieces), 1))
        D2 = (D1 * np.arange(D1.shape[1]))[:, 1:] if D1.shape[1] > 1 else np.zeros((len(C), 1))
        t = np.asarray(self.breakpoints, float)
        object.__setattr__(self, "_tables", (t, C, D1, D2))
        # (alpha_-, alpha_+) of a ReLU-like activation, else None: asked on every kernel call
        if self.kind == "linear":
            rl: tuple[float, float] | None = (1.0, 1.0)
        elif len(t) != 1 or t[0] != 0.0 or C.shape[1] > 2 or np.any(C[:, 0] != 0.0):
            rl = None
        else:
            rl = (float(C[0, 1]), float(C[1, 1])) if C.shape[1] == 2 else (0.0, 0.0)
        object.__setattr__(self, "_relu_like", rl)

    # ------------------------------------------------------------------ properties
    @property
    def piecewise_linear(self) -> bool:
        """True when ``sigma''`` vanishes off the breakpoints (no curvature term in the HVP)."""
        return not np.any(self._tables[3])

    @property
    def relu_like(self) -> tuple[float, float] | None:
        """``(alpha_-, alpha_+)`` if ``sigma(z) = alpha_+ z (z > 0), alpha_- z (z < 0)``, else None."""
        return self._relu_like

    @property
    def degree(self) -> int:
        """The largest polynomial degree of a piece."""
        C = self._tables[1]
        nz = np.nonzero(np.any(C != 0.0, axis=0))[0]
        return int(nz[-1]) if nz.size else 0

    # ------------------------------------------------------------------ evaluation
    def _generic(self, z: np.ndarray, table: np.ndarray) -> np.ndarray:
        t = self._tables[0]
        idx = np.searchsorted(t, z, side="left") if t.size else np.zeros(z.shape, dtype=np.intp)
        out = np.broadcast_to(table[idx, -1], z.shape).copy() if table.shape[1] else np.zeros(z.shape)
        for k in range(table.shape[1] - 2, -1, -1):
            out *= z
            out += table[idx, k]
        return out

    def value(self, z: np.ndarray) -> np.ndarray:
        """``sigma(z)`` elementwise."""
        z = np.asarray(z, dtype=float)
        k = self.kind
        if k == "relu":
            return np.maximum(z, 0.0)
        if k == "leaky_relu":  # max(z, a z) for 0 <= a < 1, in place (np.where is ~20x slower)
            out = z * self.param
            return np.maximum(out, z, out=out)
        if k == "relu_pow":
            return np.maximum(z, 0.0) ** self.param
        if k == "square":
            return z * z
        if k == "linear":
            return np.array(z, dtype=float, copy=True)
        return self._generic(z, self._tables[1])

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """``sigma'(z)`` elementwise (left piece at a breakpoint: ``relu'(0) = 0``)."""
        z = np.asarray(z, dtype=float)
        k = self.kind
        if k == "relu":
            return (z > 0.0).astype(float)
        if k == "leaky_relu":  # a + (1 - a) [z > 0]
            out = (z > 0.0).astype(float)
            out *= 1.0 - self.param
            out += self.param
            return out
        if k == "relu_pow":
            return self.param * np.maximum(z, 0.0) ** (self.param - 1)
        if k == "square":
            return 2.0 * z
        if k == "linear":
            return np.ones_like(z, dtype=float)
        return self._generic(z, self._tables[2])

    def second_derivative(self, z: np.ndarray) -> np.ndarray:
        """``sigma''(z)`` elementwise (left piece at a breakpoint)."""
        z = np.asarray(z, dtype=float)
        k = self.kind
        if k in ("relu", "leaky_relu", "linear"):
            return np.zeros_like(z, dtype=float)
        if k == "relu_pow":
            p = self.param
            return p * (p - 1) * (np.maximum(z, 0.0) ** (p - 2) if p > 2 else (z > 0.0))
        if k == "square":
            return np.full_like(z, 2.0, dtype=float)
        return self._generic(z, self._tables[3])

    __call__ = value

    def __repr__(self) -> str:
        return f"<Activation {self.name}>"


def _bad(value: Any, why: str) -> csm.ParameterError:
    return csm.ParameterError(
        f"network: parameter `activation` {why}, got {value!r}; accepted: 'relu', "
        f"'leaky_relu' or 'leaky_relu:a' (0 <= a < 1), 'relu^k' (integer k >= 2), 'square', "
        f"'linear', or a piecewise polynomial {{'breakpoints': [...], 'pieces': [[c0, c1, ...], "
        f"...]}} whose pieces join continuously")


def piecewise(breakpoints: Sequence[float], pieces: Sequence[Sequence[float]]) -> Activation:
    """A user piecewise polynomial activation, validated.

    Parameters
    ----------
    breakpoints : sequence of float
        Strictly increasing finite breakpoints ``t_1 < ... < t_K`` (``K >= 0``).
    pieces : sequence of sequence of float
        ``K + 1`` non-empty coefficient lists (lowest degree first); piece ``k`` is used on
        ``(t_k, t_{k+1}]`` (left-closed convention: ``t_0 = -inf``, ``t_{K+1} = +inf``).

    Raises
    ------
    csm.ParameterError
        Naming ``activation``: bad shapes, non-finite numbers, unsorted breakpoints, or pieces
        that do not join continuously (the breakpoint and both one-sided values are given).
    """
    spec = {"breakpoints": breakpoints, "pieces": pieces}
    try:
        t = [float(x) for x in breakpoints]
        P = [tuple(float(c) for c in p) for p in pieces]
    except (TypeError, ValueError):
        raise _bad(spec, "must have numeric breakpoints and coefficient lists") from None
    if not all(math.isfinite(x) for x in t) or any(b <= a for a, b in zip(t, t[1:])):
        raise _bad(spec, "needs finite, strictly increasing breakpoints")
    if len(P) != len(t) + 1 or any(len(p) == 0 for p in P):
        raise _bad(spec, f"needs len(breakpoints) + 1 = {len(t) + 1} non-empty pieces (found "
                         f"{len(P)})")
    if not all(math.isfinite(c) for p in P for c in p):
        raise _bad(spec, "has a non-finite coefficient")
    for k, tk in enumerate(t):
        left = sum(c * tk ** i for i, c in enumerate(P[k]))
        right = sum(c * tk ** i for i, c in enumerate(P[k + 1]))
        scale = max(1.0, abs(left), abs(right))
        if abs(left - right) > 1e-9 * scale:
            raise csm.ParameterError(
                f"network: parameter `activation`: pieces {k} and {k + 1} do not join at "
                f"breakpoint t = {tk!r} (left piece gives {left!r}, right piece gives {right!r}); "
                f"a piecewise polynomial activation must be continuous")
    return Activation("piecewise", "piecewise", tuple(t), tuple(P))


def parse_activation(spec: Any) -> Activation:
    """Turn ``spec`` (a name, a dict, a ``(breakpoints, pieces)`` pair or an Activation) into an
    :class:`Activation`; raise :class:`csm.ParameterError` naming ``activation`` otherwise
    (with a "did you mean" for misspelt names)."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, Mapping):
        if set(spec) != {"breakpoints", "pieces"}:
            raise _bad(spec, "as a dict needs exactly the keys 'breakpoints' and 'pieces'")
        return piecewise(spec["breakpoints"], spec["pieces"])
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and not isinstance(spec[0], str):
        return piecewise(spec[0], spec[1])
    if not isinstance(spec, str):
        raise _bad(spec, "must be a string or a piecewise polynomial")
    s = spec.strip().lower().replace(" ", "")
    if s == "relu":
        return Activation("relu", "relu", (0.0,), ((0.0,), (0.0, 1.0)))
    if s == "linear":
        return Activation("linear", "linear", (), ((0.0, 1.0),))
    if s == "square":
        return Activation("square", "square", (), ((0.0, 0.0, 1.0),))
    if s == "leaky_relu" or s.startswith("leaky_relu:"):
        a_txt = s.split(":", 1)[1] if ":" in s else "0.01"
        try:
            a = float(a_txt)
        except ValueError:
            raise _bad(spec, f"has a slope {a_txt!r} that is not a number") from None
        if not (math.isfinite(a) and 0.0 <= a < 1.0):
            raise _bad(spec, f"needs a slope 0 <= a < 1 (got a = {a_txt})")
        return Activation(f"leaky_relu:{a!r}", "leaky_relu", (0.0,), ((0.0, a), (0.0, 1.0)), a)
    if s.startswith("relu^"):
        k_txt = s[5:]
        if not k_txt.isdigit() or int(k_txt) < 2:
            raise _bad(spec, f"needs an integer power k >= 2 in 'relu^k' (got {k_txt!r}; "
                             f"use 'relu' for k = 1)")
        k = int(k_txt)
        return Activation(f"relu^{k}", "relu_pow", (0.0,), ((0.0,), (0.0,) * k + (1.0,)), k)
    known = ["relu", "leaky_relu", "relu^2", "square", "linear"]
    close = difflib.get_close_matches(s.split(":")[0], known, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise _bad(spec, f"is not a known activation{hint}")

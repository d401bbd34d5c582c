"""Closed-form critical points of the ReLU loss for an affine target (docs/theory.md §3, Prop. 4.5).

Target ``f(x) = rho x + s`` with ``rho != 0`` on ``[alpha, beta]``; ``m = 2n + 1``,
``h = (beta - alpha) / m``.

* **Zigzag saddle of layer n >= 1** (``2n <= N``): breakpoints ``t_k = alpha + k h``
  (``k = 1..2n``), neuron ``k`` with ``w_k = +1`` (k odd) / ``-1`` (k even),
  ``b_k = -w_k t_k``, ``v_k = 2 rho w_k / m``; ``c = rho (alpha + beta)/2 + s``.  The residual
  has zero mean on every piece and slopes ``-rho/m, +rho/m, ...``; loss
  ``rho^2 (beta - alpha)^3 / (12 m^4)``.
* **Layer 0** (``n = 0``): the constant network ``c = rho (alpha + beta)/2 + s`` with every
  neuron inactive, semi-inactive or flat semi-active; loss ``rho^2 (beta - alpha)^3 / 12``.
  It is a *local minimum* ("dead-neuron minimum") iff every neuron is inactive or
  semi-inactive with ``rho v_j w_j < 0`` (Prop. 4.5 (ii)); a strict saddle in S with a
  semi-inactive neuron with ``rho v_j w_j > 0`` or a flat semi-active neuron; a saddle outside
  S (not strict) when the only other neurons are flat semi-inactive ones.
* The ``N - 2n`` unused neurons of a zigzag take one of the templates below -- each choice is a
  member of the family (and positive rescaling ``(w, b, v) -> (l w, l b, v / l)`` of any
  neuron gives the whole curve of critical points).
* **Global minima** (``L = 0``): one type-1-active neuron with ``v w = rho`` and the breakpoint
  ``(beta - alpha)`` left of ``alpha``; for ``N >= 2`` also two type-2-active neurons meeting
  at the midpoint with opposite orientation, ``v_1 w_1 = v_2 w_2 = rho``
  (``v_1 relu(x - t) - rho relu(t - x) = rho (x - t)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Candidate", "affine_families", "layer_value"]


@dataclass
class Candidate:
    label: str
    theta: np.ndarray
    kind: str
    layer: int | None
    family: str
    variant: str
    info: dict[str, Any] = field(default_factory=dict)


def layer_value(rho: float, alpha: float, beta: float, n: int) -> float:
    """``rho^2 (beta - alpha)^3 / (12 (2n + 1)^4)`` -- the loss of layer ``n`` (Prop. 4.5 (iv))."""
    return rho * rho * (beta - alpha) ** 3 / (12.0 * (2 * n + 1) ** 4)


def _templates(rho: float, alpha: float, beta: float) -> dict[str, tuple[float, float, float]]:
    L = beta - alpha
    return {
        # (w, b, v)
        "inactive-right": (1.0, -(beta + 0.5 * L), 0.5 * rho),    # t = beta + L/2
        "inactive-left": (-1.0, alpha - 0.5 * L, -0.5 * rho),     # t = alpha - L/2
        "semi-inactive-plus-beta": (1.0, -beta, 0.5 * rho),       # rho v w > 0
        "semi-inactive-plus-alpha": (-1.0, alpha, -0.5 * rho),
        "semi-inactive-minus-alpha": (-1.0, alpha, 0.5 * rho),    # rho v w < 0
        "semi-inactive-minus-beta": (1.0, -beta, -0.5 * rho),
        "semi-inactive-flat-beta": (1.0, -beta, 0.0),
        "semi-inactive-flat-alpha": (-1.0, alpha, 0.0),
        "flat-semi-active": (0.0, 1.0, 0.0),
    }


#: Variants of the unused neurons: name -> list of templates (cycled; remaining inactive).
_VARIANTS = {
    "inactive": [],
    "semi-inactive-plus": ["semi-inactive-plus-beta"],
    "semi-inactive-minus": ["semi-inactive-minus-alpha", "semi-inactive-minus-beta"],
    "semi-inactive-flat": ["semi-inactive-flat-beta"],
    "flat-semi-active": ["flat-semi-active"],
    "mixed": ["semi-inactive-plus-alpha", "semi-inactive-minus-beta", "flat-semi-active",
              "semi-inactive-flat-alpha"],
}


def _pack(W, B, V, c) -> np.ndarray:
    return np.concatenate([W, B, V, [c]]).astype(float)


def _fill_unused(W, B, V, start: int, variant: str, tpl) -> None:
    N = len(W)
    names = _VARIANTS[variant]
    for k, j in enumerate(range(start, N)):
        if k < len(names):
            name = names[k]
        else:
            name = "inactive-right" if (k % 2 == 0) else "inactive-left"
        W[j], B[j], V[j] = tpl[name]


def affine_families(N: int, alpha: float, beta: float, rho: float, s: float) -> list[Candidate]:
    """All listed critical points for ``f(x) = rho x + s``, ``rho != 0`` (module docstring)."""
    tpl = _templates(rho, alpha, beta)
    mean_f = rho * 0.5 * (alpha + beta) + s
    out: list[Candidate] = []
    for n in range(0, N // 2 + 1):
        m = 2 * n + 1
        h = (beta - alpha) / m
        W = np.zeros(N)
        B = np.zeros(N)
        V = np.zeros(N)
        for k in range(1, 2 * n + 1):
            w = 1.0 if k % 2 == 1 else -1.0
            t = alpha + k * h
            W[k - 1], B[k - 1], V[k - 1] = w, -w * t, 2.0 * rho * w / m
        unused = N - 2 * n
        variants = list(_VARIANTS) if unused > 0 else [None]
        for var in variants:
            if var == "mixed" and unused < 2:
                continue
            W2, B2, V2 = W.copy(), B.copy(), V.copy()
            if var is not None:
                _fill_unused(W2, B2, V2, 2 * n, var, tpl)
            theta = _pack(W2, B2, V2, mean_f)
            if n == 0:
                if var in ("inactive", "semi-inactive-minus"):
                    kind, family = "local_minimum", "dead-neuron"
                    label = f"dead-{var}"
                elif var == "semi-inactive-flat":
                    kind, family, label = "saddle", "zigzag", f"zigzag-n0-{var}"
                else:
                    kind, family, label = "strict_saddle", "zigzag", f"zigzag-n0-{var}"
            else:
                kind, family = "strict_saddle", "zigzag"
                label = f"zigzag-n{n}" + (f"-{var}" if var is not None else "")
            out.append(Candidate(label, theta, kind, n, family, var or "none"))
    # global minima
    L = beta - alpha
    W = np.zeros(N)
    B = np.zeros(N)
    V = np.zeros(N)
    _fill_unused(W, B, V, 0, "inactive", tpl)
    sg = 1.0 if rho > 0 else -1.0
    t0 = alpha - L if rho > 0 else beta + L  # type-1-active on the whole interval
    W1, B1, V1 = W.copy(), B.copy(), V.copy()
    W1[0], B1[0], V1[0] = sg, -sg * t0, rho * sg
    # c + rho (x - t0) = rho x + s  =>  c = s + rho t0
    out.append(Candidate("global-type1", _pack(W1, B1, V1, s + rho * t0), "global_minimum",
                         None, "global", "type1"))
    if N >= 2:
        tm = 0.5 * (alpha + beta)
        W2, B2, V2 = W.copy(), B.copy(), V.copy()
        W2[0], B2[0], V2[0] = 1.0, -tm, rho
        W2[1], B2[1], V2[1] = -1.0, tm, -rho
        out.append(Candidate("global-split", _pack(W2, B2, V2, s + rho * tm), "global_minimum",
                             None, "global", "split"))
    return out

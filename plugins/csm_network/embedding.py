"""Network embedding: a width-``N`` network inside width ``N + 1`` (Wu, Simsek, Ged,
arXiv 2402.05626, §5; the embeddings of Fukumizu and Amari and of Simsek et al.).

Two embeddings keep the realisation, hence the loss, of a one-hidden-layer network:

* ``"zero"`` -- add a neuron with output weight 0 and input weights ``weights`` (default 0: a
  *zero neuron*; a strictly inactive ``relu`` neuron gives a *dead* one);
* ``"split"`` -- replace neuron ``j`` by two copies with its input weights and output weights
  ``ratio a_j`` and ``(1 - ratio) a_j``.

:func:`embed` applies one and reports the stationarity analysis of
:mod:`csm_network.stationarity` before and after, so that the change of type is explicit (e.g. a
local minimum of width ``N`` becoming a saddle of width ``N + 1`` through a new escape neuron).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import csm

from .stationarity import Stationarity, stationarity

__all__ = ["Embedding", "embed", "describe"]


def describe(rep: Stationarity) -> str:
    """One phrase for a :class:`~csm_network.stationarity.Stationarity`."""
    if rep.stationary is False:
        return "not stationary"
    if rep.local_minimum is True:
        return "local minimum"
    esc = rep.escape_indices
    if rep.local_minimum is False:
        return f"saddle (escape neurons {esc})"
    return f"stationary, type undecided (escape neurons {esc})"


@dataclass(frozen=True, eq=False)
class Embedding:
    """Result of :func:`embed`: the wider ``problem`` and ``theta``, the analyses ``before`` (width
    ``N``) and ``after`` (width ``N + 1``), and ``kind``/``neuron`` of the embedding."""

    kind: str
    neuron: int | None
    problem: Any
    theta: np.ndarray
    before: Stationarity
    after: Stationarity

    @property
    def change(self) -> str:
        """E.g. ``"local minimum -> saddle (escape neurons [3])"``."""
        return f"{describe(self.before)} -> {describe(self.after)}"

    def __repr__(self) -> str:
        return f"Embedding({self.kind!r}, neuron={self.neuron}, {self.change})"


def embed(problem: Any, theta: Any, kind: str = "zero", *, neuron: int | None = None,
          ratio: float = 0.5, weights: Any = None, tol: float = 1e-9) -> Embedding:
    """Embed ``theta`` (one hidden layer of ``N`` neurons) into width ``N + 1``.

    Parameters
    ----------
    kind : {"zero", "split"}
    neuron : int
        The neuron to split (``kind="split"``).
    ratio : float
        Share of the output weight kept by the first copy (any real; 0.5 by default).
    weights : array_like (d_in + 1,), optional
        Input weights and bias of the added neuron (``kind="zero"``; default 0).
    tol : float
        Passed to :func:`~csm_network.stationarity.stationarity`.

    The new neuron is appended last; the loss is unchanged (checked).
    """
    if not problem.shallow:
        raise csm.InputError(f"`embed` needs one hidden layer, widths are {problem.widths}")
    th = problem._point(theta)
    (W1, b1), (W2, b2) = problem.unpack(th)
    d, N, k = problem.widths
    if kind == "zero":
        w = np.zeros(d + 1) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (d + 1,) or not np.all(np.isfinite(w)):
            raise csm.InputError(f"`weights` must be {d + 1} finite numbers (input weights, bias), "
                                 f"got {weights!r}")
        W1n, b1n = np.vstack([W1, w[:d]]), np.append(b1, w[d])
        W2n = np.hstack([W2, np.zeros((k, 1))])
        neuron = None
    elif kind == "split":
        if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < N:
            raise csm.InputError(f"`neuron` must be an index in 0..{N - 1} for kind='split', got "
                                 f"{neuron!r}")
        r = float(ratio)
        if not np.isfinite(r):
            raise csm.InputError(f"`ratio` must be a finite number, got {ratio!r}")
        W1n, b1n = np.vstack([W1, W1[neuron]]), np.append(b1, b1[neuron])
        W2n = np.hstack([W2, (1.0 - r) * W2[:, [neuron]]])
        W2n[:, neuron] = r * W2[:, neuron]
        neuron = int(neuron)
    else:
        raise csm.InputError(f"`kind` must be 'zero' or 'split', got {kind!r}")
    wide = problem.with_width(N + 1)
    th2 = wide.pack([(W1n, b1n), (W2n, b2)])
    L1, L2 = float(problem.loss(th)), float(wide.loss(th2))
    if abs(L1 - L2) > 1e-10 * max(1.0, L1):  # pragma: no cover - an embedding keeps the function
        raise AssertionError(f"embedding changed the loss: {L1!r} -> {L2!r}")
    return Embedding(kind, neuron, wide, th2, stationarity(problem, th, tol=tol),
                     stationarity(wide, th2, tol=tol))

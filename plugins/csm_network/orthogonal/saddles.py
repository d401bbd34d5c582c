"""Certified saddles of the orthogonal-input dynamics: one-sided directional derivatives along a
complete set of directions (docs/theory.md §1.11)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import csm

from .model import BiasFreeNetwork, forward


# ------------------------------------------------------------------ saddles
@dataclass(frozen=True)
class SaddleCertificate:
    """What :func:`certify_saddle` found at ``point``.

    ``stationary``: every one-sided derivative of a complete set is ``>= -tol scale`` (module
    docstring of :func:`certify_saddle`), ``min_derivative`` the least of them; ``escapes``
    ``(neuron, datum, L', L'', loss drop at t = 1e-2)`` along an escape direction of every zero
    neuron; ``saddle``: stationary, positive loss and an escape with ``L'' < 0`` whose loss drop
    (plain NumPy forward pass) is negative; ``residuals`` ``h(x_k) - y_k``.
    """

    point: np.ndarray
    loss: float
    stationary: bool
    min_derivative: float
    tol: float
    escapes: tuple
    residuals: np.ndarray

    @property
    def saddle(self) -> bool:
        return bool(self.stationary and self.loss > 0 and any(
            d2 < 0 and drop < 0 for (_, _, _, d2, drop) in self.escapes))


def _neuron_direction(model: BiasFreeNetwork, j: int, u: np.ndarray, alpha: float) -> np.ndarray:
    Wt = np.zeros((model.N, model.inputs_aug.shape[1]))
    a = np.zeros(model.N)
    Wt[j], a[j] = u, alpha
    v = model.from_neurons(Wt, a)
    return v / np.linalg.norm(v)


def certify_saddle(model: BiasFreeNetwork, theta: Any, *, tol: float = 1e-9) -> SaddleCertificate:
    """Directional stationarity and escape neurons of the bias-free network at ``theta``.

    The plugin's :meth:`~csm_network.NetworkProblem.stationarity` (Wu, Simsek, Ged) also asks the
    frozen output bias to be stationary (``sum_k r_k = 0``), which fails at the paper's saddles;
    this test is the same notion for the model's coordinates, with the exact one-sided
    derivatives of :func:`csm_network.stationarity.line_derivatives`.

    Completeness (orthogonal ``x~_k``): ``L'(theta; delta) = sum_j [alpha_j g_j +
    sum_k h_jk(u_j . x~_k)]`` with ``h_jk`` one-dimensional and positively homogeneous (the
    pre-activation of neuron ``j`` on datum ``k`` moves by ``u_j . x~_k`` only, the component of
    ``u_j`` outside the span changes nothing), so ``L' >= 0`` in every direction iff ``g_j = 0``
    and ``h_jk(+-1) >= 0``: the ``N (1 + 2n)`` directions ``e_{a_j}`` and ``+- x~_k`` on neuron
    ``j`` decide.  Escape (Wu's escape neuron, scalar output): a neuron with ``a_j = 0``,
    ``w~_j = 0`` and some ``r_k != 0``; along ``(u_j, a_j) = (x~_k / |x~_k|, -sign r_k)`` the loss
    is flat to first order and ``L'' = (4/n) a_j r_k (u . x~_k) < 0`` (measured, with the loss drop
    at ``t = 1e-2`` from a plain forward pass).  ``tol``, as in the plugin's stationarity: a
    pre-activation with ``|z| <= tol max(1, |w~| |x~|)`` is on the kink (one-sided derivatives
    there), a first-order quantity is 0 when ``<= tol scale``, ``scale = max(1, 2 mean |r|
    max |x~| max(1, max |a|))``.
    """
    from ..stationarity import line_derivatives

    th = np.asarray(theta, dtype=float)
    Theta = model.embed(th)
    Xt, y = model.inputs_aug, model.labels
    Wt, a = model.neurons(th)
    r = forward(model, th) - y
    scale = max(1.0, 2.0 * float(np.mean(np.abs(r))) * float(np.linalg.norm(Xt, axis=1).max())
                * max(1.0, float(np.abs(a).max())))
    thr = tol * scale
    worst = math.inf
    for j in range(model.N):
        dirs = [_neuron_direction(model, j, np.zeros(Xt.shape[1]), 1.0)]
        for k in range(model.n):
            xk = Xt[k] / np.linalg.norm(Xt[k])
            dirs += [_neuron_direction(model, j, xk, 0.0), _neuron_direction(model, j, -xk, 0.0)]
        for i, dv in enumerate(dirs):
            d1 = line_derivatives(model.net, Theta, model.embed(dv), tol=tol)[0]
            worst = min(worst, -abs(d1) if i == 0 else d1)  # the a_j block is linear: |g_j| = 0
    stationary = worst >= -thr
    escapes = []
    zero = (np.abs(a) == 0.0) & np.all(Wt == 0.0, axis=1)
    L = float(np.mean(r * r))
    for j in np.nonzero(zero)[0]:
        k = int(np.argmax(np.abs(r) * np.linalg.norm(Xt, axis=1)))
        if abs(r[k]) <= thr:
            continue
        dv = _neuron_direction(model, int(j), Xt[k] / np.linalg.norm(Xt[k]), -float(np.sign(r[k])))
        d1, d2 = line_derivatives(model.net, Theta, model.embed(dv), tol=tol)
        rt = forward(model, th + 1e-2 * dv) - y
        escapes.append((int(j), k, float(d1), float(d2), float(np.mean(rt * rt) - L)))
    return SaddleCertificate(th, L, bool(stationary), float(worst), thr, tuple(escapes), r)


def snap_to_saddle(model: BiasFreeNetwork, theta: Any, step: float, *, zero_below: float = 1e-2,
                   gtol: float = 1e-13, max_steps: int = 100_000) -> tuple[np.ndarray, int]:
    """The stationary point a plateau point sits at: neurons with ``|(w~_j, a_j)| <= zero_below``
    set to exactly 0, then gradient descent (:func:`csm.orbits.descend`, ``|G| <= gtol``) on the
    rest -- a zero neuron has zero gradient, so it stays 0 and the descent converges inside that
    invariant set.  Returns the point and the number of zeroed neurons."""
    from csm.orbits import CONVERGED, descend

    Wt, a = model.neurons(theta)
    small = np.sqrt(np.sum(Wt * Wt, axis=1) + a * a) <= zero_below
    Wt, a = Wt.copy(), a.copy()
    Wt[small], a[small] = 0.0, 0.0
    v = model.from_neurons(Wt, a)
    if not np.all(small):
        res = descend(model, v[None], step, max_steps=max_steps, tol=gtol)
        if res.status[0] != CONVERGED:
            raise csm.ConvergenceError(
                f"snap_to_saddle: gradient descent from the snapped point did not reach "
                f"|G| <= {gtol:g} in {max_steps} steps (|G| = {res.grad_norm[0]:.3g})",
                nit=int(res.steps[0]), residual=float(res.grad_norm[0]))
        v = res.theta[0]
    return v, int(small.sum())

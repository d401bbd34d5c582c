"""The network kernels on array-API arrays (torch on any device, CuPy, array_api_strict, ...).

:class:`~csm_network.NetworkProblem` sends a non-NumPy array-API input here (issue 16 item 5):
the loss, gradient and Hessian-vector product are computed in the input's namespace, on its
device and in its floating dtype (float32 or float64), and returned as arrays of the same kind
-- so that the same code runs on a GPU.  The algorithm is the NumPy reference path of
:mod:`csm_network.engine` (batched forward pass on neuron-major activations ``(B, d_l, m)``,
backpropagation, Pearlmutter's R-operator, ``sigma'`` at a breakpoint from the left piece),
written with array-API standard functions only (``matmul`` with broadcasting, ``where``,
``sum``, ``concat``, ``reshape``, slicing; no in-place updates).  NumPy inputs never come here.

Needs the optional package ``array-api-compat`` (``array_namespace``); without it every input
takes the NumPy path (which converts what ``np.asarray`` accepts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from csm.backends import device

from .activations import Activation

__all__ = ["XpKernels"]

def _mT(xp: Any, a: Any) -> Any:
    """Transpose of the last two axes."""
    return xp.matrix_transpose(a) if hasattr(xp, "matrix_transpose") else xp.swapaxes(a, -1, -2)


class XpKernels:
    """Loss, gradient and Hessian-vector products of one problem for array-API batches.

    ``lay``: the :class:`~csm_network.engine.Layout`; ``act``: the activation; ``X (m, d_0)``,
    ``Y (m, d_L)``: the data as NumPy float64, converted once per (namespace, dtype, device).
    """

    def __init__(self, lay: Any, act: Activation, X: np.ndarray, Y: np.ndarray) -> None:
        self.lay, self.act = lay, act
        self._XT = np.ascontiguousarray(X.T)
        self._YT = np.ascontiguousarray(Y.T)
        self._cache: dict = {}
        t, C, D1, D2 = act._tables
        self._t = [float(x) for x in t]
        self._tables = [[[float(c) for c in row] for row in tab] for tab in (C, D1, D2)]

    # ------------------------------------------------------------------ helpers
    def data(self, xp: Any, like: Any) -> tuple[Any, Any]:
        """``XT (d_0, m)``, ``YT (1, d_L, m)`` in ``like``'s namespace, dtype and device."""
        dev = device(like)
        key = (id(xp), str(like.dtype), str(dev))
        out = self._cache.get(key)
        if out is None:
            XT = xp.asarray(self._XT, dtype=like.dtype, device=dev)
            YT = xp.reshape(xp.asarray(self._YT, dtype=like.dtype, device=dev),
                            (1,) + self._YT.shape)
            out = (XT, YT)
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = out
        return out

    def _sigma(self, xp: Any, z: Any, which: int) -> Any:
        """``sigma``, ``sigma'`` or ``sigma''`` (``which`` = 0, 1, 2) elementwise, left piece at
        a breakpoint."""
        rl = self.act.relu_like
        if rl is not None:
            am, ap = rl
            if which == 2:
                return xp.zeros_like(z)
            pos = z > 0
            if which == 0:
                return xp.where(pos, ap * z, am * z)
            return xp.where(pos, xp.full_like(z, ap), xp.full_like(z, am))
        tab = self._tables[which]

        def poly(coef):
            out = xp.full_like(z, coef[-1])
            for c in coef[-2::-1]:
                out = out * z + c
            return out

        out = poly(tab[0])
        for k, tk in enumerate(self._t):
            out = xp.where(z > tk, poly(tab[k + 1]), out)
        return out

    def _views(self, xp: Any, T: Any) -> list[tuple[Any, Any]]:
        B = T.shape[0]
        return [(xp.reshape(T[:, sw.start:sw.stop], (B,) + shp), T[:, sb.start:sb.stop])
                for sw, sb, shp in self.lay.slices]

    def _forward(self, xp: Any, T: Any, XT: Any) -> tuple[Any, list, list]:
        Zs, As = [], []
        A = XT
        V = self._views(xp, T)
        for l, (W, b) in enumerate(V):
            Z = xp.matmul(W, A) + b[:, :, None]
            if l == len(V) - 1:
                return Z, Zs, As
            A = self._sigma(xp, Z, 0)
            Zs.append(Z)
            As.append(A)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _weigh(xp: Any, E: Any, wts: Any, m: int, factor: float) -> Any:
        if wts is None:
            return E * (factor / m)
        return (factor * E) * wts[:, None, :]

    def _flat(self, xp: Any, parts: list) -> Any:
        B = parts[0][0].shape[0]
        cols = []
        for gW, gb in parts:
            cols.append(xp.reshape(gW, (B, -1)))
            cols.append(gb)
        return xp.concat(cols, axis=1)

    # ------------------------------------------------------------------ kernels
    def loss(self, xp: Any, T: Any, wts: Any = None) -> Any:
        XT, YT = self.data(xp, T)
        F = self._forward(xp, T, XT)[0]
        E = F - YT
        return xp.sum(xp.sum(self._weigh(xp, E, wts, XT.shape[1], 1.0) * E, axis=2), axis=1)

    def loss_and_gradient(self, xp: Any, T: Any, wts: Any = None) -> tuple[Any, Any]:
        XT, YT = self.data(xp, T)
        m = XT.shape[1]
        F, Zs, As = self._forward(xp, T, XT)
        E = F - YT
        L = xp.sum(xp.sum(self._weigh(xp, E, wts, m, 1.0) * E, axis=2), axis=1)
        V = self._views(xp, T)
        delta = self._weigh(xp, E, wts, m, 2.0)
        parts = []
        for l in range(self.lay.n_layers - 1, -1, -1):
            gb = xp.sum(delta, axis=2)
            Aprev = XT if l == 0 else As[l - 1]
            gW = xp.matmul(delta, _mT(xp, Aprev))
            parts.append((gW, gb))
            if l:
                delta = xp.matmul(_mT(xp, V[l][0]), delta) * self._sigma(xp, Zs[l - 1], 1)
        return L, self._flat(xp, parts[::-1])

    def hvp(self, xp: Any, T: Any, Vd: Any, wts: Any = None) -> Any:
        XT, YT = self.data(xp, T)
        m = XT.shape[1]
        F, Zs, As = self._forward(xp, T, XT)
        W = self._views(xp, T)
        dW = self._views(xp, Vd)
        Ds = [self._sigma(xp, Z, 1) for Z in Zs]
        curv = not self.act.piecewise_linear
        Dds = [self._sigma(xp, Z, 2) for Z in Zs] if curv else None
        RAs = []
        RA = None
        nl = self.lay.n_layers
        for l in range(nl):
            if l == 0:
                RZ = xp.matmul(dW[0][0], XT)
            else:
                RZ = xp.matmul(W[l][0], RA) + xp.matmul(dW[l][0], As[l - 1])
            RZ = RZ + dW[l][1][:, :, None]
            if l == nl - 1:
                break
            RA = Ds[l] * RZ
            RAs.append((RZ, RA))
        delta = self._weigh(xp, F - YT, wts, m, 2.0)
        Rdelta = self._weigh(xp, RZ, wts, m, 2.0)
        parts = []
        for l in range(nl - 1, -1, -1):
            hb = xp.sum(Rdelta, axis=2)
            if l == 0:
                parts.append((xp.matmul(Rdelta, _mT(xp, XT)), hb))
                break
            hW = (xp.matmul(Rdelta, _mT(xp, As[l - 1]))
                  + xp.matmul(delta, _mT(xp, RAs[l - 1][1])))
            parts.append((hW, hb))
            Wt = _mT(xp, W[l][0])
            back = xp.matmul(Wt, delta)
            Rback = xp.matmul(Wt, Rdelta) + xp.matmul(_mT(xp, dW[l][0]), delta)
            Rdelta = Rback * Ds[l - 1]
            if curv:
                Rdelta = Rdelta + back * Dds[l - 1] * RAs[l - 1][0]
            delta = back * Ds[l - 1]
        return self._flat(xp, parts[::-1])

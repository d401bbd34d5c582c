"""Batched forward pass, backpropagation and R-operator of fully connected networks (paper §3).

Parameter vector (:func:`Layout.pack` / :func:`Layout.unpack`): for layers ``l = 1..L``
(widths ``(d_0, d_1, ..., d_L)``), in this order,

    theta = (W_1 row-major (d_1 x d_0), b_1 (d_1), W_2 (d_2 x d_1), b_2, ..., W_L, b_L),

so ``dim = sum_l d_l (d_{l-1} + 1)``.  Realisation ``N_theta(x) = W_L a_{L-1} + b_L`` with
``a_0 = x`` and ``a_l = sigma(W_l a_{l-1} + b_l)``; loss ``L = (1/m) sum_i |N_theta(x_i) - y_i|^2``.

Every kernel works on a batch ``Theta (B, d)`` at once, with activations stored neuron-major,
``(B, d_l, m)``: the first layer is one matrix product ``(B d_1, d_0) @ (d_0, m)``, the others
batched ``matmul``; a Python loop runs over layers, and over blocks of networks whose arrays
fit in cache (:func:`chunk_size`, about 1 MiB per array: about twice as fast as one pass over a
large batch, whose elementwise work is memory bound).

* :func:`loss_and_gradient` -- backpropagation (``sigma'`` at a breakpoint from the left piece,
  so ``relu'(0) = 0`` as in PyTorch).
* :func:`hvp` -- Pearlmutter's R-operator (forward-over-reverse): the exact Hessian-vector
  product of the polynomial piece of ``L`` selected by that convention.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .activations import Activation

__all__ = ["Layout", "forward", "loss", "loss_and_gradient", "hvp"]


class Layout:
    """Where each layer's ``W_l`` and ``b_l`` sit in ``theta`` (see the module docstring)."""

    def __init__(self, widths: Sequence[int]) -> None:
        self.widths = tuple(int(w) for w in widths)
        self.slices: list[tuple[slice, slice, tuple[int, int]]] = []
        off = 0
        for a, b in zip(self.widths[:-1], self.widths[1:]):
            sw = slice(off, off + a * b)
            off += a * b
            sb = slice(off, off + b)
            off += b
            self.slices.append((sw, sb, (b, a)))
        self.dim = off

    @property
    def n_layers(self) -> int:
        return len(self.slices)

    def views(self, T: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W_l (B, d_l, d_{l-1}), b_l (B, d_l))]`` as views of ``T (B, d)``."""
        B = T.shape[0]
        return [(T[:, sw].reshape((B,) + shp), T[:, sb]) for sw, sb, shp in self.slices]

    def pack(self, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """``theta (d,)`` from ``[(W_1, b_1), ..., (W_L, b_L)]`` (``W_l``: ``(d_l, d_{l-1})``)."""
        out = np.empty(self.dim)
        for (sw, sb, shp), (W, b) in zip(self.slices, layers):
            out[sw] = np.asarray(W, dtype=float).reshape(shp).ravel()
            out[sb] = np.asarray(b, dtype=float).reshape(shp[0])
        return out

    def unpack(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Inverse of :meth:`pack` (copies)."""
        return [(theta[sw].reshape(shp).copy(), theta[sb].copy()) for sw, sb, shp in self.slices]


def _first(W: np.ndarray, XT: np.ndarray) -> np.ndarray:
    """``W (B, h, d0) @ XT (d0, m)`` as one GEMM -> ``(B, h, m)``."""
    B, h, d0 = W.shape
    return (W.reshape(B * h, d0) @ XT).reshape(B, h, XT.shape[1])


def _tmm(W: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``W^T @ D`` batched: ``(B, k, h), (B, k, m) -> (B, h, m)`` (einsum for ``k = 1``, where
    BLAS is slow on rank-one products)."""
    if W.shape[1] == 1:
        return np.einsum("bkh,bkm->bhm", W, D)
    return np.matmul(W.transpose(0, 2, 1), D)


def forward(lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray, keep: bool = False
            ) -> np.ndarray | tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Outputs ``F (B, d_L, m)``; with ``keep`` also the lists ``Z_l`` and ``A_l`` (hidden layers)."""
    V = lay.views(T)
    Zs, As = [], []
    A = None
    for l, (W, b) in enumerate(V):
        Z = _first(W, XT) if l == 0 else np.matmul(W, A)
        Z += b[:, :, None]
        if l == len(V) - 1:
            return (Z, Zs, As) if keep else Z
        A = act.value(Z)
        if keep:
            Zs.append(Z)
            As.append(A)
    raise AssertionError("unreachable")  # pragma: no cover


#: Elements per hidden-layer array of one chunk of the batch (about 1 MiB: stays in cache).
CHUNK_ELEMENTS = 1 << 17


def chunk_size(lay: Layout, m: int, factor: int = 1) -> int:
    """Networks per chunk: the batch is processed in blocks whose arrays fit in cache (a loop over
    blocks of networks, never over single networks unless one network alone fills a block)."""
    return max(1, CHUNK_ELEMENTS // (factor * max(lay.widths[1:]) * m))


def loss(lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray, YT: np.ndarray) -> np.ndarray:
    """``(B,)`` losses."""
    c = chunk_size(lay, XT.shape[1])
    if T.shape[0] > c:
        return np.concatenate([loss(lay, act, T[s:s + c], XT, YT) for s in range(0, T.shape[0], c)])
    E = forward(lay, act, T, XT) - YT
    return np.einsum("bkm,bkm->b", E, E) / XT.shape[1]


def loss_and_gradient(lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray,
                      YT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B,)`` losses and ``(B, d)`` gradients by backpropagation."""
    m = XT.shape[1]
    c = chunk_size(lay, m)
    if T.shape[0] > c:
        parts = [loss_and_gradient(lay, act, T[s:s + c], XT, YT) for s in range(0, T.shape[0], c)]
        return np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts])
    F, Zs, As = forward(lay, act, T, XT, keep=True)
    E = F - YT
    L = np.einsum("bkm,bkm->b", E, E) / m
    G = np.empty_like(T)
    GV = lay.views(G)
    V = lay.views(T)
    delta = (2.0 / m) * E
    for l in range(lay.n_layers - 1, -1, -1):
        gW, gb = GV[l]
        np.sum(delta, axis=2, out=gb)
        if l == 0:
            B, h, _ = delta.shape
            gW[...] = (delta.reshape(B * h, m) @ XT.T).reshape(gW.shape)
        else:
            np.matmul(delta, As[l - 1].transpose(0, 2, 1), out=gW)
            delta = _tmm(V[l][0], delta)
            delta *= act.derivative(Zs[l - 1])
    return L, G


def hvp(lay: Layout, act: Activation, T: np.ndarray, Vdir: np.ndarray, XT: np.ndarray,
        YT: np.ndarray) -> np.ndarray:
    """Rowwise ``H(T_b) V_b`` by the R-operator (forward-over-reverse), ``(B, d)``.

    Forward: ``R(z_l) = W_l R(a_{l-1}) + dW_l a_{l-1} + db_l``, ``R(a_l) = sigma'(z_l) R(z_l)``.
    Backward with ``delta_L = (2/m) e``: ``R(delta_L) = (2/m) R(z_L)``,
    ``R(grad W_l) = R(delta_l) a_{l-1}^T + delta_l R(a_{l-1})^T``, and
    ``R(delta_{l-1}) = (W_l^T R(delta_l) + dW_l^T delta_l) sigma'(z_{l-1})
    + (W_l^T delta_l) sigma''(z_{l-1}) R(z_{l-1})``.
    """
    m = XT.shape[1]
    c = chunk_size(lay, m, 2)
    if T.shape[0] > c:
        return np.concatenate([hvp(lay, act, T[s:s + c], Vdir[s:s + c], XT, YT)
                               for s in range(0, T.shape[0], c)])
    F, Zs, As = forward(lay, act, T, XT, keep=True)
    W = lay.views(T)
    dW = lay.views(Vdir)
    Ds = [act.derivative(Z) for Z in Zs]
    curv = not act.piecewise_linear
    Dds = [act.second_derivative(Z) for Z in Zs] if curv else None
    # R-forward
    RZs, RAs = [], []
    RA = None
    RF = None
    for l in range(lay.n_layers):
        Wl, _ = W[l]
        dWl, dbl = dW[l]
        if l == 0:
            RZ = _first(dWl, XT)
        else:
            RZ = np.matmul(Wl, RA) + np.matmul(dWl, As[l - 1])
        RZ += dbl[:, :, None]
        if l == lay.n_layers - 1:
            RF = RZ
            break
        RA = Ds[l] * RZ
        RZs.append(RZ)
        RAs.append(RA)
    # backward and R-backward
    H = np.empty_like(T)
    HV = lay.views(H)
    delta = (2.0 / m) * (F - YT)
    Rdelta = (2.0 / m) * RF
    for l in range(lay.n_layers - 1, -1, -1):
        hW, hb = HV[l]
        np.sum(Rdelta, axis=2, out=hb)
        if l == 0:
            B, h, _ = Rdelta.shape
            hW[...] = (Rdelta.reshape(B * h, m) @ XT.T).reshape(hW.shape)
            break
        hW[...] = (np.matmul(Rdelta, As[l - 1].transpose(0, 2, 1))
                   + np.matmul(delta, RAs[l - 1].transpose(0, 2, 1)))
        back = _tmm(W[l][0], delta)
        # W^T R(delta) + dW^T delta as one product with the inner dimension doubled
        Rback = _tmm(np.concatenate([W[l][0], dW[l][0]], axis=1),
                     np.concatenate([Rdelta, delta], axis=1))
        Rdelta = Rback * Ds[l - 1]
        if curv:
            Rdelta += back * Dds[l - 1] * RZs[l - 1]
        delta = back * Ds[l - 1]
    return H

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

**Sample weights.**  Every kernel takes optional weights ``wts``: ``None`` (the mean,
``w_i = 1/m``), or an array ``(1, m)`` (one weight vector for all networks) or ``(B, m)`` (one per
network of the batch), for ``L_b = sum_i w_bi |N_b(x_i) - y_i|^2`` -- minibatches and
importance weights of stochastic gradient descent in the same batched pass.

**Compiled kernels** (optional, :mod:`csm_network._numba_kernel`; numba, ``pip install
csm[fast]``; off with ``CSM_DISABLE_NUMBA=1``): for a ReLU-like activation (``relu``,
``leaky_relu``, ``linear``, a user piecewise polynomial ``alpha_- z`` / ``alpha_+ z`` split at
0) the loss, gradient and Hessian-vector product run one network at a time with everything of
a network in cache -- fused loops over the samples for one hidden layer with few inputs and
outputs (a specialised kernel for widths ``(1, h, 1)``), BLAS products into preallocated
buffers plus fused elementwise passes otherwise.  The NumPy code below is the reference
(``fast=False``); the two agree to rounding (``tests/test_engine_paths.py``).  ``fast=None``
(default) uses the compiled kernel where it applies.

**Array-API inputs** (torch on any device, CuPy, ...) do not come here:
:class:`~csm_network.NetworkProblem` sends them to :mod:`csm_network._array_api`, the same
algorithm as the NumPy path in the input's namespace.
"""

from __future__ import annotations

import functools

from typing import Sequence

import numpy as np

from csm.backends import optional_kernel

from .activations import Activation

__all__ = ["Layout", "forward", "loss", "loss_and_gradient", "hvp", "numba_kernel", "kernel_for"]


#: The optional compiled kernels (:mod:`csm_network._numba_kernel`), or ``None``
#: (``CSM_DISABLE_NUMBA`` set, numba missing): the NumPy code is the reference.
_NK = optional_kernel("csm_network._numba_kernel")


def numba_kernel():
    """The compiled kernel module in use by default (``None``: NumPy only)."""
    return _NK


#: One hidden layer with at most this many inputs and outputs: fused loops over the samples
#: (the products are too thin for BLAS); otherwise BLAS products per network.
SHALLOW_FUSED_MAX = 8


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


# ---------------------------------------------------------------------- dispatch
def kernel_for(lay: Layout, act: Activation, fast: bool | None = None) -> str | None:
    """Which compiled kernel computes ``lay`` / ``act``: ``"scalar"`` (widths ``(1, h, 1)``),
    ``"shallow"`` (one hidden layer, ``d_0, d_L <= SHALLOW_FUSED_MAX``), ``"mlp"`` (otherwise),
    or ``None`` (the NumPy path: ``fast=False``, numba unavailable, or an activation that is
    not ReLU-like).  ``fast=True`` raises ``RuntimeError`` where no kernel applies."""
    nk = _NK
    if fast is False:
        return None
    if fast and nk is None:
        try:  # explicit request: the kernel even where CSM_DISABLE_NUMBA turns the default off
            from . import _numba_kernel as nk
        except Exception as exc:  # pragma: no cover - numba missing
            raise RuntimeError(f"fast=True needs numba (pip install 'csm[fast]'): {exc}") from None
    if nk is None:
        return None
    if act.relu_like is None:
        if fast:
            raise RuntimeError(f"fast=True: no compiled kernel for this network (activation "
                               f"{act.name!r} is not ReLU-like)")
        return None
    w = lay.widths
    if len(w) == 3:
        if w[0] == 1 and w[2] == 1:
            return "scalar"
        if w[0] <= SHALLOW_FUSED_MAX and w[2] <= SHALLOW_FUSED_MAX:
            return "shallow"
    return "mlp"


def _kernel_module():
    if _NK is not None:
        return _NK
    from . import _numba_kernel

    return _numba_kernel


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def precision(T: np.ndarray) -> np.dtype:
    """The dtype a batch is computed in: float32 for float32 parameters (data, weights and
    results follow), float64 otherwise."""
    return _F32 if T.dtype == _F32 else _F64


def _c(a: np.ndarray, dt: np.dtype) -> np.ndarray:
    return a if a.dtype == dt and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=dt)


@functools.lru_cache(maxsize=64)
def _mean_weights(m: int, dt: np.dtype) -> np.ndarray:
    """The default weights ``1/m`` as one row ``(1, m)``, cached (every kernel call without
    sample weights needs it; the kernels only read it; left writeable, since numba compiles
    read-only arrays as another type)."""
    return np.full((1, m), 1.0 / m, dtype=dt)


def _yt2(YT: np.ndarray) -> np.ndarray:
    """Targets as ``(d_L, m)`` (accepts the ``(1, d_L, m)`` form)."""
    return YT.reshape(YT.shape[-2], YT.shape[-1])


def _wrows(wts: np.ndarray | None, m: int, dt: np.dtype) -> np.ndarray:
    return _mean_weights(m, dt) if wts is None else _c(wts, dt)


def _kernel_data(act: Activation, T: np.ndarray, XT: np.ndarray, YT: np.ndarray,
                 wts: np.ndarray | None):
    """``(dt, T, XT, Y2, W, am, ap)`` for a compiled kernel: everything contiguous in the
    batch's precision, weights as rows, the activation's slopes as scalars of that dtype."""
    dt = precision(T)
    am, ap = act.relu_like
    return (dt, _c(T, dt), _c(XT, dt), _c(_yt2(YT), dt), _wrows(wts, XT.shape[1], dt),
            dt.type(am), dt.type(ap))


def _numpy_data(T: np.ndarray, XT: np.ndarray, YT: np.ndarray, wts: np.ndarray | None):
    """``(dt, XT, Y3, wts)`` for the NumPy path: data in the batch's precision, targets as
    ``(1, d_L, m)``."""
    dt = precision(T)
    return dt, _c(XT, dt), _c(_yt2(YT), dt)[None], (None if wts is None else _c(wts, dt))


def _compiled_lg(kind: str, lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray,
                 YT: np.ndarray, wts: np.ndarray | None, want_grad: bool
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    nk = _kernel_module()
    dt, T, XT, Y2, W, am, ap = _kernel_data(act, T, XT, YT, wts)
    B = T.shape[0]
    L = np.empty(B, dt)
    G = np.empty((B if want_grad else 1, lay.dim), dt)  # loss only: one scratch row
    h = lay.widths[1]
    if kind == "mlp":
        nk.mlp_loss_grad(T, XT, Y2, W, np.asarray(lay.widths, dtype=np.int64), am, ap,
                         want_grad, L, G)
    elif kind == "scalar":
        nk.scalar_loss_grad(T, XT[0], Y2[0], W, h, am, ap, want_grad, L, G)
    elif lay.widths[2] == 1:
        nk.K1_LOSS_GRAD[lay.widths[0]](T, XT, Y2[0], W, h, am, ap, want_grad, L, G)
    else:
        nk.shallow_loss_grad(T, XT, Y2, W, h, lay.widths[2], am, ap, want_grad, L, G)
    return L, (G if want_grad else None)


# ---------------------------------------------------------------------- kernels
def _chunks(B: int, c: int, wts: np.ndarray | None):
    """``(slice, weights of the slice)`` over blocks of ``c`` networks."""
    for s in range(0, B, c):
        sl = slice(s, min(B, s + c))
        yield sl, (None if wts is None else (wts if wts.shape[0] == 1 else wts[sl]))


def _residual_loss(E: np.ndarray, wts: np.ndarray | None, m: int) -> np.ndarray:
    if wts is None:
        return np.einsum("bkm,bkm->b", E, E) / m
    return np.einsum("bkm,bkm,bm->b", E, E, np.broadcast_to(wts, (E.shape[0], m)))


def _delta(E: np.ndarray, wts: np.ndarray | None, m: int) -> np.ndarray:
    """``2 w_i e_i`` (``w_i = 1/m`` by default)."""
    if wts is None:
        return (2.0 / m) * E
    return (2.0 * E) * wts[:, None, :]


def loss(lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray, YT: np.ndarray,
         wts: np.ndarray | None = None, fast: bool | None = None) -> np.ndarray:
    """``(B,)`` losses ``sum_i w_i |N_b(x_i) - y_i|^2`` (``w_i = 1/m`` by default)."""
    kind = kernel_for(lay, act, fast)
    if kind is not None:
        return _compiled_lg(kind, lay, act, T, XT, YT, wts, False)[0]
    m = XT.shape[1]
    dt, XT, Y3, wts = _numpy_data(T, XT, YT, wts)
    c = chunk_size(lay, m)
    out = np.empty(T.shape[0], dt)
    for sl, w in _chunks(T.shape[0], c, wts):
        out[sl] = _residual_loss(forward(lay, act, T[sl], XT) - Y3, w, m)
    return out


def loss_and_gradient(lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray,
                      YT: np.ndarray, wts: np.ndarray | None = None, fast: bool | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(B,)`` losses and ``(B, d)`` gradients by backpropagation."""
    kind = kernel_for(lay, act, fast)
    if kind is not None:
        return _compiled_lg(kind, lay, act, T, XT, YT, wts, True)
    m = XT.shape[1]
    dt, XT, Y3, wts = _numpy_data(T, XT, YT, wts)
    c = chunk_size(lay, m)
    L = np.empty(T.shape[0], dt)
    G = np.empty((T.shape[0], lay.dim), dt)
    for sl, w in _chunks(T.shape[0], c, wts):
        L[sl], G[sl] = _loss_and_gradient(lay, act, T[sl], XT, Y3, w)
    return L, G


def _loss_and_gradient(lay: Layout, act: Activation, T: np.ndarray, XT: np.ndarray,
                       YT: np.ndarray, wts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    m = XT.shape[1]
    F, Zs, As = forward(lay, act, T, XT, keep=True)
    E = F - YT
    L = _residual_loss(E, wts, m)
    G = np.empty_like(T)
    GV = lay.views(G)
    V = lay.views(T)
    delta = _delta(E, wts, m)
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
        YT: np.ndarray, wts: np.ndarray | None = None, fast: bool | None = None) -> np.ndarray:
    """Rowwise ``H(T_b) V_b`` by the R-operator (forward-over-reverse), ``(B, d)``.

    Forward: ``R(z_l) = W_l R(a_{l-1}) + dW_l a_{l-1} + db_l``, ``R(a_l) = sigma'(z_l) R(z_l)``.
    Backward with ``delta_L = 2 w e`` (``w = 1/m`` by default): ``R(delta_L) = 2 w R(z_L)``,
    ``R(grad W_l) = R(delta_l) a_{l-1}^T + delta_l R(a_{l-1})^T``, and
    ``R(delta_{l-1}) = (W_l^T R(delta_l) + dW_l^T delta_l) sigma'(z_{l-1})
    + (W_l^T delta_l) sigma''(z_{l-1}) R(z_{l-1})``.
    """
    kind = kernel_for(lay, act, fast)
    m = XT.shape[1]
    if kind is not None:
        nk = _kernel_module()
        dt, T, XT, Y2, W, am, ap = _kernel_data(act, T, XT, YT, wts)
        Vdir = _c(Vdir, dt)
        H = np.empty((T.shape[0], lay.dim), dt)
        if kind == "mlp":
            nk.mlp_hvp(T, Vdir, XT, Y2, W, np.asarray(lay.widths, dtype=np.int64), am, ap, H)
        elif kind == "scalar":
            nk.scalar_hvp(T, Vdir, XT[0], Y2[0], W, lay.widths[1], am, ap, H)
        elif lay.widths[2] == 1:
            nk.K1_HVP[lay.widths[0]](T, Vdir, XT, Y2[0], W, lay.widths[1], am, ap, H)
        else:
            nk.shallow_hvp(T, Vdir, XT, Y2, W, lay.widths[1], lay.widths[2], am, ap, H)
        return H
    dt, XT, Y3, wts = _numpy_data(T, XT, YT, wts)
    c = chunk_size(lay, m, 2)
    H = np.empty((T.shape[0], lay.dim), dt)
    for sl, w in _chunks(T.shape[0], c, wts):
        H[sl] = _hvp(lay, act, T[sl], Vdir[sl], XT, Y3, w)
    return H


def _hvp(lay: Layout, act: Activation, T: np.ndarray, Vdir: np.ndarray, XT: np.ndarray,
         YT: np.ndarray, wts: np.ndarray | None) -> np.ndarray:
    m = XT.shape[1]
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
    delta = _delta(F - YT, wts, m)
    Rdelta = _delta(RF, wts, m)
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

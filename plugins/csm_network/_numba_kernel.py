"""Optional compiled kernels of the ``network`` plugin (ReLU-like activations, any depth).

Imported by :mod:`csm_network.engine` only when numba is importable and the environment
variable ``CSM_DISABLE_NUMBA`` is unset (or ``0``/empty); the NumPy code of ``engine`` stays the
tested reference (``plugins/csm_network/tests/test_engine_paths.py`` compares the two).

Scope: a ReLU-like activation ``sigma(z) = alpha_+ z`` for ``z > 0``, ``alpha_- z`` otherwise
(``relu``: ``(0, 1)``, ``leaky_relu:a``: ``(a, 1)``, ``linear``: ``(1, 1)``), with the engine's
convention at the kink (``sigma'(0) = alpha_-``, the left piece); other activations take the
NumPy path.  Sample weights ``WT``: one row ``(1, m)`` for all networks or one per network
``(B, m)``; the loss is ``sum_i w_i |N(x_i) - y_i|^2`` (``w_i = 1/m`` for the mean).

Every kernel runs over the batch one network at a time, with everything of a network in L1/L2
cache and the batch streamed once:

* **one hidden layer, few inputs and outputs** (``(d_0, h, k)``, ``d_0, k <= 8``): per neuron
  ``j`` one fused pass over the samples forward (``z_j = b_j + W_j x``, four input columns per
  pass, then ``f += v_j sigma(z_j)``) and one backward (``grad v_j``, ``grad b_j`` and four
  columns of ``grad W_j`` per pass); :func:`scalar_loss_grad` / :func:`scalar_hvp` for widths
  ``(1, h, 1)`` (nothing stored per neuron), ``K1_LOSS_GRAD[d_0]`` / ``K1_HVP[d_0]`` for
  one output (one kernel per input width, every column in the same pass: :func:`_make_k1`),
  :func:`shallow_loss_grad` / :func:`shallow_hvp` otherwise;
* **any depth** (:func:`mlp_loss_grad` / :func:`mlp_hvp`): the products of the wide layers by
  BLAS (``np.dot`` into preallocated buffers), a thin first or last layer (``<= THIN`` wide)
  by fused loops, bias + activation and ``delta sigma'`` + bias gradient as one pass each.

The Hessian-vector product is Pearlmutter's R-operator on the same passes (``sigma'' = 0`` for
a ReLU-like activation, so only ``sigma'`` enters).  Every inner loop runs over the samples
(contiguous, vectorised by LLVM); the sums over samples are vectorised too, which needs
reassociation: ``fastmath={"reassoc", "contract", "nsz"}`` (sums in another order and fused
multiply-adds: results agree with the NumPy path to rounding, about 1e-15 relative; no
approximation of functions, and inf/nan behave as in NumPy since neither ``nnan`` nor ``ninf``
is set).  A pre-activation that is exactly 0 selects ``alpha_-`` on both paths; one that
rounds to either side of 0 depending on the order of the sum may select different pieces.

Every kernel is generic in the floating dtype: float64, or float32 for float32 parameters
(data, weights and buffers in the parameters' dtype; constants and accumulators typed from it,
``dt.type(0)``, so that no float64 literal promotes a float32 loop).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

__all__ = ["scalar_loss_grad", "scalar_hvp", "K1_LOSS_GRAD", "K1_HVP", "shallow_loss_grad",
           "shallow_hvp", "mlp_loss_grad", "mlp_hvp"]

_CACHE = not os.environ.get("CSM_NUMBA_NO_CACHE")
_JIT = dict(cache=_CACHE, nogil=True, error_model="numpy", boundscheck=False,
            fastmath={"reassoc", "contract", "nsz"})


@njit(**_JIT)
def _affine(z, th, off, d0, bias, XT, m):
    """``z[i] = bias + sum_c th[off + c] * XT[c, i]`` (columns four at a time)."""
    n = min(4, d0)
    if n == 1:
        w0 = th[off]
        x0 = XT[0]
        for i in range(m):
            z[i] = bias + w0 * x0[i]
    elif n == 2:
        w0, w1 = th[off], th[off + 1]
        x0, x1 = XT[0], XT[1]
        for i in range(m):
            z[i] = bias + w0 * x0[i] + w1 * x1[i]
    elif n == 3:
        w0, w1, w2 = th[off], th[off + 1], th[off + 2]
        x0, x1, x2 = XT[0], XT[1], XT[2]
        for i in range(m):
            z[i] = bias + w0 * x0[i] + w1 * x1[i] + w2 * x2[i]
    else:
        w0, w1, w2, w3 = th[off], th[off + 1], th[off + 2], th[off + 3]
        x0, x1, x2, x3 = XT[0], XT[1], XT[2], XT[3]
        for i in range(m):
            z[i] = bias + w0 * x0[i] + w1 * x1[i] + w2 * x2[i] + w3 * x3[i]
    c = n
    while c < d0:
        n = min(4, d0 - c)
        if n == 1:
            w0 = th[off + c]
            x0 = XT[c]
            for i in range(m):
                z[i] += w0 * x0[i]
        elif n == 2:
            w0, w1 = th[off + c], th[off + c + 1]
            x0, x1 = XT[c], XT[c + 1]
            for i in range(m):
                z[i] += w0 * x0[i] + w1 * x1[i]
        elif n == 3:
            w0, w1, w2 = th[off + c], th[off + c + 1], th[off + c + 2]
            x0, x1, x2 = XT[c], XT[c + 1], XT[c + 2]
            for i in range(m):
                z[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i]
        else:
            w0, w1, w2, w3 = th[off + c], th[off + c + 1], th[off + c + 2], th[off + c + 3]
            x0, x1, x2, x3 = XT[c], XT[c + 1], XT[c + 2], XT[c + 3]
            for i in range(m):
                z[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i] + w3 * x3[i]
        c += n


@njit(**_JIT)
def _colsums(t, XT, g, off, scale, d0, m):
    """``g[off + c] = scale * sum_i t[i] XT[c, i]`` for every column (four at a time)."""
    zero = t.dtype.type(0)
    c = 0
    while c < d0:
        n = min(4, d0 - c)
        if n == 1:
            x0 = XT[c]
            s0 = zero
            for i in range(m):
                s0 += t[i] * x0[i]
            g[off + c] = scale * s0
        elif n == 2:
            x0, x1 = XT[c], XT[c + 1]
            s0 = zero
            s1 = zero
            for i in range(m):
                ti = t[i]
                s0 += ti * x0[i]
                s1 += ti * x1[i]
            g[off + c] = scale * s0
            g[off + c + 1] = scale * s1
        elif n == 3:
            x0, x1, x2 = XT[c], XT[c + 1], XT[c + 2]
            s0 = zero
            s1 = zero
            s2 = zero
            for i in range(m):
                ti = t[i]
                s0 += ti * x0[i]
                s1 += ti * x1[i]
                s2 += ti * x2[i]
            g[off + c] = scale * s0
            g[off + c + 1] = scale * s1
            g[off + c + 2] = scale * s2
        else:
            x0, x1, x2, x3 = XT[c], XT[c + 1], XT[c + 2], XT[c + 3]
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for i in range(m):
                ti = t[i]
                s0 += ti * x0[i]
                s1 += ti * x1[i]
                s2 += ti * x2[i]
                s3 += ti * x3[i]
            g[off + c] = scale * s0
            g[off + c + 1] = scale * s1
            g[off + c + 2] = scale * s2
            g[off + c + 3] = scale * s3
        c += n


@njit(**_JIT)
def _forward(th, XT, h, k, am, ap, Z, F):
    """Pre-activations ``Z (h, m)`` and outputs ``F (k, m)`` of one network ``th``."""
    zero = th.dtype.type(0)
    d0, m = XT.shape
    ob1 = h * d0
    oW2 = ob1 + h
    ob2 = oW2 + k * h
    for o in range(k):
        c2 = th[ob2 + o]
        fo = F[o]
        for i in range(m):
            fo[i] = c2
    for j in range(h):
        z = Z[j]
        _affine(z, th, j * d0, d0, th[ob1 + j], XT, m)
        for o in range(k):
            v = th[oW2 + o * h + j]
            fo = F[o]
            for i in range(m):
                zi = z[i]
                fo[i] += v * (zi * (ap if zi > zero else am))


@njit(**_JIT)
def scalar_loss_grad(T, x, y, WT, h, am, ap, want_grad, L, G):
    """:func:`shallow_loss_grad` for widths ``(1, h, 1)`` (``x``, ``y``: ``(m,)``): one fused
    pass per neuron forward (``z`` recomputed, nothing stored) and one backward; ``relu``
    itself (``alpha_- = 0``, ``alpha_+ = 1``) by ``max`` and a select (about 13 % faster)."""
    dt = T.dtype
    zero = dt.type(0)
    two = dt.type(2)
    relu = am == 0.0 and ap == 1.0
    B = T.shape[0]
    m = x.shape[0]
    f = np.empty(m, dt)
    D = np.empty(m, dt)
    per_row = WT.shape[0] > 1
    for b in range(B):
        th = T[b]
        wt = WT[b] if per_row else WT[0]
        c2 = th[3 * h]
        for i in range(m):
            f[i] = c2
        for j in range(h):
            w = th[j]
            bj = th[h + j]
            v = th[2 * h + j]
            if relu:
                for i in range(m):
                    f[i] += v * max(bj + w * x[i], zero)
            else:
                for i in range(m):
                    zi = bj + w * x[i]
                    f[i] += v * (zi * (ap if zi > zero else am))
        Lb = zero
        sc = zero
        for i in range(m):
            e = f[i] - y[i]
            we = wt[i] * e
            Lb += we * e
            D[i] = two * we
            sc += two * we
        L[b] = Lb
        if not want_grad:
            continue
        g = G[b]
        g[3 * h] = sc
        for j in range(h):
            w = th[j]
            bj = th[h + j]
            v = th[2 * h + j]
            sv = zero
            sb = zero
            sw = zero
            if relu:
                for i in range(m):
                    xi = x[i]
                    zi = bj + w * xi
                    t = D[i] if zi > zero else zero
                    sv += t * zi
                    sb += t
                    sw += t * xi
            else:
                for i in range(m):
                    xi = x[i]
                    zi = bj + w * xi
                    t = D[i] * (ap if zi > zero else am)
                    sv += t * zi
                    sb += t
                    sw += t * xi
            g[2 * h + j] = sv
            g[h + j] = v * sb
            g[j] = v * sw


@njit(**_JIT)
def scalar_hvp(T, V, x, y, WT, h, am, ap, H):
    """:func:`shallow_hvp` for widths ``(1, h, 1)`` (fused passes, nothing stored per neuron)."""
    dt = T.dtype
    zero = dt.type(0)
    two = dt.type(2)
    B = T.shape[0]
    m = x.shape[0]
    f = np.empty(m, dt)
    rf = np.empty(m, dt)
    per_row = WT.shape[0] > 1
    for b in range(B):
        th = T[b]
        dv = V[b]
        wt = WT[b] if per_row else WT[0]
        g = H[b]
        c2 = th[3 * h]
        dc2 = dv[3 * h]
        for i in range(m):
            f[i] = c2
            rf[i] = dc2
        for j in range(h):
            w = th[j]
            bj = th[h + j]
            v = th[2 * h + j]
            dw = dv[j]
            db = dv[h + j]
            dvv = dv[2 * h + j]
            for i in range(m):
                xi = x[i]
                zi = bj + w * xi
                s = ap if zi > zero else am
                f[i] += v * (s * zi)
                rf[i] += s * (v * (db + dw * xi) + dvv * zi)
        sc = zero
        for i in range(m):
            w2 = two * wt[i]
            f[i] = w2 * (f[i] - y[i])
            r = w2 * rf[i]
            rf[i] = r
            sc += r
        g[3 * h] = sc
        for j in range(h):
            w = th[j]
            bj = th[h + j]
            v = th[2 * h + j]
            dw = dv[j]
            db = dv[h + j]
            dvv = dv[2 * h + j]
            sv = zero
            sb = zero
            sw = zero
            for i in range(m):
                xi = x[i]
                zi = bj + w * xi
                s = ap if zi > zero else am
                di = f[i]
                rdi = rf[i]
                sv += s * (rdi * zi + di * (db + dw * xi))
                r = s * (v * rdi + dvv * di)
                sb += r
                sw += r * xi
            g[2 * h + j] = sv
            g[h + j] = sb
            g[j] = sw


def _make_k1(NC):
    """:func:`shallow_loss_grad` for one output and exactly ``NC <= 8`` inputs, compiled per
    ``NC`` (a closure constant: the guards ``if NC > c`` vanish at compile time, so each width
    gets its own loop with exactly ``NC`` multiply-adds per sample and no zero padding; a
    generic loop over ``d_0`` columns, or four columns per pass, was 1.5-2.4x slower at
    ``d_0 = 5`` in float32).  Per neuron one fused pass forward (pre-activation, activation,
    output) and one backward (``grad v``, ``grad b`` and every column of ``grad W``)."""

    @njit(**_JIT)
    def k1(T, XT, y, WT, h, am, ap, want_grad, L, G):
        dt = T.dtype
        zero = dt.type(0)
        two = dt.type(2)
        B = T.shape[0]
        m = XT.shape[1]
        ob1 = h * NC
        oW2 = ob1 + h
        ob2 = oW2 + h
        Z = np.empty((h, m), dt)
        f = np.empty(m, dt)
        D = np.empty(m, dt)
        x0 = XT[0]
        x1 = XT[min(1, NC - 1)]
        x2 = XT[min(2, NC - 1)]
        x3 = XT[min(3, NC - 1)]
        x4 = XT[min(4, NC - 1)]
        x5 = XT[min(5, NC - 1)]
        x6 = XT[min(6, NC - 1)]
        x7 = XT[min(7, NC - 1)]
        per_row = WT.shape[0] > 1
        for b in range(B):
            th = T[b]
            wt = WT[b] if per_row else WT[0]
            c2 = th[ob2]
            for i in range(m):
                f[i] = c2
            for j in range(h):
                z = Z[j]
                bj = th[ob1 + j]
                v = th[oW2 + j]
                o = j * NC
                w0 = th[o]
                w1 = th[o + min(1, NC - 1)]
                w2 = th[o + min(2, NC - 1)]
                w3 = th[o + min(3, NC - 1)]
                w4 = th[o + min(4, NC - 1)]
                w5 = th[o + min(5, NC - 1)]
                w6 = th[o + min(6, NC - 1)]
                w7 = th[o + min(7, NC - 1)]
                for i in range(m):
                    zi = bj + w0 * x0[i]
                    if NC > 1:
                        zi += w1 * x1[i]
                    if NC > 2:
                        zi += w2 * x2[i]
                    if NC > 3:
                        zi += w3 * x3[i]
                    if NC > 4:
                        zi += w4 * x4[i]
                    if NC > 5:
                        zi += w5 * x5[i]
                    if NC > 6:
                        zi += w6 * x6[i]
                    if NC > 7:
                        zi += w7 * x7[i]
                    z[i] = zi
                    f[i] += v * (zi * (ap if zi > zero else am))
            Lb = zero
            sc = zero
            for i in range(m):
                e = f[i] - y[i]
                we = wt[i] * e
                Lb += we * e
                D[i] = two * we
                sc += two * we
            L[b] = Lb
            if not want_grad:
                continue
            g = G[b]
            g[ob2] = sc
            for j in range(h):
                z = Z[j]
                v = th[oW2 + j]
                o = j * NC
                sv = zero
                sb = zero
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                s4 = zero
                s5 = zero
                s6 = zero
                s7 = zero
                for i in range(m):
                    zi = z[i]
                    ti = D[i] * (ap if zi > zero else am)
                    sv += ti * zi
                    sb += ti
                    s0 += ti * x0[i]
                    if NC > 1:
                        s1 += ti * x1[i]
                    if NC > 2:
                        s2 += ti * x2[i]
                    if NC > 3:
                        s3 += ti * x3[i]
                    if NC > 4:
                        s4 += ti * x4[i]
                    if NC > 5:
                        s5 += ti * x5[i]
                    if NC > 6:
                        s6 += ti * x6[i]
                    if NC > 7:
                        s7 += ti * x7[i]
                g[oW2 + j] = sv
                g[ob1 + j] = v * sb
                g[o] = v * s0
                if NC > 1:
                    g[o + 1] = v * s1
                if NC > 2:
                    g[o + 2] = v * s2
                if NC > 3:
                    g[o + 3] = v * s3
                if NC > 4:
                    g[o + 4] = v * s4
                if NC > 5:
                    g[o + 5] = v * s5
                if NC > 6:
                    g[o + 6] = v * s6
                if NC > 7:
                    g[o + 7] = v * s7

    return k1


#: One output, ``d_0 = 1..8`` inputs: ``K1_LOSS_GRAD[d_0](T, XT, y, WT, h, am, ap, want_grad,
#: L, G)`` (``y``: ``(m,)``), compiled on first use per width and dtype (and cached on disk).
K1_LOSS_GRAD = {nc: _make_k1(nc) for nc in range(1, 9)}


def _make_k1_hvp(NC):
    """:func:`shallow_hvp` for one output and exactly ``NC <= 8`` inputs (compiled per ``NC``
    as :func:`_make_k1`): per neuron one fused pass forward (``z``, ``R(z)``, the output and
    its R-derivative) and one backward (the R-derivatives of ``grad v``, ``grad b`` and every
    column of ``grad W``)."""

    @njit(**_JIT)
    def k1_hvp(T, V, XT, y, WT, h, am, ap, H):
        dt = T.dtype
        zero = dt.type(0)
        two = dt.type(2)
        B = T.shape[0]
        m = XT.shape[1]
        ob1 = h * NC
        oW2 = ob1 + h
        ob2 = oW2 + h
        Z = np.empty((h, m), dt)
        RZ = np.empty((h, m), dt)
        f = np.empty(m, dt)
        rf = np.empty(m, dt)
        x0 = XT[0]
        x1 = XT[min(1, NC - 1)]
        x2 = XT[min(2, NC - 1)]
        x3 = XT[min(3, NC - 1)]
        x4 = XT[min(4, NC - 1)]
        x5 = XT[min(5, NC - 1)]
        x6 = XT[min(6, NC - 1)]
        x7 = XT[min(7, NC - 1)]
        per_row = WT.shape[0] > 1
        for b in range(B):
            th = T[b]
            dv = V[b]
            wt = WT[b] if per_row else WT[0]
            g = H[b]
            c2 = th[ob2]
            dc2 = dv[ob2]
            for i in range(m):
                f[i] = c2
                rf[i] = dc2
            for j in range(h):
                z = Z[j]
                rz = RZ[j]
                bj = th[ob1 + j]
                dbj = dv[ob1 + j]
                v = th[oW2 + j]
                dvv = dv[oW2 + j]
                o = j * NC
                w0, u0 = th[o], dv[o]
                w1, u1 = th[o + min(1, NC - 1)], dv[o + min(1, NC - 1)]
                w2, u2 = th[o + min(2, NC - 1)], dv[o + min(2, NC - 1)]
                w3, u3 = th[o + min(3, NC - 1)], dv[o + min(3, NC - 1)]
                w4, u4 = th[o + min(4, NC - 1)], dv[o + min(4, NC - 1)]
                w5, u5 = th[o + min(5, NC - 1)], dv[o + min(5, NC - 1)]
                w6, u6 = th[o + min(6, NC - 1)], dv[o + min(6, NC - 1)]
                w7, u7 = th[o + min(7, NC - 1)], dv[o + min(7, NC - 1)]
                for i in range(m):
                    zi = bj + w0 * x0[i]
                    ri = dbj + u0 * x0[i]
                    if NC > 1:
                        zi += w1 * x1[i]
                        ri += u1 * x1[i]
                    if NC > 2:
                        zi += w2 * x2[i]
                        ri += u2 * x2[i]
                    if NC > 3:
                        zi += w3 * x3[i]
                        ri += u3 * x3[i]
                    if NC > 4:
                        zi += w4 * x4[i]
                        ri += u4 * x4[i]
                    if NC > 5:
                        zi += w5 * x5[i]
                        ri += u5 * x5[i]
                    if NC > 6:
                        zi += w6 * x6[i]
                        ri += u6 * x6[i]
                    if NC > 7:
                        zi += w7 * x7[i]
                        ri += u7 * x7[i]
                    z[i] = zi
                    rz[i] = ri
                    s = ap if zi > zero else am
                    f[i] += v * (s * zi)
                    rf[i] += s * (v * ri + dvv * zi)
            # delta = 2 w e (in f), R(delta) = 2 w R(f) (in rf)
            sc = zero
            for i in range(m):
                w2_ = two * wt[i]
                f[i] = w2_ * (f[i] - y[i])
                r = w2_ * rf[i]
                rf[i] = r
                sc += r
            g[ob2] = sc
            for j in range(h):
                z = Z[j]
                rz = RZ[j]
                v = th[oW2 + j]
                dvv = dv[oW2 + j]
                o = j * NC
                sv = zero
                sb = zero
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                s4 = zero
                s5 = zero
                s6 = zero
                s7 = zero
                for i in range(m):
                    zi = z[i]
                    s = ap if zi > zero else am
                    di = f[i]
                    rdi = rf[i]
                    sv += s * (rdi * zi + di * rz[i])
                    r = s * (v * rdi + dvv * di)
                    sb += r
                    s0 += r * x0[i]
                    if NC > 1:
                        s1 += r * x1[i]
                    if NC > 2:
                        s2 += r * x2[i]
                    if NC > 3:
                        s3 += r * x3[i]
                    if NC > 4:
                        s4 += r * x4[i]
                    if NC > 5:
                        s5 += r * x5[i]
                    if NC > 6:
                        s6 += r * x6[i]
                    if NC > 7:
                        s7 += r * x7[i]
                g[oW2 + j] = sv
                g[ob1 + j] = sb
                g[o] = s0
                if NC > 1:
                    g[o + 1] = s1
                if NC > 2:
                    g[o + 2] = s2
                if NC > 3:
                    g[o + 3] = s3
                if NC > 4:
                    g[o + 4] = s4
                if NC > 5:
                    g[o + 5] = s5
                if NC > 6:
                    g[o + 6] = s6
                if NC > 7:
                    g[o + 7] = s7

    return k1_hvp


#: One output, ``d_0 = 1..8`` inputs: ``K1_HVP[d_0](T, V, XT, y, WT, h, am, ap, H)``.
K1_HVP = {nc: _make_k1_hvp(nc) for nc in range(1, 9)}


@njit(**_JIT)
def shallow_loss_grad(T, XT, YT, WT, h, k, am, ap, want_grad, L, G):
    """Losses ``L (B,)`` and (``want_grad``) gradients ``G (B, dim)`` of the networks ``T (B, dim)``.

    ``XT (d0, m)`` inputs, ``YT (k, m)`` targets, ``WT (1 or B, m)`` sample weights (row ``b`` for
    network ``b``, or one row for all): ``L_b = sum_i WT[b, i] |N_b(x_i) - y_i|^2``.
    """
    dt = T.dtype
    zero = dt.type(0)
    one = dt.type(1)
    two = dt.type(2)
    d0, m = XT.shape
    B = T.shape[0]
    ob1 = h * d0
    oW2 = ob1 + h
    ob2 = oW2 + k * h
    Z = np.empty((h, m), dt)
    F = np.empty((k, m), dt)
    D = np.empty((k, m), dt)
    t = np.empty(m, dt)
    per_row = WT.shape[0] > 1
    for b in range(B):
        th = T[b]
        wt = WT[b] if per_row else WT[0]
        _forward(th, XT, h, k, am, ap, Z, F)
        Lb = zero
        for o in range(k):
            fo = F[o]
            yo = YT[o]
            do = D[o]
            for i in range(m):
                e = fo[i] - yo[i]
                we = wt[i] * e
                Lb += we * e
                do[i] = two * we
        L[b] = Lb
        if not want_grad:
            continue
        g = G[b]
        for o in range(k):
            do = D[o]
            s = zero
            for i in range(m):
                s += do[i]
            g[ob2 + o] = s
        for j in range(h):
            z = Z[j]
            if k == 1:
                v = th[oW2 + j]
                d = D[0]
                sv = zero
                sb = zero
                if d0 == 1:
                    x0 = XT[0]
                    sw = zero
                    for i in range(m):
                        zi = z[i]
                        ti = d[i] * (ap if zi > zero else am)
                        sv += ti * zi
                        sb += ti
                        sw += ti * x0[i]
                    g[oW2 + j] = sv
                    g[ob1 + j] = v * sb
                    g[j] = v * sw
                    continue
                for i in range(m):
                    zi = z[i]
                    ti = d[i] * (ap if zi > zero else am)
                    t[i] = ti
                    sv += ti * zi
                    sb += ti
                g[oW2 + j] = sv
                g[ob1 + j] = v * sb
                _colsums(t, XT, g, j * d0, v, d0, m)
            else:
                for i in range(m):
                    t[i] = zero
                for o in range(k):
                    v = th[oW2 + o * h + j]
                    do = D[o]
                    sv = zero
                    for i in range(m):
                        zi = z[i]
                        di = do[i]
                        sv += di * (zi * (ap if zi > zero else am))
                        t[i] += v * di
                    g[oW2 + o * h + j] = sv
                sb = zero
                for i in range(m):
                    zi = z[i]
                    ti = t[i] * (ap if zi > zero else am)
                    t[i] = ti
                    sb += ti
                g[ob1 + j] = sb
                _colsums(t, XT, g, j * d0, one, d0, m)


@njit(**_JIT)
def shallow_hvp(T, V, XT, YT, WT, h, k, am, ap, H):
    """Rowwise Hessian-vector products ``H (B, dim)`` (R-operator; ``sigma'' = 0``)."""
    dt = T.dtype
    zero = dt.type(0)
    one = dt.type(1)
    two = dt.type(2)
    d0, m = XT.shape
    B = T.shape[0]
    ob1 = h * d0
    oW2 = ob1 + h
    ob2 = oW2 + k * h
    Z = np.empty((h, m), dt)
    RZ = np.empty((h, m), dt)
    F = np.empty((k, m), dt)
    RF = np.empty((k, m), dt)
    t = np.empty(m, dt)
    rt = np.empty(m, dt)
    per_row = WT.shape[0] > 1
    for b in range(B):
        th = T[b]
        dv = V[b]
        wt = WT[b] if per_row else WT[0]
        g = H[b]
        for o in range(k):
            c2 = th[ob2 + o]
            dc2 = dv[ob2 + o]
            fo = F[o]
            rfo = RF[o]
            for i in range(m):
                fo[i] = c2
                rfo[i] = dc2
        for j in range(h):
            z = Z[j]
            rz = RZ[j]
            _affine(z, th, j * d0, d0, th[ob1 + j], XT, m)
            _affine(rz, dv, j * d0, d0, dv[ob1 + j], XT, m)
            for o in range(k):
                v = th[oW2 + o * h + j]
                dvv = dv[oW2 + o * h + j]
                fo = F[o]
                rfo = RF[o]
                for i in range(m):
                    zi = z[i]
                    s = ap if zi > zero else am
                    fo[i] += v * (s * zi)
                    rfo[i] += s * (v * rz[i] + dvv * zi)
        # delta = 2 w e (stored in F), R(delta) = 2 w R(f) (stored in RF)
        for o in range(k):
            fo = F[o]
            rfo = RF[o]
            yo = YT[o]
            s = zero
            for i in range(m):
                w2 = two * wt[i]
                fo[i] = w2 * (fo[i] - yo[i])
                r = w2 * rfo[i]
                rfo[i] = r
                s += r
            g[ob2 + o] = s
        for j in range(h):
            z = Z[j]
            rz = RZ[j]
            for i in range(m):
                rt[i] = zero
            for o in range(k):
                v = th[oW2 + o * h + j]
                dvv = dv[oW2 + o * h + j]
                do = F[o]
                rdo = RF[o]
                sv = zero
                for i in range(m):
                    zi = z[i]
                    s = ap if zi > zero else am
                    sv += s * (rdo[i] * zi + do[i] * rz[i])
                    rt[i] += v * rdo[i] + dvv * do[i]
                g[oW2 + o * h + j] = sv
            sb = zero
            for i in range(m):
                zi = z[i]
                r = rt[i] * (ap if zi > zero else am)
                t[i] = r
                sb += r
            g[ob1 + j] = sb
            _colsums(t, XT, g, j * d0, one, d0, m)


# ---------------------------------------------------------------------- any depth (BLAS)
#: Layers whose input width (first layer) or output width (last layer) is at most this are
#: computed by fused loops over the samples; BLAS is slow on such thin products.
THIN = 4


@njit(**_JIT)
def _offsets(widths, m):
    nl = widths.shape[0] - 1
    ow = np.empty(nl, dtype=np.int64)
    ob = np.empty(nl, dtype=np.int64)
    oz = np.empty(nl, dtype=np.int64)
    off = 0
    zoff = 0
    hmax = 0
    for l in range(nl):
        ow[l] = off
        off += widths[l + 1] * widths[l]
        ob[l] = off
        off += widths[l + 1]
        oz[l] = zoff
        zoff += widths[l + 1] * m
        hmax = max(hmax, widths[l + 1])
    return ow, ob, oz, zoff, hmax


@njit(**_JIT)
def mlp_loss_grad(T, XT, YT, WT, widths, am, ap, want_grad, L, G):
    """Losses ``L (B,)`` and (``want_grad``) gradients ``G (B, dim)``, any depth.

    One network at a time: the products of the wide layers ``W_l A_{l-1}``,
    ``delta_l A_{l-1}^T`` and ``W_l^T delta_l`` by BLAS (``np.dot`` into preallocated buffers);
    a thin first layer (``d_0 <= THIN``) and a thin output layer (``d_L <= THIN``) by fused
    loops over the samples; everything elementwise in one pass per layer and direction: bias +
    activation (storing ``Z_l`` and ``A_l``, and accumulating a thin output) forward,
    ``delta_{l-1} = (W_l^T delta_l) sigma'(Z_{l-1})`` with the bias gradient
    ``sum_i delta_{l-1}`` backward.  ``widths``: int64 array ``(d_0, ..., d_L)``.
    """
    dt = T.dtype
    zero = dt.type(0)
    one = dt.type(1)
    two = dt.type(2)
    B = T.shape[0]
    m = XT.shape[1]
    nl = widths.shape[0] - 1
    k = widths[nl]
    ow, ob, oz, zoff, hmax = _offsets(widths, m)
    thin_in = widths[0] <= THIN
    thin_out = k <= THIN
    Zb = np.empty(zoff, dt)
    Ab = np.empty(zoff, dt)
    D1 = np.empty(hmax * m, dt)
    D2 = np.empty(hmax * m, dt)
    per_row = WT.shape[0] > 1
    for b in range(B):
        th = T[b]
        wt = WT[b] if per_row else WT[0]
        g = G[b if want_grad else 0]  # loss only: G is one scratch row
        F = Zb[oz[nl - 1]:oz[nl - 1] + k * m].reshape((k, m))
        if thin_out:
            for o in range(k):
                c2 = th[ob[nl - 1] + o]
                fo = F[o]
                for i in range(m):
                    fo[i] = c2
        Aprev = XT
        for l in range(nl - 1):
            r = widths[l + 1]
            c = widths[l]
            Z = Zb[oz[l]:oz[l] + r * m].reshape((r, m))
            A = Ab[oz[l]:oz[l] + r * m].reshape((r, m))
            last = l == nl - 2
            if l == 0 and thin_in:
                for q in range(r):
                    _affine(Z[q], th, ow[0] + q * c, c, th[ob[0] + q], XT, m)
                    bq = zero
            else:
                np.dot(th[ow[l]:ow[l] + r * c].reshape((r, c)), Aprev, Z)
            for q in range(r):
                bq = zero if (l == 0 and thin_in) else th[ob[l] + q]
                zq = Z[q]
                aq = A[q]
                if last and thin_out and k <= 2:
                    # bias, activation and the (one or two) outputs in one pass
                    v0 = th[ow[nl - 1] + q]
                    f0 = F[0]
                    if k == 1:
                        for i in range(m):
                            zi = zq[i] + bq
                            zq[i] = zi
                            a = zi * (ap if zi > zero else am)
                            aq[i] = a
                            f0[i] += v0 * a
                    else:
                        v1 = th[ow[nl - 1] + r + q]
                        f1 = F[1]
                        for i in range(m):
                            zi = zq[i] + bq
                            zq[i] = zi
                            a = zi * (ap if zi > zero else am)
                            aq[i] = a
                            f0[i] += v0 * a
                            f1[i] += v1 * a
                    continue
                for i in range(m):
                    zi = zq[i] + bq
                    zq[i] = zi
                    aq[i] = zi * (ap if zi > zero else am)
                if last and thin_out:
                    for o in range(k):
                        v = th[ow[nl - 1] + o * r + q]
                        fo = F[o]
                        for i in range(m):
                            fo[i] += v * aq[i]
            Aprev = A
        if not thin_out:
            h = widths[nl - 1]
            np.dot(th[ow[nl - 1]:ow[nl - 1] + k * h].reshape((k, h)), Aprev, F)
            for o in range(k):
                bo = th[ob[nl - 1] + o]
                fo = F[o]
                for i in range(m):
                    fo[i] += bo
        # residuals, loss, delta_L = 2 w e, output bias gradient
        D = D1[:k * m].reshape((k, m))
        Lb = zero
        for o in range(k):
            fo = F[o]
            yo = YT[o]
            do = D[o]
            s = zero
            for i in range(m):
                e = fo[i] - yo[i]
                we = wt[i] * e
                Lb += we * e
                do[i] = two * we
                s += two * we
            if want_grad:
                g[ob[nl - 1] + o] = s
        L[b] = Lb
        if not want_grad:
            continue
        cur = D1
        nxt = D2
        for l in range(nl - 1, 0, -1):
            r = widths[l + 1]
            c = widths[l]
            D = cur[:r * m].reshape((r, m))
            Aprev = Ab[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
            Zp = Zb[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
            Dn = nxt[:c * m].reshape((c, m))
            W = th[ow[l]:ow[l] + r * c].reshape((r, c))
            if l == nl - 1 and thin_out and r <= 2:
                # gW_L[o, q] = sum_i delta[o, i] A[q, i], delta_{L-1} = (W_L^T delta) sigma'
                # and its bias gradient in one pass per q (one or two outputs)
                d0_ = D[0]
                d1_ = D[r - 1]
                for q in range(c):
                    aq = Aprev[q]
                    zq = Zp[q]
                    dq = Dn[q]
                    v0 = W[0, q]
                    v1 = W[r - 1, q] if r == 2 else zero
                    s0 = zero
                    s1 = zero
                    s = zero
                    for i in range(m):
                        a0 = d0_[i]
                        a1 = d1_[i]
                        ai = aq[i]
                        s0 += a0 * ai
                        s1 += a1 * ai
                        di = (v0 * a0 + v1 * a1) * (ap if zq[i] > zero else am)
                        dq[i] = di
                        s += di
                    g[ow[l] + q] = s0
                    if r == 2:
                        g[ow[l] + c + q] = s1
                    g[ob[l - 1] + q] = s
                cur, nxt = nxt, cur
                continue
            if l == nl - 1 and thin_out:
                for q in range(c):
                    aq = Aprev[q]
                    dq = Dn[q]
                    for i in range(m):
                        dq[i] = zero
                    for o in range(r):
                        v = W[o, q]
                        do = D[o]
                        sv = zero
                        for i in range(m):
                            di = do[i]
                            sv += di * aq[i]
                            dq[i] += v * di
                        g[ow[l] + o * c + q] = sv
            else:
                np.dot(D, Aprev.T, g[ow[l]:ow[l] + r * c].reshape((r, c)))
                np.dot(W.T, D, Dn)
            for q in range(c):
                zq = Zp[q]
                dq = Dn[q]
                s = zero
                for i in range(m):
                    di = dq[i] * (ap if zq[i] > zero else am)
                    dq[i] = di
                    s += di
                g[ob[l - 1] + q] = s
            cur, nxt = nxt, cur
        # first layer: gW_1 = delta_1 X^T
        r = widths[1]
        c = widths[0]
        D = cur[:r * m].reshape((r, m))
        if thin_in:
            for q in range(r):
                _colsums(D[q], XT, g, ow[0] + q * c, one, c, m)
        else:
            np.dot(D, XT.T, g[ow[0]:ow[0] + r * c].reshape((r, c)))


@njit(**_JIT)
def mlp_hvp(T, V, XT, YT, WT, widths, am, ap, H):
    """Rowwise Hessian-vector products ``H (B, dim)``, any depth (R-operator, ``sigma'' = 0``).

    Forward ``R(z_l) = W_l R(a_{l-1}) + dW_l a_{l-1} + db_l``, ``R(a_l) = sigma'(z_l) R(z_l)``;
    backward ``R(grad W_l) = R(delta_l) a_{l-1}^T + delta_l R(a_{l-1})^T``,
    ``R(delta_{l-1}) = (W_l^T R(delta_l) + dW_l^T delta_l) sigma'(z_{l-1})``; products by BLAS.
    """
    dt = T.dtype
    zero = dt.type(0)
    two = dt.type(2)
    B = T.shape[0]
    m = XT.shape[1]
    nl = widths.shape[0] - 1
    k = widths[nl]
    ow, ob, oz, zoff, hmax = _offsets(widths, m)
    wmax = 0
    for l in range(nl):
        wmax = max(wmax, widths[l] * widths[l + 1])
    Zb = np.empty(zoff, dt)
    Ab = np.empty(zoff, dt)
    RZb = np.empty(zoff, dt)
    RAb = np.empty(zoff, dt)
    D1 = np.empty(hmax * m, dt)
    D2 = np.empty(hmax * m, dt)
    R1 = np.empty(hmax * m, dt)
    R2 = np.empty(hmax * m, dt)
    Tmp = np.empty(hmax * m, dt)
    TW = np.empty(wmax, dt)
    per_row = WT.shape[0] > 1
    for b in range(B):
        th = T[b]
        dv = V[b]
        wt = WT[b] if per_row else WT[0]
        g = H[b]
        for l in range(nl):
            r = widths[l + 1]
            c = widths[l]
            W = th[ow[l]:ow[l] + r * c].reshape((r, c))
            dW = dv[ow[l]:ow[l] + r * c].reshape((r, c))
            Z = Zb[oz[l]:oz[l] + r * m].reshape((r, m))
            RZ = RZb[oz[l]:oz[l] + r * m].reshape((r, m))
            if l == 0:
                np.dot(W, XT, Z)
                np.dot(dW, XT, RZ)
            else:
                Ap = Ab[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
                RAp = RAb[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
                np.dot(W, Ap, Z)
                np.dot(W, RAp, RZ)
                tmp = Tmp[:r * m].reshape((r, m))
                np.dot(dW, Ap, tmp)
                for q in range(r):
                    rq = RZ[q]
                    tq = tmp[q]
                    for i in range(m):
                        rq[i] += tq[i]
            hidden = l < nl - 1
            A = Ab[oz[l]:oz[l] + r * m].reshape((r, m))
            RA = RAb[oz[l]:oz[l] + r * m].reshape((r, m))
            for q in range(r):
                bq = th[ob[l] + q]
                dbq = dv[ob[l] + q]
                zq = Z[q]
                rq = RZ[q]
                aq = A[q]
                raq = RA[q]
                if hidden:
                    for i in range(m):
                        zi = zq[i] + bq
                        zq[i] = zi
                        s = ap if zi > zero else am
                        aq[i] = s * zi
                        raq[i] = s * (rq[i] + dbq)
                else:
                    for i in range(m):
                        zq[i] += bq
                        rq[i] += dbq
        # output: delta = 2 w e, R(delta) = 2 w R(f)
        F = Zb[oz[nl - 1]:oz[nl - 1] + k * m].reshape((k, m))
        RF = RZb[oz[nl - 1]:oz[nl - 1] + k * m].reshape((k, m))
        D = D1[:k * m].reshape((k, m))
        RD = R1[:k * m].reshape((k, m))
        for o in range(k):
            s = zero
            for i in range(m):
                w2 = two * wt[i]
                D[o, i] = w2 * (F[o, i] - YT[o, i])
                r_ = w2 * RF[o, i]
                RD[o, i] = r_
                s += r_
            g[ob[nl - 1] + o] = s
        cur, nxt, rcur, rnxt = D1, D2, R1, R2
        for l in range(nl - 1, -1, -1):
            r = widths[l + 1]
            c = widths[l]
            D = cur[:r * m].reshape((r, m))
            RD = rcur[:r * m].reshape((r, m))
            gW = g[ow[l]:ow[l] + r * c].reshape((r, c))
            if l == 0:
                np.dot(RD, XT.T, gW)
                break
            Ap = Ab[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
            RAp = RAb[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
            np.dot(RD, Ap.T, gW)
            tw = TW[:r * c].reshape((r, c))
            np.dot(D, RAp.T, tw)
            for q in range(r):
                for p in range(c):
                    gW[q, p] += tw[q, p]
            W = th[ow[l]:ow[l] + r * c].reshape((r, c))
            dW = dv[ow[l]:ow[l] + r * c].reshape((r, c))
            Dn = nxt[:c * m].reshape((c, m))
            RDn = rnxt[:c * m].reshape((c, m))
            tmp = Tmp[:c * m].reshape((c, m))
            np.dot(W.T, D, Dn)
            np.dot(W.T, RD, RDn)
            np.dot(dW.T, D, tmp)
            Zp = Zb[oz[l - 1]:oz[l - 1] + c * m].reshape((c, m))
            for q in range(c):
                zq = Zp[q]
                dq = Dn[q]
                rq = RDn[q]
                tq = tmp[q]
                s = zero
                for i in range(m):
                    sl = ap if zq[i] > zero else am
                    dq[i] = dq[i] * sl
                    r_ = (rq[i] + tq[i]) * sl
                    rq[i] = r_
                    s += r_
                g[ob[l - 1] + q] = s
            cur, nxt = nxt, cur
            rcur, rnxt = rnxt, rcur

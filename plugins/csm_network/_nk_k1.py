"""Compiled kernels for one hidden layer and one output, one per input width ``d_0 <= 8``
(:mod:`csm_network._numba_kernel`): ``K1_LOSS_GRAD[d_0]`` and ``K1_HVP[d_0]``."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._nk_common import JIT, r_residual, residual

__all__ = ["K1_LOSS_GRAD", "K1_HVP"]


@njit(inline="always", **JIT)
def eight(a, off, n):
    """``a[off + min(c, n - 1)]`` for ``c = 0..7``: the ``n <= 8`` input rows of ``XT`` (a
    2-D ``a``) or one neuron's ``n`` weights (a 1-D ``a``), the last one repeated so that every
    kernel names eight (the unused ones vanish at compile time)."""
    return (a[off], a[off + min(1, n - 1)], a[off + min(2, n - 1)], a[off + min(3, n - 1)],
            a[off + min(4, n - 1)], a[off + min(5, n - 1)], a[off + min(6, n - 1)],
            a[off + min(7, n - 1)])


def _make_k1(NC):
    """:func:`shallow_loss_grad` for one output and exactly ``NC <= 8`` inputs, compiled per
    ``NC`` (a closure constant: the guards ``if NC > c`` vanish at compile time, so each width
    gets its own loop with exactly ``NC`` multiply-adds per sample and no zero padding; a
    generic loop over ``d_0`` columns, or four columns per pass, was 1.5-2.4x slower at
    ``d_0 = 5`` in float32).  Per neuron one fused pass forward (pre-activation, activation,
    output) and one backward (``grad v``, ``grad b`` and every column of ``grad W``)."""

    @njit(**JIT)
    def k1(T, XT, y, WT, h, am, ap, want_grad, L, G):
        dt = T.dtype
        zero = dt.type(0)
        B = T.shape[0]
        m = XT.shape[1]
        ob1 = h * NC
        oW2 = ob1 + h
        ob2 = oW2 + h
        Z = np.empty((h, m), dt)
        f = np.empty(m, dt)
        D = np.empty(m, dt)
        x0, x1, x2, x3, x4, x5, x6, x7 = eight(XT, 0, NC)
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
                w0, w1, w2, w3, w4, w5, w6, w7 = eight(th, o, NC)
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
            L[b], sc = residual(f, y, wt, D)
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

    @njit(**JIT)
    def k1_hvp(T, V, XT, y, WT, h, am, ap, H):
        dt = T.dtype
        zero = dt.type(0)
        B = T.shape[0]
        m = XT.shape[1]
        ob1 = h * NC
        oW2 = ob1 + h
        ob2 = oW2 + h
        Z = np.empty((h, m), dt)
        RZ = np.empty((h, m), dt)
        f = np.empty(m, dt)
        rf = np.empty(m, dt)
        x0, x1, x2, x3, x4, x5, x6, x7 = eight(XT, 0, NC)
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
                w0, w1, w2, w3, w4, w5, w6, w7 = eight(th, o, NC)
                u0, u1, u2, u3, u4, u5, u6, u7 = eight(dv, o, NC)
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
            g[ob2] = r_residual(f, rf, y, wt)
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

"""Compiled kernels for one hidden layer (:mod:`csm_network._numba_kernel`): widths
``(1, h, 1)`` (:func:`scalar_loss_grad`, :func:`scalar_hvp`) and any ``(d_0, h, k)`` with
``d_0, k <= 8`` (:func:`shallow_loss_grad`, :func:`shallow_hvp`: four input columns per pass)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._nk_common import JIT, affine, colsums, forward, r_residual, residual

__all__ = ["scalar_loss_grad", "scalar_hvp", "shallow_loss_grad", "shallow_hvp"]


@njit(**JIT)
def scalar_loss_grad(T, x, y, WT, h, am, ap, want_grad, L, G):
    """:func:`shallow_loss_grad` for widths ``(1, h, 1)`` (``x``, ``y``: ``(m,)``): one fused
    pass per neuron forward (``z`` recomputed, nothing stored) and one backward; ``relu``
    itself (``alpha_- = 0``, ``alpha_+ = 1``) by ``max`` and a select (about 13 % faster)."""
    dt = T.dtype
    zero = dt.type(0)
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
        L[b], sc = residual(f, y, wt, D)
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


@njit(**JIT)
def scalar_hvp(T, V, x, y, WT, h, am, ap, H):
    """:func:`shallow_hvp` for widths ``(1, h, 1)`` (fused passes, nothing stored per neuron)."""
    dt = T.dtype
    zero = dt.type(0)
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
        g[3 * h] = r_residual(f, rf, y, wt)
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


@njit(**JIT)
def shallow_loss_grad(T, XT, YT, WT, h, k, am, ap, want_grad, L, G):
    """Losses ``L (B,)`` and (``want_grad``) gradients ``G (B, dim)`` of the networks ``T (B, dim)``.

    ``XT (d0, m)`` inputs, ``YT (k, m)`` targets, ``WT (1 or B, m)`` sample weights (row ``b`` for
    network ``b``, or one row for all): ``L_b = sum_i WT[b, i] |N_b(x_i) - y_i|^2``.
    """
    dt = T.dtype
    zero = dt.type(0)
    one = dt.type(1)
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
        forward(th, XT, h, k, am, ap, Z, F)
        Lb = zero
        g = G[b if want_grad else 0]  # loss only: G is one scratch row
        for o in range(k):
            lo, so = residual(F[o], YT[o], wt, D[o])
            Lb += lo
            g[ob2 + o] = so
        L[b] = Lb
        if not want_grad:
            continue
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
                colsums(t, XT, g, j * d0, v, d0, m)
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
                colsums(t, XT, g, j * d0, one, d0, m)


@njit(**JIT)
def shallow_hvp(T, V, XT, YT, WT, h, k, am, ap, H):
    """Rowwise Hessian-vector products ``H (B, dim)`` (R-operator; ``sigma'' = 0``)."""
    dt = T.dtype
    zero = dt.type(0)
    one = dt.type(1)
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
            affine(z, th, j * d0, d0, th[ob1 + j], XT, m)
            affine(rz, dv, j * d0, d0, dv[ob1 + j], XT, m)
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
            g[ob2 + o] = r_residual(F[o], RF[o], YT[o], wt)
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
            colsums(t, XT, g, j * d0, one, d0, m)

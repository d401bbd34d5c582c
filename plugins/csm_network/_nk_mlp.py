"""Compiled kernels for any depth (:mod:`csm_network._numba_kernel`): :func:`mlp_loss_grad`
and :func:`mlp_hvp`, wide products by BLAS, thin first and last layers by fused loops."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._nk_common import JIT, affine, colsums, residual

__all__ = ["THIN", "mlp_loss_grad", "mlp_hvp"]

#: Layers whose input width (first layer) or output width (last layer) is at most this are
#: computed by fused loops over the samples; BLAS is slow on such thin products.
THIN = 4


@njit(**JIT)
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


@njit(**JIT)
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
                    affine(Z[q], th, ow[0] + q * c, c, th[ob[0] + q], XT, m)
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
            lo, so = residual(F[o], YT[o], wt, D[o])
            Lb += lo
            if want_grad:
                g[ob[nl - 1] + o] = so
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
                colsums(D[q], XT, g, ow[0] + q * c, one, c, m)
        else:
            np.dot(D, XT.T, g[ow[0]:ow[0] + r * c].reshape((r, c)))


@njit(**JIT)
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

"""Shared pieces of the network plugin's compiled kernels (:mod:`csm_network._numba_kernel`):
the compile options and the per-network passes several kernels use."""

from __future__ import annotations

import os

from numba import njit

__all__ = ["JIT", "affine", "colsums", "forward", "residual", "r_residual"]

_CACHE = not os.environ.get("CSM_NUMBA_NO_CACHE")
#: Options of every kernel (see :mod:`csm_network._numba_kernel` for ``fastmath``).
JIT = dict(cache=_CACHE, nogil=True, error_model="numpy", boundscheck=False,
           fastmath={"reassoc", "contract", "nsz"})


@njit(**JIT)
def affine(z, th, off, d0, bias, XT, m):
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


@njit(**JIT)
def colsums(t, XT, g, off, scale, d0, m):
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


@njit(**JIT)
def forward(th, XT, h, k, am, ap, Z, F):
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
        affine(z, th, j * d0, d0, th[ob1 + j], XT, m)
        for o in range(k):
            v = th[oW2 + o * h + j]
            fo = F[o]
            for i in range(m):
                zi = z[i]
                fo[i] += v * (zi * (ap if zi > zero else am))


@njit(inline="always", **JIT)
def residual(f, y, wt, D):
    """One output row: ``D[i] = 2 w_i (f_i - y_i)``; returns ``(sum_i w_i (f_i - y_i)^2,
    sum_i D[i])`` -- the loss term and the output bias's gradient."""
    zero = f.dtype.type(0)
    two = f.dtype.type(2)
    loss = zero
    s = zero
    for i in range(f.shape[0]):
        e = f[i] - y[i]
        we = wt[i] * e
        loss += we * e
        D[i] = two * we
        s += two * we
    return loss, s


@njit(inline="always", **JIT)
def r_residual(f, rf, y, wt):
    """One output row of the R-operator, in place: ``f <- delta = 2 w (f - y)``,
    ``rf <- R(delta) = 2 w R(f)``; returns ``sum_i R(delta)_i`` (the output bias's entry)."""
    two = f.dtype.type(2)
    s = f.dtype.type(0)
    for i in range(f.shape[0]):
        w2 = two * wt[i]
        f[i] = w2 * (f[i] - y[i])
        r = w2 * rf[i]
        rf[i] = r
        s += r
    return s

"""Optional compiled kernel for the ReLU loss and gradient (fused, one pass per network).

Imported by :mod:`csm_relu._engine` only when numba is importable and the environment variable
``CSM_DISABLE_NUMBA`` is unset (or ``0``/empty); the NumPy path in ``_engine`` stays the tested
reference (``plugins/csm_relu/tests/test_relu_engine_perf_paths.py`` compares the two).

Same algorithm and the same cancellation-free formulation as the NumPy path (see the
docstring of :mod:`csm_relu._engine`), written as scalar loops over one network at a time so
that everything of a network (``O(N)`` scratch) stays in L1 cache and the batch is streamed
once:

1. breakpoints ``tau_j`` (clipped to ``[alpha, beta]``; ``w = 0``: ``alpha`` if ``b > 0``
   else ``beta``) sorted with their neuron index: ranks by branch-free counting for
   ``N <= SMALL_N`` (a constant-size case: no mispredicted branches), an in-place quicksort
   (median of three, insertion-sort tail) above -- ``O(N log N)``; in the second and later GD
   steps of a network (``N >= WARM_N``) an insertion sort from the previous step's order,
   ``O(N)`` when few breakpoints cross, with a budget of element moves beyond which the step
   sorts from scratch;
2. one backward pass: suffix sums of ``(v w, v b)`` over the *live* left-facing neurons;
3. one forward pass over the ``N + 1`` pieces: slope/intercept = (prefix sum over the live
   right-facing neurons) + (the stored suffix sum) [+ c], the residual moments
   ``int e``, ``int e x`` and ``int e^2`` of the piece (closed midpoint form for affine
   targets, Gauss--Legendre otherwise), and their prefix sums;
4. one backward pass: suffix sums of the piece moments; neuron ``j`` of rank ``r`` reads the
   suffix from piece ``r + 1`` (right-facing) or the prefix up to piece ``r`` (left-facing) and
   writes its three gradient coordinates.

One source, compiled per neuron count for ``N <= SPECIALISED_N`` (:func:`kernel_for`: ``N`` a
compile-time constant, the short loops unrolled) and once generically above.

Dead neurons (``A_j`` empty) enter no piece sum, and their gradient coordinates are sums of
moments of zero-length pieces only, i.e. exactly 0.  Floating-point semantics: no
``fastmath`` (no reassociation, no FMA contraction), ``error_model="numpy"`` (division by 0
gives +-inf / nan as in NumPy).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

__all__ = ["pack", "kernel", "kernel_for", "SMALL_N", "SPECIALISED_N", "WARM_N", "WARM_SHIFTS"]

# counting-rank sort up to this many neurons, quicksort above (measured on the 2-core
# development machine on fresh random batches: counting is the faster up to N ~ 64-96; a
# branch-free merge sort was slower than the quicksort at N = 128-1000)
SMALL_N = 64
# GD steps after the first of a network: re-sort in the previous order by insertion from this
# many neurons on (below, the counting sort is as cheap), at most WARM_SHIFTS * N element moves
WARM_N = 32
WARM_SHIFTS = 8
_CACHE = not os.environ.get("CSM_NUMBA_NO_CACHE")
_TWELFTH = 1.0 / 12.0

_JIT = dict(cache=_CACHE, nogil=True, error_model="numpy", boundscheck=False)


@njit(**_JIT)
def _insertion_sort(key, idx, lo, hi):
    """Sort ``key[lo:hi]`` ascending, permuting ``idx`` alongside (stable)."""
    for i in range(lo + 1, hi):
        k = key[i]
        v = idx[i]
        j = i - 1
        while j >= lo and key[j] > k:
            key[j + 1] = key[j]
            idx[j + 1] = idx[j]
            j -= 1
        key[j + 1] = k
        idx[j + 1] = v


@njit(**_JIT)
def _sort(key, idx, n, stack):
    """In-place sort of ``key[:n]`` (no nan: breakpoints are clipped) with ``idx`` alongside,
    ties by neuron index (for ``idx`` ascending on input), so that the sorted order -- and
    with it every sum of the kernel -- is unique, whichever algorithm produced it (counting,
    quicksort, or the warm insertion sort of later GD steps).

    Quicksort on the keys alone (median of three, explicit stack, smaller side first so the
    stack stays ``O(log n)``) with an insertion-sort finish on short ranges: ``O(n log n)``
    expected; then one pass orders ``idx`` within runs of equal keys (:func:`_ties_by_index`;
    a lexicographic comparison inside the quicksort cost 1.6x at N = 256).
    """
    if n <= SMALL_N:
        _insertion_sort(key, idx, 0, n)  # stable: ties keep the index order of the input
        return
    sp = 0
    stack[0] = 0
    stack[1] = n - 1
    sp = 2
    while sp > 0:
        sp -= 2
        lo = stack[sp]
        hi = stack[sp + 1]
        while hi - lo > 16:
            mid = (lo + hi) >> 1
            # median of three into key[mid], then use it as the pivot
            if key[mid] < key[lo]:
                key[mid], key[lo] = key[lo], key[mid]
                idx[mid], idx[lo] = idx[lo], idx[mid]
            if key[hi] < key[mid]:
                key[hi], key[mid] = key[mid], key[hi]
                idx[hi], idx[mid] = idx[mid], idx[hi]
                if key[mid] < key[lo]:
                    key[mid], key[lo] = key[lo], key[mid]
                    idx[mid], idx[lo] = idx[lo], idx[mid]
            piv = key[mid]
            i = lo
            j = hi
            while i <= j:
                while key[i] < piv:
                    i += 1
                while key[j] > piv:
                    j -= 1
                if i <= j:
                    key[i], key[j] = key[j], key[i]
                    idx[i], idx[j] = idx[j], idx[i]
                    i += 1
                    j -= 1
            # [lo, j] and [i, hi]: push the larger, continue with the smaller
            if j - lo < hi - i:
                if i < hi:
                    stack[sp] = i
                    stack[sp + 1] = hi
                    sp += 2
                hi = j
            else:
                if lo < j:
                    stack[sp] = lo
                    stack[sp + 1] = j
                    sp += 2
                lo = i
        _insertion_sort(key, idx, lo, hi + 1)
    _ties_by_index(key, idx, n)


@njit(**_JIT)
def _ties_by_index(key, idx, n):
    """Within each run of equal ``key[:n]`` (sorted), order ``idx`` ascending (insertion)."""
    i = 0
    while i < n - 1:
        if key[i + 1] != key[i]:
            i += 1
            continue
        j = i + 1
        while j < n and key[j] == key[i]:
            j += 1
        for a in range(i + 1, j):
            v = idx[a]
            b = a - 1
            while b >= i and idx[b] > v:
                idx[b + 1] = idx[b]
                b -= 1
            idx[b + 1] = v
        i = j


@njit(inline="always", **_JIT)
def _breakpoint(th, N, j, alpha, beta):
    """``tau_j = -b_j / w_j`` clipped exactly as ``np.fmax(np.fmin(t, beta), alpha)`` (nan ->
    beta); inlined, so the warm and the cold sort compute it identically at no call cost."""
    t = -th[N + j] / (th[j] + 0.0)
    tau = t if t <= beta else beta
    return tau if tau >= alpha else alpha


def pack(N, alpha, beta, a0, a1, affine, coef, xi, wi):
    """The kernel's parameter arrays ``(fp, ip)``: few arguments = cheap dispatch (numba
    type-checks every argument on every call; 15 arguments cost ~1.5 us, 9 ~0.8 us)."""
    coef = np.asarray(coef, dtype=np.float64)
    xi = np.asarray(xi, dtype=np.float64)
    wi = np.asarray(wi, dtype=np.float64)
    fp = np.concatenate([[alpha, beta, a0, a1], coef, xi, wi]).astype(np.float64)
    ip = np.array([N, 1 if affine else 0, coef.shape[0], xi.shape[0]], dtype=np.int64)
    return fp, ip


def _make_kernel(NS):
    """The kernel, generic (``NS = 0``: ``N`` read from the parameters) or for exactly
    ``NS`` neurons (a closure constant: every loop over the neurons has a constant trip count
    and the compiler unrolls the short ones; measured side by side at B = 100, ten steps per
    call: N = 1 / 2 / 4 / 8 went from 63 / 44 / 32 / 26 to 40 / 28 / 25 / 20 ns per
    neuron-step, bit-identical results; at N = 16 the unrolled code was 1.4x slower, hence
    :data:`SPECIALISED_N`)."""

    @njit(**_JIT)
    def kernel(X, fp, ip, need_grad, final, step, steps, L, G):
        """Rows ``X[b]`` of a C-contiguous float64 batch (parameters from :func:`pack`).

        ``steps == 0``: loss ``L[b]`` and (``need_grad``) gradient ``G[b]`` (``final`` true).
        ``steps > 0``: ``steps`` GD steps ``X[b] <- X[b] - step G(X[b])`` in place (each network
        stays in L1 for all its steps; ``G`` unused); ``L[b]`` = loss at the final iterate when
        ``final`` (one more evaluation), else at the iterate of the last step (before its update).

        One function with the per-network body written inline: helper calls that take arrays
        cost reference-count updates per network (measured: ~100 ns per network at N = 4).
        The data-dependent choices (orientation, liveness) are selects, not branches: random
        signs would mispredict half of the time.
        """
        N = ip[0] if NS == 0 else NS
        affine = ip[1] != 0
        nc = ip[2]
        nq = ip[3]
        alpha = fp[0]
        beta = fp[1]
        a0 = fp[2]
        a1 = fp[3]
        coef = fp[4:4 + nc]
        xi = fp[4 + nc:4 + nc + nq]
        wi = fp[4 + nc + nq:4 + nc + 2 * nq]
        d = 3 * N + 1
        # scratch: one float and one int allocation (each allocation costs ~70 ns per call)
        M = N + 1
        fb = np.empty(2 * d + 10 * N + 8 * M)
        th = fb[0:d]
        g = fb[d:2 * d]
        o = 2 * d
        key = fb[o:o + N]
        ws = fb[o + N:o + 2 * N]
        bs = fb[o + 2 * N:o + 3 * N]
        vs = fb[o + 3 * N:o + 4 * N]
        wsi = ws.view(np.int64)
        rvw = fb[o + 4 * N:o + 5 * N]
        rvb = fb[o + 5 * N:o + 6 * N]
        lvw = fb[o + 6 * N:o + 7 * N]
        lvb = fb[o + 7 * N:o + 8 * N]
        dub = fb[o + 8 * N:o + 9 * N]
        dua = fb[o + 9 * N:o + 10 * N]
        rvwi = rvw.view(np.int64)
        rvbi = rvb.view(np.int64)
        lvwi = lvw.view(np.int64)
        lvbi = lvb.view(np.int64)
        dubi = dub.view(np.int64)
        duai = dua.view(np.int64)
        o += 10 * N
        sls = fb[o:o + M]
        sla = fb[o + M:o + 2 * M]
        m0 = fb[o + 2 * M:o + 3 * M]
        m1 = fb[o + 3 * M:o + 4 * M]
        pq0 = fb[o + 4 * M:o + 6 * M]
        pq1 = fb[o + 6 * M:o + 8 * M]
        p0 = pq0[:M]
        p1 = pq1[:M]
        ib = np.empty(4 * N + 130, np.int64)
        idx = ib[0:N]
        stack = ib[N:4 * N + 130]
        nev = steps + 1 if (final or steps == 0) else steps
        for b in range(X.shape[0]):
            for i in range(d):
                th[i] = X[b, i]
            loss = 0.0
            for it in range(nev):
                grad = need_grad if it == steps else True
                c = th[3 * N]
                # 1. breakpoints, clipped exactly as np.fmax(np.fmin(t, beta), alpha) (nan -> beta).
                # From the second step of a network on (N >= WARM_N): in the previous step's order
                # (one GD step moves few breakpoints past each other), sorted by insertion with a
                # budget of WARM_SHIFTS * N shifts -- O(N) when nearly sorted; over budget, the
                # cold path below sorts from scratch
                cold = True
                if it > 0 and N >= WARM_N:
                    for k in range(N):
                        key[k] = _breakpoint(th, N, idx[k], alpha, beta)
                    budget = WARM_SHIFTS * N
                    for i in range(1, N):
                        kk = key[i]
                        jj = idx[i]
                        q = i - 1
                        while q >= 0 and (key[q] > kk or (key[q] == kk and idx[q] > jj)):
                            key[q + 1] = key[q]
                            idx[q + 1] = idx[q]
                            q -= 1
                        key[q + 1] = kk
                        idx[q + 1] = jj
                        budget -= i - 1 - q
                        if budget < 0:
                            break
                    cold = budget < 0
                if cold:
                    for j in range(N):
                        key[j] = _breakpoint(th, N, j, alpha, beta)
                        idx[j] = j
                    if N <= SMALL_N:
                        # rank by counting (branch-free O(N^2) compares, vectorised); ties by index
                        for j in range(N):
                            kj = key[j]
                            r = 0
                            for i in range(N):
                                ki = key[i]
                                r += (ki < kj) | ((ki == kj) & (i < j))
                            p0[r] = kj
                            stack[r] = j
                        for k in range(N):
                            key[k] = p0[k]
                            idx[k] = stack[k]
                    else:
                        # breakpoints clipped to alpha / beta first and last, in index order (a
                        # stable split: often most neurons of a random network), then the interior
                        # sorted (quicksort, ties by index)
                        na = 0
                        nb = 0
                        for j in range(N):
                            na += key[j] == alpha
                            nb += key[j] == beta
                        ia = 0
                        ii = na
                        ib_ = N - nb
                        for j in range(N):  # branch-free: arithmetic on the comparisons
                            kj = key[j]
                            isa = np.int64(kj == alpha)
                            isb = np.int64(kj == beta)
                            isi = 1 - isa - isb
                            pos = isa * ia + isb * ib_ + isi * ii
                            ia += isa
                            ib_ += isb
                            ii += isi
                            p0[pos] = kj
                            stack[pos] = j
                        for k in range(N):
                            key[k] = p0[k]
                            idx[k] = stack[k]
                        ni = N - na - nb
                        if ni > 1:
                            _sort(key[na:na + ni], idx[na:na + ni], ni, stack)
                # in sorted order: w, b, v and the contributions (v w, v b) of the live
                # right-facing (rv*) and live left-facing (lv*) neurons, +0.0 for the others.
                # The liveness masks are sign bits (integer shifts and ANDs on the bit patterns):
                # a select here compiles to a data-dependent branch, mispredicted on every other
                # neuron of a fresh batch (measured: 1.5-2x the cost of the whole pass)
                for k in range(N):
                    j = idx[k]
                    w = th[j]
                    bb = th[N + j]
                    v = th[2 * N + j]
                    u = key[k]
                    ws[k] = w + 0.0  # -0.0 -> +0.0 (right-facing, as W >= 0)
                    bs[k] = bb
                    vs[k] = v
                    vw = v * w
                    vb = v * bb
                    rvw[k] = vw
                    rvb[k] = vb
                    lvw[k] = vw
                    lvb[k] = vb
                    dub[k] = u - beta   # < 0 <=> u < beta (u is clipped: never -0.0 here)
                    dua[k] = alpha - u  # < 0 <=> u > alpha
                for k in range(N):
                    sw = wsi[k] >> 63                   # -1: w < 0 (left-facing), 0: right
                    mr = ~sw & (dubi[k] >> 63)          # -1: live right-facing
                    ml = sw & (duai[k] >> 63)           # -1: live left-facing
                    rvwi[k] &= mr
                    rvbi[k] &= mr
                    lvwi[k] &= ml
                    lvbi[k] &= ml
                # 2. suffix sums over the live left-facing neurons (rank >= k)
                ss = 0.0
                sa = 0.0
                sls[N] = 0.0
                sla[N] = 0.0
                for k in range(N - 1, -1, -1):
                    ss += lvw[k]
                    sa += lvb[k]
                    sls[k] = ss
                    sla[k] = sa
                # 3. pieces: prefix over live right-facing (rank < p) + suffix; moments, prefix sums
                rs = 0.0
                ra = 0.0
                loss = 0.0
                q0 = 0.0
                q1 = 0.0
                lo = alpha
                for p in range(N + 1):
                    hi = key[p] if p < N else beta
                    S = rs + sls[p]
                    A = (ra + sla[p]) + c
                    h = hi - lo
                    m = 0.5 * (lo + hi)
                    if affine:
                        sig = S - a1
                        em = (A - a0) + sig * m
                        h12 = h * h * _TWELFTH
                        M0 = h * em
                        M1 = h * (em * m + sig * h12)
                        loss += h * (em * em + sig * sig * h12)
                    else:
                        half = 0.5 * h
                        M0 = 0.0
                        M1 = 0.0
                        for q in range(nq):
                            x = m + half * xi[q]
                            fx = coef[coef.shape[0] - 1]
                            for kk in range(coef.shape[0] - 2, -1, -1):
                                fx = fx * x + coef[kk]
                            e = (A + S * x) - fx
                            we = (half * wi[q]) * e
                            M0 += we
                            M1 += we * x
                            loss += we * e
                    m0[p] = M0
                    m1[p] = M1
                    q0 += M0
                    q1 += M1
                    p0[p] = q0
                    p1[p] = q1
                    if p < N:
                        rs += rvw[p]
                        ra += rvb[p]
                    lo = hi
                if grad:
                    # 4. suffix sums of the moments; neuron of rank k: suffix from piece k + 1
                    # (right-facing) or prefix up to piece k (left-facing); dead neurons read
                    # zero-length pieces only
                    # pq[:N+1] holds the prefix sums, pq[N+1+k] the suffix from piece k+1: the
                    # neuron's integral is one indexed load (a select here compiles to a
                    # data-dependent branch, mispredicted half of the time)
                    s0 = 0.0
                    s1 = 0.0
                    for k in range(N - 1, -1, -1):
                        s0 += m0[k + 1]
                        s1 += m1[k + 1]
                        pq0[M + k] = s0
                        pq1[M + k] = s1
                        j = idx[k]
                        w = ws[k]
                        # ws holds w + 0.0 (no -0.0): sign bit set <=> w < 0 <=> left-facing;
                        # integer arithmetic, so no compare for the compiler to turn into a branch
                        r = k + M * (1 + (wsi[k] >> 63))
                        I0 = pq0[r]
                        I1 = pq1[r]
                        v = vs[k]
                        g[j] = 2.0 * (v * I1)
                        g[N + j] = 2.0 * (v * I0)
                        g[2 * N + j] = 2.0 * (w * I1 + bs[k] * I0)
                    g[3 * N] = 2.0 * q0
                if it < steps:
                    for i in range(d):
                        th[i] = th[i] - step * g[i]
            L[b] = loss
            if steps > 0:
                for i in range(d):
                    X[b, i] = th[i]
            elif need_grad:
                for i in range(d):
                    G[b, i] = g[i]

    return kernel


#: Neuron counts up to this get their own compiled kernel (:func:`kernel_for`).
SPECIALISED_N = 8
#: The generic kernel (any ``N``).
kernel = _make_kernel(0)
_KERNELS = {n: _make_kernel(n) for n in range(1, SPECIALISED_N + 1)}


def kernel_for(N: int):
    """The kernel for ``N`` neurons: specialised for ``N <= SPECIALISED_N``, else generic
    (each compiled on first use and cached on disk)."""
    return _KERNELS.get(int(N), kernel)

"""Exact, batched piecewise-polynomial integrals for the shallow ReLU loss (docs/theory.md §2, §4).

Everything here works on a batch ``X`` of shape ``(B, 3N + 1)`` with the layout
``theta = (w_1..w_N, b_1..b_N, v_1..v_N, c)`` and is vectorised over the batch and over the
neurons (``np.sort``/``np.cumsum``/``np.take_along_axis`` on ``(B, N)`` arrays); the only Python
loops run over the degree of the target polynomial.

The algorithm (cost ``O(N log N)`` per network)
-------------------------------------------------
1. Each neuron ``j`` is an interval ``A_j = {x in [alpha, beta] : w_j x + b_j > 0}`` that is
   either ``[tau_j, beta]`` ("right-facing", ``w_j > 0``, or ``w_j = 0``) or ``[alpha, tau_j]``
   ("left-facing", ``w_j < 0``), with ``tau_j`` the breakpoint ``-b_j / w_j`` clipped to
   ``[alpha, beta]``.  A neuron with ``w_j = 0`` is right-facing with ``tau_j = alpha`` when
   ``b_j > 0`` (semi-active: ``A_j = [alpha, beta]``) and ``tau_j = beta`` otherwise
   (``A_j`` empty; this covers degenerate neurons, so ``G`` uses ``relu'(0) = 0``).
2. Sorting the ``tau_j`` splits ``[alpha, beta]`` into ``N + 1`` pieces
   ``[u_k, u_{k+1}]``; on piece ``k`` the network is affine with slope/intercept given by a
   prefix sum over right-facing and a suffix sum over left-facing neurons.

   *Cancellation-free formulation.*  The coefficients ``(v_j w_j, v_j b_j)`` of neuron ``j``
   enter only the sums of the pieces inside its active set ``A_j``: the right-facing prefix
   sum and the left-facing suffix sum are accumulated separately (never
   ``total - prefix``), and a *dead* neuron (``A_j`` empty: ``w_j > 0`` with ``t_j >= beta``,
   ``w_j < 0`` with ``t_j <= alpha``, ``w_j = 0`` with ``b_j <= 0``) gets weight exactly 0.
   So the slope and intercept of a piece are ``c + sum_{j active on the piece}`` of terms
   that are really present in ``N_theta`` there: however large ``v_j`` of a neuron inactive
   on ``[alpha, beta]`` (or on the piece), it never appears in a sum and cannot cancel, and
   ``L`` and ``G`` equal those of the network without that neuron.
3. On each piece the residual ``e = N_theta - f`` is a polynomial: its integrals against
   ``1, x`` and of ``e^2`` are computed exactly -- in closed form (midpoint form, no
   cancellation of powers) for affine targets, by Gauss--Legendre with ``deg f + 1`` nodes
   (exact for degree ``2 deg f + 1``) otherwise.
4. ``int_{A_j} e x^p`` is a suffix sum (right-facing) or prefix sum (left-facing) of the piece
   moments, gathered at the neuron's rank.

Two implementations of the loss and gradient
--------------------------------------------
* the **NumPy path** below (the reference): vectorised over the batch and the neurons, the
  batch processed in internal blocks of ``BLOCK_ELEMS`` network-neurons so that the ~20
  ``(B, N)`` temporaries of a block stay in cache (measured: 1.3--1.8x faster than one
  block at B = 10^4); ``out=`` buffers for callers that run many steps;
* the optional **compiled kernel** :mod:`csm_relu._numba_kernel` (numba, ``pip install
  csm[fast]``; off with ``CSM_DISABLE_NUMBA=1``): the same algorithm fused into one pass per
  network, everything of a network in L1, the batch streamed once, and
  :meth:`Engine.gd_steps` running many GD steps per network in one call.  It is 2.6--5.5x faster
  than the NumPy path at B = 10^4 and up to ~85x at B = 1 (per-call overhead; figures in
  benchmarks/README.md), which no rearrangement of NumPy calls reaches: a NumPy step makes
  ~60 passes over ``(B, N)`` arrays.  Tests compare
  the two paths (tests/test_relu_engine_perf_paths.py).  The modified gradient ``G_J`` takes
  ``G`` from the kernel and only the coordinates where ``G_J`` differs from the NumPy path,
  so every coordinate the two share is bitwise ``G``'s; Hessians and Hessian-vector products
  always use the NumPy path.

A third, optional implementation, :class:`ArrayApiEngine` (:mod:`csm_relu._array_api`, issue 16), runs the same algorithm
on array-API arrays that are not NumPy (torch on any device, CuPy, array_api_strict; needs
``array-api-compat``): :meth:`Engine.loss`, :meth:`Engine.loss_and_gradient` and
:meth:`Engine.hvp` hand such inputs to it and return arrays of the input's kind, device and
dtype.  NumPy inputs never reach it; it agrees with the NumPy path to rounding
(tests/test_array_api.py).

Hessian-vector products use the Gauss--Newton structure ``H = 2 int dN dN^T + 2 E``: the
directional derivative ``g = dN[V]`` is again piecewise affine on the same pieces, so ``H V``
costs the same as a gradient.  Full Hessians are Gram matrices of the basis functions
``phi_i = 1_{[lo_i, hi_i]} (p_i x + q_i)`` (closed form, ``O(N^2)``).
"""

from __future__ import annotations


import numpy as np

from csm.backends import array_namespace, optional_kernel

__all__ = ["ArrayApiEngine", "Engine", "numba_kernel"]


#: The optional compiled kernel (:mod:`csm_relu._numba_kernel`, ``pip install csm[fast]``), or
#: ``None`` (``CSM_DISABLE_NUMBA`` set, numba missing): the NumPy code below is the reference.
_NK = optional_kernel("csm_relu._numba_kernel")


def numba_kernel():
    """The compiled kernel module in use by default (``None``: NumPy only)."""
    return _NK


_TILE_CACHE: dict = {}


def _tiled_arange(B: int, N: int) -> np.ndarray:
    key = (B, N)
    arr = _TILE_CACHE.get(key)
    if arr is None:
        if len(_TILE_CACHE) > 8:
            _TILE_CACHE.clear()
        arr = np.tile(np.arange(N, dtype=np.intp), B)
        _TILE_CACHE[key] = arr
    return arr


class _Layout:
    """Breakpoints, orientation and sorting of one batch (internal).

    Gathers use flat indices into raveled ``(B, N)`` arrays (much faster than
    ``take_along_axis``): ``gidx`` sorts the neurons by breakpoint, ``ridx`` / ``ridx1`` pick
    position ``rank_j`` / ``rank_j + 1`` of a ``(B, N + 1)`` array.  ``rlive_s`` /
    ``llive_s`` (sorted order) mark the right- / left-facing neurons with a non-empty active
    set ``A_j``; dead neurons are in neither.  ``wnz``, ``t`` and ``ridx1`` (needed by the
    Hessian and the modified gradient only) are computed on first use.
    """

    __slots__ = ("W", "Bb", "V", "c", "_t", "tau", "right", "rank", "u", "B",
                 "N", "gidx", "ridx", "rlive_s", "llive_s", "_iidx")

    def __init__(self, X: np.ndarray, N: int, alpha: float, beta: float) -> None:
        B = X.shape[0]
        self.B, self.N = B, N
        W = X[:, :N]
        Bb = X[:, N:2 * N]
        self.W, self.Bb = W, Bb
        self.V = X[:, 2 * N:3 * N]
        self.c = X[:, 3 * N]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = np.add(W, 0.0)  # W + 0.0 kills -0.0
            np.divide(Bb, t, out=t)
            np.negative(t, out=t)  # +-inf (w = 0, b != 0), nan (degenerate)
        self._t = t
        # clip to [alpha, beta]; fmin maps nan to beta: w = 0 gives alpha (b > 0) or beta
        tau = np.fmin(t, beta)
        np.fmax(tau, alpha, out=tau)
        self.tau = tau
        self.right = W >= 0
        order = np.argsort(tau, axis=1)
        rows = np.arange(0, B * N, N)[:, None]
        order += rows
        gidx = order.ravel()
        self.gidx = gidx
        rank = np.empty(B * N, dtype=np.intp)
        rank[gidx] = _tiled_arange(B, N)
        rank = rank.reshape(B, N)
        self.rank = rank
        self.ridx = rank + np.arange(0, B * (N + 1), N + 1)[:, None]
        right_s = self.right.ravel()[gidx].reshape(B, N)
        # A_j non-empty: [tau_j, beta] with tau_j < beta, or [alpha, tau_j] with tau_j > alpha
        u = np.empty((B, N + 2))
        u[:, 0] = alpha
        u_s = u[:, 1:N + 1]
        u_s[...] = tau.ravel()[gidx].reshape(B, N)
        u[:, N + 1] = beta
        self.u = u
        self.rlive_s = right_s & (u_s < beta)
        np.invert(right_s, out=right_s)
        self.llive_s = right_s
        self.llive_s &= u_s > alpha
        self._iidx = None

    @property
    def t(self) -> np.ndarray:
        """Unclipped breakpoints ``-b / w``."""
        return self._t

    @property
    def wnz(self) -> np.ndarray:
        return self.W != 0

    @property
    def ridx1(self) -> np.ndarray:
        return self.ridx + 1

    def sort(self, a: np.ndarray) -> np.ndarray:
        """``a (B, N)`` in breakpoint order."""
        return a.ravel()[self.gidx].reshape(self.B, self.N)

    def int_index(self, right: np.ndarray) -> np.ndarray:
        """Flat indices into a ``(2, B, N + 1)`` buffer ``[prefix sums, reversed suffix sums]``
        of piece moments that pick ``int_{A_j}``: the suffix from piece ``rank_j + 1``
        (``right``) or the prefix up to piece ``rank_j`` (cached for ``right is self.right``).
        """
        if right is self.right and self._iidx is not None:
            return self._iidx
        B, N = self.B, self.N
        # right: reversed suffix at s = N - (rank + 1), in the second half of the buffer:
        # ridx + (B (N + 1) + N - 1 - 2 rank); left: ridx (in place, one temporary)
        idx = self.rank * -2
        idx += B * (N + 1) + N - 1
        idx *= right
        idx += self.ridx
        if right is self.right:
            self._iidx = idx
        return idx


class Engine:
    """Exact integrals of the ReLU loss for ``N`` neurons on ``[alpha, beta]``, target ``coef``.

    ``coef`` are the target's polynomial coefficients, lowest degree first (trailing zeros
    already removed, at least one entry).
    """

    #: NumPy path: rows per internal block = max(1, BLOCK_ELEMS // N) (measured sweet spot:
    #: the block's ~20 (B, N) temporaries stay in L2; see benchmarks/README.md)
    BLOCK_ELEMS = 16384

    def __init__(self, N: int, alpha: float, beta: float, coef: np.ndarray,
                 fast: bool | None = None) -> None:
        """``fast``: use the compiled kernel for the loss and gradient (``None``: when it is
        available, see :func:`numba_kernel`; ``False``: the NumPy reference path)."""
        if fast is None:
            self.nk = _NK
        elif fast:
            # explicit request: the kernel even where CSM_DISABLE_NUMBA turns the default off
            self.nk = _NK
            if self.nk is None:
                try:
                    from . import _numba_kernel as nk
                except Exception as exc:
                    raise RuntimeError("fast=True needs numba (pip install 'csm[fast]')"
                                       ) from exc
                self.nk = nk
        else:
            self.nk = None
        self.N = int(N)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.coef = np.asarray(coef, dtype=float)
        self.deg = len(self.coef) - 1
        self.affine = self.deg <= 1
        a = np.zeros(2)
        a[: min(2, len(self.coef))] = self.coef[:2]
        self.a0, self.a1 = float(a[0]), float(a[1])
        n_nodes = max(self.deg, 1) + 1  # exact for e^2 of degree 2 max(deg, 1)
        xi, wi = np.polynomial.legendre.leggauss(n_nodes)
        self.xi, self.wi = xi, wi
        if self.nk is not None:
            self._kernel = self.nk.kernel_for(self.N)
            self._fp, self._ip = self.nk.pack(self.N, self.alpha, self.beta, self.a0, self.a1,
                                              self.affine, self.coef, xi, wi)
        self._dummy = np.empty((1, 1))

    @property
    def fast(self) -> bool:
        """Whether the loss and gradient run in the compiled kernel."""
        return self.nk is not None

    @property
    def array_api(self) -> ArrayApiEngine:
        """The array-API implementation (:class:`ArrayApiEngine`) of this engine (cached)."""
        eng = self.__dict__.get("_xpe")
        if eng is None:
            eng = self._xpe = ArrayApiEngine(self)
        return eng

    @staticmethod
    def _xp_only(**unsupported) -> None:
        given = [k for k, v in unsupported.items() if v is not None]
        if given:
            raise TypeError(f"array-API inputs: {', '.join(given)} not supported (NumPy "
                            f"inputs only)")

    # ------------------------------------------------------------------ basics
    def layout(self, X: np.ndarray) -> _Layout:
        return _Layout(X, self.N, self.alpha, self.beta)

    def f(self, x: np.ndarray) -> np.ndarray:
        """The target polynomial (Horner; loop over the degree only)."""
        out = np.full_like(x, self.coef[-1], dtype=float)
        for a in self.coef[-2::-1]:
            out = out * x + a
        return out

    def piece_affine(self, lay: _Layout, slope: np.ndarray, icpt: np.ndarray,
                     const: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slopes and intercepts ``(B, N+1)`` of ``const + sum_j 1_{A_j}(x)(slope_j x + icpt_j)``.

        Piece ``k`` collects the live right-facing neurons of rank ``< k`` (a prefix sum) and
        the live left-facing ones of rank ``>= k`` (a suffix sum), each accumulated on its own
        and only then added to ``const``.  A neuron's coefficients therefore enter exactly the
        pieces inside ``A_j``; dead neurons (``A_j`` empty) enter none.  No term is ever added
        and later subtracted, so a huge coefficient of a neuron that is inactive on a piece
        cannot cancel into that piece (see the module docstring).
        """
        B, N = lay.B, lay.N
        rl, ll = lay.rlive_s, lay.llive_s
        out = []
        for a, c0 in ((slope, None), (icpt, const)):
            a_s = lay.sort(a)
            acc = np.empty((B, N + 1))
            acc[:, 0] = 0.0
            # masking by a boolean product (in place, few temporaries) is several times faster
            # than np.where, and exact (0 * a = +-0) unless some a is +-inf (an overflowed
            # v_j w_j or v_j b_j): then a row total is not finite and np.where is used instead
            with np.errstate(invalid="ignore"):
                la = a_s * ll
                np.multiply(a_s, rl, out=a_s)
            # right-facing: acc[:, k] = sum over the live ones of rank < k
            np.cumsum(a_s, axis=1, out=acc[:, 1:])
            # left-facing: la[:, k] = sum over the live ones of rank >= k (reversed, in place)
            np.cumsum(la[:, ::-1], axis=1, out=la[:, ::-1])
            if not (np.isfinite(acc[:, N]).all() and np.isfinite(la[:, 0]).all()):
                a_s = lay.sort(a)
                np.cumsum(np.where(rl, a_s, 0.0), axis=1, out=acc[:, 1:])
                la = np.where(ll, a_s, 0.0)
                np.cumsum(la[:, ::-1], axis=1, out=la[:, ::-1])
            acc[:, :N] += la
            if c0 is not None:
                acc += c0[:, None]
            out.append(acc)
        return out[0], out[1]

    def residual_moments(self, lay: _Layout, S: np.ndarray, A: np.ndarray,
                         need_loss: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """``int e^2`` over ``[alpha, beta]`` and piece moments ``M (B, N+1, 2)``: ``int e x^p``."""
        lo = lay.u[:, :-1]
        hi = lay.u[:, 1:]
        h = hi - lo
        m = 0.5 * (lo + hi)
        M = np.empty(S.shape + (2,))
        if self.affine:
            sig = S - self.a1
            em = A - self.a0
            em += sig * m  # e at the midpoint
            h12 = h * h
            h12 /= 12.0
            np.multiply(h, em, out=M[:, :, 0])
            M[:, :, 1] = h * (em * m + sig * h12)
            loss = None
            if need_loss:
                loss = np.einsum("bk,bk->b", h, em * em + sig * sig * h12)
            return loss, M
        half = 0.5 * h
        x = m[:, :, None] + half[:, :, None] * self.xi  # (B, N+1, n)
        wts = half[:, :, None] * self.wi
        e = A[:, :, None] + S[:, :, None] * x - self.f(x)
        we = wts * e
        M[:, :, 0] = we.sum(axis=2)
        M[:, :, 1] = (we * x).sum(axis=2)
        loss = (we * e).sum(axis=(1, 2)) if need_loss else None
        return loss, M

    @staticmethod
    def affine_moments(lay: _Layout, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        """Piece moments ``int g x^p`` (p = 0, 1) of a piecewise-affine ``g`` (closed form)."""
        lo = lay.u[:, :-1]
        hi = lay.u[:, 1:]
        h = hi - lo
        m = 0.5 * (lo + hi)
        gm = A + S * m
        M = np.empty(S.shape + (2,))
        M[:, :, 0] = h * gm
        M[:, :, 1] = h * (gm * m + S * (h * h / 12.0))
        return M

    @staticmethod
    def neuron_integrals(lay: _Layout, M: np.ndarray, right: np.ndarray) -> np.ndarray:
        """``int_{[tau_j, beta]}`` (``right``) or ``int_{[alpha, tau_j]}`` of the piece moments.

        ``M (B, N+1, P)``; returns ``(B, N, P)``.  Direct prefix and suffix sums (no
        ``total - prefix`` cancellation): only pieces inside the neuron's interval are summed.
        Both sums of a moment are written into one buffer and read with a single gather.
        """
        B, N = lay.B, lay.N
        P = M.shape[2]
        idx = lay.int_index(right)
        out = np.empty((P, B, N))
        buf = np.empty((2, B, N + 1))
        flat = buf.reshape(-1)
        for q in range(P):
            m = M[:, :, q]
            np.cumsum(m, axis=1, out=buf[0])            # buf[0, b, r] = sum_{k <= r}
            np.cumsum(m[:, ::-1], axis=1, out=buf[1])   # buf[1, b, s] = sum_{k >= N - s}
            np.take(flat, idx, out=out[q], mode="clip")  # indices are in range: no buffering
        return out.transpose(1, 2, 0)

    def residual_at(self, lay: _Layout, S: np.ndarray, A: np.ndarray,
                    x: np.ndarray) -> np.ndarray:
        """``e(x_j)`` with the formula of the piece starting at ``tau_j``.

        Correct for breakpoints strictly inside ``(alpha, beta)`` (every neuron tied with it has
        the same unclipped breakpoint, so the formulas of the tied zero-length pieces agree);
        at ``alpha``/``beta`` use the one-sided limit formulas instead.
        """
        Sj = S.ravel()[lay.ridx1]
        Aj = A.ravel()[lay.ridx1]
        return Aj + Sj * x - self.f(x)

    # ------------------------------------------------------------------ loss, gradient
    def _blocks(self, B: int):
        step = max(1, self.BLOCK_ELEMS // self.N)
        return ((s, min(B, s + step)) for s in range(0, B, step))

    def _lg_numpy(self, X: np.ndarray, L: np.ndarray | None, G: np.ndarray | None) -> None:
        """NumPy reference on one block: ``L`` (if not None) and ``G`` (if not None)."""
        lay = self.layout(X)
        V = lay.V
        S, A = self.piece_affine(lay, V * lay.W, V * lay.Bb, lay.c)
        loss, M = self.residual_moments(lay, S, A, L is not None)
        if L is not None:
            L[...] = loss
        if G is None:
            return
        I = self.neuron_integrals(lay, M, lay.right)
        self._write_gradient(lay, I, M, G)

    def _write_gradient(self, lay: _Layout, I: np.ndarray, M: np.ndarray,
                        G: np.ndarray) -> None:
        N = self.N
        I0, I1 = I[:, :, 0], I[:, :, 1]
        V = lay.V
        np.multiply(V, I1, out=G[:, :N])
        G[:, :N] *= 2.0
        np.multiply(V, I0, out=G[:, N:2 * N])
        G[:, N:2 * N] *= 2.0
        g = G[:, 2 * N:3 * N]
        np.multiply(lay.W, I1, out=g)
        g += lay.Bb * I0
        g *= 2.0
        G[:, 3 * N] = 2.0 * M[:, :, 0].sum(axis=1)

    @staticmethod
    def _as_batch(X: np.ndarray) -> np.ndarray:
        if X.dtype != np.float64 or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float64)
        return X

    def loss(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Loss ``(B,)`` of a batch ``X (B, 3N + 1)`` (written into ``out`` when given).

        A non-NumPy array-API ``X`` (torch, CuPy, ...) goes to :attr:`array_api`."""
        if not isinstance(X, np.ndarray):
            xp = array_namespace(X)
            if xp is not None:
                self._xp_only(out=out)
                return self.array_api.loss(xp, X)
        X = self._as_batch(X)
        B = X.shape[0]
        L = np.empty(B) if out is None else out
        if self.nk is not None:
            self._kernel(X, self._fp, self._ip, False, True, 0.0, 0, L, self._dummy)
            return L
        for s, e in self._blocks(B):
            self._lg_numpy(X[s:e], L[s:e], None)
        return L

    def loss_and_gradient(self, X: np.ndarray, need_loss: bool = True,
                          ori: np.ndarray | None = None,
                          out: tuple[np.ndarray | None, np.ndarray] | None = None):
        """Loss ``(B,)`` and the paper's generalised gradient ``G`` ``(B, 3N+1)``.

        ``ori`` (optional, ``(N,)`` ints in {0, +1, -1}) requests the modified gradient
        ``G_J`` of docs/theory.md §4: +1 for ``J_+`` (signed interval ``[t_j, beta]``), -1 for ``J_-``
        (``[alpha, t_j]``), 0 for unmodified neurons.  ``out = (L, G)``: C-contiguous float64
        buffers to write into (``L`` may be ``None`` when ``need_loss`` is false), reused
        across steps by a caller that runs many; the results are returned either way.
        The loss is ``None`` when ``need_loss`` is false.  A non-NumPy array-API ``X``
        (torch, CuPy, ...; no ``ori``, no ``out``) goes to :attr:`array_api`.
        """
        if not isinstance(X, np.ndarray):
            xp = array_namespace(X)
            if xp is not None:
                self._xp_only(ori=ori, out=out)
                return self.array_api.loss_and_gradient(xp, X, need_loss)
        X = self._as_batch(X)
        B, d = X.shape
        if out is None:
            L = np.empty(B) if (need_loss or self.nk is not None) else None
            G = np.empty((B, d))
        else:
            L, G = out
            if L is None and self.nk is not None:
                L = np.empty(B)
        if ori is not None:
            return self._modified_loss_and_gradient(X, need_loss, ori, L, G)
        if self.nk is not None:
            self._kernel(X, self._fp, self._ip, True, True, 0.0, 0, L, G)
        else:
            for s, e in self._blocks(B):
                self._lg_numpy(X[s:e], L[s:e] if need_loss else None, G[s:e])
        return (L if need_loss else None), G

    def _modified_loss_and_gradient(self, X, need_loss, ori, L, G):
        lay = self.layout(X)
        S, A = self.piece_affine(lay, lay.V * lay.W, lay.V * lay.Bb, lay.c)
        loss, M = self.residual_moments(lay, S, A, need_loss)
        I, ori_e, isJ, t, ea, eb, upper, lower, _ = self._modified_integrals(lay, S, A, M, ori)
        if self.nk is None:
            self._write_gradient(lay, I, M, G)
            if need_loss:
                L[...] = loss
            return (L if need_loss else None), G
        # compiled path: G from the kernel, so that every coordinate G_J shares with G is
        # bitwise G's; the NumPy values only where G_J really differs from G (a J neuron whose
        # signed interval is not A_j: other orientation, or an extension past alpha / beta)
        self._kernel(X, self._fp, self._ip, True, True, 0.0, 0, L, G)
        right_eff = np.where(isJ, ori_e > 0, lay.right)
        differ = isJ & ((right_eff != lay.right) | upper | lower)
        if np.any(differ):
            Gm = np.empty_like(G)
            self._write_gradient(lay, I, M, Gm)
            N = self.N
            rows, cols = np.nonzero(differ)
            for base in (0, N, 2 * N):
                G[rows, base + cols] = Gm[rows, base + cols]
        return (L if need_loss else None), G

    def gd_steps(self, X: np.ndarray, step: float, steps: int, out: np.ndarray | None = None,
                 final_loss: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``steps`` plain GD steps ``X <- X - step G(X)`` of every network of the batch.

        Returns the final iterates (in ``out``, which may be ``X`` itself, else a new array)
        and losses ``(B,)``: at the iterate of the last step (before its update, as a GD loop
        computes them), or at the final iterates with ``final_loss`` (one more evaluation;
        always for ``steps = 0``).  Compiled path: each network runs all its steps while it
        sits in L1 cache, one call for the whole run (no per-step overhead).  No stopping
        rule: :func:`csm.descend` is the runner with per-run convergence tests.
        """
        X = self._as_batch(X)
        Y = np.array(X, copy=True) if out is None else out
        if Y is not X:
            Y[...] = X
        steps = int(steps)
        L = np.empty(X.shape[0])
        if self.nk is not None:
            self._kernel(Y, self._fp, self._ip, False, bool(final_loss), float(step), steps,
                           L, self._dummy)
            return Y, L
        G = np.empty_like(Y)
        for _ in range(steps):
            self.loss_and_gradient(Y, out=(L, G))
            G *= step
            Y -= G
        if final_loss or steps == 0:
            self.loss(Y, out=L)
        return Y, L

    # ------------------------------------------------------------------ modified gradient
    def _ext_masks(self, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
        """Neurons active just left of ``beta`` (upper) and just right of ``alpha`` (lower)."""
        up = (lay.right & (lay.tau < self.beta)) | (~lay.right & (lay.tau >= self.beta))
        low = (~lay.right & (lay.tau > self.alpha)) | (lay.right & (lay.tau <= self.alpha))
        return up, low

    def _ext_affine(self, lay: _Layout, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        S = np.where(mask, lay.V * lay.W, 0.0).sum(axis=1)
        A = np.where(mask, lay.V * lay.Bb, 0.0).sum(axis=1) + lay.c
        return S, A

    def _modified_setup(self, lay: _Layout, ori: np.ndarray):
        ori = np.broadcast_to(np.asarray(ori, dtype=int), (lay.B, lay.N))
        ori = np.where(lay.wnz, ori, 0)  # w_j = 0: no breakpoint, fall back to G
        isJ = ori != 0
        right_eff = np.where(isJ, ori > 0, lay.right)
        t = np.where(isJ, lay.t, lay.tau)
        # extension interval [ea, eb] (signed): J+: from t to tau; J-: from tau to t
        ea = np.where(ori > 0, t, lay.tau)
        eb = np.where(ori > 0, lay.tau, t)
        upper = isJ & (t > self.beta)
        lower = isJ & (t < self.alpha)
        return ori, isJ, right_eff, t, ea, eb, upper, lower

    def _modified_integrals(self, lay: _Layout, S: np.ndarray, A: np.ndarray,
                            M: np.ndarray, ori: np.ndarray):
        ori, isJ, right_eff, t, ea, eb, upper, lower = self._modified_setup(lay, ori)
        I = self.neuron_integrals(lay, M, right_eff)
        ext = None
        if np.any(isJ):
            # residual formulas continued past beta (left limit) and alpha (right limit)
            up, low = self._ext_masks(lay)
            Su, Au = self._ext_affine(lay, up)
            Sl, Al = self._ext_affine(lay, low)
            ext = (Su, Au, Sl, Al)
        if np.any(upper | lower):
            Su, Au, Sl, Al = ext
            Se = np.where(upper, Su[:, None], np.where(lower, Sl[:, None], 0.0))
            Ae = np.where(upper, Au[:, None], np.where(lower, Al[:, None], 0.0))
            h = np.where(upper | lower, eb - ea, 0.0)
            m = np.where(upper | lower, 0.5 * (ea + eb), 0.0)
            half = 0.5 * h
            x = m[:, :, None] + half[:, :, None] * self.xi
            wts = half[:, :, None] * self.wi
            e = Ae[:, :, None] + Se[:, :, None] * x - self.f(x)
            we = wts * e
            I = I + np.stack([we.sum(axis=2), (we * x).sum(axis=2)], axis=2)
        return I, ori, isJ, t, ea, eb, upper, lower, ext

    # ------------------------------------------------------------------ Hessian-vector products
    def hvp(self, X: np.ndarray, Vd: np.ndarray) -> np.ndarray:
        """Rowwise ``H(X_b) V_b`` in ``O(N log N)`` (Gauss--Newton part + boundary terms).

        Same convention as :meth:`jacobian`: boundary terms only for breakpoints strictly
        inside ``(alpha, beta)``.  Non-NumPy array-API inputs go to :attr:`array_api`.
        """
        if not isinstance(X, np.ndarray) or not isinstance(Vd, np.ndarray):
            xp = array_namespace(X, Vd)
            if xp is not None:
                return self.array_api.hvp(xp, X, Vd)
        N = self.N
        lay = self.layout(X)
        W, Bb, V = lay.W, lay.Bb, lay.V
        dW, dB, dV, dc = Vd[:, :N], Vd[:, N:2 * N], Vd[:, 2 * N:3 * N], Vd[:, 3 * N]
        S, A = self.piece_affine(lay, V * W, V * Bb, lay.c)
        _, M = self.residual_moments(lay, S, A, need_loss=False)
        I = self.neuron_integrals(lay, M, lay.right)
        Sg, Ag = self.piece_affine(lay, dV * W + V * dW, dV * Bb + V * dB, dc)
        Mg = self.affine_moments(lay, Sg, Ag)
        Ig = self.neuron_integrals(lay, Mg, lay.right)
        I0, I1 = I[:, :, 0], I[:, :, 1]
        J0, J1 = Ig[:, :, 0], Ig[:, :, 1]
        out = np.empty_like(Vd)
        out[:, :N] = 2.0 * (V * J1 + I1 * dV)
        out[:, N:2 * N] = 2.0 * (V * J0 + I0 * dV)
        out[:, 2 * N:3 * N] = 2.0 * (W * J1 + Bb * J0 + I1 * dW + I0 * dB)
        out[:, 3 * N] = 2.0 * Mg[:, :, 0].sum(axis=1)
        # moving-breakpoint terms (type-2-active neurons)
        inside = lay.wnz & (lay.tau > self.alpha) & (lay.tau < self.beta)
        if np.any(inside):
            tt = np.where(inside, lay.tau, 0.0)
            et = self.residual_at(lay, S, A, tt)
            kap = np.where(inside, 2.0 * V * et / np.where(inside, np.abs(W), 1.0), 0.0)
            out[:, :N] += kap * tt * (tt * dW + dB)
            out[:, N:2 * N] += kap * (tt * dW + dB)
        return out

    # ------------------------------------------------------------------ Jacobians
    def jacobian(self, X: np.ndarray, ori: np.ndarray | None = None) -> np.ndarray:
        """Hessian ``(B, d, d)`` (``ori`` None) or the Jacobian of ``G_J`` (``ori`` given).

        ``H = 2 Gram(phi) + 2 E``: Gram matrix of the basis functions
        ``phi_i = 1_{[lo_i, hi_i]}(x) (p_i x + q_i)`` (``dN/dtheta_i``), the ``e``-terms
        ``E[v_j, w_j] = int_{A_j} e x``, ``E[v_j, b_j] = int_{A_j} e`` and the moving-breakpoint
        terms ``v_j e(t_j) / |w_j| [[t^2, t], [t, 1]]`` in the ``(w_j, b_j)`` block, included
        when ``t_j`` lies strictly inside ``(alpha, beta)`` (docs/theory.md §2).  For ``G_J`` the rows of
        the ``J`` neurons use the signed intervals of docs/theory.md §4 and their exact derivatives
        (Leibniz rule, with the residual's boundary polynomial past ``alpha``/``beta``).
        """
        N = self.N
        al, be = self.alpha, self.beta
        lay = self.layout(X)
        B = lay.B
        W, Bb, V = lay.W, lay.Bb, lay.V
        S, A = self.piece_affine(lay, V * W, V * Bb, lay.c)
        _, M = self.residual_moments(lay, S, A, need_loss=False)
        zeros = np.zeros_like(W)
        ones = np.ones((B, 1))
        lo = np.where(lay.right, lay.tau, al)
        hi = np.where(lay.right, be, lay.tau)
        lo_c = np.concatenate([lo, lo, lo, al * ones], axis=1)
        hi_c = np.concatenate([hi, hi, hi, be * ones], axis=1)
        p_c = np.concatenate([V, zeros, W, 0 * ones], axis=1)
        q_c = np.concatenate([zeros, V, Bb, ones], axis=1)
        if ori is None:
            I = self.neuron_integrals(lay, M, lay.right)
            lo_r, hi_r = lo_c, hi_c
            isJ = None
        else:
            I, ori_e, isJ, t, ea, eb, upper, lower, ext = self._modified_integrals(
                lay, S, A, M, ori)
            right_eff = np.where(isJ, ori_e > 0, lay.right)
            lo2 = np.where(right_eff, lay.tau, al)
            hi2 = np.where(right_eff, be, lay.tau)
            lo_r = np.concatenate([lo2, lo2, lo2, al * ones], axis=1)
            hi_r = np.concatenate([hi2, hi2, hi2, be * ones], axis=1)
        Hm = _gram(lo_r[:, :, None], hi_r[:, :, None], p_c[:, :, None], q_c[:, :, None],
                   lo_c[:, None, :], hi_c[:, None, :], p_c[:, None, :], q_c[:, None, :])
        I0, I1 = I[:, :, 0], I[:, :, 1]
        ar = np.arange(N)
        iw, ib, iv = ar, N + ar, 2 * N + ar
        Hm[:, iv, iw] += I1
        Hm[:, iv, ib] += I0
        Hm[:, iw, iv] += I1
        Hm[:, ib, iv] += I0
        # moving-breakpoint terms
        inside = lay.wnz & (lay.tau > al) & (lay.tau < be)
        tt = np.where(inside, lay.tau, 0.0)
        et = self.residual_at(lay, S, A, tt)
        kap = np.where(inside, V * et / np.where(inside, np.abs(W), 1.0), 0.0)
        if isJ is not None and np.any(isJ):
            tJ = np.where(isJ, t, 0.0)
            # e(t_j): inside, the piece formula (continuous there: every neuron sharing the
            # breakpoint has it unclipped); at or past beta / alpha, the one-sided limit formula
            Su, Au, Sl, Al = ext
            eJ = np.where(tJ >= be, Au[:, None] + Su[:, None] * tJ - self.f(tJ),
                          np.where(tJ <= al, Al[:, None] + Sl[:, None] * tJ - self.f(tJ),
                                   self.residual_at(lay, S, A, np.clip(tJ, al, be))))
            kJ = np.where(isJ, ori_e * V * eJ / np.where(isJ, W, 1.0), 0.0)
            kap = np.where(isJ, kJ, kap)
            tt = np.where(isJ, tJ, tt)
            if np.any(upper | lower):
                self._ext_gram(Hm, lay, upper, lower, ea, eb, p_c, q_c)
        Hm[:, iw, iw] += kap * tt * tt
        Hm[:, iw, ib] += kap * tt
        Hm[:, ib, iw] += kap * tt
        Hm[:, ib, ib] += kap
        return 2.0 * Hm

    def _ext_gram(self, Hm, lay, upper, lower, ea, eb, p_c, q_c) -> None:
        """Add ``int_{ext_j} psi_i dN_ext/dtheta_k`` to the rows of the ``J`` neurons."""
        N = self.N
        up, low = self._ext_masks(lay)

        def cols(mask):
            mk = np.concatenate([mask, mask, mask, np.ones((lay.B, 1), bool)], axis=1)
            return np.where(mk, p_c, 0.0), np.where(mk, q_c, 0.0)

        pu, qu = cols(up)
        pl, ql = cols(low)
        anyext = upper | lower
        rows_j = np.nonzero(anyext.any(axis=0))[0]
        for base in (0, N, 2 * N):  # rows w_j, b_j, v_j of the J neurons (loop over 3 only)
            r = base + rows_j
            sel_up = upper[:, rows_j][:, :, None]
            sel_low = lower[:, rows_j][:, :, None]
            pcol = np.where(sel_up, pu[:, None, :], np.where(sel_low, pl[:, None, :], 0.0))
            qcol = np.where(sel_up, qu[:, None, :], np.where(sel_low, ql[:, None, :], 0.0))
            a = ea[:, rows_j][:, :, None]
            b = eb[:, rows_j][:, :, None]
            h = np.where(anyext[:, rows_j][:, :, None], b - a, 0.0)
            m = 0.5 * (a + b)
            pr = p_c[:, r][:, :, None]
            qr = q_c[:, r][:, :, None]
            Hm[:, r, :] += h * ((pr * m + qr) * (pcol * m + qcol) + pr * pcol * (h * h / 12.0))


def _gram(lo1, hi1, p1, q1, lo2, hi2, p2, q2):
    """``int_{[lo1,hi1] cap [lo2,hi2]} (p1 x + q1)(p2 x + q2) dx`` (exact, midpoint form)."""
    lo = np.maximum(lo1, lo2)
    hi = np.minimum(hi1, hi2)
    h = np.maximum(hi - lo, 0.0)
    m = 0.5 * (lo + hi)
    return h * ((p1 * m + q1) * (p2 * m + q2) + p1 * p2 * (h * h / 12.0))


# ---------------------------------------------------------------------- array-API path


from ._array_api import ArrayApiEngine  # noqa: E402  (uses Engine)

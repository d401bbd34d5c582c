"""The ReLU engine on array-API arrays (torch on any device, CuPy, array_api_strict; issue 16).

The same algorithm as the NumPy path of :mod:`csm_relu._engine` (docs/theory.md §2: sorted
breakpoints, prefix / suffix sums accumulated separately, piece moments, gathers at each
neuron's rank), written against the array-API standard (2023.12: argsort, cumulative_sum,
take_along_axis, where, flip, concat) so that it runs in the namespace and on the device of its
input.  No Python loop over networks or neurons, no host synchronisation, no in-place updates
(read-only or functional namespaces work).  The NumPy path and the compiled kernel stay the
reference: NumPy inputs never come here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from csm.backends import device

if TYPE_CHECKING:
    from ._engine import Engine


def _take1(xp, a, idx):
    """``take_along_axis(a, idx, axis=1)`` for 2-D ``a`` (standard 2024.12; before it, a flat
    ``take``, standard 2022.12)."""
    tal = getattr(xp, "take_along_axis", None)
    if tal is not None and str(getattr(xp, "__array_api_version__", "2024.12")) >= "2024.12":
        return tal(a, idx, axis=1)
    B, n = a.shape
    rows = xp.reshape(xp.arange(B, dtype=idx.dtype, device=device(a)) * n, (B, 1))
    flat = xp.reshape(idx + rows, (-1,))
    return xp.reshape(xp.take(xp.reshape(a, (-1,)), flat), idx.shape)


class _XpLayout:
    """Breakpoints, orientation and ranks of one batch in namespace ``xp`` (cf. :class:`_Layout`).

    ``order`` sorts the neurons by clipped breakpoint ``tau`` (stable), ``rank`` is its
    inverse; ``rlive_s`` / ``llive_s`` (sorted order) mark right- / left-facing neurons with a
    non-empty active set ``A_j`` (dead neurons are in neither); ``iidx`` picks
    ``int_{A_j}`` from ``[prefix sums | reversed suffix sums]`` of the ``N + 1`` piece moments.
    """

    def __init__(self, xp, X, N: int, alpha: float, beta: float) -> None:
        B = X.shape[0]
        self.xp, self.B, self.N = xp, B, N
        self.W = X[:, :N]
        self.Bb = X[:, N:2 * N]
        self.V = X[:, 2 * N:3 * N]
        self.c = X[:, 3 * N]
        # breakpoints clipped to [alpha, beta]; w = 0 (either sign): alpha when b > 0
        # (semi-active), beta otherwise (A_j empty) -- the NumPy path's -b / w = -inf, +inf or
        # nan clipped, without dividing by zero
        wz = self.W == 0
        t = -(self.Bb / xp.where(wz, xp.ones_like(self.W), self.W))
        tau = xp.where(wz, xp.where(self.Bb > 0, xp.full_like(t, alpha), xp.full_like(t, beta)),
                       xp.clip(t, min=alpha, max=beta))
        self.tau = tau
        self.right = self.W >= 0
        order = xp.argsort(tau, axis=1, stable=True)
        self.order = order
        rank = xp.argsort(order, axis=1, stable=True)
        self.rank = rank
        u_s = _take1(xp, tau, order)
        right_s = _take1(xp, self.right, order)
        self.rlive_s = right_s & (u_s < beta)
        self.llive_s = ~right_s & (u_s > alpha)
        dev = device(X)
        self.u = xp.concat([xp.full((B, 1), alpha, dtype=X.dtype, device=dev), u_s,
                            xp.full((B, 1), beta, dtype=X.dtype, device=dev)], axis=1)
        # [prefix sums | reversed suffix sums] of N + 1 piece moments; right-facing: the
        # suffix from piece rank + 1, at s = N - (rank + 1) of the second half; left-facing:
        # the prefix up to piece rank
        self.iidx = xp.where(self.right, (2 * N) - rank, rank)
        self._zcol = xp.zeros((B, 1), dtype=X.dtype, device=dev)

    def sort(self, a):
        return _take1(self.xp, a, self.order)


class ArrayApiEngine:
    """Loss, gradient ``G`` and Hessian-vector products of :class:`Engine` for array-API arrays.

    The algorithm of the NumPy path (module docstring, docs/theory.md §2) in the namespace of
    the input: computed on the input's device in the input's floating dtype (float32 or
    float64), results of the same array type.  Masks are applied with ``where`` (a dead
    neuron's coefficients are never summed, however large), every sum is a direct prefix or
    suffix sum, and data-dependent branches of the NumPy path (``np.any`` shortcuts, the
    ``inf`` fallback of :meth:`Engine.piece_affine`) become unconditional ``where`` so that no
    value is copied to the host.  Agreement with the NumPy path: tests/test_array_api.py.
    """

    def __init__(self, engine: Engine) -> None:
        self.N = engine.N
        self.alpha, self.beta = engine.alpha, engine.beta
        self.coef = tuple(float(a) for a in engine.coef)
        self.affine = engine.affine
        self.a0, self.a1 = engine.a0, engine.a1
        self._xi, self._wi = engine.xi, engine.wi
        self._nodes: dict = {}

    def nodes(self, xp: Any, like: Any) -> tuple[Any, Any]:
        """Gauss--Legendre nodes and weights in ``like``'s namespace, dtype and device."""
        key = (id(xp), str(like.dtype), str(device(like)))
        out = self._nodes.get(key)
        if out is None:
            dev = device(like)
            out = (xp.asarray(self._xi, dtype=like.dtype, device=dev),
                   xp.asarray(self._wi, dtype=like.dtype, device=dev))
            self._nodes[key] = out
        return out

    def f(self, xp: Any, x: Any) -> Any:
        """The target polynomial (Horner, Python-float coefficients keep ``x``'s dtype)."""
        out = xp.full_like(x, self.coef[-1])
        for a in self.coef[-2::-1]:
            out = out * x + a
        return out

    def layout(self, xp: Any, X: Any) -> _XpLayout:
        return _XpLayout(xp, X, self.N, self.alpha, self.beta)

    @staticmethod
    def piece_affine(lay: _XpLayout, slope, icpt, const):
        """Slopes and intercepts ``(B, N + 1)`` of the pieces (cf. :meth:`Engine.piece_affine`)."""
        xp = lay.xp
        out = []
        for a, c0 in ((slope, None), (icpt, const)):
            a_s = lay.sort(a)
            zero = xp.zeros_like(a_s)
            # right-facing live neurons of rank < k: prefix sum with a leading 0
            acc = xp.cumulative_sum(xp.where(lay.rlive_s, a_s, zero), axis=1,
                                    include_initial=True)
            # left-facing live neurons of rank >= k: suffix sum (0 on the last piece)
            la = xp.flip(xp.cumulative_sum(xp.flip(xp.where(lay.llive_s, a_s, zero), axis=1),
                                           axis=1), axis=1)
            acc = acc + xp.concat([la, lay._zcol], axis=1)
            if c0 is not None:
                acc = acc + xp.expand_dims(c0, axis=1)
            out.append(acc)
        return out[0], out[1]

    def residual_moments(self, lay: _XpLayout, S, A, need_loss: bool = True):
        """``int e^2`` ``(B,)`` (or None) and piece moments ``int e``, ``int e x`` ``(B, N+1)``."""
        xp = lay.xp
        lo = lay.u[:, :-1]
        hi = lay.u[:, 1:]
        h = hi - lo
        m = 0.5 * (lo + hi)
        if self.affine:
            sig = S - self.a1
            em = (A - self.a0) + sig * m  # e at the midpoint
            h12 = (h * h) / 12.0
            M0 = h * em
            M1 = h * (em * m + sig * h12)
            loss = xp.sum(h * (em * em + sig * sig * h12), axis=1) if need_loss else None
            return loss, M0, M1
        xi, wi = self.nodes(xp, S)
        half = xp.expand_dims(0.5 * h, axis=2)
        x = xp.expand_dims(m, axis=2) + half * xi  # (B, N+1, n)
        wts = half * wi
        e = xp.expand_dims(A, axis=2) + xp.expand_dims(S, axis=2) * x - self.f(xp, x)
        we = wts * e
        loss = xp.sum(we * e, axis=(1, 2)) if need_loss else None
        return loss, xp.sum(we, axis=2), xp.sum(we * x, axis=2)

    @staticmethod
    def affine_moments(lay: _XpLayout, S, A):
        """Piece moments ``int g``, ``int g x`` of a piecewise-affine ``g`` (closed form)."""
        lo = lay.u[:, :-1]
        hi = lay.u[:, 1:]
        h = hi - lo
        m = 0.5 * (lo + hi)
        gm = A + S * m
        return h * gm, h * (gm * m + S * (h * h / 12.0))

    @staticmethod
    def neuron_integrals(lay: _XpLayout, M):
        """``int_{A_j}`` of a piece moment ``M (B, N + 1)``: ``(B, N)`` (prefix/suffix sums)."""
        xp = lay.xp
        pre = xp.cumulative_sum(M, axis=1)                     # pre[r] = sum_{k <= r}
        rsuf = xp.cumulative_sum(xp.flip(M, axis=1), axis=1)   # rsuf[s] = sum_{k >= N - s}
        return _take1(xp, xp.concat([pre, rsuf], axis=1), lay.iidx)

    def residual_at(self, lay: _XpLayout, S, A, x):
        """``e(x_j)``: the formula of the piece from ``tau_j`` (:meth:`Engine.residual_at`)."""
        xp = lay.xp
        r1 = lay.rank + 1
        return _take1(xp, A, r1) + _take1(xp, S, r1) * x - self.f(xp, x)

    # ------------------------------------------------------------------ public kernels
    def loss_and_gradient(self, xp: Any, X: Any, need_loss: bool = True) -> tuple[Any, Any]:
        """Loss ``(B,)`` (None unless ``need_loss``) and ``G`` ``(B, 3N + 1)`` of a batch ``X``."""
        lay = self.layout(xp, X)
        V, W, Bb = lay.V, lay.W, lay.Bb
        S, A = self.piece_affine(lay, V * W, V * Bb, lay.c)
        loss, M0, M1 = self.residual_moments(lay, S, A, need_loss)
        I0 = self.neuron_integrals(lay, M0)
        I1 = self.neuron_integrals(lay, M1)
        G = xp.concat([2.0 * (V * I1), 2.0 * (V * I0), 2.0 * (W * I1 + Bb * I0),
                       2.0 * xp.sum(M0, axis=1, keepdims=True)], axis=1)
        return loss, G

    def loss(self, xp: Any, X: Any) -> Any:
        """Loss ``(B,)`` of a batch ``X``."""
        lay = self.layout(xp, X)
        V = lay.V
        S, A = self.piece_affine(lay, V * lay.W, V * lay.Bb, lay.c)
        return self.residual_moments(lay, S, A, True)[0]

    def hvp(self, xp: Any, X: Any, Vd: Any) -> Any:
        """Rowwise ``H(X_b) Vd_b`` (the convention of :meth:`Engine.hvp`)."""
        N = self.N
        lay = self.layout(xp, X)
        W, Bb, V = lay.W, lay.Bb, lay.V
        dW, dB, dV, dc = Vd[:, :N], Vd[:, N:2 * N], Vd[:, 2 * N:3 * N], Vd[:, 3 * N]
        S, A = self.piece_affine(lay, V * W, V * Bb, lay.c)
        _, M0, M1 = self.residual_moments(lay, S, A, need_loss=False)
        I0 = self.neuron_integrals(lay, M0)
        I1 = self.neuron_integrals(lay, M1)
        Sg, Ag = self.piece_affine(lay, dV * W + V * dW, dV * Bb + V * dB, dc)
        Mg0, Mg1 = self.affine_moments(lay, Sg, Ag)
        J0 = self.neuron_integrals(lay, Mg0)
        J1 = self.neuron_integrals(lay, Mg1)
        ow = 2.0 * (V * J1 + I1 * dV)
        ob = 2.0 * (V * J0 + I0 * dV)
        ov = 2.0 * (W * J1 + Bb * J0 + I1 * dW + I0 * dB)
        oc = 2.0 * xp.sum(Mg0, axis=1, keepdims=True)
        # moving-breakpoint terms (type-2-active neurons), unconditionally (no host sync)
        inside = (W != 0) & (lay.tau > self.alpha) & (lay.tau < self.beta)
        zero = xp.zeros_like(W)
        tt = xp.where(inside, lay.tau, zero)
        et = self.residual_at(lay, S, A, tt)
        kap = xp.where(inside, 2.0 * V * et / xp.where(inside, xp.abs(W), xp.ones_like(W)),
                       zero)
        ow = ow + kap * tt * (tt * dW + dB)
        ob = ob + kap * (tt * dW + dB)
        return xp.concat([ow, ob, ov, oc], axis=1)

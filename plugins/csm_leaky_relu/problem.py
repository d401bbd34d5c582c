"""Shallow leaky ReLU networks via the neuron-doubling reduction (paper §5, docs/theory.md §5).

``sigma_a(z) = max(z, a z) = relu(z) - a relu(-z)``, ``0 < a < 1``.  The linear map

    D: (w_j, b_j, v_j)_j, c  ->  (w_j, b_j, v_j)_j, (-w_j, -b_j, -a v_j)_j, c

sends a leaky network with ``N`` neurons to a ReLU network with ``2N`` neurons with the same
realization, so ``L_leaky = L_relu,2N o D``, ``grad L_leaky = D^T G_relu(D theta)``,
``H_leaky = D^T H_relu(D theta) D`` and ``H_leaky v = D^T H_relu(D theta) (D v)``.  The exact
ReLU integrals of :mod:`csm_relu` are reused (a plugin importing another plugin's public
API is fine: ``csm_relu`` is an ordinary installed package).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

import csm
from csm_relu import ReluProblem
from csm_relu.critical import layer_value
from csm_relu.neurons import NeuronTypes

from .critical import (FIRST, kink_breakpoints, kink_network, kink_value, layer0_network,
                       orientations)

__all__ = ["LeakyReluProblem"]


class LeakyReluProblem(csm.ProblemBase):
    """Shallow leaky ReLU networks, integral loss on ``[alpha, beta]`` (paper §5, docs/theory.md §5).

    Parameters
    ----------
    N : int, default 4
        Number of hidden neurons (``>= 1``); ``dim = 3N + 1``, ``theta = (w, b, v, c)``.
    slope : float, default 0.1
        The leak ``a`` of ``sigma_a(z) = max(z, a z)``, ``0 < a < 1``.
    interval, target, init_scale :
        As for ``relu`` (:class:`csm_relu.ReluProblem`).

    Conventions
    -----------
    The gradient is ``D^T G(D theta)`` with the ReLU plugin's ``G``: this is the true gradient
    wherever the loss is differentiable, and at a degenerate neuron (``w_j = b_j = 0``) it
    uses ``sigma_a'(0) = 0`` (both ReLU halves have ``relu'(0) = 0``), so that neuron's three
    coordinates are 0.  ``hessian`` is the true Hessian where it exists
    (:meth:`hessian_exists`: no degenerate neuron, no breakpoint at ``alpha``/``beta`` with
    ``v_j e(t_j) != 0``) and the ReLU convention pulled back by ``D`` elsewhere.  No gradient
    modification is needed (paper §5): :meth:`local_map` is the plain gradient-descent map.

    Examples
    --------
    >>> import csm
    >>> p = csm.get_problem("leaky_relu", N=2, slope=0.1)
    >>> s = next(c for c in p.critical_points() if c.label == "leaky-zigzag-n1")
    >>> float(abs(p.gradient(s.theta)).max()) < 1e-12, s.kind
    (True, 'strict_saddle')
    """

    finite_only = True  # NaN or infinite theta: a NonFiniteError naming the row

    def __init__(self, N: int = 4, slope: float = 0.1, interval: Sequence[float] = (0.0, 1.0),
                 target: Sequence[float] = (0.0, 1.0), init_scale: float = 1.0) -> None:
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise csm.ParameterError(
                f"`N` (number of neurons) must be an integer >= 1, got {N!r}")
        try:
            a = float(slope)
        except (TypeError, ValueError):
            a = float("nan")
        if not (math.isfinite(a) and 0.0 < a < 1.0) or isinstance(slope, bool):
            raise csm.ParameterError(
                f"`slope` (the leak a of max(z, a z)) must be a number with 0 < a < 1, "
                f"got {slope!r}")
        self.relu = ReluProblem(2 * int(N), interval, target, init_scale)  # validates the rest
        self.name = "leaky_relu"
        self.N = int(N)
        self.slope = a
        self.dim = 3 * self.N + 1
        self.alpha, self.beta = self.relu.alpha, self.relu.beta
        self.target = self.relu.target
        self.affine, self.rho, self.s = self.relu.affine, self.relu.rho, self.relu.s
        self.init_scale = self.relu.init_scale
        # the infimum 0 is attained for affine targets (a leaky network represents them), and
        # the classification (critical_points) lists every critical value, so every critical
        # point below the least positive one is a global minimum
        self.min_loss = self.relu.min_loss
        self.default_tol = self.relu.default_tol
        self.default_max_steps = self.relu.default_max_steps
        N2 = 2 * self.N
        Dm = np.zeros((3 * N2 + 1, self.dim))
        j = np.arange(self.N)
        Dm[j, j] = 1.0
        Dm[self.N + j, j] = -1.0
        Dm[N2 + j, self.N + j] = 1.0
        Dm[N2 + self.N + j, self.N + j] = -1.0
        Dm[2 * N2 + j, 2 * self.N + j] = 1.0
        Dm[2 * N2 + self.N + j, 2 * self.N + j] = -a
        Dm[-1, -1] = 1.0
        self.D = Dm
        self._cps: list[csm.CriticalPoint] | None = None
        self.global_sublevel = None
        if self.affine and self.rho != 0.0:
            vals = self.critical_values()
            self.global_sublevel = float(vals[vals > 0].min())

    def __repr__(self) -> str:
        return (f"<LeakyReluProblem N={self.N} slope={self.slope:g} "
                f"interval=({self.alpha:g}, {self.beta:g}) target={self.target}>")

    # ------------------------------------------------------------------ the reduction D
    def reduce(self, theta: Any) -> np.ndarray:
        """``D theta``: the equivalent ReLU network with ``2N`` neurons (docs/theory.md §5)."""
        X, single = self._batch(theta)
        out = self._reduce(X)
        return out[0] if single else out

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        N, a = self.N, self.slope
        W, B, V = X[:, :N], X[:, N:2 * N], X[:, 2 * N:3 * N]
        return np.concatenate([W, -W, B, -B, V, -a * V, X[:, 3 * N:]], axis=1)

    def _pull(self, G2: np.ndarray) -> np.ndarray:
        """``D^T g`` for rows ``g`` of length ``6N + 1``."""
        N, a = self.N, self.slope
        n2 = 2 * N
        return np.concatenate([G2[:, :N] - G2[:, N:n2], G2[:, n2:n2 + N] - G2[:, n2 + N:2 * n2],
                               G2[:, 2 * n2:2 * n2 + N] - a * G2[:, 2 * n2 + N:3 * n2],
                               G2[:, 3 * n2:]], axis=1)


    # ------------------------------------------------------------------ kernels
    # the reduced network is a ReLU network with 2N neurons: its public batched methods do the
    # work (the leaky plugin uses the ReLU plugin exactly as any third party could)
    def _loss(self, X: np.ndarray) -> np.ndarray:
        return self.relu.loss(self._reduce(X))

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return self._pull(self.relu.gradient(self._reduce(X)))

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        H2 = self.relu.hessian(self._reduce(X))
        H = np.einsum("ki,bkl,lj->bij", self.D, H2, self.D, optimize=True)
        return 0.5 * (H + np.swapaxes(H, 1, 2))  # exactly symmetric (D^T H D is, up to rounding)

    def loss_and_gradient(self, theta: Any) -> tuple[Any, np.ndarray]:
        """Loss and gradient in one pass."""
        X, single = self._batch(theta)
        L, G2 = self.relu.loss_and_gradient(self._reduce(X))
        G = self._pull(G2)
        return (float(L[0]), G[0]) if single else (L, G)

    def hvp(self, theta: Any, v: Any) -> np.ndarray:
        """``H v = D^T H_relu(D theta) (D v)`` in ``O(N log N)`` (rowwise; broadcasting as in
        :meth:`csm_relu.ReluProblem.hvp`)."""
        X, Vv, single = self._pair(theta, v)
        out = self._pull(self.relu.hvp(self._reduce(X), self._reduce(Vv)))
        return out[0] if single else out

    def hessian_exists(self, theta: Any, **kw: Any) -> Any:
        """Whether the leaky loss is twice differentiable at ``theta`` (via ``D``)."""
        X, single = self._batch(theta)
        out = self.relu.hessian_exists(self._reduce(X), **kw)
        return bool(out[0]) if single else out

    def realization(self, theta: Any, x: Any) -> np.ndarray:
        """``c + sum_j v_j sigma_a(w_j x + b_j)`` at points ``x``."""
        X, single = self._batch(theta)
        out = self.relu.realization(self._reduce(X), x)
        return out[0] if single else out

    def target_function(self, x: Any) -> np.ndarray:
        return self.relu.target_function(x)

    def neuron_types(self, theta: Any, **kw: Any) -> NeuronTypes:
        """Definition 4.1 applied to the ``N`` leaky neurons (same tolerance conventions)."""
        X, single = self._batch(theta)
        from csm_relu.neurons import neuron_types

        nt = neuron_types(X, self.N, self.alpha, self.beta, **kw)
        if single:
            nt = NeuronTypes(**{k: (getattr(nt, k)[0] if isinstance(getattr(nt, k), np.ndarray)
                                    else getattr(nt, k)) for k in nt.__dataclass_fields__})
        return nt

    def local_map(self, point: Any, step: float):
        """The plain gradient-descent map (no modification is needed for leaky ReLU, §5)."""
        return csm.GradientDescentMap(self, step)

    def sample(self, rng: Any, n: int) -> np.ndarray:
        """``n`` initial networks with i.i.d. ``N(0, init_scale^2)`` coordinates."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise csm.InputError(f"`n` must be an integer >= 0, got {n!r}")
        return self.init_scale * rng.standard_normal((int(n), self.dim))

    # ------------------------------------------------------------------ critical points
    def _need_affine(self) -> None:
        if not (self.affine and self.rho != 0.0):
            raise csm.ParameterError(
                "the kink families exist for an affine non-constant target f(x) = rho x + s "
                f"(rho != 0); this problem has target {self.target}")

    def kink_point(self, k: int, first: str = "right", *, multiplicity: Sequence[int] | None = None,
                   flat_at_kink: int = 0, unused: str = "mixed") -> np.ndarray:
        """A member of the k-kink family of critical points (docs/plugins/leaky_relu.md).

        ``k`` breakpoints (``1 <= k <= N``) with alternating orientation, the first one
        ``"right"`` (``w > 0``) or ``"left"``; ``multiplicity`` non-flat neurons per breakpoint
        (default 1 each; they split its kink), ``flat_at_kink`` flat neurons sitting at the
        breakpoints, the rest flat with ``w = 0`` (``unused``: ``"mixed"``, ``"semi-active"``,
        ``"inactive"``) or ``"degenerate"``.  See :func:`csm_leaky_relu.critical.kink_network`.

        Raises
        ------
        csm.ParameterError
            Non-affine or constant target, bad ``k`` / ``first`` / ``multiplicity``, or more
            neurons needed than ``N``.
        """
        self._need_affine()
        return kink_network(self.N, self.slope, self.rho, self.s, self.alpha, self.beta, k, first,
                            multiplicity=multiplicity, flat_at_kink=flat_at_kink, unused=unused)

    def kink_value(self, k: int, first: str = "right") -> float:
        """Closed-form loss ``(1-a)^2 rho^2 (beta-alpha)^3 / (12 Omega^4)`` of the k-kink family."""
        self._need_affine()
        return kink_value(k, first, self.slope, self.rho, self.alpha, self.beta)

    def _spectrum(self, theta: np.ndarray) -> dict[str, Any]:
        if not self.hessian_exists(theta):
            return {"least_eigenvalue": None, "n_negative": None}
        w = np.linalg.eigvalsh(self.hessian(theta))
        tol = 1e-10 * max(1.0, float(np.max(np.abs(w))))
        return {"least_eigenvalue": float(w[0]), "n_negative": int(np.sum(w < -tol)),
                "n_zero": int(np.sum(np.abs(w) <= tol))}

    def _families(self) -> list[tuple[float, int, str]]:
        """``(loss, k, first)`` of the kink families, by decreasing loss."""
        fam = [(kink_value(k, f, self.slope, self.rho, self.alpha, self.beta), k, f)
               for k in range(1, self.N + 1) for f in FIRST]
        return sorted(fam, key=lambda x: (-x[0], x[1], FIRST.index(x[2])))

    @staticmethod
    def kink_label(k: int, first: str) -> str:
        """``leaky-zigzag-n{k/2}`` for an even ``k`` starting right (the ReLU zigzag's
        continuation), else ``leaky-zigzag-k{k}-{first}``."""
        return f"leaky-zigzag-n{k // 2}" if (k % 2 == 0 and first == "right") \
            else f"leaky-zigzag-k{k}-{first}"

    def critical_points(self) -> list[csm.CriticalPoint]:
        """One representative of every family of critical points (affine target; ``[]`` otherwise).

        Classification (docs/plugins/leaky_relu.md; [6] Section 3 and Theorem 3.5 there: no
        non-global local minima; the kink families and their loss values are derived and
        verified in this plugin):

        * ``leaky-layer0-{semi-active,inactive,mixed,degenerate}``: ``c`` = mean of ``f``, every
          neuron flat with ``w_j = 0`` (``b_j > 0`` / ``< 0`` / alternating / ``= 0``);
          ``L = rho^2 (beta-alpha)^3/12``; strict saddles (the ``(w_j, v_j)`` block
          ``[[0, 2 sigma_a'(b_j) int e x], [., .]]``), ``saddle`` for the degenerate member (no
          Hessian there); one N-dimensional family (``b`` free);
        * ``leaky-zigzag-n{n}`` (``k = 2n`` breakpoints, first right) and
          ``leaky-zigzag-k{k}-{right,left}`` (the others), ``k = 1..N``: the non-flat neurons
          are type-2-active at ``k`` breakpoints of alternating orientation, placed in closed
          form (:func:`csm_leaky_relu.critical.kink_breakpoints`), unused neurons flat with
          ``w = 0``; ``L = (1-a)^2 rho^2 (beta-alpha)^3/(12 Omega^4)``; strict saddles (negative
          Hessian eigenvalue, reported in ``info``); other members: :meth:`kink_point`;
        * ``global-type1``, ``global-pair`` (``N >= 2``): ``L = 0``.

        ``info``: ``layer`` (index of the loss in :meth:`critical_values`, None for global
        minima), ``family``, ``kinks``, ``first``, ``pattern`` (``sign w`` of the breakpoint
        neurons, left to right), ``breakpoints``, ``dimension`` (of the connected set of critical
        points with the representative's neuron types), ``in_S`` and the Hessian spectrum.
        """
        if self._cps is not None:
            return list(self._cps)
        out: list[csm.CriticalPoint] = []
        if not self.affine:
            self._cps = []
            return []
        N, al, be, rho, s = self.N, self.alpha, self.beta, self.rho, self.s
        L = be - al
        flat_rest = []
        for j in range(1, N):
            flat_rest.append((1.0, -(be + 0.5 * L), 0.0) if j % 2 else (-1.0, al - 0.5 * L, 0.0))
        if rho == 0.0:
            th = self._pack([(1.0, -(be + L), 0.0)] + flat_rest, s)
            out.append(self._cp(th, "global_minimum", 0.0, "global-constant", None, "global",
                                dimension=3 * N))
            self._cps = out
            return list(out)
        vals = list(self.critical_values())
        v0 = layer_value(rho, al, be, 0)
        for var in ("semi-active", "inactive", "mixed", "degenerate"):
            if var == "mixed" and N < 2:
                continue
            th = layer0_network(N, rho, s, al, be, var)
            out.append(self._cp(th, "saddle" if var == "degenerate" else "strict_saddle", v0,
                                f"leaky-layer0-{var}", 0, "layer0", dimension=N, kinks=0))
        for val, k, first in self._families():
            th = self.kink_point(k, first)
            spec = self._spectrum(th)
            lam = spec["least_eigenvalue"]
            strict = lam is not None and lam < -1e-10 * max(1.0, abs(lam))
            layer = min(range(len(vals)), key=lambda i: abs(vals[i] - val))
            pattern = "".join("+" if o > 0 else "-" for o in orientations(k, first))
            out.append(self._cp(th, "strict_saddle" if strict else "saddle", val,
                                self.kink_label(k, first), layer, "kinks", dimension=N, kinks=k,
                                first=first, pattern=pattern,
                                breakpoints=kink_breakpoints(k, first, self.slope, al,
                                                             be).tolist()))
        sg = 1.0 if rho > 0 else -1.0
        t0 = al - L if rho > 0 else be + L
        th = self._pack([(sg, -sg * t0, rho * sg)] + flat_rest, s + rho * t0)
        out.append(self._cp(th, "global_minimum", 0.0, "global-type1", None, "global",
                            dimension=3 * N - 1))
        if N >= 2:
            # v (sigma_a(x - t) - sigma_a(t - x)) = v (1 + a)(x - t): two type-2-active neurons
            # at the midpoint whose kinks cancel
            tm = 0.5 * (al + be)
            v = rho / (1.0 + self.slope)
            th = self._pack([(1.0, -tm, v), (-1.0, tm, -v)] + flat_rest[1:], s + rho * tm)
            out.append(self._cp(th, "global_minimum", 0.0, "global-pair", None, "global",
                                dimension=3 * N - 3))
        self._cps = out
        return list(out)

    def _pack(self, neurons, c) -> np.ndarray:
        W, B, V = zip(*neurons)
        return np.concatenate([W, B, V, [c]]).astype(float)

    def _cp(self, th, kind, loss, label, layer, family, **extra) -> csm.CriticalPoint:
        info = {"layer": layer, "family": family, **extra,
                "in_S": kind in ("strict_saddle", "saddle")
                and not bool(self.neuron_types(th).degenerate.any())}
        info.update(self._spectrum(th))
        return csm.CriticalPoint(th, kind, float(loss), label, info)

    def critical_values(self) -> np.ndarray:
        """All critical values, in closed form, descending and distinct, ending in 0.

        ``rho^2 (beta-alpha)^3/12`` (layer 0), ``(1-a)^2 rho^2 (beta-alpha)^3/(12 Omega^4)`` for
        the ``2N`` kink families (mirror-image families, odd ``k``, share a value), and 0.
        Empty for a non-affine target, ``[0]`` for a constant one.
        """
        if not self.affine:
            return np.zeros(0)
        if self.rho == 0.0:
            return np.zeros(1)
        vals = [layer_value(self.rho, self.alpha, self.beta, 0)]
        for val, _, _ in self._families():
            if abs(val - vals[-1]) > 1e-12 * vals[-1]:
                vals.append(val)
        vals.append(0.0)
        return np.asarray(vals, dtype=float)

    def kink_structure(self, theta: Any, *, rtol: float = 1e-9, atol: float = 1e-12,
                       ttol: float = 1e-7) -> dict[str, Any]:
        """The breakpoint pattern of a network: ``kinks`` (distinct breakpoints of non-flat
        type-2-active neurons, merged within ``ttol (beta - alpha)``), ``pattern`` (their
        orientations, ``"+"`` / ``"-"``, ``"?"`` where neurons sharing a breakpoint disagree),
        ``breakpoints``, and ``family`` (the label of the matching kink family, ``"layer0"``
        for no kink, None when the pattern does not alternate)."""
        th = self._point(theta)
        nt = self.neuron_types(th, rtol=rtol, atol=atol)
        live = nt.type2_active & ~nt.flat
        t, o = nt.breakpoint[live], nt.orientation[live]
        order = np.argsort(t)
        t, o = t[order], o[order]
        groups: list[list[int]] = []
        for i in range(len(t)):
            if groups and t[i] - t[groups[-1][-1]] <= ttol * (self.beta - self.alpha):
                groups[-1].append(i)
            else:
                groups.append([i])
        pats = []
        for g in groups:
            signs = set(o[g].tolist())
            pats.append(("+" if signs == {1} else "-") if len(signs) == 1 else "?")
        pattern = "".join(pats)
        k = len(groups)
        alt = "?" not in pattern and all(pattern[i] != pattern[i + 1] for i in range(k - 1))
        family = "layer0" if k == 0 else (
            self.kink_label(k, "right" if pattern[0] == "+" else "left") if alt else None)
        return {"kinks": k, "pattern": pattern,
                "breakpoints": [float(np.mean(t[g])) for g in groups], "family": family}

    def classify(self, theta: Any, *, gtol: float = 1e-8, ltol: float = 1e-6,
                 rtol: float = 1e-6, atol: float = 1e-9) -> csm.Classification:
        """Classify a network (docs/plugins/leaky_relu.md "Classification"; [6, Theorem 3.5]).

        ``not_critical`` when ``max |G| > gtol``; ``global_minimum`` when
        ``L <= ltol * rho^2 (beta-alpha)^3/12``; otherwise a saddle (the leaky loss has no
        non-global local minima for affine targets): ``strict_saddle`` when it has no
        degenerate neuron (the set S of §5) and the Hessian has a negative eigenvalue
        (Lemma 5.3, reported in ``info``), ``saddle`` otherwise.  ``layer`` is the index of
        the critical value (:meth:`critical_values`) matching ``L`` within ``ltol``, else
        None; ``info`` adds the breakpoint pattern (:meth:`kink_structure`: ``kinks``,
        ``pattern``, ``family``).  For non-affine targets the same rules are applied with
        ``info["certified"] = False`` (no classification theorem).
        """
        th = self._point(theta)
        L, G = self.loss_and_gradient(th)
        gmax = float(np.max(np.abs(G)))
        info: dict[str, Any] = {"grad_max": gmax, "certified": bool(self.affine and self.rho)}
        if gmax > gtol:
            return csm.Classification("not_critical", "not critical", L, None, info)
        if self.affine and self.rho != 0.0:
            lscale = layer_value(self.rho, self.alpha, self.beta, 0)
        else:
            lscale = (self.beta - self.alpha) * max(1.0, max(abs(x) for x in self.target)) ** 2
        if L <= ltol * lscale:
            return csm.Classification("global_minimum", "global minimum", L, None, info)
        nt = self.neuron_types(th, rtol=rtol, atol=atol)
        info["neurons"] = nt.describe()
        info.update(self._spectrum(th))
        layer = None
        for i, val in enumerate(self.critical_values()):
            if val > 0 and abs(L - val) <= ltol * val:
                layer = i
                break
        if self.affine and self.rho != 0.0:
            ks = self.kink_structure(th, rtol=rtol, atol=atol, ttol=max(rtol, 1e-7))
            info.update({"kinks": ks["kinks"], "pattern": ks["pattern"],
                         "family": ks["family"]})
        in_S = not bool(nt.degenerate.any())
        info["in_S"] = in_S
        lam = info.get("least_eigenvalue")
        if in_S and lam is not None and lam < -1e-10 * max(1.0, abs(lam)):
            return csm.Classification("strict_saddle", "saddle in S (strict)", L, layer, info)
        if not (self.affine and self.rho != 0.0) and lam is not None and lam >= 0:
            return csm.Classification("local_minimum", "critical point without negative "
                                      "curvature (non-affine target; not certified)", L,
                                      layer, info)
        return csm.Classification("saddle", "saddle (strictness not established)", L, layer,
                                  info)

    def _point(self, point: Any) -> np.ndarray:
        X, single = self._batch(point)
        if not single:
            raise csm.ShapeError(f"`theta` must be one network of shape ({self.dim},), got "
                                 f"shape {X.shape}")
        return X[0]

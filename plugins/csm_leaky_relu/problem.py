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
        # the infimum 0 is attained for affine targets (a leaky network represents them); no
        # global_sublevel: the critical values listed here come from the zigzag and layer-0
        # families, which are not known to be all of them
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

    def _batch(self, theta: Any) -> tuple[np.ndarray, bool]:
        if isinstance(theta, csm.CriticalPoint):
            theta = theta.theta
        X, single = super()._batch(theta)
        if not np.all(np.isfinite(X)):
            raise csm.NonFiniteError("`theta` contains NaN or infinity")
        return X, single

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
    def _zigzag_start(self, n: int) -> np.ndarray:
        """The ReLU zigzag of layer ``n`` (docs/theory.md §3) with the unused neurons flat, w = 0."""
        N, al, be, rho = self.N, self.alpha, self.beta, self.rho
        m = 2 * n + 1
        h = (be - al) / m
        th = np.zeros(self.dim)
        for k in range(1, 2 * n + 1):
            w = 1.0 if k % 2 else -1.0
            t = al + k * h
            th[k - 1], th[N + k - 1], th[2 * N + k - 1] = w, -w * t, 2.0 * rho * w / m
        for j in range(2 * n, N):
            th[j], th[N + j], th[2 * N + j] = 0.0, (1.0 if (j - 2 * n) % 2 == 0 else -1.0), 0.0
        th[-1] = rho * 0.5 * (al + be) + self.s
        return th

    def _continue_zigzag(self, n: int, n_steps: int = 16, max_newton: int = 40):
        """Follow the ReLU zigzag (a = 0) to the leaky zigzag at ``a = slope`` by Newton
        continuation in ``a`` (damped Newton) on the coordinates ``(b_k, v_k)`` of the 2n kink
        neurons and ``c``
        (``w_k = +-1`` fixed: the rescaling symmetry).  Returns None when Newton fails or the
        zigzag pattern (2n distinct interior breakpoints, alternating orientation) is lost."""
        N = self.N
        th = self._zigzag_start(n)
        used = np.arange(2 * n)
        idx = np.concatenate([N + used, 2 * N + used, [3 * N]])
        for a in np.linspace(0.0, self.slope, n_steps + 1)[1:]:
            q = LeakyReluProblem(N, a, (self.alpha, self.beta), self.target)
            g = q.gradient(th)
            for _ in range(max_newton):
                gn = np.max(np.abs(g))
                if gn <= 1e-14 * max(1.0, abs(self.rho)):
                    break
                H = q.hessian(th)
                step = np.linalg.lstsq(H[np.ix_(idx, idx)], g[idx], rcond=None)[0]
                lam = 1.0
                for _ in range(20):  # damped Newton: backtrack until max|G| decreases
                    trial = th.copy()
                    trial[idx] -= lam * step
                    g_new = q.gradient(trial)
                    if np.max(np.abs(g_new)) < gn:
                        break
                    lam *= 0.5
                else:
                    return None
                th, g = trial, g_new
            t = -th[N + used] / th[used]
            if not (np.all(np.diff(t) > 0) and t[0] > self.alpha and t[-1] < self.beta):
                return None
        if np.max(np.abs(self.gradient(th))) > 1e-12 * max(1.0, self.rho ** 2):
            return None
        return th

    def _in_S(self, theta: np.ndarray) -> bool:
        """Leaky S: saddle points without degenerate neurons (paper §5)."""
        return not bool(self.neuron_types(theta).degenerate.any())

    def _spectrum(self, theta: np.ndarray) -> dict[str, Any]:
        if not self.hessian_exists(theta):
            return {"least_eigenvalue": None, "n_negative": None}
        w = np.linalg.eigvalsh(self.hessian(theta))
        tol = 1e-10 * max(1.0, float(np.max(np.abs(w))))
        return {"least_eigenvalue": float(w[0]), "n_negative": int(np.sum(w < -tol)),
                "n_zero": int(np.sum(np.abs(w) <= tol))}

    def critical_points(self) -> list[csm.CriticalPoint]:
        """Critical points for an affine non-constant target (``[]`` otherwise).

        * ``global-type1``: one type-1-active neuron with ``v w = rho`` (breakpoint outside),
          the others flat -- ``L = 0``;
        * ``leaky-layer0-*``: ``c`` = mean of ``f`` and every neuron flat with ``w_j = 0``
          (semi-active ``b > 0``, inactive ``b < 0``, or both): the preimages under ``D`` of
          the ReLU layer-0 critical points, strict saddles (Lemma 5.3: the ``(w_j, v_j)``
          block ``[[0, 2 sigma_a'(b_j) int e x], [., .]]``), ``L = rho^2 (beta-alpha)^3/12``;
        * ``leaky-zigzag-n{n}``: the ReLU zigzag of layer ``n`` (docs/theory.md §3) carried to the
          leak ``a`` by Newton continuation from ``a = 0`` (the ReLU case), unused neurons
          flat with ``w = 0``; its loss is computed, not closed-form.  Members for which the
          continuation loses the zigzag pattern (large ``a``) are omitted; every returned
          point has ``max |G| <= 1e-12``.  Kind ``strict_saddle`` when the Hessian has a
          negative eigenvalue (Lemma 5.3 guarantees it for ``a <= a_0(N)``), else ``saddle``.

        There are no local minima that are not global ([6, Thm 3.5]); every saddle listed has
        no degenerate neuron (in S) and ``info`` reports the least Hessian eigenvalue.
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
            out.append(self._cp(th, "global_minimum", 0.0, "global-constant", None, "global"))
            self._cps = out
            return list(out)
        mean_f = rho * 0.5 * (al + be) + s
        v0 = layer_value(rho, al, be, 0)
        for var, bs in (("semi-active", [1.0] * N), ("inactive", [-1.0] * N),
                        ("mixed", [1.0 if j % 2 == 0 else -1.0 for j in range(N)])):
            if var == "mixed" and N < 2:
                continue
            th = self._pack([(0.0, b, 0.0) for b in bs], mean_f)
            out.append(self._cp(th, "strict_saddle", v0, f"leaky-layer0-{var}", 0, "layer0"))
        for n in range(1, N // 2 + 1):
            th = self._continue_zigzag(n)
            if th is None:
                continue
            spec = self._spectrum(th)
            lam = spec["least_eigenvalue"]
            strict = lam is not None and lam < -1e-10 * max(1.0, abs(lam))
            out.append(self._cp(th, "strict_saddle" if strict else "saddle", float(self.loss(th)),
                                f"leaky-zigzag-n{n}", n, "zigzag"))
        sg = 1.0 if rho > 0 else -1.0
        t0 = al - L if rho > 0 else be + L
        th = self._pack([(sg, -sg * t0, rho * sg)] + flat_rest, s + rho * t0)
        out.append(self._cp(th, "global_minimum", 0.0, "global-type1", None, "global"))
        self._cps = out
        return list(out)

    def _pack(self, neurons, c) -> np.ndarray:
        W, B, V = zip(*neurons)
        return np.concatenate([W, B, V, [c]]).astype(float)

    def _cp(self, th, kind, loss, label, layer, family) -> csm.CriticalPoint:
        info = {"layer": layer, "family": family,
                "in_S": kind in ("strict_saddle", "saddle") and self._in_S(th)}
        info.update(self._spectrum(th))
        return csm.CriticalPoint(th, kind, loss, label, info)

    def critical_values(self) -> np.ndarray:
        """Loss values of the listed critical points (descending, distinct, ending in 0)."""
        vals = sorted({round(c.loss, 15) for c in self.critical_points()}, reverse=True)
        if not vals or vals[-1] != 0.0:
            vals.append(0.0)
        return np.asarray(vals, dtype=float)

    def classify(self, theta: Any, *, gtol: float = 1e-8, ltol: float = 1e-6,
                 rtol: float = 1e-6, atol: float = 1e-9) -> csm.Classification:
        """Classify a network (paper §5 / [6, Thm 3.5]; docs/theory.md §5).

        ``not_critical`` when ``max |G| > gtol``; ``global_minimum`` when
        ``L <= ltol * rho^2 (beta-alpha)^3/12``; otherwise a saddle (the leaky loss has no
        non-global local minima for affine targets): ``strict_saddle`` when it has no
        degenerate neuron (the set S of §5) and the Hessian has a negative eigenvalue
        (Lemma 5.3, reported in ``info``), ``saddle`` otherwise.  ``layer`` is the index ``n``
        of a listed critical value matching ``L`` within ``ltol`` (0 for the constant network),
        else None.  For non-affine targets the same rules are applied with
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
        for c in self.critical_points():
            if c.kind != "global_minimum" and abs(L - c.loss) <= ltol * c.loss:
                layer = c.info["layer"]
                break
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

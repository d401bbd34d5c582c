"""The shallow ReLU network problem of paper Section 4 (docs/theory.md §2--§4).

``theta = (w_1..w_N, b_1..b_N, v_1..v_N, c) in R^{3N+1}``, realization
``N_theta(x) = c + sum_j v_j max(w_j x + b_j, 0)``, loss
``L(theta) = int_alpha^beta (N_theta(x) - f(x))^2 dx`` with a polynomial target
``f(x) = sum_k target[k] x^k``.  All integrals are exact (see :mod:`csm_relu._engine`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

import csm

from ._engine import ArrayApiEngine, Engine
from .critical import Candidate, affine_families, layer_value
from .neurons import NeuronTypes, neuron_types

__all__ = ["ReluProblem"]


def _validate(N: Any, interval: Any, target: Any, init_scale: Any):
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise csm.ParameterError(f"`N` (number of neurons) must be an integer >= 1, got {N!r}")
    try:
        iv = tuple(float(x) for x in interval)
    except (TypeError, ValueError):
        raise csm.ParameterError(
            f"`interval` must be a pair (alpha, beta) of finite reals with alpha < beta, "
            f"got {interval!r}") from None
    if len(iv) != 2 or not all(math.isfinite(x) for x in iv) or not iv[0] < iv[1]:
        raise csm.ParameterError(
            f"`interval` must be a pair (alpha, beta) of finite reals with alpha < beta, "
            f"got {interval!r}")
    if isinstance(target, (str, bytes)) or np.ndim(target) != 1:
        raise csm.ParameterError(
            "`target` must be a non-empty sequence of finite polynomial coefficients, lowest "
            f"degree first (e.g. (0, 1) for f(x) = x), got {target!r}")
    try:
        coef = np.asarray(target, dtype=float)
    except (TypeError, ValueError):
        raise csm.ParameterError(
            "`target` must be a non-empty sequence of finite polynomial coefficients, lowest "
            f"degree first, got {target!r}") from None
    if coef.size == 0 or not np.all(np.isfinite(coef)):
        raise csm.ParameterError(
            "`target` must be a non-empty sequence of finite polynomial coefficients, lowest "
            f"degree first, got {target!r}")
    try:
        sc = float(init_scale)
    except (TypeError, ValueError):
        sc = float("nan")
    if not (math.isfinite(sc) and sc > 0):
        raise csm.ParameterError(f"`init_scale` must be a finite number > 0, got {init_scale!r}")
    nz = np.nonzero(coef)[0]
    trimmed = coef[: (nz[-1] + 1 if nz.size else 1)]
    return int(N), iv, coef, trimmed, sc


def _as_index_mask(J: Any, N: int, name: str) -> np.ndarray:
    if J is None:
        return np.zeros(N, dtype=bool)
    arr = np.asarray(J)
    if arr.dtype == bool:
        if arr.shape != (N,):
            raise csm.ShapeError(f"`{name}` as a boolean mask must have shape ({N},), "
                                 f"got {arr.shape}")
        return arr.copy()
    arr = arr.ravel()
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0
                     or arr.max() >= N):
        raise csm.InputError(f"`{name}` must hold neuron indices in 0..{N - 1} (or be a "
                             f"boolean mask of length {N}), got {J!r}")
    mask = np.zeros(N, dtype=bool)
    mask[arr.astype(int)] = True
    return mask


class ReluProblem(csm.ProblemBase):
    """Shallow ReLU networks with the integral loss on ``[alpha, beta]`` (paper §4, docs/theory.md §2).

    Parameters
    ----------
    N : int, default 4
        Number of hidden neurons (``>= 1``); ``dim = 3N + 1``.
    interval : (float, float), default (0.0, 1.0)
        ``(alpha, beta)``, finite, ``alpha < beta``.
    target : sequence of float, default (0.0, 1.0)
        Polynomial coefficients of ``f``, lowest degree first: ``(s, rho)`` is the paper's affine
        ``f(x) = rho x + s``; any degree works for loss, gradient, Hessian.
    init_scale : float, default 1.0
        Standard deviation of the Gaussian initial law of :meth:`sample`.

    Attributes
    ----------
    N, alpha, beta, target : the parameters (``target`` with trailing zeros removed)
    affine : bool
        Whether ``f`` has degree <= 1 (the paper's setting; critical points known in closed form).
    rho, s : float
        Slope and intercept of ``f`` when affine.

    Conventions
    -----------
    * ``gradient`` is the paper's ``G``: ``relu'(z) = 1`` for ``z > 0`` and ``0`` otherwise, i.e.
      ``A_j = {x : w_j x + b_j > 0}`` in docs/theory.md §2.  It is the true gradient wherever the loss
      is differentiable (non-degenerate or flat degenerate neurons); at a degenerate neuron
      (``w_j = b_j = 0``) the neuron's three coordinates are 0.
    * ``hessian`` is the true Hessian where it exists (:meth:`hessian_exists`).  Elsewhere it
      returns the Jacobian of ``G`` from the side on which each boundary breakpoint has *left*
      ``(alpha, beta)`` -- the moving-breakpoint terms ``2 v_j e(t_j)/|w_j| [[t^2, t], [t, 1]]``
      are included only for breakpoints strictly inside ``(alpha, beta)`` -- and, at degenerate
      neurons, the formula with ``A_j`` empty.  ``hvp`` follows the same convention.

    Notes
    -----
    Cost per network: ``O(N log N)`` for loss, gradient and Hessian-vector product (sort of the
    breakpoints, prefix sums), ``O(N^2)`` for the Hessian; all batched, no Python loop over
    networks or neurons.

    Examples
    --------
    >>> import csm
    >>> p = csm.get_problem("relu", N=4, interval=(0.0, 1.0), target=(0.0, 1.0))
    >>> s = next(c for c in p.critical_points() if c.label == "zigzag-n1-inactive")
    >>> round(s.loss * 12 * 3**4, 12)
    1.0
    >>> float(abs(p.gradient(s.theta)).max()) < 1e-14
    True
    """

    finite_only = True  # NaN or infinite theta: a NonFiniteError naming the row

    def __init__(self, N: int = 4, interval: Sequence[float] = (0.0, 1.0),
                 target: Sequence[float] = (0.0, 1.0), init_scale: float = 1.0) -> None:
        N, (alpha, beta), coef, trimmed, sc = _validate(N, interval, target, init_scale)
        self.name = "relu"
        self.N = N
        self.dim = 3 * N + 1
        self.alpha, self.beta = alpha, beta
        self.target = tuple(float(x) for x in trimmed)
        self.init_scale = sc
        self.affine = len(trimmed) <= 2
        self.s = float(trimmed[0])
        self.rho = float(trimmed[1]) if len(trimmed) > 1 else 0.0
        self._engine = Engine(N, alpha, beta, trimmed)
        # What csm's identification may rely on (docs/theory.md §3, Prop. 4.5 (iv)): for an
        # affine target the loss is >= 0 and attains 0, and the critical values are exactly the
        # layers, so every critical point below the lowest positive layer is a global minimum.
        self.min_loss = 0.0 if self.affine else None
        self.global_sublevel = None
        if self.affine and self.rho != 0.0:
            vals = self.critical_values()
            self.global_sublevel = float(vals[vals > 0].min())
        # classify() calls a point critical when max |G_i| <= 1e-8: stop runs there
        self.default_tol = 1e-8
        self.default_max_steps = 20_000

    def __repr__(self) -> str:
        return (f"<ReluProblem N={self.N} interval=({self.alpha:g}, {self.beta:g}) "
                f"target={self.target}>")

    # ------------------------------------------------------------------ batching helpers

    # ------------------------------------------------------------------ ProblemBase kernels
    def _loss(self, X: np.ndarray) -> np.ndarray:
        return self._engine.loss(X)

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return self._engine.loss_and_gradient(X, need_loss=False)[1]

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        return self._engine.jacobian(X)

    # ------------------------------------------------------------------ array-API inputs
    def _namespace(self, theta: Any, v: Any = None) -> Any:
        """The array-API namespace of non-NumPy inputs (torch, CuPy, ...), else None."""
        return csm.backends.array_namespace(theta, v, names=("theta", "v"))

    def _xp_batch(self, xp: Any, theta: Any, name: str = "theta") -> tuple[Any, bool]:
        """``(X (B, d), single)`` of an array-API array, validated as :meth:`_batch` does."""
        return csm.backends.xp_batch(xp, theta, self.dim, name)

    def _xp_engine(self) -> ArrayApiEngine:
        return self._engine.array_api

    # ------------------------------------------------------------------ public API
    def loss(self, theta: Any) -> Any:
        """Loss ``L(theta)``: a float for ``(d,)``, ``(B,)`` for a batch ``(B, d)``.

        An array-API array that is not NumPy (a torch tensor on any device, CuPy, ...; needs
        ``array-api-compat``) is computed in its namespace, device and dtype and gives an
        array of the same kind (0-d for one network).
        """
        xp = self._namespace(theta)
        if xp is None:
            return super().loss(theta)
        X, single = self._xp_batch(xp, theta)
        L = self._xp_engine().loss(xp, X)
        return L[0] if single else L

    def gradient(self, theta: Any) -> Any:
        """The paper's generalised gradient ``G``: ``(d,)`` or ``(B, d)`` (array-API inputs as
        in :meth:`loss`)."""
        xp = self._namespace(theta)
        if xp is None:
            return super().gradient(theta)
        X, single = self._xp_batch(xp, theta)
        G = self._xp_engine().loss_and_gradient(xp, X, need_loss=False)[1]
        return G[0, ...] if single else G

    def loss_and_gradient(self, theta: Any) -> tuple[Any, np.ndarray]:
        """Loss and gradient ``G`` together (one pass; what a gradient-descent step needs).

        Array-API inputs (torch, CuPy, ...) as in :meth:`loss`: both results are arrays of
        the input's kind, on its device (the loss of one network is a 0-d array).
        """
        xp = self._namespace(theta)
        if xp is not None:
            X, single = self._xp_batch(xp, theta)
            L, G = self._xp_engine().loss_and_gradient(xp, X)
            return (L[0], G[0, ...]) if single else (L, G)
        X, single = self._batch(theta)
        L, G = self._engine.loss_and_gradient(X)
        return (float(L[0]), G[0]) if single else (L, G)

    def hvp(self, theta: Any, v: Any) -> np.ndarray:
        """Hessian-vector products ``H(theta) v`` in ``O(N log N)`` per network.

        ``theta`` and ``v`` are ``(d,)`` or ``(B, d)`` (a single one is broadcast against a
        batch); rowwise products.  Same convention as :meth:`hessian` where the Hessian does
        not exist.  Array-API inputs (torch, CuPy, ...; both of one kind) as in :meth:`loss`.
        """
        xp = self._namespace(theta, v)
        if xp is not None:
            X, Vv, single = csm.backends.xp_pair(xp, theta, v, self.dim)
            out = self._xp_engine().hvp(xp, X, Vv)
            return out[0, ...] if single else out
        X, Vv, single = self._pair(theta, v)
        out = self._engine.hvp(X, Vv)
        return out[0] if single else out

    def realization(self, theta: Any, x: Any) -> np.ndarray:
        """``N_theta(x)`` at points ``x`` (any shape ``(K,)``): ``(K,)`` or ``(B, K)``."""
        X, single = self._batch(theta)
        xx = np.asarray(x, dtype=float)
        N = self.N
        pre = X[:, :N, None] * xx.ravel()[None, None, :] + X[:, N:2 * N, None]
        out = X[:, 3 * N, None] + np.einsum("bj,bjk->bk", X[:, 2 * N:3 * N],
                                            np.maximum(pre, 0.0))
        out = out.reshape((X.shape[0],) + xx.shape)
        return out[0] if single else out

    def target_function(self, x: Any) -> np.ndarray:
        """``f(x)``."""
        return self._engine.f(np.asarray(x, dtype=float))

    def neuron_types(self, theta: Any, *, rtol: float = 1e-9, atol: float = 1e-12) -> NeuronTypes:
        """Neuron classes of Definition 4.1 (see :mod:`csm_relu.neurons` for the tolerance).

        Returns a :class:`~csm_relu.neurons.NeuronTypes` with arrays of shape ``(N,)`` for one
        network or ``(B, N)`` for a batch.
        """
        X, single = self._batch(theta)
        nt = neuron_types(X, self.N, self.alpha, self.beta, rtol=rtol, atol=atol)
        if single:
            nt = NeuronTypes(**{k: (getattr(nt, k)[0] if isinstance(getattr(nt, k), np.ndarray)
                                    else getattr(nt, k))
                                for k in nt.__dataclass_fields__})
        return nt

    def hessian_exists(self, theta: Any, *, rtol: float = 1e-9, atol: float = 1e-12) -> Any:
        """Whether ``L`` is twice differentiable at ``theta`` (docs/theory.md §2).

        False when a neuron is degenerate, or a breakpoint sits at ``alpha`` or ``beta``
        (within the tolerance of :meth:`neuron_types`) with ``v_j e(t_j) != 0`` (that is,
        ``|v_j e(t_j)| > atol``).  Returns a bool, or a ``(B,)`` array for a batch.
        """
        X, single = self._batch(theta)
        nt = neuron_types(X, self.N, self.alpha, self.beta, rtol=rtol, atol=atol)
        bad = nt.degenerate.any(axis=1)
        edge = nt.at_alpha | nt.at_beta
        if np.any(edge):
            xs = np.where(nt.at_alpha, self.alpha, self.beta)
            N = self.N
            pre = X[:, :N, None] * xs[:, None, :] + X[:, N:2 * N, None]
            net = X[:, 3 * N, None] + np.einsum("bj,bjk->bk", X[:, 2 * N:3 * N],
                                                np.maximum(pre, 0.0))
            res = net - self._engine.f(xs)
            bad |= (edge & (np.abs(X[:, 2 * N:3 * N] * res) > atol)).any(axis=1)
        out = ~bad
        return bool(out[0]) if single else out

    # ------------------------------------------------------------------ modified gradient (§4)
    def _ori(self, J_plus: Any, J_minus: Any) -> np.ndarray:
        jp = _as_index_mask(J_plus, self.N, "J_plus")
        jm = _as_index_mask(J_minus, self.N, "J_minus")
        if np.any(jp & jm):
            raise csm.InputError(f"`J_plus` and `J_minus` must be disjoint, both contain "
                                 f"{np.nonzero(jp & jm)[0].tolist()}")
        return jp.astype(int) - jm.astype(int)

    def modified_gradient(self, theta: Any, J_plus: Any = (), J_minus: Any = ()) -> np.ndarray:
        """The modified gradient ``G_J`` of docs/theory.md §4 (paper §4, before Lemma 4.2).

        ``G_J`` equals ``G`` except in the three coordinates ``(w_j, b_j, v_j)`` of each
        ``j in J = J_plus u J_minus``, where ``A_j`` is replaced by the signed interval
        ``[t_j, beta]`` (``J_plus``) or ``[alpha, t_j]`` (``J_minus``), ``t_j = -b_j / w_j``.
        When ``t_j`` lies outside ``[alpha, beta]`` the residual is continued past the end by its
        polynomial on the adjacent piece (``int_a^b = -int_b^a``).  A ``J`` neuron with
        ``w_j = 0`` has no breakpoint and keeps the coordinates of ``G``.

        Parameters
        ----------
        theta : array (d,) or (B, d)
        J_plus, J_minus : sequence of int or bool mask (N,)
            Disjoint neuron index sets (0-based).
        """
        X, single = self._batch(theta)
        ori = self._ori(J_plus, J_minus)
        G = self._engine.loss_and_gradient(X, need_loss=False, ori=ori)[1]
        return G[0] if single else G

    def modified_jacobian(self, theta: Any, J_plus: Any = (), J_minus: Any = ()) -> np.ndarray:
        """Jacobian ``D G_J`` (exact: Leibniz rule, moving endpoints): ``(d, d)`` or ``(B, d, d)``.

        Symmetric where every ``J`` neuron is semi-inactive with matching sign (Lemma 4.3 (ii));
        equal to :meth:`hessian` where no neuron is in ``J``.
        """
        X, single = self._batch(theta)
        H = self._engine.jacobian(X, ori=self._ori(J_plus, J_minus))
        return H[0] if single else H

    def _point(self, point: Any) -> np.ndarray:
        th = point.theta if isinstance(point, csm.CriticalPoint) else point
        X, single = self._batch(th)
        if not single:
            raise csm.ShapeError(f"`point` must be one network of shape ({self.dim},), got "
                                 f"shape {X.shape}")
        return X[0]

    def semi_inactive_sets(self, point: Any, *, rtol: float = 1e-9,
                           atol: float = 1e-12) -> tuple[list[int], list[int]]:
        """``(J_plus, J_minus)``: the semi-inactive neurons of ``point`` at ``beta`` / ``alpha``."""
        nt = self.neuron_types(self._point(point), rtol=rtol, atol=atol)
        return (np.nonzero(nt.J_plus)[0].tolist(), np.nonzero(nt.J_minus)[0].tolist())

    def local_map(self, point: Any, step: float, *, rtol: float = 1e-9, atol: float = 1e-12):
        """The gradient-descent map valid near ``point``: ``Psi_J = id - step G_J`` (Lemma 4.2).

        ``J`` = the semi-inactive neurons of ``point`` (split by sign into ``J_+``/``J_-``);
        with ``J`` empty this is the plain map ``Psi = id - step G`` with the Hessian.  The
        returned :class:`csm.GradientDescentMap` carries the exact Jacobian ``I - step DG_J``.

        Parameters
        ----------
        point : CriticalPoint or array (d,)
        step : float
            ``gamma > 0``.
        """
        th = self._point(point)
        jp, jm = self.semi_inactive_sets(th, rtol=rtol, atol=atol)
        if not jp and not jm:
            return csm.GradientDescentMap(self, step)

        def grad(X: np.ndarray) -> np.ndarray:
            return self.modified_gradient(X, jp, jm)

        def jac(X: np.ndarray) -> np.ndarray:
            return self.modified_jacobian(X, jp, jm)

        return csm.GradientDescentMap(grad, step, hessian=jac, dim=self.dim,
                                      name=f"GD_J[relu, J+={jp}, J-={jm}]")

    def local_curvature(self, point: Any, *, rtol: float = 1e-9,
                        atol: float = 1e-12) -> np.ndarray:
        """``DG_J(point)``, ``J`` its semi-inactive neurons (the Hessian when ``J`` is empty)."""
        th = self._point(point)
        jp, jm = self.semi_inactive_sets(th, rtol=rtol, atol=atol)
        return self.modified_jacobian(th, jp, jm)

    # ------------------------------------------------------------------ critical points
    def critical_values(self) -> np.ndarray:
        """Loss values of critical points (Prop. 4.5 (iv)), affine non-constant targets.

        ``[rho^2 (beta-alpha)^3 / (12 (2n+1)^4) for n = 0..N//2] + [0.0]`` (descending).  For a
        constant target ``[0.0]``; for targets of degree >= 2 the values are not known in
        closed form and an empty array is returned.
        """
        if not self.affine:
            return np.zeros(0)
        if self.rho == 0.0:
            return np.zeros(1)
        vals = [layer_value(self.rho, self.alpha, self.beta, n) for n in range(self.N // 2 + 1)]
        return np.array(vals + [0.0])

    def _in_S(self, nt: NeuronTypes, theta: np.ndarray) -> bool:
        """Membership of a saddle in the set S of Lemma 4.6 (given that it is a saddle)."""
        if nt.degenerate.any():
            return False
        N = self.N
        rvw = self.rho * theta[2 * N:3 * N] * theta[:N]
        only_dead = np.all(nt.inactive | (nt.semi_inactive & (rvw <= 0)))
        return not bool(only_dead)

    def _spectrum(self, theta: np.ndarray, rtol: float, atol: float) -> dict[str, Any]:
        nt = self.neuron_types(theta, rtol=rtol, atol=atol)
        if nt.degenerate.any():
            return {"least_eigenvalue": None, "n_negative": None, "modified": False}
        D = self.local_curvature(theta, rtol=rtol, atol=atol)
        w = np.linalg.eigvalsh(0.5 * (D + D.T))
        tol = 1e-10 * max(1.0, float(np.max(np.abs(w))))
        return {"least_eigenvalue": float(w[0]), "n_negative": int(np.sum(w < -tol)),
                "n_zero": int(np.sum(np.abs(w) <= tol)),
                "modified": bool(nt.semi_inactive.any()),
                "J_plus": np.nonzero(nt.J_plus)[0].tolist(),
                "J_minus": np.nonzero(nt.J_minus)[0].tolist()}

    def critical_points(self) -> list[csm.CriticalPoint]:
        """Closed-form critical points (docs/theory.md §3), for an affine non-constant target.

        Zigzag saddles of every layer ``n = 0..N//2`` (unused neurons inactive, semi-inactive
        of either sign or flat, flat semi-active, or a mix), the dead-neuron local minima of
        layer 0, and global minima.  Each :class:`csm.CriticalPoint` has ``info`` with
        ``layer``, ``family``, ``variant``, ``in_S``, ``least_eigenvalue`` and ``n_negative``
        (eigenvalues of ``DG_J`` at the point, ``J`` its semi-inactive neurons), ``J_plus``,
        ``J_minus``.  A constant target gives one global minimum (``c = f``, all neurons
        inactive); targets of degree >= 2 give ``[]`` (no closed form is known).
        """
        cached = getattr(self, "_cps", None)
        if cached is not None:
            return list(cached)
        if not self.affine:
            self._cps: list[csm.CriticalPoint] = []
            return []
        if self.rho == 0.0:
            N = self.N
            th = np.concatenate([np.ones(N), -(abs(self.beta) + abs(self.alpha) + 1.0)
                                 * np.ones(N), np.zeros(N), [self.s]])
            cands = [Candidate("global-constant", th, "global_minimum", None, "global",
                               "inactive")]
        else:
            cands = affine_families(self.N, self.alpha, self.beta, self.rho, self.s)
        out = []
        for cd in cands:
            loss = 0.0 if cd.kind == "global_minimum" else layer_value(
                self.rho, self.alpha, self.beta, cd.layer)
            nt = self.neuron_types(cd.theta)
            info = {"layer": cd.layer, "family": cd.family, "variant": cd.variant,
                    "in_S": (cd.kind in ("strict_saddle", "saddle")
                             and self._in_S(nt, cd.theta))}
            info.update(self._spectrum(cd.theta, 1e-9, 1e-12))
            out.append(csm.CriticalPoint(cd.theta, cd.kind, loss, cd.label, info))
        self._cps = out
        return list(out)

    # ------------------------------------------------------------------ classification
    def classify(self, theta: Any, *, gtol: float = 1e-8, ltol: float = 1e-6,
                 rtol: float = 1e-6, atol: float = 1e-9) -> csm.Classification:
        """Classify a network by Proposition 4.5 (docs/theory.md §3).

        Parameters
        ----------
        theta : array (d,)
        gtol : float
            Critical when ``max_i |G_i(theta)| <= gtol`` (absolute).
        ltol : float
            Relative tolerance for matching the loss with a layer value (and for ``L = 0``:
            ``L <= ltol * rho^2 (beta - alpha)^3 / 12``).
        rtol, atol : float
            Tolerances of :meth:`neuron_types`.

        Returns
        -------
        csm.Classification
            ``kind`` is ``"global_minimum"``, ``"local_minimum"`` (every neuron inactive or
            semi-inactive with ``rho v_j w_j < 0``), ``"strict_saddle"`` (a saddle in S: strict
            by Lemma 4.6), ``"saddle"`` (a saddle outside S: strictness not established, e.g.
            degenerate neurons or flat semi-inactive ones), or ``"not_critical"``; ``layer`` is
            the ``n`` with ``L = rho^2 (beta-alpha)^3/(12 (2n+1)^4)`` (None for global minima
            and when no layer matches, flagged ``info["layer_mismatch"]``).

        Notes
        -----
        For non-affine targets Prop. 4.5 does not apply: a critical point with ``L > 0`` is
        then called ``strict_saddle`` when ``DG_J`` has a negative eigenvalue and
        ``local_minimum`` otherwise, with ``info["certified"] = False``.
        """
        th = self._point(theta)
        L, G = self.loss_and_gradient(th)
        gmax = float(np.max(np.abs(G)))
        info: dict[str, Any] = {"grad_max": gmax, "certified": True}
        if gmax > gtol:
            return csm.Classification("not_critical", "not critical", L, None, info)
        nt = self.neuron_types(th, rtol=rtol, atol=atol)
        info["neurons"] = nt.describe()
        if self.affine and self.rho != 0.0:
            lscale = layer_value(self.rho, self.alpha, self.beta, 0)
        else:
            lscale = (self.beta - self.alpha) * max(1.0, max(abs(a) for a in self.target)) ** 2
        if L <= ltol * lscale:
            return csm.Classification("global_minimum", "global minimum", L, None, info)
        info.update(self._spectrum(th, rtol, atol))
        if not (self.affine and self.rho != 0.0):
            info["certified"] = False
            lam = info.get("least_eigenvalue")
            if lam is not None and lam < -1e-10 * max(1.0, abs(lam)):
                return csm.Classification("strict_saddle", "saddle (negative curvature of "
                                          "G_J; non-affine target)", L, None, info)
            return csm.Classification("local_minimum", "critical point without negative "
                                      "curvature (non-affine target; not certified)", L,
                                      None, info)
        vals = self.critical_values()[:-1]
        rel = np.abs(L - vals) / vals
        n = int(np.argmin(rel))
        layer: int | None = n
        if rel[n] > ltol:
            info["layer_mismatch"] = float(rel[n])
            layer = None
        N = self.N
        rvw = self.rho * th[2 * N:3 * N] * th[:N]
        if np.all(nt.inactive | (nt.semi_inactive & ~nt.flat & (rvw < 0))):
            return csm.Classification("local_minimum", "layer-0 local minimum (dead neurons)",
                                      L, layer, info)
        in_S = self._in_S(nt, th)
        info["in_S"] = in_S
        lab = f"layer-{layer}" if layer is not None else "unmatched-layer"
        if in_S:
            return csm.Classification("strict_saddle", f"{lab} saddle in S", L, layer, info)
        return csm.Classification("saddle", f"{lab} saddle outside S", L, layer, info)

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: Any, n: int) -> np.ndarray:
        """``n`` i.i.d. initial networks, each coordinate ``N(0, init_scale^2)`` (absolutely
        continuous, as Theorem 4.7 requires).  ``rng``: a numpy Generator or an int seed."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise csm.InputError(f"`n` must be an integer >= 0, got {n!r}")
        return self.init_scale * rng.standard_normal((int(n), self.dim))

"""Momentum methods as maps on ``R^{2d}``: heavy ball and Nesterov (docs/momentum-and-schedules.md).

Both methods remember one previous iterate, so they are autonomous dynamical systems on the
state ``z = (theta, theta_prev)`` in ``R^{2d}``:

* heavy ball:  ``theta+ = theta - gamma G(theta) + beta (theta - theta_prev)``,
  ``theta_prev+ = theta``;
* Nesterov:    ``y = theta + beta (theta - theta_prev)``, ``theta+ = y - gamma G(y)``,
  ``theta_prev+ = theta``.

The fixed points are the states ``(theta*, theta*)`` with ``G(theta*) = 0``, so Theorem 2.2 (the
center-stable manifold) applies to them like to the gradient-descent map of Proposition 2.5:
:func:`csm.center_stable_manifold` takes a :class:`HeavyBallMap` or :class:`NesterovMap` and
:meth:`~HeavyBallMap.fixed_point`.  The Jacobians are **not symmetric**, so the dense
eigen-frame is used (the matrix-free Lanczos path is for symmetric maps only).

Multipliers.  At a critical point with Hessian ``H``, an eigenvector ``H u = h u`` spans with
``(u, 0)`` and ``(0, u)`` an invariant plane of the Jacobian, on which it acts as a 2x2 matrix
whose characteristic polynomial gives two multipliers per Hessian eigenvalue
(:func:`multipliers`):

* heavy ball  ``[[1 + beta - gamma h, -beta], [1, 0]]``:
  ``lambda^2 - (1 + beta - gamma h) lambda + beta = 0``;
* Nesterov    ``[[(1 + beta)(1 - gamma h), -beta (1 - gamma h)], [1, 0]]``:
  ``lambda^2 - (1 + beta)(1 - gamma h) lambda + beta (1 - gamma h) = 0``.

Proposition 2.5 for momentum.  ``det D(heavy ball) = beta^d`` everywhere (block determinant),
so for ``beta > 0`` the heavy-ball map never has a degenerate Jacobian, for *every* step size;
``det D(Nesterov)(z) = beta^d det(I - gamma H(y))``, degenerate exactly where plain gradient
descent is (``gamma = 1/h`` for a Hessian eigenvalue ``h`` at ``y``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._validation import as_batch, positive_float
from .errors import InputError, ShapeError
from .maps import Map, check_fixed_point, problem_parts

__all__ = ["HeavyBallMap", "NesterovMap", "multipliers", "METHODS"]

#: Accepted values of ``method`` in :func:`multipliers`.
METHODS = ("heavy_ball", "nesterov")

ArrayFunc = Callable[[np.ndarray], np.ndarray]


def _momentum(value: Any) -> float:
    try:
        b = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`momentum` must be a real number in [0, 1), got {value!r}") from None
    if not (0.0 <= b < 1.0):
        raise InputError(f"`momentum` must be a real number in [0, 1), got {value!r}")
    return b


class _MomentumMap(Map):
    """Common machinery of :class:`HeavyBallMap` and :class:`NesterovMap` (not public)."""

    method = "momentum"

    def __init__(
        self,
        problem_or_grad: Any,
        step: float,
        momentum: float,
        *,
        hessian: ArrayFunc | None = None,
        hvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        dim: int | None = None,
        name: str | None = None,
        hessian_lipschitz: Any = None,
    ) -> None:
        self.step = positive_float(step, "step")
        self.momentum = _momentum(momentum)
        problem, grad, hessian, hvp, dim, hessian_lipschitz = problem_parts(
            problem_or_grad, hessian=hessian, hvp=hvp, dim=dim, hessian_lipschitz=hessian_lipschitz)
        if problem is not None:
            name = name or f"{self.method}[{getattr(problem, 'name', 'problem')}]"
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))
                                or dim < 1):
            raise InputError(f"`dim` must be a positive integer or None, got {dim!r}")
        self.problem = problem
        self.gradient = grad
        self.hessian = hessian
        self.hvp = hvp
        #: Dimension ``d`` of the parameter ``theta`` (the state has ``2d``); None until known.
        self.theta_dim = None if dim is None else int(dim)
        jac = self._jacobian_dense if hessian is not None else (
            self._jacobian_from_hvp if hvp is not None else None)
        jvp = self._jvp_hvp if hvp is not None else (
            self._jvp_dense if hessian is not None else None)
        super().__init__(self._apply, jac, None if dim is None else 2 * int(dim), jvp=jvp,
                         symmetric=False, name=name or self.method,
                         derivative_lipschitz=self._derivative_lipschitz(hessian_lipschitz))

    # -- the update, unified ------------------------------------------------------------------
    # Both methods are
    #     theta+ = (1+beta) theta - beta theta_prev - gamma G(c1 theta + c2 theta_prev)
    # with (c1, c2) = (1, 0) (heavy ball) or (1+beta, -beta) (Nesterov: the point y), so
    # D theta+ = [(1+beta) I, -beta I] - gamma H(y) [c1 I, c2 I].
    def _coef(self) -> tuple[float, float]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def _halves(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if Z.shape[1] % 2:
            raise ShapeError(f"a state of `{self.name}` has even length 2d (theta, theta_prev), "
                             f"got shape {Z.shape}")
        d = Z.shape[1] // 2
        if self.theta_dim is None:
            self.theta_dim = d
        return Z[:, :d], Z[:, d:]

    def _point(self, T: np.ndarray, P: np.ndarray) -> np.ndarray:
        """Where the gradient is taken: ``theta`` (heavy ball) or ``y`` (Nesterov)."""
        c1, c2 = self._coef()
        return T if c2 == 0 and c1 == 1 else c1 * T + c2 * P

    def _apply(self, Z: np.ndarray) -> np.ndarray:
        T, P = self._halves(Z)
        b = self.momentum
        G = np.asarray(self.gradient(self._point(T, P)), dtype=float)
        return np.concatenate([(1.0 + b) * T - b * P - self.step * G, T], axis=1)

    def _jacobian_from_hessians(self, H: np.ndarray) -> np.ndarray:
        B, d, _ = H.shape
        (c1, c2), b, eye = self._coef(), self.momentum, np.eye(d)
        J = np.zeros((B, 2 * d, 2 * d))
        J[:, :d, :d] = (1.0 + b) * eye - (self.step * c1) * H
        J[:, :d, d:] = -b * eye - (self.step * c2) * H
        J[:, d:, :d] = eye
        return J

    def _jacobian_dense(self, Z: np.ndarray) -> np.ndarray:
        T, P = self._halves(Z)
        H = np.asarray(self.hessian(self._point(T, P)), dtype=float)
        d = T.shape[1]
        if H.shape != (Z.shape[0], d, d):
            raise ShapeError(f"`hessian` must return shape {(Z.shape[0], d, d)}, got {H.shape}")
        return self._jacobian_from_hessians(H)

    def _jacobian_from_hvp(self, Z: np.ndarray) -> np.ndarray:
        """Exact Jacobian from ``d`` Hessian-vector products per point (only when asked for)."""
        T, P = self._halves(Z)
        B, d = T.shape
        Y = np.repeat(self._point(T, P), d, axis=0)
        E = np.tile(np.eye(d), (B, 1))
        H = np.asarray(self.hvp(Y, E), dtype=float).reshape(B, d, d)  # rows: H e_j = column j
        return self._jacobian_from_hessians(np.swapaxes(H, 1, 2))

    def _jvp_dense(self, Z: np.ndarray, V: np.ndarray) -> np.ndarray:
        return np.einsum("bij,bj->bi", self._jacobian_dense(Z), V)

    def _jvp_hvp(self, Z: np.ndarray, V: np.ndarray) -> np.ndarray:
        T, P = self._halves(Z)
        A, Bv = self._halves(V)
        W = np.ascontiguousarray(self._point(A, Bv))
        HW = np.asarray(self.hvp(np.ascontiguousarray(self._point(T, P)), W), dtype=float)
        b = self.momentum
        return np.concatenate([(1.0 + b) * A - b * Bv - self.step * HW, A], axis=1)

    def _derivative_lipschitz(self, hl: Any) -> Any:
        """``|Dg(z) - Dg(z')| <= gamma M |c|^2 |z - z'|`` with ``|c|^2 = c1^2 + c2^2``: the point
        ``y`` moves by at most ``|c| |z - z'|`` and ``|H [c1 I, c2 I]| <= |H| |c|``."""
        c1, c2 = self._coef()
        s2, gamma = c1 * c1 + c2 * c2, self.step
        if callable(hl):
            def dlip(center: np.ndarray, radius: float) -> float:
                c = np.asarray(center, dtype=float)[None]
                T, P = self._halves(c)
                return gamma * s2 * float(hl(self._point(T, P)[0], math.sqrt(s2) * radius))
            return dlip
        if hl is not None:
            return gamma * s2 * positive_float(hl, "hessian_lipschitz", allow_zero=True)
        return None

    # -- states and fixed points ------------------------------------------------------------
    def state(self, theta: Any, theta_prev: Any = None) -> np.ndarray:
        """The state ``z = (theta, theta_prev)``; ``theta_prev`` defaults to ``theta`` (at rest).

        ``theta`` is ``(d,)`` or ``(B, d)``; the result is ``(2d,)`` or ``(B, 2d)``.
        """
        T, single = as_batch(theta, self.theta_dim, name="theta")
        if theta_prev is None:
            P = T
        else:
            P, psingle = as_batch(theta_prev, T.shape[1], name="theta_prev")
            if P.shape != T.shape:
                raise ShapeError(f"`theta` and `theta_prev` shapes differ: {np.shape(theta)} vs "
                                 f"{np.shape(theta_prev)}")
        Z = np.concatenate([T, P], axis=1)
        return Z[0] if single else Z

    def split_state(self, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(theta, theta_prev)`` from a state ``(2d,)`` or a batch ``(B, 2d)``."""
        Z, single = as_batch(z, self.dim, name="z")
        T, P = self._halves(Z)
        return (T[0], P[0]) if single else (T, P)

    def fixed_point(self, theta_star: Any, fixed_point_tol: float = 1e-8) -> np.ndarray:
        """The fixed point ``(theta*, theta*)`` of the map, after checking ``G(theta*) = 0``.

        Uses :func:`csm.maps.check_fixed_point` on the momentum map; the residual there is
        ``gamma |G(theta*)|``.  Raises :class:`~csm.NotFixedPointError` if ``theta*`` is not
        critical to ``fixed_point_tol``.
        """
        z = self.state(theta_star)
        if z.ndim != 1:
            raise ShapeError("`theta_star` must be one point (d,), got shape "
                             f"{np.shape(theta_star)}")
        check_fixed_point(self, z, fixed_point_tol)
        return z

    def check_state_fixed_point(self, z: Any, fixed_point_tol: float = 1e-8) -> np.ndarray:
        """Check that a state ``z = (theta, theta_prev)`` is a fixed point; returns ``theta*``.

        Every fixed point has equal halves (``theta_prev+ = theta``), so a state whose halves
        differ by more than ``fixed_point_tol * max(1, |theta|)`` is rejected with an
        :class:`~csm.InputError` naming ``fixed_point``; then ``G(theta) = 0`` is checked by
        :func:`csm.maps.check_fixed_point` (:class:`~csm.NotFixedPointError`).
        """
        tol = positive_float(fixed_point_tol, "fixed_point_tol")
        Z, single = as_batch(z, self.dim, name="fixed_point")
        if not single:
            raise ShapeError(f"`fixed_point` must be one state (2d,), got shape {np.shape(z)}")
        T, P = self._halves(Z)
        gap = float(np.linalg.norm(T[0] - P[0]))
        bound = tol * max(1.0, float(np.linalg.norm(T[0])))
        if not gap <= bound:
            raise InputError(
                f"`fixed_point` of `{self.name}` must be a state (theta*, theta*) with equal "
                "halves "
                f"(theta_prev+ = theta forces it): |theta - theta_prev| = {gap:.3e} > "
                f"fixed_point_tol * max(1, |theta|) = {bound:.3e}; build it with "
                "`map.fixed_point(theta_star)`")
        check_fixed_point(self, Z[0], tol)
        return T[0].copy()

    def multipliers(self, h: Any) -> np.ndarray:
        """Both multipliers per Hessian eigenvalue ``h`` (:func:`multipliers` with this map's
        step, momentum and method)."""
        return multipliers(h, self.step, self.momentum, method=self.method)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, step={self.step}, "
                f"momentum={self.momentum}, dim={self.dim})")


class HeavyBallMap(_MomentumMap):
    """Polyak's heavy ball as a map on ``R^{2d}``: ``z = (theta, theta_prev) ->
    (theta - gamma G(theta) + beta (theta - theta_prev), theta)``.

    Parameters
    ----------
    problem_or_grad : Problem or callable
        A problem (batched ``gradient``, optionally ``hessian``, ``hvp``, ``dim``,
        ``hessian_lipschitz``) or a batched gradient ``G: (B, d) -> (B, d)``.
    step : float
        ``gamma > 0``.
    momentum : float
        ``beta`` in ``[0, 1)``.
    hessian : callable, optional
        Batched ``DG: (B, d) -> (B, d, d)`` (default: the problem's).  Gives the exact Jacobian
        ``[[(1 + beta) I - gamma H(theta), -beta I], [I, 0]]``.
    hvp : callable, optional
        Rowwise ``hvp(X, V) -> (B, d)`` (default: the problem's).  Jacobian-vector products use
        it and never form a matrix; without ``hessian`` the Jacobian is assembled exactly from
        ``d`` products per point.  With neither, central differences are used.
    dim : int, optional
        ``d`` (the map's dimension is ``2d``); default ``problem.dim``.
    name : str, optional
    hessian_lipschitz : float or callable, optional
        Lipschitz constant ``M`` of the Hessian (number, or ``(center, radius) -> M`` on a ball
        in ``R^d``); default the problem's.  Then ``|Dg(z) - Dg(z')| <= gamma M |z - z'|`` and
        ``derivative_lipschitz`` is ``gamma M`` (a proved contraction in Theorem 2.2).

    Notes
    -----
    Fixed points are ``(theta*, theta*)`` with ``G(theta*) = 0`` (:meth:`fixed_point`); the
    center-stable manifold of Theorem 2.2 there is the set of states (position *and* previous
    position) whose heavy-ball orbits stay near it.  The Jacobian is **not symmetric**
    (``symmetric=False``): :func:`csm.center_stable_manifold` uses the dense eigen-frame; its
    matrix-free path is for symmetric maps only.

    Multipliers: on the plane spanned by ``(u, 0), (0, u)`` with ``H(theta*) u = h u`` the
    Jacobian acts as ``[[1 + beta - gamma h, -beta], [1, 0]]``, so its eigenvalues solve
    ``lambda^2 - (1 + beta - gamma h) lambda + beta = 0`` (:func:`multipliers`).  A negative
    ``h`` gives a real root ``> 1`` (an unstable direction); ``h = 0`` gives ``1`` and ``beta``.
    ``det Dg = beta^d`` everywhere, so for ``beta > 0`` the Jacobian is never degenerate and
    the hypothesis of Proposition 2.5 (Lemma 2.4) holds for every step size.

    Examples
    --------
    >>> import numpy as np, csm
    >>> from csm.momentum import HeavyBallMap
    >>> hess = lambda X: np.ones((len(X), 1, 1))        # L(theta) = theta^2 / 2
    >>> hb = HeavyBallMap(lambda X: X, 0.1, 0.5, hessian=hess, dim=1)
    >>> hb(hb.state([1.0], [2.0]))          # 1 - 0.1 + 0.5 * (1 - 2)
    array([0.4, 1. ])
    """

    method = "heavy_ball"

    def _coef(self) -> tuple[float, float]:
        return 1.0, 0.0


class NesterovMap(_MomentumMap):
    """Nesterov's accelerated gradient as a map on ``R^{2d}``: with
    ``y = theta + beta (theta - theta_prev)``,
    ``z = (theta, theta_prev) -> (y - gamma G(y), theta)``.

    Parameters are those of :class:`HeavyBallMap`.

    Notes
    -----
    Jacobian.  ``y = (1 + beta) theta - beta theta_prev = P z`` with
    ``P = [(1 + beta) I, -beta I]``,
    so by the chain rule ``D theta+ = (I - gamma H(y)) P`` and

        ``Dg(z) = [[(1 + beta)(I - gamma H(y)), -beta (I - gamma H(y))], [I, 0]]``,

    not symmetric (``symmetric=False``; :func:`csm.center_stable_manifold` uses the dense
    eigen-frame).  Jacobian-vector products are ``(w - gamma H(y) w, a)`` with
    ``w = (1 + beta) a - beta b`` for ``v = (a, b)``.  With a Hessian Lipschitz constant ``M``,
    ``|Dg(z) - Dg(z')| <= gamma M |P|^2 |z - z'|``, ``|P|^2 = (1 + beta)^2 + beta^2``.

    Multipliers.  At a fixed point ``(theta*, theta*)`` (then ``y = theta*``) and
    ``H(theta*) u = h u``, write ``a = 1 - gamma h``; on the plane of ``(u, 0), (0, u)`` the
    Jacobian is ``[[(1 + beta) a, -beta a], [1, 0]]``, whose characteristic polynomial is
    ``lambda^2 - (1 + beta) a lambda + beta a``:

        ``lambda^2 - (1 + beta)(1 - gamma h) lambda + beta (1 - gamma h) = 0``.

    ``det Dg(z) = beta^d det(I - gamma H(y))``: degenerate exactly where the gradient-descent
    map ``theta -> theta - gamma G(theta)`` is at ``y`` (the bad steps ``gamma = 1/h`` of
    Proposition 2.5).  Theorem 2.2 applies at every fixed point whose Jacobian is
    diagonalisable with a multiplier of modulus ``> 1``.
    """

    method = "nesterov"

    def _coef(self) -> tuple[float, float]:
        return 1.0 + self.momentum, -self.momentum


def multipliers(h: Any, step: float, momentum: float, method: str = "heavy_ball") -> np.ndarray:
    """The two multipliers of a momentum map that belong to a Hessian eigenvalue ``h``.

    Parameters
    ----------
    h : float or array_like
        Hessian eigenvalue(s) at a critical point ``theta*``.
    step, momentum : float
        ``gamma > 0`` and ``beta`` in ``[0, 1)``.
    method : {"heavy_ball", "nesterov"}

    Returns
    -------
    ndarray of complex, shape ``np.shape(h) + (2,)``
        The roots of ``lambda^2 - b lambda + c`` with ``b = 1 + beta - gamma h``, ``c = beta``
        (heavy ball) or ``b = (1 + beta)(1 - gamma h)``, ``c = beta (1 - gamma h)`` (Nesterov),
        larger modulus first.  Derivation: see :class:`HeavyBallMap` and :class:`NesterovMap`
        (the Jacobian restricted to the plane of ``(u, 0), (0, u)`` for ``H u = h u``).  Real
        roots are computed as ``r1 = (b + sign(b) sqrt(b^2 - 4c))/2``, ``r2 = c / r1``
        (no cancellation).

    Examples
    --------
    >>> from csm.momentum import multipliers
    >>> round(float(multipliers(-2.0, 0.01, 0.9)[0].real), 8)   # lambda^2 - 1.92 lambda + 0.9 = 0
    1.10696938
    """
    gamma = positive_float(step, "step")
    beta = _momentum(momentum)
    if method not in METHODS:
        raise InputError(f"`method` must be one of {METHODS}, got {method!r}")
    try:
        hh = np.asarray(h, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"`h` must be a real number or array, got {h!r}") from None
    if method == "heavy_ball":
        b = 1.0 + beta - gamma * hh
        c = np.full_like(hh, beta)
    else:
        a = 1.0 - gamma * hh
        b, c = (1.0 + beta) * a, beta * a
    disc = b * b - 4.0 * c
    sq = np.sqrt(np.abs(disc))
    sgn = np.where(b >= 0, 1.0, -1.0)
    r1_real = 0.5 * (b + sgn * sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_real = np.where(r1_real != 0, c / np.where(r1_real != 0, r1_real, 1.0), 0.0)
    real = disc >= 0
    r1 = np.where(real, r1_real, 0.5 * b + 0.5j * sq)
    r2 = np.where(real, r2_real, 0.5 * b - 0.5j * sq)
    out = np.stack([r1, r2], axis=-1).astype(complex)
    swap = np.abs(out[..., 1]) > np.abs(out[..., 0])
    out[swap] = out[swap][..., ::-1]
    return out

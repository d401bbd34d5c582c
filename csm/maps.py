"""Discrete dynamical systems ``x -> g(x)`` and gradient-descent maps.

A :class:`Map` evaluates ``g`` on one point ``(d,)`` or a batch ``(B, d)`` and provides its
Jacobian ``Dg`` and Jacobian-vector products.  :class:`GradientDescentMap` is the map
``Psi(theta) = theta - step * G(theta)`` of Proposition 2.5 (docs/theory.md §1.5) for a (generalised)
gradient ``G``.

Finite differences
------------------
When no analytic Jacobian is given it is computed by central differences,

    Dg(x)[:, i] ~= (g(x + h_i e_i) - g(x - h_i e_i)) / (2 h_i),
    h_i = eps**(1/3) * max(1, |x_i|)   (eps = 2.2e-16, so h_i ~ 6e-6 * max(1, |x_i|)),

whose truncation error is O(h**2) * |D^3 g| and rounding error O(eps / h) * |g|: about
1e-10 relative for smooth maps.  All 2d shifted points of all B base points are evaluated
in **one** batched call of ``g``.  Jacobian-vector products use the same rule along ``v``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._validation import as_batch, as_batch_pair, check_finite, positive_float
from .errors import InputError, NotFixedPointError, ShapeError

__all__ = [
    "Map", "GradientDescentMap", "FD_STEP_FACTOR", "fd_jacobian", "local_curvature", "as_map",
    "check_fixed_point", "problem_parts",
]

#: Relative step of the central differences: eps**(1/3).
FD_STEP_FACTOR = float(np.finfo(float).eps ** (1.0 / 3.0))

ArrayFunc = Callable[[np.ndarray], np.ndarray]

#: Above this dimension Jacobian-vector products never form the Jacobian.
_DENSE_JVP_MAX_DIM = 512


def fd_jacobian(func: ArrayFunc, X: np.ndarray, out_dim: int | None = None) -> np.ndarray:
    """Central-difference Jacobians of a batched ``func: (B, d) -> (B, m)`` at ``X (B, d)``.

    Returns ``(B, m, d)``.  Step ``h_i = eps**(1/3) max(1, |x_i|)``; error O(h^2).
    """
    B, d = X.shape
    h = FD_STEP_FACTOR * np.maximum(1.0, np.abs(X))  # (B, d)
    eye = np.eye(d)
    shifts = h[:, :, None] * eye[None, :, :]  # (B, d(i), d)
    plus = (X[:, None, :] + shifts).reshape(B * d, d)
    minus = (X[:, None, :] - shifts).reshape(B * d, d)
    F = np.asarray(func(np.concatenate([plus, minus], axis=0)), dtype=float)
    F = F.reshape(2, B, d, -1)
    J = (F[0] - F[1]) / (2.0 * h[:, :, None])  # (B, d(i), m)
    return np.swapaxes(J, 1, 2)


class Map:
    """A discrete dynamical system ``x -> g(x)`` on ``R^d``.

    Parameters
    ----------
    func : callable
        ``func(X)`` with ``X`` of shape ``(B, d)`` returns ``(B, d)``.  With
        ``vectorized=False`` it receives single points ``(d,)`` and is looped over
        (convenient, but slow: not for hot paths).
    jacobian : callable, optional
        ``jacobian(X)`` returns ``(B, d, d)`` for ``X (B, d)``.  If omitted, central
        finite differences are used (see module docstring for the step and error order).
    dim : int, optional
        Dimension ``d``; inferred from the first call otherwise.
    jvp : callable, optional
        ``jvp(X, V)`` rowwise Jacobian-vector products ``Dg(X_b) V_b`` for ``X, V (B, d)``.
        Enables the matrix-free center-stable construction without forming ``Dg``.
    symmetric : bool
        Whether ``Dg`` is symmetric everywhere (true for gradient-descent maps).
    vectorized : bool
        Whether ``func`` (and ``jacobian``) accept batches.
    name : str, optional
        Label used in messages and reports.
    derivative_lipschitz : float or callable, optional
        A Lipschitz constant ``M`` of ``Dg`` (spectral norm) on balls around a point: a number
        valid everywhere, or ``(center, radius) -> M`` valid on ``B(center, radius)``.  With it
        :func:`csm.center_stable_manifold` *proves* its contraction constant instead of
        estimating it (docs/theory.md, "The contraction constant").

    Examples
    --------
    >>> import numpy as np, csm
    >>> g = csm.Map(lambda X: np.stack([0.5 * X[:, 0], 2 * X[:, 1] + X[:, 0] ** 2], axis=1), dim=2)
    >>> g(np.array([1.0, 1.0]))
    array([0.5, 3. ])
    """

    def __init__(
        self,
        func: ArrayFunc,
        jacobian: ArrayFunc | None = None,
        dim: int | None = None,
        *,
        jvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        symmetric: bool = False,
        vectorized: bool = True,
        name: str | None = None,
        derivative_lipschitz: Any = None,
    ) -> None:
        if not callable(func):
            raise InputError(f"`func` must be callable, got {type(func).__name__}")
        if jacobian is not None and not callable(jacobian):
            raise InputError(f"`jacobian` must be callable or None, got {type(jacobian).__name__}")
        if dim is not None and (not isinstance(dim, (int, np.integer)) or dim < 1):
            raise InputError(f"`dim` must be a positive integer or None, got {dim!r}")
        self._func = func if vectorized else _loop(func)
        self._jac = None if jacobian is None else (jacobian if vectorized else _loop(jacobian))
        self._jvp = jvp
        self._dim = None if dim is None else int(dim)
        self.symmetric = bool(symmetric)
        self.name = name or getattr(func, "__name__", "map")
        if derivative_lipschitz is not None and not callable(derivative_lipschitz):
            derivative_lipschitz = positive_float(derivative_lipschitz, "derivative_lipschitz",
                                                  allow_zero=True)
        self.derivative_lipschitz = derivative_lipschitz

    # -- basic evaluation -------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        """Dimension ``d`` of the state space (None until known)."""
        return self._dim

    @property
    def has_analytic_jvp(self) -> bool:
        """Whether Jacobian-vector products are exact (a ``jvp`` was given)."""
        return self._jvp is not None

    @property
    def has_analytic_jacobian(self) -> bool:
        """True when a Jacobian function was supplied (no finite differences)."""
        return self._jac is not None

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """``g`` on a batch ``(B, d)`` with the shape checked but NaN/inf passed through.

        (Callers that must see non-finite values -- finite differences near a blow-up, error
        models -- use this; :meth:`__call__` raises on them.)  A complex result is refused.
        """
        Y = np.asarray(self._func(X))
        if np.iscomplexobj(Y):
            raise InputError(f"map `{self.name}` returned complex values; csm maps are real")
        Y = Y.astype(float, copy=False)
        if Y.shape != X.shape:
            raise ShapeError(
                f"map `{self.name}` must return shape {X.shape} for input of shape {X.shape}, "
                f"got {Y.shape}"
            )
        return Y

    def __call__(self, x: Any) -> np.ndarray:
        """Evaluate ``g`` at one point ``(d,)`` or a batch ``(B, d)``."""
        X, single = as_batch(x, self._dim)
        if self._dim is None:
            self._dim = X.shape[1]
        Y = check_finite(self.evaluate(X), f"map `{self.name}`", X)
        return Y[0] if single else Y

    def jacobian(self, x: Any) -> np.ndarray:
        """Jacobian ``Dg`` at one point (``(d, d)``) or a batch (``(B, d, d)``)."""
        X, single = as_batch(x, self._dim)
        d = X.shape[1]
        if self._jac is not None:
            J = np.asarray(self._jac(X), dtype=float)
            if J.shape != (X.shape[0], d, d):
                raise ShapeError(
                    f"jacobian of `{self.name}` must return shape {(X.shape[0], d, d)}, "
                    f"got {J.shape}"
                )
        else:
            J = fd_jacobian(self.evaluate, X)
        check_finite(J, f"jacobian of map `{self.name}`", X)
        return J[0] if single else J

    def jvp(self, x: Any, v: Any) -> np.ndarray:
        """Jacobian-vector products ``Dg(x) v``.

        ``x`` is one point ``(d,)`` (then ``v`` may be ``(d,)`` or ``(B, d)``) or a batch
        ``(B, d)`` with ``v (B, d)`` (rowwise products).  Uses, in order: the ``jvp``
        supplied, the analytic Jacobian (only for ``d <= 512``, so that large problems never
        form ``d x d`` matrices), central differences along ``v``
        (``h = eps**(1/3) max(1, |x|_inf) / |v|_inf``, error O(h^2)).
        """
        X, V, both_single = as_batch_pair(x, v, self._dim)
        xsingle = np.ndim(x) == 1
        small = V.shape[1] <= _DENSE_JVP_MAX_DIM
        if self._jvp is not None:
            out = np.asarray(self._jvp(np.ascontiguousarray(X), V), dtype=float)
            if out.shape != V.shape:
                raise ShapeError(
                    f"jvp of `{self.name}` must return shape {V.shape}, got {out.shape}"
                )
        elif self._jac is not None and small and xsingle:
            out = V @ self.jacobian(X[0]).T
        elif self._jac is not None and small:
            out = np.einsum("bij,bj->bi", self.jacobian(X), V)
        else:
            vn = np.max(np.abs(V), axis=1, keepdims=True)
            vn = np.where(vn == 0, 1.0, vn)
            h = FD_STEP_FACTOR * np.maximum(1.0, np.max(np.abs(X), axis=1, keepdims=True)) / vn
            F = self.evaluate(np.concatenate([X + h * V, X - h * V], axis=0))
            out = (F[: len(X)] - F[len(X):]) / (2.0 * h)
        check_finite(out, f"jacobian-vector product of `{self.name}`", X)
        return out[0] if both_single else out

    def iterate(self, x: Any, n_steps: int) -> np.ndarray:
        """Apply ``g`` ``n_steps`` times (batched); returns the final points.

        NaN or infinity along the way raises :class:`~csm.NonFiniteError`
        (:func:`csm.orbits.trajectories`).
        """
        from .orbits import trajectories

        X, single = as_batch(x, self._dim, name="x")
        n_steps = int(n_steps)
        out = trajectories(self, X, n_steps, every=max(1, n_steps))[:, -1]
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self._dim})"


def _loop(f: Callable[[np.ndarray], np.ndarray]) -> ArrayFunc:
    def batched(X: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(f(x), dtype=float) for x in X], axis=0)

    return batched


class GradientDescentMap(Map):
    """The gradient-descent map ``Psi(theta) = theta - step * G(theta)`` (Prop. 2.5, docs/theory.md §1.5).

    Parameters
    ----------
    problem_or_grad : Problem or callable
        A problem (anything with a batched ``gradient`` method, and optionally ``hessian``
        and ``hvp``) or a batched gradient function ``G: (B, d) -> (B, d)``.
    step : float
        Step size ``gamma > 0``.
    hessian : callable, optional
        Batched ``DG: (B, d) -> (B, d, d)``; taken from the problem when it has one.
        Otherwise ``D Psi = I - step * DG`` uses central differences of ``G``.
    hvp : callable, optional
        Rowwise Hessian-vector products ``hvp(X, V) -> (B, d)``; enables the matrix-free
        center-stable construction at large ``d`` without forming a Hessian.
    dim : int, optional
        Dimension; taken from ``problem.dim`` when available.
    hessian_lipschitz : float or callable, optional
        A Lipschitz constant of the Hessian (``(center, radius) -> M`` or a number); taken from
        ``problem.hessian_lipschitz`` when the problem declares one.  The map's
        ``derivative_lipschitz`` is ``step`` times it.

    Notes
    -----
    ``D Psi`` is symmetric wherever ``G`` is a gradient, so ``symmetric=True``; the
    unstable eigenvalues of ``D Psi(x*)`` are ``1 + step |lambda|`` for the negative
    eigenvalues ``lambda`` of ``DG(x*)`` (and ``1 - step lambda < -1`` for
    ``lambda > 2 / step``).
    """

    def __init__(
        self,
        problem_or_grad: Any,
        step: float,
        hessian: ArrayFunc | None = None,
        *,
        hvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        dim: int | None = None,
        name: str | None = None,
        hessian_lipschitz: Any = None,
    ) -> None:
        self.step = positive_float(step, "step")
        parts = problem_parts(problem_or_grad, hessian=hessian, hvp=hvp, dim=dim,
                              hessian_lipschitz=hessian_lipschitz)
        problem, grad, hessian, hvp, dim, hessian_lipschitz = parts
        name = name or (f"GD[{getattr(problem, 'name', 'problem')}]" if problem is not None else None)
        self.problem = problem
        self.gradient = grad
        self.hessian = hessian
        self.hvp = hvp
        gamma = self.step

        def func(X: np.ndarray) -> np.ndarray:
            return X - gamma * np.asarray(grad(X), dtype=float)

        jac = None
        if hessian is not None:

            def jac(X: np.ndarray) -> np.ndarray:
                H = np.asarray(hessian(X), dtype=float)
                return np.eye(X.shape[1])[None] - gamma * H

        jvp = None
        if hvp is not None:

            def jvp(X: np.ndarray, V: np.ndarray) -> np.ndarray:
                return V - gamma * np.asarray(hvp(X, V), dtype=float)

        dlip: Any = None
        if callable(hessian_lipschitz):
            def dlip(center: np.ndarray, radius: float) -> float:
                return gamma * float(hessian_lipschitz(center, radius))
        elif hessian_lipschitz is not None:
            dlip = gamma * positive_float(hessian_lipschitz, "hessian_lipschitz", allow_zero=True)
        super().__init__(func, jac, dim, jvp=jvp, symmetric=True, name=name or "gradient_descent",
                         derivative_lipschitz=dlip)

    def __repr__(self) -> str:
        return f"GradientDescentMap(name={self.name!r}, step={self.step}, dim={self.dim})"


def problem_parts(problem_or_grad: Any, *, hessian: Any = None, hvp: Any = None,
                  dim: int | None = None, hessian_lipschitz: Any = None) -> tuple:
    """``(problem, gradient, hessian, hvp, dim, hessian_lipschitz)`` from a problem or a gradient.

    The one reading of "a Problem or a gradient function" for the maps built from a loss
    (gradient descent, heavy ball, Nesterov): members the caller gives win over the problem's.
    Raises :class:`~csm.InputError` for anything else and for non-callable ``hessian``/``hvp``.
    """
    if hasattr(problem_or_grad, "gradient") and callable(problem_or_grad.gradient):
        problem = problem_or_grad
        grad = problem.gradient
        if hessian is None and callable(getattr(problem, "hessian", None)):
            hessian = problem.hessian
        if hvp is None and callable(getattr(problem, "hvp", None)):
            hvp = problem.hvp
        if hessian_lipschitz is None:
            hessian_lipschitz = getattr(problem, "hessian_lipschitz", None)
        dim = dim if dim is not None else getattr(problem, "dim", None)
    elif callable(problem_or_grad):
        problem, grad = None, problem_or_grad
    else:
        raise InputError(
            "`problem_or_grad` must be a Problem (with a .gradient method) or a gradient "
            f"function, got {type(problem_or_grad).__name__}")
    if hessian is not None and not callable(hessian):
        raise InputError(f"`hessian` must be callable or None, got {type(hessian).__name__}")
    if hvp is not None and not callable(hvp):
        raise InputError(f"`hvp` must be callable or None, got {type(hvp).__name__}")
    return problem, grad, hessian, hvp, dim, hessian_lipschitz


def as_map(obj: Any, name: str = "map") -> Map:
    """Accept a :class:`Map` or a batched callable and return a :class:`Map`."""
    if isinstance(obj, Map):
        return obj
    if callable(obj):
        return Map(obj)
    raise InputError(f"`{name}` must be a csm.Map or a batched callable, got {type(obj).__name__}")


def _scaled_norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow in the squares (``inf`` only for an infinite entry)."""
    top = float(np.max(np.abs(v))) if v.size else 0.0
    if top == 0.0 or not np.isfinite(top):
        return top
    return top * float(np.linalg.norm(v / top))


def check_fixed_point(g: Map, x: np.ndarray, fixed_point_tol: float = 1e-8) -> float:
    """The one fixed-point test: ``|g(x) - x| <= fixed_point_tol * max(1, |x|)``.

    Returns the residual ``|g(x) - x|``; raises :class:`~csm.NotFixedPointError` (with both
    numbers) when it is too large, and :class:`~csm.InputError` for a bad ``fixed_point_tol``.
    """
    tol = positive_float(fixed_point_tol, "fixed_point_tol")
    res = _scaled_norm(np.asarray(g(x), dtype=float) - x)
    bound = tol * max(1.0, _scaled_norm(np.asarray(x, dtype=float)))
    if not (res <= bound and np.isfinite(bound)):
        raise NotFixedPointError(
            f"`fixed_point` is not a fixed point of the map: |g(x*) - x*| = {res:.3e} > "
            f"fixed_point_tol * max(1, |x*|) = {bound:.3e}; pass a more accurate point or a larger "
            "`fixed_point_tol`")
    return res


def local_curvature(problem: Any, point: Any, step: float = 1e-2) -> np.ndarray | None:
    """The curvature matrix ``(I - D Psi_loc(theta)) / step`` at a (critical) point.

    ``Psi_loc = problem.local_map(point, step)`` when the problem has one (for the ReLU loss
    the modified map Psi_J of Lemma 4.3, whose Jacobian exists where the Hessian does not),
    else the plain gradient-descent map; for gradient descent this is ``DG`` (the Hessian where
    it exists).  Returns None when neither a local map nor a Hessian is available.
    """
    theta = np.asarray(getattr(point, "theta", point), dtype=float)
    lm = getattr(problem, "local_map", None)
    try:
        if callable(lm):
            J = np.asarray(lm(point, step).jacobian(theta), dtype=float)
            return (np.eye(J.shape[0]) - J) / step
        if callable(getattr(problem, "hessian", None)):
            return np.asarray(problem.hessian(theta), dtype=float)
    except NotImplementedError:
        return None
    return None

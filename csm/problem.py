"""The Problem protocol, critical points and problem factories.

A *problem* is a loss ``L: R^d -> R`` with its (generalised) gradient ``G``; csm's
instruments only use the members listed in :class:`Problem`.  Plugins hand csm
:class:`ProblemFactory` objects (through the ``csm_problems`` hook) and
:class:`~csm.experiments.Experiment` objects (through ``csm_experiments``).

Kinds of critical points are the strings in :data:`KINDS`.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ._results import to_jsonable
from .errors import InputError, NonFiniteError, ParameterError

__all__ = [
    "KINDS",
    "Problem",
    "ProblemBase",
    "CriticalPoint",
    "Classification",
    "ProblemFactory",
    "to_jsonable",
    "resolve_point",
    "gd_map",
]

#: The vocabulary for kinds of critical points (and ``"not_critical"`` for classify).
KINDS = (
    "global_minimum",
    "local_minimum",
    "strict_saddle",
    "saddle",  # a saddle that is not strict (no negative curvature direction)
    "local_maximum",
)


@dataclass(frozen=True)
class CriticalPoint:
    """A known critical point of a problem.

    Attributes
    ----------
    theta : ndarray (d,)
        The point.
    kind : str
        One of :data:`KINDS`.
    loss : float
        The loss value there.
    label : str
        Short unique name (e.g. ``"zigzag-n1-inactive"``), used by ``csm manifold --point``.
    info : dict
        Extra facts (layer index, least Hessian eigenvalue, whether numerically located...).
    """

    theta: np.ndarray
    kind: str
    loss: float
    label: str
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"`kind` must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "theta", np.asarray(self.theta, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {"theta": self.theta, "kind": self.kind, "loss": self.loss, "label": self.label,
             "info": dict(self.info)}
        )


@dataclass(frozen=True)
class Classification:
    """What :meth:`Problem.classify` says about a point.

    ``kind`` is one of :data:`KINDS` or ``"not_critical"``; ``label`` names the class for
    tables (e.g. ``"layer-1 saddle in S"``); ``layer`` is an index of the loss level when the
    problem has one.
    """

    kind: str
    label: str
    loss: float
    layer: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS + ("not_critical",):
            raise InputError(
                f"`kind` must be one of {KINDS + ('not_critical',)}, got {self.kind!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))


@runtime_checkable
class Problem(Protocol):
    """What csm needs of a loss.  All array methods are batched: ``(d,)`` or ``(B, d)``.

    Required: ``name``, ``dim``, ``loss``, ``gradient``, ``sample``, ``critical_points``.
    Optional (checked with ``getattr``): ``hessian`` (where it exists), ``hvp``,
    ``classify(theta) -> Classification``, ``local_map(point, step) -> Map`` (a map valid
    near a critical point, e.g. the ReLU plugin's modified map Psi_J), ``critical_values()``.
    """

    name: str
    dim: int

    def loss(self, theta: np.ndarray) -> np.ndarray | float: ...

    def gradient(self, theta: np.ndarray) -> np.ndarray: ...

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray: ...

    def critical_points(self) -> Sequence[CriticalPoint]: ...


class ProblemBase:
    """Convenience base class for problems: batching helpers and sensible defaults.

    Subclasses set ``name`` and ``dim`` and implement ``_loss(X) -> (B,)`` and
    ``_gradient(X) -> (B, d)`` on batches (and optionally ``_hessian(X) -> (B, d, d)``);
    the public methods accept ``(d,)`` or ``(B, d)`` and validate shapes.
    """

    name: str = "problem"
    dim: int = 0
    #: Refuse NaN or infinite ``theta`` in the public methods (:class:`~csm.NonFiniteError`
    #: naming the first bad row); off by default, so a problem may propagate NaN if it wants.
    finite_only: bool = False
    #: Compute float32 ``theta`` in float32 in :meth:`loss` and :meth:`gradient` (and whatever
    #: else the problem documents; results float32); off by default: every input is converted
    #: to float64.  For throughput-bound uses (batched GD of many networks); everything else
    #: (:meth:`hessian`, analyses calling ``_batch``) stays float64.
    float32: bool = False

    def _batch(self, theta: Any, keep_float32: bool = False) -> tuple[np.ndarray, bool]:
        """``(X (B, d), single)`` from one point ``(d,)``, a batch ``(B, d)`` or a
        :class:`CriticalPoint`, validated (shape; finiteness when :attr:`finite_only`);
        float64, or float32 for float32 input with ``keep_float32`` (what :meth:`loss` and
        :meth:`gradient` pass when :attr:`float32` is set; analyses keep the default)."""
        from ._validation import as_batch

        if isinstance(theta, CriticalPoint):
            theta = theta.theta
        X, single = as_batch(theta, self.dim, name="theta", keep_float32=keep_float32)
        if self.finite_only and not np.isfinite(X).all():
            bad = int(np.nonzero(~np.isfinite(X).all(axis=1))[0][0])
            raise NonFiniteError(f"`theta` contains NaN or infinity (first bad row: {bad})")
        return X, single

    def _pair(self, theta: Any, v: Any, keep_float32: bool = False
              ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Rowwise ``(theta, v)`` batches for Hessian-vector products (broadcasting a single one)."""
        from ._validation import as_batch_pair

        return as_batch_pair(theta, v, self.dim, names=("theta", "v"), keep_float32=keep_float32)

    def loss(self, theta: Any) -> np.ndarray | float:
        X, single = self._batch(theta, keep_float32=self.float32)
        out = np.asarray(self._loss(X), dtype=X.dtype)
        return float(out[0]) if single else out

    def gradient(self, theta: Any) -> np.ndarray:
        X, single = self._batch(theta, keep_float32=self.float32)
        out = np.asarray(self._gradient(X), dtype=X.dtype)
        return out[0] if single else out

    def hessian(self, theta: Any) -> np.ndarray:
        X, single = self._batch(theta)
        if hasattr(self, "_hessian"):
            out = np.asarray(self._hessian(X), dtype=float)
        else:
            from .maps import fd_jacobian

            out = fd_jacobian(self._gradient, X)
            out = 0.5 * (out + np.swapaxes(out, 1, 2))
        return out[0] if single else out

    def _loss(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _gradient(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Default initial law: standard Gaussian in ``R^d`` (absolutely continuous)."""
        return rng.standard_normal((int(n), self.dim))

    def critical_points(self) -> list[CriticalPoint]:
        return []

    #: Infimum of the loss, when known (e.g. 0 for squared losses that can be fitted exactly):
    #: a certified minimum at this level is global (:mod:`csm.identify`).
    min_loss: float | None = None
    #: A level below which every critical point is a global minimum (e.g. the lowest saddle
    #: layer): gradient descent below it can only converge to a global minimum
    #: (:func:`csm.orbits.descend`).  None when unknown.
    global_sublevel: float | None = None
    #: Stopping tolerance and step budget that suit this problem's classifier (stable sets
    #: use them when the caller gives none).
    default_tol: float | None = None
    default_max_steps: int | None = None

    def hvp(self, theta: Any, v: Any) -> np.ndarray:
        """Rowwise Hessian-vector products ``H(theta_b) v_b``.

        Default: the dense Hessian when the problem defines ``_hessian``, else central
        differences of the gradient along ``v`` (step ``sqrt(eps) max(1, |theta|)``,
        error O(h^2) + O(eps/h)).
        """
        X, V, single = self._pair(theta, v)
        if hasattr(self, "_hessian"):
            out = np.einsum("bij,bj->bi", np.asarray(self._hessian(X), dtype=float), V)
        else:
            h = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.linalg.norm(X, axis=1))[:, None]
            G = np.asarray(self._gradient(np.concatenate([X + h * V, X - h * V])), dtype=float)
            out = (G[: len(X)] - G[len(X):]) / (2.0 * h)
        return out[0] if single else out

    def local_map(self, point: CriticalPoint | np.ndarray, step: float):
        """The gradient-descent map; problems with a modified map near ``point`` override."""
        from .maps import GradientDescentMap

        return GradientDescentMap(self, step)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} dim={self.dim}>"


def resolve_point(problem: Any, point: Any, d: int | None = None) -> tuple[Any, np.ndarray, str]:
    """The one answer to "CriticalPoint, label or array?": ``(point_or_theta, theta, name)``.

    ``point`` is a :class:`CriticalPoint`, the label of one of ``problem.critical_points()``
    or coordinates ``(d,)``.  Raises :class:`~csm.InputError` (unknown label, listing the
    known ones) or :class:`~csm.ShapeError` / :class:`~csm.NonFiniteError` (bad coordinates).
    """
    from ._validation import as_point

    d = int(problem.dim) if d is None else d
    if isinstance(point, CriticalPoint):
        return point, as_point(point.theta, d, "point.theta"), point.label
    if isinstance(point, str):
        getter = getattr(problem, "critical_points", None)
        cps = list(getter()) if callable(getter) else []
        for c in cps:
            if c.label == point:
                return c, as_point(c.theta, d, "point.theta"), c.label
        raise InputError(
            f"`point` {point!r} is not the label of a known critical point of "
            f"{getattr(problem, 'name', 'the problem')}; known: {[c.label for c in cps]}"
        )
    theta = as_point(point, d, "point")
    return theta, theta, np.array2string(theta, precision=4, separator=", ")


def gd_map(problem: Any, point: Any, step: Any, *, local: bool = True) -> Any:
    """The gradient-descent map to iterate near ``point``: ``problem.local_map(point, step)``
    when the problem has one (and ``local``), else :class:`~csm.GradientDescentMap`."""
    from .maps import GradientDescentMap

    lm = getattr(problem, "local_map", None)
    if local and callable(lm):
        return lm(point, step)
    return GradientDescentMap(problem, step)


@dataclass(frozen=True)
class ProblemFactory:
    """How a plugin offers a problem: ``name``, one-line ``description``, a constructor.

    ``parameters`` maps each keyword parameter to its default; it is read from the
    constructor's signature when not given.  :meth:`create` rejects unknown names with a
    :class:`~csm.errors.ParameterError` listing the accepted ones; the constructor itself
    validates values (raising ``CsmError`` subclasses that name the parameter).
    """

    name: str
    description: str
    constructor: Callable[..., Any]
    parameters: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.parameters is None:
            sig = inspect.signature(self.constructor)
            params = {
                k: (None if p.default is inspect.Parameter.empty else p.default)
                for k, p in sig.parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            }
            object.__setattr__(self, "parameters", params)

    def create(self, **params: Any) -> Any:
        unknown = sorted(set(params) - set(self.parameters or {}))
        if unknown:
            raise ParameterError(
                f"problem {self.name!r} has no parameter(s) {unknown}; accepted: "
                f"{sorted(self.parameters or {})}"
            )
        try:
            return self.constructor(**params)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise ParameterError(f"problem {self.name!r}: bad parameters {params}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {"name": self.name, "description": self.description,
             "parameters": dict(self.parameters or {})}
        )

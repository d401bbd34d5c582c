"""Step schedules ``k -> gamma_k`` for gradient descent (docs/momentum-and-schedules.md).

Gradient descent with steps ``gamma_k`` is the *non-autonomous* system
``theta_{k+1} = Psi_k(theta_k)``, ``Psi_k(theta) = theta - gamma_k G(theta)``.  The paper notes
that Proposition 2.5 extends to it: the set of initialisations whose orbits converge to a
strict saddle is a null set provided every ``Psi_k`` has an a.e. non-degenerate Jacobian
(Lemma 2.4 for each ``Psi_k``), i.e. no ``gamma_k`` equals ``1/h`` for a Hessian eigenvalue
``h`` taken on a set of positive measure.  :func:`schedule_hits` shows the steps ``k`` at which
a schedule meets such a value.

Schedules are small frozen (hence hashable and picklable) classes with ``__call__(k)``,
``describe()`` and ``spec()``; every instrument that takes ``step`` accepts them, because they
are callables ``k -> gamma_k`` (:func:`csm.orbits.step_sizes`).  :class:`Polyak` is the
exception: its step depends on the current point, so it has :meth:`Polyak.step` instead.
:func:`as_schedule` turns numbers, callables and the CLI's strings (``"0.05"``,
``"constant:0.05"``, ``"geometric:0.05,0.995"``, ``"poly:0.1,0.5"``) into schedules.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._validation import positive_float, positive_int
from .errors import InputError

__all__ = [
    "Schedule", "Constant", "Geometric", "PolynomialDecay", "Polyak", "CallableSchedule",
    "Shifted", "shifted", "as_schedule", "check_schedule", "schedule_hits", "SPEC_FORMS",
]

#: The string forms :func:`as_schedule` accepts (shown in its error messages).
SPEC_FORMS = ("<gamma>", "constant:<gamma>", "geometric:<gamma0>,<rate>",
              "poly:<gamma0>,<power>[,<offset>]", "polyak:<f_star>[,<gamma_max>] (needs `problem`)")


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"`{name}` must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"`{name}` must be a finite real number, got {value!r}")
    return v


def _k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InputError(f"the step index `k` must be an integer >= 0, got {k!r}")
    return int(k)


class Schedule:
    """Base class: ``schedule(k)`` is ``gamma_k`` for ``k = 0, 1, ...``.

    ``state_dependent`` is True for schedules that need the current point (:class:`Polyak`).
    """

    state_dependent = False

    def __call__(self, k: int) -> float:  # pragma: no cover - subclasses
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - subclasses
        raise NotImplementedError

    def spec(self) -> str:
        """The string :func:`as_schedule` parses back into this schedule."""
        raise InputError(f"{type(self).__name__} has no string form")

    def tail(self, k: int) -> float:
        """An upper bound of ``sum_{j >= k} gamma_j`` (``inf`` when the steps are not summable).

        With a finite tail an orbit whose gradients stay bounded by ``g`` moves at most
        ``g * tail(k)`` after step ``k``: it converges (:func:`csm.orbits.descend` stops it when
        that bound is below ``tol``).
        """
        return math.inf

    def values(self, n: int) -> np.ndarray:
        """``[gamma_0, ..., gamma_{n-1}]`` (not checked; see :func:`check_schedule`)."""
        return np.array([float(self(k)) for k in range(positive_int(n, "n", minimum=0))])


@dataclass(frozen=True)
class Constant(Schedule):
    """``gamma_k = gamma`` (the autonomous map of Proposition 2.5)."""

    gamma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", positive_float(self.gamma, "gamma"))

    def __call__(self, k: int) -> float:
        _k(k)
        return self.gamma

    def describe(self) -> str:
        return f"constant gamma_k = {self.gamma:g}"

    def spec(self) -> str:
        return f"constant:{self.gamma!r}"


@dataclass(frozen=True)
class Geometric(Schedule):
    """``gamma_k = gamma0 * rate**k`` with ``0 < rate <= 1``."""

    gamma0: float
    rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma0", positive_float(self.gamma0, "gamma0"))
        rate = positive_float(self.rate, "rate")
        if rate > 1:
            raise InputError(f"`rate` must satisfy 0 < rate <= 1, got {self.rate!r}")
        object.__setattr__(self, "rate", rate)

    def __call__(self, k: int) -> float:
        return self.gamma0 * self.rate ** _k(k)

    def tail(self, k: int) -> float:
        """``gamma0 rate^k / (1 - rate)`` (``inf`` for ``rate = 1``)."""
        return math.inf if self.rate == 1 else self(k) / (1.0 - self.rate)

    def describe(self) -> str:
        return f"geometric gamma_k = {self.gamma0:g} * {self.rate:g}**k"

    def spec(self) -> str:
        return f"geometric:{self.gamma0!r},{self.rate!r}"


@dataclass(frozen=True)
class PolynomialDecay(Schedule):
    """``gamma_k = gamma0 / (k + offset)**power`` with ``power >= 0`` and ``offset > 0``."""

    gamma0: float
    power: float
    offset: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma0", positive_float(self.gamma0, "gamma0"))
        object.__setattr__(self, "power", positive_float(self.power, "power", allow_zero=True))
        object.__setattr__(self, "offset", positive_float(self.offset, "offset"))

    def __call__(self, k: int) -> float:
        return self.gamma0 / (_k(k) + self.offset) ** self.power

    def tail(self, k: int) -> float:
        """``gamma_k + gamma0 (k + offset)^(1-p) / (p - 1)`` for ``p > 1`` (integral bound), else ``inf``."""
        if self.power <= 1:
            return math.inf
        x = _k(k) + self.offset
        return self(k) + self.gamma0 * x ** (1.0 - self.power) / (self.power - 1.0)

    def describe(self) -> str:
        return f"polynomial gamma_k = {self.gamma0:g} / (k + {self.offset:g})**{self.power:g}"

    def spec(self) -> str:
        return f"poly:{self.gamma0!r},{self.power!r},{self.offset!r}"


@dataclass(frozen=True)
class CallableSchedule(Schedule):
    """Any callable ``k -> gamma_k`` as a schedule (picklable when ``func`` is: not a lambda)."""

    func: Callable[[int], float]
    name: str = ""

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise InputError("`func` must be callable k -> gamma_k, got "
                             f"{type(self.func).__name__}")

    def __call__(self, k: int) -> float:
        return float(self.func(k))

    def describe(self) -> str:
        return f"gamma_k = {self.name or getattr(self.func, '__name__', 'func')}(k)"


@dataclass(frozen=True)
class Shifted(Schedule):
    """``gamma_k = base(k + offset)``: a schedule continued after ``offset`` steps taken elsewhere.

    Used when one run is split into phases (stochastic steps, then deterministic descent:
    :mod:`csm.stochastic`), so the second phase continues the first one's schedule.
    """

    base: Callable[[int], float]
    offset: int

    def __post_init__(self) -> None:
        if not callable(self.base):
            raise InputError(f"`base` must be a schedule k -> gamma_k, got {self.base!r}")
        object.__setattr__(self, "offset", positive_int(self.offset, "offset", minimum=0))

    def __call__(self, k: int) -> float:
        return float(self.base(_k(k) + self.offset))

    def tail(self, k: int) -> float:
        tail = getattr(self.base, "tail", None)
        return math.inf if tail is None else float(tail(_k(k) + self.offset))

    def describe(self) -> str:
        d = getattr(self.base, "describe", None)
        return f"{d() if callable(d) else 'schedule'} from k = {self.offset}"


def shifted(step: Any, offset: int) -> Any:
    """``step`` continued after ``offset`` steps: a number stays a number, a schedule is shifted."""
    if not callable(step) or offset == 0:
        return step
    return Shifted(step, offset)


@dataclass(frozen=True, eq=False)
class Polyak(Schedule):
    """Polyak's step ``gamma(theta) = (L(theta) - f_star) / |G(theta)|^2``, capped at ``gamma_max``.

    **State-dependent**: the step depends on the current point, not on ``k``, so this is not a
    map ``k -> gamma_k`` and calling it raises :class:`~csm.InputError`; use :meth:`step`.
    Gradient descent with it is ``theta -> theta - gamma(theta) G(theta)``, a single
    autonomous map (Proposition 2.5 then needs a.e. non-degeneracy of *that* map's Jacobian,
    which involves the derivative of ``gamma(theta)``; :func:`schedule_hits` does not apply).

    Parameters
    ----------
    problem : Problem
        Needs batched ``loss`` and ``gradient``.
    f_star : float
        The optimal value (or a lower estimate of it).
    gamma_max : float, optional
        Cap on the step (recommended: the step is unbounded near a non-global critical point).
    """

    problem: Any
    f_star: float
    gamma_max: float | None = None
    state_dependent = True

    def __post_init__(self) -> None:
        for attr in ("loss", "gradient"):
            if not callable(getattr(self.problem, attr, None)):
                raise InputError(f"`problem` must have a batched .{attr} method for Polyak's step, "
                                 f"got {type(self.problem).__name__}")
        object.__setattr__(self, "f_star", _real(self.f_star, "f_star"))
        if self.gamma_max is not None:
            object.__setattr__(self, "gamma_max", positive_float(self.gamma_max, "gamma_max"))

    def __call__(self, k: int) -> float:
        raise InputError("Polyak's step is state-dependent: it has no value gamma_k for a step "
                         "index alone; use `Polyak.step(theta_batch, grad_batch)`")

    def step(self, theta_batch: Any, grad_batch: Any = None) -> np.ndarray | float:
        """Steps ``max(0, L(theta) - f_star) / |G|^2`` (capped at ``gamma_max``) for each row.

        ``theta_batch`` is ``(d,)`` or ``(B, d)``; ``grad_batch`` the gradients there (computed
        when omitted).  Where ``G = 0`` the step is ``gamma_max`` (or 0 without a cap): it does
        not move the point.  Returns a float for one point, else ``(B,)``.
        """
        X = np.asarray(theta_batch, dtype=float)
        single = X.ndim == 1
        X2 = X[None] if single else X
        G = np.asarray(self.problem.gradient(X2) if grad_batch is None else grad_batch, dtype=float)
        G = G[None] if G.ndim == 1 else G
        if G.shape != X2.shape:
            raise InputError(f"`grad_batch` must have the shape of `theta_batch` {X2.shape}, "
                             f"got {G.shape}")
        L = np.asarray(self.problem.loss(X2), dtype=float).reshape(-1)
        g2 = np.einsum("ij,ij->i", G, G)
        cap = np.inf if self.gamma_max is None else self.gamma_max
        with np.errstate(divide="ignore", invalid="ignore"):
            gam = np.maximum(L - self.f_star, 0.0) / g2
        gam = np.where(g2 > 0, np.minimum(gam, cap), 0.0 if self.gamma_max is None else cap)
        return float(gam[0]) if single else gam

    def describe(self) -> str:
        cap = "" if self.gamma_max is None else f", capped at {self.gamma_max:g}"
        return f"Polyak gamma = (L(theta) - {self.f_star:g}) / |G(theta)|^2{cap} (state-dependent)"

    def spec(self) -> str:
        tail = "" if self.gamma_max is None else f",{self.gamma_max!r}"
        return f"polyak:{self.f_star!r}{tail}"


def _bad_spec(spec: str, name: str, why: str = "") -> InputError:
    why = f" ({why})" if why else ""
    return InputError(f"`{name}` {spec!r} is not a step schedule{why}; accepted forms: "
                      + ", ".join(SPEC_FORMS))


def _parse(spec: str, name: str, problem: Any) -> Schedule:
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        try:
            return Constant(float(text))
        except ValueError:
            raise _bad_spec(spec, name) from None
    try:
        args = [float(a) for a in rest.split(",")] if rest.strip() else []
    except ValueError:
        raise _bad_spec(spec, name, "its parameters must be numbers") from None
    forms = {"constant": (Constant, 1, 1), "geometric": (Geometric, 2, 2),
             "poly": (PolynomialDecay, 2, 3), "polynomial": (PolynomialDecay, 2, 3),
             "polyak": (Polyak, 1, 2)}
    if kind not in forms:
        raise _bad_spec(spec, name, f"unknown kind {kind!r}")
    cls, lo, hi = forms[kind]
    if not lo <= len(args) <= hi:
        raise _bad_spec(spec, name, f"{kind!r} takes {lo}" + (f" to {hi}" if hi > lo else "")
                        + f" number(s), got {len(args)}")
    try:
        if cls is Polyak:
            if problem is None:
                raise InputError("Polyak's step needs the problem: pass `problem=`")
            return Polyak(problem, *args)
        return cls(*args)
    except InputError as exc:
        raise InputError(f"`{name}` {spec!r}: {exc}") from None


def as_schedule(obj: Any, *, name: str = "step", problem: Any = None) -> Schedule:
    """A :class:`Schedule` from a number, a schedule, a callable ``k -> gamma`` or a string.

    Strings (as the CLI passes them): ``"0.05"``, ``"constant:0.05"``,
    ``"geometric:0.05,0.995"``, ``"poly:0.1,0.5"`` (optionally ``",offset"``) and, with
    ``problem``, ``"polyak:f_star[,gamma_max]"``.  Anything else raises
    :class:`~csm.InputError` naming ``name`` and listing the accepted forms.

    Examples
    --------
    >>> from csm.schedules import as_schedule
    >>> as_schedule("geometric:0.05,0.5")(2)
    0.0125
    """
    if isinstance(obj, Schedule):
        return obj
    if isinstance(obj, str):
        return _parse(obj, name, problem)
    if isinstance(obj, numbers.Real) and not isinstance(obj, bool):
        try:
            return Constant(obj)
        except InputError:
            raise InputError(f"`{name}` must be a finite number > 0, got {obj!r}") from None
    if callable(obj):
        return CallableSchedule(obj)
    raise InputError(f"`{name}` must be a number, a schedule, a callable k -> gamma_k or a string "
                     f"({', '.join(SPEC_FORMS)}), got {type(obj).__name__}")


def check_schedule(s: Any, n: int, *, name: str = "step") -> np.ndarray:
    """Evaluate ``gamma_0, ..., gamma_{n-1}`` and check each is a finite number ``> 0``.

    ``s`` is anything :func:`as_schedule` accepts.  Raises :class:`~csm.InputError` naming
    ``name`` and the first bad ``k`` (negative, zero, NaN, infinite or not a number), and for a
    state-dependent schedule (:class:`Polyak`).  Returns the values ``(n,)``.
    """
    sched = as_schedule(s, name=name)
    n = positive_int(n, "n", minimum=0)
    if sched.state_dependent:
        raise InputError(f"`{name}` ({sched.describe()}) is state-dependent: it has no values "
                         "gamma_k to check without the points")
    out = np.empty(n)
    for k in range(n):
        try:
            g = float(sched(k))
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise InputError(f"`{name}` schedule failed at k={k}: {exc}") from None
        if not (math.isfinite(g) and g > 0):
            what = ("NaN" if math.isnan(g) else "infinite" if math.isinf(g)
                    else "zero" if g == 0 else "negative")
            raise InputError(f"`{name}` schedule gives a {what} step at k={k}: gamma_{k} = {g!r}; "
                             "every step must be a finite number > 0")
        out[k] = g
    return out


def schedule_hits(schedule: Any, values: Any, n_steps: int, rtol: float = 1e-9) -> np.ndarray:
    """The steps ``k < n_steps`` at which ``gamma_k h = 1`` (to ``rtol``) for a curvature ``h``.

    For gradient descent with steps ``gamma_k``, ``D Psi_k = I - gamma_k H`` is singular exactly
    when ``gamma_k = 1/h`` for an eigenvalue ``h`` of the Hessian.  The non-autonomous
    extension of Proposition 2.5 needs every ``Psi_k`` to be a.e. non-degenerate (Lemma 2.4),
    which fails when ``gamma_k h = 1`` for an ``h`` taken on a set of positive measure (a
    quadratic's eigenvalues, a piecewise-quadratic loss's curvature on a region).  Pass such
    values (e.g. the Hessian eigenvalues at a saddle of a piecewise-quadratic loss); an empty
    result says the first ``n_steps`` steps avoid them.  Values at single points only are a
    diagnostic: meeting them there is harmless unless they persist on a set of positive measure.

    Parameters
    ----------
    schedule : number, Schedule, callable or str
        As for :func:`as_schedule`; its values are checked (:func:`check_schedule`).
    values : array_like
        Curvature values ``h`` (only ``h > 0`` can be hit).
    n_steps : int
    rtol : float
        ``|gamma_k h - 1| <= rtol`` counts as a hit.

    Returns
    -------
    ndarray of int
        The ascending step indices ``k`` that hit some ``h``.

    Examples
    --------
    >>> from csm.schedules import schedule_hits, Geometric
    >>> schedule_hits(Geometric(1.0, 0.5), [4.0, -1.0], 10)     # gamma_2 = 1/4
    array([2])
    """
    gam = check_schedule(schedule, n_steps, name="schedule")
    rtol = positive_float(rtol, "rtol")
    try:
        h = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"`values` must be real numbers, got {values!r}") from None
    if not np.all(np.isfinite(h)):
        raise InputError("`values` contains NaN or infinity")
    h = h[h > 0]
    if h.size == 0 or gam.size == 0:
        return np.zeros(0, dtype=int)
    hit = np.abs(np.multiply.outer(gam, h) - 1.0) <= rtol
    return np.nonzero(hit.any(axis=1))[0].astype(int)

"""Stochastic gradient descent as a random map (docs/theory.md §9).

SGD is the *random* non-autonomous system

``theta_{k+1} = theta_k - gamma_k * G_hat_k(theta_k)``,
``G_hat_k(theta) = sum_i W_{k,i} grad l_i(theta) + sigma * xi_k``,

on a finite-sum loss ``L = (1/m) sum_i l_i``: ``W_k`` are mini-batch weights (``1/b`` on a batch
of ``b`` indices drawn afresh at every step, so ``E W_{k,i} = 1/m`` and ``G_hat_k`` is unbiased)
and ``xi_k ~ N(0, I_d)`` is optional additive noise.  Every run of a batch draws its own
``W_k`` and ``xi_k`` (independent runs: the binomial intervals of stable-set estimates stay
valid).

A problem supports mini-batches when it declares ``n_samples`` (``m``) and its
``loss_and_gradient(theta, sample_weights=W)`` accepts weights ``W`` of shape ``(B, m)`` and
returns ``sum_i W[b, i] l_i(theta_b)`` and its gradient (the network plugin, empirical phase
retrieval).  Additive noise works for every problem.

How the stable-set instrument uses it (:func:`csm.estimate_stable_set` with ``stochastic=``):
``S`` SGD steps from each initialisation, then deterministic gradient descent (the schedule
continued, :func:`csm.schedules.shifted`) until the run converges, and the limit is named as
for GD.  With additive noise the law of ``theta_S`` is absolutely continuous whatever the start
(``theta_S`` is a deterministic function of the past plus an independent Gaussian), so by
Proposition 2.5 the deterministic phase converges to a strict saddle with probability zero
even from starts *on* a saddle's stable set, where plain GD converges to the saddle: the
instrument measures that difference (docs/theory.md §9).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import positive_float, positive_int
from .errors import InputError, ShapeError
from .orbits import step_sizes

__all__ = ["StochasticGradient", "SGDMap", "sgd_steps", "sample_weights"]


def sample_weights(W: Any, B: int, m: int, name: str = "sample_weights") -> np.ndarray:
    """Validate per-sample weights of a finite-sum loss for a batch of ``B`` points.

    Accepts shape ``(m,)`` (the same weights for every point), ``(1, m)`` or ``(B, m)``
    (one weight vector per point of the batch); entries finite and ``>= 0``.  Returns a
    C-contiguous float64 array of shape ``(1, m)`` or ``(B, m)`` (rows broadcast over the
    batch).  Raises :class:`~csm.InputError` (not numeric, negative),
    :class:`~csm.ShapeError` or :class:`~csm.NonFiniteError`, naming ``name``, the bad
    entry's index and what is accepted.
    """
    from .errors import NonFiniteError

    try:
        arr = np.asarray(W, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a numeric array of shape ({m},) or (B, {m}), got "
                         f"{type(W).__name__}") from None
    if arr.ndim == 1 and arr.shape[0] == m:
        arr = arr[None]
    elif not (arr.ndim == 2 and arr.shape[1] == m and arr.shape[0] in (1, B)):
        raise ShapeError(f"`{name}` must have shape (m,) = ({m},) or (B, m) = ({B}, {m}) (one "
                         f"weight vector per point of the batch), got shape {arr.shape}")

    def where(bad: np.ndarray) -> Any:
        idx = np.argwhere(bad)[0]
        return tuple(int(i) for i in idx) if arr.shape[0] > 1 else int(idx[1])

    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"`{name}` contains NaN or infinity (first at index "
                             f"{where(~np.isfinite(arr))})")
    if np.any(arr < 0):
        k = where(arr < 0)
        val = arr[k] if isinstance(k, tuple) else arr[0, k]
        raise InputError(f"`{name}` must be non-negative, got {float(val)!r} at index {k}")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class StochasticGradient:
    """The random gradient oracle of SGD (docs/theory.md §9).

    Parameters
    ----------
    batch_size : int, optional
        Mini-batch size ``b`` (``1 <= b <= problem.n_samples``); ``None``: the full gradient.
    noise : float
        Standard deviation ``sigma >= 0`` of additive Gaussian noise per coordinate.
    replace : bool
        Draw the mini-batch with replacement (default: without, ``b`` distinct indices).

    At least one of ``batch_size`` and ``noise`` must make the oracle random.
    """

    batch_size: int | None = None
    noise: float = 0.0
    replace: bool = False

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", positive_int(self.batch_size, "batch_size"))
        object.__setattr__(self, "noise", positive_float(self.noise, "noise", allow_zero=True))
        object.__setattr__(self, "replace", bool(self.replace))
        if self.batch_size is None and self.noise == 0.0:
            raise InputError("a StochasticGradient needs `batch_size` or `noise` > 0 (with neither "
                             "it is the full gradient: pass stochastic=None for plain GD)")

    def describe(self) -> str:
        parts = []
        if self.batch_size is not None:
            parts.append(f"mini-batches of {self.batch_size}"
                         + (" (with replacement)" if self.replace else ""))
        if self.noise:
            parts.append(f"additive noise sigma = {self.noise:g}")
        return "SGD: " + ", ".join(parts)

    def check(self, problem: Any) -> None:
        """Raise :class:`~csm.InputError` unless ``problem`` supports this oracle."""
        if not callable(getattr(problem, "gradient", None)):
            raise InputError(f"`problem` must have a batched .gradient method, got "
                             f"{type(problem).__name__}")
        if self.batch_size is None:
            return
        m = getattr(problem, "n_samples", None)
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise InputError(f"`batch_size` needs a finite-sum problem (an integer `n_samples`); "
                             f"{type(problem).__name__} has n_samples = {m!r}")
        if self.batch_size > m:
            raise InputError(f"`batch_size` must be at most problem.n_samples = {m}, got "
                             f"{self.batch_size}")
        lg = getattr(problem, "loss_and_gradient", None)
        try:
            ok = callable(lg) and "sample_weights" in inspect.signature(lg).parameters
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"`batch_size` needs problem.loss_and_gradient(theta, "
                             f"sample_weights=W); {type(problem).__name__} does not accept "
                             f"`sample_weights`")

    def weights(self, rng: np.random.Generator, B: int, m: int) -> np.ndarray:
        """Mini-batch weights ``(B, m)``: ``1/b`` per draw of index ``i`` in run ``b``'s batch."""
        b = int(self.batch_size)  # type: ignore[arg-type]
        W = np.zeros((B, m))
        if self.replace:
            idx = rng.integers(0, m, size=(B, b))
            flat = (idx + m * np.arange(B)[:, None]).ravel()
            W.ravel()[:] = np.bincount(flat, minlength=B * m) / b
        elif b == m:
            W.fill(1.0 / m)
        else:
            idx = np.argpartition(rng.random((B, m)), b - 1, axis=1)[:, :b]
            np.put_along_axis(W, idx, 1.0 / b, axis=1)
        return W

    def sample(self, problem: Any, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One draw of ``G_hat(theta_b)`` for every row of ``X (B, d)``, independent per row."""
        if self.batch_size is None:
            G = np.asarray(problem.gradient(X), dtype=float)
        else:
            W = self.weights(rng, X.shape[0], int(problem.n_samples))
            G = np.asarray(problem.loss_and_gradient(X, sample_weights=W)[1], dtype=float)
        if G.shape != X.shape:
            raise ShapeError(f"the stochastic gradient must have shape {X.shape}, got {G.shape}")
        if self.noise:
            G = G + self.noise * rng.standard_normal(X.shape)
        return G


def sgd_steps(problem: Any, X: Any, step: Any, oracle: StochasticGradient, n_steps: int,
              rng: np.random.Generator, *, start: int = 0, diverge_norm: float = 1e8
              ) -> tuple[np.ndarray, np.ndarray]:
    """``n_steps`` SGD steps from every row of ``X`` (vectorised over the rows).

    Step ``j`` uses ``gamma_{start + j}``.  A row whose iterate or stochastic gradient becomes
    non-finite or leaves the ball ``|theta| <= diverge_norm`` is frozen there.  Returns
    ``(theta, diverged_at)``: the last iterates ``(B, d)`` and, per row, the step at which it
    diverged (``-1``: never).
    """
    n_steps = positive_int(n_steps, "n_steps", minimum=0)
    gamma = step_sizes(step, start + n_steps)
    theta = np.array(X, dtype=float, copy=True)
    B = theta.shape[0]
    div = np.full(B, -1, dtype=np.int64)
    live = np.arange(B)
    with np.errstate(all="ignore"):
        for j in range(n_steps):
            if not live.size:
                break
            Y = theta[live]
            G = oracle.sample(problem, Y, rng)
            Y = Y - gamma(start + j) * G
            yn = np.sqrt(np.einsum("ij,ij->i", Y, Y))
            bad = ~np.isfinite(yn) | (yn > diverge_norm)
            theta[live[~bad]] = Y[~bad]
            div[live[bad]] = start + j + 1
            live = live[~bad]
    return theta, div


class SGDMap:
    """The random map ``theta -> theta - gamma_k G_hat_k(theta)`` of SGD (docs/theory.md §9).

    Parameters
    ----------
    problem : Problem
        Any problem with a batched ``gradient`` (mini-batches: ``n_samples`` and
        ``loss_and_gradient(theta, sample_weights=W)``).
    step : float or schedule
        ``gamma > 0`` or ``k -> gamma_k`` (:mod:`csm.schedules`).
    oracle : StochasticGradient, optional
        The randomness; or give ``batch_size`` / ``noise`` / ``replace`` directly.
    seed : int or numpy.random.Generator, optional
        Source of the draws (each call advances it).

    ``sgd(X, k)`` is one step at step index ``k`` for every row of ``X`` (shape ``(B, d)`` or
    ``(d,)``), so ``csm.orbits.trajectories(sgd, X, n, nonautonomous=True)`` records SGD paths.

    Examples
    --------
    >>> import csm
    >>> from csm.stochastic import SGDMap
    >>> p = csm.get_problem("phase_retrieval", n=4, m=32, loss="l2")
    >>> sgd = SGDMap(p, 0.05, batch_size=4, seed=0)
    >>> sgd.run(p.sample(0, 3), 500).shape
    (3, 4)
    """

    def __init__(self, problem: Any, step: Any, oracle: StochasticGradient | None = None, *,
                 batch_size: int | None = None, noise: float = 0.0, replace: bool = False,
                 seed: Any = None) -> None:
        if oracle is None:
            oracle = StochasticGradient(batch_size, noise, replace)
        elif not isinstance(oracle, StochasticGradient):
            raise InputError(f"`oracle` must be a StochasticGradient, got {type(oracle).__name__}")
        oracle.check(problem)
        if not callable(step):
            step = positive_float(step, "step")
        self.problem, self.step, self.oracle = problem, step, oracle
        self.dim = int(problem.dim)
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"<SGDMap {self.oracle.describe()} on {getattr(self.problem, 'name', self.problem)!r}>"

    def _batch(self, X: Any) -> tuple[np.ndarray, bool]:
        from ._validation import as_batch

        return as_batch(X, self.dim, name="theta")

    def __call__(self, X: Any, k: int = 0) -> np.ndarray:
        Y, single = self._batch(X)
        G = self.oracle.sample(self.problem, Y, self.rng)
        out = Y - step_sizes(self.step, k + 1)(int(k)) * G
        return out[0] if single else out

    def run(self, X: Any, n_steps: int, *, start: int = 0, diverge_norm: float = math.inf
            ) -> np.ndarray:
        """``n_steps`` steps from every row of ``X`` (steps ``start, start + 1, ...``)."""
        Y, single = self._batch(X)
        out, _ = sgd_steps(self.problem, Y, self.step, self.oracle, n_steps, self.rng,
                           start=start, diverge_norm=diverge_norm)
        return out[0] if single else out

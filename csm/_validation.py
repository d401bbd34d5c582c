"""Small input-validation helpers shared by the core (private)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InputError, NonFiniteError, ShapeError


def _real_array(x: Any, name: str, what: str, keep_float32: bool = False) -> np.ndarray:
    """``x`` as a float64 array (float32 kept as it is with ``keep_float32``); complex or
    non-numeric input is an :class:`InputError`."""
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` must be a real {what}, got {type(x).__name__}: {exc}") from None
    if raw.dtype.kind == "c":
        raise InputError(f"`{name}` must be a real {what}, got complex values (dtype {raw.dtype})")
    try:
        return raw.astype(np.float32 if keep_float32 and raw.dtype == np.float32 else float,
                          copy=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` must be a real {what}, got {type(x).__name__} of dtype "
                         f"{raw.dtype}: {exc}") from None


def as_batch(x: Any, dim: int | None = None, name: str = "x", keep_float32: bool = False
             ) -> tuple[np.ndarray, bool]:
    """Return ``(X, single)`` with ``X`` of shape ``(B, d)`` (float64; float32 input stays
    float32 with ``keep_float32``).

    ``single`` is True when ``x`` was one point of shape ``(d,)``.
    """
    arr = _real_array(x, name, "array", keep_float32)
    if arr.ndim == 1:
        single = True
        arr = arr[None, :]
    elif arr.ndim == 2:
        single = False
    else:
        raise ShapeError(
            f"`{name}` must have shape (d,) or (batch, d), got shape {arr.shape}"
        )
    if dim is not None and arr.shape[1] != dim:
        raise ShapeError(
            f"`{name}` must have last dimension {dim}, got shape {np.asarray(x).shape}"
        )
    return arr, single


def as_batch_pair(x: Any, v: Any, dim: int | None = None, names: tuple[str, str] = ("x", "v"),
                  keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """Rowwise pairs ``(X, V)`` of shape ``(B, d)`` for products such as ``Dg(X_b) V_b``.

    A single point or vector ``(d,)`` is broadcast against a batch of the other; the flag is
    True when both were single.  With ``keep_float32``, float32 ``x`` stays float32 and ``v``
    takes its dtype.
    """
    X, xs = as_batch(x, dim, name=names[0], keep_float32=keep_float32)
    V, vs = as_batch(v, X.shape[1], name=names[1], keep_float32=keep_float32)
    V = V.astype(X.dtype, copy=False)
    if X.shape[0] == 1 and V.shape[0] > 1:
        X = np.broadcast_to(X, V.shape)
    elif V.shape[0] == 1 and X.shape[0] > 1:
        V = np.broadcast_to(V, X.shape)
    elif X.shape[0] != V.shape[0]:
        raise ShapeError(
            f"`{names[0]}` and `{names[1]}` batch sizes differ: {X.shape} vs {V.shape}"
        )
    return np.ascontiguousarray(X), np.ascontiguousarray(V), xs and vs


def as_point(x: Any, dim: int | None = None, name: str = "x") -> np.ndarray:
    """Return ``x`` as a finite float vector of shape ``(d,)``."""
    arr = _real_array(x, name, "vector")
    if arr.ndim != 1:
        raise ShapeError(f"`{name}` must be 1-dimensional, got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise ShapeError(f"`{name}` must have shape ({dim},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"`{name}` contains NaN or infinity: {arr}")
    return arr


def check_finite(values: np.ndarray, what: str, points: np.ndarray | None = None) -> np.ndarray:
    """Raise :class:`NonFiniteError` if ``values`` has NaN/inf; name the first bad point."""
    bad = ~np.isfinite(values)
    if bad.any():
        msg = f"{what} returned NaN or infinity"
        if points is not None and values.ndim >= 1 and points.ndim == 2:
            rows = np.nonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0]
            if rows.size:
                msg += f" at {rows.size} point(s), first at {points[rows[0]]!r}"
        raise NonFiniteError(msg)
    return values


def positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Validate a positive finite real number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a positive real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        accepted = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise InputError(f"`{name}` must be {accepted}, got {value!r}")
    return v


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Validate an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"`{name}` must be an integer >= {minimum}, got {value}")
    return int(value)


def as_rng(rng: Any = None, seed: Any = None) -> np.random.Generator:
    """The one helper for randomness: a Generator from ``rng`` or ``seed``.

    ``rng`` may be a Generator (used as is), an int or SeedSequence (seeded), or None
    (then ``seed`` is used; None for both gives a fixed default seed 0 so results repeat).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    src = rng if rng is not None else seed
    if src is None:
        src = 0
    try:
        return np.random.default_rng(src)
    except (TypeError, ValueError):
        raise InputError(
            f"`rng` must be a numpy Generator, an int seed or a SeedSequence, got {src!r}"
        ) from None

"""Optional accelerators and array backends for plugin kernels (docs/plugin-authoring.md).

Two things a plugin with its own fast kernels needs, in one place:

* :func:`optional_kernel` -- import the plugin's compiled (numba) kernel module when it can be
  imported and ``CSM_DISABLE_NUMBA`` is unset, empty or ``0``; ``None`` otherwise (the NumPy
  code stays the reference path);
* :func:`array_namespace` and :func:`xp_batch` -- accept array-API arrays that are not NumPy
  (torch tensors on any device, CuPy, array_api_strict; through the optional package
  ``array-api-compat``) so the same kernels run on a GPU, with the validation
  :meth:`csm.ProblemBase.loss` applies to NumPy input.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from .errors import InputError, NonFiniteError, ShapeError

__all__ = ["optional_kernel", "numba_disabled", "array_namespace", "device", "xp_batch",
           "xp_pair"]

_PLAIN_TYPES = (np.ndarray, np.generic, list, tuple, int, float, complex, bool)


def numba_disabled() -> bool:
    """Whether ``CSM_DISABLE_NUMBA`` asks for the NumPy reference paths only."""
    return os.environ.get("CSM_DISABLE_NUMBA", "").strip() not in ("", "0")


def optional_kernel(module: str) -> ModuleType | None:
    """The compiled kernel module ``module`` (absolute name), or ``None``.

    ``None`` when ``CSM_DISABLE_NUMBA`` is set (non-empty, not ``0``) or when the import fails
    for any reason (numba missing, or built for another NumPy): callers then use their NumPy
    path, which is the tested reference.
    """
    if numba_disabled():
        return None
    try:
        return importlib.import_module(module)
    except Exception:  # numba missing or broken: the NumPy path
        return None


def array_namespace(*arrays: Any, names: Sequence[str] = (), allow_numpy: bool = False) -> Any:
    """The array-API namespace of the arguments when one is a non-NumPy array, else ``None``.

    ``None`` for NumPy arrays, Python scalars and sequences (and ``None`` entries), and also
    when ``array-api-compat`` is not installed (every input then takes the NumPy path).
    Raises :class:`~csm.InputError`, naming ``names``, when the arrays belong to different
    libraries or devices (e.g. a torch tensor and a NumPy array); with ``allow_numpy`` NumPy
    arrays beside non-NumPy ones are left out (the caller converts them).
    """
    if all(a is None or isinstance(a, _PLAIN_TYPES) for a in arrays):
        return None
    try:
        import array_api_compat as aac
    except ImportError:
        return None
    xs = [a for a in arrays if a is not None]
    if not any(aac.is_array_api_obj(a) and not aac.is_numpy_array(a) for a in xs):
        return None
    if allow_numpy:
        xs = [a for a in xs if aac.is_array_api_obj(a) and not aac.is_numpy_array(a)]
    try:
        return aac.array_namespace(*xs)
    except TypeError as exc:
        what = ", ".join(f"`{n}`" for n in names) or "the arrays"
        raise InputError(f"{what} must be arrays of one kind (NumPy, or one array-API library "
                         f"on one device), got {', '.join(type(a).__name__ for a in arrays)}: "
                         f"{exc}") from None


def device(a: Any) -> Any:
    """The device of an array-API array (``array_api_compat.device``)."""
    import array_api_compat as aac

    return aac.device(a)


def xp_batch(xp: Any, theta: Any, dim: int, name: str = "theta") -> tuple[Any, bool]:
    """``(X (B, dim), single)`` of an array-API array, validated as NumPy input is.

    Shape ``(dim,)`` or ``(B, dim)``, a real floating dtype (computed in its own dtype), finite
    entries (one boolean read from the device).  Raises :class:`~csm.ShapeError`,
    :class:`~csm.InputError` or :class:`~csm.NonFiniteError` naming ``name``.
    """
    shape = tuple(theta.shape)
    if len(shape) not in (1, 2) or shape[-1] != dim:
        raise ShapeError(f"`{name}` must have shape ({dim},) or (batch, {dim}), got shape {shape}")
    if not xp.isdtype(theta.dtype, "real floating"):
        raise InputError(f"`{name}` must be a real floating array (float32 or float64; computed "
                         f"in its own dtype), got dtype {theta.dtype}")
    single = len(shape) == 1
    X = xp.reshape(theta, (1, dim)) if single else theta
    ok = xp.all(xp.isfinite(X), axis=1)
    if not bool(xp.all(ok)):
        bad = int(xp.argmax(xp.astype(~ok, xp.int8)))
        raise NonFiniteError(f"`{name}` contains NaN or infinity (first bad row: {bad})")
    return X, single


def xp_pair(xp: Any, theta: Any, v: Any, dim: int, names: tuple[str, str] = ("theta", "v")
            ) -> tuple[Any, Any, bool]:
    """Rowwise pairs ``(X, V)`` of shape ``(B, dim)`` for products such as ``H(X_b) V_b``.

    Each validated by :func:`xp_batch`; a single point or vector is broadcast against a batch of
    the other.  The flag is True when both were single.  Raises :class:`~csm.ShapeError` when
    the batch sizes differ.
    """
    X, xs = xp_batch(xp, theta, dim, names[0])
    V, vs = xp_batch(xp, v, dim, names[1])
    if X.shape[0] == 1 and V.shape[0] > 1:
        X = xp.broadcast_to(X, V.shape)
    elif V.shape[0] == 1 and X.shape[0] > 1:
        V = xp.broadcast_to(V, X.shape)
    elif X.shape[0] != V.shape[0]:
        raise ShapeError(f"`{names[0]}` and `{names[1]}` batch sizes differ: {tuple(X.shape)} vs "
                         f"{tuple(V.shape)}")
    return X, V, xs and vs

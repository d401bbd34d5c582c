"""Training data of the ``network`` plugin: given arrays, ``.npz`` files and generators.

The loss of paper §3 / §3.3 is the empirical squared loss on finite data
``(x_i, y_i)_{i=1..m}``.  :func:`resolve_data` turns the constructor's ``inputs``, ``targets``,
``data`` and ``target`` parameters into validated arrays ``X (m, d_in)``, ``Y (m, d_out)``:

* ``inputs=X, targets=Y`` -- arrays (a 1-D array is one column when ``d_in`` or ``d_out`` is 1);
* ``data="file.npz"`` -- a NumPy archive with arrays ``inputs`` and ``targets``;
* ``data="grid:m"`` -- ``m`` equispaced points of ``[0, 1]`` (``d_in = d_out = 1``) with the target
  ``target="affine:rho,s"`` (``f(x) = rho x + s``, the paper's affine targets; default
  ``"affine:1,0"``) or ``target="poly:c0,c1,..."`` (``f(x) = sum_k c_k x^k``);
* ``data="teacher:m,seed"`` -- ``x_i ~ N(0, I)`` and ``y_i = N_teacher(x_i)`` for a random teacher
  network of the same architecture (weights ``N(0, 1/fan_in)``, biases ``N(0, 1/fan_in)``); the
  teacher is a global minimum with loss 0;
* ``data="orthogonal:m[,seed]"`` -- ``m <= d_in`` orthonormal inputs (rows of a Haar-random
  orthogonal matrix) and standard Gaussian targets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import csm

__all__ = ["resolve_data", "DataSpec"]


class DataSpec:
    """Resolved data: ``X (m, d_in)``, ``Y (m, d_out)``, a description and the generator's facts."""

    def __init__(self, X: np.ndarray, Y: np.ndarray, source: str, teacher_layers: Any = None):
        self.X, self.Y, self.source, self.teacher_layers = X, Y, source, teacher_layers


def _err(name: str, value: Any, accepted: str) -> csm.ParameterError:
    return csm.ParameterError(f"network: parameter `{name}` {accepted}, got {value!r}")


def _as_matrix(a: Any, name: str, cols: int) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise _err(name, a, "must be a real array") from None
    if arr.ndim == 1 and cols == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != cols or arr.shape[0] < 1:
        raise _err(name, f"array of shape {arr.shape}",
                   f"must have shape (m, {cols}) with m >= 1 (widths say {cols} "
                   f"{'inputs' if name == 'inputs' else 'outputs'})")
    if not np.all(np.isfinite(arr)):
        bad = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
        raise _err(name, f"array with NaN or infinity (first bad row {bad})",
                   "must be finite")
    return np.ascontiguousarray(arr)


def _ints(txt: str, name: str, value: str, n_min: int, n_max: int) -> list[int]:
    parts = txt.split(",") if txt else []
    if not (n_min <= len(parts) <= n_max) or not all(p.strip().isdigit() for p in parts):
        raise _err(name, value, f"must be '{value.split(':')[0]}:m' followed by at most "
                                f"{n_max - 1} integer seed(s) (non-negative integers)")
    return [int(p) for p in parts]


def _target_function(target: Any):
    if target is None:
        target = "affine:1,0"
    if not isinstance(target, str) or ":" not in target:
        raise _err("target", target, "must be 'affine:rho,s' or 'poly:c0,c1,...'")
    kind, _, rest = target.partition(":")
    try:
        nums = [float(v) for v in rest.split(",")]
    except ValueError:
        raise _err("target", target, "must list numbers: 'affine:rho,s' or 'poly:c0,c1,...'") from None
    if not all(math.isfinite(v) for v in nums):
        raise _err("target", target, "must have finite coefficients")
    if kind == "affine":
        if len(nums) != 2:
            raise _err("target", target, "'affine:rho,s' takes exactly two numbers (slope, intercept)")
        rho, s = nums
        return lambda x: rho * x + s
    if kind == "poly":
        coef = np.asarray(nums)
        return lambda x: np.polynomial.polynomial.polyval(x, coef)
    raise _err("target", target, "must be 'affine:rho,s' or 'poly:c0,c1,...'")


def teacher_layers(widths: tuple[int, ...], rng: np.random.Generator
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A random teacher: ``W_l, b_l ~ N(0, 1/fan_in)`` entrywise."""
    out = []
    for a, b in zip(widths[:-1], widths[1:]):
        out.append((rng.standard_normal((b, a)) / math.sqrt(a), rng.standard_normal(b) / math.sqrt(a)))
    return out


def resolve_data(widths: tuple[int, ...], inputs: Any, targets: Any, data: Any, target: Any,
                 forward: Any) -> DataSpec:
    """Validate the data parameters (see the module docstring).

    ``forward(layers, X) -> Y`` evaluates a network given as ``[(W, b), ...]`` (used for the
    teacher).  Raises :class:`csm.ParameterError` naming the parameter.
    """
    d_in, d_out = widths[0], widths[-1]
    if data is not None and (inputs is not None or targets is not None):
        raise _err("data", data, "cannot be combined with `inputs`/`targets` (give one or the other)")
    if target is not None and not (isinstance(data, str) and data.startswith("grid:")):
        raise _err("target", target, "is only used with data='grid:m'")
    if data is None:
        if inputs is None or targets is None:
            raise csm.ParameterError(
                "network: give the training data: `inputs` and `targets` arrays, or `data` "
                "('file.npz', 'grid:m', 'teacher:m,seed' or 'orthogonal:m')")
        X = _as_matrix(inputs, "inputs", d_in)
        Y = _as_matrix(targets, "targets", d_out)
        if X.shape[0] != Y.shape[0]:
            raise csm.ParameterError(
                f"network: parameters `inputs` and `targets` must have the same number of rows "
                f"(samples), got {X.shape[0]} inputs and {Y.shape[0]} targets")
        return DataSpec(X, Y, f"arrays (m={X.shape[0]})")
    if not isinstance(data, (str, Path)):
        raise _err("data", data, "must be a string: 'file.npz', 'grid:m', 'teacher:m,seed' or "
                                 "'orthogonal:m'")
    s = str(data)
    if s.startswith("grid:"):
        (m,) = _ints(s[5:], "data", s, 1, 1)
        if m < 1 or d_in != 1 or d_out != 1:
            raise _err("data", s, f"'grid:m' needs m >= 1 and widths with one input and one output "
                                  f"(widths = {widths})")
        x = np.linspace(0.0, 1.0, m) if m > 1 else np.array([0.5])
        f = _target_function(target)
        return DataSpec(x[:, None], np.asarray(f(x), dtype=float)[:, None],
                        f"grid:{m} on [0, 1], target {target or 'affine:1,0'}")
    if s.startswith("teacher:"):
        vals = _ints(s[8:], "data", s, 1, 2)
        m, seed = vals[0], (vals[1] if len(vals) > 1 else 0)
        if m < 1:
            raise _err("data", s, "'teacher:m,seed' needs m >= 1")
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((m, d_in))
        layers = teacher_layers(widths, rng)
        return DataSpec(X, np.ascontiguousarray(forward(layers, X)), f"teacher:{m},{seed}", layers)
    if s.startswith("orthogonal:"):
        vals = _ints(s[11:], "data", s, 1, 2)
        m, seed = vals[0], (vals[1] if len(vals) > 1 else 0)
        if not 1 <= m <= d_in:
            raise _err("data", s, f"'orthogonal:m' needs 1 <= m <= d_in = {d_in}")
        rng = np.random.default_rng(seed)
        Q, R = np.linalg.qr(rng.standard_normal((d_in, d_in)))
        Q = Q * np.sign(np.diag(R))
        return DataSpec(np.ascontiguousarray(Q[:m]), rng.standard_normal((m, d_out)),
                        f"orthogonal:{m},{seed}")
    path = Path(s)
    if path.suffix != ".npz":
        raise _err("data", s, "must be 'file.npz', 'grid:m', 'teacher:m,seed' or 'orthogonal:m'")
    if not path.is_file():
        raise _err("data", s, "names no existing .npz file")
    with np.load(path) as z:
        missing = [k for k in ("inputs", "targets") if k not in z.files]
        if missing:
            raise _err("data", s, f"must hold arrays 'inputs' and 'targets' (missing {missing}; "
                                  f"found {z.files})")
        X = _as_matrix(z["inputs"], "inputs", d_in)
        Y = _as_matrix(z["targets"], "targets", d_out)
    if X.shape[0] != Y.shape[0]:
        raise csm.ParameterError(
            f"network: parameter `data` ({s}): arrays `inputs` and `targets` must have the same "
            f"number of rows, got {X.shape[0]} and {Y.shape[0]}")
    return DataSpec(X, Y, f"file {path.name} (m={X.shape[0]})")

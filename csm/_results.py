"""One home for result objects: JSON conversion and the shared ``Result`` behaviour.

Every public result type of csm (manifolds, reports of the measure checks, stable-set
estimates, escape times, verifications) says whether it worked in the same words as scipy's
``OptimizeResult``: ``success`` (bool) and ``message`` (str), with counters such as ``nit``
where they apply, and converts itself to JSON-safe data with ``to_dict``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["Result", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, dataclasses, paths and tuples to JSON-safe values.

    NaN and infinities become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, complex):
        return {"real": to_jsonable(obj.real), "imag": to_jsonable(obj.imag)}
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, Path):
        return str(obj)
    return obj


class Result:
    """Mixin for the frozen result dataclasses.

    Subclasses are dataclasses; they define ``success`` and ``message`` (as fields or
    properties).  ``to_dict`` serialises every dataclass field except those named in
    ``_NOT_SERIALISED`` (large per-sample arrays, internal frames) and those whose name starts
    with an underscore, and always adds ``success`` and ``message``.
    """

    _NOT_SERIALISED: tuple[str, ...] = ()

    @property
    def success(self) -> bool:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def message(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary of the result (see the class docstring for what is left out)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if not f.name.startswith("_") and f.name not in self._NOT_SERIALISED
        }
        out["success"] = bool(self.success)
        out["message"] = str(self.message)
        if "passed" not in out and isinstance(getattr(type(self), "passed", None), property):
            out["passed"] = bool(getattr(self, "passed"))  # the older name of `success`
        return to_jsonable(out)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (returns the path)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

"""Validation of problem parameters, for plugins (raises :class:`csm.ParameterError`).

Every message names the owner (problem), the parameter, the value received and what is
accepted (docs/architecture.md, *Vocabulary*)::

    n = csm.params.integer(n, "n", 2, owner="phase_retrieval")
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import ParameterError

__all__ = ["integer", "choice", "positive"]


def _who(owner: str) -> str:
    return f"{owner}: " if owner else ""


def integer(value: Any, name: str, minimum: int, *, owner: str = "") -> int:
    """``value`` as an ``int >= minimum`` (bools and floats are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(
            f"{_who(owner)}parameter `{name}` must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def choice(value: Any, name: str, accepted: Sequence[str], *, owner: str = "") -> str:
    """``value`` as one of the strings in ``accepted``."""
    if not isinstance(value, str) or value not in accepted:
        raise ParameterError(
            f"{_who(owner)}parameter `{name}` must be one of {list(accepted)}, got {value!r}"
        )
    return value


def positive(value: Any, name: str, *, owner: str = "") -> float:
    """``value`` as a finite float ``> 0``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not np.isfinite(v) or v <= 0:
        raise ParameterError(f"{_who(owner)}`{name}` must be a finite number > 0, got {value!r}")
    return v

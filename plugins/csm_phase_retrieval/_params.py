"""Parameter validation for the phase-retrieval problem (private).

Every check raises :class:`csm.ParameterError` whose message names the parameter, the value
received and what is accepted (DESIGN.md, *Conventions*).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import csm

PROBLEM = "phase_retrieval"

#: Accepted values of the ``loss`` parameter.
LOSSES = ("l2", "l1", "population")


def integer(value: Any, name: str, minimum: int) -> int:
    """``value`` as an ``int >= minimum`` (bools and floats are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise csm.ParameterError(
            f"{PROBLEM}: parameter `{name}` must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def choice(value: Any, name: str, accepted: tuple[str, ...]) -> str:
    """``value`` as one of the strings in ``accepted``."""
    if not isinstance(value, str) or value not in accepted:
        raise csm.ParameterError(
            f"{PROBLEM}: parameter `{name}` must be one of {list(accepted)}, got {value!r}"
        )
    return value


def positive(value: Any, name: str) -> float:
    """``value`` as a finite float ``> 0``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not np.isfinite(v) or v <= 0:
        raise csm.ParameterError(
            f"{PROBLEM}: `{name}` must be a finite number > 0, got {value!r}"
        )
    return v

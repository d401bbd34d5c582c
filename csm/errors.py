"""The csm exception tree.

Every error csm raises on purpose is a :class:`CsmError`.  Errors caused by the caller's
input are also :class:`ValueError` (so ``except ValueError`` keeps working), and their
messages name the argument, the offending value and what would be accepted.
"""

from __future__ import annotations

__all__ = [
    "CsmError",
    "InputError",
    "ShapeError",
    "NonFiniteError",
    "NotFixedPointError",
    "NotDiagonalizableError",
    "NoUnstableDirectionError",
    "ContractionError",
    "NoContractionError",
    "ConvergenceError",
    "UnknownProblemError",
    "ParameterError",
    "PluginError",
    "CheckpointMismatchError",
]


class CsmError(Exception):
    """Base class of every error raised deliberately by csm."""


class InputError(CsmError, ValueError):
    """An argument has a value csm cannot accept."""


class ShapeError(InputError):
    """An array argument has the wrong shape (message gives the shape received and expected)."""


class NonFiniteError(InputError):
    """A map, gradient or loss returned NaN or infinity (message says where)."""


class NotFixedPointError(InputError):
    """The point given as ``fixed_point`` is not fixed: ``||g(x*) - x*||`` is reported."""


class NotDiagonalizableError(InputError):
    """The Jacobian violates Assumption 2.1: it is not (numerically) diagonalisable."""


class NoUnstableDirectionError(InputError):
    """The Jacobian has no eigenvalue of modulus > 1 (Assumption 2.1 fails)."""


class ContractionError(CsmError):
    """Base of the two ways the Lyapunov--Perron construction can fail (kept for ``except``)."""


class NoContractionError(ContractionError, InputError):
    """Bad input: no contraction for the requested ``radius`` (or for any radius).

    The message gives the contraction constant reached and a radius that would work.
    """


class ConvergenceError(ContractionError):
    """An iterative algorithm stopped before reaching its tolerance.

    Attributes
    ----------
    nit : int
        Iterations performed.
    residual : float
        The last increment or residual, in the algorithm's own norm.
    """

    def __init__(self, message: str, *, nit: int = 0, residual: float = float("nan")) -> None:
        super().__init__(message)
        self.nit = int(nit)
        self.residual = float(residual)


class UnknownProblemError(InputError, KeyError):
    """No registered problem has the requested name (message lists the known names)."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class ParameterError(InputError):
    """A problem or experiment parameter is unknown or has an invalid value."""


class PluginError(CsmError):
    """A plugin failed to import or returned something malformed."""


class CheckpointMismatchError(InputError):
    """A checkpoint directory was written by a run with different arguments."""

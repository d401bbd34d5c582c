"""Stable sets: where gradient descent from random initialisations converges (docs/theory.md §8).

=============  =======================================================================
``estimate``   :func:`estimate_stable_set`: batched runs, chunks, executors, checkpoints
``result``     :class:`StableSetEstimate`: counts, exact intervals, the honest headline
``escape``     :func:`escape_times`: leaving a ball from distance delta off the manifold
``checkpoint`` :class:`~csm.stable_sets.checkpoint.ChunkStore`: atomic chunk files
=============  =======================================================================

The iteration itself lives in :mod:`csm.orbits`, limit identification in :mod:`csm.identify`.
"""

from __future__ import annotations

from ..confidence import clopper_pearson
from ..identify import SADDLE_KINDS, UNDECIDED_KINDS
from ..orbits import CONVERGED, DIVERGED, UNCONVERGED
from .escape import EscapeTimes, escape_times
from .estimate import estimate_stable_set
from .result import StableSetEstimate

__all__ = [
    "estimate_stable_set",
    "StableSetEstimate",
    "escape_times",
    "EscapeTimes",
    "clopper_pearson",
    "SADDLE_KINDS",
    "UNDECIDED_KINDS",
    "CONVERGED",
    "DIVERGED",
    "UNCONVERGED",
]

"""Parameter validation for the phase-retrieval problem (private): csm.params bound to this problem."""

from __future__ import annotations

from functools import partial

from csm import params

PROBLEM = "phase_retrieval"

#: Accepted values of the ``loss`` parameter.
LOSSES = ("l2", "l1", "population")

integer = partial(params.integer, owner=PROBLEM)
choice = partial(params.choice, owner=PROBLEM)
positive = partial(params.positive, owner=PROBLEM)

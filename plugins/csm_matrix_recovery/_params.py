"""Parameter validation for the matrix-recovery problem (private): csm.params bound to this problem."""

from __future__ import annotations

from functools import partial

from csm import params

PROBLEM = "matrix_recovery"

#: Accepted values of the ``loss`` parameter.
LOSSES = ("l2", "l1", "full")

integer = partial(params.integer, owner=PROBLEM)
choice = partial(params.choice, owner=PROBLEM)
positive = partial(params.positive, owner=PROBLEM)

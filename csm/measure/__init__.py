"""Measure checks: Lemma 2.4, Proposition 2.5, Corollary 2.3 as numbers (docs/theory.md §1.4--§1.6).

The theory says *null*: the Jacobian of ``g`` is singular only on a null set (hypothesis of
Lemma 2.4), preimages of null sets are null (its conclusion), the step sizes that make the
gradient-descent map degenerate form a null set (Proposition 2.5 / Lemma 4.4), and the stable
set of a saddle is null (Corollary 2.3).  A sample never hits a null set, so "no hit" proves
nothing.  Each check here therefore measures a *rate*: how fast the probability of coming
within ``delta`` of the bad set goes to zero as ``delta`` shrinks.  A null set of codimension
``c`` gives ``P ~ C delta^c`` (a straight line of slope ``c > 0`` in log-log); a bad set of
positive measure gives a plateau (slope 0).  The figures would have come out differently had
the hypothesis failed, and the negative controls in ``tests/test_measure_*.py`` show that they
do.

=================  ========================================================================
``tailfit``        samplers, the small-value profile ``P(v <= delta)``, its tail slope,
                   quantiles and the decay verdict shared by the checks
``nondegenerate``  :func:`check_jacobian_nondegenerate` (hypothesis of Lemma 2.4), with the
                   finite-difference error model
``preimage``       :func:`check_preimage_null` (conclusion of Lemma 2.4 / Proposition 2.5)
``bad_steps``      :func:`bad_step_sizes` (Proposition 2.5 / Lemma 4.4)
``escape``         :func:`escape_rate`, :func:`manifold_stay_fraction` (Corollary 2.3,
                   Theorem 2.2)
=================  ========================================================================

Samplers are callables ``sampler(rng, n) -> ndarray (n, d)`` drawing from an absolutely
continuous law, or Problems (their ``sample``); see :mod:`csm.measure.tailfit`.

Reports
-------
Every function returns a frozen dataclass (a :class:`csm._results.Result`) with the raw
figures, a fitted rate with its uncertainty (slope of a log-log least-squares fit, standard
error from a multinomial bootstrap of the samples), a ``passed`` flag (also ``success``) whose
rule is stated in the function's docstring, a one-line ``reason``, a one-sentence ``message``
(the statement probed, the verdict and the reason), and ``to_dict()`` (JSON-safe; per-sample
arrays are left out of it and available as attributes and through ``to_npz(path)``).  All
randomness comes from ``rng`` (a Generator or a seed; the default is seed 0), so the same seed
gives the same report.
"""

from __future__ import annotations

from ..confidence import clopper_pearson
from .bad_steps import ATOM_WIDTH, BadStepReport, bad_step_sizes
from .escape import EscapeRateReport, ManifoldStayReport, escape_rate, manifold_stay_fraction
from .nondegenerate import (
    FD_RESOLUTION_QUANTILE,
    FD_SAFETY,
    NondegeneracyReport,
    check_jacobian_nondegenerate,
)
from .preimage import PreimageReport, check_preimage_null
from .tailfit import CONFIDENCE, ZERO_MIN, ZERO_TOL, SmallValueProfile, as_sampler

__all__ = [
    "check_jacobian_nondegenerate",
    "check_preimage_null",
    "bad_step_sizes",
    "escape_rate",
    "manifold_stay_fraction",
    "as_sampler",
    "clopper_pearson",
    "SmallValueProfile",
    "NondegeneracyReport",
    "PreimageReport",
    "BadStepReport",
    "EscapeRateReport",
    "ManifoldStayReport",
    "ZERO_TOL",
    "ZERO_MIN",
    "ATOM_WIDTH",
    "FD_SAFETY",
    "FD_RESOLUTION_QUANTILE",
    "CONFIDENCE",
]

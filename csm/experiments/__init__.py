"""Reproducible experiments: what they are, building blocks for writing them, and the report.

* :mod:`csm.experiments.types` -- :class:`Experiment`, :class:`ExperimentConfig`,
  :class:`ExperimentResult`, :class:`Claim` (also available as ``csm.Experiment`` etc.);
* :mod:`csm.experiments.kit` -- blocks that turn csm's instruments into claims, tables and
  figures for any problem (:func:`critical_point_claims`, :func:`stable_set_sweep`,
  :func:`manifold_slice`); the built-in plugins' ``experiments.py`` are a few lines of glue
  on top of them;
* :mod:`csm.experiments.report` -- ``csm reproduce``: :func:`run_experiments` runs every
  experiment the plugins contribute (``csm_experiments`` hook, :mod:`csm.plugin.spec`) and
  :func:`write_report` writes ``report.md`` and ``results.json``.
"""

from __future__ import annotations

from .kit import critical_point_claims, manifold_slice, stable_set_sweep
from .report import Report, run_experiments, write_report
from .types import Claim, Experiment, ExperimentConfig, ExperimentResult

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "ExperimentResult",
    "Claim",
    "critical_point_claims",
    "stable_set_sweep",
    "manifold_slice",
    "Report",
    "run_experiments",
    "write_report",
]

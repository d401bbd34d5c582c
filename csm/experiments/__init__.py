"""Reproducible experiments: what they are, building blocks for writing them, and the report.

* :mod:`csm.experiments.types` -- :class:`Experiment`, :class:`ExperimentConfig`,
  :class:`ExperimentResult`, :class:`Claim` (also available as ``csm.Experiment`` etc.);
* :mod:`csm.experiments.kit` -- blocks that turn csm's instruments into falsifiable claims,
  tables and figures for any problem (:func:`critical_point_claims` with an independent
  gradient and a loss-only curvature check, :func:`stable_set_sweep` with its
  :func:`positive_control`, :func:`manifold_claims` / :func:`manifold_slice`,
  :func:`heavy_ball_claims`); the built-in plugins' ``experiments.py`` are glue on top;
* :mod:`csm.experiments.report` -- ``csm reproduce``: :func:`run_experiments` runs every
  experiment the plugins contribute (``csm_experiments`` hook, :mod:`csm.plugin.spec`) and
  :func:`write_report` writes ``report.md`` and ``results.json`` (with provenance: versions,
  commit, command line, seeds, seconds per experiment).
"""

from __future__ import annotations

from .kit import (critical_point_claims, heavy_ball_claims, manifold_claims, manifold_slice,
                  positive_control, positive_control_figure, stable_set_sweep)
from .report import Report, provenance, run_experiments, write_report
from .types import Claim, Experiment, ExperimentConfig, ExperimentResult

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "ExperimentResult",
    "Claim",
    "critical_point_claims",
    "stable_set_sweep",
    "manifold_slice",
    "manifold_claims",
    "positive_control",
    "positive_control_figure",
    "heavy_ball_claims",
    "Report",
    "provenance",
    "run_experiments",
    "write_report",
]

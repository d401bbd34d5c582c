"""Test utilities: the plugin conformance suite and test cases with exactly known answers.

* :func:`check_problem` -- the checks every loss must pass; a plugin author calls it in one
  line from a test: ``csm.testing.check_problem(MyLoss())`` (:mod:`csm.testing.conformance`).
* :func:`conjugated_graph_map` -- a map on ``R^d`` whose center-stable manifold is a known
  graph (docs/theory.md §1.3, the analytic test cases), conjugated by a random
  well-conditioned matrix (:mod:`csm.testing.cases`).
* :class:`RotatedQuartic` -- a gradient-descent test problem of any dimension with a cheap
  Hessian-vector product, for the matrix-free path.
"""

from __future__ import annotations

from .cases import GraphTestCase, RotatedQuartic, conjugated_graph_map, random_orthogonal
from .conformance import ConformanceReport, check_problem

__all__ = [
    "check_problem",
    "ConformanceReport",
    "GraphTestCase",
    "conjugated_graph_map",
    "RotatedQuartic",
    "random_orthogonal",
]

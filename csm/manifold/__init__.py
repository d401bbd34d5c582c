"""Theorem 2.2: the center-stable Lipschitz manifold, built as in the proof.

Near a fixed point ``x*`` of ``g`` whose Jacobian ``A = Dg(x*)`` is diagonalisable with an
eigenvalue of modulus > 1 (Assumption 2.1; ``A`` may be singular), every orbit that stays in a
small ball lies on the graph of a Lipschitz map ``phi: E_cs -> E_u``.  The package computes that
graph with the construction of the proof (docs/theory.md, "Theorem 2.2, the construction"):

=====================  ===================================================================
``cutoff``             the bump ``eta`` and cutoff ``chi_eps`` of Lemma 6.1
``frames``             split coordinates ``z = (p, q)`` (dense eigen-coordinates or matrix-free)
``lipschitz``          the Lipschitz constant of ``r o chi_eps``: proved bound or adversarial search
``lyapunov_perron``    the Banach iteration of the Lyapunov--Perron operator (counters returned)
``construct``          radius, horizon: :func:`center_stable_manifold`
``result``             :class:`CenterStableManifold`
``verify``             :class:`ManifoldVerification`, the a-posteriori checks
=====================  ===================================================================
"""

from __future__ import annotations

from .construct import center_stable_manifold
from .cutoff import CUTOFF_GROWTH, CUTOFF_LIPSCHITZ, bump, bump_derivative
from .frames import DenseFrame, MatrixFreeFrame
from .lipschitz import LipschitzEstimate
from .lyapunov_perron import GraphSolve
from .result import CenterStableManifold
from .verify import ManifoldVerification

__all__ = [
    "center_stable_manifold",
    "CenterStableManifold",
    "ManifoldVerification",
    "GraphSolve",
    "LipschitzEstimate",
    "DenseFrame",
    "MatrixFreeFrame",
    "bump",
    "bump_derivative",
    "CUTOFF_LIPSCHITZ",
    "CUTOFF_GROWTH",
]

"""csm — center-stable manifold analysis of discrete dynamical systems.

Numerical instruments for the theory of *Gradient descent provably escapes saddle points in
the training of shallow ReLU networks* (Cheridito, Jentzen, Rossmannek): the center-stable
manifold of Theorem 2.2 for arbitrary maps (:func:`center_stable_manifold`), the measure
checks of Lemma 2.4 / Proposition 2.5, stable-set estimation, and plugins for the paper's
applications (``csm list``).  See ``docs/theory.md`` for the mathematics and ``docs/theory-to-code.md`` for the map.
"""

from __future__ import annotations

from .errors import (
    CheckpointMismatchError,
    ContractionError,
    ConvergenceError,
    CsmError,
    InputError,
    NonFiniteError,
    NotDiagonalizableError,
    NotFixedPointError,
    NoContractionError,
    NoUnstableDirectionError,
    ParameterError,
    PluginError,
    ShapeError,
    UnknownProblemError,
)
from .experiments.types import Claim, Experiment, ExperimentConfig, ExperimentResult
from .maps import GradientDescentMap, Map
from .plugin import hookimpl
from .plugin.manager import (
    get_problem,
    list_experiments,
    list_problems,
    plugin_manager,
    reset_plugin_manager,
)
from .problem import (
    KINDS,
    Classification,
    CriticalPoint,
    Problem,
    ProblemBase,
    ProblemFactory,
)

__version__ = "0.2.0"

_LAZY = {
    "split_spectrum": ".spectral",
    "SpectralSplit": ".spectral",
    "center_stable_manifold": ".manifold",
    "CenterStableManifold": ".manifold",
    "check_jacobian_nondegenerate": ".measure",
    "check_preimage_null": ".measure",
    "bad_step_sizes": ".measure",
    "escape_rate": ".measure",
    "manifold_stay_fraction": ".measure",
    "estimate_stable_set": ".stable_sets",
    "StableSetEstimate": ".stable_sets",
    "escape_times": ".stable_sets",
    "transition_graph": ".transitions",
    "StochasticGradient": ".stochastic",
    "SGDMap": ".stochastic",
}


_SUBMODULES = ("testing", "manifold", "spectral", "measure", "stable_sets",
               "transitions", "experiments", "plugin", "cli", "stochastic", "schedules",
               "orbits", "momentum", "identify", "small_init", "backends")


def __getattr__(name: str):  # PEP 562: keep `import csm` light
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name], __name__)
        return getattr(mod, name)
    raise AttributeError(f"module 'csm' has no attribute {name!r}")


__all__ = [
    "__version__",
    "CsmError", "InputError", "ShapeError", "NonFiniteError", "NotFixedPointError",
    "NotDiagonalizableError", "NoUnstableDirectionError", "ContractionError",
    "NoContractionError", "ConvergenceError",
    "UnknownProblemError", "ParameterError", "PluginError", "CheckpointMismatchError",
    "Map", "GradientDescentMap",
    "KINDS", "Problem", "ProblemBase", "CriticalPoint", "Classification", "ProblemFactory",
    "Experiment", "ExperimentConfig", "ExperimentResult", "Claim",
    "hookimpl", "plugin_manager", "reset_plugin_manager", "list_problems", "get_problem",
    "list_experiments",
    *_LAZY,
]

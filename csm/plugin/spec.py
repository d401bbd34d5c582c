"""The hook specifications: every hook a csm plugin may implement.  Few and stable.

A plugin implements a hook by defining a function with the hook's name, marked with
:data:`csm.plugin.hookimpl`.  No hook takes arguments; each returns a list (or tuple) of
objects csm collects from every plugin, in registration order.  csm calls the hooks only
through :class:`csm.plugin.manager.CsmPluginManager` (one typed method per hook).
``docs/plugin-authoring.md`` documents each hook with the signature shown here.
"""

from __future__ import annotations

from typing import Sequence

import pluggy

from ..experiments.types import Experiment
from ..problem import ProblemFactory
from . import NAME

__all__ = ["hookspec", "csm_problems", "csm_experiments"]

#: Marks the hook specifications below (plugins mark implementations with ``csm.hookimpl``).
hookspec = pluggy.HookspecMarker(NAME)


@hookspec
def csm_problems() -> Sequence[ProblemFactory]:  # type: ignore[empty-body]
    """Return the problems this plugin offers.

    Returns
    -------
    list of ProblemFactory
        Each with a unique ``name``, a one-line ``description`` and a ``constructor``
        taking keyword parameters with validated defaults (``csm.get_problem(name, **params)``
        and ``csm check NAME -p key=value`` call it).  A name already offered by an earlier
        plugin is ignored and reported.
    """


@hookspec
def csm_experiments() -> Sequence[Experiment]:  # type: ignore[empty-body]
    """Return the reproducible experiments this plugin contributes to ``csm reproduce``.

    Returns
    -------
    list of Experiment
        Each with ``name``, the paper ``reference`` it checks, a ``description`` and
        ``run(config: ExperimentConfig) -> ExperimentResult``.
    """

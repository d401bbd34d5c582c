"""Writing a csm plugin: a loss of your own, analysed by every csm instrument.

csm finds losses ("problems") and reproducible experiments through `pluggy
<https://pluggy.readthedocs.io>`_ plugins.  The built-in plugins (``plugins/csm_relu``,
``csm_leaky_relu``, ``csm_phase_retrieval``, ``csm_matrix_recovery``) are ordinary
distributions registered exactly like yours; ``examples/custom_plugin/`` is a complete,
installable third-party plugin.  The full guide is ``docs/plugin-authoring.md``.

1. Register an entry point
--------------------------
In your distribution's ``pyproject.toml``, name the module holding your hook implementations
in the entry-point group ``"csm"`` (:data:`NAME`)::

    [project.entry-points.csm]
    my_loss = "my_package.csm_plugin"

After ``pip install .`` (or ``pip install -e .``), ``csm list`` shows your problems.

2. Implement the problem
------------------------
Subclass :class:`ProblemBase` and implement batched ``_loss(X) -> (B,)`` and
``_gradient(X) -> (B, d)`` (optionally ``_hessian(X) -> (B, d, d)``, ``hvp``, ``classify``,
``local_map``, ``critical_values``); list the known critical points as
:class:`CriticalPoint` objects whose ``kind`` is one of :data:`KINDS`.  Validate constructor
parameters and raise :class:`ParameterError` naming the parameter, the value and what is
accepted.

3. Implement the hooks
----------------------
Mark module-level functions with :data:`hookimpl`; their names must be those of the hook
specifications in :mod:`csm.plugin.spec` (``csm_problems``, ``csm_experiments``)::

    import csm

    @csm.hookimpl                      # the same object as csm.plugin.hookimpl
    def csm_problems():
        return [csm.ProblemFactory("my_loss", "one-line description", MyLoss)]

    @csm.hookimpl
    def csm_experiments():             # optional: run by `csm reproduce`
        return [csm.Experiment("my_loss-saddles", "Theorem 2.2", "what it checks", run)]

An experiment's ``run(config: ExperimentConfig) -> ExperimentResult`` returns
:class:`Claim` objects, tables and figures; :mod:`csm.experiments.kit` has the building
blocks (``critical_point_claims``, ``stable_set_sweep``, ``manifold_slice``).

4. Test it in one line
----------------------
``csm.testing.check_problem(MyLoss())`` runs the conformance suite (shapes, batching, the
gradient, Hessian and Hessian-vector product against finite differences, the listed critical
points); ``csm check my_loss`` runs the same from the shell.

What csm does with a plugin that misbehaves
-------------------------------------------
A plugin that fails to import (including one calling ``sys.exit`` at import), implements a
misspelled hook (``csm_problem``), raises in a hook or returns something malformed is
skipped and reported: a ``RuntimeWarning`` naming its entry point,
``csm.plugin_manager().load_errors`` and ``plugin_errors`` in ``csm list --json``.  The other
plugins keep working.  An exception other than ``TypeError``/``ValueError`` raised by your
constructor becomes a :class:`PluginError` naming the plugin and the problem; on the
command line it, or such an exception raised by your problem's methods, is one line on stderr
and exit status 1 (``TypeError``/``ValueError`` from the constructor are bad parameters:
:class:`ParameterError`, exit status 2).  ``--debug`` shows the traceback.

Set ``CSM_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry points; then register plugins by hand
with ``csm.plugin_manager().register(module)`` (:mod:`csm.plugin.manager`).
"""

from __future__ import annotations

import pluggy

#: The pluggy project name and the entry-point group of csm plugins.
NAME = "csm"
#: Decorator marking a plugin's hook implementations: ``@csm.hookimpl``.
hookimpl = pluggy.HookimplMarker(NAME)

# what a plugin author needs, in one place (imported after NAME and hookimpl: spec.py uses NAME)
from ..errors import ParameterError, PluginError  # noqa: E402
from ..experiments.types import Claim, Experiment, ExperimentConfig, ExperimentResult  # noqa: E402
from ..problem import KINDS, Classification, CriticalPoint, ProblemBase, ProblemFactory  # noqa: E402

__all__ = [
    "NAME",
    "hookimpl",
    "ProblemBase",
    "ProblemFactory",
    "CriticalPoint",
    "Classification",
    "KINDS",
    "Experiment",
    "ExperimentConfig",
    "ExperimentResult",
    "Claim",
    "ParameterError",
    "PluginError",
]

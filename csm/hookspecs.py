"""Plugin hooks and the plugin manager (pluggy, project name and entry-point group ``"csm"``).

Writing a plugin
----------------
A plugin is a module (or object) with hook implementations, registered through an entry
point in the group ``"csm"`` of its distribution's ``pyproject.toml``::

    [project.entry-points.csm]
    my_loss = "my_package.csm_plugin"

and in ``my_package/csm_plugin.py``::

    import csm

    @csm.hookimpl
    def csm_problems():
        return [csm.ProblemFactory("my_loss", "one line description", MyLoss)]

    @csm.hookimpl
    def csm_experiments():
        return [csm.Experiment("my_loss-saddles", "Thm 2.2", "what it checks", run)]

The built-in plugins in ``plugins/`` are registered exactly this way.  Set the environment
variable ``CSM_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry points (then register plugins by hand
with ``csm.plugin_manager().register(module)``).

A plugin that fails to import, raises in a hook, or returns something malformed is reported
(:attr:`CsmPluginManager.load_errors`, a warning naming its entry point) and skipped; the
other plugins keep working.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from typing import Any, Sequence

import pluggy

from .errors import PluginError, UnknownProblemError
from .problem import Experiment, ProblemFactory

__all__ = [
    "NAME",
    "hookimpl",
    "hookspec",
    "CsmSpec",
    "CsmPluginManager",
    "plugin_manager",
    "reset_plugin_manager",
    "list_problems",
    "get_problem",
    "list_experiments",
]

NAME = "csm"
hookspec = pluggy.HookspecMarker(NAME)
#: Decorator for hook implementations: ``@csm.hookimpl``.
hookimpl = pluggy.HookimplMarker(NAME)
DISABLE_ENV = "CSM_DISABLE_PLUGIN_AUTOLOAD"


class CsmSpec:
    """The hook specifications.  Few and stable."""

    @hookspec
    def csm_problems(self) -> Sequence[ProblemFactory]:  # type: ignore[empty-body]
        """Return the problems this plugin offers.

        Returns
        -------
        list of ProblemFactory
            Each with a unique ``name``, a one-line ``description`` and a ``constructor``
            taking keyword parameters with validated defaults.
        """

    @hookspec
    def csm_experiments(self) -> Sequence[Experiment]:  # type: ignore[empty-body]
        """Return the reproducible experiments this plugin contributes to ``csm reproduce``.

        Returns
        -------
        list of Experiment
            Each with ``name``, the paper ``reference`` it checks, a ``description`` and
            ``run(config) -> ExperimentResult``.
        """


class CsmPluginManager(pluggy.PluginManager):
    """A pluggy manager for csm that isolates misbehaving plugins.

    ``load_errors`` lists one :class:`~csm.errors.PluginError` per plugin that failed.
    """

    def __init__(self) -> None:
        super().__init__(NAME)
        self.add_hookspecs(CsmSpec)
        self.load_errors: list[PluginError] = []

    def load_entrypoints(self) -> None:
        """Import and register every entry point of the group ``"csm"``, isolating failures."""
        for ep in importlib.metadata.entry_points(group=NAME):
            if self.get_plugin(ep.name) is not None or self.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a plugin must not take csm down
                self._fail(ep.name, f"failed to load ({ep.value}): {type(exc).__name__}: {exc}")
        self.check_pending()

    def _fail(self, plugin_name: str, what: str) -> None:
        err = PluginError(f"csm plugin {plugin_name!r} {what}")
        self.load_errors.append(err)
        warnings.warn(str(err), RuntimeWarning, stacklevel=3)

    def _collect(self, hook_name: str, cls: type) -> list[tuple[str, Any]]:
        """Call one hook implementation at a time; return ``(plugin_name, item)`` pairs."""
        caller = getattr(self.hook, hook_name)
        out: list[tuple[str, Any]] = []
        for impl in reversed(caller.get_hookimpls()):  # registration order
            pname = impl.plugin_name
            try:
                items = impl.function()
            except Exception as exc:  # noqa: BLE001
                self._fail(pname, f"raised in {hook_name}(): {type(exc).__name__}: {exc}")
                continue
            if items is None:
                continue
            if not isinstance(items, (list, tuple)):
                self._fail(pname, f"returned {type(items).__name__} from {hook_name}(), "
                                  f"expected a list of {cls.__name__}")
                continue
            for item in items:
                if not isinstance(item, cls):
                    self._fail(pname, f"returned a {type(item).__name__} from {hook_name}(), "
                                      f"expected {cls.__name__}")
                    continue
                out.append((pname, item))
        return out

    def problems(self) -> dict[str, ProblemFactory]:
        """All problem factories by name (first registration wins; clashes are reported)."""
        found: dict[str, ProblemFactory] = {}
        owner: dict[str, str] = {}
        for pname, fac in self._collect("csm_problems", ProblemFactory):
            if fac.name in found:
                self._fail(pname, f"offers problem {fac.name!r}, already offered by "
                                  f"plugin {owner[fac.name]!r}; ignored")
                continue
            found[fac.name] = fac
            owner[fac.name] = pname
        return found

    def experiments(self) -> list[Experiment]:
        """All experiments, in plugin registration order."""
        return [e for _, e in self._collect("csm_experiments", Experiment)]


_PM: CsmPluginManager | None = None


def plugin_manager() -> CsmPluginManager:
    """The process-wide plugin manager (entry points loaded on first use)."""
    global _PM
    if _PM is None:
        pm = CsmPluginManager()
        if not os.environ.get(DISABLE_ENV):
            pm.load_entrypoints()
        _PM = pm
    return _PM


def reset_plugin_manager() -> None:
    """Forget the plugin manager (the next call reloads entry points).  For tests."""
    global _PM
    _PM = None


def list_problems() -> dict[str, ProblemFactory]:
    """The registered problems, by name."""
    return plugin_manager().problems()


def get_problem(name: str, **params: Any) -> Any:
    """Construct the registered problem ``name`` with keyword parameters.

    Raises
    ------
    UnknownProblemError
        No plugin offers ``name`` (the message lists the known problems).
    ParameterError
        A parameter is unknown or invalid (named in the message).
    """
    problems = list_problems()
    if name not in problems:
        raise UnknownProblemError(
            f"unknown problem {name!r}; known problems: {sorted(problems) or 'none'}"
        )
    return problems[name].create(**params)


def list_experiments() -> list[Experiment]:
    """The experiments contributed by all plugins."""
    return plugin_manager().experiments()



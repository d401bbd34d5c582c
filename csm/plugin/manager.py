"""The csm plugin manager: finds plugins, isolates the broken ones, calls the hooks.

Every plugin -- the built-in ones in ``plugins/`` included -- is found through the
entry-point group ``"csm"`` (:data:`csm.plugin.NAME`) when the manager is first used
(:func:`plugin_manager`); ``CSM_DISABLE_PLUGIN_AUTOLOAD=1`` (:data:`DISABLE_ENV`) skips that.
The hooks (:mod:`csm.plugin.spec`) are called only here, through one typed method each:
:meth:`CsmPluginManager.problems` and :meth:`CsmPluginManager.experiments`.

Isolation: a plugin that fails to import (any exception, ``SystemExit`` included -- only
``KeyboardInterrupt`` propagates), implements a hook csm does not specify (a misspelled name),
raises in a hook or returns something malformed is reported -- a ``RuntimeWarning`` and one
:class:`~csm.errors.PluginError` in :attr:`CsmPluginManager.load_errors` -- and skipped.
Problem constructors are wrapped: ``TypeError``/``ValueError`` stay bad parameters
(:class:`~csm.errors.ParameterError`, from :meth:`ProblemFactory.create`), any other failure
becomes a :class:`~csm.errors.PluginError` naming the plugin and the problem.
:func:`plugin_error_for` does the same for an exception raised later by a plugin's code (e.g.
a gradient inside ``csm check``), so that the command line can report it in one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import os
import types
import warnings
from typing import Any, Callable

import pluggy

from ..errors import CsmError, PluginError, UnknownProblemError
from ..experiments.types import Experiment
from ..problem import ProblemFactory
from . import NAME, spec

__all__ = [
    "DISABLE_ENV",
    "CsmPluginManager",
    "plugin_manager",
    "reset_plugin_manager",
    "list_problems",
    "get_problem",
    "list_experiments",
    "plugin_error_for",
]

#: Set this environment variable (to anything non-empty) to skip loading entry points.
DISABLE_ENV = "CSM_DISABLE_PLUGIN_AUTOLOAD"


def _describe(exc: BaseException) -> str:
    """``"Type: message"`` on one line."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _GuardedConstructor:
    """A plugin's problem constructor: failures other than bad parameters become PluginError."""

    def __init__(self, constructor: Callable[..., Any], plugin: str, problem: str) -> None:
        self.__wrapped__ = constructor  # inspect.signature follows it
        self.plugin = plugin
        self.problem = problem

    def __call__(self, **params: Any) -> Any:
        try:
            return self.__wrapped__(**params)
        except (KeyboardInterrupt, CsmError, TypeError, ValueError):
            raise  # ProblemFactory.create turns TypeError/ValueError into ParameterError
        except BaseException as exc:  # noqa: BLE001 - SystemExit included
            raise PluginError(
                f"plugin {self.plugin!r}: constructing problem {self.problem!r} failed: "
                f"{_describe(exc)}"
            ) from exc

    def __repr__(self) -> str:
        return f"<constructor of {self.problem!r} from plugin {self.plugin!r}: {self.__wrapped__!r}>"


class CsmPluginManager(pluggy.PluginManager):
    """The pluggy manager of csm: hook specifications from :mod:`csm.plugin.spec`.

    Attributes
    ----------
    load_errors : list of PluginError
        One entry per problem found with a plugin (failed import, unknown hook, exception
        in or malformed result of a hook, clashing problem name), in order of discovery.
    """

    def __init__(self) -> None:
        super().__init__(NAME)
        self.add_hookspecs(spec)
        self.load_errors: list[PluginError] = []

    # -- loading ---------------------------------------------------------------------------

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin`` (a module or object with ``@csm.hookimpl`` functions).

        Returns the registration name (None if blocked).

        Raises
        ------
        pluggy.PluginValidationError
            ``plugin`` implements a hook csm does not specify (a misspelled name, reported
            with the closest hook name) or a hook with a wrong signature; it is not registered.
        """
        pname = super().register(plugin, name)
        if pname is None:
            return None
        unknown = sorted(
            caller.name for caller in self.get_hookcallers(plugin) or ()
            if not caller.has_spec()
            and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
        )
        if unknown:
            self.unregister(plugin)
            known = self.hook_names()
            hints = [m for u in unknown for m in difflib.get_close_matches(u, known, n=1)]
            raise pluggy.PluginValidationError(
                plugin,
                f"unknown hook(s) {unknown}"
                + (f" (did you mean {', '.join(map(repr, hints))}?)" if hints else "")
                + f"; csm's hooks: {known}",
            )
        return pname

    def hook_names(self) -> list[str]:
        """The names of the hooks csm specifies (:mod:`csm.plugin.spec`)."""
        return sorted(n for n, caller in vars(self.hook).items()
                      if isinstance(caller, pluggy.HookCaller) and caller.has_spec())

    def load_entrypoints(self) -> None:
        """Import and register every entry point of the group ``"csm"``, isolating failures."""
        for ep in importlib.metadata.entry_points(group=NAME):
            if self.get_plugin(ep.name) is not None or self.is_blocked(ep.name):
                continue
            try:
                self.register(ep.load(), name=ep.name)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a plugin must not take csm down
                self._fail(ep.name, f"failed to load ({ep.value}): {_describe(exc)}")
        self._check_pending()

    def _check_pending(self) -> None:
        """pluggy's ``check_pending``, isolating each offending plugin instead of raising."""
        for _ in range(len(self.get_plugins()) + 1):
            try:
                self.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                pname = self.get_name(exc.plugin) or repr(exc.plugin)
                self.unregister(exc.plugin)
                self._fail(pname, f"failed validation: {_describe(exc)}")

    def _fail(self, plugin_name: str, what: str) -> None:
        err = PluginError(f"csm plugin {plugin_name!r} {what}")
        if any(str(e) == str(err) for e in self.load_errors):
            return  # the same failure seen again (hooks run on every call)
        self.load_errors.append(err)
        warnings.warn(str(err), RuntimeWarning, stacklevel=4)

    # -- the hooks -------------------------------------------------------------------------

    def _collect(self, hook_name: str, cls: type) -> list[tuple[str, Any]]:
        """Call one hook implementation at a time; return ``(plugin_name, item)`` pairs."""
        caller = getattr(self.hook, hook_name)
        out: list[tuple[str, Any]] = []
        for impl in reversed(caller.get_hookimpls()):  # registration order
            pname = impl.plugin_name
            try:
                items = impl.function()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001
                self._fail(pname, f"raised in {hook_name}(): {_describe(exc)}")
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
        """All problem factories by name (``csm_problems``; first registration wins, clashes
        are reported), their constructors wrapped to raise :class:`PluginError`."""
        found: dict[str, ProblemFactory] = {}
        owners: dict[str, str] = {}
        for pname, fac in self._collect("csm_problems", ProblemFactory):
            if fac.name in found:
                self._fail(pname, f"offers problem {fac.name!r}, already offered by "
                                  f"plugin {owners[fac.name]!r}; ignored")
                continue
            found[fac.name] = dataclasses.replace(
                fac, constructor=_GuardedConstructor(fac.constructor, pname, fac.name),
                parameters=dict(fac.parameters or {}))
            owners[fac.name] = pname
        return found

    def experiments(self) -> list[Experiment]:
        """All experiments (``csm_experiments``), in plugin registration order."""
        return [e for _, e in self._collect("csm_experiments", Experiment)]

    # -- blaming ---------------------------------------------------------------------------

    def _roots(self) -> dict[str, str]:
        """Module-name roots of the registered plugins: package, or the module itself."""
        roots: dict[str, str] = {}
        for pname, plugin in self.list_name_plugin():
            if isinstance(plugin, types.ModuleType):
                mod = plugin.__name__
                root = mod if hasattr(plugin, "__path__") else (mod.rpartition(".")[0] or mod)
            else:
                root = getattr(plugin, "__module__", None) or type(plugin).__module__
            if root and root.partition(".")[0] != "csm":
                roots[root] = pname
        return roots

    def plugin_of(self, exc: BaseException) -> str | None:
        """The plugin whose code raised ``exc`` (innermost traceback frame in a plugin's
        modules), or None when no plugin code is on the traceback."""
        roots = self._roots()
        found = None
        tb = exc.__traceback__
        while tb is not None:
            mod = str(tb.tb_frame.f_globals.get("__name__", ""))
            hits = [r for r in roots if mod == r or mod.startswith(r + ".")]
            if hits:
                found = roots[max(hits, key=len)]
            tb = tb.tb_next
        return found

    def plugin_error(self, exc: BaseException, *, problem: str | None = None) -> PluginError | None:
        """``exc`` as a one-line :class:`PluginError` naming the plugin (and ``problem``),
        or None when ``exc`` was not raised by plugin code."""
        if isinstance(exc, PluginError):
            return exc
        pname = self.plugin_of(exc)
        if pname is None:
            return None
        where = f"plugin {pname!r}" + (f", problem {problem!r}" if problem else "")
        return PluginError(f"{where}: {_describe(exc)}")


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
    PluginError
        The plugin's constructor failed otherwise (message: plugin, problem, exception).
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


def plugin_error_for(exc: BaseException, *, problem: str | None = None) -> PluginError | None:
    """:meth:`CsmPluginManager.plugin_error` of the process-wide manager (None if no plugin
    was ever loaded, hence no plugin code can have raised ``exc``)."""
    if isinstance(exc, PluginError):
        return exc
    return None if _PM is None else _PM.plugin_error(exc, problem=problem)

"""Plugin discovery through real entry points, isolation of broken plugins, registry errors,
the hook specifications and their documentation, and the conformance suite."""

import pathlib
import warnings

import numpy as np
import pluggy
import pytest

import csm
from csm.plugin import spec
from csm.plugin.manager import CsmPluginManager

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "plugin-authoring.md"

GOOD = """
import numpy as np
import csm

class Bowl(csm.ProblemBase):
    name = "bowl"
    def __init__(self, dim=3, scale=1.0):
        if int(dim) < 1:
            raise csm.ParameterError(f"`dim` must be >= 1, got {dim}")
        self.dim = int(dim); self.scale = float(scale)
    def _loss(self, X): return 0.5 * self.scale * np.sum(X**2, axis=1)
    def _gradient(self, X): return self.scale * X

@csm.hookimpl
def csm_problems():
    return [csm.ProblemFactory("bowl", "a quadratic bowl", Bowl)]
"""

MALFORMED = """
import csm

@csm.hookimpl
def csm_problems():
    return "not a list"

@csm.hookimpl
def csm_experiments():
    raise RuntimeError("boom")
"""

# `csm_problem` instead of `csm_problems`: pluggy's check_pending() used to take csm down
MISSPELLED = """
import csm

@csm.hookimpl
def csm_problem():
    return []
"""

EXITS = """
import sys
sys.exit(3)
"""

FAILING_CONSTRUCTOR = """
import csm

class Fragile(csm.ProblemBase):
    name, dim = "fragile", 2
    def __init__(self, mode="runtime"):
        if mode == "runtime":
            raise RuntimeError("cannot allocate the workspace")
        if mode == "value":
            raise ValueError("`mode` must be 'runtime' or 'value'")

@csm.hookimpl
def csm_problems():
    return [csm.ProblemFactory("fragile", "a constructor that fails", Fragile)]
"""


def test_entry_point_discovery_and_broken_plugins(fake_dist):
    fake_dist("csm_test_good", {"goodplug": "csm_test_goodplug"}, {"csm_test_goodplug": GOOD})
    fake_dist("csm_test_broken", {"brokenplug": "csm_test_missing_module"}, {})
    fake_dist("csm_test_malformed", {"malformedplug": "csm_test_malformed"},
              {"csm_test_malformed": MALFORMED})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probs = csm.list_problems()
        csm.list_experiments()
    assert "bowl" in probs
    # the built-in plugins are found through the same entry-point path
    assert {"relu", "leaky_relu", "phase_retrieval", "matrix_recovery"} <= set(probs)
    msgs = [str(w.message) for w in caught]
    assert any("'brokenplug'" in m and "failed to load" in m and "csm_test_missing_module" in m
               for m in msgs), msgs
    assert any("'malformedplug'" in m and "expected a list of ProblemFactory" in m for m in msgs)
    assert any("'malformedplug'" in m and "RuntimeError: boom" in m for m in msgs)
    errs = csm.plugin_manager().load_errors
    assert all(isinstance(e, csm.PluginError) for e in errs) and len(errs) >= 3
    csm.list_problems()  # hooks run again: the same failures are not reported twice
    assert len(csm.plugin_manager().load_errors) == len(errs)
    p = csm.get_problem("bowl", dim=4)
    assert p.dim == 4
    csm.testing.check_problem(p)


def test_misspelled_hook_is_a_load_error_of_that_plugin(fake_dist):
    fake_dist("csm_test_typo", {"typoplug": "csm_test_typo"}, {"csm_test_typo": MISSPELLED})
    with pytest.warns(RuntimeWarning, match="'typoplug'.*unknown hook"):
        probs = csm.list_problems()  # used to raise pluggy.PluginValidationError
    assert {"relu", "phase_retrieval"} <= set(probs)
    pm = csm.plugin_manager()
    assert pm.get_plugin("typoplug") is None  # not registered, the others are
    (err,) = [e for e in pm.load_errors if "'typoplug'" in str(e)]
    assert "['csm_problem']" in str(err) and "did you mean 'csm_problems'" in str(err)


def test_plugin_calling_sys_exit_at_import_is_reported(fake_dist):
    fake_dist("csm_test_exit", {"exitplug": "csm_test_exit"}, {"csm_test_exit": EXITS})
    with pytest.warns(RuntimeWarning, match="'exitplug' failed to load"):
        probs = csm.list_problems()  # used to end the process with status 3
    assert "relu" in probs
    assert any("'exitplug'" in str(e) and "SystemExit: 3" in str(e)
               for e in csm.plugin_manager().load_errors)


def test_registering_a_misspelled_plugin_by_hand_raises(monkeypatch, fresh_plugins):
    monkeypatch.setenv("CSM_DISABLE_PLUGIN_AUTOLOAD", "1")

    class Typo:
        @csm.hookimpl
        def csm_experiment(self):
            return []

    pm = csm.plugin_manager()
    with pytest.raises(pluggy.PluginValidationError, match="did you mean 'csm_experiments'"):
        pm.register(Typo(), name="typo")
    assert pm.get_plugin("typo") is None
    pm.check_pending()  # nothing left behind


def test_failing_constructor_is_a_plugin_error(fake_dist):
    fake_dist("csm_test_fragile", {"fragileplug": "csm_test_fragile"},
              {"csm_test_fragile": FAILING_CONSTRUCTOR})
    with pytest.raises(csm.PluginError) as info:
        csm.get_problem("fragile")
    msg = str(info.value)
    assert "'fragileplug'" in msg and "'fragile'" in msg
    assert "RuntimeError: cannot allocate the workspace" in msg
    assert isinstance(info.value.__cause__, RuntimeError)
    # ValueError and TypeError from a constructor remain bad parameters
    with pytest.raises(csm.ParameterError, match="`mode` must be"):
        csm.get_problem("fragile", mode="value")
    with pytest.raises(csm.ParameterError, match="no parameter"):
        csm.get_problem("fragile", bogus=1)


def test_unknown_problem_and_bad_parameters(fresh_plugins):
    with pytest.raises(csm.UnknownProblemError, match=r"unknown problem 'nope'; known problems: \[.*'relu'"):
        csm.get_problem("nope")
    with pytest.raises(csm.ParameterError, match=r"no parameter\(s\) \['bogus'\]; accepted"):
        csm.get_problem("relu", bogus=1)


def test_disable_autoload(monkeypatch, fresh_plugins):
    monkeypatch.setenv("CSM_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert csm.list_problems() == {}
    import csm_relu

    csm.plugin_manager().register(csm_relu)
    assert "relu" in csm.list_problems()


# ---------------------------------------------------------------------------------------
# the hook specifications (datasette's "every hook is documented" test)
# ---------------------------------------------------------------------------------------

#: The hook specifications themselves: the functions of csm.plugin.spec that carry pluggy's
#: HookspecMarker (the attribute "csm_spec").
SPEC_HOOKS = sorted(name for name, obj in vars(spec).items()
                    if callable(obj) and hasattr(obj, f"{csm.plugin.NAME}_spec"))


def test_the_manager_offers_exactly_the_spec_hooks():
    pm = CsmPluginManager()
    on_pm = sorted(name for name, caller in vars(pm.hook).items()
                   if isinstance(caller, pluggy.HookCaller) and caller.spec is not None)
    assert SPEC_HOOKS == on_pm == pm.hook_names() == ["csm_experiments", "csm_problems"]
    for name in SPEC_HOOKS:  # one typed method per hook
        assert callable(getattr(pm, name.removeprefix("csm_")))


@pytest.mark.parametrize("name", SPEC_HOOKS)
def test_every_hook_is_documented(name):
    spec_ = getattr(CsmPluginManager().hook, name).spec
    fn = spec_.function
    assert fn.__doc__ and "Returns" in fn.__doc__
    ret = fn.__annotations__["return"]  # a string: the spec module uses postponed annotations
    signature = f"{name}({', '.join(spec_.argnames)}) -> {ret}"
    assert signature in DOCS.read_text(), f"docs/plugin-authoring.md does not show `{signature}`"


# ---------------------------------------------------------------------------------------
# the conformance suite
# ---------------------------------------------------------------------------------------


def test_check_problem_catches_a_wrong_gradient():
    class Wrong(csm.ProblemBase):
        name, dim = "wrong", 2

        def _loss(self, X):
            return np.sum(X**3, axis=1)

        def _gradient(self, X):
            return 2 * X  # should be 3 X^2

    with pytest.raises(AssertionError, match="gradient-vs-fd"):
        csm.testing.check_problem(Wrong())
    rep = csm.testing.check_problem(Wrong(), raise_on_failure=False)
    assert not rep.passed and any("gradient-vs-fd" in f for f in rep.failures())


class Cubic(csm.ProblemBase):
    """L(x) = sum x_i^3 / 3 + x_1 x_2: H = diag(2 x) + offdiag(1)."""

    name, dim = "cubic", 3

    def _loss(self, X):
        return np.sum(X**3, axis=1) / 3 + X[:, 0] * X[:, 1]

    def _gradient(self, X):
        G = X**2
        G[:, 0] += X[:, 1]
        G[:, 1] += X[:, 0]
        return G

    def _hessian(self, X):
        H = np.zeros((len(X), 3, 3))
        H[:, [0, 1, 2], [0, 1, 2]] = 2 * X
        H[:, 0, 1] = H[:, 1, 0] = 1.0
        return H


def _hvp_rows(problem):
    rep = csm.testing.check_problem(problem, raise_on_failure=False)
    return {name: ok for name, ok, _ in rep.checks if name.startswith("hvp")}


def test_check_problem_checks_hvp_against_hessian_and_finite_differences():
    assert _hvp_rows(Cubic()) == {"hvp-batching": True, "hvp-vs-hessian": True, "hvp-vs-fd": True}

    class WrongHvp(Cubic):
        def hvp(self, theta, v):
            return 1.01 * super().hvp(theta, v)  # 1 % off: far above hvp_tol = 1e-6

    assert _hvp_rows(WrongHvp()) == {"hvp-batching": True, "hvp-vs-hessian": False,
                                     "hvp-vs-fd": False}

    class OffByASign(Cubic):  # wrong only off the diagonal: Hessian and hvp agree, fd does not
        def _hessian(self, X):
            H = super()._hessian(X)
            H[:, 0, 1] = H[:, 1, 0] = -1.0
            return H

    rows = _hvp_rows(OffByASign())
    assert rows == {"hvp-batching": True, "hvp-vs-hessian": True, "hvp-vs-fd": False}

    class Unbatched(Cubic):
        def hvp(self, theta, v):
            return np.atleast_2d(super().hvp(theta, v))  # (1, d) for a single point

    assert _hvp_rows(Unbatched())["hvp-batching"] is False

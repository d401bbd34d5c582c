"""Plugin discovery through real entry points, isolation of broken plugins, registry errors."""

import textwrap
import warnings

import numpy as np
import pytest

import csm
from csm.hookspecs import CsmSpec


@pytest.fixture
def fresh_plugins():
    csm.reset_plugin_manager()
    yield
    csm.reset_plugin_manager()


def _install_fake_dist(root, dist, entry_points, modules):
    """A real (unpacked) distribution: dist-info with entry_points.txt, found by importlib.metadata."""
    info = root / f"{dist}-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[csm]\n{lines}\n")
    for name, src in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(src))


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


def test_entry_point_discovery_and_broken_plugins(tmp_path, monkeypatch, fresh_plugins):
    _install_fake_dist(tmp_path, "csm_test_good", {"goodplug": "csm_test_goodplug"},
                       {"csm_test_goodplug": GOOD})
    _install_fake_dist(tmp_path, "csm_test_broken", {"brokenplug": "csm_test_missing_module"}, {})
    _install_fake_dist(tmp_path, "csm_test_malformed", {"malformedplug": "csm_test_malformed"},
                       {"csm_test_malformed": MALFORMED})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CSM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
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
    p = csm.get_problem("bowl", dim=4)
    assert p.dim == 4
    csm.testing.check_problem(p)


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


def test_every_hook_is_documented():
    for name in ("csm_problems", "csm_experiments"):
        doc = getattr(CsmSpec, name).__doc__
        assert doc and "Returns" in doc


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

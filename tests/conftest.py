"""Shared fixtures of the csm test suite.

pytest runs with ``--import-mode=importlib`` (pyproject.toml), which keeps the tests folder off
``sys.path``.  This conftest puts it there once, so a test module imports the toy problems with
a plain ``import _toy_problems as toy`` (module-level classes: picklable, hence usable with
process pools, whose workers inherit ``sys.path``), or takes the module as the ``toy`` fixture.

Fixtures
--------
toy
    The :mod:`_toy_problems` module (toy problems with analytic answers).
fresh_plugins
    A plugin manager that is rebuilt (entry points reloaded) before and after the test.
fake_dist
    ``fake_dist(dist, entry_points, modules)`` installs a real, unpacked distribution whose
    ``entry_points.txt`` declares ``entry_points`` (name -> module) in the group ``"csm"``
    and whose modules are the given sources; found by ``importlib.metadata`` like a
    ``pip install``.  Implies ``fresh_plugins`` and enables entry-point autoloading.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import textwrap
from typing import Callable, Iterator, Mapping

import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import _toy_problems  # noqa: E402

import csm  # noqa: E402
from csm.plugin.manager import DISABLE_ENV  # noqa: E402


@pytest.fixture
def toy():
    """The toy problems (tests/_toy_problems.py)."""
    return _toy_problems


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    csm.reset_plugin_manager()
    yield
    csm.reset_plugin_manager()


@pytest.fixture
def fake_dist(tmp_path, monkeypatch, fresh_plugins) -> Iterator[Callable[..., None]]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    created: list[str] = []

    def install(dist: str, entry_points: Mapping[str, str], modules: Mapping[str, str]) -> None:
        info = root / f"{dist}-0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[csm]\n{lines}\n")
        for name, src in modules.items():
            (root / f"{name}.py").write_text(textwrap.dedent(src))
            created.append(name)
        importlib.invalidate_caches()

    yield install
    for name in created:  # the next test may install a module of the same name
        sys.modules.pop(name, None)

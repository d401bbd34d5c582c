"""The examples of docs/plugins/network.md and of the module docstrings run as doctests."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[3] / "docs" / "plugins" / "network.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.skipif(not PAGE.is_file(), reason="docs not in this checkout")
def test_docs_page_examples():
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    ns: dict = {"__name__": "network_md"}
    exec(compile(blocks[0], "network.md[0]", "exec"), ns)  # noqa: S102 - the page's own code
    test = doctest.DocTestParser().get_doctest("\n".join(blocks[1:]), ns, "network.md",
                                               str(PAGE), 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    res = runner.summarize(verbose=False)
    assert res.failed == 0 and res.attempted > 20


@pytest.mark.parametrize("name", ["csm_network.problem"])
def test_module_doctests(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert res.failed == 0

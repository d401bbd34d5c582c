"""Every ```python block of docs/*.md, docs/plugins/*.md and README.md runs (a doc-snippet test).

Per file, the blocks run **in order in one fresh namespace** (a later block may use names an
earlier one defined, as a reader following the page would):

* a block whose first non-blank line starts with ``>>>`` is a doctest: its expected output is
  compared (``doctest`` with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``);
* any other block is executed with ``exec``.

A block preceded (on the line before its opening fence) by ``<!-- no-test -->`` is skipped with
a stated reason; the pages use that only for blocks that need a server (Dask), an optional package (torch) or take more
than 30 s.  Figures and files a block writes go to a temporary working directory.
"""

from __future__ import annotations

import doctest
import os
import pathlib
import re
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_TEST = "<!-- no-test -->"
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    path: pathlib.Path
    index: int  # 0-based among the file's python blocks
    line: int  # 1-based line of the opening fence
    source: str
    skip: bool

    @property
    def doctest(self) -> bool:
        first = next((ln for ln in self.source.splitlines() if ln.strip()), "")
        return first.lstrip().startswith(">>>")

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: pathlib.Path) -> list[Block]:
    """The fenced python blocks of a Markdown file, with their skip marks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        if lang == "python":
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                    for ln in lines[i + 1:j]]
            prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            out.append(Block(path, len(out), i + 1, "\n".join(body) + "\n", prev == NO_TEST))
        i = j + 1
    return out


def doc_files() -> list[pathlib.Path]:
    files = sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "docs" / "plugins").glob("*.md"))
    return files + [ROOT / "README.md"]


BLOCKS = [b for f in doc_files() for b in python_blocks(f)]
_NAMESPACES: dict[pathlib.Path, dict] = {}
_DONE: dict[pathlib.Path, set[int]] = {}


def _run(block: Block, ns: dict) -> None:
    if block.doctest:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.source, ns, block.id, str(block.path), block.line)
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        runner = doctest.DocTestRunner(optionflags=flags)
        runner.run(test, clear_globs=False)
        ns.update(test.globs)  # DocTest works on a copy of the namespace
        res = runner.summarize(verbose=False)
        assert res.failed == 0, f"{block.id}: {res.failed} doctest example(s) failed (output above)"
    else:
        code = compile(block.source, block.id, "exec")
        exec(code, ns)  # noqa: S102 - the documentation's own code


def test_every_doc_file_is_scanned():
    assert any(b.path.name == "README.md" for b in BLOCKS)
    assert any(b.path.name == "quickstart.md" for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block(block: Block, tmp_path_factory):
    if block.skip:
        pytest.skip(f"{block.id} is marked {NO_TEST} (needs a server or an optional package such as torch, or takes > 30 s)")
    ns = _NAMESPACES.get(block.path)
    if ns is None:
        ns = _NAMESPACES[block.path] = {"__name__": f"doc:{block.path.name}"}
        _DONE[block.path] = set()
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("doc"))
    try:
        # the blocks before this one (in case the tests run out of order or one was selected)
        for earlier in BLOCKS:
            if (earlier.path == block.path and earlier.index < block.index and not earlier.skip
                    and earlier.index not in _DONE[block.path]):
                _DONE[block.path].add(earlier.index)  # attempted: a failure is reported once
                _run(earlier, ns)
        _DONE[block.path].add(block.index)
        _run(block, ns)
    finally:
        os.chdir(cwd)

"""csm.stable_sets.checkpoint: hostile files, concurrent runs, and writes that stay put."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import csm
from csm._io import atomic_write
from csm.problem import CriticalPoint, ProblemBase
from csm.stable_sets.checkpoint import CheckpointLockedError, ChunkStore


class Well(ProblemBase):
    """L = (x^2 - 1)^2/4 + y^2/2: minima (+-1, 0), strict saddle at 0 (stable set {x = 0})."""

    name = "well"
    dim = 2

    def _loss(self, X):
        return (X[:, 0] ** 2 - 1) ** 2 / 4 + X[:, 1] ** 2 / 2

    def _gradient(self, X):
        return np.stack([X[:, 0] ** 3 - X[:, 0], X[:, 1]], 1)

    def critical_points(self):
        return [CriticalPoint(np.array([1.0, 0.0]), "global_minimum", 0.0, "min+"),
                CriticalPoint(np.array([-1.0, 0.0]), "global_minimum", 0.0, "min-"),
                CriticalPoint(np.zeros(2), "strict_saddle", 0.25, "saddle")]


def box(rng, n):
    return rng.uniform(-2, 2, (n, 2))


ARGS = dict(n=200, chunk_size=50, max_steps=2000)


def _run(ck, seed=0, **kw):
    return csm.estimate_stable_set(Well(), 0.1, box, checkpoint=ck, seed=seed, **{**ARGS, **kw})


def test_tampered_chunk_is_recomputed_not_trusted(tmp_path):
    ck = tmp_path / "ck"
    ref = _run(ck)
    path = ck / "chunk-000001.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["kind"] = np.array(["strict_saddle"] * 50)  # 0 saddle runs -> 50
    np.savez(path, **arrays)
    with pytest.warns(RuntimeWarning, match="digest"):
        again = _run(ck)
    assert again.saddle_count == ref.saddle_count == 0 and again.chunks_loaded == 3


def test_foreign_and_truncated_chunks_are_recomputed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ref = _run(a, seed=0)
    _run(b, seed=1)
    # a chunk swapped in from another seed (its file copied over, digest and all)
    (a / "chunk-000002.npz").write_bytes((b / "chunk-000002.npz").read_bytes())
    manifest_b = json.loads((b / "manifest.json").read_text())
    manifest_a = json.loads((a / "manifest.json").read_text())
    manifest_a["chunks"]["2"] = manifest_b["chunks"]["2"]
    (a / "manifest.json").write_text(json.dumps(manifest_a))
    with pytest.warns(RuntimeWarning, match="seed draws"):
        again = _run(a, seed=0)
    np.testing.assert_array_equal(again.arrays["theta0"], ref.arrays["theta0"])
    # a truncated chunk
    p = a / "chunk-000000.npz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.warns(RuntimeWarning):
        again = _run(a, seed=0)
    np.testing.assert_array_equal(again.arrays["label"], ref.arrays["label"])


@pytest.mark.parametrize("content", ["[1, 2]", '{"format": "csm-chunk-store/2", "arguments": "x"}'])
def test_malformed_manifest_is_a_clear_error(tmp_path, content):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "manifest.json").write_text(content)
    with pytest.raises(csm.CheckpointMismatchError, match="malformed"):
        _run(ck)


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    ck = tmp_path / "ck"
    store = ChunkStore(ck, {"a": 1}, 4)
    try:
        with pytest.raises(CheckpointLockedError, match="in use"):
            ChunkStore(ck, {"a": 1}, 4)
        # from another process too (flock is per open file description)
        code = textwrap.dedent(f"""
            from csm.stable_sets.checkpoint import ChunkStore, CheckpointLockedError
            try:
                ChunkStore({str(ck)!r}, {{"a": 1}}, 4)
            except CheckpointLockedError:
                raise SystemExit(7)
        """)
        assert subprocess.run([sys.executable, "-c", code]).returncode == 7
    finally:
        store.close()
    ChunkStore(ck, {"a": 1}, 4).close()  # free again


def test_atomic_write_replaces_a_symlink_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").symlink_to(outside)
    atomic_write(out / "report.md", "new", root=out)
    assert outside.read_text() == "precious"
    assert not (out / "report.md").is_symlink() and (out / "report.md").read_text() == "new"
    # a symlinked sub-directory that leaves the root is refused
    (out / "figs").symlink_to(tmp_path)
    with pytest.raises(csm.InputError, match="outside"):
        atomic_write(out / "figs" / "a.png", b"x", root=out)
    assert not (tmp_path / "a.png").exists()


def test_memory_estimate_refuses_absurd_n():
    with pytest.raises(csm.InputError, match="GiB"):
        csm.estimate_stable_set(Well(), 0.1, box, n=10**12, chunk_size=50)

"""A directory of finished work chunks that survives being killed (used by stable-set runs).

A long Monte Carlo run is split into chunks; each finished chunk is written to
``DIR/chunk-000017.npz`` **atomically** (written to a temporary file in the same directory,
flushed to disk, then renamed over the final name with :func:`os.replace`), so a run killed at
any moment leaves only complete chunk files (and perhaps a stray temporary file, ignored and
removed on the next start).  ``DIR/manifest.json`` records a *fingerprint* of the arguments
that determine the chunks' contents; a restarted run compares its own fingerprint with the
manifest and refuses to mix results (:class:`~csm.errors.CheckpointMismatchError`, naming
every differing argument).

The store only knows about dictionaries of numpy arrays; what the arrays mean is up to the
caller (:func:`csm.estimate_stable_set`).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._io import atomic_write
from .._results import to_jsonable
from ..errors import CheckpointMismatchError, InputError

__all__ = ["ChunkStore", "CheckpointLockedError", "problem_fingerprint", "callable_fingerprint",
           "array_digest"]

FORMAT = "csm-chunk-store/2"
MANIFEST = "manifest.json"
LOCK = ".lock"


class CheckpointLockedError(InputError):
    """Another process holds the checkpoint directory (one run per directory at a time)."""
_PROBE_SEED = 20240613


def array_digest(*arrays: Any, digits: int = 12) -> str:
    """SHA-256 (first 16 hex digits) of arrays rounded to ``digits`` significant digits.

    Rounding makes the digest insensitive to last-ulp differences between BLAS builds while
    still detecting any change of a parameter that matters.
    """
    h = hashlib.sha256()
    for a in arrays:
        arr = np.asarray(a, dtype=float).ravel()
        txt = ",".join(f"{v:.{digits - 1}e}" for v in arr.tolist())
        h.update(txt.encode())
        h.update(b";")
    return h.hexdigest()[:16]


def problem_fingerprint(problem: Any) -> dict[str, Any]:
    """What identifies a problem for a checkpoint: name, class, dimension, parameters, probe.

    ``parameters`` is the problem's ``params`` or ``parameters`` attribute when it has one
    (its JSON form, or a digest of it when long).  ``probe`` is a digest of the loss and
    gradient at three fixed pseudo-random points, so two problems with the same name but
    different data (another target, another sample of measurements) never match.
    """
    fp: dict[str, Any] = {
        "name": str(getattr(problem, "name", type(problem).__name__)),
        "class": type(problem).__qualname__,
        "dim": int(getattr(problem, "dim", 0)),
    }
    params = getattr(problem, "params", None)
    if params is None:
        params = getattr(problem, "parameters", None)
    if params is not None and not callable(params):
        try:
            txt = json.dumps(to_jsonable(params), sort_keys=True)
        except (TypeError, ValueError):
            txt = repr(params)
        fp["parameters"] = txt if len(txt) <= 2000 else "sha256:" + hashlib.sha256(
            txt.encode()).hexdigest()[:16]
    try:
        P = np.random.default_rng(_PROBE_SEED).standard_normal((3, fp["dim"]))
        with np.errstate(all="ignore"):
            fp["probe"] = array_digest(problem.loss(P), problem.gradient(P))
    except Exception as exc:  # noqa: BLE001 - a fingerprint must not fail the run
        fp["probe"] = f"unavailable ({type(exc).__name__})"
    return fp


def callable_fingerprint(func: Any, probe: Any = None) -> str:
    """Identity of a callable (e.g. a sampler): qualified name + digest of its pickle.

    Module-level functions pickle by reference (so the digest is of the name); callable
    objects and ``functools.partial`` pickle with their state, so changed parameters show.
    ``probe``, if given, is a callable returning an array whose digest is appended.
    """
    qual = getattr(func, "__qualname__", type(func).__qualname__)
    name = f"{getattr(func, '__module__', '?')}:{qual}"
    try:
        name += ":" + hashlib.sha256(pickle.dumps(func)).hexdigest()[:12]
    except Exception:  # noqa: BLE001 - unpicklable: the name must do
        pass
    if probe is not None:
        try:
            name += ":probe=" + array_digest(probe())
        except Exception as exc:  # noqa: BLE001
            name += f":probe unavailable ({type(exc).__name__})"
    return name


class ChunkStore:
    """Chunk files + manifest in one directory.

    Parameters
    ----------
    directory : str or Path
        Created if missing.  An existing non-empty directory must hold a manifest written by
        a run with the same ``fingerprint``.
    fingerprint : dict
        JSON-safe description of everything that determines the chunks' contents.
    n_chunks : int
        Number of chunks of the whole run (recorded in the manifest).

    The store holds an exclusive lock (``DIR/.lock``, :func:`fcntl.flock`) until
    :meth:`close` (or process exit), so two runs never share a directory.  The manifest records
    the SHA-256 of every chunk file when it is written; :meth:`load` returns a chunk only when
    its bytes still have that digest (a tampered, truncated or foreign chunk is recomputed,
    with a warning).

    Raises
    ------
    CheckpointMismatchError
        The directory's manifest has another fingerprint (every differing key is named with
        both values), is malformed, or the directory holds files but no manifest.
    CheckpointLockedError
        Another process holds the directory.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: Mapping[str, Any],
                 n_chunks: int) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError(
                f"`checkpoint` must be a directory, got the file {str(self.directory)!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fingerprint = json.loads(json.dumps(to_jsonable(dict(fingerprint)), sort_keys=True))
        self.n_chunks = int(n_chunks)
        self._lock_fd = self._acquire_lock()
        try:
            self._remove_stale_temporaries()
            manifest = self.directory / MANIFEST
            if manifest.exists():
                self.digests = self._check_manifest(manifest)
            else:
                leftovers = [p.name for p in self.directory.iterdir() if p.name != LOCK]
                if leftovers:
                    raise CheckpointMismatchError(
                        f"`checkpoint` directory {str(self.directory)!r} is not empty and has no "
                        f"{MANIFEST} (found {sorted(leftovers)[:5]}); use an empty or new directory"
                    )
                self.digests = {}
                self._write_manifest()
        except BaseException:
            self.close()
            raise

    # -- the lock ---------------------------------------------------------------------
    def _acquire_lock(self) -> int:
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CheckpointLockedError(
                f"`checkpoint` directory {str(self.directory)!r} is in use by another run "
                "(its lock is held); wait for it to finish or use another directory") from None
        return fd

    def close(self) -> None:
        """Release the directory's lock (idempotent)."""
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "ChunkStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write_manifest(self) -> None:
        self._write_json(self.directory / MANIFEST, {
            "format": FORMAT, "n_chunks": self.n_chunks, "arguments": self.fingerprint,
            "chunks": {str(k): v for k, v in sorted(self.digests.items())}})

    # -- manifest ---------------------------------------------------------------------
    def _check_manifest(self, path: Path) -> dict[int, str]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointMismatchError(
                f"`checkpoint` manifest {str(path)!r} is unreadable ({exc}); use a new directory"
            ) from None
        if (not isinstance(data, dict) or not isinstance(data.get("arguments", {}), dict)
                or not isinstance(data.get("chunks", {}), dict)):
            raise CheckpointMismatchError(
                f"`checkpoint` manifest {str(path)!r} is malformed (expected a JSON object with "
                "'format', 'n_chunks', 'arguments' and 'chunks' objects); use a new directory")
        if data.get("format") != FORMAT:
            raise CheckpointMismatchError(
                f"`checkpoint` manifest {str(path)!r} has format {data.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        old = data.get("arguments", {})
        new = self.fingerprint
        diffs = []
        for key in sorted(set(old) | set(new)):
            if old.get(key, "<missing>") != new.get(key, "<missing>"):
                diffs.append(f"{key}: checkpoint has {old.get(key, '<missing>')!r}, "
                             f"this run has {new.get(key, '<missing>')!r}")
        if data.get("n_chunks") != self.n_chunks and not diffs:
            diffs.append(f"n_chunks: checkpoint has {data.get('n_chunks')!r}, this run has "
                         f"{self.n_chunks!r}")
        if diffs:
            raise CheckpointMismatchError(
                f"`checkpoint` directory {str(self.directory)!r} was written with different "
                "arguments; refusing to mix results. Differences: " + "; ".join(diffs)
                + ". Rerun with the original arguments or use a new directory."
            )
        digests = {}
        for k, v in data.get("chunks", {}).items():
            try:
                digests[int(k)] = str(v)
            except ValueError:
                continue
        return digests

    # -- chunks -----------------------------------------------------------------------
    def path(self, index: int) -> Path:
        return self.directory / f"chunk-{int(index):06d}.npz"

    def done(self) -> list[int]:
        """Indices of chunk files present (not validated)."""
        out = []
        for p in self.directory.glob("chunk-*.npz"):
            try:
                i = int(p.stem.split("-")[1])
            except (IndexError, ValueError):
                continue
            if 0 <= i < self.n_chunks:
                out.append(i)
        return sorted(out)

    def load(self, index: int) -> dict[str, np.ndarray] | None:
        """The arrays of chunk ``index``, or None (then recomputed) when missing, unreadable or
        not the bytes this store wrote (SHA-256 recorded in the manifest)."""
        p = self.path(index)
        if p.is_symlink() or not p.is_file():
            return None
        try:
            raw = p.read_bytes()
        except OSError:
            return None
        want = self.digests.get(int(index))
        if want is None or hashlib.sha256(raw).hexdigest() != want:
            warnings.warn(f"checkpoint chunk {str(p)!r} does not match the digest recorded when "
                          "it was written (tampered, truncated or from another run); recomputing it",
                          RuntimeWarning, stacklevel=2)
            return None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - corrupt file: recompute the chunk
            warnings.warn(f"checkpoint chunk {str(p)!r} is unreadable ({exc}); recomputing it",
                          RuntimeWarning, stacklevel=2)
            return None

    def save(self, index: int, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write chunk ``index`` atomically and record its SHA-256 in the manifest."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        raw = buf.getvalue()
        # digest first: a kill between the two writes leaves a recorded digest without its
        # file (recomputed), never a file without its digest (which would be thrown away)
        self.digests[int(index)] = hashlib.sha256(raw).hexdigest()
        self._write_manifest()
        return atomic_write(self.path(index), raw)

    # -- helpers ----------------------------------------------------------------------
    def _write_json(self, path: Path, data: Any) -> None:
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True))

    def _remove_stale_temporaries(self) -> None:
        stale = [*self.directory.glob(".chunk-*.tmp"), *self.directory.glob(".manifest.json-*.tmp")]
        for p in stale:
            try:
                p.unlink()
            except OSError:
                pass

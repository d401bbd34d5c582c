"""Writing files that stay where they are meant to be (one home for output safety).

Every file csm writes (reports, figures, JSON, checkpoint chunks) goes through
:func:`atomic_write`: the data goes to a temporary file in the same directory, is flushed to
disk and then renamed over the final name with :func:`os.replace`.  A rename replaces a
symbolic link *itself*, never the file it points to, so a symlink planted at the destination
cannot redirect the write.  With ``root`` the destination's directory must resolve inside
``root`` (a symlinked sub-directory pointing elsewhere is refused).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError

__all__ = ["atomic_write", "inside"]


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether the directory of ``path`` resolves inside ``root`` (symlinks followed)."""
    parent = Path(os.path.realpath(Path(path).parent))
    base = Path(os.path.realpath(root))
    return parent == base or base in parent.parents


def atomic_write(path: str | os.PathLike, data: bytes | str, *, root: str | os.PathLike | None = None,
                 mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically, replacing (never following) a symlink there.

    Raises :class:`~csm.InputError` when ``root`` is given and ``path`` would land outside it.
    """
    path = Path(path)
    if root is not None and not inside(path, root):
        raise InputError(f"refusing to write {str(path)!r}: its directory resolves outside "
                         f"{str(root)!r} (a symbolic link?)")
    raw = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path

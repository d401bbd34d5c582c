"""Figures without pyplot: a matplotlib Figure on the Agg canvas (no display, no global state).

Every PNG is rendered into memory and written with :func:`csm._io.atomic_write` (a temporary
file renamed over the destination: a symbolic link planted there is replaced, never followed;
with ``root`` the destination must resolve inside that folder).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ._io import atomic_write

__all__ = ["new_figure", "save_figure", "figure_path"]


def new_figure(width: float = 6.0, height: float = 4.0, dpi: int = 110) -> Any:
    """A matplotlib Figure on the Agg canvas (pyplot and the global backend are untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_path(out_dir: Path | str, name: str) -> Path:
    """``out_dir/figures/name.png`` (the folder is created)."""
    p = Path(out_dir) / "figures"
    p.mkdir(parents=True, exist_ok=True)
    return p / f"{name}.png"


def save_figure(fig: Any, path: Path | str, *, root: Path | str | None = None) -> str:
    """Lay out and write ``fig`` as PNG (atomically; inside ``root`` if given); return the path.

    ``root`` defaults to the folder above ``figures/`` when ``path`` is ``.../figures/x.png``
    (the output folder of ``csm reproduce``), else to the file's own folder.
    """
    path = Path(path)
    if root is None:
        root = path.parent.parent if path.parent.name == "figures" else path.parent
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue(), root=root)
    return str(path)

"""Figures without pyplot: a matplotlib Figure on the Agg canvas (no display, no global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def save_figure(fig: Any, path: Path | str) -> str:
    """Lay out and write ``fig`` as PNG; return the path as a string."""
    fig.tight_layout()
    fig.savefig(path, format="png")
    return str(path)

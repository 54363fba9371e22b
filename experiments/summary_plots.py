"""The figure and axes conventions the sweep experiments' summaries share (matplotlib, no display)."""

from __future__ import annotations

from typing import Any

__all__ = ["figure", "style_axes"]


def figure(nrows: int, ncols: int, title: str, panel_width: float = 4.3, panel_height: float = 3.4) -> Any:
    """A ``nrows x ncols`` figure (at least 7 inches wide, so that the title fits) with ``title`` on top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(panel_width * ncols, 7.0), panel_height * nrows + 0.5))
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def style_axes(ax: Any, xlabel: str, ylabel: str, title: str, legend_size: float | None = 7) -> None:
    """Labels, a small title, a light grid and (unless ``legend_size`` is ``None``) a legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if legend_size is not None:
        ax.legend(fontsize=legend_size)

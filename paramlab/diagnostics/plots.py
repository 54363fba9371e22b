"""Plots of the diagnostics (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_coord_check"]


def plot_coord_check(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str = "",
    modules: Sequence[str] | None = None,
) -> None:
    """Save the coordinate check as a PNG: ``l1`` against width, log-log (base 2), one line per module.

    The layout of ``microsoft/mup``'s ``plot_coord_data``: one panel per step ``t`` (columns), and
    one row per (parametrization, optimizer) found in ``records``. A flat line is width-independent.

    Args:
      records: :func:`paramlab.diagnostics.coord_check` records.
      path: the PNG file to write.
      title: the figure's title.
      modules: plot only these modules (default: all, in sorted order).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not records:
        raise ValueError("plot_coord_check: no records to plot.")
    rows = list(dict.fromkeys((r["parametrization"], r["optimizer"]) for r in records))
    steps = sorted({r["step"] for r in records})
    names = list(modules) if modules is not None else sorted({r["module"] for r in records})
    unknown = sorted(set(names) - {r["module"] for r in records})
    if unknown:
        raise ValueError(f"plot_coord_check: modules {unknown} are not in the records.")
    palette = (
        colormaps["tab10"].colors
        if len(names) <= 10
        else colormaps["viridis"](np.linspace(0, 0.95, len(names)))
    )
    fig = Figure(figsize=(4.2 * len(steps) + 2.5, 3.6 * len(rows)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(steps), squeeze=False, sharex=True)
    for i, (name, opt) in enumerate(rows):
        for j, step in enumerate(steps):
            ax = axes[i][j]
            for k, module in enumerate(names):
                points = sorted(
                    (r["width"], r["l1"])
                    for r in records
                    if (r["parametrization"], r["optimizer"], r["step"], r["module"])
                    == (name, opt, step, module)
                    and r["l1"] > 0
                )
                if points:
                    ax.plot(*zip(*points), marker="o", markersize=3, color=palette[k], label=module)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_title(f"{name} / {opt}, t={step}" if name or opt else f"t={step}")
            ax.set_xlabel("width")
            if j == 0:
                ax.set_ylabel("mean |output|")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[i][-1].get_legend_handles_labels()
        if handles:
            axes[i][-1].legend(handles, labels, fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)

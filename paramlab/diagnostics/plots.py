"""Plots of the diagnostics (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_coord_check", "plot_depth_check"]


def plot_coord_check(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str = "",
    modules: Sequence[str] | None = None,
    output_name: str = "output",
    min_octaves: float = 4.0,
) -> None:
    """Save the coordinate check as a PNG: ``l1`` against width, log-log (base 2), one line per module.

    The layout of ``microsoft/mup``'s ``plot_coord_data``: one panel per step ``t`` (columns), and
    one row per (parametrization, optimizer) found in ``records``, the y-axis shared along a row. A
    flat line is width-independent; zero values (a zero-initialised readout at step 1) are not drawn.

    Args:
      records: :func:`paramlab.diagnostics.coord_check` records; ``path``: the PNG to write.
      modules: plot only these modules (default: all, in sorted order).
      output_name: the model's own output, drawn dashed in black.
      min_octaves: each row's y-axis spans at least this many powers of 2 (a flat curve looks flat).
    """
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
    legend_cols = math.ceil(len(names) / 28)
    legend_width = 1.9 * legend_cols
    width = 4.2 * len(steps) + legend_width
    fig = Figure(figsize=(width, 3.6 * len(rows) + 0.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(steps), squeeze=False, sharex=True)
    handles: dict[str, Any] = {}
    for i, (name, opt) in enumerate(rows):
        row = [r for r in records if (r["parametrization"], r["optimizer"]) == (name, opt) and r["l1"] > 0]
        for j, step in enumerate(steps):
            ax = axes[i][j]
            handles.update(_draw_modules(ax, row, step, names, output_name))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            if row:
                ax.set_ylim(*_log_limits([r["l1"] for r in row], min_octaves))
            ax.set_title(f"{name} / {opt}, t={step}" if name or opt else f"t={step}")
            ax.set_xlabel("width")
            if j == 0:
                ax.set_ylabel("mean |output|")
            ax.grid(True, which="both", alpha=0.3)
    if handles:
        labels = [m for m in names if m in handles]
        fig.legend([handles[m] for m in labels], labels, loc="center right", fontsize=7, ncol=legend_cols)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.0, 1.0 - legend_width / width, 1.0))
    fig.savefig(os.fspath(path), dpi=100)


_LINESTYLES = ("-", "--", ":", "-.")


def _draw_modules(ax: Any, row: list, step: int, names: Sequence[str], output_name: str) -> dict[str, Any]:
    """One panel's lines (``l1`` against width per module at ``step``); their legend handles."""
    from matplotlib import colormaps

    colors = colormaps["tab10"].colors
    handles = {}
    for k, module in enumerate(names):
        points = sorted((r["width"], r["l1"]) for r in row if (r["step"], r["module"]) == (step, module))
        if not points:
            continue
        if module == output_name:
            style = dict(color="black", linestyle="--", linewidth=2.0, zorder=3)
        else:
            style = dict(color=colors[k % 10], linestyle=_LINESTYLES[(k // 10) % len(_LINESTYLES)])
        (line,) = ax.plot(*zip(*points), marker="o", markersize=3, label=module, **style)
        handles[module] = line
    return handles


def _log_limits(values: Sequence[float], min_octaves: float) -> tuple[float, float]:
    """y-limits covering ``values`` (all > 0) and at least ``min_octaves`` powers of 2, centred in log."""
    lo, hi = np.log2(min(values)), np.log2(max(values))
    pad = max(0.1 * (hi - lo), 0.5 * (min_octaves - (hi - lo)), 0.0)
    return float(2 ** (lo - pad)), float(2 ** (hi + pad))


def plot_depth_check(records: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Save the depth coordinate check (:func:`~paramlab.diagnostics.depth_check`) as a PNG: the last
    block's ``rms`` and ``delta_rms``, the mean per-block ``update_rms`` and ``nonlinear_fraction``
    against depth (log-log), one line per label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from paramlab.diagnostics.depth_check import depth_check_summary

    rows = depth_check_summary(records)
    if not rows:
        raise ValueError("plot_depth_check: records is empty.")
    panels = (
        ("final_rms", "last block: RMS(h) at init"),
        ("final_delta_rms", "last block: RMS(h(T) - h(0))"),
        ("mean_update_rms", "per block: RMS of its own update (mean)"),
        ("mean_nonlinear_fraction", "per block: nonlinear fraction of its change (mean)"),
    )
    slopes = {
        "final_rms": "rms_slope",
        "final_delta_rms": "delta_slope",
        "mean_update_rms": "update_slope",
        "mean_nonlinear_fraction": "nonlinear_slope",
    }
    fig = Figure(figsize=(4.2 * len(panels), 3.8))
    FigureCanvasAgg(fig)
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for row in rows:
            slope = row[slopes[key]]
            ax.plot(row["depths"], row[key], "o-", label=f"{row['label']} (slope {slope:.2f})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("depth (blocks)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=90)

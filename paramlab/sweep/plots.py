"""Learning-rate transfer plots: loss against learning rate, one line per width, one panel per group.

Each point is the seed-mean of ``y`` (e.g. ``final_loss``) at one ``x`` (e.g. ``lr``, log axis);
a grid point with a diverged seed is drawn as a cross at the top of its panel, and each line's
optimum as a star. Written with matplotlib's Agg canvas (no display needed).
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramlab.sweep.results import mean_over_seeds

__all__ = ["plot_curves", "plot_lr_transfer", "plot_optimum"]


def plot_lr_transfer(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    panel_key: str = "parametrization",
    line_key: str = "width",
    x: str = "learning_rate",
    y: str = "final_loss",
    title: str = "",
    y_max: float | None = None,
) -> None:
    """Save the loss-vs-learning-rate figure of ``records`` as a PNG.

    Args:
      records: sweep records with ``panel_key``, ``line_key``, ``x`` and ``y`` (see
        :mod:`paramlab.sweep.results`).
      path: the PNG to write; ``title``: the figure's title.
      panel_key: one panel per distinct value (e.g. parametrization).
      line_key: one line per distinct value within a panel (e.g. width), coloured in order.
      x, y: the axes (``x`` on a log scale).
      y_max: the top of every panel (default: a little above the largest finite ``y`` shown, capped
        at the largest ``initial_loss`` of the records if they have one).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not records:
        raise ValueError("plot_lr_transfer: records is empty.")
    means = mean_over_seeds(records, (panel_key, line_key, x), y)
    panels = _ordered(k[0] for k in means)
    lines = _ordered(k[1] for k in means)
    finite = [v for v in means.values() if math.isfinite(v)]
    top = y_max if y_max is not None else _default_top(records, finite)
    bottom = min(finite) - 0.05 * (top - min(finite)) if finite else 0.0

    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(max(4.2 * ncols, 7.0), 3.4 * nrows + 0.4))
    FigureCanvasAgg(fig)
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(lines), 1)))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for color, line in zip(colors, lines):
            curve = sorted((k[2], v) for k, v in means.items() if k[0] == panel and k[1] == line)
            if curve:
                _draw_curve(ax, curve, top, color, f"{line_key}={line}")
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom, top)
        ax.set_title(f"{panel_key}={panel}")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    if title:
        _suptitle(fig, title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=90)


def plot_optimum(
    table: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    x: str = "depth",
    line_key: str = "width",
    panel_key: str = "recipe",
    best: str = "best_learning_rate",
    fitted: str | None = None,
    fitted_log2_std: str | None = None,
    title: str = "",
) -> None:
    """Save the best learning rate against ``x`` (log 2 axes), one line per ``line_key``, one panel
    per ``panel_key``, from the rows of :func:`~paramlab.sweep.optimal_settings` (a row whose every
    run diverged, ``best`` ``None``, is left out).

    With ``fitted`` (e.g. ``"fitted_learning_rate"`` of :func:`~paramlab.sweep.optimum_statistics`),
    each row's fitted optimum is drawn as a diamond beside the grid optimum, with an error bar of
    ``2 ** (±fitted_log2_std)`` where that key is given and not ``None``.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in table if r.get(best) is not None]
    if not rows:
        raise ValueError(f"plot_optimum: no row has a {best}.")
    panels = _ordered(r[panel_key] for r in rows)
    lines = _ordered(r[line_key] for r in rows)
    fig = Figure(figsize=(max(4.2 * len(panels), 7.0), 3.4))
    FigureCanvasAgg(fig)
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(lines), 1)))
    ax0 = None
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, sharey=ax0)
        ax0 = ax0 or ax
        for color, line in zip(colors, lines):
            points = sorted((r[x], r[best]) for r in rows if r[panel_key] == panel and r[line_key] == line)
            if points:
                ax.plot(*zip(*points), "o-", color=color, label=f"{line_key}={line}")
            if fitted:
                members = [r for r in rows if r[panel_key] == panel and r[line_key] == line]
                _draw_fitted(ax, members, x, fitted, fitted_log2_std, color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_title(f"{panel_key}={panel}")
        ax.set_xlabel(x)
        ax.set_ylabel(best)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    if title:
        _suptitle(fig, title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=90)


def plot_curves(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    panel_key: str = "recipe",
    line_key: str = "depth",
    x: str = "step",
    y: str = "train_loss",
    title: str = "",
) -> None:
    """Save training curves as a PNG: each row holds the lists ``x`` and ``y`` (non-finite points are
    left out), one panel per ``panel_key``, one line per ``line_key`` (coloured in order)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("plot_curves: rows is empty.")
    panels = _ordered(r[panel_key] for r in rows)
    lines = _ordered(r[line_key] for r in rows)
    finite = [v for r in rows for v in r[y] if v is not None and math.isfinite(v)]
    fig = Figure(figsize=(max(4.2 * len(panels), 7.0), 3.4))
    FigureCanvasAgg(fig)
    colors = dict(zip(lines, colormaps["viridis"](np.linspace(0.0, 0.9, max(len(lines), 1)))))
    ax0 = None
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, sharey=ax0)
        ax0 = ax0 or ax
        for row in (r for r in rows if r[panel_key] == panel):
            xs = np.asarray(row[x], float)
            ys = np.asarray([math.inf if v is None else v for v in row[y]], float)
            ok = np.isfinite(ys)
            ax.plot(xs[ok], ys[ok], "-", color=colors[row[line_key]], label=f"{line_key}={row[line_key]}")
        ax.set_title(f"{panel_key}={panel}", fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        if finite:
            ax.set_ylim(min(finite) - 0.02, np.percentile(finite, 95) + 0.05)
        ax.legend(fontsize=7)
    if title:
        _suptitle(fig, title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=90)


def _suptitle(fig: Any, title: str) -> None:
    """The figure's title, wrapped to its width."""
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 15)), fontsize=9)


def _ordered(values: Any) -> list:
    """Distinct values in natural order: numbers first, then strings with their digit runs compared as
    numbers (``"width 64"`` before ``"width 128"``)."""

    def key(value: Any) -> tuple:
        if isinstance(value, (int, float)):
            return (0, value)
        parts = re.split(r"(\d+)", str(value))
        return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))

    return sorted(set(values), key=key)


def _draw_fitted(
    ax: Any, rows: list[Mapping[str, Any]], x: str, fitted: str, log2_std: str | None, color: Any
) -> None:
    """Fitted optima as diamonds with multiplicative (log 2) error bars; rows without one are skipped."""
    rows = [r for r in rows if r.get(fitted) is not None]
    if not rows:
        return
    xs = np.array([r[x] for r in rows], float)
    ys = np.array([r[fitted] for r in rows], float)
    spread = np.array([(r.get(log2_std) or 0.0) if log2_std else 0.0 for r in rows], float)
    error = np.stack([ys - ys * 2.0**-spread, ys * 2.0**spread - ys])
    ax.errorbar(xs * 1.06, ys, yerr=error, fmt="D", color=color, markersize=4, capsize=2, alpha=0.8)


def _draw_curve(ax: Any, curve: list[tuple[float, float]], top: float, color: Any, label: str) -> None:
    """One loss curve: finite points joined (clipped at ``top``), diverged ones as x, the best as a star."""
    xs = np.array([c[0] for c in curve], float)
    ys = np.array([c[1] for c in curve], float)
    ok = np.isfinite(ys)
    ax.plot(xs[ok], np.minimum(ys[ok], top), "o-", color=color, markersize=3, label=label)
    ax.plot(xs[~ok], np.full((~ok).sum(), top), "x", color=color, markersize=6)
    if ok.any():
        best = np.argmin(np.where(ok, ys, np.inf))
        ax.plot(xs[best], ys[best], "*", color=color, markersize=12, markeredgecolor="black")


def _default_top(records: Sequence[Mapping[str, Any]], finite: list[float]) -> float:
    if not finite:
        return 1.0
    top = max(finite)
    inits = [
        float(r["initial_loss"]) for r in records if math.isfinite(float(r.get("initial_loss", math.inf)))
    ]
    if inits:
        top = min(top, max(inits))
    return top + 0.05 * (top - min(finite)) + 1e-6

"""The summary of a joint (learning rate, weight decay) grid over widths: optima, spreads, spectra.

Written by ``experiments.weight_decay_transfer`` after its sweeps (or again with ``--results``). Per
rule and width: the joint optimum of the seed-mean held-out loss over the grid, its loss ± std over
seeds, the fitted optimum of each hyperparameter with the other at its best (a parabola in log2 and
its bootstrap spread over seeds, :func:`paramlab.sweep.optimum_statistics`), the loss at the optimum
transferred from the smallest width, and ``sigma_1`` of every matrix at that transferred setting.
The loss the grid's strongest decay costs at the width's best LR shows whether the decay keeps its
effect as the width grows. Per rule: how many grid steps each optimum moves across widths and the
largest ratio across widths of a matrix's ``sigma_1`` over its spectral scale (``docs/reference.md`` §8).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experiments.summary_plots import figure, style_axes

__all__ = ["optimum_rows", "write_summary"]

LR, WD = "learning_rate", "weight_decay"
COLUMNS = (
    "weight_decay_rule",
    "width",
    "tokens_per_parameter",
    "best_learning_rate",
    "best_weight_decay",
    "best_final_loss",
    "best_final_loss_std",
    "fitted_learning_rate",
    "fitted_log2_learning_rate_std",
    "fitted_weight_decay",
    "fitted_log2_weight_decay_std",
    "transferred_final_loss",
    "transfer_excess_percent",
    "largest_decay_excess",
    "n_diverged",
)


def optimum_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (rule, width): the module docstring's columns plus the grid indices of the optimum
    and ``sigma_1/<path>`` (seed mean) at the setting transferred from the smallest width."""
    from paramlab.sweep import mean_over_seeds, optimum_statistics

    key = ("weight_decay_rule", "width", LR, WD)
    means = mean_over_seeds(records, key)
    lrs, wds = sorted({k[2] for k in means}), sorted({k[3] for k in means})
    rows = []
    for rule in sorted({k[0] for k in means}):
        widths = sorted({k[1] for k in means if k[0] == rule})
        grids = {w: {(k[2], k[3]): v for k, v in means.items() if k[:2] == (rule, w)} for w in widths}
        best = {w: min(grid, key=grid.get) for w, grid in grids.items()}
        proxy = best[widths[0]]
        for width in widths:
            lr, wd = best[width]
            mine = [r for r in records if (r["weight_decay_rule"], r["width"]) == (rule, width)]
            lr_stats = optimum_statistics([r for r in mine if r[WD] == wd], ("width",), x=LR)[0]
            wd_stats = optimum_statistics([r for r in mine if r[LR] == lr], ("width",), x=WD)[0]
            at_best = [r["final_loss"] for r in mine if (r[LR], r[WD]) == (lr, wd)]
            transferred = grids[width][proxy]
            rows.append(
                {
                    "weight_decay_rule": rule,
                    "width": width,
                    "tokens_per_parameter": mine[0]["tokens_per_parameter"],
                    "best_learning_rate": lr,
                    "best_weight_decay": wd,
                    "learning_rate_index": lrs.index(lr),
                    "weight_decay_index": wds.index(wd),
                    "best_final_loss": grids[width][(lr, wd)],
                    "best_final_loss_std": float(np.std(at_best, ddof=min(1, len(at_best) - 1))),
                    **{k: v for k, v in lr_stats.items() if k.startswith("fitted")},
                    **{k: v for k, v in wd_stats.items() if k.startswith("fitted")},
                    "transferred_final_loss": transferred,
                    "transfer_excess_percent": 100 * (transferred / grids[width][(lr, wd)] - 1),
                    # how much the strongest decay of the grid costs at this width's best LR
                    "largest_decay_excess": grids[width][(lr, wds[-1])] - grids[width][(lr, wd)],
                    "n_diverged": sum(not math.isfinite(v) for v in grids[width].values()),
                    **_sigmas_at(mine, proxy),
                }
            )
    return rows


def _sigmas_at(records: Sequence[dict[str, Any]], setting: tuple[float, float]) -> dict[str, float]:
    """The seed mean of every ``sigma_1/<path>`` at ``(learning rate, weight decay) = setting``, and the
    ``spectral_scale/<path>`` the records carry."""
    chosen = [r for r in records if (r[LR], r[WD]) == setting]
    names = sorted(k for k in chosen[0] if k.startswith("sigma_1/"))
    scales = {k: v for k, v in chosen[0].items() if k.startswith("spectral_scale/")}
    return {**{name: float(np.mean([r[name] for r in chosen])) for name in names}, **scales}


def _normalised_sigma(row: dict[str, Any], name: str) -> float:
    """``sigma_1`` over its spectral scale (1 where the records carry none)."""
    return row[name] / row.get("spectral_scale/" + name.removeprefix("sigma_1/"), 1.0)


def rule_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: the optimum's shift in grid steps (LR, decay) and the largest ratio across widths of a
    matrix's ``sigma_1`` over its spectral scale (max over matrices of max / min over widths, at the
    transferred setting), and the median of those ratios."""
    out = []
    for rule in sorted({r["weight_decay_rule"] for r in rows}):
        mine = [r for r in rows if r["weight_decay_rule"] == rule]
        names = sorted(k for k in mine[0] if k.startswith("sigma_1/"))
        normalised = {n: [_normalised_sigma(r, n) for r in mine] for n in names}
        ratios = {n: max(v) / min(v) for n, v in normalised.items()}
        worst = max(ratios, key=ratios.get)
        out.append(
            {
                "weight_decay_rule": rule,
                "learning_rate_shift": _spread(mine, "learning_rate_index"),
                "weight_decay_shift": _spread(mine, "weight_decay_index"),
                "max_sigma_ratio": ratios[worst],
                "max_sigma_ratio_matrix": worst.removeprefix("sigma_1/"),
                "median_sigma_ratio": float(np.median(list(ratios.values()))),
            }
        )
    return out


def _spread(rows: Sequence[dict[str, Any]], key: str) -> int:
    return max(r[key] for r in rows) - min(r[key] for r in rows)


def write_summary(
    records: Sequence[dict[str, Any]],
    out: str,
    title: str = "",
    spectra: Sequence[dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """``optimum.txt`` / ``.json``, ``wd_transfer.png``, ``sigma_transfer.png`` and (with ``spectra``)
    ``sigma_curves.png`` in ``out``; returns the text."""
    from paramlab.sweep import format_table, strict_json

    rows = optimum_rows(records)
    rules = rule_summary(rows)
    text = "\n".join(
        [title, "", format_table(rows, COLUMNS), "", "per rule (shifts in grid steps across widths):"]
        + [format_table(rules)]
    )
    with open(os.path.join(out, "optimum.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "optimum.json"), "w") as f:
        json.dump(strict_json({"title": title, "cells": rows, "rules": rules}), f, indent=1)
    _plot_losses(records, rows, os.path.join(out, "wd_transfer.png"), title)
    _plot_sigmas(rows, os.path.join(out, "sigma_transfer.png"), title)
    if spectra:
        _plot_sigma_curves(spectra, rows, os.path.join(out, "sigma_curves.png"), title)
    log(text)
    return text


def _colors(n: int) -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0.0, 0.9, max(n, 1)))


def _seed_stats(records: Sequence[dict[str, Any]], fixed: dict[str, Any], x: str) -> tuple:
    """``(xs, mean, std)`` of the final loss along ``x`` over the records matching ``fixed``."""
    chosen = [r for r in records if all(r[k] == v for k, v in fixed.items())]
    xs = sorted({r[x] for r in chosen})
    losses = [[r["final_loss"] for r in chosen if r[x] == v] for v in xs]
    finite = lambda ls: [v for v in ls if v is not None and math.isfinite(v)] or [math.nan]
    return xs, [np.mean(finite(ls)) for ls in losses], [np.std(finite(ls)) for ls in losses]


def _plot_losses(
    records: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], path: str, title: str
) -> None:
    """Per rule: loss against LR at each width's best decay, and against decay at its best LR."""
    rules = sorted({r["weight_decay_rule"] for r in rows})
    fig = figure(len(rules), 2, title)
    for i, rule in enumerate(rules):
        mine = [r for r in rows if r["weight_decay_rule"] == rule]
        for j, (x, other) in enumerate(((LR, WD), (WD, LR))):
            ax = fig.add_subplot(len(rules), 2, 2 * i + j + 1)
            for color, row in zip(_colors(len(mine)), mine):
                fixed = {"weight_decay_rule": rule, "width": row["width"], other: row[f"best_{other}"]}
                xs, mean, std = _seed_stats(records, fixed, x)
                ax.errorbar(
                    xs,
                    mean,
                    yerr=std,
                    color=color,
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=f"width {row['width']}",
                )
            ax.set_xscale("log", base=2)
            style_axes(
                ax,
                f"{x} (at each width's best {other})",
                "held-out loss (nats/byte)",
                f"weight_decay_rule={rule}",
                legend_size=7,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _plot_sigmas(rows: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """Per rule: every matrix's final ``sigma_1`` against width at the transferred setting."""
    rules = sorted({r["weight_decay_rule"] for r in rows})
    fig = figure(1, len(rules), title)
    for i, rule in enumerate(rules):
        mine = [r for r in rows if r["weight_decay_rule"] == rule]
        names = sorted(k for k in mine[0] if k.startswith("sigma_1/"))
        ax = fig.add_subplot(1, len(rules), i + 1)
        for color, name in zip(_colors(len(names)), names):
            ax.plot(
                [r["width"] for r in mine],
                [r[name] for r in mine],
                marker="o",
                ms=3,
                color=color,
                label=name[8:],
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        style_axes(ax, "width", "sigma_1 (effective weight)", f"weight_decay_rule={rule}", legend_size=5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _plot_sigma_curves(
    spectra: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], path: str, title: str
) -> None:
    """Per rule and for the first and last hidden matrices: ``sigma_1`` over training, per width, at the
    transferred setting (seed mean)."""
    rules = sorted({r["weight_decay_rule"] for r in rows})
    names = sorted({s["path"] for s in spectra})
    shown = [n for n in names if "embed" not in n and "readout" not in n][:1] + names[-1:]
    fig = figure(len(rules), len(shown), title)
    for i, rule in enumerate(rules):
        mine = [r for r in rows if r["weight_decay_rule"] == rule]
        proxy = (mine[0]["best_learning_rate"], mine[0]["best_weight_decay"])
        for j, name in enumerate(shown):
            ax = fig.add_subplot(len(rules), len(shown), i * len(shown) + j + 1)
            for color, row in zip(_colors(len(mine)), mine):
                curves = [
                    s
                    for s in spectra
                    if (s["weight_decay_rule"], s["width"], s["path"], s[LR], s[WD])
                    == (rule, row["width"], name, *proxy)
                ]
                ax.plot(
                    curves[0]["step"],
                    np.mean([c["sigma_1"] for c in curves], axis=0),
                    color=color,
                    label=f"width {row['width']}",
                )
            style_axes(ax, "step", "sigma_1", f"{rule}: {name}", legend_size=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)

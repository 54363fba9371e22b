"""The summary of ``experiments.stability``: LR sensitivity with its seed spread, logits against LR.

Per recipe, variant and width: the LR sensitivity (:func:`paramlab.diagnostics.lr_sensitivity`,
computed per seed over the LR grid, then mean ± std over seeds), the best seed-mean loss ± std, the
number of diverged runs, and the largest attention logit (seed mean of each run's maximum over
training) at the smallest and the largest learning rate.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experiments.summary_plots import figure, style_axes

__all__ = ["sensitivity_rows", "write_summary"]

GROUP = ("parametrization", "variant", "width")
COLUMNS = (
    *GROUP,
    "lr_sensitivity",
    "lr_sensitivity_std",
    "best_learning_rate",
    "best_final_loss",
    "best_final_loss_std",
    "n_diverged",
    "attention_logit_at_min_lr",
    "attention_logit_at_max_lr",
    "output_logit_at_max_lr",
)


def sensitivity_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (recipe, variant, width) with the columns of :data:`COLUMNS`."""
    from paramlab.diagnostics import lr_sensitivity_table
    from paramlab.optim.common import sort_key
    from paramlab.sweep import mean_over_seeds, optimal_settings

    per_seed = lr_sensitivity_table(records, (*GROUP, "seed"))
    best = {tuple(r[k] for k in GROUP): r for r in optimal_settings(records, GROUP)}
    logit = mean_over_seeds(records, (*GROUP, "learning_rate"), "max_attention_logit")
    output = mean_over_seeds(records, (*GROUP, "learning_rate"), "max_output_logit")
    lrs = sorted({r["learning_rate"] for r in records})
    rows = []
    for key in sorted(best, key=sort_key):
        values = [r["lr_sensitivity"] for r in per_seed if tuple(r[k] for k in GROUP) == key]
        b = best[key]
        at_best = [
            r["final_loss"]
            for r in records
            if tuple(r[k] for k in GROUP) == key and r["learning_rate"] == b["best_learning_rate"]
        ]
        rows.append(
            {
                **dict(zip(GROUP, key)),
                "lr_sensitivity": float(np.mean(values)),
                "lr_sensitivity_std": float(np.std(values, ddof=min(1, len(values) - 1))),
                "best_learning_rate": b["best_learning_rate"],
                "best_final_loss": b["best_final_loss"],
                "best_final_loss_std": float(np.std(at_best, ddof=min(1, len(at_best) - 1))),
                "n_diverged": sum(r["diverged"] for r in records if tuple(r[k] for k in GROUP) == key),
                "attention_logit_at_min_lr": logit.get((*key, lrs[0]), math.nan),
                "attention_logit_at_max_lr": logit.get((*key, lrs[-1]), math.nan),
                "output_logit_at_max_lr": output.get((*key, lrs[-1]), math.nan),
            }
        )
    return rows


def write_summary(
    records: Sequence[dict[str, Any]], out: str, title: str = "", log: Callable[[str], None] = print
) -> str:
    """``sensitivity.txt`` / ``.json``, ``stability_lr.png`` and ``stability_sensitivity.png`` in ``out``."""
    from paramlab.sweep import format_table, strict_json

    rows = sensitivity_rows(records)
    text = "\n".join([title, "", format_table(rows, COLUMNS)])
    with open(os.path.join(out, "sensitivity.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "sensitivity.json"), "w") as f:
        json.dump(strict_json({"title": title, "cells": rows}), f, indent=1)
    _plot_against_lr(records, os.path.join(out, "stability_lr.png"), title)
    _plot_sensitivity(rows, os.path.join(out, "stability_sensitivity.png"), title)
    log(text)
    return text


def _line_style(recipe: str, variant: str, recipes: list[str]) -> dict[str, Any]:
    color = ("tab:red", "tab:blue", "tab:green", "tab:purple")[recipes.index(recipe) % 4]
    return {"color": color, "linestyle": "-" if variant == "plain" else "--", "marker": "o", "ms": 3}


def _curve(records: Sequence[dict[str, Any]], key: tuple, y: str, cap: float = math.inf) -> tuple:
    """``(lrs, seed mean, seed std)`` of ``y`` for one (recipe, variant, width); non-finite -> ``cap``."""
    chosen = [r for r in records if tuple(r[k] for k in GROUP) == key]
    lrs = sorted({r["learning_rate"] for r in chosen})
    value = lambda r: min(r[y], cap) if r[y] is not None and math.isfinite(r[y]) else cap
    values = [[value(r) for r in chosen if r["learning_rate"] == lr] for lr in lrs]
    return lrs, [float(np.mean(v)) for v in values], [float(np.std(v)) for v in values]


def _plot_against_lr(records: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """Per width: final loss (diverged runs drawn at the initial loss) and the largest attention logit."""
    from paramlab.optim.common import sort_key

    widths = sorted({r["width"] for r in records})
    recipes = sorted({r["parametrization"] for r in records})
    keys = sorted({tuple(r[k] for k in GROUP) for r in records}, key=sort_key)
    cap = float(np.mean([r["initial_loss"] for r in records]))
    fig = figure(len(widths), 2, title)
    for i, width in enumerate(widths):
        for j, (y, label) in enumerate(
            (("final_loss", "held-out loss (nats/byte)"), ("max_attention_logit", "max attention logit"))
        ):
            ax = fig.add_subplot(len(widths), 2, 2 * i + j + 1)
            for key in (k for k in keys if k[2] == width):
                lrs, mean, std = _curve(records, key, y, cap if y == "final_loss" else math.inf)
                ax.errorbar(
                    lrs,
                    mean,
                    yerr=std,
                    capsize=2,
                    label=f"{key[0]} {key[1]}",
                    **_line_style(key[0], key[1], recipes),
                )
            ax.set_xscale("log", base=2)
            if j:
                ax.set_yscale("log")
            style_axes(ax, "learning rate", label, f"width {width}", legend_size=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _plot_sensitivity(rows: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """LR sensitivity (mean ± std over seeds) against width, one line per recipe and variant."""
    recipes = sorted({r["parametrization"] for r in rows})
    fig = figure(1, 1, title)
    ax = fig.add_subplot(1, 1, 1)
    for recipe in recipes:
        for variant in sorted({r["variant"] for r in rows}):
            mine = [r for r in rows if (r["parametrization"], r["variant"]) == (recipe, variant)]
            if mine:
                ax.errorbar(
                    [r["width"] for r in mine],
                    [r["lr_sensitivity"] for r in mine],
                    yerr=[r["lr_sensitivity_std"] for r in mine],
                    capsize=3,
                    label=f"{recipe} {variant}",
                    **_line_style(recipe, variant, recipes),
                )
    ax.set_xscale("log", base=2)
    style_axes(ax, "width", "LR sensitivity (nats/byte)", "LR sensitivity (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)

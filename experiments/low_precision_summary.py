"""The summary of ``experiments.low_precision``: each recipe's loss per precision at its float32 optimum.

Per recipe and precision: the learning rate with the lowest seed-mean float32 loss (the recipe's tuned
LR), the loss there (mean ± std over seeds), its change against float32 in percent, computed per seed
(the same seed's float32 run) then mean ± std, the precision's own best seed-mean loss, and the largest
change of the seed-mean loss (capped at the loss at init) against float32 anywhere on the LR grid
(where a format's range runs out, it shows at high learning rates first). Per recipe and tensor family
(activation, weight, gradient), the RMS range over tensors at init and after training at the tuned LR.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experiments.summary_plots import figure, style_axes

__all__ = ["precision_rows", "rms_rows", "write_summary"]

COLUMNS = (
    "parametrization",
    "precision",
    "tuned_learning_rate",
    "final_loss",
    "final_loss_std",
    "change_percent",
    "change_percent_std",
    "own_best_learning_rate",
    "own_best_final_loss",
    "largest_change_percent",
    "largest_change_learning_rate",
    "n_diverged",
)
FAMILIES = ("activation", "weight", "gradient")


def _finite(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else math.inf


def _tuned_lrs(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each recipe's learning rate of lowest seed-mean float32 loss."""
    from paramlab.sweep import optimal_settings

    fp32 = [r for r in records if r["precision"] == "float32"]
    return {
        r["parametrization"]: r["best_learning_rate"] for r in optimal_settings(fp32, ("parametrization",))
    }


def precision_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per recipe and precision with the columns of :data:`COLUMNS`."""
    from paramlab.sweep import optimal_settings

    tuned = _tuned_lrs(records)
    own = {
        (r["parametrization"], r["precision"]): r
        for r in optimal_settings(records, ("parametrization", "precision"))
    }
    rows = []
    for (recipe, precision), best in sorted(own.items()):
        mine = _seed_losses(records, recipe, precision, tuned[recipe])
        reference = _seed_losses(records, recipe, "float32", tuned[recipe])
        change = [100 * (mine[s] / reference[s] - 1) for s in sorted(mine)]
        losses = list(mine.values())
        worst_lr, worst = _largest_change(records, recipe, precision)
        rows.append(
            {
                "parametrization": recipe,
                "precision": precision,
                "tuned_learning_rate": tuned[recipe],
                "final_loss": float(np.mean(losses)),
                "final_loss_std": float(np.std(losses, ddof=min(1, len(losses) - 1))),
                "change_percent": float(np.mean(change)),
                "change_percent_std": float(np.std(change, ddof=min(1, len(change) - 1))),
                "own_best_learning_rate": best["best_learning_rate"],
                "own_best_final_loss": best["best_final_loss"],
                "largest_change_percent": worst,
                "largest_change_learning_rate": worst_lr,
                "n_diverged": best["n_diverged"],
            }
        )
    return rows


def _largest_change(records: Sequence[dict[str, Any]], recipe: str, precision: str) -> tuple[float, float]:
    """``(LR, percent)``: where on the grid the precision's seed-mean loss is furthest above float32's, each
    run's loss capped at its loss at init (a run that learned nothing counts as its start, as in the LR
    sensitivity), so that the grid's useless end does not dominate."""
    from paramlab.sweep import mean_over_seeds

    capped = [
        {**r, "capped_loss": min(_finite(r["final_loss"]), _finite(r["initial_loss"]))}
        for r in records
        if r["parametrization"] == recipe
    ]
    means = mean_over_seeds(capped, ("precision", "learning_rate"), "capped_loss")
    changes = {
        lr: 100 * (means[precision, lr] / means["float32", lr] - 1)
        for (p, lr) in means
        if p == precision and math.isfinite(means["float32", lr])
    }
    lr = max(changes, key=changes.get)
    return lr, changes[lr]


def _seed_losses(
    records: Sequence[dict[str, Any]], recipe: str, precision: str, lr: float
) -> dict[Any, float]:
    """``{seed: final loss}`` of one recipe and precision at one learning rate."""
    return {
        r["seed"]: _finite(r["final_loss"])
        for r in records
        if (r["parametrization"], r["precision"], r["learning_rate"]) == (recipe, precision, lr)
    }


def rms_rows(records: Sequence[dict[str, Any]], init_rms: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per recipe, precision, family and time (init, end at the tuned LR): the RMS min / median / max."""
    tuned = _tuned_lrs(records)
    rows = []
    for start in init_rms:
        recipe, precision = start["parametrization"], start["precision"]
        end = [
            r
            for r in records
            if (r["parametrization"], r["precision"], r["learning_rate"])
            == (recipe, precision, tuned[recipe])
        ]
        for family in FAMILIES:
            for when, source in (("init", [start]), ("end", end)):
                stats = {
                    s: float(np.mean([_finite(r[f"rms/{family}/{s}"]) for r in source]))
                    for s in ("min", "median", "max")
                }
                rows.append(
                    {
                        "parametrization": recipe,
                        "precision": precision,
                        "family": family,
                        "when": when,
                        **stats,
                    }
                )
    return rows


def write_summary(
    records: Sequence[dict[str, Any]],
    init_rms: Sequence[dict[str, Any]],
    out: str,
    title: str = "",
    log: Callable[[str], None] = print,
) -> str:
    """``precision.txt`` / ``.json``, ``low_precision_lr.png`` and ``tensor_rms.png`` in ``out``."""
    from paramlab.sweep import format_table, strict_json

    rows, rms = precision_rows(records), rms_rows(records, init_rms)
    float32_rms = [r for r in rms if r["precision"] == "float32"]
    text = "\n".join(
        [title, "", format_table(rows, COLUMNS), "", "tensor RMS (float32):", format_table(float32_rms)]
    )
    with open(os.path.join(out, "precision.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "precision.json"), "w") as f:
        json.dump(strict_json({"title": title, "cells": rows, "rms": rms}), f, indent=1)
    _plot_losses(records, os.path.join(out, "low_precision_lr.png"), title)
    _plot_rms(float32_rms, os.path.join(out, "tensor_rms.png"), title)
    log(text)
    return text


def _plot_losses(records: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """Per recipe: held-out loss (mean ± std over seeds) against LR, one line per precision."""
    recipes = sorted({r["parametrization"] for r in records})
    precisions = sorted({r["precision"] for r in records}, key=lambda p: (p != "float32", p))
    cap = float(np.mean([_finite(r["initial_loss"]) for r in records]))
    fig = figure(1, len(recipes), title, panel_height=3.3)
    for i, recipe in enumerate(recipes):
        ax = fig.add_subplot(1, len(recipes), i + 1)
        for precision, style in zip(precisions, ("-o", "--s", ":^", "-.v")):
            mine = [r for r in records if (r["parametrization"], r["precision"]) == (recipe, precision)]
            lrs = sorted({r["learning_rate"] for r in mine})
            values = [
                [min(_finite(r["final_loss"]), cap) for r in mine if r["learning_rate"] == lr] for lr in lrs
            ]
            ax.errorbar(
                lrs,
                [np.mean(v) for v in values],
                yerr=[np.std(v) for v in values],
                fmt=style,
                ms=3,
                capsize=2,
                label=precision,
            )
        ax.set_xscale("log", base=2)
        style_axes(ax, "learning rate", "held-out loss (nats/byte)", recipe, legend_size=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _plot_rms(rows: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """Per recipe: each family's RMS range over tensors (min to max, median marked), init and end."""
    recipes = sorted({r["parametrization"] for r in rows})
    fig = figure(1, len(recipes), title, panel_height=3.3)
    for i, recipe in enumerate(recipes):
        ax = fig.add_subplot(1, len(recipes), i + 1)
        for j, row in enumerate(r for r in rows if r["parametrization"] == recipe):
            color = "tab:blue" if row["when"] == "init" else "tab:orange"
            ax.plot([j, j], [row["min"], row["max"]], color=color, lw=3)
            ax.plot(j, row["median"], "k_", ms=10)
        labels = [f"{r['family'][:4]} {r['when']}" for r in rows if r["parametrization"] == recipe]
        ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax.axhline(1.0, color="gray", ls="--", lw=1)
        ax.set_yscale("log")
        style_axes(ax, "", "RMS over tensors (min-max, median)", recipe, legend_size=None)
    fig.tight_layout()
    fig.savefig(path, dpi=90)

"""Which recipe is best at each width: the recipes of an LR-transfer grid ranked, with paired gaps.

For every (width, depth) with several recipes, each recipe is taken at its own best grid LR (the
optimum table of :mod:`experiments.lr_transfer_summary`) and ranked by its seed-mean held-out loss. Its
gap to the leader is paired by seed (the same seed gives the same initialisation key, and every cell
sees the same batches), so the gap's std over seeds measures the difference itself rather than the
two recipes' separate spreads: a gap smaller than about twice its std is not a ranking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramlab.sweep import seed_std

__all__ = ["ranking_markdown", "ranking_rows"]


def ranking_rows(
    records: Sequence[Mapping[str, Any]], table: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per (width, depth) with at least two recipes, one row per recipe, best first: ``rank``,
    ``loss`` ± ``loss_std`` over seeds at its best LR, and ``gap`` ± ``gap_std``, the seed-paired loss
    minus the leader's (``inf`` for a diverged seed)."""
    best = {(r["recipe"], r["width"], r["depth"]): r["best_learning_rate"] for r in table}
    losses: dict[tuple, dict[str, dict[Any, float]]] = {}
    for r in records:
        lr = best.get((r["recipe"], r["width"], r["depth"]))
        if lr is None or not math.isclose(r["learning_rate"], lr):
            continue
        loss = math.inf if r["diverged"] or r["final_loss"] is None else float(r["final_loss"])
        losses.setdefault((r["width"], r["depth"]), {}).setdefault(r["recipe"], {})[r["seed"]] = loss
    rows = []
    for (width, depth), by_recipe in sorted(losses.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        if len(by_recipe) < 2:
            continue
        mean = {recipe: float(np.mean(list(v.values()))) for recipe, v in by_recipe.items()}
        order = sorted(by_recipe, key=lambda recipe: (mean[recipe], recipe))
        leader = by_recipe[order[0]]
        for rank, recipe in enumerate(order, start=1):
            seeds = sorted(set(by_recipe[recipe]) & set(leader))
            gaps = np.asarray([by_recipe[recipe][s] - leader[s] for s in seeds])
            values = np.asarray(list(by_recipe[recipe].values()))
            finite = bool(np.all(np.isfinite(gaps)))
            rows.append(
                {
                    "width": width,
                    "depth": depth,
                    "rank": rank,
                    "recipe": recipe,
                    "seeds": len(seeds),
                    "loss": mean[recipe],
                    "loss_std": float(seed_std(values)) if np.all(np.isfinite(values)) else math.inf,
                    "gap": float(np.mean(gaps)) if finite else math.inf,
                    "gap_std": float(seed_std(gaps)) if finite else math.inf,
                }
            )
    return rows


def ranking_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The ranking as a Markdown table."""
    lines = [
        "| width | depth | rank | recipe | loss ± std at its best LR | gap to the leader (paired) ± std |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        gap = "-" if r["rank"] == 1 else f"{r['gap']:+.4f} ± {r['gap_std']:.4f}"
        depth = r["depth"] if r["depth"] is not None else "-"
        lines.append(
            f"| {r['width']} | {depth} | {r['rank']} | {r['recipe']} | "
            f"{r['loss']:.4f} ± {r['loss_std']:.4f} | {gap} |"
        )
    return "\n".join(lines)

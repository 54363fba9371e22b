"""The summary of an LR-transfer grid: the optimum per cell with its seed spread, shifts, plots.

Written by ``experiments.lr_transfer`` after its sweeps, or again from a results file::

    python -m experiments.lr_transfer --out=runs/depth --results=runs/depth/results.json \
        [--config.<key>=<value> ... as for the run, for the title]

Per cell (recipe, width, depth): the best grid LR and its seed-mean loss ± std over seeds, the
fitted optimum (parabola in log2 LR, bootstrap spread over seeds; :mod:`paramlab.sweep.statistics`),
the LR sensitivity, and the loss at the LR transferred from the recipe's smallest cell (the proxy:
smallest depth, then smallest width) with its excess over the cell's own best.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["markdown_table", "recipe_label", "write_summary"]

COLUMNS = (
    "recipe",
    "width",
    "depth",
    "best_learning_rate",
    "learning_rate_index",
    "fitted_learning_rate",
    "fitted_log2_learning_rate_std",
    "best_final_loss",
    "best_final_loss_std",
    "transferred_final_loss",
    "transfer_excess_percent",
    "lr_sensitivity",
    "at_grid_edge",
    "n_diverged",
)


def recipe_label(parametrization: str, depth_rule: str) -> str:
    """``"mup"`` for width-only rules, ``"mup+completep"`` with a depth rule."""
    return parametrization if depth_rule == "none" else f"{parametrization}+{depth_rule}"


def write_summary(
    records: Sequence[dict[str, Any]],
    out: str,
    title: str = "",
    log: Callable[[str], None] = print,
    curves: Sequence[dict[str, Any]] | None = None,
    alignment: Sequence[dict[str, Any]] | None = None,
) -> str:
    """The optimal-LR table (printed, ``optimal_lr.txt`` / ``.json``), ``lr_transfer.png`` and, with
    several depths, ``optimal_lr.png``; with ``curves`` (:mod:`experiments.lr_transfer_curves`) also
    ``loss_curves.png`` at the transferred LRs and, with several depths, the depth horizons; with
    ``alignment`` (trajectory records, :mod:`experiments.alignment_summary`) also ``alignment.json`` /
    ``.md`` / ``.png`` at each cell's best LR; with several recipes, their ranking at each width
    (``ranking.md``, :mod:`experiments.lr_transfer_ranking`). Returns the text.

    Records without ``depth_rule`` / ``depth`` (width-only runs) count as depth rule ``"none"`` at one
    depth. Shifts are in grid steps: across widths at each depth, across depths at each width, and
    over the whole width x depth grid of a recipe.
    """
    from experiments.alignment_summary import write_alignment
    from experiments.lr_transfer_ranking import ranking_markdown, ranking_rows
    from paramlab.sweep import format_table, strict_json
    from paramlab.sweep.plots import plot_lr_transfer, plot_optimum

    records = [_with_recipe(r) for r in records]
    table = optimum_table(records)
    widths, depths = sorted({r["width"] for r in records}), sorted({r["depth"] for r in records})
    one_lr = len({r["learning_rate"] for r in records}) == 1
    shifts = {} if one_lr else _shifts(table, widths, depths)
    edges = [_cell_label(r) for r in table if r["at_grid_edge"]]
    edge_text = (
        "best LR at the edge of the grid (the optimum may lie outside it; extend the grid): "
        + ", ".join(edges)
        if edges
        else "every best LR is inside the grid"
    )
    horizons = _curves_and_horizons(curves, table, out, title) if curves else []
    horizon_text = ["", "depth horizon at the transferred LR:", format_table(horizons)] if horizons else []
    ranking = ranking_rows(records, table)
    ranking_text = ["", "recipes ranked at their own best LR:", ranking_markdown(ranking)] if ranking else []
    alignment_text = ["", write_alignment(alignment, table, out, title)] if alignment else []
    text = "\n".join(
        [
            title,
            format_table(table, COLUMNS),
            "",
            *_shift_lines(shifts, one_lr),
            edge_text,
            *horizon_text,
            *ranking_text,
            *alignment_text,
        ]
    )
    with open(os.path.join(out, "optimal_lr.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "optimal_lr.md"), "w") as f:
        f.write(markdown_table(table) + "\n")
    summary = {
        "optimal": table,
        "shift_grid_steps": shifts,
        "at_grid_edge": edges,
        "horizons": horizons,
        "ranking": ranking,
    }
    if ranking:
        with open(os.path.join(out, "ranking.md"), "w") as f:
            f.write(ranking_markdown(ranking) + "\n")
    with open(os.path.join(out, "optimal_lr.json"), "w") as f:
        json.dump(strict_json(summary), f, indent=1, allow_nan=False)
    panel_key, line_key = _panels_and_lines(widths, depths)
    plot_lr_transfer(
        records, os.path.join(out, "lr_transfer.png"), panel_key=panel_key, line_key=line_key, title=title
    )
    if len(depths) > 1:
        plot_optimum(
            table,
            os.path.join(out, "optimal_lr.png"),
            x="depth",
            line_key="width",
            fitted="fitted_learning_rate",
            fitted_log2_std="fitted_log2_learning_rate_std",
            title=title,
        )
    log(text)
    return text


def markdown_table(table: Sequence[dict[str, Any]]) -> str:
    """The optimum table as Markdown: LRs as powers of 2, the fitted optimum ± its bootstrap spread
    (in log2 steps), the loss ± its seed std, and the loss at the transferred LR."""

    def log2(value: float | None) -> str:
        return "-" if value is None else f"2^{math.log2(value):.2f}".replace(".00", "")

    def loss(value: float | None, spread: float | None = None) -> str:
        if value is None or not math.isfinite(value):
            return "diverged"
        return f"{value:.3f}" + ("" if spread is None else f" ± {spread:.3f}")

    lines = [
        "| recipe | width | depth | best LR | fitted LR (± log2) | loss ± std "
        "| loss at transferred LR | excess |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        spread = r["fitted_log2_learning_rate_std"]
        fitted = log2(r["fitted_learning_rate"]) + ("" if spread is None else f" ± {spread:.2f}")
        excess = r["transfer_excess_percent"]
        lines.append(
            f"| {r['recipe']} | {r['width']} | {r['depth'] if r['depth'] is not None else '-'} | "
            f"{log2(r['best_learning_rate'])}{' (edge)' if r['at_grid_edge'] else ''} | {fitted} | "
            f"{loss(r['best_final_loss'], r['best_final_loss_std'])} | {loss(r['transferred_final_loss'])} | "
            + ("-" if excess is None else f"{excess:.1f}%")
            + " |"
        )
    return "\n".join(lines)


def optimum_table(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (recipe, width, depth): the optimum, its seed statistics, the LR sensitivity and
    the transferred-LR loss (records carry ``recipe``, ``width``, ``depth``; see :func:`_with_recipe`)."""
    from paramlab.diagnostics import lr_sensitivity_table
    from paramlab.sweep import mean_over_seeds, optimal_settings, optimum_statistics

    group = ("recipe", "width", "depth")
    table = optimal_settings(records, group_by=group)
    key = lambda row: tuple(row[k] for k in group)
    extra = {key(r): r for r in optimum_statistics(records, group)}
    extra_sensitivity = {key(r): r["lr_sensitivity"] for r in lr_sensitivity_table(records, group)}
    means = mean_over_seeds(records, (*group, "learning_rate"))
    proxies = {}
    for row in sorted(table, key=lambda r: (r["depth"] or 0, r["width"])):
        proxies.setdefault(row["recipe"], row["best_learning_rate"])
    for row in table:
        row.update(extra[key(row)])
        row["lr_sensitivity"] = extra_sensitivity[key(row)]
        transferred = proxies[row["recipe"]]
        loss = math.inf if transferred is None else means[(*key(row), transferred)]
        row["transferred_learning_rate"] = transferred
        row["transferred_final_loss"] = loss
        best = row["best_final_loss"]
        row["transfer_excess_percent"] = (
            100.0 * (loss - best) / best if math.isfinite(loss) and math.isfinite(best) else None
        )
    return table


def _curves_and_horizons(
    curves: Sequence[dict[str, Any]], table: Sequence[dict[str, Any]], out: str, title: str
) -> list[dict[str, Any]]:
    """Write ``loss_curves.png`` (seed-mean curves at the transferred LR); the depth horizons."""
    from experiments.lr_transfer_curves import depth_horizons, transferred_curves
    from paramlab.sweep.plots import plot_curves

    rows = transferred_curves([_with_recipe(c) for c in curves], table)
    if not rows:
        return []
    depths = {r["depth"] for r in rows}
    panel_key, line_key = _panels_and_lines({r["width"] for r in rows}, depths)
    if panel_key == "panel":
        rows = [{**r, "panel": _panel_label(r["recipe"], r["width"])} for r in rows]
    plot_curves(
        rows, os.path.join(out, "loss_curves.png"), panel_key=panel_key, line_key=line_key, title=title
    )
    return depth_horizons(rows) if len(depths) > 1 else []


def _panels_and_lines(widths: Any, depths: Any) -> tuple[str, str]:
    """One panel per recipe and a line per width or depth; over a width x depth grid one panel per
    recipe and width (``panel``), a line per depth."""
    if len(depths) == 1:
        return "recipe", "width"
    return ("recipe", "depth") if len(widths) == 1 else ("panel", "depth")


def _cell_label(row: dict[str, Any]) -> str:
    depth = "" if row["depth"] is None else f" depth {row['depth']}"
    return f"{row['recipe']} width {row['width']}{depth}"


def _with_recipe(record: dict[str, Any]) -> dict[str, Any]:
    rule, depth = record.get("depth_rule", "none"), record.get("depth")
    label = recipe_label(record["parametrization"], rule)
    return {
        **record,
        "depth_rule": rule,
        "depth": depth,
        "recipe": label,
        "panel": _panel_label(label, record["width"]),
    }


def _panel_label(recipe: str, width: int) -> str:
    """The panel of one recipe at one width in the plots of a width x depth grid."""
    return f"{recipe}, width {width}"


def _shifts(table: Sequence[dict[str, Any]], widths: list[int], depths: list[int]) -> dict[str, Any]:
    """``{"across_widths": {recipe: {depth: steps}}, "across_depths": {recipe: {width: steps}},
    "grid": {recipe: steps}}`` (``None`` where there is one point or a cell diverged everywhere)."""
    from paramlab.sweep import optimum_shift

    def nested(family: tuple[str, str]) -> dict[str, dict[int, int | None]]:
        out: dict[str, dict[int, int | None]] = {}
        for (recipe, key), value in optimum_shift(table, family=family, x="learning_rate").items():
            out.setdefault(recipe, {})[key] = value
        return out

    shifts: dict[str, Any] = {}
    if len(widths) > 1:
        shifts["across_widths"] = nested(("recipe", "depth"))
    if len(depths) > 1:
        shifts["across_depths"] = nested(("recipe", "width"))
    if len(widths) > 1 and len(depths) > 1:
        shifts["grid"] = {
            k[0]: v for k, v in optimum_shift(table, family=("recipe",), x="learning_rate").items()
        }
    return shifts


def _shift_lines(shifts: dict[str, Any], one_lr: bool = False) -> list[str]:
    if one_lr:
        return ["optimum shift: n/a (one learning rate; give a grid to measure a shift)"]
    if not shifts:
        return ["optimum shift: n/a (one width and one depth; give several to measure a shift)"]
    fmt = lambda v: "-" if v is None else str(v)
    lines = []
    for kind, over in (("across_widths", "depth"), ("across_depths", "width")):
        for recipe, by in shifts.get(kind, {}).items():
            cells = ", ".join(f"{over} {k}: {fmt(v)}" for k, v in sorted(by.items()))
            lines.append(f"optimum shift {kind.replace('_', ' ')} (grid steps), {recipe}: {cells}")
    for recipe, value in shifts.get("grid", {}).items():
        lines.append(f"optimum shift over the width x depth grid (grid steps), {recipe}: {fmt(value)}")
    return lines

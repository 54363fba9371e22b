"""Compare several ``experiments.lr_transfer`` runs cell by cell: ``python -m experiments.compare_runs``.

Each run is named ``LABEL=DIR`` (a directory ``experiments.lr_transfer`` wrote); the first is the
reference. Per (recipe, width, depth) cell the first table gives each run's best held-out loss as
seed-mean ± std (``optimal_lr.json``) and its excess over the reference's; the second how each run's LR
transferred: its fitted optimum (``2^x`` ± the bootstrap spread in log2 steps) and the loss at the LR
transferred from its smallest cell with the excess over its own best. The figure plots the best loss
against width per run and recipe::

    python -m experiments.compare_runs --out=runs/eps_compare \\
        "Adam-atan2=runs/eps_atan2" "eps 1e-4=runs/eps_const_1e-4" ...

Writes ``compare_runs.md`` (printed too) and ``compare_runs.png`` into ``--out``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from experiments.summary_plots import figure, style_axes

__all__ = ["compare", "load_runs", "markdown_table", "transfer_table"]


def load_runs(specs: Sequence[str]) -> dict[str, dict[tuple, dict[str, Any]]]:
    """``{label: {(recipe, width, depth): optimum row}}`` from ``LABEL=DIR`` specs, in order."""
    runs: dict[str, dict[tuple, dict[str, Any]]] = {}
    for spec in specs:
        label, sep, directory = spec.rpartition("=")  # the label may hold "=" (a flag), the directory not
        if not sep or not label or not directory:
            raise ValueError(f"a run must be given as LABEL=DIR, got {spec!r}.")
        if label in runs:
            raise ValueError(f"run label {label!r} is given twice.")
        path = os.path.join(directory, "optimal_lr.json")
        if not os.path.exists(path):
            raise ValueError(f"run {label!r}: {path} does not exist (not an experiments.lr_transfer output).")
        with open(path) as f:
            rows = json.load(f)["optimal"]
        runs[label] = {(r["recipe"], r["width"], r["depth"]): r for r in rows}
    if len(runs) < 2:
        raise ValueError("give at least two runs (the first is the reference).")
    return runs


def markdown_table(runs: dict[str, dict[tuple, dict[str, Any]]]) -> str:
    """A row per cell of the reference: each run's best loss ± std and its excess over the reference."""
    labels = list(runs)
    reference = runs[labels[0]]
    lines = [
        "| recipe | width | depth | " + " | ".join(labels) + " |",
        "|---|---:|---:|" + "---:|" * len(labels),
    ]
    for cell, ref in sorted(reference.items()):
        values = []
        for label in labels:
            row = runs[label].get(cell)
            if row is None:
                values.append("—")
                continue
            text = f"{row['best_final_loss']:.3f} ± {row['best_final_loss_std']:.3f}"
            if label != labels[0]:
                text += f" ({row['best_final_loss'] - ref['best_final_loss']:+.3f})"
            values.append(text)
        lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def transfer_table(runs: dict[str, dict[tuple, dict[str, Any]]]) -> str:
    """A row per cell of the reference: each run's fitted optimum and its loss at the transferred LR."""
    labels = list(runs)
    lines = [
        "| recipe | width | depth | "
        + " | ".join(f"{label}: fitted LR, loss at transferred LR" for label in labels)
        + " |",
        "|---|---:|---:|" + "---:|" * len(labels),
    ]
    for cell in sorted(runs[labels[0]]):
        values = []
        for label in labels:
            row = runs[label].get(cell)
            values.append("—" if row is None else _transfer_text(row))
        lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _transfer_text(row: dict[str, Any]) -> str:
    """``2^-7.04 ± 0.01, 1.934 (+0.0%)`` from one optimum row (``-`` for what a row lacks)."""
    fitted, spread = row.get("fitted_learning_rate"), row.get("fitted_log2_learning_rate_std")
    lr = (
        "-"
        if fitted is None
        else f"2^{math.log2(fitted):.2f}" + ("" if spread is None else f" ± {spread:.2f}")
    )
    loss, excess = row.get("transferred_final_loss"), row.get("transfer_excess_percent")
    moved = "-" if loss is None else f"{loss:.3f}" + ("" if excess is None else f" ({excess:+.1f}%)")
    return f"{lr}, {moved}"


def plot(runs: dict[str, dict[tuple, dict[str, Any]]], path: str) -> None:
    """Best loss (± std) against width, one panel per recipe, one line per run."""
    recipes = sorted({cell[0] for rows in runs.values() for cell in rows})
    fig = figure(1, len(recipes), "best held-out loss per width (mean ± std over seeds)")
    axes = fig.subplots(1, len(recipes), squeeze=False)[0]
    for ax, recipe in zip(axes, recipes):
        for label, rows in runs.items():
            cells = sorted((c, r) for c, r in rows.items() if c[0] == recipe)
            ax.errorbar(
                [c[1] for c, _ in cells],
                [r["best_final_loss"] for _, r in cells],
                yerr=[r["best_final_loss_std"] for _, r in cells],
                marker="o",
                capsize=3,
                label=label,
            )
        ax.set_xscale("log", base=2)
        style_axes(ax, "width", "best held-out loss", recipe)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def compare(specs: Sequence[str], out: str) -> str:
    """Load the runs, write ``compare_runs.md`` (both tables) and ``compare_runs.png`` into ``out``; returns
    the tables."""
    runs = load_runs(specs)
    os.makedirs(out, exist_ok=True)
    table = markdown_table(runs) + "\n\n" + transfer_table(runs)
    with open(os.path.join(out, "compare_runs.md"), "w") as f:
        f.write(table + "\n")
    plot(runs, os.path.join(out, "compare_runs.png"))
    return table


def main(argv: Sequence[str]) -> int:
    outs = [a for a in argv if a.startswith("--out=")]
    specs = [a for a in argv if not a.startswith("--out=")]
    if len(outs) != 1:
        print("usage: python -m experiments.compare_runs --out=DIR LABEL=DIR LABEL=DIR ...", file=sys.stderr)
        return 2
    try:
        print(compare(specs, outs[0].removeprefix("--out=")))
    except ValueError as e:
        print(f"experiments.compare_runs: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

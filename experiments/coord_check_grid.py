r"""Coordinate checks for every parametrization x optimizer family, over seeds.

``python -m experiments.coord_check_grid``.

For each optimizer (a grid row) and seed, :func:`experiments.coord_check.run` checks every recipe (a
grid column) on the same widths; a recipe an optimizer does not define (u-muP with SGD) is a refused
cell. Per cell, module and step, the log-log slope of the mean ``|output|`` against width is given as
mean +- std over the seeds (``docs/reference.md`` §6: flat, slope near 0, is width-independent)::

    python -m experiments.coord_check_grid --out=runs/coord_check_grid

Writes ``<optimizer>/seed<k>/`` (each coordinate check's own outputs, at that optimizer's learning
rate), ``coord_check_grid.json`` (every record, with its seed), ``coord_check_grid_summary.json`` (the
slopes' mean and std per cell, module and step), ``coord_check_grid.md`` (the last step's table) and
``coord_check_grid.png`` (the last step's curves, rows optimizers, columns recipes, seeds' mean with
min-max bars). Exit codes: 0 done; 2 a bad
config value. Every key: ``experiments/configs/coord_check_grid.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from experiments import cli, coord_check
from experiments.summary_plots import figure, style_axes

PROGRAM = "experiments.coord_check_grid"


def cell_configs(config: ml_collections.ConfigDict, out: str) -> list[tuple[str, int, coord_check.Args]]:
    """``(optimizer, seed, coord_check.Args)`` of every coordinate check (``ValueError`` naming a bad key)."""
    from paramlab.optim import OPTIMIZERS

    optimizers = cli.parse_names(config.optimizers, "optimizers", OPTIMIZERS)
    seeds = cli.parse_list(config.seeds, int, "seeds")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"config.seeds must be distinct integers >= 0, got {config.seeds!r}.")
    learning_rates = cli.parse_list(config.learning_rates, float, "learning_rates")
    if len(learning_rates) != len(optimizers):
        raise ValueError(
            f"config.learning_rates must give one learning rate per optimizer ({len(optimizers)}), "
            f"got {config.learning_rates!r}."
        )
    cells = []
    for optimizer, learning_rate in zip(optimizers, learning_rates):
        for seed in seeds:
            single = ml_collections.ConfigDict(config.to_dict())
            del single.optimizers, single.seeds, single.learning_rates
            single.optimizer, single.seed, single.learning_rate = optimizer, seed, learning_rate
            args = coord_check.parse_args(single, {"out": os.path.join(out, optimizer, f"seed{seed}")})
            cells.append((optimizer, seed, args))
    return cells


def _supported(args: coord_check.Args, name: str) -> bool:
    """Whether recipe ``name`` is defined for ``args.optimizer`` (u-muP refuses SGD)."""
    try:
        coord_check.make_parametrization(args, name)
    except ValueError:
        return False
    return True


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (parametrization, optimizer, module, step): the slope's mean, std and values over the seeds."""
    from paramlab.diagnostics import coord_check_summary

    slopes: dict[tuple, list[float]] = {}
    for seed in sorted({r["seed"] for r in records}):
        for row in coord_check_summary([r for r in records if r["seed"] == seed]):
            key = (row["parametrization"], row["optimizer"], row["module"], row["step"])
            slopes.setdefault(key, []).append(row["slope"])
    return [
        dict(
            parametrization=p,
            optimizer=o,
            module=m,
            step=s,
            slope_mean=float(np.mean(v)),
            slope_std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            slopes=v,
        )
        for (p, o, m, s), v in slopes.items()
    ]


def markdown_table(summary: Sequence[dict[str, Any]], names: Sequence[str], optimizers: Sequence[str]) -> str:
    """The last step's slopes as a table: a row per optimizer and module, a column per recipe."""
    last = max(r["step"] for r in summary)
    cell = {(r["optimizer"], r["module"], r["parametrization"]): r for r in summary if r["step"] == last}
    modules = sorted({r["module"] for r in summary})
    lines = [
        f"| optimizer | module | {' | '.join(names)} |",
        "|---|---|" + "---:|" * len(names),
    ]
    for optimizer in optimizers:
        for module in modules:
            values = [
                f"{cell[key]['slope_mean']:+.2f} ± {cell[key]['slope_std']:.2f}" if key in cell else "refused"
                for key in ((optimizer, module, name) for name in names)
            ]
            lines.append(f"| {optimizer} | {module} | {' | '.join(values)} |")
    return "\n".join(lines)


def plot_grid(
    records: Sequence[dict[str, Any]], names: Sequence[str], optimizers: Sequence[str], path: str
) -> None:
    """Rows optimizers, columns recipes: the last step's ``|output|`` per module against width."""
    last = max(r["step"] for r in records)
    fig = figure(len(optimizers), len(names), f"coordinate check at step {last}: mean |output| vs width",
                 panel_width=2.8, panel_height=2.4)  # fmt: skip
    axes = fig.subplots(len(optimizers), len(names), squeeze=False)
    for i, optimizer in enumerate(optimizers):
        for j, name in enumerate(names):
            ax = axes[i][j]
            cell = [
                r
                for r in records
                if (r["optimizer"], r["parametrization"], r["step"]) == (optimizer, name, last)
            ]
            for module in sorted({r["module"] for r in cell}):
                widths = sorted({r["width"] for r in cell})
                per_width = [
                    [r["l1"] for r in cell if r["module"] == module and r["width"] == w] for w in widths
                ]
                mean = np.array([np.mean(v) for v in per_width])
                spread = np.array([[mean[k] - min(v), max(v) - mean[k]] for k, v in enumerate(per_width)]).T
                ax.errorbar(widths, mean, yerr=spread, marker="o", markersize=3, capsize=2, label=module)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            style_axes(ax, "width" if i == len(optimizers) - 1 else "", "|output|" if j == 0 else "",
                       f"{name}, {optimizer}" if cell else f"{name}, {optimizer}: refused",
                       legend_size=6 if (i, j) == (0, 0) else None)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(
    config: ml_collections.ConfigDict, out: str, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Every cell's coordinate checks; writes the outputs to ``out``, returns the summary rows."""
    from paramlab.sweep import strict_json

    cells = cell_configs(config, out)
    names = cells[0][2].parametrizations
    optimizers = list(dict.fromkeys(optimizer for optimizer, _, _ in cells))
    records: list[dict[str, Any]] = []
    for optimizer, seed, args in cells:
        supported = tuple(name for name in names if _supported(args, name))
        cell_args = dataclasses.replace(args, parametrizations=supported)
        log(f"{optimizer}, seed {seed}: {', '.join(supported)}")
        records += [dict(r, seed=seed) for r in coord_check.run(cell_args, log=lambda _: None)]
    summary = summarize(records)
    os.makedirs(out, exist_ok=True)
    for name, value in (("coord_check_grid.json", records), ("coord_check_grid_summary.json", summary)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(strict_json(value), f, indent=1, allow_nan=False)
    table = markdown_table(summary, names, optimizers)
    with open(os.path.join(out, "coord_check_grid.md"), "w") as f:
        f.write(table + "\n")
    plot_grid(records, names, optimizers, os.path.join(out, "coord_check_grid.png"))
    log(table)
    return summary


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    run(config, paths["out"])


if __name__ == "__main__":
    cli.run(
        PROGRAM,
        main,
        default_config=cli.config_path("coord_check_grid"),
        path_flags={"out": "Output directory (created if missing)."},
        required=("out",),
    )

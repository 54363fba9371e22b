r"""Does the learning rate transfer across width and depth? ``python -m experiments.lr_transfer``.

For every recipe (``paramlab.parametrization.RECIPES``; ``sp_global`` is the global-LR baseline),
depth rule, depth and width, one vmapped sweep (:mod:`paramlab.sweep`) trains a byte-level
Transformer at every learning rate and seed of the grid and evaluates it on held-out batches. Every
key is documented in ``experiments/configs/lr_transfer.py``::

    python -m experiments.lr_transfer --out=runs/lr_transfer --config.parametrization=sp_global,mup \
        --config.widths=64,128,256,512 --config.learning_rate_grid=1e-4,0.1,2 --config.steps=200
    python -m experiments.lr_transfer --out=runs/depth --config.parametrization=mup \
        --config.widths=128 --config.depths=2,4,8,16 --config.depth_rule=none,depth_mup,completep

Writes to ``--out`` (``--data``: a text file or directory instead of the embedded corpus):
``results.json`` / ``.csv`` (one record per parametrization, depth rule, width, depth, learning rate
and seed: ``final_loss`` is the held-out loss in nats per byte, ``inf`` if diverged; with
``log_alignment`` also ``alignment/<alpha|omega|u>/<layer>``, the values after the last step),
``alignment_curves.json`` and ``alignment.json`` / ``.md`` / ``.png`` with ``log_alignment`` (every
member's exponents after each compiled call, and per role at each cell's best LR with the measured
alignment: :mod:`experiments.alignment_summary`), ``lr_transfer.png`` (loss against LR),
``optimal_lr.png`` (the best LR against depth, with several depths), ``curves.json`` (every
member's train loss averaged over ``curve_every`` steps), ``loss_curves.png`` (the curves at the
transferred LR) and ``optimal_lr.txt`` / ``.json``
(per cell the best LR with its seed spread and fitted optimum, the loss at the LR transferred from the
smallest cell, the shifts in grid steps across widths, across depths and over the whole width x
depth grid, and the step from which each deeper model is ahead: :mod:`experiments.lr_transfer_summary`);
``--results=<results.json>`` rewrites those from an earlier run's records (and the ``curves.json``
beside them) without training. Exit codes: 0 done; 2 a bad flag or config value (one line
on stderr).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import ml_collections

from experiments import cli
from experiments.alignment_summary import alignment_records, layer_kernels
from experiments.lr_transfer_curves import curve_records
from experiments.lr_transfer_summary import recipe_label, write_summary
from experiments.transformer_cells import Cell, build_setting, grid_data, member_record, run_cell

PROGRAM = "experiments.lr_transfer"
_POSITIVE = ("steps", "seeds", "base_width", "base_depth", "d_head", "ff_ratio", "seq_len", "batch_size")
_POSITIVE += ("eval_batches", "max_bytes", "steps_per_call", "curve_every")


@dataclasses.dataclass(frozen=True)
class Args:
    """The validated command line."""

    parametrizations: tuple[str, ...]
    optimizer: str
    alignment: str | float
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    depth_rules: tuple[str, ...]
    depth_alpha: float
    lrs: tuple[float, ...]
    steps: int
    seeds: int
    out: str
    eps: float
    eps_mode: str
    base_width: int
    base_depth: int
    d_head: int
    ff_ratio: int
    seq_len: int
    batch_size: int
    warmup_steps: int
    eval_batches: int
    max_bytes: int
    data: str
    steps_per_call: int
    curve_every: int = 25
    scan_layers: bool = False
    log_alignment: bool = False
    progress_bar: bool = False


def log_grid(low: float, high: float, factor: float) -> tuple[float, ...]:
    """``low, low * factor, low * factor^2, ...`` up to ``high`` (inclusive, relative tolerance 1e-9)."""
    if not (math.isfinite(low) and math.isfinite(high) and low > 0 and high >= low):
        raise ValueError(f"config.learning_rate_grid needs 0 < min <= max, got min={low}, max={high}.")
    if not (math.isfinite(factor) and factor > 1):
        raise ValueError(f"config.learning_rate_grid factor must be > 1, got {factor}.")
    n = int(math.floor(math.log(high / low) / math.log(factor) + 1e-9)) + 1
    return tuple(low * factor**i for i in range(n))


def parse_args(config: ml_collections.ConfigDict, paths: dict[str, str]) -> Args:
    """Validate the config (``ValueError`` naming the key)."""
    from paramlab.optim import OPTIMIZERS
    from paramlab.optim.common import check_choice

    names = cli.parse_recipes(config.parametrization)
    check_choice(config.optimizer, OPTIMIZERS, "config.optimizer")
    check_choice(config.eps_mode, ("constant", "per_layer"), "config.eps_mode")
    cli.check_positive_ints(config, _POSITIVE)
    widths = cli.parse_list(config.widths, int, "widths")
    if not widths or any(w < 1 for w in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"config.widths must be distinct positive integers, got {config.widths!r}.")
    bad = [w for w in (*widths, config.base_width) if w % config.d_head]
    if bad:
        raise ValueError(
            f"config.widths / base_width {bad} are not divisible by config.d_head={config.d_head}."
        )
    depths, depth_rules = _depths(config)
    lrs = _learning_rates(config)
    if not 0 <= config.warmup_steps < config.steps:
        raise ValueError(f"config.warmup_steps must be in [0, config.steps), got {config.warmup_steps}.")
    if not (math.isfinite(config.eps) and config.eps > 0):
        raise ValueError(f"config.eps must be > 0, got {config.eps}.")
    fields = {f.name for f in dataclasses.fields(Args)} - {
        "alignment",
        "parametrizations",
        "widths",
        "depths",
        "depth_rules",
        "lrs",
        "out",
        "data",
    }
    return Args(
        alignment=cli.parse_alignment(config.alignment),
        parametrizations=names,
        widths=tuple(sorted(widths)),
        depths=depths,
        depth_rules=depth_rules,
        lrs=tuple(sorted(lrs)),
        out=paths["out"],
        data=paths["data"],
        **{f: config[f] for f in fields},
    )


def _depths(config: ml_collections.ConfigDict) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The sorted depths and the distinct depth rules (``ValueError`` naming the key)."""
    from paramlab.parametrization import DEPTH_RULES

    depths = cli.parse_list(config.depths, int, "depths")
    if not depths or any(d < 1 for d in depths) or len(set(depths)) != len(depths):
        raise ValueError(f"config.depths must be distinct positive integers, got {config.depths!r}.")
    if config.base_depth > max(depths):
        raise ValueError(
            f"config.base_depth={config.base_depth} is larger than every depth in "
            f"config.depths={config.depths!r}."
        )
    rules = cli.parse_names(config.depth_rule, "depth_rule", DEPTH_RULES)
    alpha = config.depth_alpha
    if not (isinstance(alpha, (int, float)) and 0.5 <= alpha <= 1.0):
        raise ValueError(f"config.depth_alpha must be in [0.5, 1], got {alpha!r}.")
    return tuple(sorted(depths)), rules


def _learning_rates(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    if config.learning_rates:
        lrs = cli.parse_list(config.learning_rates, float, "learning_rates")
        if not lrs or any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
            raise ValueError(
                f"config.learning_rates must be positive numbers, got {config.learning_rates!r}."
            )
        return lrs
    grid = cli.parse_list(config.learning_rate_grid, float, "learning_rate_grid")
    if len(grid) != 3:
        raise ValueError(f"config.learning_rate_grid is min,max,factor, got {config.learning_rate_grid!r}.")
    return log_grid(*grid)


def run(args: Args, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every sweep of the experiment; writes the outputs to ``args.out`` and returns the records."""
    from paramlab.diagnostics import alignment_probe
    from paramlab.sweep import save_records

    corpus, held_out, members = grid_data(args)
    records: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    alignment: list[dict[str, Any]] = []
    for cell in cells(args):
        setting = build_setting(args, cell)
        t0 = time.perf_counter()
        result = run_cell(
            args,
            setting,
            members,
            corpus,
            held_out,
            alignment_probe(setting.apply_fn, held_out[0]["inputs"][:2]) if args.log_alignment else None,
        )
        records += [member_record(args, cell, r) for r in result.records]
        curves += curve_records(cell, members, result.history["loss"], args.curve_every)
        if args.log_alignment:
            kernels = layer_kernels(setting.plan.specs)
            alignment += alignment_records(cell, members, result.probes, kernels)
            save_records(alignment, os.path.join(args.out, "alignment_curves.json"))
        done = [r for r in result.records if not r["diverged"]]
        best = min(done, key=lambda r: r["final_loss"]) if done else None
        log(
            f"{recipe_label(cell.parametrization, cell.depth_rule):>20} width {cell.width:>4} depth "
            f"{cell.depth:>3}: {len(result.records)} runs in {time.perf_counter() - t0:.1f} s, "
            f"{len(result.records) - len(done)} diverged, best "
            + (f"lr {best['learning_rate']:.3g} loss {best['final_loss']:.4f}" if best else "none")
        )
        save_records(records, os.path.join(args.out, "results.json"), os.path.join(args.out, "results.csv"))
        save_records(curves, os.path.join(args.out, "curves.json"))
    write_summary(records, args.out, title=_title(args), log=log, curves=curves, alignment=alignment)
    return records


def cells(args: Args) -> list[Cell]:
    """Every (parametrization, depth rule, depth, width) of the grid, in that nesting order."""
    return [
        Cell(p, rule, width, depth)
        for p in args.parametrizations
        for rule in args.depth_rules
        for depth in args.depths
        for width in args.widths
    ]


def _title(args: Args) -> str:
    return (
        f"{args.optimizer}{cli.eps_label(args.optimizer, args.eps, args.eps_mode)}, "
        f"alignment={cli.alignment_label(args.alignment)}, base width {args.base_width}, "
        f"base depth {args.base_depth}"
        + (f" (completep alpha {args.depth_alpha:g})" if "completep" in args.depth_rules else "")
        + f", {args.steps} steps x {args.batch_size}x{args.seq_len} bytes, "
        f"{args.seeds} seed(s)"
    )


def _with_fan_in(args: Args, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alignment trajectories written before they carried each layer's fan-in get it from their cell's
    plan (built from ``args``, the run's own flags)."""
    kernels: dict[Cell, dict[str, tuple[str, int]]] = {}
    out = []
    for r in records:
        cell = Cell(r["parametrization"], r["depth_rule"], r["width"], r["depth"])
        if cell not in kernels:
            kernels[cell] = layer_kernels(build_setting(args, cell).plan.specs)
        out.append(r if "fan_in" in r else {**r, "fan_in": kernels[cell].get(r["layer"], (None, None))[1]})
    return out


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, fail fast on a combination paramlab lacks, then run every sweep; with ``--results``,
    write the summary of those records to ``--out`` instead of training."""
    args = parse_args(config, paths)
    if paths.get("results"):
        from paramlab.sweep import load_records

        os.makedirs(args.out, exist_ok=True)
        beside = lambda name: os.path.join(os.path.dirname(paths["results"]), name)
        curves, alignment = (
            load_records(beside(name)) if os.path.exists(beside(name)) else None
            for name in ("curves.json", "alignment_curves.json")
        )
        if alignment and any("fan_in" not in r for r in alignment):
            alignment = _with_fan_in(args, alignment)
        write_summary(
            load_records(paths["results"]), args.out, title=_title(args), curves=curves, alignment=alignment
        )
        return
    for cell in cells(args):
        if cell.width == args.widths[-1] and cell.depth == args.depths[-1]:
            build_setting(args, cell).optimizer_fn(args.lrs[0])
    run(args)


if __name__ == "__main__":
    cli.run_sweep_experiment(PROGRAM, main)

r"""Does u-muP train in low precision out of the box? ``python -m experiments.low_precision``.

For every recipe (``umup`` trains the unit-scaled Transformer, ``docs/reference.md`` §13) and
precision (``float32``; ``bfloat16`` compute; ``float8_e4m3fn`` / ``float8_e5m2``: both inputs of every
Dense layer cast to the format, simulated), one vmapped sweep (:mod:`paramlab.sweep`) trains the
byte-level Transformer of ``experiments.lr_transfer`` at every learning rate and seed, and measures the
RMS of every activation, weight and gradient at init and after training
(:mod:`paramlab.diagnostics.unit_scale`). Every key is documented in
``experiments/configs/low_precision.py``::

    python -m experiments.low_precision --out=runs/low_precision --config.parametrization=sp_global,mup,umup

Writes to ``--out``: ``results.json`` / ``.csv`` (one record per recipe, precision, LR and seed:
``final_loss``, and ``rms/<family>/<min|median|max>`` after training), ``init_rms.json`` (the same at
init, per recipe and precision, seed 0), ``precision.txt`` / ``.json`` (per recipe and precision: the
loss at the recipe's best float32 LR, mean ± std over seeds, and its change against float32 paired by
seed; the precision's own best loss), ``low_precision_lr.png`` and ``tensor_rms.png``;
``--results=<results.json>`` rewrites the summary from an earlier run. Exit codes: 0 done; 2 a bad
flag or config value (one line on stderr).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import ml_collections

from experiments import cli, lr_transfer
from experiments.low_precision_summary import write_summary
from experiments.transformer_cells import build_setting, grid_data, member_record, run_cell

PROGRAM = "experiments.low_precision"
PRECISIONS = ("float32", "bfloat16", "float8_e4m3fn", "float8_e5m2")


def parse_args(config: ml_collections.ConfigDict, paths: dict[str, str]) -> tuple[Any, tuple[str, ...]]:
    """``(lr_transfer.Args, precisions)``, validated (``ValueError`` naming the key)."""
    from paramlab.models.unit_scaling import check_matmul_format

    grid = lr_transfer.parse_args(config, paths)
    precisions = cli.parse_names(config.precisions, "precisions", PRECISIONS)
    if "float32" not in precisions:
        raise ValueError(
            f"config.precisions must include float32 (the reference), got {config.precisions!r}."
        )
    for precision in precisions:
        if precision.startswith("float8"):
            check_matmul_format(precision)  # a backend that cannot convert to it: one line, now
    if grid.depths != (grid.base_depth,) or grid.depth_rules != ("none",):
        raise ValueError(
            "config.depths / depth_rule: the low-precision experiment runs at the base depth only."
        )
    return grid, precisions


def model_options(recipe: str, precision: str) -> dict[str, Any]:
    """The ``TransformerConfig`` fields of a recipe at a precision (``umup``: the unit-scaled model)."""
    options: dict[str, Any] = {"unit_scaling": recipe == "umup"}
    if precision == "bfloat16":
        options["dtype"] = "bfloat16"
    elif precision.startswith("float8"):
        options["matmul_format"] = precision
    return options


def run(args: Any, precisions: tuple[str, ...], log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every sweep; writes the outputs to ``args.out`` and returns the records."""
    import jax

    from paramlab.diagnostics import scale_probe
    from paramlab.sweep import save_records

    corpus, held_out, members = grid_data(args)
    records: list[dict[str, Any]] = []
    init_rms: list[dict[str, Any]] = []
    for cell in lr_transfer.cells(args):
        for precision in precisions:
            t0 = time.perf_counter()
            setting = build_setting(args, cell, model_options=model_options(cell.parametrization, precision))
            probe = scale_probe(setting.apply_fn, setting.loss_fn, held_out[0]["inputs"], held_out[0])
            at_init = jax.jit(probe)(setting.init_params(jax.random.key(0)), None)
            at_init = {k: float(v) for k, v in at_init.items()}
            init_rms.append({"parametrization": cell.parametrization, "precision": precision, **at_init})
            result = run_cell(args, setting, members, corpus, held_out, probe)
            for r in result.records:
                rms = {k: v for k, v in r.items() if k.startswith("rms/")}
                records.append({**member_record(args, cell, r), "precision": precision, **rms})
            log(
                f"{cell.parametrization:>10} {precision:>14} width {cell.width}: {len(members)} runs in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            save_records(
                records, os.path.join(args.out, "results.json"), os.path.join(args.out, "results.csv")
            )
            save_records(init_rms, os.path.join(args.out, "init_rms.json"))
    write_summary(records, init_rms, args.out, title=_title(args), log=log)
    return records


def _title(args: Any) -> str:
    return (
        f"{args.optimizer}, width {','.join(map(str, args.widths))}, depth {args.depths[0]}, "
        f"{args.steps} steps x {args.batch_size}x{args.seq_len} bytes, {args.seeds} seed(s)"
    )


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, then run every sweep; with ``--results``, rewrite the summary of those records."""
    args, precisions = parse_args(config, paths)
    if paths.get("results"):
        from paramlab.sweep import load_records

        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(os.path.dirname(paths["results"]), "init_rms.json")) as f:
            init_rms = json.load(f)
        write_summary(load_records(paths["results"]), init_rms, args.out, title=_title(args))
        return
    run(args, precisions)


if __name__ == "__main__":
    cli.run_sweep_experiment(PROGRAM, main)

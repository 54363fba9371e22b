r"""Per-role LR constants tuned at the base width, transferred: ``python -m experiments.layer_constants``.

Everett et al. (2024) tune one learning-rate constant per layer at the proxy width and carry them
across width with the parametrization's exponents (``docs/reference.md`` §2: ``eta_l = G_l eta
n^{-c_l}``). This experiment asks what that buys over one global constant, at the proxy and after
transfer:

1. **Search** (smallest width, seeds ``0 .. seeds-1``): one vmapped sweep over every combination of
   the per-role multipliers ``G_role`` in ``role_constants`` (roles: embedding, which also holds the
   norm gains and other vectors; hidden; readout) at the one global ``learning_rate``, already tuned.
2. **Evaluation** (every width, fresh seeds ``seeds .. seeds+eval_seeds-1``, so that the search's
   selection does not flatter the winner): the best combination against ``G = 1`` everywhere. The
   gain is the paired (same seed) loss difference, mean ± std over seeds.

The multipliers scale each role's updates after the optimizer, which for Adam without weight decay is
the same as the recipe's ``learning_rates`` constants (tested); a vmapped sweep can then trace them.
Every key is in ``experiments/configs/layer_constants.py``. Writes to ``--out``: ``results.json`` /
``.csv`` (one record per stage, width, combination and seed), ``layer_constants.md`` / ``.json`` (the
search's best combinations and the gain per width) and ``layer_constants.png``; ``--results=<results.json>``
rewrites the summary without training. Exit codes: 0 done; 2 a bad flag or config value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from experiments import cli, lr_transfer
from experiments.layer_constants_summary import ROLES, search_rows, write_summary
from experiments.transformer_cells import Cell, build_setting, grid_data, member_record, run_cell

PROGRAM = "experiments.layer_constants"


def parse_args(
    config: ml_collections.ConfigDict, paths: dict[str, str]
) -> tuple[Any, tuple[float, ...], int]:
    """``(lr_transfer.Args, role constants, eval_seeds)``, validated (``ValueError`` naming the key)."""
    grid = lr_transfer.parse_args(config, paths)
    if len(grid.lrs) != 1:
        raise ValueError(
            f"config.learning_rates must be one learning rate (the global LR tuned at the smallest "
            f"width), got {len(grid.lrs)}: {grid.lrs}."
        )
    if len(grid.parametrizations) != 1 or grid.depth_rules != ("none",) or len(grid.depths) != 1:
        raise ValueError(
            "config.parametrization / depths / depth_rule: one recipe at one depth, no depth rule."
        )
    if len(grid.widths) < 2:
        raise ValueError(f"config.widths needs the search width and at least one more, got {grid.widths}.")
    constants = cli.parse_list(config.role_constants, float, "role_constants")
    if not constants or any(not (math.isfinite(g) and g > 0) for g in constants) or 1.0 not in constants:
        raise ValueError(
            f"config.role_constants must be positive numbers including 1 (the global constant), "
            f"got {config.role_constants!r}."
        )
    cli.check_positive_ints(config, ("eval_seeds",))
    return grid, tuple(sorted(set(constants))), config.eval_seeds


def scale_by_role(plan: Any, constants: Mapping[str, Any]) -> Any:
    """An optax transform multiplying each parameter's update by ``constants[role]`` (its plan role);
    the constants may be traced scalars."""
    import jax
    import optax

    def update_fn(updates, state, params=None):
        del params
        roles = plan.roles(updates)
        return jax.tree.map(lambda u, role: u * constants[role], updates, roles), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def run(
    args: Any, constants: Sequence[float], eval_seeds: int, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """The search at the smallest width, then the evaluation at every width; writes ``args.out``."""
    from paramlab.sweep import product_members, save_records

    corpus, held_out, _ = grid_data(args)
    grid = {role: constants for role in ROLES}
    search = product_members(seeds=tuple(range(args.seeds)), **grid)
    records = _stage(args, "search", args.widths[0], search, corpus, held_out, log)
    best = best_combination(records)
    log(f"best per-role constants at width {args.widths[0]}: {best}")
    candidates = [dict.fromkeys(ROLES, 1.0), best] if best != dict.fromkeys(ROLES, 1.0) else [best]
    seeds = tuple(range(args.seeds, args.seeds + eval_seeds))
    evaluate = [{**c, "seed": s} for c in candidates for s in seeds]
    for width in args.widths:
        records += _stage(args, "evaluate", width, evaluate, corpus, held_out, log)
        save_records(records, os.path.join(args.out, "results.json"), os.path.join(args.out, "results.csv"))
    write_summary(records, args.out, title=_title(args), log=log)
    return records


def _stage(
    args: Any, stage: str, width: int, members: list, corpus: Any, held_out: list, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One vmapped sweep of ``members`` (per-role constants and seeds) at ``width``: its records."""
    import optax

    cell = Cell(args.parametrizations[0], "none", width, args.depths[0])
    setting = build_setting(args, cell)
    learning_rate = args.lrs[0]

    def optimizer_fn(embedding, hidden, readout):
        scaled = {"embedding": embedding, "hidden": hidden, "readout": readout}
        return optax.chain(setting.optimizer_fn(learning_rate), scale_by_role(setting.plan, scaled))

    t0 = time.perf_counter()
    result = run_cell(
        args, dataclasses.replace(setting, optimizer_fn=optimizer_fn), members, corpus, held_out
    )
    log(f"{stage} width {width}: {len(members)} runs in {time.perf_counter() - t0:.1f} s")
    return [
        {
            **member_record(args, cell, {**r, "learning_rate": learning_rate}),
            "stage": stage,
            **{role: float(m[role]) for role in ROLES},
        }
        for m, r in zip(members, result.records)
    ]


def best_combination(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The search's per-role constants with the lowest seed-mean final loss (a diverged seed counts
    as ``inf``): the first row of :func:`experiments.layer_constants_summary.search_rows`."""
    rows = search_rows(records)
    if not rows:
        raise ValueError("best_combination: no search records.")
    return {role: rows[0][role] for role in ROLES}


def _title(args: Any) -> str:
    return (
        f"{args.parametrizations[0]} + {args.optimizer}, global LR {args.lrs[0]:g}, "
        f"{args.steps} steps x {args.batch_size}x{args.seq_len} bytes"
    )


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, then search and evaluate; with ``--results``, rewrite the summary of those records."""
    args, constants, eval_seeds = parse_args(config, paths)
    if paths.get("results"):
        from paramlab.sweep import load_records

        os.makedirs(args.out, exist_ok=True)
        write_summary(load_records(paths["results"]), args.out, title=_title(args))
        return
    run(args, constants, eval_seeds)


if __name__ == "__main__":
    cli.run_sweep_experiment(PROGRAM, main)

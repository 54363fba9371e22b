r"""Small-scale proxies for instabilities: ``python -m experiments.stability``.

Reproduces the central small-scale result of Wortsman et al. 2023 (``docs/reference.md`` §8): at a
high learning rate the attention logits of a Transformer without qk-layernorm grow by orders of
magnitude and its loss diverges; with qk-layernorm (and z-loss on the output logits) they stay bounded
and the LR sensitivity falls. For every recipe, variant (``plain``: neither; ``qk_layernorm_z_loss``:
both) and width, one vmapped sweep (:mod:`paramlab.sweep`) trains the byte-level Transformer of
``experiments.lr_transfer`` at every learning rate and seed, logging the largest attention logit and
output logit of every step (:func:`paramlab.diagnostics.apply_with_stability`). Every key is
documented in ``experiments/configs/stability.py``::

    python -m experiments.stability --out=runs/stability --config.parametrization=sp_global,mup

Writes to ``--out``: ``results.json`` / ``.csv`` (one record per recipe, variant, width, LR and seed:
``final_loss``, ``initial_loss``, ``diverged``, ``max_attention_logit`` and ``max_output_logit`` over
the steps trained, and their last values), ``sensitivity.txt`` / ``.json`` (per recipe, variant and
width: the LR sensitivity, mean ± std over seeds, the best loss ± std and the largest attention
logit at the largest LR), ``stability_lr.png`` (loss and attention logit against LR) and
``stability_sensitivity.png``; ``--results=<results.json>`` rewrites the summary from an earlier
run. Exit codes: 0 done; 2 a bad flag or config value (one line on stderr).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

from experiments import cli, lr_transfer
from experiments.stability_summary import write_summary
from experiments.transformer_cells import build_setting, grid_data, member_record, run_cell

PROGRAM = "experiments.stability"
VARIANTS = ("plain", "qk_layernorm_z_loss")


def parse_args(
    config: ml_collections.ConfigDict, paths: dict[str, str]
) -> tuple[Any, tuple[str, ...], float]:
    """``(lr_transfer.Args, variants, z_loss)``, validated (``ValueError`` naming the key)."""

    grid = lr_transfer.parse_args(config, paths)
    variants = cli.parse_names(config.variants, "variants", VARIANTS)
    z_loss = config.z_loss
    if (
        isinstance(z_loss, bool)
        or not isinstance(z_loss, (int, float))
        or not (math.isfinite(z_loss) and z_loss >= 0)
    ):
        raise ValueError(f"config.z_loss must be a number >= 0, got {z_loss!r}.")
    if grid.depths != (grid.base_depth,) or grid.depth_rules != ("none",):
        raise ValueError("config.depths / depth_rule: the stability experiment runs at the base depth only.")
    return grid, variants, float(z_loss)


def run(args: Any, variants: tuple[str, ...], z_loss: float, log: Callable[[str], None] = print) -> list:
    """Every sweep; writes the outputs to ``args.out`` and returns the records."""
    from paramlab.sweep import save_records

    corpus, held_out, members = grid_data(args)
    records: list[dict[str, Any]] = []
    for variant in variants:
        guarded = variant == "qk_layernorm_z_loss"
        for cell in lr_transfer.cells(args):
            t0 = time.perf_counter()
            setting = build_setting(
                args,
                cell,
                model_options={"qk_layernorm": guarded},
                z_loss=z_loss if guarded else 0.0,
                stability=True,
            )
            result = run_cell(args, setting, members, corpus, held_out)
            logits = _logit_summary(result.history)
            for k, r in enumerate(result.records):
                records.append({**member_record(args, cell, r), "variant": variant, **logits[k]})
            n_diverged = sum(r["diverged"] for r in result.records)
            log(
                f"{cell.parametrization:>10} {variant:>20} width {cell.width:>4}: {len(members)} runs in "
                f"{time.perf_counter() - t0:.1f} s, {n_diverged} diverged"
            )
            save_records(
                records, os.path.join(args.out, "results.json"), os.path.join(args.out, "results.csv")
            )
    write_summary(records, args.out, title=_title(args, z_loss), log=log)
    return records


def _logit_summary(history: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Per member: the largest attention and output logit over its finite steps, and the last ones."""
    out = []
    for k in range(history["loss"].shape[1]):
        row = {}
        for name, key in (("attention_logit", "attention_logit/max"), ("output_logit", "output_logit")):
            values = history[key][:, k]
            finite = values[np.isfinite(values)]
            row[f"max_{name}"] = float(finite.max()) if finite.size else math.nan
            row[f"last_{name}"] = float(finite[-1]) if finite.size else math.nan
        out.append(row)
    return out


def _title(args: Any, z_loss: float) -> str:
    return (
        f"{args.optimizer}, {args.steps} steps x {args.batch_size}x{args.seq_len} bytes, "
        f"base width {args.base_width}, z_loss {z_loss:g} with qk-layernorm, {args.seeds} seed(s)"
    )


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, then run every sweep; with ``--results``, rewrite the summary of those records."""
    args, variants, z_loss = parse_args(config, paths)
    if paths.get("results"):
        from paramlab.sweep import load_records

        os.makedirs(args.out, exist_ok=True)
        write_summary(load_records(paths["results"]), args.out, title=_title(args, z_loss))
        return
    run(args, variants, z_loss)


if __name__ == "__main__":
    cli.run_sweep_experiment(PROGRAM, main)

r"""Coordinate check across depth at a fixed width: ``python -m experiments.depth_check``.

For every depth rule, a residual MLP (:class:`paramlab.models.ResidualMLP`, branch multiplier from
the plan) is built at every depth, trained ``steps`` Adam steps on one repeated Gaussian regression
batch, and the residual stream after each block is compared with its value at init
(:func:`paramlab.diagnostics.depth_check`, ``docs/reference.md`` §11). A depth rule that transfers
keeps the last block's feature change flat in depth. Every key is documented in
``experiments/configs/depth_check.py``::

    python -m experiments.depth_check --out=runs/depth_check --config.depths=2,4,8,16,32 \
        --config.depth_rule=none,depth_mup,completep --config.seeds=3

Writes ``depth_check.json`` (records ``{label, seed, depth, block, rms, delta_rms, update_rms,
nonlinear_fraction}``),
``depth_check.png`` (seed 0) and ``depth_check_summary.json`` / ``.txt`` (per depth rule the log-log
slopes against depth of the last block's init RMS and feature change and of the blocks' mean update
and nonlinear fraction, mean and std over seeds). Exit codes: 0 done; 2 a bad config value (one line
on stderr).
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from experiments import cli

PROGRAM = "experiments.depth_check"
_POSITIVE = ("width", "base_depth", "steps", "seeds", "batch_size", "in_dim", "out_dim")
SLOPES = ("rms_slope", "delta_slope", "update_slope", "nonlinear_slope")


def parse_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The validated settings (``ValueError`` naming the key)."""
    import math

    from paramlab.optim import OPTIMIZERS
    from paramlab.optim.common import check_choice
    from paramlab.parametrization import DEPTH_RULES, RECIPES

    check_choice(config.parametrization, RECIPES, "config.parametrization")
    check_choice(config.optimizer, OPTIMIZERS, "config.optimizer")
    cli.check_positive_ints(config, _POSITIVE)
    rules = cli.parse_names(config.depth_rule, "depth_rule", DEPTH_RULES)
    depths = cli.parse_list(config.depths, int, "depths")
    if len(depths) < 2 or any(d < 1 for d in depths) or len(set(depths)) != len(depths):
        raise ValueError(f"config.depths must be >= 2 distinct positive integers, got {config.depths!r}.")
    if config.base_depth > max(depths):
        raise ValueError(f"config.base_depth={config.base_depth} is larger than every depth {depths}.")
    if not (isinstance(config.depth_alpha, (int, float)) and 0.5 <= config.depth_alpha <= 1.0):
        raise ValueError(f"config.depth_alpha must be in [0.5, 1], got {config.depth_alpha!r}.")
    lr = config.learning_rate
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"config.learning_rate must be a finite number > 0, got {lr!r}.")
    return {**config.to_dict(), "depth_rule": rules, "depths": tuple(sorted(depths))}


def measure(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The depth-check records of every depth rule and seed."""
    import jax
    import jax.numpy as jnp

    from paramlab.diagnostics import depth_check, linen_depth_setup
    from paramlab.models import ResidualMLP, ResidualMLPConfig
    from paramlab.optim import configuring
    from paramlab.parametrization import named_parametrization

    s = settings
    x = jax.random.normal(jax.random.key(10_000), (s["batch_size"], s["in_dim"]))
    y = jax.random.normal(jax.random.key(10_001), (s["batch_size"], s["out_dim"]))
    make = lambda width, depth, branch: ResidualMLP(
        ResidualMLPConfig(s["in_dim"], width, s["out_dim"], depth=depth, branch_multiplier=branch)
    )
    mse = lambda out, targets: jnp.mean((out - targets) ** 2)
    records = []
    for rule in s["depth_rule"]:
        recipe = named_parametrization(
            s["parametrization"],
            s["optimizer"],
            depth_rule=rule,
            depth_alpha=s["depth_alpha"] if rule == "completep" else None,
        )
        kwargs = configuring(s["optimizer"], b1=0.9, b2=0.95, eps=1e-8, momentum=0.0)
        setup = linen_depth_setup(
            make, recipe, x, mse, width=s["width"], base_depth=s["base_depth"], **kwargs
        )
        records += depth_check(
            setup, s["depths"], (x, y), steps=s["steps"], learning_rate=s["learning_rate"],
            seeds=tuple(range(s["seeds"])), label=rule,
        )  # fmt: skip
    return records


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per depth rule: each slope of :func:`paramlab.diagnostics.depth_check_summary` as mean and std
    (``ddof=1``) over seeds."""
    import numpy as np

    from paramlab.diagnostics import depth_check_summary

    rows = []
    for label in dict.fromkeys(r["label"] for r in records):
        per_seed = [
            depth_check_summary([r for r in records if r["label"] == label and r["seed"] == seed])[0]
            for seed in sorted({r["seed"] for r in records if r["label"] == label})
        ]
        row: dict[str, Any] = {"depth_rule": label, "seeds": len(per_seed)}
        for key in SLOPES:
            values = [p[key] for p in per_seed]
            row[key] = float(np.mean(values))
            row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, measure, write the records, the summary and the figure."""
    from paramlab.diagnostics import plot_depth_check
    from paramlab.sweep import format_table, strict_json

    settings = parse_config(config)
    records = measure(settings)
    out = paths["out"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "depth_check.json"), "w") as f:
        json.dump(strict_json(records), f, indent=1, allow_nan=False)
    summary = summarize(records)
    with open(os.path.join(out, "depth_check_summary.json"), "w") as f:
        json.dump(strict_json(summary), f, indent=1, allow_nan=False)
    title = (
        f"depth check: residual MLP width {settings['width']}, {settings['parametrization']} "
        f"{settings['optimizer']} lr {settings['learning_rate']:g}, {settings['steps']} steps, "
        f"base depth {settings['base_depth']}"
    )
    text = title + "\n" + format_table(summary)
    with open(os.path.join(out, "depth_check_summary.txt"), "w") as f:
        f.write(text + "\n")
    plot_depth_check([r for r in records if r["seed"] == 0], os.path.join(out, "depth_check.png"), title)
    print(text)


if __name__ == "__main__":
    cli.run(
        PROGRAM,
        main,
        default_config=cli.config_path("depth_check"),
        path_flags={"out": "Output directory (created if missing)."},
        required=("out",),
    )

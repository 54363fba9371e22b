r"""Does the learning rate transfer across width? ``python -m experiments.lr_transfer``.

For every recipe (``paramlab.parametrization.RECIPES``; ``sp_global`` is the global-LR baseline) and
width, one vmapped sweep (:mod:`paramlab.sweep`) trains a byte-level Transformer at every learning
rate and seed of the grid and evaluates it on held-out batches. Every key is documented in
``experiments/configs/lr_transfer.py``::

    python -m experiments.lr_transfer --out=runs/lr_transfer --config.parametrization=sp_global,mup \
        --config.widths=64,128,256,512 --config.learning_rate_grid=1e-4,0.1,2 --config.steps=200

Writes to ``--out`` (``--data``: a text file or directory instead of the embedded corpus):
``results.json`` / ``.csv`` (one record per parametrization, width, lr and seed: ``final_loss`` is the
held-out loss in nats per byte, ``inf`` if diverged; with ``log_alignment`` also
``alignment/<alpha|omega|u>/<layer>``), ``lr_transfer.png`` and ``optimal_lr.txt`` / ``.json`` (the
best LR per parametrization and width, its shift in grid steps across widths, the LR sensitivity).
Exit codes: 0 done; 2 a bad flag or config value (one line on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from experiments import cli

PROGRAM = "experiments.lr_transfer"
_POSITIVE = ("steps", "seeds", "base_width", "n_layers", "d_head", "ff_ratio", "seq_len", "batch_size")
_POSITIVE += ("eval_batches", "max_bytes", "steps_per_call")


@dataclasses.dataclass(frozen=True)
class Args:
    """The validated command line."""

    parametrizations: tuple[str, ...]
    optimizer: str
    alignment: str | float
    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    seeds: int
    out: str
    eps: float
    eps_mode: str
    base_width: int
    n_layers: int
    d_head: int
    ff_ratio: int
    seq_len: int
    batch_size: int
    warmup_steps: int
    eval_batches: int
    max_bytes: int
    data: str
    steps_per_call: int
    log_alignment: bool = False


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
    lrs = _learning_rates(config)
    if not 0 <= config.warmup_steps < config.steps:
        raise ValueError(f"config.warmup_steps must be in [0, config.steps), got {config.warmup_steps}.")
    if not (math.isfinite(config.eps) and config.eps > 0):
        raise ValueError(f"config.eps must be > 0, got {config.eps}.")
    fields = {f.name for f in dataclasses.fields(Args)} - {
        "alignment",
        "parametrizations",
        "widths",
        "lrs",
        "out",
        "data",
    }
    return Args(
        alignment=cli.parse_alignment(config.alignment),
        parametrizations=names,
        widths=tuple(sorted(widths)),
        lrs=tuple(sorted(lrs)),
        out=paths["out"],
        data=paths["data"],
        **{f: config[f] for f in fields},
    )


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


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one sweep trains: a parametrization of the model at one width."""

    init_params: Callable[[Any], Any]
    loss_fn: Callable[[Any, Any], Any]
    optimizer_fn: Callable[..., Any]
    apply_fn: Callable[..., Any]  # (params, tokens) -> logits, with the plan's multipliers


B1, B2, SGD_MOMENTUM = 0.9, 0.95, 0.9


def model_config(args: Args, width: int):
    """The Transformer at ``d_model = width``: heads ``width / d_head``, ``d_ff = ff_ratio * width``."""
    from paramlab.models import TransformerConfig

    return TransformerConfig(
        d_model=width,
        n_layers=args.n_layers,
        n_heads=width // args.d_head,
        d_head=args.d_head,
        d_ff=args.ff_ratio * width,
        max_len=args.seq_len,
        attention_scale="sqrt",  # d_head is fixed across widths: 1/sqrt(d_head) is width-independent
    )


def build_setting(args: Args, parametrization: str, width: int) -> Setting:
    """The model, plan and optimizer factory of one (parametrization, width).

    The recipe comes from :func:`paramlab.parametrization.named_parametrization`. The learning rate
    follows linear warmup then cosine decay to 10% of the swept peak value; each optimizer takes what
    configures it (:func:`paramlab.optim.configuring`) of ``b1=0.9, b2=0.95``, ``eps`` and SGD
    momentum 0.9.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from paramlab.models import Transformer, cross_entropy
    from paramlab.nn import linen as linen_adapter
    from paramlab.optim import configuring
    from paramlab.parametrization import make_plan, named_parametrization
    from paramlab.train import make_schedule

    recipe = named_parametrization(
        parametrization,
        args.optimizer,
        alignment=args.alignment,
        eps_mode=args.eps_mode,
        attention_scale="sqrt",
    )
    make_model = lambda w: Transformer(model_config(args, w))
    tokens = jax.ShapeDtypeStruct((1, args.seq_len), jnp.int32)
    plan = make_plan(
        make_model, recipe, base=args.base_width, delta=2 * args.base_width, target=width, inputs=(tokens,)
    )
    model = make_model(width)
    apply = plan.wrap_apply(model.apply)
    relative = make_schedule("cosine", 1.0, args.steps, args.warmup_steps, final_fraction=0.1)

    def init_params(rng):
        return linen_adapter.init(plan, model, rng, jnp.zeros((1, args.seq_len), jnp.int32))["params"]

    def loss_fn(params, batch):
        return cross_entropy(apply({"params": params}, batch["inputs"]), batch["targets"])

    def optimizer_fn(learning_rate):
        kwargs = configuring(args.optimizer, b1=B1, b2=B2, eps=args.eps, momentum=SGD_MOMENTUM)
        tx = plan.optimizer(learning_rate=learning_rate, **kwargs)
        return optax.chain(tx, optax.scale_by_schedule(relative))

    return Setting(init_params, loss_fn, optimizer_fn, lambda params, x: apply({"params": params}, x))


def _record(args: Args, parametrization: str, width: int, r: dict[str, Any]) -> dict[str, Any]:
    """One output record from one sweep member's record."""
    return {
        "parametrization": parametrization,
        "optimizer": args.optimizer,
        "alignment": args.alignment,
        "width": width,
        "lr": r["learning_rate"],
        **{k: r[k] for k in ("seed", "final_loss", "diverged", "initial_loss", "train_loss", "eval_loss")},
        "diverged_step": r["diverged_step"],
        "steps": r["steps"],
        "eps": args.eps,
        "eps_mode": args.eps_mode,
        **{k: v for k, v in r.items() if k.startswith("alignment/")},
    }


def run(args: Args, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every sweep of the experiment; writes the outputs to ``args.out`` and returns the records."""
    from paramlab.data import BatchIterator, eval_batches, load_corpus
    from paramlab.diagnostics import alignment_probe
    from paramlab.sweep import product_members, run_sweep, save_records

    os.makedirs(args.out, exist_ok=True)
    corpus = load_corpus(args.data or None, max_bytes=args.max_bytes)
    held_out = eval_batches(
        corpus.eval, seq_len=args.seq_len, batch_size=args.batch_size, max_batches=args.eval_batches
    )
    members = product_members(seeds=tuple(range(args.seeds)), learning_rate=args.lrs)
    records: list[dict[str, Any]] = []
    for parametrization in args.parametrizations:
        for width in args.widths:
            setting = build_setting(args, parametrization, width)
            t0 = time.perf_counter()
            result = run_sweep(
                setting.init_params,
                setting.loss_fn,
                setting.optimizer_fn,
                members,
                BatchIterator(corpus.train, seq_len=args.seq_len, batch_size=args.batch_size, seed=0),
                args.steps,
                eval_batches=lambda: held_out,
                steps_per_call=min(args.steps_per_call, args.steps),
                probe_fn=alignment_probe(setting.apply_fn, held_out[0]["inputs"][:2])
                if args.log_alignment
                else None,
            )
            records += [_record(args, parametrization, width, r) for r in result.records]
            done = [r for r in result.records if not r["diverged"]]
            best = min(done, key=lambda r: r["final_loss"]) if done else None
            log(
                f"{parametrization:>11} width {width:>4}: {len(result.records)} runs in "
                f"{time.perf_counter() - t0:.1f} s, {len(result.records) - len(done)} diverged, best "
                + (f"lr {best['learning_rate']:.3g} loss {best['final_loss']:.4f}" if best else "none")
            )
            save_records(
                records, os.path.join(args.out, "results.json"), os.path.join(args.out, "results.csv")
            )
    write_summary(records, args.out, title=_title(args), log=log)
    return records


def write_summary(
    records: Sequence[dict[str, Any]], out: str, title: str = "", log: Callable[[str], None] = print
) -> str:
    """The optimal-LR table (printed, ``optimal_lr.txt`` / ``.json``) and ``lr_transfer.png``."""
    from paramlab.diagnostics import lr_sensitivity_table
    from paramlab.sweep import format_table, optimal_settings, optimum_shift, strict_json
    from paramlab.sweep.plots import plot_lr_transfer

    group = ("parametrization", "width")
    table = optimal_settings(records, group_by=group)
    sensitivity = {
        tuple(r[k] for k in group): r["lr_sensitivity"] for r in lr_sensitivity_table(records, group)
    }
    for row in table:
        row["lr_sensitivity"] = sensitivity[tuple(row[k] for k in group)]
    shifts = optimum_shift(table, family=("parametrization",))
    columns = [
        "parametrization",
        "width",
        "best_lr",
        "lr_index",
        "best_final_loss",
        "lr_sensitivity",
        "at_grid_edge",
        "n_diverged",
    ]
    widths = {r["width"] for r in records}
    shift_text = (
        "optimum shift across widths: n/a (one width; give several widths to measure a shift)"
        if len(widths) < 2
        else "optimum shift across widths (grid steps): "
        + ", ".join(f"{k[0]}: {'-' if v is None else v}" for k, v in shifts.items())
    )
    edges = [f"{r['parametrization']} width {r['width']}" for r in table if r["at_grid_edge"]]
    edge_text = (
        "best LR at the edge of the grid (the optimum may lie outside it; extend the grid): "
        + ", ".join(edges)
        if edges
        else "every best LR is inside the grid"
    )
    text = "\n".join([title, format_table(table, columns), "", shift_text, edge_text])
    with open(os.path.join(out, "optimal_lr.txt"), "w") as f:
        f.write(text + "\n")
    summary = {
        "optimal": table,
        "shift_grid_steps": {k[0]: v for k, v in shifts.items()},
        "at_grid_edge": edges,
    }
    with open(os.path.join(out, "optimal_lr.json"), "w") as f:
        json.dump(strict_json(summary), f, indent=1, allow_nan=False)
    plot_lr_transfer(records, os.path.join(out, "lr_transfer.png"), title=title)
    log(text)
    return text


def _title(args: Args) -> str:
    return (
        f"{args.optimizer}{cli.eps_label(args.optimizer, args.eps, args.eps_mode)}, "
        f"alignment={args.alignment}, base width {args.base_width}, "
        f"{args.n_layers} layers, {args.steps} steps x {args.batch_size}x{args.seq_len} bytes, "
        f"{args.seeds} seed(s)"
    )


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, fail fast on a combination paramlab lacks, then run every sweep."""
    args = parse_args(config, paths)
    for parametrization in args.parametrizations:
        build_setting(args, parametrization, args.widths[-1]).optimizer_fn(args.lrs[0])
    run(args)


if __name__ == "__main__":
    cli.run(
        PROGRAM,
        main,
        default_config=cli.config_path("lr_transfer"),
        path_flags={"out": "Output directory (created if missing).", "data": "A text file or directory."},
        required=("out",),
    )

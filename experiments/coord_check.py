r"""Coordinate check across widths: ``python -m experiments.coord_check``.

For each recipe the model is built at every width, trained ``steps - 1`` steps on one fixed random
batch, and the mean ``|output|`` of every module is recorded in the forward passes of steps ``1 ..
steps`` (step 1 at init; :func:`paramlab.diagnostics.coord_check`, ``docs/reference.md`` §6). Flat
curves in width mean width-independent dynamics. Every key is documented in
``experiments/configs/coord_check.py``::

    python -m experiments.coord_check --out=runs/coord_check --config.parametrization=sp_global,mup \
        --config.widths=64,128,256,512,1024 --config.model=mlp

Writes ``coord_check.json`` (records ``{parametrization, optimizer, width, step, module, l1}``),
``coord_check.png`` and ``coord_check_summary.json`` (per module and step, the log-log slope and
max / min ratio across widths, printed as a table). Exit codes: 0 done; 2 a bad config value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from experiments import cli

PROGRAM = "experiments.coord_check"
MODELS = ("mlp", "transformer")
MLP_IN_DIM, MLP_CLASSES = 32, 10
_POSITIVE = ("steps", "base_width", "depth", "batch_size", "seq_len", "vocab_size", "d_head", "ff_ratio")


@dataclasses.dataclass(frozen=True)
class Args:
    """The validated command line."""

    parametrizations: tuple[str, ...]
    optimizer: str
    alignment: str | float
    widths: tuple[int, ...]
    steps: int
    model: str
    out: str
    learning_rate: float
    base_width: int
    seed: int
    eps: float
    eps_mode: str
    momentum: float
    zero_init_readout: bool
    weight_norm: bool
    depth: int
    batch_size: int
    seq_len: int
    vocab_size: int
    d_head: int
    ff_ratio: int


def parse_args(config: ml_collections.ConfigDict, paths: dict[str, str]) -> Args:
    """Validate the config (``ValueError`` naming the key)."""
    from paramlab.optim import OPTIMIZERS
    from paramlab.optim.common import check_choice

    names = cli.parse_recipes(config.parametrization)
    check_choice(config.optimizer, OPTIMIZERS, "config.optimizer")
    check_choice(config.model, MODELS, "config.model")
    check_choice(config.eps_mode, ("constant", "per_layer"), "config.eps_mode")
    cli.check_positive_ints(config, _POSITIVE)
    widths = cli.parse_list(config.widths, int, "widths")
    if not widths or any(w < 1 for w in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"config.widths must be distinct positive integers, got {config.widths!r}.")
    base = config.base_width
    bad = [w for w in widths if max(w, base) % min(w, base)]
    if bad:
        raise ValueError(f"config.widths {bad} are not an integer ratio to config.base_width={base}.")
    if config.model == "transformer":
        bad = [w for w in (*widths, base) if w % config.d_head]
        if bad:
            raise ValueError(
                f"config.widths / base_width {bad} are not divisible by config.d_head={config.d_head}."
            )
        if config.d_head % 2:
            raise ValueError(f"config.d_head must be even (rotary positions), got {config.d_head}.")
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise ValueError(f"config.learning_rate must be a positive number, got {config.learning_rate}.")
    if not (math.isfinite(config.eps) and config.eps >= 0):
        raise ValueError(f"config.eps must be >= 0, got {config.eps}.")
    if not 0 <= config.momentum < 1:
        raise ValueError(f"config.momentum must be in [0, 1), got {config.momentum}.")
    if config.seed < 0:
        raise ValueError(f"config.seed must be >= 0, got {config.seed}.")
    if not isinstance(config.weight_norm, bool) or (config.weight_norm and config.model != "mlp"):
        raise ValueError(
            f"config.weight_norm must be a bool, and True only with model=mlp, got {config.weight_norm!r}."
        )
    fields = {f.name for f in dataclasses.fields(Args)} - {"alignment", "parametrizations", "widths", "out"}
    return Args(
        alignment=cli.parse_alignment(config.alignment),
        parametrizations=names,
        widths=tuple(sorted(widths)),
        out=paths["out"],
        **{f: config[f] for f in fields},
    )


def make_parametrization(args: Args, name: str) -> Any:
    """The :class:`paramlab.parametrization.Parametrization` a recipe name stands for."""
    from paramlab.parametrization import named_parametrization

    return named_parametrization(
        name,
        args.optimizer,
        alignment=args.alignment,
        eps_mode=args.eps_mode,
        zero_init_readout=args.zero_init_readout,
    )


def make_task(args: Args, parametrization: Any) -> tuple[Callable[[int], Any], Any, Callable[..., Any]]:
    """``(make_model, batch, loss_fn)``: the model family of ``--model`` and its fixed random batch."""
    import jax

    from paramlab.models import MLP, MLPConfig, Transformer, TransformerConfig, cross_entropy

    data_key = jax.random.fold_in(jax.random.key(args.seed), 1)
    loss_fn = lambda logits, targets: cross_entropy(logits, targets)[0]
    if args.model == "mlp":
        x_key, y_key = jax.random.split(data_key)
        batch = (
            jax.random.normal(x_key, (args.batch_size, MLP_IN_DIM)),
            jax.random.randint(y_key, (args.batch_size,), 0, MLP_CLASSES),
        )
        make_model = lambda width: MLP(
            MLPConfig(MLP_IN_DIM, width, MLP_CLASSES, depth=args.depth, weight_norm=args.weight_norm)
        )
        return make_model, batch, loss_fn
    tokens = jax.random.randint(data_key, (args.batch_size, args.seq_len + 1), 0, args.vocab_size)
    config = TransformerConfig(
        vocab_size=args.vocab_size,
        d_model=args.base_width,
        n_layers=args.depth,
        n_heads=args.base_width // args.d_head,
        d_head=args.d_head,
        d_ff=args.ff_ratio * args.base_width,
        max_len=args.seq_len,
        attention_scale=parametrization.resolved_attention_scale,
        attention_base_d_head=args.d_head,
        zero_init_query=parametrization.zero_init_query,
    )

    def make_model(width: int) -> Any:
        return Transformer(
            config.with_width(d_model=width, n_heads=width // args.d_head, d_ff=args.ff_ratio * width)
        )

    return make_model, (tokens[:, :-1], tokens[:, 1:]), loss_fn


def plan_setup(
    args: Args,
    parametrization: Any,
    make_model: Callable[[int], Any],
    batch: Any,
    loss_fn: Callable[..., Any],
    **optimizer_kwargs: Any,
) -> Callable[[int], Any]:
    """The width -> setup of :func:`paramlab.diagnostics.linen_plan_setup` for ``--model``'s task, its
    plan inferred from the base width and twice it."""
    from paramlab.diagnostics import linen_plan_setup

    return linen_plan_setup(
        make_model,
        parametrization,
        batch[0],
        loss_fn,
        base_width=args.base_width,
        delta_width=2 * args.base_width,
        **optimizer_kwargs,
    )


def run(args: Args, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every parametrization's coordinate check; writes the outputs to ``args.out``, returns the records."""
    import jax

    from paramlab.diagnostics import (
        FAST_CPU_COMPILE,
        coord_check,
        coord_check_summary,
        plot_coord_check,
    )
    from paramlab.optim import configuring
    from paramlab.sweep import strict_json

    os.makedirs(args.out, exist_ok=True)
    optimizer_kwargs = configuring(args.optimizer, eps=args.eps, momentum=args.momentum)
    records: list[dict[str, Any]] = []
    for name in args.parametrizations:
        parametrization = make_parametrization(args, name)
        make_model, batch, loss_fn = make_task(args, parametrization)
        setup = plan_setup(args, parametrization, make_model, batch, loss_fn, **optimizer_kwargs)
        records += coord_check(
            setup,
            args.widths,
            batch,
            steps=args.steps,
            learning_rate=args.learning_rate,
            seed=args.seed,
            parametrization=name,
            optimizer=args.optimizer,
            compiler_options=FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None,
        )
    with open(os.path.join(args.out, "coord_check.json"), "w") as f:
        json.dump(strict_json(records), f, indent=1, allow_nan=False)
    summary = coord_check_summary(records)
    with open(os.path.join(args.out, "coord_check_summary.json"), "w") as f:
        json.dump(strict_json(summary), f, indent=1, allow_nan=False)
    plot_coord_check(records, os.path.join(args.out, "coord_check.png"), title=_title(args))
    log(_title(args))
    log(format_summary(summary))
    return records


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """A text table of :func:`paramlab.diagnostics.coord_check_summary` rows."""
    header = ("parametrization", "step", "module", "slope", "max/min")
    rows = [header] + [
        (r["parametrization"], str(r["step"]), r["module"], f"{r['slope']:+.3f}", f"{r['ratio']:.3f}")
        for r in sorted(summary, key=lambda r: (r["parametrization"], r["step"], r["module"]))
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _title(args: Args) -> str:
    return (
        f"coordinate check: {args.model} (depth {args.depth}), {args.optimizer} "
        f"lr={args.learning_rate:g}{cli.eps_label(args.optimizer, args.eps, args.eps_mode)}, "
        f"alignment={cli.alignment_label(args.alignment)}, base width {args.base_width}"
        + (", zero readout" if args.zero_init_readout else "")
        + (", weight-normalised" if args.weight_norm else "")
    )


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    run(parse_args(config, paths))


if __name__ == "__main__":
    cli.run(
        PROGRAM,
        main,
        default_config=cli.config_path("coord_check"),
        path_flags={"out": "Output directory (created if missing)."},
        required=("out",),
    )

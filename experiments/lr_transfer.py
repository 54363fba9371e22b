r"""Does the learning rate transfer across width? ``python -m experiments.lr_transfer``.

For every parametrization and width, one vmapped sweep (:mod:`paramlab.sweep`) trains a byte-level
Transformer on the embedded corpus at every learning rate of the grid and every seed, then evaluates
it on held-out batches. Usage::

    python -m experiments.lr_transfer --parametrization=sp,mup --optimizer=adam --alignment=full \
        --widths=64,128,256,512 --lr_grid=1e-4,0.1,2 --steps=200 --seeds=1 --out=runs/lr_transfer

Writes to ``--out``:

* ``results.json`` / ``results.csv``: one record per (parametrization, width, lr, seed) with keys
  ``parametrization, optimizer, alignment, width, lr, seed, final_loss, diverged`` (and
  ``initial_loss, train_loss, eval_loss, diverged_step, steps, eps, per_layer_eps``).
  ``final_loss`` is the held-out loss after the last step (nats per byte), ``inf`` if diverged.
* ``lr_transfer.png``: loss against learning rate, one line per width, one panel per parametrization.
* ``optimal_lr.txt`` / ``optimal_lr.json``: the best learning rate per parametrization and width
  (seed-mean loss), how many grid steps it moves across widths, and the LR sensitivity
  (Wortsman et al.) of each curve. The table is printed too.

With ``--log_alignment`` each record also holds ``alignment/<alpha|omega|u>/<layer>``: the run's
alignment exponents after the last step relative to its initialization, measured on two held-out
sequences (:func:`paramlab.diagnostics.alignment_probe`).

Parametrizations: ``sp`` is standard parametrization with one global learning rate (the baseline);
``sp_perlayer``, ``ntk``, ``mup`` and ``mfp`` use their per-layer learning-rate exponents for
``--optimizer`` and ``--alignment`` (Everett et al. 2024, Table B of paramlab's REFERENCE), relative
to ``--base_width`` where all of them equal the base model. Width is ``d_model``; ``d_ff`` is
``--ff_ratio * d_model`` and heads grow at fixed ``--d_head``.

Exit codes: 0 done; 2 a bad flag (one line on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from absl import app, flags

from experiments.cli import fail, flags_parser

PARAMETRIZATIONS = ("sp", "sp_perlayer", "ntk", "mup", "mfp")
OPTIMIZERS = ("adam", "adam_atan2", "sgd", "adafactor")

_PARAMETRIZATION = flags.DEFINE_list(
    "parametrization", ["sp", "mup"], f"Comma-separated subset of {','.join(PARAMETRIZATIONS)}."
)
_OPTIMIZER = flags.DEFINE_string("optimizer", "adam", f"One of {', '.join(OPTIMIZERS)}.")
_ALIGNMENT = flags.DEFINE_string("alignment", "full", "LR-exponent alignment assumption: full or none.")
_WIDTHS = flags.DEFINE_list("widths", ["64", "128", "256", "512"], "Comma-separated d_model values.")
_LRS = flags.DEFINE_list("lrs", None, "Comma-separated learning rates (instead of --lr_grid).")
_LR_GRID = flags.DEFINE_list(
    "lr_grid", None, "min,max,factor: the log grid min, min*factor, ... <= max (default 1e-4,0.1,2)."
)
_STEPS = flags.DEFINE_integer("steps", 200, "Optimizer steps per run.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Number of initialization seeds per learning rate (0, 1, ...).")
_OUT = flags.DEFINE_string("out", None, "Output directory (created if missing).")
_EPS = flags.DEFINE_float("eps", 1e-8, "Adam epsilon (at the base width with --per_layer_eps).")
_PER_LAYER_EPS = flags.DEFINE_bool(
    "per_layer_eps", False, "Scale Adam's epsilon per layer with the gradient scale n^-g (REFERENCE §3)."
)
_BASE_WIDTH = flags.DEFINE_integer("base_width", 64, "The width where every parametrization equals SP.")
_N_LAYERS = flags.DEFINE_integer("n_layers", 2, "Transformer blocks.")
_D_HEAD = flags.DEFINE_integer("d_head", 16, "Per-head width (fixed; heads = width / d_head).")
_FF_RATIO = flags.DEFINE_integer("ff_ratio", 4, "d_ff = ff_ratio * width.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 64, "Bytes per training sequence.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Sequences per step.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 10, "Linear warmup steps, then cosine decay to 10%.")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 4, "Held-out batches for final_loss.")
_CORPUS_BYTES = flags.DEFINE_integer("corpus_bytes", 2_000_000, "Bytes of the embedded corpus to read.")
_DATA_PATH = flags.DEFINE_string("data", "", "A text file or directory instead of the embedded corpus.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 25, "Steps per compiled call (lax.scan).")
_ALIGNMENT_PROBE = flags.DEFINE_bool(
    "log_alignment",
    False,
    "Add each run's final alignment exponents (alpha, omega, u per layer) to the records.",
)


@dataclasses.dataclass(frozen=True)
class Args:
    """The validated command line."""

    parametrizations: tuple[str, ...]
    optimizer: str
    alignment: str
    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    seeds: int
    out: str
    eps: float
    per_layer_eps: bool
    base_width: int
    n_layers: int
    d_head: int
    ff_ratio: int
    seq_len: int
    batch_size: int
    warmup_steps: int
    eval_batches: int
    corpus_bytes: int
    data: str
    steps_per_call: int
    log_alignment: bool = False


def log_grid(low: float, high: float, factor: float) -> tuple[float, ...]:
    """``low, low * factor, low * factor^2, ...`` up to ``high`` (inclusive, relative tolerance 1e-9)."""
    if not (math.isfinite(low) and math.isfinite(high) and low > 0 and high >= low):
        raise ValueError(f"--lr_grid needs 0 < min <= max, got min={low}, max={high}.")
    if not (math.isfinite(factor) and factor > 1):
        raise ValueError(f"--lr_grid factor must be > 1, got {factor}.")
    n = int(math.floor(math.log(high / low) / math.log(factor) + 1e-9)) + 1
    return tuple(low * factor**i for i in range(n))


def parse_args() -> Args:
    """Validate the flags (``ValueError`` naming the flag)."""
    names = tuple(_PARAMETRIZATION.value or ())
    unknown = [p for p in names if p not in PARAMETRIZATIONS]
    if not names or unknown:
        raise ValueError(
            f"--parametrization: unknown {unknown or names}; choose from {','.join(PARAMETRIZATIONS)}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--parametrization lists a name twice: {','.join(names)}.")
    if _OPTIMIZER.value not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {_OPTIMIZER.value!r}.")
    if _ALIGNMENT.value not in ("full", "none"):
        raise ValueError(f"--alignment must be full or none, got {_ALIGNMENT.value!r}.")
    widths = tuple(_parse_numbers(_WIDTHS.value, int, "--widths"))
    if not widths or any(w < 1 for w in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"--widths must be distinct positive integers, got {_WIDTHS.value}.")
    bad = [w for w in (*widths, _BASE_WIDTH.value) if w % _D_HEAD.value]
    if bad:
        raise ValueError(f"--widths / --base_width {bad} are not divisible by --d_head={_D_HEAD.value}.")
    if _LRS.value and _LR_GRID.value:
        raise ValueError("give --lrs or --lr_grid, not both.")
    if _LRS.value:
        lrs = tuple(_parse_numbers(_LRS.value, float, "--lrs"))
        if any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
            raise ValueError(f"--lrs must be positive numbers, got {_LRS.value}.")
    else:
        grid = _parse_numbers(_LR_GRID.value or ["1e-4", "0.1", "2"], float, "--lr_grid")
        if len(grid) != 3:
            raise ValueError(f"--lr_grid is min,max,factor, got {_LR_GRID.value}.")
        lrs = log_grid(*grid)
    positive = {
        "--steps": _STEPS.value,
        "--seeds": _SEEDS.value,
        "--base_width": _BASE_WIDTH.value,
        "--n_layers": _N_LAYERS.value,
        "--d_head": _D_HEAD.value,
        "--ff_ratio": _FF_RATIO.value,
        "--seq_len": _SEQ_LEN.value,
        "--batch_size": _BATCH_SIZE.value,
        "--eval_batches": _EVAL_BATCHES.value,
        "--corpus_bytes": _CORPUS_BYTES.value,
        "--steps_per_call": _STEPS_PER_CALL.value,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if not 0 <= _WARMUP.value < _STEPS.value:
        raise ValueError(f"--warmup_steps must be in [0, --steps), got {_WARMUP.value}.")
    if not (math.isfinite(_EPS.value) and _EPS.value > 0):
        raise ValueError(f"--eps must be > 0, got {_EPS.value}.")
    if not _OUT.value:
        raise ValueError("--out is required.")
    return Args(
        parametrizations=names,
        optimizer=_OPTIMIZER.value,
        alignment=_ALIGNMENT.value,
        widths=tuple(sorted(widths)),
        lrs=tuple(sorted(lrs)),
        steps=_STEPS.value,
        seeds=_SEEDS.value,
        out=_OUT.value,
        eps=_EPS.value,
        per_layer_eps=_PER_LAYER_EPS.value,
        base_width=_BASE_WIDTH.value,
        n_layers=_N_LAYERS.value,
        d_head=_D_HEAD.value,
        ff_ratio=_FF_RATIO.value,
        seq_len=_SEQ_LEN.value,
        batch_size=_BATCH_SIZE.value,
        warmup_steps=_WARMUP.value,
        eval_batches=_EVAL_BATCHES.value,
        corpus_bytes=_CORPUS_BYTES.value,
        data=_DATA_PATH.value,
        steps_per_call=_STEPS_PER_CALL.value,
        log_alignment=_ALIGNMENT_PROBE.value,
    )


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one sweep trains: a parametrization of the model at one width."""

    init_params: Callable[[Any], Any]
    loss_fn: Callable[[Any, Any], Any]
    optimizer_fn: Callable[..., Any]
    apply_fn: Callable[..., Any]  # (params, tokens) -> logits, with the plan's multipliers


# --optimizer -> (paramlab base optimizer, its LR-exponent family)
BASE_OPTIMIZER = {
    "adam": ("adam", "adam"),
    "adam_atan2": ("adam_atan2", "adam"),
    "sgd": ("sgd", "sgd"),
    "adafactor": ("adafactor", "adafactor"),
}
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

    ``sp`` is SP with ``lr_mode="global"`` (one LR, kept as the width grows); the others use their
    per-layer exponents. The learning rate follows linear warmup then cosine decay to 10% of the
    swept peak value; Adam-family optimizers use ``b1=0.9, b2=0.95``, SGD momentum 0.9.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from paramlab.models import Transformer, cross_entropy
    from paramlab.nn import split_fan_axes
    from paramlab.parametrization import Parametrization, make_plan
    from paramlab.train import make_schedule

    base, family = BASE_OPTIMIZER[args.optimizer]
    recipe = Parametrization(
        "sp" if parametrization == "sp_perlayer" else parametrization,
        family,
        alignment=args.alignment,
        lr_mode="global" if parametrization == "sp" else "per_layer",
        eps_mode="per_layer" if args.per_layer_eps else "constant",
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
        params = split_fan_axes(model.init(rng, jnp.zeros((1, args.seq_len), jnp.int32)))[0]["params"]
        return plan.rescale_init(params)

    def loss_fn(params, batch):
        return cross_entropy(apply({"params": params}, batch["inputs"]), batch["targets"])

    def optimizer_fn(learning_rate):
        kwargs = {"momentum": SGD_MOMENTUM} if base == "sgd" else {"b1": B1, "b2": B2, "eps": args.eps}
        if base == "adam_atan2":
            kwargs.pop("eps")
        return optax.chain(plan.optimizer(base, learning_rate, **kwargs), optax.scale_by_schedule(relative))

    return Setting(init_params, loss_fn, optimizer_fn, lambda params, x: apply({"params": params}, x))


def run(args: Args, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every sweep of the experiment; writes the outputs to ``args.out`` and returns the records."""
    from paramlab.data import BatchIterator, eval_batches, load_corpus
    from paramlab.diagnostics import alignment_probe
    from paramlab.sweep import product_members, run_sweep, save_records

    os.makedirs(args.out, exist_ok=True)
    corpus = load_corpus(args.data or None, max_bytes=args.corpus_bytes)
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
            for r in result.records:
                records.append(
                    {
                        "parametrization": parametrization,
                        "optimizer": args.optimizer,
                        "alignment": args.alignment,
                        "width": width,
                        "lr": r["learning_rate"],
                        "seed": r["seed"],
                        "final_loss": r["final_loss"],
                        "diverged": r["diverged"],
                        "initial_loss": r["initial_loss"],
                        "train_loss": r["train_loss"],
                        "eval_loss": r["eval_loss"],
                        "diverged_step": r["diverged_step"],
                        "steps": r["steps"],
                        "eps": args.eps,
                        "per_layer_eps": args.per_layer_eps,
                        **{k: v for k, v in r.items() if k.startswith("alignment/")},
                    }
                )
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
    from paramlab.sweep import format_table, optimal_settings, optimum_shift
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
        "n_diverged",
    ]
    text = "\n".join(
        [
            title,
            format_table(table, columns),
            "",
            "optimum shift across widths (grid steps): "
            + ", ".join(f"{k[0]}: {'-' if v is None else v}" for k, v in shifts.items()),
        ]
    )
    with open(os.path.join(out, "optimal_lr.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "optimal_lr.json"), "w") as f:
        json.dump({"optimal": table, "shift_grid_steps": {k[0]: v for k, v in shifts.items()}}, f, indent=1)
    plot_lr_transfer(records, os.path.join(out, "lr_transfer.png"), title=title)
    log(text)
    return text


def _title(args: Args) -> str:
    eps = "atan2 (no eps)" if args.optimizer == "adam_atan2" else f"eps={args.eps:g}"
    eps += ", per-layer eps" if args.per_layer_eps and args.optimizer != "adam_atan2" else ""
    return (
        f"{args.optimizer} ({eps}), alignment={args.alignment}, base width {args.base_width}, "
        f"{args.n_layers} layers, {args.steps} steps x {args.batch_size}x{args.seq_len} bytes, "
        f"{args.seeds} seed(s)"
    )


def _parse_numbers(values: Sequence[str], kind: type, flag: str) -> list:
    try:
        return [kind(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(
            f"{flag} must be comma-separated {kind.__name__}s, got {','.join(values)}."
        ) from None


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {list(argv[1:])}; every option is a --flag")
    try:
        args = parse_args()
        for parametrization in args.parametrizations:  # fail fast on a combination paramlab lacks
            build_setting(args, parametrization, args.widths[-1]).optimizer_fn(args.lrs[0])
    except ValueError as e:
        _fail(" ".join(str(e).split()))
    run(args)


def _fail(message: str) -> NoReturn:
    fail("experiments.lr_transfer", message)


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("experiments.lr_transfer"))

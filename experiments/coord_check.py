r"""Coordinate check across widths: ``python -m experiments.coord_check``.

For each parametrization, the model is built at every width, trained for ``--steps - 1`` steps on one
fixed random batch, and the mean ``|output|`` of every module is recorded in the forward pass of
steps ``1 .. --steps`` (step 1 at initialisation): Tensor Programs V's coordinate check
(:func:`paramlab.diagnostics.coord_check`). Flat curves in width mean width-independent training
dynamics. Usage::

    python -m experiments.coord_check --parametrization=mup --optimizer=adam \
        --widths=64,128,256,512,1024 --steps=3 --model=mlp --out=runs/coord_check

Writes to ``--out``:

* ``coord_check.json``: a list of records ``{parametrization, optimizer, width, step, module, l1}``.
* ``coord_check.png``: ``l1`` against width, log-log, one line per module, one panel per step (one
  row per parametrization).
* ``coord_check_summary.json``: per (parametrization, module, step) the fitted log-log slope and
  max / min ratio across widths; also printed as a table.

Parametrizations: ``sp`` is the standard parametrization with one global learning rate (the
baseline whose activations grow with width); ``sp_perlayer``, ``ntk``, ``mup``, ``mfp`` and
``mup_table8`` (``microsoft/mup``'s form) use their per-layer learning-rate exponents for
``--optimizer`` and ``--alignment``, relative to ``--base_width`` where all of them equal the base
model.

Models: ``mlp``: ``--depth`` hidden layers of ``width`` units (ReLU), 32 Gaussian input features, 10
classes, cross-entropy, ``--batch_size`` examples. ``transformer``: the decoder-only
:class:`paramlab.models.Transformer` with ``d_model = width``, ``n_heads = width / --d_head`` (heads
grow, head width fixed), ``d_ff = --ff_ratio * width``, ``--depth`` blocks, next-token cross-entropy on
``--batch_size`` random sequences of ``--seq_len`` tokens over ``--vocab_size``; the attention scale
follows the parametrization (``1/d_head`` with multiplier ``sqrt(d_head)`` for muP / MFP, equal to
``1/sqrt(d_head)`` at the fixed head width).

Exit codes: 0 done; 2 a bad flag (one line on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from absl import app, flags

from experiments.cli import fail, flags_parser

PARAMETRIZATIONS = ("sp", "sp_perlayer", "ntk", "mup", "mfp", "mup_table8")
OPTIMIZERS = {"adam": "adam", "adam_atan2": "adam", "sgd": "sgd"}  # base optimizer -> LR-exponent family
MODELS = ("mlp", "transformer")
MLP_IN_DIM, MLP_CLASSES = 32, 10

_PARAMETRIZATION = flags.DEFINE_list(
    "parametrization", ["mup"], f"Comma-separated subset of {','.join(PARAMETRIZATIONS)}."
)
_OPTIMIZER = flags.DEFINE_string("optimizer", "adam", f"One of {', '.join(OPTIMIZERS)}.")
_ALIGNMENT = flags.DEFINE_string("alignment", "full", "LR-exponent alignment assumption: full or none.")
_WIDTHS = flags.DEFINE_list("widths", ["64", "128", "256", "512", "1024"], "Comma-separated widths.")
_STEPS = flags.DEFINE_integer("steps", 3, "Recorded forward passes (step 1 at init).")
_MODEL = flags.DEFINE_string("model", "mlp", f"One of {', '.join(MODELS)}.")
_OUT = flags.DEFINE_string("out", None, "Output directory (created if missing).")
_LR = flags.DEFINE_float("lr", 1e-2, "Global learning rate (at the base width for per-layer LRs).")
_BASE_WIDTH = flags.DEFINE_integer("base_width", 64, "The width where every parametrization equals SP.")
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation and data seed.")
_EPS = flags.DEFINE_float("eps", 1e-8, "Adam epsilon (at the base width with --per_layer_eps).")
_PER_LAYER_EPS = flags.DEFINE_bool(
    "per_layer_eps", False, "Scale Adam's epsilon per layer with the gradient scale n^-g (REFERENCE §3)."
)
_MOMENTUM = flags.DEFINE_float("momentum", 0.0, "SGD momentum.")
_ZERO_READOUT = flags.DEFINE_bool(
    "zero_readout", False, "Zero-initialise the readout (TP-V's recommendation)."
)
_DEPTH = flags.DEFINE_integer("depth", 2, "MLP hidden layers / Transformer blocks.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32, "Examples (MLP) or sequences (Transformer) in the batch."
)
_SEQ_LEN = flags.DEFINE_integer("seq_len", 16, "Transformer: tokens per sequence.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 256, "Transformer: vocabulary size.")
_D_HEAD = flags.DEFINE_integer("d_head", 16, "Transformer: per-head width (fixed; heads = width / d_head).")
_FF_RATIO = flags.DEFINE_integer("ff_ratio", 4, "Transformer: d_ff = ff_ratio * width.")


@dataclasses.dataclass(frozen=True)
class Args:
    """The validated command line."""

    parametrizations: tuple[str, ...]
    optimizer: str
    alignment: str
    widths: tuple[int, ...]
    steps: int
    model: str
    out: str
    lr: float
    base_width: int
    seed: int
    eps: float
    per_layer_eps: bool
    momentum: float
    zero_readout: bool
    depth: int
    batch_size: int
    seq_len: int
    vocab_size: int
    d_head: int
    ff_ratio: int


def parse_args() -> Args:
    """Validate the flags (``ValueError`` naming the flag)."""
    names = tuple(_PARAMETRIZATION.value or ())
    unknown = [p for p in names if p not in PARAMETRIZATIONS]
    if not names or unknown:
        raise ValueError(
            f"--parametrization: unknown {','.join(unknown or names) or '(empty)'}; "
            f"choose from {','.join(PARAMETRIZATIONS)}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--parametrization lists a name twice: {','.join(names)}.")
    if _OPTIMIZER.value not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {_OPTIMIZER.value!r}.")
    if _ALIGNMENT.value not in ("full", "none"):
        raise ValueError(f"--alignment must be full or none, got {_ALIGNMENT.value!r}.")
    if _MODEL.value not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {_MODEL.value!r}.")
    widths = _parse_ints(_WIDTHS.value, "--widths")
    if not widths or any(w < 1 for w in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"--widths must be distinct positive integers, got {','.join(_WIDTHS.value)}.")
    positive = {
        "--steps": _STEPS.value,
        "--base_width": _BASE_WIDTH.value,
        "--depth": _DEPTH.value,
        "--batch_size": _BATCH_SIZE.value,
        "--seq_len": _SEQ_LEN.value,
        "--vocab_size": _VOCAB_SIZE.value,
        "--d_head": _D_HEAD.value,
        "--ff_ratio": _FF_RATIO.value,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    base = _BASE_WIDTH.value
    bad = [w for w in widths if w < base or w % base]
    if bad:
        raise ValueError(f"--widths {bad} are not multiples of --base_width={base} (>= it).")
    if _MODEL.value == "transformer":
        if base % _D_HEAD.value:
            raise ValueError(f"--base_width={base} is not divisible by --d_head={_D_HEAD.value}.")
        if _D_HEAD.value % 2:
            raise ValueError(f"--d_head must be even (rotary positions), got {_D_HEAD.value}.")
    if not (math.isfinite(_LR.value) and _LR.value > 0):
        raise ValueError(f"--lr must be a positive number, got {_LR.value}.")
    if not (math.isfinite(_EPS.value) and _EPS.value >= 0):
        raise ValueError(f"--eps must be >= 0, got {_EPS.value}.")
    if not 0 <= _MOMENTUM.value < 1:
        raise ValueError(f"--momentum must be in [0, 1), got {_MOMENTUM.value}.")
    if _SEED.value < 0:
        raise ValueError(f"--seed must be >= 0, got {_SEED.value}.")
    if not _OUT.value:
        raise ValueError("--out is required.")
    return Args(
        parametrizations=names,
        optimizer=_OPTIMIZER.value,
        alignment=_ALIGNMENT.value,
        widths=tuple(sorted(widths)),
        steps=_STEPS.value,
        model=_MODEL.value,
        out=_OUT.value,
        lr=_LR.value,
        base_width=base,
        seed=_SEED.value,
        eps=_EPS.value,
        per_layer_eps=_PER_LAYER_EPS.value,
        momentum=_MOMENTUM.value,
        zero_readout=_ZERO_READOUT.value,
        depth=_DEPTH.value,
        batch_size=_BATCH_SIZE.value,
        seq_len=_SEQ_LEN.value,
        vocab_size=_VOCAB_SIZE.value,
        d_head=_D_HEAD.value,
        ff_ratio=_FF_RATIO.value,
    )


def _parse_ints(values: Sequence[str], flag: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be comma-separated integers, got {','.join(values)}.") from None


def make_parametrization(args: Args, name: str) -> Any:
    """The :class:`paramlab.parametrization.Parametrization` a command-line name stands for."""
    from paramlab.parametrization import Parametrization

    return Parametrization(
        "sp" if name == "sp_perlayer" else name,
        OPTIMIZERS[args.optimizer],
        alignment=args.alignment,
        lr_mode="global" if name == "sp" else "per_layer",
        eps_mode="per_layer" if args.per_layer_eps else "constant",
        readout_zero_init=args.zero_readout,
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
        make_model = lambda width: MLP(MLPConfig(MLP_IN_DIM, width, MLP_CLASSES, depth=args.depth))
        return make_model, batch, loss_fn
    tokens = jax.random.randint(data_key, (args.batch_size, args.seq_len + 1), 0, args.vocab_size)
    scale = parametrization.resolved_attention_scale
    config = TransformerConfig(
        vocab_size=args.vocab_size,
        d_model=args.base_width,
        n_layers=args.depth,
        n_heads=args.base_width // args.d_head,
        d_head=args.d_head,
        d_ff=args.ff_ratio * args.base_width,
        max_len=args.seq_len,
        attention_scale=scale,
        attention_multiplier=math.sqrt(args.d_head) if scale == "linear" else 1.0,
        zero_init_query=parametrization.query_zero_init,
    )

    def make_model(width: int) -> Any:
        return Transformer(
            config.with_width(d_model=width, n_heads=width // args.d_head, d_ff=args.ff_ratio * width)
        )

    return make_model, (tokens[:, :-1], tokens[:, 1:]), loss_fn


def run(args: Args, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every parametrization's coordinate check; writes the outputs to ``args.out``, returns the records."""
    import jax

    from paramlab.diagnostics import (
        FAST_CPU_COMPILE,
        coord_check,
        coord_check_summary,
        linen_plan_setup,
        plot_coord_check,
    )

    os.makedirs(args.out, exist_ok=True)
    optimizer_kwargs = {"adam": {"eps": args.eps}, "adam_atan2": {}, "sgd": {"momentum": args.momentum}}
    records: list[dict[str, Any]] = []
    for name in args.parametrizations:
        parametrization = make_parametrization(args, name)
        make_model, batch, loss_fn = make_task(args, parametrization)
        setup = linen_plan_setup(
            make_model,
            parametrization,
            batch[0],
            loss_fn,
            base_width=args.base_width,
            delta_width=2 * args.base_width,
            base_optimizer=args.optimizer,
            **optimizer_kwargs[args.optimizer],
        )
        records += coord_check(
            setup,
            args.widths,
            batch,
            steps=args.steps,
            learning_rate=args.lr,
            seed=args.seed,
            parametrization=name,
            optimizer=args.optimizer,
            compiler_options=FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None,
        )
    with open(os.path.join(args.out, "coord_check.json"), "w") as f:
        json.dump(records, f, indent=1)
    summary = coord_check_summary(records)
    with open(os.path.join(args.out, "coord_check_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
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
    eps = (
        ""
        if args.optimizer != "adam"
        else f", eps={args.eps:g}" + (" per layer" if args.per_layer_eps else "")
    )
    return (
        f"coordinate check: {args.model} (depth {args.depth}), {args.optimizer} lr={args.lr:g}{eps}, "
        f"alignment={args.alignment}, base width {args.base_width}"
        + (", zero readout" if args.zero_readout else "")
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {list(argv[1:])}; every option is a --flag")
    try:
        args = parse_args()
    except ValueError as e:
        _fail(str(e))
    run(args)


def _fail(message: str) -> NoReturn:
    fail("experiments.coord_check", message)


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("experiments.coord_check"))

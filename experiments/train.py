r"""Train a language model with a parametrization: ``python -m experiments.train``.

Usage::

    python -m experiments.train --config=experiments/configs/demo.py --workdir=runs/demo \
        [--config.<key>=<value> ...]

Every key is documented in ``experiments/configs/base.py``. Running the same command again resumes
from the newest checkpoint in ``--workdir`` (bit-identical losses). Exit codes: 0 done; 1 diverged,
or a checkpoint that cannot be used; 2 a bad command line, config key or value, or workdir;
143 stopped by SIGTERM after saving a checkpoint (rerun to continue).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import app, flags, logging
from flax import linen as nn
from ml_collections import config_flags

from paramlab.data import VOCAB_SIZE, BatchIterator, eval_batches, load_corpus, unigram_entropy
from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.parametrization import BASE_OPTIMIZERS, Parametrization, Plan, make_plan
from paramlab.train.checkpoint import CheckpointError
from paramlab.train.loop import LoopConfig, Task, fit
from paramlab.train.schedules import make_schedule
from paramlab.train.state import TrainingDiverged

EXIT_FAILED, EXIT_USAGE, EXIT_PREEMPTED = 1, 2, 143

# Config keys a resumed run may change (cadences and devices); any other difference from the
# checkpoint's config is an error.
RESUME_MUTABLE = ("logging", "eval.every", "checkpoint", "sharding")

_OPTIMIZERS = tuple(BASE_OPTIMIZERS)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything ``experiments.train`` builds from a config before training.

    Attributes:
      task: what :func:`paramlab.train.fit` trains.
      loop: how it trains.
      model: the target-width Transformer.
      plan: its parametrization plan.
      unigram_entropy: the held-out split's unigram entropy (nats per byte), the loss of the best
        context-free predictor.
      summary: a few lines describing the run.
    """

    task: Task
    loop: LoopConfig
    model: Transformer
    plan: Plan
    unigram_entropy: float
    summary: str


def widths(config: ml_collections.ConfigDict, d_model: int) -> dict[str, int]:
    """The Transformer widths at residual width ``d_model``: ``d_ff`` and ``n_heads`` keep their ratio
    to ``d_model`` (``d_head`` is fixed), so every width grows together."""
    m = config.model
    out = {"d_model": d_model}
    for key in ("d_ff", "n_heads"):
        value = getattr(m, key) * d_model / m.d_model
        if value != int(value) or value < 1:
            raise ValueError(
                f"parametrization.base_d_model={config.parametrization.base_d_model}: width {d_model} gives "
                f"{key} = {getattr(m, key)} * {d_model} / {m.d_model} = {value:g}, not a positive integer."
            )
        out[key] = int(value)
    return out


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Build the model, plan, optimizer, data and loop settings a config describes.

    Raises:
      ValueError: naming the config section (and, through the component, the key) of a bad value.
    """
    with _section("data"):
        corpus = load_corpus(
            config.data.path or None,
            max_bytes=config.data.max_bytes or None,
            eval_fraction=config.data.eval_fraction,
        )
        train_batches = BatchIterator(
            corpus.train,
            seq_len=config.data.seq_len,
            batch_size=config.data.batch_size,
            seed=config.data.seed,
        )
        held_out = eval_batches(
            corpus.eval,
            seq_len=config.data.seq_len,
            batch_size=config.data.batch_size,
            max_batches=config.data.eval_batches,
        )
    with _section("optimizer"):
        if config.optimizer.name not in _OPTIMIZERS:
            raise ValueError(f"name must be one of {list(_OPTIMIZERS)}, got {config.optimizer.name!r}")
        zero = [k for k in ("zero_init_readout", "zero_init_query") if getattr(config.model, k)]
        if config.optimizer.name == "adafactor" and zero:
            raise ValueError(
                "adafactor steps by RMS(weight), so a zero-initialized weight barely moves; set "
                + " and ".join(f"model.{k}=False" for k in zero)
            )
    with _section("parametrization"):
        p = config.parametrization
        parametrization = Parametrization(
            name=p.name,
            optimizer=BASE_OPTIMIZERS[config.optimizer.name],
            alignment=p.alignment,
            lr_mode=p.lr_mode,
            eps_mode=p.eps_mode,
            weight_decay_mode=p.weight_decay_mode,
        )
        attention_scale = config.model.attention_scale
        if attention_scale == "auto":
            attention_scale = parametrization.resolved_attention_scale
    with _section("model"):
        m = config.model
        model_config = TransformerConfig(
            vocab_size=VOCAB_SIZE,
            d_model=m.d_model,
            n_layers=m.n_layers,
            n_heads=m.n_heads,
            d_head=m.d_head,
            d_ff=m.d_ff,
            max_len=config.data.seq_len,
            norm=m.norm,
            qk_layernorm=m.qk_layernorm,
            positions=m.positions,
            tied_embeddings=m.tied_embeddings,
            use_bias=m.use_bias,
            activation=m.activation,
            attention_scale=attention_scale,
            # "linear" (1/d_head) equals "sqrt" at the base d_head; d_head is fixed across widths here
            attention_multiplier=m.attention_multiplier
            * (math.sqrt(m.d_head) if attention_scale == "linear" else 1),
            zero_init_readout=m.zero_init_readout,
            zero_init_query=m.zero_init_query,
            rope_theta=m.rope_theta,
            norm_eps=m.norm_eps,
            dtype=config.train.compute_dtype,
        )
    with _section("parametrization"):
        base_d = p.base_d_model
        if isinstance(base_d, bool) or not isinstance(base_d, int) or not 0 < base_d <= m.d_model:
            raise ValueError(
                f"base_d_model must be an integer in [1, model.d_model={m.d_model}], got {base_d!r}"
            )
        tokens = jax.ShapeDtypeStruct((1, config.data.seq_len), jnp.int32)
        make_model = lambda w: Transformer(model_config.with_width(**w))
        plan = make_plan(
            make_model,
            parametrization,
            base=widths(config, base_d),
            delta=widths(config, 2 * base_d),
            target=widths(config, m.d_model),
            inputs=(tokens,),
        )
        if m.tied_embeddings:
            model_config = dataclasses.replace(
                model_config, logits_multiplier=plan.tied_readout_multiplier("embed/embedding")
            )
    model = Transformer(model_config)
    with _section("schedule"):
        s = config.schedule
        schedule = make_schedule(
            s.name,
            config.optimizer.learning_rate,
            total_steps=config.train.steps,
            warmup_steps=s.warmup_steps,
            final_fraction=s.final_fraction,
        )
    with _section("optimizer"):
        optimizer = _optimizer(config.optimizer, plan, schedule)
    with _section("train"):
        loop = LoopConfig(
            steps=config.train.steps,
            log_every=config.logging.every,
            eval_every=config.eval.every,
            checkpoint_every=config.checkpoint.every,
            max_to_keep=config.checkpoint.max_to_keep,
            microbatches=config.train.microbatches,
            compute_dtype=config.train.compute_dtype,
            mesh_data=config.sharding.data,
            mesh_fsdp=config.sharding.fsdp,
            seed=config.seed,
            progress_bar=config.logging.progress_bar,
        )
        devices = (jax.device_count() if loop.mesh_data == -1 else loop.mesh_data) * max(loop.mesh_fsdp, 1)
        rows = config.data.batch_size // loop.microbatches
        if config.data.batch_size % loop.microbatches or rows % min(devices, jax.device_count()):
            raise ValueError(
                f"data.batch_size={config.data.batch_size} must split into train.microbatches="
                f"{loop.microbatches} microbatches whose size is divisible by the {devices} devices"
            )
    apply = plan.wrap_apply(model.apply)
    z_loss = config.loss.z_loss

    def loss_fn(params, batch):
        logits = apply({"params": params}, batch["inputs"])
        return cross_entropy(logits, batch["targets"], z_loss=z_loss)

    def eval_loss_fn(params, batch):
        _, aux = cross_entropy(apply({"params": params}, batch["inputs"]), batch["targets"])
        return aux["cross_entropy"], {}

    def init_params(rng):
        params = nn.meta.unbox(model.init(rng, jnp.zeros((1, config.data.seq_len), jnp.int32))["params"])
        return plan.rescale_init(params)

    abstract_params = jax.eval_shape(init_params, jax.random.key(0))
    entropy = unigram_entropy(corpus.eval)
    n_params = sum(x.size for x in jax.tree.leaves(abstract_params))
    task = Task(
        init_params=init_params,
        loss_fn=loss_fn,
        eval_loss_fn=eval_loss_fn,
        optimizer=optimizer,
        learning_rate=schedule,
        train_batches=train_batches,
        eval_batches=lambda: held_out,
        tokens_per_batch=config.data.batch_size * config.data.seq_len,
        roles=plan.roles(abstract_params),
        plan=plan.to_json(),
        reference_loss=entropy,
    )
    summary = (
        f"model: Transformer d_model={m.d_model} n_layers={m.n_layers} n_heads={m.n_heads} d_ff={m.d_ff} "
        f"({n_params / 1e6:.2f}M params), {p.name} from base d_model={base_d}, "
        f"{config.optimizer.name} lr={config.optimizer.learning_rate:g}\n"
        f"data: {len(corpus.files)} files from {corpus.root} ({corpus.train.size / 1e6:.1f} MB train, "
        f"{corpus.eval.size / 1e6:.2f} MB held out; unigram entropy {entropy:.4f} nats/byte)"
    )
    return Experiment(task, loop, model, plan, entropy, summary)


def _optimizer(
    o: ml_collections.ConfigDict, plan: Plan, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """Global-norm clipping, then the plan's optimizer (per-parameter LR, epsilon, weight decay)."""
    kwargs: dict[str, Any] = {"weight_decay": o.weight_decay}
    if o.name in ("adam", "adamw"):
        kwargs.update(b1=o.b1, b2=o.b2, eps=o.eps)
    elif o.name in ("adam_atan2", "factored"):
        kwargs.update(b1=o.b1, b2=o.b2)
    elif o.name == "sgd":
        kwargs.update(momentum=o.b1)
    # "adafactor": the paper's algorithm (no momentum, decay 1 - t^-0.8); b1, b2 and eps are unused
    if o.clip_norm < 0:
        raise ValueError(f"clip_norm must be >= 0, got {o.clip_norm!r}")
    optimizer = plan.optimizer(o.name, schedule, **kwargs)
    if o.clip_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(o.clip_norm), optimizer)
    return optimizer


class _section:
    """Prefix a ``ValueError`` raised while building one config section with the section's name."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is not None and issubclass(kind, ValueError) and not str(error).startswith("config."):
            raise ValueError(f"config.{self.name}: {error}") from error
        return False


def define_flags() -> tuple[Any, Any]:
    """Define ``--config`` (with ``--config.<key>`` overrides) and ``--workdir``; returns their holders.

    Called by :func:`run` only, so importing this module (e.g. for :func:`build`) defines no flags.
    """
    config = config_flags.DEFINE_config_file(
        "config", None, "Experiment config file (experiments/configs/*.py)."
    )
    workdir = flags.DEFINE_string("workdir", None, "Output directory: checkpoints, metrics.jsonl, loss.png.")
    return config, workdir


def run() -> None:
    """The command line entry point (exits with the codes in the module docstring)."""
    config_flag, workdir_flag = define_flags()
    app.run(lambda argv: main(argv, config_flag, workdir_flag), flags_parser=_parse_flags)


def main(argv: list[str], config_flag: Any, workdir_flag: Any) -> None:
    """Train the experiment ``--config`` describes in ``--workdir``, printing where its outputs are."""
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every option is a --flag", EXIT_USAGE)
    config = _load_config(config_flag)
    workdir = _check_workdir(workdir_flag.value)
    try:
        experiment = build(config)
    except ValueError as e:
        _fail(str(e), EXIT_USAGE)
    print(experiment.summary)
    try:
        result = fit(
            experiment.task,
            experiment.loop,
            workdir,
            run_config=config.to_dict(),
            resume_mutable=RESUME_MUTABLE,
        )
    except (CheckpointError, TrainingDiverged) as e:
        _fail(str(e), EXIT_FAILED)
    print(f"checkpoints: {result.checkpoint_dir}")
    print(f"metrics:     {result.metrics_path}")
    print(f"plot:        {result.plot_path}")
    if result.status == "preempted":
        print(f"stopped by SIGTERM at step {result.step}; run the same command to continue.")
        sys.exit(EXIT_PREEMPTED)
    if result.eval_loss is not None:
        entropy = experiment.unigram_entropy
        print(
            f"final validation loss {result.eval_loss:.4f} nats/byte vs unigram entropy "
            f"{entropy:.4f} nats/byte ({result.eval_loss / entropy:.1%} of it)"
        )


def _load_config(config_flag: Any) -> ml_collections.ConfigDict:
    """The parsed config, or a one-line error naming the file or key (exit 2)."""
    try:
        config = config_flag.value
        if config is None:
            raise ValueError("--config is required, e.g. --config=experiments/configs/demo.py")
        config.to_dict()
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        _fail(_one_line(e), EXIT_USAGE)
    return config


def _check_workdir(workdir: str | None) -> str:
    """Create ``workdir`` and check that it is writable (one-line error and exit 2 if not)."""
    if not workdir:
        _fail("--workdir is required", EXIT_USAGE)
    probe = os.path.join(workdir, ".write_test")
    try:
        os.makedirs(workdir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        _fail(f"workdir {workdir!r} is not writable: {e.strerror or e}", EXIT_USAGE)
    return workdir


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors and exit code 2 (no traceback, no usage dump)."""
    for arg in argv[1:]:
        if arg.startswith("--config=") or arg.startswith("-config="):
            path = arg.split("=", 1)[1].split(":", 1)[0]
            if not os.path.isfile(path):
                _fail(f"config file {path!r} does not exist", EXIT_USAGE)
    try:
        return flags.FLAGS(argv)
    except AttributeError as e:  # ml_collections: an override of a key the config does not have
        key = str(e).strip("\"'")
        overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
        named = [o for o in overrides if key in o.split(".")] or overrides
        _fail(f"unknown config key {key!r} in {', '.join(named)}", EXIT_USAGE)
    except (flags.Error, OSError, ValueError, KeyError, TypeError, SyntaxError) as e:
        _fail(_one_line(e), EXIT_USAGE)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(error).__name__


def _fail(message: str, code: int):
    print(f"experiments.train: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    run()

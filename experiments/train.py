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
import sys

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from experiments import cli
from experiments.cli import fail
from paramlab.data import VOCAB_SIZE, BatchIterator, Corpus, eval_batches, load_corpus, unigram_entropy
from paramlab.diagnostics import apply_with_stability
from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.nn import linen as linen_adapter
from paramlab.optim import OPTIMIZERS, configuring, family_of
from paramlab.optim.common import check_choice
from paramlab.parametrization import Plan, make_plan, named_parametrization
from paramlab.train import (
    CheckpointError,
    CheckpointSaveError,
    LoopConfig,
    Task,
    TrainingDiverged,
    WorkdirBusy,
    check_writable,
    fit,
    make_schedule,
)
from paramlab.train.hosts import initialize_distributed, is_primary

PROGRAM = "experiments.train"
EXIT_FAILED, EXIT_PREEMPTED = 1, 143

# Config keys a resumed run may change (cadences, devices, and train.steps: raising it extends a finished
# run); any other difference from the checkpoint's config is an error.
RESUME_MUTABLE = ("logging", "eval.every", "checkpoint", "sharding", "distributed", "train.steps")


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
    corpus, train_batches, held_out = build_data(config)
    model, plan = build_model(config)
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
        optimizer = build_optimizer(config.optimizer, plan, schedule)
    loop = build_loop(config)
    task = _task(
        config, model, plan, optimizer, schedule, train_batches, held_out, unigram_entropy(corpus.eval)
    )
    n_params = sum(x.size for x in jax.tree.leaves(jax.eval_shape(task.init_params, jax.random.key(0))))
    m, o = config.model, config.optimizer
    summary = (
        f"model: Transformer d_model={m.d_model} n_layers={m.n_layers} n_heads={m.n_heads} d_ff={m.d_ff} "
        f"({n_params / 1e6:.2f}M params), {config.parametrization.name} from base "
        f"d_model={config.parametrization.base_d_model}{_depth_label(config)}, "
        f"{o.name} lr={o.learning_rate:g}\n"
        f"data: {len(corpus.files)} files from {corpus.root} ({corpus.train.size / 1e6:.1f} MB train, "
        f"{corpus.eval.size / 1e6:.2f} MB held out; unigram entropy {task.reference_loss:.4f} nats/byte)"
    )
    return Experiment(task, loop, model, plan, task.reference_loss, summary)


def _depth_label(config: ml_collections.ConfigDict) -> str:
    p = config.parametrization
    if p.depth_rule == "none":
        return ""
    alpha = f" alpha={p.depth_alpha:g}" if p.depth_rule == "completep" else ""
    return f" and n_layers={p.base_n_layers} ({p.depth_rule}{alpha})"


def build_data(config: ml_collections.ConfigDict) -> tuple[Corpus, BatchIterator, list]:
    """The corpus, the training batches and the held-out batches of ``config.data``."""
    d = config.data
    with _section("data"):
        corpus = load_corpus(d.path or None, max_bytes=d.max_bytes or None, eval_fraction=d.eval_fraction)
        train = BatchIterator(corpus.train, seq_len=d.seq_len, batch_size=d.batch_size, seed=d.seed)
        held_out = eval_batches(
            corpus.eval, seq_len=d.seq_len, batch_size=d.batch_size, max_batches=d.eval_batches
        )
    return corpus, train, held_out


def build_model(config: ml_collections.ConfigDict) -> tuple[Transformer, Plan]:
    """The target-width Transformer of ``config.model`` and its plan under ``config.parametrization``."""
    m, p = config.model, config.parametrization
    with _section("optimizer"):
        check_choice(config.optimizer.name, OPTIMIZERS, "name")
        zero = [k for k in ("zero_init_readout", "zero_init_query") if getattr(m, k)]
        if family_of(config.optimizer.name) == "adafactor" and zero:
            raise ValueError(
                "adafactor steps by RMS(weight), so a zero-initialized weight barely moves; set "
                + " and ".join(f"model.{k}=False" for k in zero)
            )
    with _section("parametrization"):
        options = dict(
            alignment=cli.parse_alignment(p.alignment, "parametrization.alignment"),
            lr_mode=p.lr_mode,
            eps_mode=p.eps_mode,
        )
        options.update(weight_decay_mode=p.weight_decay_mode, weight_decay_rule=p.weight_decay_rule)
        options.update(depth_rule=p.depth_rule)
        if p.depth_rule == "completep":
            options.update(depth_alpha=p.depth_alpha)
        parametrization = named_parametrization(p.name, config.optimizer.name, **options)
        scale = parametrization.resolved_attention_scale if m.attention_scale == "auto" else m.attention_scale
    with _section("model"):
        fields = ("n_layers", "n_heads", "d_head", "d_ff", "norm", "qk_layernorm", "positions")
        fields += ("scan_layers", "remat", "remat_policy")
        fields += ("tied_embeddings", "use_bias", "activation", "attention_multiplier", "zero_init_readout")
        fields += ("zero_init_query", "rope_theta", "norm_eps", "unit_scaling", "residual_mult")
        fields += ("residual_attn_ratio",)
        model_config = TransformerConfig(
            vocab_size=VOCAB_SIZE,
            d_model=m.d_model,
            max_len=config.data.seq_len,
            attention_scale=scale,
            attention_base_d_head=m.d_head,  # d_head is fixed across widths: "linear" equals "sqrt"
            dtype=config.train.compute_dtype,
            matmul_format=m.matmul_format or None,
            **{f: getattr(m, f) for f in fields},
        )
    with _section("parametrization"):
        base_d = p.base_d_model
        if isinstance(base_d, bool) or not isinstance(base_d, int) or base_d < 1:
            raise ValueError(f"base_d_model must be a positive integer, got {base_d!r}")
        base_l = p.base_n_layers
        if isinstance(base_l, bool) or not isinstance(base_l, int) or base_l < 1:
            raise ValueError(f"base_n_layers must be a positive integer, got {base_l!r}")
        tokens = jax.ShapeDtypeStruct((1, config.data.seq_len), jnp.int32)
        make_model = lambda size: Transformer(
            dataclasses.replace(model_config.with_width(**size[0]), n_layers=size[1])
        )
        base, delta, target = (
            (widths(config, d), n)
            for d, n in ((base_d, base_l), (2 * base_d, 2 * base_l), (m.d_model, m.n_layers))
        )
        plan = make_plan(make_model, parametrization, base=base, delta=delta, target=target, inputs=(tokens,))
        model_config = dataclasses.replace(model_config, branch_multiplier=plan.branch_multiplier())
        if m.tied_embeddings:
            multiplier = plan.tied_readout_multiplier("embed/embedding")
            model_config = dataclasses.replace(model_config, logits_multiplier=multiplier)
    return Transformer(model_config), plan


def build_optimizer(
    o: ml_collections.ConfigDict, plan: Plan, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """Global-norm clipping, then the plan's optimizer (per-parameter LR, epsilon, weight decay).

    ``b1`` is SGD's momentum. Each optimizer gets the keys that configure it
    (:func:`paramlab.optim.configuring`): ``adam_atan2`` has no epsilon and
    ``adafactor`` (the paper's algorithm) neither moments' decays nor epsilon.
    """
    kwargs = configuring(o.name, b1=o.b1, b2=o.b2, eps=o.eps, momentum=o.b1)
    if o.clip_norm < 0:
        raise ValueError(f"clip_norm must be >= 0, got {o.clip_norm!r}")
    optimizer = plan.optimizer(o.name, schedule, weight_decay=o.weight_decay, **kwargs)
    if o.clip_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(o.clip_norm), optimizer)
    return optimizer


def build_loop(config: ml_collections.ConfigDict) -> LoopConfig:
    """How :func:`paramlab.train.fit` trains (``config.train``, cadences, devices)."""
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
            tensorboard=config.logging.tensorboard,
        )
        devices = (jax.device_count() if loop.mesh_data == -1 else loop.mesh_data) * max(loop.mesh_fsdp, 1)
        batch_size = config.data.batch_size
        rows = batch_size // loop.microbatches
        if batch_size % loop.microbatches or rows % min(devices, jax.device_count()):
            raise ValueError(
                f"data.batch_size={batch_size} must split into train.microbatches={loop.microbatches} "
                f"microbatches whose size is divisible by the {devices} devices"
            )
    return loop


def _task(config, model, plan, optimizer, schedule, train_batches, held_out, entropy) -> Task:
    """What :func:`paramlab.train.fit` trains: the plan's init and forward pass, the loss, the data."""
    apply = plan.wrap_apply(model.apply)
    z_loss, seq_len = config.loss.z_loss, config.data.seq_len
    if not isinstance(config.logging.stability, bool):
        raise ValueError(f"config.logging.stability must be a bool, got {config.logging.stability!r}")
    probed = apply_with_stability(apply) if config.logging.stability else lambda *a: (apply(*a), {})

    def loss_fn(params, batch):
        logits, stability = probed({"params": params}, batch["inputs"])
        loss, aux = cross_entropy(logits, batch["targets"], z_loss=z_loss)
        return loss, {**aux, **stability}

    def eval_loss_fn(params, batch):
        _, aux = cross_entropy(apply({"params": params}, batch["inputs"]), batch["targets"])
        return aux["cross_entropy"], {}

    def init_params(rng):
        return linen_adapter.init(plan, model, rng, jnp.zeros((1, seq_len), jnp.int32))["params"]

    return Task(
        init_params=init_params,
        loss_fn=loss_fn,
        eval_loss_fn=eval_loss_fn,
        optimizer=optimizer,
        learning_rate=schedule,
        train_batches=train_batches,
        eval_batches=lambda: held_out,
        tokens_per_batch=config.data.batch_size * seq_len,
        roles=plan.roles(jax.eval_shape(init_params, jax.random.key(0))),
        plan=plan.to_json(),
        reference_loss=entropy,
    )


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


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Train the experiment ``--config`` describes in ``--workdir``, printing where its outputs are.

    Status lines (resuming, checkpoints set aside) go through ``absl.logging``; the summary and the
    outputs' paths are printed by the primary process.
    """
    _join_processes(config.distributed)
    workdir = _check_workdir(paths["workdir"])
    experiment = build(config)
    show = print if is_primary() else lambda *_: None
    show(experiment.summary)
    try:
        result = fit(
            experiment.task,
            experiment.loop,
            workdir,
            run_config=config.to_dict(),
            resume_mutable=RESUME_MUTABLE,
            log=logging.info,
        )
    except CheckpointSaveError as e:
        fail(PROGRAM, e, EXIT_FAILED, at_once=True)
    except (CheckpointError, TrainingDiverged) as e:
        fail(PROGRAM, e, EXIT_FAILED)
    except (WorkdirBusy, OSError) as e:
        fail(PROGRAM, e)
    if not is_primary():
        return
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


def _join_processes(d: ml_collections.ConfigDict) -> None:
    """``jax.distributed.initialize`` when ``config.distributed`` names a coordinator."""
    if d.coordinator_address:
        with _section("distributed"):
            initialize_distributed(d.coordinator_address, d.num_processes, d.process_id)
    elif (d.num_processes, d.process_id) != (1, 0):
        raise ValueError(
            "config.distributed: num_processes and process_id need a coordinator_address "
            "('host:port' or 'auto')"
        )


def _check_workdir(workdir: str) -> str:
    """Create ``workdir`` and check that it is writable (one-line error and exit 2 if not)."""
    try:
        check_writable(workdir, "workdir")
    except OSError as e:
        fail(PROGRAM, e)
    return workdir


def run() -> None:
    """The command line entry point (exits with the codes in the module docstring)."""
    cli.run(
        PROGRAM,
        main,
        default_config=None,
        path_flags={"workdir": "Output directory: checkpoints, metrics.jsonl, loss.png."},
        required=("workdir",),
    )


if __name__ == "__main__":
    run()

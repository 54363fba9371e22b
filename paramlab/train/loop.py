"""The training loop: init or resume, jit-compiled steps over a mesh, logging, eval, checkpoints.

Specified in ``docs/training.md`` §2.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramlab.train import hosts, writers
from paramlab.train import metrics as metrics_lib
from paramlab.train.checkpoint import Checkpointer
from paramlab.train.preemption import StopOnPreemption
from paramlab.train.resume import newest_intact_step, resume_newest_intact
from paramlab.train.run_once import run_once
from paramlab.train.sharding import batch_sharding, make_mesh, shard_batch, tree_shardings
from paramlab.train.state import TrainingDiverged, TrainState, create_train_state
from paramlab.train.step import LossFn, evaluate, jit_train_step, make_eval_step, make_train_step
from paramlab.train.workdir import WorkdirLock, check_writable, set_aside

__all__ = ["COMPUTE_DTYPES", "FitResult", "LoopConfig", "StatefulIterator", "Task", "fit"]

COMPUTE_DTYPES = ("float32", "bfloat16")


class StatefulIterator(Protocol):
    """A batch iterator whose position is a JSON-able value (saved in every checkpoint)."""

    def __next__(self) -> Any: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


@dataclasses.dataclass(frozen=True)
class Task:
    """What to train.

    Attributes:
      init_params: ``rng -> params``: the stored initial parameters (already rescaled by a
        parametrization plan, if any). Called under ``jit`` with the state's shardings.
      loss_fn: ``(params, batch) -> (mean loss, aux dict)``; applies the plan's forward multipliers.
      optimizer: the optax transformation (clipping, per-parameter learning rates, ...).
      learning_rate: the optimizer's global schedule, logged as ``learning_rate``.
      train_batches: the training batches (:class:`StatefulIterator` of numpy pytrees whose leaves
        have a leading batch axis).
      eval_batches: ``() -> iterable`` of the (fixed) eval batches, or ``None`` for no eval.
      tokens_per_batch: tokens (or examples) per train batch, for ``tokens_per_s``.
      roles: a tree of role names with the parameters' structure (per-role RMS metrics), or ``None``.
      plan: the parametrization plan as JSON (saved with every checkpoint), or ``None``.
      reference_loss: a baseline drawn on the loss plot (e.g. the unigram entropy), or ``None``.
      eval_loss_fn: the loss reported on the eval batches (e.g. the cross-entropy without the
        z-loss term); ``None``: ``loss_fn``.
    """

    init_params: Callable[[jax.Array], Any]
    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    learning_rate: optax.ScalarOrSchedule
    train_batches: StatefulIterator
    eval_batches: Callable[[], Iterable[Any]] | None
    tokens_per_batch: int
    roles: Any = None
    plan: Any = None
    reference_loss: float | None = None
    eval_loss_fn: LossFn | None = None


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How to train.

    Attributes:
      steps: total optimizer updates.
      log_every: write a metrics record (and check for divergence) every this many steps.
      eval_every: evaluate every this many steps (0: only after the last step).
      checkpoint_every: save every this many steps (0: only after the last step).
      max_to_keep: keep the newest this many checkpoints.
      microbatches: gradient-accumulation microbatches per step.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (float32 params, cast for the forward/backward).
      mesh_data: data-parallel mesh axis size (``-1``: the devices left after ``mesh_fsdp``).
      mesh_fsdp: parameter-sharding mesh axis size (1: replicated params).
      seed: the parameter-initialization seed.
      progress_bar: show a tqdm bar on stderr.
      tensorboard: also write the metrics as TensorBoard event files in ``<workdir>/tensorboard``
        (``metrics.jsonl`` is always written: resuming and the loss plot read it).
    """

    steps: int
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    max_to_keep: int = 3
    microbatches: int = 1
    compute_dtype: str = "float32"
    mesh_data: int = -1
    mesh_fsdp: int = 1
    seed: int = 0
    progress_bar: bool = True
    tensorboard: bool = False

    def __post_init__(self):
        for name, low in (
            ("steps", 1),
            ("log_every", 1),
            ("eval_every", 0),
            ("checkpoint_every", 0),
            ("max_to_keep", 1),
            ("microbatches", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if self.tensorboard:
            writers.check_tensorboard()
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}.")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did.

    Attributes:
      status: ``"completed"`` or ``"preempted"`` (SIGTERM: saved, then stopped).
      step: the last step trained (== ``LoopConfig.steps`` when completed).
      resumed_from: the checkpoint step the run started from (``None``: fresh start).
      eval_loss: the last evaluation's loss (``None`` without eval or when preempted before one).
      checkpoint_dir, metrics_path, plot_path: where the outputs are.
    """

    status: str
    step: int
    resumed_from: int | None
    eval_loss: float | None
    checkpoint_dir: str
    metrics_path: str
    plot_path: str


def fit(
    task: Task,
    config: LoopConfig,
    workdir: str | os.PathLike,
    *,
    run_config: Mapping | None = None,
    resume_mutable: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train ``task`` in ``workdir``, resuming from its newest checkpoint if there is one.

    ``run_config`` (the whole experiment config, JSON-able) is saved in every checkpoint and
    compared on resume, except the dotted key prefixes in ``resume_mutable``; ``log`` takes the
    one-line status messages. Raises :class:`~paramlab.train.state.TrainingDiverged` (naming the step)
    on a non-finite loss or gradient norm, and :class:`~paramlab.train.checkpoint.CheckpointError`
    when no checkpoint is intact (corrupt ones are moved aside) or another config wrote it.
    """
    workdir = os.fspath(workdir)
    primary = hosts.is_primary()
    log = log if primary else _silent
    check_writable(workdir, "workdir")
    paths = {
        "checkpoint_dir": os.path.join(workdir, "checkpoints"),
        "metrics_path": os.path.join(workdir, "metrics.jsonl"),
        "plot_path": os.path.join(workdir, "loss.png"),
    }
    run_config = dict(run_config or {})
    mesh = make_mesh(config.mesh_data, config.mesh_fsdp)
    compute_dtype = None if config.compute_dtype == "float32" else jnp.dtype(config.compute_dtype)
    check_writable(paths["checkpoint_dir"], "checkpoint directory")  # before the first step
    with (
        WorkdirLock(workdir, log),
        Checkpointer(paths["checkpoint_dir"], max_to_keep=config.max_to_keep) as ckpt,
        StopOnPreemption() as stop,
    ):
        start, state, abstract = _initial_state(
            task, config, mesh, ckpt, paths, run_config, resume_mutable, log
        )
        state_sharding = jax.tree.map(lambda x: x.sharding, abstract)
        writer = writers.open_writers(
            paths["metrics_path"], resume_step=start, tensorboard=config.tensorboard, primary=primary
        )
        step_fn = jit_train_step(
            _train_step(task, config, compute_dtype), state_sharding, batch_sharding(mesh)
        )
        eval_step = make_eval_step(task.eval_loss_fn or task.loss_fn, compute_dtype)
        run = _Run(task, config, mesh, ckpt, writer, eval_step, run_config, stop, abstract)
        try:
            state, last, eval_loss, status = run.train(state, step_fn, start or 0)
            if eval_loss is None and status == "completed" and task.eval_batches is not None:
                eval_loss = run.evaluate(state)  # already complete on entry: report, do not log again
        finally:
            writer.close()
    if primary:
        records = metrics_lib.read_metrics(paths["metrics_path"])
        metrics_lib.plot_loss_curve(records, paths["plot_path"], reference=task.reference_loss, title=workdir)
    return FitResult(status=status, step=last, resumed_from=start, eval_loss=eval_loss, **paths)


def _silent(message: str) -> None:
    """The status log of a non-primary process: its messages are the primary's."""
    del message


def _initial_state(
    task: Task,
    config: LoopConfig,
    mesh: Any,
    ckpt: Checkpointer,
    paths: Mapping[str, str],
    run_config: Mapping,
    resume_mutable: Iterable[str],
    log: Callable[[str], None],
) -> tuple[int | None, TrainState, Any]:
    """``(resumed step or None, state, state shardings)``: the newest intact checkpoint, else a fresh
    init (setting earlier metrics and plots aside)."""

    def init_state(rng):
        return create_train_state(task.init_params(rng), task.optimizer)

    rng = jax.random.key(config.seed)
    abstract = jax.eval_shape(init_state, rng)
    state_sharding = tree_shardings(mesh, abstract)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, state_sharding
    )
    start, state = resume_newest_intact(
        ckpt,
        abstract,
        train_batches=task.train_batches,
        plan=task.plan,
        run_config=run_config,
        resume_mutable=resume_mutable,
        log=log,
    )
    if start is None:
        if hosts.is_primary():
            set_aside([paths["metrics_path"], paths["plot_path"]], log)
        state = run_once(init_state, rng, out_shardings=state_sharding)
        log(f"starting from scratch (no checkpoint in {paths['checkpoint_dir']})")
    else:
        log(f"resuming from checkpoint {ckpt.step_directory(start)} (step {start})")
    return start, state, abstract


def _train_step(task: Task, config: LoopConfig, compute_dtype: Any) -> Callable:
    """The task's train step (not yet jitted)."""
    return make_train_step(
        task.loss_fn,
        task.optimizer,
        learning_rate=task.learning_rate,
        microbatches=config.microbatches,
        compute_dtype=compute_dtype,
        roles=task.roles,
    )


class _Run:
    """The mutable bookkeeping of one :func:`fit` call (pending device metrics, timers)."""

    def __init__(self, task, config, mesh, ckpt, writer, eval_step, run_config, stop, abstract):
        self.task, self.config, self.mesh = task, config, mesh
        self.ckpt, self.writer, self.eval_step = ckpt, writer, eval_step
        self.run_config, self.stop, self.abstract = run_config, stop, abstract
        self.pending: list[tuple[int, dict]] = []

    def train(self, state: TrainState, step_fn, first: int) -> tuple[TrainState, int, float | None, str]:
        config, task = self.config, self.task
        eval_loss, status, step = None, "completed", first
        if first >= config.steps:
            return state, first, None, status
        primary = hosts.is_primary()
        bar = metrics_lib.progress_bar(
            config.steps, initial=first, disable=not (config.progress_bar and primary)
        )
        say = bar.write if primary else _silent
        try:
            batch = self._next_batch()
            t0 = time.perf_counter()
            compiled = step_fn.lower(state, batch).compile()
            say(f"compiled the train step in {time.perf_counter() - t0:.1f} s")
            self.t_last = time.perf_counter()
            for step in range(first + 1, config.steps + 1):
                state, metrics = compiled(state, batch)
                self.pending.append((step, metrics))
                bar.update(1)
                last = step == config.steps
                stopping = self.stop.reached(step)
                do_eval = task.eval_batches is not None and (last or _every(step, config.eval_every))
                do_save = last or stopping or _every(step, config.checkpoint_every)
                if do_eval or do_save or _every(step, config.log_every):
                    loss = self._flush()
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    if do_eval:
                        eval_loss = self.evaluate(state)
                        self.writer.write({"step": step, "eval_loss": eval_loss})
                        say(f"step {step}: eval loss {eval_loss:.4f}")
                    if do_save:
                        self.ckpt.save(
                            state,
                            data_state=task.train_batches.get_state(),
                            config=self.run_config,
                            plan=task.plan,
                        )
                    self.t_last = time.perf_counter()
                if stopping and not last:
                    say(f"preempted (SIGTERM): saved a checkpoint at step {step}; stopping")
                    status = "preempted"
                    break
                if not last:
                    batch = self._next_batch()
        finally:
            bar.close()
        return state, step, eval_loss, status

    def evaluate(self, state: TrainState) -> float:
        batches = (shard_batch(b, self.mesh) for b in self.task.eval_batches())
        return evaluate(self.eval_step, state.params, batches)

    def _next_batch(self):
        return shard_batch(next(self.task.train_batches), self.mesh)

    def _flush(self) -> float:
        """Sync the pending steps' metrics: stop on a non-finite one, write the logged steps."""
        pending, self.pending = jax.device_get(self.pending), []
        elapsed = time.perf_counter() - self.t_last
        step_time = elapsed / len(pending)
        for step, values in pending:
            for key in ("loss", "grad_norm"):
                if not np.isfinite(values[key]):
                    where = newest_intact_step(self.ckpt, self.abstract)
                    kept = (
                        "no checkpoint" if where is None else f"checkpoint {self.ckpt.step_directory(where)}"
                    )
                    raise TrainingDiverged(
                        f"training diverged: {key} is {float(values[key])} at step {step}; stopped. "
                        f"The last good state is {kept}."
                    )
        for step, values in pending:
            if _every(step, self.config.log_every) or step == pending[-1][0]:
                record = {"step": step, **{k: float(v) for k, v in values.items()}}
                record["step_time_s"] = step_time
                record["tokens_per_s"] = self.task.tokens_per_batch / step_time
                self.writer.write(record)
        return float(pending[-1][1]["loss"])


def _every(step: int, period: int) -> bool:
    return period > 0 and step % period == 0

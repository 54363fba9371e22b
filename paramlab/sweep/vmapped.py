"""Hyperparameter sweeps as one compiled program: ``jax.vmap`` of the ordinary train step.

Specified in ``docs/training.md`` §8.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramlab.optim.common import tree_all_finite
from paramlab.sweep.members import check_members, hyperparameter_names, member_seed
from paramlab.train.metrics import progress_bar as progress_bar_over
from paramlab.train.run_once import run_once
from paramlab.train.state import TrainState, create_train_state
from paramlab.train.step import LossFn, make_train_step

__all__ = [
    "SweepResult",
    "SweepState",
    "evaluate_members",
    "init_sweep",
    "make_sweep_step",
    "member_sharding",
    "run_sweep",
]

OptimizerFn = Callable[..., optax.GradientTransformation]


class SweepState(NamedTuple):
    """The stacked state of a sweep.

    Attributes:
      train: a :class:`~paramlab.train.TrainState` whose every leaf has a leading member axis ``K``
        (each member's ``step`` stops counting when it diverges).
      diverged: ``bool[K]``, members that have diverged.
      diverged_step: ``int32[K]``, the sweep step (1-based) whose loss or update first went
        non-finite; 0 for members that have not diverged.
      step: the number of sweep steps run (a scalar ``int32``).
    """

    train: TrainState
    diverged: jax.Array
    diverged_step: jax.Array
    step: jax.Array


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes:
      records: one dict per member: its hyperparameters and ``seed``, ``initial_loss`` (the loss of
        the first batch at initialization), ``train_loss`` (the mean train loss of the last
        ``final_window`` steps), ``eval_loss`` (with eval batches), ``final_loss`` (``eval_loss`` if
        evaluated, else ``train_loss``), ``diverged``, ``diverged_step`` (``None`` if not diverged)
        and ``steps``. A diverged member's losses are ``inf``.
      history: ``{metric name: float array (steps, K)}`` of every train-step metric (``loss``,
        ``grad_norm``, ``update_rms/<role>``, ...), row ``t`` for step ``t + 1``.
      state: the final :class:`SweepState`.
      timings: wall-clock seconds: ``init_s`` (initializing every member), ``compile_s`` (compiling
        the chunked step), ``train_s`` (running the steps, excluding compilation) and ``eval_s``.
      probes: with a ``probe_fn``: ``{"step": int array (n,), name: float array (n, K)}``, the probe
        after each compiled call (every ``steps_per_call`` steps and the last step); else empty.
    """

    records: list[dict[str, Any]]
    history: dict[str, np.ndarray]
    state: SweepState
    timings: dict[str, float]
    probes: dict[str, np.ndarray]


def init_sweep(
    init_params: Callable[[jax.Array], Any],
    optimizer_fn: OptimizerFn,
    members: Sequence[Mapping[str, Any]],
    member_devices: int = 1,
) -> SweepState:
    """Initialize every member: parameters from ``jax.random.key(seed)``, optimizer state with its
    hyperparameters (``optax.inject_hyperparams(optimizer_fn)``), all stacked along axis 0.

    Args:
      init_params: ``rng -> params``, the stored initial parameters (plan-rescaled, if any).
      optimizer_fn: the optimizer factory; its keyword arguments named in the members are swept.
      members: dicts of hyperparameter values and an integer ``seed`` (see :func:`product_members`).
      member_devices: shard the member axis over this many devices (it must divide the members);
        every later step of the sweep follows that sharding.
    """
    names = check_members(optimizer_fn, members)
    sharding = member_sharding(len(members), member_devices)
    seeds = jax.device_put(jnp.asarray([member_seed(m) for m in members], jnp.uint32), sharding)
    values = {
        n: jax.device_put(jnp.asarray([float(m[n]) for m in members], jnp.float32), sharding) for n in names
    }
    injected = optax.inject_hyperparams(optimizer_fn)

    def init_member(seed, member_values):
        return create_train_state(init_params(jax.random.key(seed)), injected(**member_values))

    train = run_once(jax.vmap(init_member), seeds, values, out_shardings=sharding)
    k = len(members)
    return SweepState(
        train=train,
        diverged=jax.device_put(jnp.zeros((k,), bool), sharding),
        diverged_step=jax.device_put(jnp.zeros((k,), jnp.int32), sharding),
        step=jnp.zeros((), jnp.int32),
    )


def member_sharding(n_members: int, member_devices: int = 1) -> jax.sharding.Sharding:
    """The sharding of a sweep's member axis over the first ``member_devices`` devices."""
    available = jax.device_count()
    if isinstance(member_devices, bool) or not isinstance(member_devices, int) or member_devices < 1:
        raise ValueError(f"member_devices must be an integer >= 1, got {member_devices!r}.")
    if member_devices > available or n_members % member_devices:
        raise ValueError(
            f"member_devices={member_devices} must divide the {n_members} members and be at most the "
            f"{available} available devices."
        )
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:member_devices]), ("members",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members"))


def make_sweep_step(
    loss_fn: LossFn,
    optimizer_fn: OptimizerFn,
    members: Sequence[Mapping[str, Any]],
    *,
    microbatches: int = 1,
    compute_dtype: Any = None,
    roles: Any = None,
) -> Callable[[SweepState, Any], tuple[SweepState, dict[str, jax.Array]]]:
    """The pure sweep step ``(SweepState, batch) -> (SweepState, metrics of shape (K,))``.

    Each member runs :func:`paramlab.train.make_train_step` (same arguments) on the shared batch;
    the divergence mask is applied as described in the module docstring.
    """
    names = hyperparameter_names(optimizer_fn, members)
    placeholder = {n: float(members[0][n]) for n in names}  # values come from each member's state
    train_step = make_train_step(
        loss_fn,
        optax.inject_hyperparams(optimizer_fn)(**placeholder),
        microbatches=microbatches,
        compute_dtype=compute_dtype,
        roles=roles,
    )

    def member_step(state: TrainState, diverged: jax.Array, batch: Any):
        new, metrics = train_step(state, batch)
        ok = ~diverged & jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
        ok &= tree_all_finite(new.params)
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        metrics = {k: jnp.where(ok, v, jnp.nan).astype(jnp.float32) for k, v in metrics.items()}
        metrics["loss"] = jnp.where(ok, metrics["loss"], jnp.inf)
        return new, ~ok, metrics

    def sweep_step(state: SweepState, batch: Any) -> tuple[SweepState, dict[str, jax.Array]]:
        train, diverged, metrics = jax.vmap(member_step, in_axes=(0, 0, None))(
            state.train, state.diverged, batch
        )
        step = state.step + 1
        newly = diverged & ~state.diverged
        return (
            SweepState(train, diverged, jnp.where(newly, step, state.diverged_step), step),
            metrics,
        )

    return sweep_step


def evaluate_members(loss_fn: LossFn, state: SweepState, batches: Iterable[Any]) -> np.ndarray:
    """Each member's mean loss over ``batches`` (equal-size batches), ``inf`` for diverged members."""
    eval_step = jax.jit(jax.vmap(lambda params, batch: loss_fn(params, batch)[0], in_axes=(0, None)))
    losses = [eval_step(state.train.params, batch) for batch in batches]
    if not losses:
        raise ValueError("evaluate_members: the eval batches are empty.")
    mean = np.mean(np.asarray(jax.device_get(losses), np.float64), axis=0)
    return np.where(np.asarray(state.diverged), np.inf, mean)


def run_sweep(
    init_params: Callable[[jax.Array], Any],
    loss_fn: LossFn,
    optimizer_fn: OptimizerFn,
    members: Sequence[Mapping[str, Any]],
    batches: Iterator[Any],
    steps: int,
    *,
    eval_batches: Callable[[], Iterable[Any]] | None = None,
    steps_per_call: int = 10,
    final_window: int = 1,
    microbatches: int = 1,
    compute_dtype: Any = None,
    roles: Any = None,
    probe_fn: Callable[[Any, Any], Mapping[str, jax.Array]] | None = None,
    member_devices: int = 1,
    progress_bar: bool = False,
) -> SweepResult:
    """Train every member for ``steps`` steps as one compiled program: a :class:`SweepResult`.

    Args:
      init_params: ``rng -> params`` (each member uses ``jax.random.key(member["seed"])``).
      loss_fn: ``(params, batch) -> (mean loss, aux dict)`` as for :func:`paramlab.train.make_train_step`.
      optimizer_fn: ``optimizer_fn(**hyperparameters) -> optax.GradientTransformation``; every
        member key except ``seed`` must be one of its parameters. It is called with traced scalars,
        so it must not branch on their values in Python.
      members: the settings (see :func:`product_members`).
      batches: an iterator of batches (numpy or jax pytrees), shared by all members.
      steps: optimizer steps per member.
      eval_batches: ``() -> iterable`` of eval batches, evaluated once after the last step.
      steps_per_call: steps per compiled call (a ``lax.scan``); a shorter last chunk compiles once more.
      final_window: ``train_loss`` averages the last this many steps' train losses.
      microbatches, compute_dtype, roles: as for :func:`paramlab.train.make_train_step`.
      probe_fn: ``(params, initial_params) -> {name: scalar}``, a diagnostic evaluated for every
        member after each compiled call (e.g. alignment exponents,
        :func:`paramlab.diagnostics.alignment_probe`); ``nan`` for diverged members. Its last values
        are added to the records.
      member_devices: shard the members over this many devices (:func:`init_sweep`).
      progress_bar: show a tqdm bar over the sweep's steps (rate and ETA on stderr), updated after
        each compiled call.
    """
    _check_lengths(steps, steps_per_call, final_window)
    timings = {"init_s": 0.0, "compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0}
    t0 = time.perf_counter()
    state = jax.block_until_ready(init_sweep(init_params, optimizer_fn, members, member_devices))
    timings["init_s"] = time.perf_counter() - t0
    probe = None if probe_fn is None else _Probe(probe_fn, state)
    sweep_step = make_sweep_step(
        loss_fn, optimizer_fn, members, microbatches=microbatches, compute_dtype=compute_dtype, roles=roles
    )
    bar = progress_bar_over(steps, disable=not progress_bar)
    with bar:
        state, history = _train_in_chunks(
            sweep_step, state, batches, steps, steps_per_call, probe, timings, bar
        )
    eval_loss = None
    if eval_batches is not None:
        t0 = time.perf_counter()
        eval_loss = evaluate_members(loss_fn, state, eval_batches())
        timings["eval_s"] = time.perf_counter() - t0
    probes = {} if probe is None else probe.table()
    records = _records(members, history, state, eval_loss, final_window, steps)
    for name, values in probes.items():
        if name != "step":
            for record, value in zip(records, values[-1]):
                record[name] = float(value)
    return SweepResult(records, history, state, timings, probes)


def _check_lengths(steps: Any, steps_per_call: Any, final_window: Any) -> None:
    for name, value, low in (("steps", steps, 1), ("steps_per_call", steps_per_call, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if isinstance(final_window, bool) or not isinstance(final_window, (int, np.integer)):
        raise ValueError(f"final_window must be an integer in [1, steps], got {final_window!r}.")
    if not 1 <= final_window <= steps:
        raise ValueError(f"final_window must be an integer in [1, steps={steps}], got {final_window!r}.")


def _train_in_chunks(
    sweep_step: Callable,
    state: SweepState,
    batches: Iterator[Any],
    steps: int,
    steps_per_call: int,
    probe: _Probe | None,
    timings: dict[str, float],
    bar: Any,
) -> tuple[SweepState, dict[str, np.ndarray]]:
    """``steps`` sweep steps, ``steps_per_call`` per compiled ``lax.scan``; the per-step metrics."""
    run_chunk = jax.jit(lambda s, chunk: jax.lax.scan(sweep_step, s, chunk), donate_argnums=0)
    compiled: dict[int, Any] = {}
    chunks = []
    for start in range(0, steps, steps_per_call):
        chunk = _stack([next(batches) for _ in range(min(steps_per_call, steps - start))])
        length = jax.tree.leaves(chunk)[0].shape[0]
        if length not in compiled:
            t0 = time.perf_counter()
            compiled[length] = run_chunk.lower(state, chunk).compile()
            timings["compile_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled[length](state, chunk))
        timings["train_s"] += time.perf_counter() - t0
        bar.update(length)
        chunks.append(metrics)
        if probe is not None:
            probe.record(state)
    history = {k: np.concatenate([np.asarray(c[k]) for c in jax.device_get(chunks)]) for k in chunks[0]}
    return state, history


class _Probe:
    """Evaluates ``probe_fn`` for every member against its initial parameters and keeps the values."""

    def __init__(self, probe_fn, state: SweepState):
        self.initial = jax.tree.map(jnp.copy, state.train.params)  # the sweep donates its state
        self.fn = jax.jit(jax.vmap(lambda p, p0: dict(probe_fn(p, p0))))
        self.rows: list[tuple[int, dict]] = []

    def record(self, state: SweepState) -> None:
        values = self.fn(state.train.params, self.initial)
        dead = np.asarray(state.diverged)
        self.rows.append(
            (int(state.step), {k: np.where(dead, np.nan, np.asarray(v)) for k, v in values.items()})
        )

    def table(self) -> dict[str, np.ndarray]:
        out = {"step": np.asarray([step for step, _ in self.rows])}
        for name in self.rows[0][1]:
            out[name] = np.stack([values[name] for _, values in self.rows])
        return out


def _records(members, history, state, eval_loss, final_window, steps) -> list[dict[str, Any]]:
    diverged = np.asarray(state.diverged)
    diverged_step = np.asarray(state.diverged_step)
    losses = history["loss"]
    records = []
    for k, member in enumerate(members):
        train_loss = math.inf if diverged[k] else float(np.mean(losses[steps - final_window :, k]))
        record = {
            **member,
            "seed": member_seed(member),
            "initial_loss": float(losses[0, k]),
            "train_loss": train_loss,
        }
        if eval_loss is not None:
            record["eval_loss"] = float(eval_loss[k])
        record["final_loss"] = record["eval_loss"] if eval_loss is not None else train_loss
        record["diverged"] = bool(diverged[k])
        record["diverged_step"] = int(diverged_step[k]) if diverged[k] else None
        record["steps"] = steps
        records.append(record)
    return records


def _stack(batches: Sequence[Any]) -> Any:
    """Stack a list of batch pytrees along a new leading (step) axis."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *batches)

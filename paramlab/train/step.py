"""The train step and the eval step.

Specified in ``docs/training.md`` §1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramlab.train.state import TrainState

__all__ = ["LossFn", "evaluate", "jit_train_step", "make_eval_step", "make_train_step", "role_rms"]

# loss_fn(params, batch) -> (scalar loss, dict of scalar auxiliary metrics)
LossFn = Callable[[Any, Any], tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    learning_rate: optax.ScalarOrSchedule | None = None,
    microbatches: int = 1,
    compute_dtype: Any = None,
    roles: Any = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Build a pure train step.

    Args:
      loss_fn: ``loss_fn(params, batch) -> (loss, aux)``: the mean loss over the batch's examples
        (a float32 scalar) and a dict of scalar metrics (may be empty). ``params`` are the stored
        parameters (cast to ``compute_dtype``); apply a parametrization's forward multipliers inside
        it (``plan.wrap_apply(model.apply)``).
      optimizer: any optax transformation (e.g. ``optax.chain(clip, plan.optimizer(...))``).
      learning_rate: the optimizer's schedule (or constant), reported as the ``learning_rate``
        metric at the update's index ``state.step``; omitted from metrics when ``None``.
      microbatches: the number ``k`` of gradient-accumulation microbatches; the batch's leading axis
        must be divisible by it.
      compute_dtype: the dtype parameters are cast to for the forward and backward pass (``None``:
        stored dtype).
      roles: a tree of role names (strings) with the structure of the parameters, e.g. from a
        parametrization spec; ``None`` reports the RMS statistics for one role named ``all``.

    Returns:
      ``step(state, batch) -> (new_state, metrics)``.
    """
    if int(microbatches) != microbatches or microbatches < 1:
        raise ValueError(f"microbatches must be an integer >= 1, got {microbatches!r}.")
    k = int(microbatches)
    grad_fn = jax.value_and_grad(_cast_loss(loss_fn, compute_dtype), has_aux=True)

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        if k == 1:
            (loss, aux), grads = grad_fn(state.params, batch)
        else:
            (loss, aux), grads = _accumulate(grad_fn, state.params, _split_microbatches(batch, k), k)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
        if learning_rate is not None:
            lr = learning_rate(state.step) if callable(learning_rate) else learning_rate
            metrics["learning_rate"] = jnp.asarray(lr, jnp.float32)
        metrics.update(role_rms(updates, roles, "update_rms"))
        metrics.update(role_rms(params, roles, "param_rms"))
        return TrainState(state.step + 1, params, opt_state), metrics

    return step


def make_eval_step(loss_fn: LossFn, compute_dtype: Any = None) -> Callable[[Any, Any], jax.Array]:
    """A jitted ``eval_step(params, batch) -> mean loss`` (the loss function's first output)."""
    cast_loss = _cast_loss(loss_fn, compute_dtype)
    return jax.jit(lambda params, batch: cast_loss(params, batch)[0])


def evaluate(eval_step: Callable[[Any, Any], jax.Array], params: Any, batches: Any) -> float:
    """Mean of ``eval_step(params, b)`` over ``batches`` (equal-size batches: the per-example mean)."""
    losses = [eval_step(params, batch) for batch in batches]
    if not losses:
        raise ValueError("evaluate: the eval batches are empty.")
    return float(np.mean(np.asarray(jax.device_get(losses), np.float64)))


def jit_train_step(
    step: Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]],
    state_sharding: Any = None,
    batch_sharding: Any = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """``jax.jit(step)`` with the state donated; with shardings (from :mod:`paramlab.train.sharding`)
    the new state keeps the input state's layout and the metrics come back replicated."""
    if state_sharding is None and batch_sharding is None:
        return jax.jit(step, donate_argnums=0)
    if state_sharding is None or batch_sharding is None:
        raise ValueError("jit_train_step: give both state_sharding and batch_sharding, or neither.")
    replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
    return jax.jit(
        step,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )


def role_rms(tree: Any, roles: Any, prefix: str) -> dict[str, jax.Array]:
    """Per-role root mean square of a parameter-shaped tree: ``{f"{prefix}/{role}": rms}``.

    ``roles`` is a tree of strings matching ``tree``'s structure (``None``: one role ``all``).
    """
    leaves, treedef = jax.tree.flatten(tree)
    if roles is None:
        names = ["all"] * len(leaves)
    else:
        names = treedef.flatten_up_to(roles)
    sums: dict[str, list] = {}
    for name, leaf in zip(names, leaves):
        if not isinstance(name, str):
            raise ValueError(f"roles must be a tree of strings matching the parameters, got leaf {name!r}.")
        sums.setdefault(name, []).append(leaf)
    out = {}
    for name, group in sorted(sums.items()):
        total = sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in group)
        count = sum(x.size for x in group)
        out[f"{prefix}/{name}"] = jnp.sqrt(total / max(count, 1))
    return out


def _cast_loss(loss_fn: LossFn, compute_dtype: Any) -> LossFn:
    if compute_dtype is None:
        return loss_fn
    dtype = jnp.dtype(compute_dtype)

    def cast_loss(params, batch):
        cast = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
        return loss_fn(cast, batch)

    return cast_loss


def _split_microbatches(batch: Any, k: int) -> Any:
    """``(B, ...) -> (k, B / k, ...)`` with microbatch ``i`` = rows ``i, i + k, ...`` (see module doc)."""

    def split(x):
        if x.shape[0] % k:
            raise ValueError(f"batch size {x.shape[0]} is not divisible by microbatches={k}.")
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def _accumulate(grad_fn, params: Any, microbatches: Any, k: int):
    """Mean loss, mean aux and mean gradient over the ``k`` microbatches (a ``lax.scan``)."""

    def body(carry, microbatch):
        (loss, aux), grads = grad_fn(params, microbatch)
        return jax.tree.map(jnp.add, carry, ((loss, aux), grads)), None

    first = jax.tree.map(lambda x: x[0], microbatches)
    zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, jnp.promote_types(s.dtype, jnp.float32)),
        jax.eval_shape(grad_fn, params, first),
    )
    total, _ = jax.lax.scan(body, zeros, microbatches)
    return jax.tree.map(lambda x: x / k, total)

"""The train state: everything a train step reads and writes, as one pytree.

Specified in ``docs/training.md`` §11.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramlab.optim.common import tree_all_finite

__all__ = ["TrainState", "TrainingDiverged", "create_train_state", "tree_is_finite"]


class TrainState(NamedTuple):
    """``step``: updates applied so far; ``params``: stored parameters; ``opt_state``: optax state."""

    step: jax.Array
    params: Any
    opt_state: optax.OptState


class TrainingDiverged(FloatingPointError):
    """A non-finite loss, gradient or state: training stops, the last finite checkpoint is kept."""


def create_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """The state before the first update: step 0, ``params`` and ``optimizer.init(params)``."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


_all_finite = jax.jit(tree_all_finite)


def tree_is_finite(tree: Any) -> bool:
    """Whether every floating-point leaf of ``tree`` is finite (integer leaves are ignored).

    One compiled reduction over the whole tree (not one dispatch per leaf), so a sharded state is
    checked by a single program whose scalar result is replicated on every device.
    """
    return bool(_all_finite(tree))

"""Adam-atan2: Adam whose division by the RMS is replaced by a bounded, scale-free arctangent.

Everett et al. (2024), arXiv 2407.05872; the update, its properties and its float32 representation
are ``docs/reference.md`` §4::

    u_t = a * atan2(m_hat, b * sqrt(v_hat))          (no epsilon; |u| <= a pi / 2)

The state stores ``nu = sqrt(v)``, updated as a scaled hypot so that ``g^2`` is never formed, and the
bias corrections fold into one scalar: ``u = a * atan2(m_t, k_t nu_t)``, ``k_t = b (1 - b1^t) /
sqrt(1 - b2^t)``. The arctangent is :func:`paramlab.optim.atan.atan2_nonneg`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramlab.optim.atan import atan2_nonneg
from paramlab.optim.common import (
    check_float_params,
    check_in_unit_interval,
    check_learning_rate,
    check_non_negative,
    check_positive,
)

__all__ = ["ScaleByAdamAtan2State", "adam_atan2", "scale_by_adam_atan2"]


class ScaleByAdamAtan2State(NamedTuple):
    """State of :func:`scale_by_adam_atan2`.

    Attributes:
      count: number of updates taken (int32, saturating).
      mu: EMA of the gradients ``m_t`` (not bias-corrected), in ``mu_dtype`` or the params' dtype.
      nu: root of the EMA of squared gradients, ``sqrt(v_t)`` (not bias-corrected), params' dtype.
    """

    count: jax.Array
    mu: Any
    nu: Any


def _leaf_update(
    g: jax.Array, m: jax.Array, nu: jax.Array, count: jax.Array, b1: Any, b2: Any, a: Any, b: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One leaf's ``(update, m_t, nu_t)``, computed in float32 (float64 for float64 leaves)."""
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    g_c, m_c, nu_c = g.astype(dtype), m.astype(dtype), nu.astype(dtype)
    b1, b2, t = jnp.asarray(b1, dtype), jnp.asarray(b2, dtype), count.astype(dtype)
    m_new = b1 * m_c + (1 - b1) * g_c
    abs_g = jnp.abs(g_c)
    scale = jnp.maximum(jnp.maximum(nu_c, abs_g), jnp.finfo(dtype).tiny)
    inv = 1 / scale
    nu_new = scale * jnp.sqrt(b2 * jnp.square(nu_c * inv) + (1 - b2) * jnp.square(abs_g * inv))
    k = jnp.asarray(b, dtype) * (1 - b1**t) / jnp.sqrt(1 - b2**t)
    update = jnp.asarray(a, dtype) * atan2_nonneg(m_new, k * nu_new)
    return update.astype(g.dtype), m_new.astype(m.dtype), nu_new.astype(nu.dtype)


def scale_by_adam_atan2(
    b1: float = 0.9,
    b2: float = 0.999,
    a: float = 1.27,
    b: float = 1.0,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Rescale updates by Adam-atan2: ``u = a * atan2(m_hat, b * sqrt(v_hat))`` (see module docstring).

    Args:
      b1: decay of the gradient EMA, in ``[0, 1)``.
      b2: decay of the squared-gradient EMA, in ``[0, 1)``.
      a: output scale, ``> 0``; updates are bounded by ``a * pi / 2``.
      b: scale of the RMS inside the arctangent, ``> 0``; small-ratio behaviour is Adam with LR ``a/b``.
      mu_dtype: optional dtype of the first moment; ``None`` keeps the params' dtype.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`ScaleByAdamAtan2State`. Hyperparameters
      may be traced scalars (``optax.inject_hyperparams``). Updates have the gradients' dtype; the
      arithmetic is float32 for bfloat16/float16 leaves.

    Raises:
      ValueError: naming ``b1``, ``b2``, ``a`` or ``b`` when a concrete value is out of range.
    """
    check_in_unit_interval(b1, "b1")
    check_in_unit_interval(b2, "b2")
    check_positive(a, "a")
    check_positive(b, "b")
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params):
        check_float_params(params)
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        nu = optax.tree.zeros_like(params)
        return ScaleByAdamAtan2State(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        g_leaves, treedef = jax.tree.flatten(updates, is_leaf=lambda x: x is None)
        m_leaves = treedef.flatten_up_to(state.mu)
        nu_leaves = treedef.flatten_up_to(state.nu)
        out = [
            (None, None, None) if g is None else _leaf_update(g, m, nu, count, b1, b2, a, b)
            for g, m, nu in zip(g_leaves, m_leaves, nu_leaves)
        ]
        new_updates, mu, nu = (treedef.unflatten([leaf[i] for leaf in out]) for i in range(3))
        return new_updates, ScaleByAdamAtan2State(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_atan2(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    a: float = 1.27,
    b: float = 1.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Adam-atan2 with decoupled weight decay (AdamW convention).

    ``p <- p - lr_t * (a * atan2(m_hat, b * sqrt(v_hat)) + weight_decay * p)``: the decay is added
    after the preconditioner and, like AdamW (Loshchilov & Hutter, 2019), multiplied by the
    (scheduled) learning rate. For a decay independent of the learning rate, chain
    :func:`scale_by_adam_atan2`, ``optax.scale_by_learning_rate`` and
    :func:`paramlab.optim.decay_weights_independent_of_lr` instead.

    Args:
      learning_rate: a float or an ``optax`` schedule.
      b1, b2, a, b, mu_dtype: as in :func:`scale_by_adam_atan2`.
      weight_decay: decay rate ``>= 0`` (or a schedule).
      mask: optional tree of booleans (or a callable returning one) selecting the decayed leaves,
        as in ``optax.add_decayed_weights``.

    Returns:
      ``optax.chain(scale_by_adam_atan2(...), optax.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))``.
    """
    check_learning_rate(learning_rate)
    if not callable(weight_decay):
        check_non_negative(weight_decay, "weight_decay")
    return optax.chain(
        scale_by_adam_atan2(b1=b1, b2=b2, a=a, b=b, mu_dtype=mu_dtype),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )

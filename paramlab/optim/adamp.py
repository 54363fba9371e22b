"""AdamP: Adam whose step loses its radial component on scale-invariant weights.

Heo et al. (2021), "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
Weights", ICLR, arXiv 2006.08217 (``docs/reference.md`` §10). For a leaf ``w`` of rank >= 2 with
gradient ``g`` and Adam step ``p = m_hat / (sqrt(v_hat) + eps)`` (Nesterov: ``m_hat`` from
``b1 m_t + (1 - b1) g``), try the *channel* view (one row per output unit: the fan-out axes, the last
axis of a Flax kernel) and then the *layer* view (one row): in the first view where every row has
``|cos(g, w)| < delta / sqrt(row size)``, project ``p <- p - w_n (w_n . p)`` row by row with ``w_n =
w / (||w|| + eps)``, and scale the weight decay by ``wd_ratio``. The decay is decoupled and multiplied
by the learning rate: ``w <- w (1 - lr wd ratio) - lr p``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramlab.optim.common import (
    check_float_params,
    check_fraction,
    check_in_unit_interval,
    check_learning_rate,
    check_non_negative,
    check_positive,
    is_absent,
    is_shared_scalar,
    per_leaf_tree,
    resolve_per_leaf,
)
from paramlab.optim.fan_axes import FanAxes

__all__ = ["ScaleByAdamPState", "adamp", "scale_by_adamp"]


class ScaleByAdamPState(NamedTuple):
    """State of :func:`scale_by_adamp`: step count and Adam's two moment EMAs."""

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adamp(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    fan_axes: Any = None,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """AdamP's step plus its weight decay, ``p + wd * ratio * w``, before the learning rate.

    ``eps`` and ``weight_decay`` are shared scalars or per-leaf trees (or ``params -> tree``
    functions); ``fan_axes`` gives each leaf's channel axes (its ``fan_out``; ``None``: the last
    axis). The decay is here, not in a separate transform, because its ratio depends on whether the
    step was projected. Needs ``params`` in ``update``.
    """
    check_in_unit_interval(b1, "b1")
    check_in_unit_interval(b2, "b2")
    check_positive(delta, "delta")
    check_fraction(wd_ratio, "wd_ratio")
    for value, name in ((eps, "eps"), (weight_decay, "weight_decay")):
        if is_shared_scalar(value):
            check_non_negative(value, name)
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params):
        check_float_params(params)
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        return ScaleByAdamPState(jnp.zeros([], jnp.int32), mu, optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_adamp needs params (the projection reads the weights).")
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        numerator = mu
        if nesterov:
            numerator = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, mu, updates, is_leaf=is_absent)
        leaf = lambda g, m, v, w, e, wd, axes: _leaf_step(
            g, m, v, w, e, wd, axes, count, b1, b2, delta, wd_ratio
        )
        new = jax.tree.map(
            lambda g, *rest: g if is_absent(g) else leaf(g, *rest),
            updates,
            numerator,
            nu,
            params,
            per_leaf_tree(eps, params),
            per_leaf_tree(weight_decay, params),
            _channel_axes(fan_axes, params),
            is_leaf=is_absent,
        )
        return new, ScaleByAdamPState(count, optax.tree.cast(mu, mu_dtype), nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamp(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """AdamP (module docstring): :func:`scale_by_adamp` then ``-learning_rate``."""
    check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_adamp(b1, b2, eps, weight_decay, delta, wd_ratio, nesterov),
        optax.scale_by_learning_rate(learning_rate),
    )


def _leaf_step(g, m, v, w, eps, wd, axes, count, b1, b2, delta, wd_ratio) -> jax.Array:
    """One leaf's projected step plus its decay (float32 arithmetic for low-precision leaves)."""
    out_dtype, dtype = g.dtype, jnp.promote_types(g.dtype, jnp.float32)
    g, m, v, w = (x.astype(dtype) for x in (g, m, v, w))
    t = count.astype(dtype)
    step = (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps)
    ratio = jnp.ones((), dtype)
    if w.ndim >= 2:
        step, ratio = _project(step, g, w, axes, eps, delta, wd_ratio)
    return (step + wd * ratio * w).astype(out_dtype)


def _project(step, g, w, axes, eps, delta, wd_ratio) -> tuple[jax.Array, jax.Array]:
    """The channel-wise, else layer-wise, projection of ``step`` and the decay ratio it implies."""
    order = (*axes, *(i for i in range(w.ndim) if i not in axes))
    inverse = tuple(order.index(i) for i in range(w.ndim))
    moved_shape = tuple(w.shape[i] for i in order)
    n_channels = math.prod(w.shape[a] for a in axes)
    channels = (
        lambda x: jnp.transpose(x, order).reshape(n_channels, -1),
        lambda r: jnp.transpose(r.reshape(moved_shape), inverse),
    )
    layer = (lambda x: x.reshape(1, -1), lambda r: r.reshape(w.shape))
    result, ratio = step, jnp.ones((), step.dtype)
    for to_rows, from_rows in (layer, channels):  # checked last, the channel view takes precedence
        g_r, w_r, s_r = to_rows(g), to_rows(w), to_rows(step)
        cosine = jnp.abs(jnp.sum(g_r * w_r, axis=1)) / jnp.maximum(
            jnp.linalg.norm(g_r, axis=1) * jnp.linalg.norm(w_r, axis=1), eps
        )
        invariant = jnp.max(cosine) < delta / jnp.sqrt(jnp.asarray(w_r.shape[1], step.dtype))
        w_n = w_r / (jnp.linalg.norm(w_r, axis=1, keepdims=True) + eps)
        projected = from_rows(s_r - w_n * jnp.sum(w_n * s_r, axis=1, keepdims=True))
        result = jnp.where(invariant, projected, result)
        ratio = jnp.where(invariant, jnp.asarray(wd_ratio, step.dtype), ratio)
    return result, ratio


def _channel_axes(fan_axes: Any, params: Any) -> Any:
    """Each leaf's channel axes: its declared fan-out, else its last axis."""
    declared = resolve_per_leaf(fan_axes, params) if fan_axes is not None else None

    def axes_of(p, fan=None):
        if is_absent(p) or jnp.ndim(p) == 0:
            return ()
        if isinstance(fan, FanAxes) and fan.fan_out:
            return tuple(a % jnp.ndim(p) for a in fan.fan_out)
        return (jnp.ndim(p) - 1,)

    if declared is None:
        return jax.tree.map(axes_of, params, is_leaf=is_absent)
    return jax.tree.map(axes_of, params, declared, is_leaf=lambda x: is_absent(x) or isinstance(x, FanAxes))

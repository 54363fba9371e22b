"""One leaf's factored-moment update, arranged for the fewest passes over memory (``docs/reference.md`` §5).

The arithmetic is that of :mod:`paramlab.optim.factored`; this module decides how it is laid out.
A step of the Adafactor configuration is memory-bound, so the figure that matters is how many times
each full-size array is read or written. With clipping on, the rsqrt output and no first moment:

1. the row pass: ``R_t = b R + (1 - b) (sum_B G^2 / |B| + eps1)``;
2. one column pass for two column sums: ``sum_A G^2`` (for ``C_t``) and ``T = sum_A G^2 / R_t``;
3. the parameter pass: ``sum X^2`` (parameter scale);
4. the output ``G * R_t^-1/2 * C_t^-1/2 * mean_A(R_t)^1/2 * s``, fused with ``apply_updates``.

The clipping mean-square needs no pass of its own: ``sum U^2 = sum_batch mean_A(R_t) sum_B T / C_t``
(exact algebra; ``U^2 = G^2 mean_A(R_t) / (R_t C_t)``). Every other configuration computes
``sum U^2`` by one more pass over ``U``.

Two layout rules keep XLA from materialising full-size temporaries:

* A leaf is viewed as ``(batch, first group, second group)`` in memory order, a free reshape when
  the batch axes lead and each group is contiguous (every Flax ``Dense`` / ``DenseGeneral`` kernel,
  scanned or not); any other layout is transposed into that order (one copy each way).
* Each full-size reduction reads its own copy of ``G`` (an ``optimization_barrier`` names a second
  value), so XLA cannot share one materialised ``G^2`` between the passes: on XLA:CPU a reduction
  fuses its elementwise producer only when it is the producer's sole consumer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from paramlab.optim._factored_axes import FactoredAxes
from paramlab.optim.atan import atan2_nonneg

__all__ = ["Scalars", "Static", "init_leaf", "leaf_update"]


@dataclasses.dataclass(frozen=True)
class Static:
    """Choices that decide the traced program (Python values, never traced)."""

    output: str
    momentum: bool
    constant_decay: bool
    clip: bool
    param_scale: bool
    relative_step: bool


class Scalars(NamedTuple):
    """The step's scalars (float32); ``k`` multiplies ``N / sqrt(V)`` (bias corrections), or ``None``."""

    beta: jax.Array
    eps1: jax.Array
    b1: jax.Array | None
    k: jax.Array | None
    threshold: jax.Array | None
    eps2: jax.Array | None
    rho: jax.Array | None


class _View(NamedTuple):
    """How a factored leaf maps to a ``([batch,] first, second)`` array (all static)."""

    perm: tuple[int, ...]  # transpose applied before the reshape (the identity for the usual layouts)
    shape: tuple[int, ...]  # ``(first, second)``, with a leading batch size when it exceeds 1
    row_axis: int  # the view axis that indexes R
    col_axis: int  # the view axis that indexes C
    r_perm: tuple[int, ...]  # R's axes into (batch, rows) order
    c_perm: tuple[int, ...]  # C's axes into (batch, cols) order

    def without(self, axis: int) -> tuple[int, ...]:
        return tuple(n for i, n in enumerate(self.shape) if i != axis)


def _leaf_view(shape: tuple[int, ...], axes: FactoredAxes) -> _View:
    """The view of a leaf factored over ``axes``; a batch of one is dropped (XLA:CPU reduces 2-D faster)."""
    batch = tuple(a for a in range(len(shape)) if a not in axes.rows and a not in axes.cols)
    first, second = sorted((axes.rows, axes.cols), key=min)
    size = lambda group: math.prod(shape[a] for a in group)  # noqa: E731
    lead = (size(batch),) if size(batch) > 1 else ()
    r_axes = sorted(batch + axes.rows)  # R keeps the leaf's axis order, less the column axes
    c_axes = sorted(batch + axes.cols)
    row_axis = len(lead) + (0 if first == axes.rows else 1)
    return _View(
        perm=batch + first + second,
        shape=lead + (size(first), size(second)),
        row_axis=row_axis,
        col_axis=2 * len(lead) + 1 - row_axis,
        r_perm=tuple(r_axes.index(a) for a in batch + axes.rows),
        c_perm=tuple(c_axes.index(a) for a in batch + axes.cols),
    )


def _to_view(x: jax.Array, perm: tuple[int, ...], shape: tuple[int, ...]) -> jax.Array:
    if perm != tuple(range(x.ndim)):
        x = jnp.transpose(x, perm)
    return x.reshape(shape)


def _from_view(x: jax.Array, perm: tuple[int, ...], shape: tuple[int, ...]) -> jax.Array:
    """The inverse of :func:`_to_view` for an array of the original ``shape``."""
    x = x.reshape(tuple(shape[a] for a in perm))
    if perm != tuple(range(len(shape))):
        x = jnp.transpose(x, [perm.index(a) for a in range(len(shape))])
    return x


def _second_copy(x: Any) -> Any:
    """``x`` under another name, so a second reduction fuses its own producer instead of sharing one."""
    return jax.lax.optimization_barrier(x)


def init_leaf(leaf: Any, axes: FactoredAxes | None) -> tuple[Any, Any, Any]:
    """Zero ``(R, C, V)`` for one parameter (placeholders ``zeros((1,))`` for the unused ones)."""
    dtype = jnp.promote_types(leaf.dtype, jnp.float32)
    placeholder = jnp.zeros((1,), dtype)
    if axes is None:
        return placeholder, placeholder, jnp.zeros(leaf.shape, dtype)
    row_shape = tuple(n for i, n in enumerate(leaf.shape) if i not in axes.cols)
    col_shape = tuple(n for i, n in enumerate(leaf.shape) if i not in axes.rows)
    return jnp.zeros(row_shape, dtype), jnp.zeros(col_shape, dtype), placeholder


def leaf_update(
    g: jax.Array, r: Any, c: Any, v: Any, m: Any, p: Any, axes: FactoredAxes | None, st: Static, sc: Scalars
) -> tuple[jax.Array, Any, Any, Any, Any]:
    """One leaf's ``(update, R_t, C_t, V_t, m_t)``, computed in float32 (float64 for float64 leaves)."""
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    gf = g.astype(dtype)
    num = gf
    if st.momentum:
        num = sc.b1 * m.astype(dtype) + (1.0 - sc.b1) * gf
        m = num.astype(m.dtype)
    if axes is None:
        u, v, sum_sq = _full_moment_update(gf, num, v, st, sc)
    else:
        u, r, c, sum_sq = _factored_update(gf, num, r, c, axes, st, sc)
    scale = None
    if st.clip:
        scale = 1.0 / jnp.maximum(1.0, jnp.sqrt(sum_sq / g.size) / sc.threshold)
    if st.param_scale:
        pf = p.astype(dtype)
        param_rms = jnp.maximum(sc.eps2, jnp.sqrt(jnp.sum(pf * pf) / p.size))
        scale = param_rms if scale is None else scale * param_rms
    if st.relative_step:
        scale = sc.rho if scale is None else scale * sc.rho
    if scale is not None:
        u = u * scale
    return u.astype(g.dtype), r, c, v, m


def _full_moment_update(
    g: jax.Array, num: jax.Array, v: jax.Array, st: Static, sc: Scalars
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``(U, V_t, sum U^2 or None)`` for a leaf that keeps its full second moment."""
    one_minus_beta = 1.0 - sc.beta
    if st.output == "rsqrt":
        v = sc.beta * v + one_minus_beta * (g * g + sc.eps1)

        def normalise(num, v):
            u = num * jax.lax.rsqrt(v)
            return u if sc.k is None else u * sc.k
    else:
        v = sc.beta * v + one_minus_beta * (g * g)

        def normalise(num, v):
            denom = jnp.sqrt(v)
            return atan2_nonneg(num, denom if sc.k is None else denom / sc.k)

    sum_sq = None
    if st.clip:
        u_again = normalise(*_second_copy((num, v)))
        sum_sq = jnp.sum(u_again * u_again)
    return normalise(num, v), v, sum_sq


def _factored_update(
    g: jax.Array, num: jax.Array, r: jax.Array, c: jax.Array, axes: FactoredAxes, st: Static, sc: Scalars
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
    """``(U, R_t, C_t, sum U^2 or None)`` for a factored leaf (module docstring for the passes)."""
    view = _leaf_view(g.shape, axes)
    n_rows, n_cols = view.shape[view.row_axis], view.shape[view.col_axis]
    gv = _to_view(g, view.perm, view.shape)
    rv = _to_view(r, view.r_perm, view.without(view.col_axis))
    cv = _to_view(c, view.c_perm, view.without(view.row_axis))
    eps1 = sc.eps1 if st.output == "rsqrt" else 0.0  # the arctangent output needs no epsilon
    one_minus_beta = 1.0 - sc.beta
    rv = sc.beta * rv + one_minus_beta * (jnp.sum(gv * gv, axis=view.col_axis) / n_cols + eps1)
    r_mean = jnp.mean(rv, axis=-1, keepdims=True)  # per batch index
    g_again = _second_copy(gv)
    fast_clip = st.clip and st.output == "rsqrt" and not st.momentum
    if fast_clip:
        # sum_A G^2 and sum_A G^2 / R_t in one pass: a stacked pair of row weights
        weights = jnp.expand_dims(jnp.stack([jnp.ones_like(rv), 1.0 / rv]), 1 + view.col_axis)
        col_sum, weighted = jnp.sum((g_again * g_again)[None] * weights, axis=1 + view.row_axis)
    else:
        col_sum = jnp.sum(g_again * g_again, axis=view.row_axis)
    cv = sc.beta * cv + one_minus_beta * (col_sum / n_rows + eps1)

    def normalise(num_view, rv, cv):
        if st.output == "rsqrt":
            row_factor = jax.lax.rsqrt(rv / r_mean)
            if sc.k is not None:
                row_factor = row_factor * sc.k
            return (
                num_view
                * jnp.expand_dims(row_factor, view.col_axis)
                * jnp.expand_dims(jax.lax.rsqrt(cv), view.row_axis)
            )
        row_root = jnp.sqrt(jnp.where(r_mean > 0, rv / jnp.where(r_mean > 0, r_mean, 1.0), 0.0))
        if sc.k is not None:
            row_root = row_root / sc.k
        denom = jnp.expand_dims(row_root, view.col_axis) * jnp.expand_dims(jnp.sqrt(cv), view.row_axis)
        return atan2_nonneg(num_view, denom)

    num_view = gv if num is g else _to_view(num, view.perm, view.shape)
    sum_sq = None
    if fast_clip:
        k_sq = 1.0 if sc.k is None else sc.k * sc.k
        sum_sq = k_sq * jnp.sum(r_mean * jnp.sum(weighted / cv, axis=-1, keepdims=True))
    elif st.clip:
        u_again = normalise(*_second_copy((num_view, rv, cv)))
        sum_sq = jnp.sum(u_again * u_again)
    u = _from_view(normalise(num_view, rv, cv), view.perm, g.shape)
    r_shape = tuple(n for i, n in enumerate(g.shape) if i not in axes.cols)
    c_shape = tuple(n for i, n in enumerate(g.shape) if i not in axes.rows)
    return u, _from_view(rv, view.r_perm, r_shape), _from_view(cv, view.c_perm, c_shape), sum_sq

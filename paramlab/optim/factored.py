"""Factored second moments (Adafactor) over each parameter's fan-in and fan-out axis groups.

Shazeer & Stern (2018), arXiv 1804.04235; every option is stated in ``docs/reference.md`` §5. For a
gradient ``G`` whose axes split into a row group ``A``, a column group ``B`` and batch axes
(:mod:`paramlab.optim._factored_axes`: declared fan axes, else optax's two-largest-axes rule)::

    R_t = b_t R + (1 - b_t) mean_B(G^2 + eps1)       C_t = b_t C + (1 - b_t) mean_A(G^2 + eps1)
    V_hat = R_t (x) C_t / mean_A(R_t)               U = N / sqrt(V_hat)  (or atan2(N, sqrt(V_hat)))
    U <- U / max(1, RMS(U) / d) * max(eps2, RMS(X)) * rho_t     (clipping, parameter scale, relative step)

``N`` is the gradient or, with ``b1``, Adam's bias-corrected gradient EMA. With its defaults
:func:`scale_by_factored_moments` equals ``optax.scale_by_factored_rms()``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramlab.optim._factored_axes import FactoredAxes, leaf_factoring, static_min_dim
from paramlab.optim._factored_update import Scalars, Static, init_leaf, leaf_update
from paramlab.optim.common import (
    check_choice,
    check_float_params,
    check_in_unit_interval,
    check_non_negative,
    check_positive,
    is_absent,
)

__all__ = ["ScaleByFactoredMomentsState", "relative_step_size", "scale_by_factored_moments"]

_OUTPUTS = ("rsqrt", "atan2")
_SCHEDULES = ("power", "constant")


class ScaleByFactoredMomentsState(NamedTuple):
    """State of :func:`scale_by_factored_moments` (float32 statistics, float64 for float64 params).

    Attributes:
      count: number of updates taken (int32, saturating).
      v_row: per leaf, ``R`` (the leaf's shape without its column axes) if factored, else ``zeros((1,))``.
      v_col: per leaf, ``C`` (the leaf's shape without its row axes) if factored, else ``zeros((1,))``.
      v: per leaf, the full second moment if not factored, else ``zeros((1,))``.
      mu: the gradient EMA (not bias-corrected) when ``b1`` is set, else ``None``.
    """

    count: jax.Array
    v_row: Any
    v_col: Any
    v: Any
    mu: Any


def relative_step_size(count: jax.typing.ArrayLike, step_offset: jax.typing.ArrayLike = 0) -> jax.Array:
    """The paper's relative step ``rho_t = min(1e-2, 1 / sqrt(t))`` with ``t = max(count + 1 - offset, 1)``.

    ``count`` is the number of updates taken before this one (an optax schedule's argument).
    """
    return jnp.minimum(jnp.float32(1e-2), jax.lax.rsqrt(_clipped_step(count + 1, step_offset)))


def _clipped_step(count: jax.typing.ArrayLike, step_offset: jax.typing.ArrayLike) -> jax.Array:
    """``max(count - step_offset, 1)`` in float32: the step the decay and the relative step see."""
    return jnp.maximum(jnp.asarray(count, jnp.float32) - jnp.asarray(step_offset, jnp.float32), 1.0)


def scale_by_factored_moments(
    decay_rate: float = 0.8,
    decay_schedule: str = "power",
    step_offset: int = 0,
    eps1: float = 1e-30,
    b1: float | None = None,
    clipping_threshold: float | None = None,
    multiply_by_parameter_scale: bool = False,
    eps2: float = 1e-3,
    relative_step: bool = False,
    output: str = "rsqrt",
    min_dim_size_to_factor: int = 128,
    factored: bool = True,
    fan_axes: Any | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Scale updates by a second moment factored over fan-in vs fan-out axis groups (module docstring).

    Every option is defined in ``docs/reference.md`` §5: ``decay_rate`` is the exponent ``c > 0`` of
    the ``"power"`` schedule or the ``b`` in ``[0, 1)`` of ``"constant"``; ``b1=None``, ``clipping_threshold
    =None`` turn the first moment and the clipping off. A leaf is factored when each axis group holds
    at least ``min_dim_size_to_factor`` elements (read by ``init``; for width sweeps set it below the
    smallest width); ``factored=False`` keeps every moment in full. ``fan_axes``: ``None`` (optax's
    rule), a tree of :class:`paramlab.optim.FanAxes` / ``None`` with the parameters' structure, or a
    function ``params -> tree``. Numeric hyperparameters may be traced; a bad one (or fan axis) is a
    ``ValueError`` naming it.
    """
    static = _static_choices(
        decay_rate, decay_schedule, step_offset, eps1, eps2, b1, clipping_threshold, output,
        min_dim_size_to_factor, multiply_by_parameter_scale, relative_step,
    )  # fmt: skip
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params):
        check_float_params(params)
        factoring = leaf_factoring(params, fan_axes, factored, static_min_dim(min_dim_size_to_factor))
        leaves, treedef = jax.tree.flatten(params, is_leaf=is_absent)
        stats = [
            (leaf,) * 3 if is_absent(leaf) else init_leaf(leaf, axes) for leaf, axes in zip(leaves, factoring)
        ]
        v_row, v_col, v = (treedef.unflatten([s[i] for s in stats]) for i in range(3))
        mu = optax.tree.zeros_like(params, dtype=mu_dtype) if static.momentum else None
        return ScaleByFactoredMomentsState(jnp.zeros([], jnp.int32), v_row, v_col, v, mu)

    def update_fn(updates, state, params=None):
        if static.param_scale and params is None:
            raise ValueError("scale_by_factored_moments(multiply_by_parameter_scale=True) needs params.")
        count = optax.safe_increment(state.count)
        scalars = _step_scalars(count, static, decay_rate, step_offset, eps1, b1, clipping_threshold, eps2)
        groups = leaf_factoring(updates, fan_axes, factored, 0)
        return _update_tree(updates, state._replace(count=count), params, groups, static, scalars)

    return optax.GradientTransformation(init_fn, update_fn)


def _update_tree(
    updates: Any,
    state: ScaleByFactoredMomentsState,
    params: Any,
    groups: list[FactoredAxes | None],
    static: Static,
    scalars: Scalars,
) -> tuple[Any, ScaleByFactoredMomentsState]:
    """Every leaf's :func:`_leaf_update`; ``state.count`` is already this step's."""
    g_leaves, treedef = jax.tree.flatten(updates, is_leaf=is_absent)
    n = len(g_leaves)
    r_leaves, c_leaves, v_leaves = (treedef.flatten_up_to(t) for t in (state.v_row, state.v_col, state.v))
    # A leaf is factored iff init gave it a placeholder full moment (never a rank-1 leaf's shape).
    factoring = [
        None if is_absent(g) or v.shape == g.shape else axes for g, v, axes in zip(g_leaves, v_leaves, groups)
    ]
    m_leaves = treedef.flatten_up_to(state.mu) if static.momentum else [None] * n
    p_leaves = treedef.flatten_up_to(params) if static.param_scale else [None] * n
    out = [
        (g, r, c, v, m) if is_absent(g) else leaf_update(g, r, c, v, m, p, axes, static, scalars)
        for g, r, c, v, m, p, axes in zip(
            g_leaves, r_leaves, c_leaves, v_leaves, m_leaves, p_leaves, factoring
        )
    ]
    new_updates, v_row, v_col, v, mu = (treedef.unflatten([o[i] for o in out]) for i in range(5))
    return new_updates, ScaleByFactoredMomentsState(
        state.count, v_row, v_col, v, mu if static.momentum else None
    )


def _static_choices(
    decay_rate: Any,
    decay_schedule: str,
    step_offset: Any,
    eps1: Any,
    eps2: Any,
    b1: Any,
    clipping_threshold: Any,
    output: str,
    min_dim_size_to_factor: Any,
    multiply_by_parameter_scale: bool,
    relative_step: bool,
) -> Static:
    """Validate the hyperparameters (traced values pass) and fix the program's static choices."""
    check_choice(decay_schedule, _SCHEDULES, "decay_schedule")
    check_choice(output, _OUTPUTS, "output")
    if decay_schedule == "power":
        check_positive(decay_rate, "decay_rate")
    else:
        check_in_unit_interval(decay_rate, "decay_rate")
    for value, name in ((step_offset, "step_offset"), (eps1, "eps1"), (eps2, "eps2")):
        check_non_negative(value, name)
    if b1 is not None:
        check_in_unit_interval(b1, "b1")
    if clipping_threshold is not None:
        check_positive(clipping_threshold, "clipping_threshold")
    if not isinstance(min_dim_size_to_factor, jax.core.Tracer):
        static_min_dim(min_dim_size_to_factor)
    return Static(
        output=output,
        momentum=b1 is not None,
        constant_decay=decay_schedule == "constant",
        clip=clipping_threshold is not None,
        param_scale=bool(multiply_by_parameter_scale),
        relative_step=bool(relative_step),
    )


def _step_scalars(
    count: jax.Array,
    static: Static,
    decay_rate: Any,
    step_offset: Any,
    eps1: Any,
    b1: Any,
    clipping_threshold: Any,
    eps2: Any,
) -> Scalars:
    """The scalars of the step that ``count`` (updates taken, this one included) ends."""
    f32 = jnp.float32
    t = _clipped_step(count, step_offset)
    c = count.astype(f32)
    k = None
    if static.constant_decay:
        beta = jnp.asarray(decay_rate, f32)
        k = jnp.sqrt(1.0 - beta**c)  # 1 / sqrt(V_hat) = sqrt(1 - b^t) / sqrt(V)
    else:
        beta = 1.0 - t ** (-jnp.asarray(decay_rate, f32))
    b1_f = None
    if static.momentum:
        b1_f = jnp.asarray(b1, f32)
        m_corr = 1.0 / (1.0 - b1_f**c)
        k = m_corr if k is None else k * m_corr
    return Scalars(
        beta=beta,
        eps1=jnp.asarray(eps1, f32),
        b1=b1_f,
        k=k,
        threshold=jnp.asarray(clipping_threshold, f32) if static.clip else None,
        eps2=jnp.asarray(eps2, f32) if static.param_scale else None,
        rho=jnp.minimum(f32(1e-2), jax.lax.rsqrt(t)) if static.relative_step else None,
    )

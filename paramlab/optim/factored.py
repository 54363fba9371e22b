"""Factored second moments (Adafactor) over each parameter's fan-in and fan-out axis groups.

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", arXiv
1804.04235 (``docs/reference.md`` section 5). For a gradient ``G`` whose axes split into a row group ``A``, a column group ``B``
and batch axes (see :mod:`paramlab.optim._factored_axes`: declared fan-in / fan-out axes, else optax's
two-largest-axes rule), with ``t`` the step (1 at the first update)::

    R_t = b_t R + (1 - b_t) mean_B(G^2 + eps1)       C_t = b_t C + (1 - b_t) mean_A(G^2 + eps1)
    V_hat = R_t (x) C_t / mean_A(R_t)               (per batch index; = rowsum (x) colsum / sum)
    U = N / sqrt(V_hat)     or, with output="atan2",     U = atan2(N, sqrt(V_hat))
    U <- U / max(1, RMS(U) / d)                                     (clipping_threshold d)
    U <- U * max(eps2, RMS(X)) * rho_t                              (parameter scale, relative step)

* ``N`` is the gradient, or with ``b1`` the bias-corrected EMA of the *gradient* (Adam's first moment,
  ``m_t / (1 - b1^t)``) taken *before* the normalisation. optax's ``adafactor(momentum=...)`` instead
  takes a non-bias-corrected EMA of the final, already normalised, clipped and scaled update.
* ``b_t``: ``decay_schedule="power"`` (the paper's) ``b_t = 1 - max(t - step_offset, 1)^(-decay_rate)``;
  the step is clipped at 1 so any offset gives ``b_t = 0`` for the steps before the offset, never NaN
  (optax's ``1 - (t - offset)^(-c)`` is NaN or ``-inf`` there). This schedule needs no bias
  correction. ``decay_schedule="constant"``: ``b_t = decay_rate`` and ``V_hat`` is divided by
  ``1 - decay_rate^t`` (Adam's correction).
* ``rho_t = min(1e-2, 1 / sqrt(max(t - step_offset, 1)))`` (the paper's relative step).
* Unfactored leaves (vectors, norm gains, biases, small matrices) keep ``V_t = b_t V + (1 - b_t)(G^2 +
  eps1)`` in full.
* ``output="atan2"`` replaces the division by Adam-atan2's arctangent (``docs/reference.md`` §4; the
  fused :func:`paramlab.optim.atan.atan2_nonneg`): bounded by ``pi/2``, unchanged when all gradients are
  multiplied by ``s > 0`` and independent of ``eps1`` (which is not added in this mode; zero gradients
  give zero updates). The squares are formed in float32, which bounds the scale-free range to gradients
  with ``1e-18 <~ |g| <~ 1e18``.

Configured with the defaults (no clipping, parameter scale, relative step or momentum; ``eps1 =
1e-30``, the power decay with ``decay_rate = 0.8``; ``fan_axes=None``) :func:`scale_by_factored_moments`
computes exactly what ``optax.scale_by_factored_rms()`` computes for float32 parameters, with the same
state layout. Statistics are stored in float32 for bfloat16/float16 parameters (optax stores them in the
parameters' dtype, where an EMA with ``b_t -> 1`` stalls).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramlab.optim._factored_axes import FactoredAxes, leaf_factoring, static_min_dim
from paramlab.optim.atan import atan2_nonneg
from paramlab.optim.common import (
    check_choice,
    check_in_unit_interval,
    check_non_negative,
    check_positive,
    is_absent,
)

__all__ = ["ScaleByFactoredMomentsState", "adafactor", "relative_step_size", "scale_by_factored_moments"]

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


@dataclasses.dataclass(frozen=True)
class _Static:
    """Choices that decide the traced program (Python values, never traced)."""

    output: str
    momentum: bool
    constant_decay: bool
    clip: bool
    param_scale: bool
    relative_step: bool


class _Scalars(NamedTuple):
    """The step's scalars (float32); ``k`` multiplies ``N / sqrt(V)`` (bias corrections), or ``None``."""

    beta: jax.Array
    eps1: jax.Array
    b1: jax.Array | None
    k: jax.Array | None
    threshold: jax.Array | None
    eps2: jax.Array | None
    rho: jax.Array | None


def relative_step_size(count: jax.typing.ArrayLike, step_offset: jax.typing.ArrayLike = 0) -> jax.Array:
    """The paper's relative step ``rho_t = min(1e-2, 1 / sqrt(t))`` with ``t = max(count + 1 - offset, 1)``.

    ``count`` is the number of updates taken before this one (an optax schedule's argument).
    """
    return jnp.minimum(jnp.float32(1e-2), jax.lax.rsqrt(_clipped_step(count + 1, step_offset)))


def _clipped_step(count: jax.typing.ArrayLike, step_offset: jax.typing.ArrayLike) -> jax.Array:
    """``max(count - step_offset, 1)`` in float32: the step the decay and the relative step see."""
    return jnp.maximum(jnp.asarray(count, jnp.float32) - jnp.asarray(step_offset, jnp.float32), 1.0)


def _expand(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return jnp.expand_dims(x, axes)


def _normalise(
    num: jax.Array,
    g2: jax.Array,
    r: Any,
    c: Any,
    v: Any,
    axes: FactoredAxes | None,
    st: _Static,
    sc: _Scalars,
) -> tuple[jax.Array, Any, Any, Any]:
    """``(U, R_t, C_t, V_t)``: the moment update and ``N / sqrt(V_hat)`` (or its arctangent)."""
    one_minus_beta = 1.0 - sc.beta
    if axes is None:
        v = sc.beta * v + one_minus_beta * g2
        if st.output == "rsqrt":
            u = num * jax.lax.rsqrt(v)
            return (u if sc.k is None else u * sc.k), r, c, v
        denom = jnp.sqrt(v)
        return atan2_nonneg(num, denom if sc.k is None else denom / sc.k), r, c, v
    r = sc.beta * r + one_minus_beta * jnp.mean(g2, axis=axes.cols)
    c = sc.beta * c + one_minus_beta * jnp.mean(g2, axis=axes.rows)
    r_mean = jnp.mean(r, axis=axes.rows_in_r(), keepdims=True)
    if st.output == "rsqrt":
        row_factor = jax.lax.rsqrt(r / r_mean)
        if sc.k is not None:
            row_factor = row_factor * sc.k
        u = num * _expand(row_factor, axes.cols) * _expand(jax.lax.rsqrt(c), axes.rows)
        return u, r, c, v
    row_root = jnp.sqrt(jnp.where(r_mean > 0, r / jnp.where(r_mean > 0, r_mean, 1.0), 0.0))
    if sc.k is not None:
        row_root = row_root / sc.k
    return atan2_nonneg(num, _expand(row_root, axes.cols) * _expand(jnp.sqrt(c), axes.rows)), r, c, v


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(x * x))


def _leaf_update(
    g: jax.Array, r: Any, c: Any, v: Any, m: Any, p: Any, axes: FactoredAxes | None, st: _Static, sc: _Scalars
) -> tuple[jax.Array, Any, Any, Any, Any]:
    """One leaf's ``(update, R_t, C_t, V_t, m_t)``, computed in float32 (float64 for float64 leaves)."""
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    gf = g.astype(dtype)
    g2 = gf * gf if st.output == "atan2" else gf * gf + sc.eps1
    num = gf
    if st.momentum:
        num = sc.b1 * m.astype(dtype) + (1.0 - sc.b1) * gf
        m = num.astype(m.dtype)
    u, r, c, v = _normalise(num, g2, r, c, v, axes, st, sc)
    if st.clip:
        u = u / jnp.maximum(1.0, _rms(u) / sc.threshold)
    scale = None
    if st.param_scale:
        scale = jnp.maximum(sc.eps2, _rms(p.astype(dtype)))
    if st.relative_step:
        scale = sc.rho if scale is None else scale * sc.rho
    if scale is not None:
        u = u * scale
    return u.astype(g.dtype), r, c, v, m


def _init_leaf(leaf: Any, axes: FactoredAxes | None) -> tuple[Any, Any, Any]:
    """Zero ``(R, C, V)`` for one parameter (placeholders ``zeros((1,))`` for the unused ones)."""
    if is_absent(leaf):
        return leaf, leaf, leaf
    dtype = jnp.promote_types(leaf.dtype, jnp.float32)
    placeholder = jnp.zeros((1,), dtype)
    if axes is None:
        return placeholder, placeholder, jnp.zeros(leaf.shape, dtype)
    row_shape = tuple(n for i, n in enumerate(leaf.shape) if i not in axes.cols)
    col_shape = tuple(n for i, n in enumerate(leaf.shape) if i not in axes.rows)
    return jnp.zeros(row_shape, dtype), jnp.zeros(col_shape, dtype), placeholder


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

    Args:
      decay_rate: with ``decay_schedule="power"`` the exponent ``c > 0`` of ``b_t = 1 - t^(-c)``; with
        ``"constant"`` the decay ``b`` itself, in ``[0, 1)``.
      decay_schedule: ``"power"`` (Adafactor, no bias correction needed) or ``"constant"`` (Adam-style,
        bias-corrected).
      step_offset: ``t`` in the power decay and the relative step is ``max(step - step_offset, 1)`` (for
        fine-tuning from a restored step count), ``>= 0``.
      eps1: added to ``g^2`` before averaging, ``>= 0`` (unused with ``output="atan2"``).
      b1: decay of an Adam-style, bias-corrected gradient EMA used as the numerator, in ``[0, 1)``;
        ``None``: no first moment (the numerator is the gradient).
      clipping_threshold: ``d > 0`` of the update clipping ``U / max(1, RMS(U) / d)`` per leaf; ``None``
        disables it.
      multiply_by_parameter_scale: multiply each leaf's update by ``max(eps2, RMS(param))``.
      eps2: the floor of the parameter scale, ``>= 0``.
      relative_step: multiply by ``rho_t = min(1e-2, 1 / sqrt(t))``.
      output: ``"rsqrt"`` (``N / sqrt(V_hat)``) or ``"atan2"`` (``atan2(N, sqrt(V_hat))``).
      min_dim_size_to_factor: a leaf is factored only when each group holds at least this many
        elements (optax's rule for undeclared leaves: the second-largest axis). Read by ``init`` only
        (``update`` reads the choice back from the state's shapes). For width-transfer sweeps set it
        below the smallest width, so every width runs the same algorithm.
      factored: ``False`` keeps every moment in full (RMSProp with the Adafactor decay).
      fan_axes: ``None`` (optax's rule everywhere) or a pytree with the parameters' structure whose
        leaves are :class:`paramlab.optim.FanAxes` (factor fan-in vs fan-out) or ``None`` (optax's rule),
        or a function ``params -> such a tree``,
        e.g. the second output of :func:`paramlab.nn.split_fan_axes`. Under ``optax.partition`` the tree
        of the full parameters may be given.
      mu_dtype: dtype of the first moment; ``None``: the parameters' dtype.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`ScaleByFactoredMomentsState`. Numeric
      hyperparameters may be traced (``optax.inject_hyperparams``). Updates have the gradients' dtype.

    Raises:
      ValueError: naming the argument for an invalid hyperparameter, or the parameter path for fan axes
        out of range / a ``fan_axes`` tree that does not match the parameters (at ``init``).
    """
    check_choice(decay_schedule, _SCHEDULES, "decay_schedule")
    check_choice(output, _OUTPUTS, "output")
    if decay_schedule == "power":
        check_positive(decay_rate, "decay_rate")
    else:
        check_in_unit_interval(decay_rate, "decay_rate")
    check_non_negative(step_offset, "step_offset")
    check_non_negative(eps1, "eps1")
    check_non_negative(eps2, "eps2")
    if b1 is not None:
        check_in_unit_interval(b1, "b1")
    if clipping_threshold is not None:
        check_positive(clipping_threshold, "clipping_threshold")
    if not isinstance(min_dim_size_to_factor, jax.core.Tracer):
        static_min_dim(min_dim_size_to_factor)
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
    static = _Static(
        output=output,
        momentum=b1 is not None,
        constant_decay=decay_schedule == "constant",
        clip=clipping_threshold is not None,
        param_scale=bool(multiply_by_parameter_scale),
        relative_step=bool(relative_step),
    )

    def init_fn(params):
        factoring = leaf_factoring(params, fan_axes, factored, static_min_dim(min_dim_size_to_factor))
        leaves, treedef = jax.tree.flatten(params, is_leaf=is_absent)
        stats = [_init_leaf(leaf, axes) for leaf, axes in zip(leaves, factoring)]
        v_row, v_col, v = (treedef.unflatten([s[i] for s in stats]) for i in range(3))
        mu = optax.tree.zeros_like(params, dtype=mu_dtype) if static.momentum else None
        return ScaleByFactoredMomentsState(jnp.zeros([], jnp.int32), v_row, v_col, v, mu)

    def update_fn(updates, state, params=None):
        if static.param_scale and params is None:
            raise ValueError("scale_by_factored_moments(multiply_by_parameter_scale=True) needs params.")
        count = optax.safe_increment(state.count)
        scalars = _step_scalars(count, static, decay_rate, step_offset, eps1, b1, clipping_threshold, eps2)
        g_leaves, treedef = jax.tree.flatten(updates, is_leaf=is_absent)
        n = len(g_leaves)
        r_leaves, c_leaves, v_leaves = (treedef.flatten_up_to(t) for t in (state.v_row, state.v_col, state.v))
        # A leaf is factored iff init gave it a placeholder full moment (never a rank-1 leaf's shape).
        groups = leaf_factoring(updates, fan_axes, factored, 0)
        factoring = [
            None if is_absent(g) or v.shape == g.shape else axes
            for g, v, axes in zip(g_leaves, v_leaves, groups)
        ]
        m_leaves = treedef.flatten_up_to(state.mu) if static.momentum else [None] * n
        p_leaves = treedef.flatten_up_to(params) if static.param_scale else [None] * n
        out = [
            (g, r, c, v, m) if is_absent(g) else _leaf_update(g, r, c, v, m, p, axes, static, scalars)
            for g, r, c, v, m, p, axes in zip(
                g_leaves, r_leaves, c_leaves, v_leaves, m_leaves, p_leaves, factoring
            )
        ]
        new_updates, v_row, v_col, v, mu = (treedef.unflatten([o[i] for o in out]) for i in range(5))
        mu = mu if static.momentum else None
        return new_updates, ScaleByFactoredMomentsState(count, v_row, v_col, v, mu)

    return optax.GradientTransformation(init_fn, update_fn)


def _step_scalars(
    count: jax.Array,
    static: _Static,
    decay_rate: Any,
    step_offset: Any,
    eps1: Any,
    b1: Any,
    clipping_threshold: Any,
    eps2: Any,
) -> _Scalars:
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
    return _Scalars(
        beta=beta,
        eps1=jnp.asarray(eps1, f32),
        b1=b1_f,
        k=k,
        threshold=jnp.asarray(clipping_threshold, f32) if static.clip else None,
        eps2=jnp.asarray(eps2, f32) if static.param_scale else None,
        rho=jnp.minimum(f32(1e-2), jax.lax.rsqrt(t)) if static.relative_step else None,
    )


def adafactor(
    learning_rate: optax.ScalarOrSchedule | None = None,
    decay_rate: float = 0.8,
    decay_schedule: str = "power",
    step_offset: int = 0,
    eps1: float = 1e-30,
    eps2: float = 1e-3,
    clipping_threshold: float | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    b1: float | None = None,
    weight_decay: optax.ScalarOrSchedule | None = None,
    weight_decay_multiplied_by_lr: bool = True,
    weight_decay_mask: Any | None = None,
    output: str = "rsqrt",
    min_dim_size_to_factor: int = 128,
    factored: bool = True,
    fan_axes: Any | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Adafactor as in the paper (Shazeer & Stern, 2018, Algorithm 4 with relative step), by default.

    ``X_t = X - lr_t * max(eps2, RMS(X)) * U_hat`` with ``U_hat`` the clipped (``d = 1``) update of
    :func:`scale_by_factored_moments` (decay ``1 - t^-0.8``, ``eps1 = 1e-30``, ``eps2 = 1e-3``, no
    first moment) and ``lr_t`` the relative step ``min(1e-2, 1/sqrt(t))`` when ``learning_rate`` is
    ``None``, else the given learning rate (or schedule) in its place.

    Weight decay (``weight_decay = wd``, optionally masked):

    * ``weight_decay_multiplied_by_lr=True`` (default, the AdamW convention also used by
      :func:`paramlab.optim.adam_atan2`): ``X_t = X - lr_t * (max(eps2, RMS(X)) U_hat + wd X)``, with
      ``lr_t`` the relative step or the learning rate (not the parameter scale).
    * ``False`` (optax's ``adafactor(weight_decay_rate=...)``): ``X_t = X - lr_t max(eps2, RMS(X))
      U_hat - wd X``.

    With ``learning_rate`` given, ``weight_decay_multiplied_by_lr=False`` and the other defaults this
    equals ``optax.adafactor(learning_rate, weight_decay_rate=...)`` (float32 parameters, ``fan_axes``
    None, no momentum). ``b1`` is an Adam-style gradient EMA before the normalisation, unlike optax's
    ``momentum`` (see the module docstring).

    Args:
      learning_rate: ``None`` for the relative step, else a float or an optax schedule.
      decay_rate, decay_schedule, step_offset, eps1, eps2, clipping_threshold, b1, output,
      min_dim_size_to_factor, factored, fan_axes, mu_dtype: as in :func:`scale_by_factored_moments`.
      multiply_by_parameter_scale: scale each update by ``max(eps2, RMS(param))``.
      weight_decay: ``None`` (no decay) or a rate ``>= 0`` (or a schedule).
      weight_decay_multiplied_by_lr: the decay convention above.
      weight_decay_mask: tree of booleans (or a callable) selecting decayed leaves, as in
        ``optax.add_decayed_weights``.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).
    """
    if weight_decay is not None and not callable(weight_decay):
        check_non_negative(weight_decay, "weight_decay")
    core = scale_by_factored_moments(
        decay_rate=decay_rate,
        decay_schedule=decay_schedule,
        step_offset=step_offset,
        eps1=eps1,
        b1=b1,
        clipping_threshold=clipping_threshold,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        eps2=eps2,
        relative_step=False,
        output=output,
        min_dim_size_to_factor=min_dim_size_to_factor,
        factored=factored,
        fan_axes=fan_axes,
        mu_dtype=mu_dtype,
    )
    if learning_rate is None:
        learning_rate = lambda count: relative_step_size(count, step_offset)  # noqa: E731
    if weight_decay is None:
        return optax.chain(core, optax.scale_by_learning_rate(learning_rate))
    decay = optax.add_decayed_weights(weight_decay, weight_decay_mask)
    if weight_decay_multiplied_by_lr:
        return optax.chain(core, decay, optax.scale_by_learning_rate(learning_rate))
    return optax.chain(
        core, optax.scale_by_learning_rate(learning_rate, flip_sign=False), decay, optax.scale(-1.0)
    )

"""Flax Linen adapter of the parametrization engine: shapes in, parametrized init and apply out.

The engine (:mod:`paramlab.parametrization`) works on pytrees and paths; this module only turns a
Linen module into shape trees and fan axes, and applies a plan to Linen variables::

    shapes, fan_axes = param_shapes(model, x)                # jax.eval_shape: no memory
    variables = init(plan, model, rng, x)                    # model.init, rescale_init, unbox
    apply = plan.wrap_apply(model.apply)                     # forward with m_l * params

``paramlab.parametrization.make_plan`` calls :func:`param_shapes` at the base, delta and target
widths. The plan sees through metadata boxes (:class:`~paramlab.nn.FanAxesBox`, ``nn.Partitioned``),
so boxed and unboxed variables work alike.

**Tied embeddings.** A readout that reuses an ``nn.Embed`` table (``embed.attend``) is one parameter,
an embedding (fan-in = the vocabulary). The plan keeps the embedding rule for it (init, multiplier,
LR) and the model multiplies the logits by ``plan.tied_readout_multiplier(path)``, e.g.
``TransformerConfig(tied_embeddings=True, logits_multiplier=...)`` of :mod:`paramlab.models`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import meta

from paramlab.nn.metadata import split_fan_axes

__all__ = ["init", "param_shapes"]


def param_shapes(
    model: nn.Module, *inputs: Any, rng: jax.Array | None = None, **init_kwargs: Any
) -> tuple[Any, Any]:
    """Shapes and fan axes of the ``"params"`` collection of ``model``, via ``jax.eval_shape``.

    Args:
      model: an unbound Linen module.
      *inputs: example inputs for ``model.init`` (arrays or ``jax.ShapeDtypeStruct``).
      rng: the init key (default ``jax.random.key(0)``; only its shape matters).
      **init_kwargs: passed to ``model.init``.

    Returns:
      ``(shapes, fan_axes)``: a tree of ``jax.ShapeDtypeStruct`` and a matching tree of
      :class:`~paramlab.nn.FanAxes` or ``None`` (undeclared: the default rule).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"param_shapes: expected a flax.linen Module, got {type(model).__name__}.")
    rng = jax.random.key(0) if rng is None else rng
    variables = jax.eval_shape(lambda r, *xs: model.init(r, *xs, **init_kwargs), rng, *inputs)
    if "params" not in variables:
        raise ValueError(f"param_shapes: {type(model).__name__}.init created no 'params' collection.")
    return split_fan_axes(variables["params"])


def init(
    plan: Any,
    model: nn.Module,
    rng: jax.Array,
    *inputs: Any,
    unbox: bool = True,
    param_dtype: Any = None,
    **init_kwargs: Any,
) -> Any:
    """``model.init(rng, *inputs)`` with the ``"params"`` rescaled by ``plan.rescale_init``.

    Args:
      plan: a :class:`paramlab.parametrization.Plan` built for this model's width.
      model, rng, inputs, init_kwargs: as for ``model.init``.
      unbox: strip metadata boxes (``FanAxesBox``, ``nn.Partitioned``) so the leaves are plain arrays,
        as optax and ``jax.numpy`` expect (the plan keeps the fan axes); ``False`` keeps them, e.g. to
        read ``nn.get_partition_spec`` first.
      param_dtype: cast the model's own floating-point parameters to this dtype before the rescale
        (e.g. ``jnp.float64`` under ``jax.enable_x64``, so the rescale rounds in that dtype).

    Other collections are returned unchanged. Runs under ``jax.jit`` (one compiled program instead of
    op-by-op dispatch; the unscaled parameters are never materialised beside the scaled ones).
    """

    def init_fn(rng: jax.Array, *xs: Any) -> Any:
        variables = model.init(rng, *xs, **init_kwargs)
        if param_dtype is not None:
            variables = {
                **variables,
                "params": jax.tree.map(lambda p: _cast(p, param_dtype), variables["params"]),
            }
        return plan.rescale_init(variables)

    variables = jax.jit(init_fn)(rng, *inputs)
    return meta.unbox(variables) if unbox else variables


def _cast(x: Any, dtype: Any) -> Any:
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

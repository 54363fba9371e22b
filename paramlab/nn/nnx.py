"""Flax NNX adapter of the parametrization engine.

NNX layers declare fan axes as ``nnx.Param`` metadata: ``nnx.Param(value, fan_in=(0,), fan_out=(1,))``
or ``nnx.Linear(..., kernel_metadata={"fan_in": (0,), "fan_out": (1,)})``; a Linen module wrapped by
``nnx.bridge.ToNNX`` keeps its :class:`~paramlab.nn.metadata.FanAxesBox` axes; undeclared parameters
follow :func:`paramlab.nn.default_fan_axes`. The engine underneath is the same as for Linen (it
works on paths, and an ``nnx.State`` flattens to the same paths as the pure dict)::

    shapes, fan_axes = param_shapes(lambda: MyModel(cfg, rngs=nnx.Rngs(0)))   # nnx.eval_shape
    model = MyModel(cfg, rngs=nnx.Rngs(0))
    rescale_init(plan, model)                          # in place: params <- s_l * params
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    out = merge(plan, graphdef, params, rest)(x)       # a module whose params are m_l * params
    tx = plan.optimizer("adam", 1e-3)                  # optax on nnx.State (or nnx.Optimizer)

Inside a loss differentiated with ``nnx.grad``, :func:`effective_model` gives the module to call.
Tied embeddings: as in :mod:`paramlab.nn.linen`, the shared table is an embedding and the logits
take ``plan.tied_readout_multiplier(path)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from paramlab.optim.fan_axes import FanAxes

__all__ = ["effective_model", "merge", "param_shapes", "rescale_init"]


def _path(keys: tuple[Any, ...]) -> str:
    return "/".join(str(k) for k in keys)


def param_shapes(make_model: Callable[[], nnx.Module], wrt: Any = nnx.Param) -> tuple[dict, dict]:
    """Shapes and fan axes of the ``wrt`` variables of the module ``make_model()`` builds.

    The module is built under ``nnx.eval_shape``, so no parameter memory is allocated.

    Returns:
      ``({path: jax.ShapeDtypeStruct}, {path: FanAxes or None})``, flat dicts keyed by the
      ``/``-joined paths (the engine's paths for this module's ``nnx.State``).
    """
    model = nnx.eval_shape(make_model)
    if not isinstance(model, nnx.Module):
        raise ValueError(f"param_shapes: make_model() must build an nnx.Module, got {type(model).__name__}.")
    shapes, fan_axes = {}, {}
    for keys, variable in nnx.state(model, wrt).flat_state():
        path = _path(keys)
        value = variable.get_value() if hasattr(variable, "get_value") else variable.value
        shapes[path] = jax.ShapeDtypeStruct(value.shape, value.dtype)
        fan_axes[path] = _fan_axes(variable, path)
    return shapes, fan_axes


def _fan_axes(variable: nnx.Variable, path: str) -> FanAxes | None:
    """The variable's declared fan axes: ``fan_in`` / ``fan_out`` metadata, or a whole ``fan_axes``
    (what ``nnx.bridge.ToNNX`` carries over from a Linen :class:`~paramlab.nn.metadata.FanAxesBox`)."""
    metadata = variable.get_metadata()
    if isinstance(metadata.get("fan_axes"), FanAxes):
        return metadata["fan_axes"]
    has_in, has_out = "fan_in" in metadata, "fan_out" in metadata
    if has_in != has_out:
        raise ValueError(f"parameter {path}: declare both fan_in and fan_out metadata, or neither.")
    return FanAxes(tuple(metadata["fan_in"]), tuple(metadata["fan_out"])) if has_in else None


def rescale_init(plan: Any, model: nnx.Module, wrt: Any = nnx.Param) -> None:
    """Replace ``model``'s parameters, in place, by ``plan.rescale_init`` of them."""
    nnx.update(model, plan.rescale_init(nnx.state(model, wrt)))


def merge(plan: Any, graphdef: Any, params: Any, *states: Any) -> nnx.Module:
    """``nnx.merge(graphdef, plan.effective_params(params), *states)``: a module computing with
    the effective weights ``m_l * params`` (for ``nnx.split`` / functional training loops)."""
    return nnx.merge(graphdef, plan.effective_params(params), *states)


def effective_model(plan: Any, model: nnx.Module, wrt: Any = nnx.Param) -> nnx.Module:
    """A copy of ``model`` whose ``wrt`` variables are the effective weights ``m_l * params``.

    Differentiable: inside ``nnx.grad(loss)(model)``, ``effective_model(plan, model)(x)`` sends the
    gradient back to the stored parameters through the multipliers.
    """
    graphdef, params, rest = nnx.split(model, wrt, ...)
    return merge(plan, graphdef, params, rest)

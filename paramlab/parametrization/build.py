"""Build a plan from a model factory: ``make_plan(make_model, parametrization, base=, delta=, target=)``.

The factory maps widths (an int, a dict such as ``{"d_model": 256, "d_ff": 1024}``, a config: any
value it accepts) to a Flax model: a Linen module (cheap to construct; its shapes come from
``jax.eval_shape(model.init, ...)`` on example ``inputs``) or an NNX module (built under
``nnx.eval_shape``). No parameter memory is allocated at any width, so a plan for a billion-parameter
target costs three abstract traces, or two when the target can stand in for the delta widths
(:func:`_target_serves_as_delta`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
from flax import linen, nnx

from paramlab.nn import linen as linen_adapter
from paramlab.nn import nnx as nnx_adapter
from paramlab.optim.common import flatten_with_paths
from paramlab.optim.fan_axes import resolve_fan_axes
from paramlab.parametrization.plan import Plan
from paramlab.parametrization.recipe import Parametrization
from paramlab.parametrization.spec import infer_spec

__all__ = ["make_plan", "model_shapes"]


def _framework(make_model: Callable[[Any], Any], widths: Any) -> str:
    """``"linen"`` or ``"nnx"``: the kind of module ``make_model(widths)`` builds (traced abstractly)."""
    kinds: list[type] = []

    def probe():
        kinds.append(type(make_model(widths)))

    jax.eval_shape(probe)
    if issubclass(kinds[0], linen.Module):
        return "linen"
    if issubclass(kinds[0], nnx.Module):
        return "nnx"
    raise ValueError(f"make_model must return a flax.linen or flax.nnx Module, got {kinds[0].__name__}.")


def model_shapes(
    make_model: Callable[[Any], Any], widths: Any, inputs: tuple[Any, ...] = (), **init_kwargs: Any
) -> tuple[Any, Any]:
    """``(shapes, fan_axes)`` of ``make_model(widths)``'s parameters (see the module docstring)."""
    if _framework(make_model, widths) == "linen":
        return linen_adapter.param_shapes(make_model(widths), *inputs, **init_kwargs)
    if inputs or init_kwargs:
        raise ValueError("make_plan: inputs / init arguments are for Linen models; an NNX module needs none.")
    return nnx_adapter.param_shapes(lambda: make_model(widths))


def make_plan(
    make_model: Callable[[Any], Any],
    parametrization: Parametrization,
    *,
    base: Any,
    delta: Any,
    target: Any,
    inputs: tuple[Any, ...] = (),
    roles: dict[str, str] | None = None,
    fixed: str = "vectors",
    integer_ratios: bool = True,
    **init_kwargs: Any,
) -> Plan:
    """The :class:`Plan` of ``parametrization`` for ``make_model(target)``.

    Args:
      make_model: ``widths -> model`` (Linen or NNX module).
      parametrization: the recipe.
      base: the widths at which every parametrization equals the base model (the tuning proxy).
      delta: other widths, differing from ``base`` in every width that scales (only their shapes
        are used: which axes are widths). When ``target`` changes exactly the widths ``delta``
        changes (plain numbers), the target's shapes serve and ``delta`` is not traced.
      target: the widths to train at.
      inputs: example inputs for a Linen ``model.init`` (arrays or ``jax.ShapeDtypeStruct``).
      roles, fixed, integer_ratios: see :func:`~paramlab.parametrization.infer_spec`.
      **init_kwargs: more arguments of a Linen ``model.init``.
    """
    base_shapes, base_fan = model_shapes(make_model, base, tuple(inputs), **init_kwargs)
    target_shapes, target_fan = model_shapes(make_model, target, tuple(inputs), **init_kwargs)
    if _target_serves_as_delta(base, delta, target):
        delta_shapes = target_shapes
    else:
        delta_shapes, _ = model_shapes(make_model, delta, tuple(inputs), **init_kwargs)
    _check_same_fan_axes(base_shapes, base_fan, target_shapes, target_fan)
    specs = infer_spec(
        base_shapes,
        delta_shapes,
        target_shapes,
        target_fan,
        roles=roles,
        fixed=fixed,
        integer_ratios=integer_ratios,
    )
    return Plan(specs, parametrization)


def _target_serves_as_delta(base: Any, delta: Any, target: Any) -> bool:
    """Whether ``target``'s shapes may replace ``delta``'s in :func:`make_plan` (one trace fewer).

    The delta widths only mark which axes are widths: those whose size differs from the base's. The
    target marks the same axes when it changes exactly the widths that ``delta`` changes. Decided on
    the widths themselves, so only when all three are the same structure (an int, a tuple, a dict,
    ...) of plain numbers; any other value keeps the delta trace. (An axis whose size is a
    function of several widths that happens to be equal at base and target, such as ``heads *
    head_dim`` with both changed inversely, would then count as fixed: its target ratio is 1.)
    """
    trees = [jax.tree.flatten(w) for w in (base, delta, target)]
    (base_leaves, structure), (delta_leaves, delta_structure), (target_leaves, target_structure) = trees
    if not structure == delta_structure == target_structure:
        return False
    leaves = base_leaves + delta_leaves + target_leaves
    if not all(isinstance(x, numbers.Number) and not isinstance(x, bool) for x in leaves):
        return False
    return all((d != b) == (t != b) for b, d, t in zip(base_leaves, delta_leaves, target_leaves))


def _check_same_fan_axes(base_shapes: Any, base_fan: Any, target_shapes: Any, target_fan: Any) -> None:
    """The layers must declare the same fan axes at every width."""
    base_axes = dict(flatten_with_paths(resolve_fan_axes(base_shapes, base_fan)))
    for path, axes in flatten_with_paths(resolve_fan_axes(target_shapes, target_fan)):
        if path in base_axes and base_axes[path] != axes:
            raise ValueError(
                f"parameter {path}: fan axes differ between base ({base_axes[path]}) and target ({axes})."
            )

"""Coordinate-check setups: a Flax Linen or NNX model under a parametrization plan, ready to train.

:func:`linen_plan_setup` and :func:`nnx_plan_setup` return ``width -> CoordCheckSetup`` factories for
:func:`paramlab.diagnostics.coord_check`: the plan at that width (:func:`~paramlab.parametrization.
make_plan`), the plan's init (:func:`paramlab.nn.linen.init`), a forward pass that applies the plan's
multipliers and records every module's output, and the plan's optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from paramlab.diagnostics.coord_check import CoordCheckSetup, Forward
from paramlab.nn import linen as linen_adapter
from paramlab.parametrization import Parametrization, make_plan

__all__ = ["intermediates_by_module", "linen_forward", "linen_plan_setup", "nnx_plan_setup"]


def intermediates_by_module(
    intermediates: Mapping[str, Any], output_name: str = "output"
) -> dict[str, jax.Array]:
    """``{module path: output}`` from a Linen ``capture_intermediates`` collection.

    Flax stores the outputs of module ``a/b`` under ``intermediates["a"]["b"]["__call__"]`` as a
    tuple with one entry per call. The path is the keys joined by ``/``; the model's own output
    (the top-level ``__call__``) is named ``output_name``; the ``i``-th repeated call (``i >= 1``)
    of a module gets ``#i`` appended; a module returning several arrays gets ``:<j>`` per array.
    Non-floating outputs are skipped.
    """
    found: dict[str, jax.Array] = {}

    def visit(node: Any, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            if key == "__call__":
                name = "/".join(path) or output_name
                for i, out in enumerate(value):
                    leaves = [
                        x for x in jax.tree_util.tree_leaves(out) if jnp.issubdtype(x.dtype, jnp.floating)
                    ]
                    for j, leaf in enumerate(leaves):
                        found[name + (f"#{i}" if i else "") + (f":{j}" if len(leaves) > 1 else "")] = leaf
            elif isinstance(value, Mapping):
                visit(value, (*path, str(key)))

    visit(intermediates, ())
    return found


def linen_forward(
    apply_fn: Callable[..., Any],
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    *,
    output_name: str = "output",
) -> Forward:
    """A :class:`CoordCheckSetup` ``forward`` for a Flax Linen model.

    Args:
      apply_fn: ``apply_fn(params, inputs, **apply_kwargs)`` forwarding ``apply_kwargs`` to
        ``module.apply``, e.g. ``lambda p, x, **kw: model.apply({"params": p}, x, **kw)`` or a
        parametrization plan's wrapped version of it (so the forward multipliers are applied and
        every recorded activation is the effective one).
      loss_fn: ``loss_fn(model_output, targets) -> scalar``.
      output_name: the record name of the model's own output.

    Returns:
      ``forward(params, (inputs, targets)) -> (loss, {module: activation})``, every module's
      output captured with ``capture_intermediates=True``.
    """

    def forward(params: Any, batch: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        inputs, targets = batch
        out, state = apply_fn(params, inputs, capture_intermediates=True, mutable=["intermediates"])
        return loss_fn(out, targets), intermediates_by_module(state["intermediates"], output_name)

    return forward


def linen_plan_setup(
    make_model: Callable[[int], nn.Module],
    parametrization: Parametrization,
    inputs: Any,
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    *,
    base_width: int,
    delta_width: int | None = None,
    base_optimizer: str | None = None,
    param_dtype: Any = None,
    **optimizer_kwargs: Any,
) -> Callable[[int], CoordCheckSetup]:
    """A :func:`coord_check` ``setup`` for a Linen model under a parametrization plan.

    At width ``w``: the plan ``make_plan(make_model, parametrization, base=base_width,
    delta=delta_width, target=w)``; parameters :func:`paramlab.nn.linen.init` (metadata boxes removed;
    cast to ``param_dtype`` first, so the rescale rounds in that dtype); the
    forward pass :func:`linen_forward` of ``plan.wrap_apply(model.apply)`` (effective weights, every
    module's output captured); the optimizer ``plan.optimizer(base_optimizer, learning_rate,
    **optimizer_kwargs)`` (per-parameter learning rate, epsilon, weight decay).

    Args:
      make_model: ``width -> Linen module`` (e.g. an MLP of that hidden width, or a Transformer
        whose ``d_model``, heads and ``d_ff`` follow the width).
      parametrization: the recipe (:class:`paramlab.parametrization.Parametrization`).
      inputs: example model inputs (the batch's inputs).
      loss_fn: ``loss_fn(model_output, targets) -> scalar``.
      base_width: where every parametrization equals the base model.
      delta_width: any other width, only to tell which axes scale (default ``2 * base_width``).
      base_optimizer: an optimizer of the parametrization's family (``None``: its own).
      param_dtype: cast the model's own initial parameters to this dtype (e.g. ``jnp.float64``
        inside ``jax.enable_x64``); ``None`` keeps them.
      **optimizer_kwargs: passed to ``plan.optimizer`` (``eps``, ``b1``, ``momentum``, ...).
    """
    delta_width = _delta_width(base_width, delta_width)

    def setup(width: int) -> CoordCheckSetup:
        model = make_model(width)
        plan = make_plan(
            make_model, parametrization, base=base_width, delta=delta_width, target=width, inputs=(inputs,)
        )

        def init(key: jax.Array) -> Any:
            return linen_adapter.init(plan, model, key, inputs, param_dtype=param_dtype)["params"]

        apply = plan.wrap_apply(lambda params, x, **kw: model.apply({"params": params}, x, **kw))
        return CoordCheckSetup(
            init=init,
            forward=linen_forward(apply, loss_fn),
            optimizer=lambda lr: plan.optimizer(base_optimizer, lr, **optimizer_kwargs),
        )

    return setup


def nnx_plan_setup(
    make_model: Callable[[int, nnx.Rngs], nnx.Module],
    parametrization: Parametrization,
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    *,
    base_width: int,
    delta_width: int | None = None,
    base_optimizer: str | None = None,
    param_dtype: Any = None,
    output_name: str = "output",
    **optimizer_kwargs: Any,
) -> Callable[[int], CoordCheckSetup]:
    """:func:`linen_plan_setup` for a Flax NNX model.

    The module ``make_model(width, rngs)`` is split into its ``nnx.Param`` state (the parameters:
    ``plan.rescale_init`` of the module's own init, built from ``nnx.Rngs(key)``) and its graph; the
    forward pass merges the graph with the effective weights ``plan.effective_params(params)`` and
    records every submodule's method outputs with ``nnx.capture(..., method_outputs=nnx.Intermediate)``
    (named like Linen's: the path of the submodule, ``output_name`` for the model itself).

    Args:
      make_model: ``(width, rngs) -> nnx.Module``. Its only variables must be ``nnx.Param`` (a
        module that keeps RNG streams or statistics is not supported).
      parametrization, loss_fn, base_width, delta_width, base_optimizer, param_dtype,
        optimizer_kwargs: as for :func:`linen_plan_setup`.
      output_name: the record name of the model's own output.
    """
    delta_width = _delta_width(base_width, delta_width)

    def setup(width: int) -> CoordCheckSetup:
        build = lambda w: make_model(w, nnx.Rngs(0))
        plan = make_plan(build, parametrization, base=base_width, delta=delta_width, target=width)
        graphdef, rest = _graph_and_rest(nnx.eval_shape(lambda: build(width)))

        def init(key: jax.Array) -> Any:
            params = nnx.state(make_model(width, nnx.Rngs(key)), nnx.Param)
            if param_dtype is not None:
                params = jax.tree.map(lambda p: p.astype(param_dtype), params)
            return plan.rescale_init(params)

        def forward(params: Any, batch: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            inputs, targets = batch
            model = nnx.merge(graphdef, plan.effective_params(params), rest)
            out, captured = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(inputs)
            return loss_fn(out, targets), intermediates_by_module(nnx.to_pure_dict(captured), output_name)

        return CoordCheckSetup(
            init=init,
            forward=forward,
            optimizer=lambda lr: plan.optimizer(base_optimizer, lr, **optimizer_kwargs),
        )

    return setup


def _delta_width(base_width: int, delta_width: int | None) -> int:
    delta_width = 2 * base_width if delta_width is None else delta_width
    if delta_width == base_width:
        raise ValueError(f"delta_width must differ from base_width={base_width}.")
    return delta_width


def _graph_and_rest(model: nnx.Module) -> tuple[Any, Any]:
    """The graph and the non-parameter state of an abstract NNX model (which must have none)."""
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError(
            "nnx_plan_setup: the model has variables other than nnx.Param: "
            f"{[path for path, _ in rest.flat_state()][:5]}."
        )
    return graphdef, rest

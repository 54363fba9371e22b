"""Coordinate check: the size of every module's output across widths over the first steps of training.

The test of Tensor Programs V (Yang et al., 2022, arXiv 2203.03466; ``microsoft/mup``'s
``get_coord_data``): for widths ``w_1 < ... < w_k`` build the model under one
parametrization, repeat **one fixed batch**, and at steps ``t = 1 .. T`` record the mean absolute
value ``l1 = mean |y|`` of the output ``y`` of every module during the forward pass, then take an
optimizer step. Step ``t = 1`` is the forward pass at initialisation; step ``t`` sees the parameters
after ``t - 1`` updates. Use a larger learning rate than usual (e.g. Adam ``1e-2``) so that the
updates dominate.

A parametrization with width-independent feature learning (muP) gives curves that are flat in
width at every step; the standard parametrization with one global learning rate gives hidden and
output activations that grow with width after the first step. Only at initialisation may the
output (and attention logits) shrink like ``width^{-1/2}`` under muP, unless the readout (and the
query) is zero-initialised (paramlab REFERENCE section 6).

:func:`coord_check` runs the procedure for any model given as a :class:`CoordCheckSetup` factory (a
pure ``forward(params, batch) -> (loss, {module: activation})`` plus an init function and an
optimizer builder; :func:`linen_plan_setup` builds one for a Linen model under a parametrization
plan); :func:`linen_forward` makes that ``forward`` for a Flax Linen model from
``capture_intermediates=True``; :func:`nnx_plan_setup` is the Flax NNX version (``nnx.capture``).
:func:`coord_check_summary` fits each module's log-log slope of
``l1`` against width and its max / min ratio across widths, per step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx

from paramlab.nn.metadata import split_fan_axes
from paramlab.parametrization import Parametrization, make_plan

__all__ = [
    "FAST_CPU_COMPILE",
    "RECORD_KEYS",
    "CoordCheckSetup",
    "coord_check",
    "coord_check_summary",
    "intermediates_by_module",
    "linen_forward",
    "linen_plan_setup",
    "loglog_slope",
    "nnx_plan_setup",
]

RECORD_KEYS = ("parametrization", "optimizer", "width", "step", "module", "l1")

# ``compiler_options`` for XLA's CPU backend at optimisation level 0: a coordinate check compiles a
# fresh program per width and runs it a few times, so compiling (several times faster at level 0;
# e.g. a lecun-initialised MLP's init 1.3 s -> 0.4 s) costs more than running.
FAST_CPU_COMPILE = {"xla_backend_optimization_level": 0}

Forward = Callable[[Any, Any], tuple[jax.Array, Mapping[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class CoordCheckSetup:
    """One width's model, ready to train.

    Attributes:
      init: a pure, jittable ``key -> params``: the initial (stored) parameters, e.g. a
        parametrization plan's rescaled init.
      forward: a pure, jittable ``forward(params, batch) -> (loss, {module name: activation})``;
        differentiated w.r.t. ``params`` (apply the plan's forward multipliers inside it).
      optimizer: ``learning_rate -> optax.GradientTransformation`` (e.g. a plan's per-parameter
        learning-rate scaling around Adam).
    """

    init: Callable[[jax.Array], Any]
    forward: Forward
    optimizer: Callable[[float], optax.GradientTransformation]


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
    base_optimizer: str = "adam",
    param_dtype: Any = None,
    **optimizer_kwargs: Any,
) -> Callable[[int], CoordCheckSetup]:
    """A :func:`coord_check` ``setup`` for a Linen model under a parametrization plan.

    At width ``w``: the plan ``make_plan(make_model, parametrization, base=base_width,
    delta=delta_width, target=w)``; parameters ``plan.rescale_init(model.init(key, inputs)["params"])``
    (metadata boxes removed; cast to ``param_dtype`` first, so the rescale rounds in that dtype); the
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
      base_optimizer: a :meth:`paramlab.parametrization.Plan.optimizer` base (``"adam"``,
        ``"adam_atan2"``, ``"sgd"``, ...), of the parametrization's optimizer family.
      param_dtype: cast the model's own initial parameters to this dtype (e.g. ``jnp.float64``
        inside ``jax.enable_x64``); ``None`` keeps them.
      **optimizer_kwargs: passed to ``plan.optimizer`` (``eps``, ``b1``, ``momentum``, ...).
    """
    delta_width = 2 * base_width if delta_width is None else delta_width
    if delta_width == base_width:
        raise ValueError(f"delta_width must differ from base_width={base_width}.")

    def setup(width: int) -> CoordCheckSetup:
        model = make_model(width)
        plan = make_plan(
            make_model, parametrization, base=base_width, delta=delta_width, target=width, inputs=(inputs,)
        )

        def init(key: jax.Array) -> Any:
            params, _ = split_fan_axes(model.init(key, inputs)["params"])
            if param_dtype is not None:
                params = jax.tree.map(lambda p: p.astype(param_dtype), params)
            return plan.rescale_init(params)

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
    base_optimizer: str = "adam",
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
    delta_width = 2 * base_width if delta_width is None else delta_width
    if delta_width == base_width:
        raise ValueError(f"delta_width must differ from base_width={base_width}.")

    def setup(width: int) -> CoordCheckSetup:
        plan = make_plan(
            lambda w: make_model(w, nnx.Rngs(0)),
            parametrization,
            base=base_width,
            delta=delta_width,
            target=width,
        )
        graphdef, abstract_params, rest = nnx.split(
            nnx.eval_shape(lambda: make_model(width, nnx.Rngs(0))), nnx.Param, ...
        )
        if jax.tree.leaves(rest):
            raise ValueError(
                "nnx_plan_setup: the model has variables other than nnx.Param: "
                f"{[path for path, _ in rest.flat_state()][:5]}."
            )

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


def _run(
    s: CoordCheckSetup,
    tx: optax.GradientTransformation,
    steps: int,
    compiler_options: Mapping[str, Any] | None,
) -> Callable[[jax.Array, Any], dict[str, jax.Array]]:
    """``(key, batch) -> {module: l1 at steps 1..steps}``: init and every step as one compiled program.

    Step ``t``'s activations are those of the forward pass at the parameters after ``t - 1`` updates.
    """

    def run(key: jax.Array, batch: Any) -> dict[str, jax.Array]:
        params = s.init(key)

        def step(carry, _):
            params, opt_state = carry
            (_, acts), grads = jax.value_and_grad(s.forward, has_aux=True)(params, batch)
            l1 = {name: jnp.mean(jnp.abs(x.astype(jnp.float32))) for name, x in acts.items()}
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), l1

        return jax.lax.scan(step, (params, tx.init(params)), length=steps)[1]

    return jax.jit(run, compiler_options=compiler_options)


def coord_check(
    setup: Callable[[int], CoordCheckSetup],
    widths: Sequence[int],
    batch: Any,
    *,
    steps: int = 3,
    learning_rate: float = 1e-2,
    seed: int = 0,
    parametrization: str = "",
    optimizer: str = "",
    compiler_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Mean ``|output|`` of every module at steps ``1 .. steps`` on one repeated batch, per width.

    For every width: ``s = setup(width)``, ``params = s.init(jax.random.key(seed))`` (the same key
    at every width, as ``mup`` reseeds), ``tx = s.optimizer(learning_rate)``, then ``steps`` times: run
    ``s.forward(params, batch)`` recording each module's ``mean |activation|`` (in float32), and
    apply one update of ``tx`` on the gradient of the loss. Step 1 is therefore the forward pass at
    initialisation and step ``t`` the one after ``t - 1`` updates (TP-V's coordinate check). Init and
    steps are one compiled program per width (``lax.scan`` over the steps).

    Args:
      setup: ``width -> CoordCheckSetup``: the model at that width under the parametrization
        being checked (e.g. :func:`linen_plan_setup`).
      widths: distinct positive widths.
      batch: the fixed batch (any pytree ``forward`` accepts), reused at every step and width.
      steps: number of recorded forward passes (``>= 1``); ``steps - 1`` updates matter.
      learning_rate: passed to ``CoordCheckSetup.optimizer``.
      seed: initialisation seed.
      parametrization, optimizer: labels copied into every record.
      compiler_options: ``jax.jit`` compiler options (e.g. :data:`FAST_CPU_COMPILE` on CPU).

    Returns:
      Records ``{"parametrization", "optimizer", "width", "step", "module", "l1"}`` (python
      scalars and strings), ordered by width, step, module.

    Raises:
      ValueError: bad ``widths`` / ``steps`` / ``learning_rate``, or a width whose forward records no
        module or a non-finite value.
    """
    widths = _check_widths(widths)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {learning_rate!r}.")
    records: list[dict[str, Any]] = []
    for width in widths:
        s = setup(width)
        l1 = jax.device_get(
            _run(s, s.optimizer(learning_rate), steps, compiler_options)(jax.random.key(seed), batch)
        )
        if not l1:
            raise ValueError(f"coord_check: the forward pass at width {width} recorded no module.")
        for t in range(1, steps + 1):
            for module in sorted(l1):
                value = float(l1[module][t - 1])
                if not math.isfinite(value):
                    raise ValueError(
                        f"coord_check: module {module} at width {width}, step {t}: mean |output| = {value}."
                    )
                records.append(
                    dict(
                        parametrization=parametrization,
                        optimizer=optimizer,
                        width=int(width),
                        step=t,
                        module=module,
                        l1=value,
                    )
                )
    return records


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = list(widths)
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1]
    if not widths or bad or len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct positive integers, got {widths!r}.")
    return [int(w) for w in widths]


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (``y ~ x^slope``).

    ``nan`` when fewer than two distinct ``x`` have ``y > 0`` (points with ``y <= 0`` have no log and
    are left out).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"loglog_slope: x and y must be 1-D of the same length, got {x.shape} and {y.shape}."
        )
    if np.any(x <= 0):
        raise ValueError(f"loglog_slope: x must be positive, got {x.tolist()}.")
    keep = y > 0
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if len(np.unique(lx)) < 2:
        return math.nan
    lx = lx - lx.mean()
    return float(np.sum(lx * (ly - ly.mean())) / np.sum(lx * lx))


def coord_check_summary(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (parametrization, optimizer, module, step): the log-log slope and max / min ratio over widths.

    Returns:
      Rows ``{"parametrization", "optimizer", "module", "step", "slope", "ratio", "widths"}``:
      ``slope`` from :func:`loglog_slope` of ``l1`` against width (flat: ``0``; TP-V's muP passes
      with ``|slope|`` near 0), ``ratio = max l1 / min l1`` across widths (``1.0`` when every value
      is 0, ``inf`` when only some are). Ordered by the records' first appearance.
    """
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"coord_check_summary: record {dict(r)} lacks keys {missing}.")
        key = (r["parametrization"], r["optimizer"], r["module"], r["step"])
        groups.setdefault(key, []).append((r["width"], r["l1"]))
    rows = []
    for (name, opt, module, step), points in groups.items():
        points.sort()
        widths = [w for w, _ in points]
        values = np.array([v for _, v in points], dtype=np.float64)
        high, low = float(values.max()), float(values.min())
        ratio = 1.0 if high == 0 else (math.inf if low <= 0 else high / low)
        rows.append(
            dict(
                parametrization=name,
                optimizer=opt,
                module=module,
                step=step,
                slope=loglog_slope(widths, values),
                ratio=ratio,
                widths=widths,
            )
        )
    return rows

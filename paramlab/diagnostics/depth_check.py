"""Depth coordinate check: how every residual block's features move, across depth at a fixed width.

The depth analogue of :mod:`.coord_check` (``docs/reference.md`` §7): at each depth ``L`` train a few
steps on one repeated batch from the same seed, then compare the residual stream ``h_i`` after each
block ``i`` at the trained parameters with its value at init:

* ``rms``: ``RMS(h_i)`` at init (grows like ``sqrt(L)`` without branch multipliers);
* ``delta_rms``: ``RMS(h_i(T) - h_i(0))``, the feature change so far; at the last block it should be
  the same at every depth for a depth rule that transfers (CompleteP, depth-muP) and grows with depth
  for width-only muP;
* ``update_rms``: ``RMS(Δ(h_i - h_{i-1}))``, block ``i``'s own contribution to that change (``h_{-1}``
  is the input module's output); CompleteP makes it ``Θ(1/L)``: every block learns, none dominates.
* ``nonlinear_fraction``: how far block ``i``'s own change leaves its linearisation (CompleteP's
  laziness, Dey et al. 2025 §4). With every other parameter at init and block ``i``'s moved to its
  trained value, ``Δ_i = h_i(θ_i(T)) - h_i(θ_i(0))`` against the first-order change ``J_i (θ_i(T) -
  θ_i(0))`` (a ``jax.jvp``): ``RMS(Δ_i - J_i Δθ_i) / RMS(Δ_i)``, 0 where nothing moved. Near 0 is
  lazy (the block acts as its linearisation, as depth-muP's blocks do at large depth); CompleteP
  keeps it roughly constant in depth.

The model must name its blocks ``<prefix><i>`` (``block_0 …``) and its input module (``embed``), as
paramlab's Transformer and :class:`~paramlab.models.ResidualMLP` do; blocks must be unrolled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from paramlab.diagnostics.coord_check import CoordCheckSetup, loglog_slope
from paramlab.diagnostics.setups import linen_forward
from paramlab.nn import linen as linen_adapter
from paramlab.optim.common import check_widths
from paramlab.parametrization import Parametrization, make_plan
from paramlab.train import create_train_state, make_train_step

__all__ = ["DEPTH_RECORD_KEYS", "depth_check", "depth_check_summary", "linen_depth_setup"]

DEPTH_RECORD_KEYS = (
    "label",
    "seed",
    "depth",
    "block",
    "rms",
    "delta_rms",
    "update_rms",
    "nonlinear_fraction",
)


def linen_depth_setup(
    make_model: Callable[[int, int, float], nn.Module],
    parametrization: Parametrization,
    inputs: Any,
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    *,
    width: int,
    base_depth: int,
    **optimizer_kwargs: Any,
) -> Callable[[int], CoordCheckSetup]:
    """``depth -> CoordCheckSetup`` for a Linen model under a width x depth plan.

    Args:
      make_model: ``(width, depth, branch_multiplier) -> module``.
      parametrization: the recipe, with its ``depth_rule``.
      inputs, loss_fn: example inputs and ``loss_fn(output, targets)``.
      width: the fixed width; the plan's base is ``(width, base_depth)``, its delta
        ``(2 width, 2 base_depth)``.
      **optimizer_kwargs: passed to ``plan.optimizer``.
    """

    def setup(depth: int) -> CoordCheckSetup:
        plan = make_plan(
            lambda size: make_model(*size, 1.0),
            parametrization,
            base=(width, base_depth),
            delta=(2 * width, 2 * base_depth),
            target=(width, depth),
            inputs=(inputs,),
        )
        model = make_model(width, depth, plan.branch_multiplier())
        apply = plan.wrap_apply(lambda params, x, **kw: model.apply({"params": params}, x, **kw))
        return CoordCheckSetup(
            init=lambda key: linen_adapter.init(plan, model, key, inputs)["params"],
            forward=linen_forward(apply, loss_fn),
            optimizer=lambda lr: plan.optimizer(learning_rate=lr, **optimizer_kwargs),
        )

    return setup


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32))))


def _stream(acts: Mapping[str, jax.Array], depth: int, prefix: str, input_module: str) -> list[jax.Array]:
    """``[h_{-1}, h_0, ..., h_{L-1}]``: the input module's output, then each block's."""
    names = [input_module, *(f"{prefix}{i}" for i in range(depth))]
    missing = [n for n in names if n not in acts]
    if missing:
        raise ValueError(f"depth_check: the forward pass recorded no output for modules {missing[:3]}.")
    return [acts[n] for n in names]


def _measure(s: CoordCheckSetup, depth: int, steps: int, lr: float, prefix: str, input_module: str):
    tx = s.optimizer(lr)
    train_step = make_train_step(lambda p, b: (s.forward(p, b)[0], {}), tx)

    def run(key: jax.Array, batch: Any) -> dict[str, jax.Array]:
        params = s.init(key)
        state = jax.lax.scan(
            lambda st, _: (train_step(st, batch)[0], None), create_train_state(params, tx), length=steps
        )[0]
        before = _stream(s.forward(params, batch)[1], depth, prefix, input_module)
        after = _stream(s.forward(state.params, batch)[1], depth, prefix, input_module)
        delta = [a - b for a, b in zip(after, before)]
        stream = lambda p: jnp.stack(_stream(s.forward(p, batch)[1], depth, prefix, input_module)[1:])
        return {
            "rms": jnp.stack([_rms(h) for h in before[1:]]),
            "delta_rms": jnp.stack([_rms(d) for d in delta[1:]]),
            "update_rms": jnp.stack([_rms(d - d_prev) for d_prev, d in zip(delta[:-1], delta[1:])]),
            "nonlinear_fraction": _nonlinear_fraction(stream, params, state.params, depth, prefix),
        }

    return run


def _block_masks(params: Any, depth: int, prefix: str) -> Any:
    """Per leaf a ``(depth,)`` vector: 1 at block ``i`` if the leaf lies in module ``<prefix><i>``."""

    def mask(path: tuple, leaf: jax.Array) -> jax.Array:
        name = getattr(path[0], "key", None)
        return jnp.array([float(name == f"{prefix}{i}") for i in range(depth)], leaf.dtype)

    return jax.tree_util.tree_map_with_path(mask, params)


def _nonlinear_fraction(
    stream: Callable[[Any], jax.Array], init: Any, trained: Any, depth: int, prefix: str
) -> jax.Array:
    """``(depth,)``: block ``i``'s ``RMS(Δ_i - J_i Δθ_i) / RMS(Δ_i)`` (module docstring), one vmapped
    program over the blocks."""
    moved = jax.tree.map(jnp.subtract, trained, init)

    def one(mask: Any, index: jax.Array) -> jax.Array:
        direction = jax.tree.map(jnp.multiply, moved, mask)
        h_i = lambda t: stream(jax.tree.map(lambda p, d: p + t * d, init, direction))[index]
        start, linear = jax.jvp(h_i, (jnp.float32(0.0),), (jnp.float32(1.0),))
        change = h_i(jnp.float32(1.0)) - start
        scale = _rms(change)
        return jnp.where(scale > 0, _rms(change - linear) / jnp.where(scale > 0, scale, 1.0), 0.0)

    return jax.vmap(one)(_block_masks(init, depth, prefix), jnp.arange(depth))


def depth_check(
    setup: Callable[[int], CoordCheckSetup],
    depths: Sequence[int],
    batch: Any,
    *,
    steps: int = 3,
    learning_rate: float = 1e-2,
    seeds: Sequence[int] = (0,),
    label: str = "",
    block_prefix: str = "block_",
    input_module: str = "embed",
) -> list[dict[str, Any]]:
    """Per seed, depth and block: ``rms``, ``delta_rms``, ``update_rms`` and ``nonlinear_fraction``
    after ``steps`` updates (module docstring) on one repeated batch, from the same seeds at every
    depth (the seeds of one depth run as one vmapped program).

    Returns records ``{"label", "seed", "depth", "block", <measurements>}`` (``block`` the index
    ``i``), ordered by depth, seed and block. A ``ValueError`` names bad depths / seeds / steps /
    learning rate, a block the forward pass did not record, or a non-finite measurement.
    """
    depths = check_widths(depths, "depths")
    seeds = list(seeds)
    if (
        not seeds
        or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise ValueError(f"seeds must be distinct integers, got {seeds!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {learning_rate!r}.")
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    records = []
    for depth in depths:
        run = _measure(setup(depth), depth, steps, learning_rate, block_prefix, input_module)
        values = jax.device_get(jax.jit(jax.vmap(run, in_axes=(0, None)))(keys, batch))
        for j, seed in enumerate(seeds):
            for i in range(depth):
                row = {k: float(values[k][j, i]) for k in DEPTH_RECORD_KEYS[4:]}
                bad = [k for k, v in row.items() if not math.isfinite(v)]
                if bad:
                    raise ValueError(
                        f"depth_check: block {i} at depth {depth}, seed {seed}: {bad} not finite ({row})."
                    )
                records.append({"label": label, "seed": seed, "depth": int(depth), "block": i, **row})
    return records


def depth_check_summary(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per label: the log-log slope against depth of the last block's ``rms`` and ``delta_rms`` and of
    the mean ``update_rms`` over blocks, with their values at each depth (means over the seeds).

    A depth rule that transfers keeps ``delta_slope`` near 0; CompleteP's ``update_slope`` is near
    ``-1`` (each block ``Θ(1/L)``); width-only muP has ``delta_slope > 0``. ``mean_nonlinear_fraction``
    (the blocks' mean) and its ``nonlinear_slope``: near 0 for CompleteP, negative when the blocks turn
    lazy with depth.
    """
    by_label: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for r in records:
        missing = [k for k in DEPTH_RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"depth_check_summary: record {dict(r)} lacks keys {missing}.")
        by_label.setdefault(r["label"], {}).setdefault(r["depth"], []).append(r)
    rows = []
    for label, by_depth in by_label.items():
        depths = sorted(by_depth)
        last_block = {d: max(r["block"] for r in by_depth[d]) for d in depths}
        last = [[r for r in by_depth[d] if r["block"] == last_block[d]] for d in depths]
        final_rms = [float(np.mean([r["rms"] for r in rows_d])) for rows_d in last]
        final_delta = [float(np.mean([r["delta_rms"] for r in rows_d])) for rows_d in last]
        mean_update = [float(np.mean([r["update_rms"] for r in by_depth[d]])) for d in depths]
        nonlinear = [float(np.mean([r["nonlinear_fraction"] for r in by_depth[d]])) for d in depths]
        rows.append(
            dict(
                label=label,
                depths=depths,
                final_rms=final_rms,
                final_delta_rms=final_delta,
                mean_update_rms=mean_update,
                mean_nonlinear_fraction=nonlinear,
                rms_slope=loglog_slope(depths, final_rms),
                delta_slope=loglog_slope(depths, final_delta),
                update_slope=loglog_slope(depths, mean_update),
                nonlinear_slope=loglog_slope(depths, nonlinear),
            )
        )
    return rows

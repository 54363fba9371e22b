"""Coordinate check: the size of every module's output across widths over the first steps of training.

Tensor Programs V's test (Yang et al., 2022, arXiv 2203.03466; ``microsoft/mup``'s
``get_coord_data``), stated in ``docs/reference.md`` §6: repeat one fixed batch and record
``l1 = mean |y|`` of every module's output at steps ``t = 1 .. T`` (``t = 1`` at init), then step.
Flat curves in width mean width-independent feature learning (muP); SP with one global LR grows.

:func:`coord_check` runs it for any model given as a :class:`CoordCheckSetup` factory
(:mod:`paramlab.diagnostics.setups` builds them for Linen and NNX models under a plan), training with
:func:`paramlab.train.make_train_step`; :func:`coord_check_summary` fits each module's log-log slope
of ``l1`` against width and its max / min ratio across widths, per step.
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

from paramlab.optim.common import check_widths
from paramlab.train import create_train_state, make_train_step
from paramlab.train.run_once import (
    FAST_CPU_COMPILE,
)  # a coordinate check compiles per width, runs a few steps

__all__ = [
    "FAST_CPU_COMPILE",
    "RECORD_KEYS",
    "CoordCheckSetup",
    "coord_check",
    "coord_check_summary",
    "loglog_slope",
]

RECORD_KEYS = ("parametrization", "optimizer", "width", "step", "module", "l1")

_L1 = "l1/"  # prefix of the recorded activations among the train step's metrics

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


def _run(
    s: CoordCheckSetup,
    tx: optax.GradientTransformation,
    steps: int,
    compiler_options: Mapping[str, Any] | None,
) -> Callable[[jax.Array, Any], dict[str, jax.Array]]:
    """``(key, batch) -> {module: l1 at steps 1..steps}``: init and every step as one compiled program.

    The step is :func:`paramlab.train.make_train_step`'s, whose auxiliary metrics come from the
    forward pass before the update: step ``t``'s activations are those at the parameters after
    ``t - 1`` updates.
    """

    def loss_fn(params: Any, batch: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        loss, acts = s.forward(params, batch)
        return loss, {_L1 + name: jnp.mean(jnp.abs(x.astype(jnp.float32))) for name, x in acts.items()}

    train_step = make_train_step(loss_fn, tx)

    def run(key: jax.Array, batch: Any) -> dict[str, jax.Array]:
        def step(state, _):
            state, metrics = train_step(state, batch)
            return state, {k[len(_L1) :]: v for k, v in metrics.items() if k.startswith(_L1)}

        return jax.lax.scan(step, create_train_state(s.init(key), tx), length=steps)[1]

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

    Returns records ``{"parametrization", "optimizer", "width", "step", "module", "l1"}`` ordered by
    width, step, module. A ``ValueError`` names a bad ``widths`` / ``steps`` / ``learning_rate``, or a
    width whose forward pass records no module or a non-finite value.
    """
    widths = check_widths(widths)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {learning_rate!r}.")
    labels = {"parametrization": parametrization, "optimizer": optimizer}
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
                records.append({**labels, "width": int(width), "step": t, "module": module, "l1": value})
    return records


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

"""Does the model's own initializer follow the convention the plan rescales from?

A plan multiplies each parameter's own init by ``s = S mu_in^(1/2) f_b`` (``docs/reference.md`` §7): it
assumes the own init has variance ``1 / fan_in`` (lecun), so a width-independent std for an embedding,
whose fan-in (the vocabulary) does not grow. An initializer that already scales with width, such as
Flax's default ``nn.Embed`` / ``nnx.Embed`` (std ``1 / sqrt(features)``), is then scaled twice and the
parametrization silently breaks. :func:`check_own_init` initializes the model at the base and delta
widths (the small proxies) and compares every parameter's std ratio with the assumed one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import linen, nnx

from paramlab.optim.common import flatten_with_paths
from paramlab.parametrization.plan import Plan

__all__ = ["OwnInitWarning", "check_own_init"]


class OwnInitWarning(UserWarning):
    """A parameter's own initializer does not follow the plan's convention."""


def check_own_init(
    make_model: Callable[[Any], Any],
    plan: Plan,
    *,
    base: Any,
    delta: Any,
    inputs: tuple[Any, ...] = (),
    tolerance: float = 0.25,
    warn: bool = True,
) -> list[str]:
    """One message per parameter whose own init's std ratio (delta / base) is not ``fan-in ratio^-1/2``.

    ``make_model``, ``base``, ``delta`` and ``inputs`` are :func:`make_plan`'s (Linen needs ``inputs``).
    A ratio within a factor ``1 + tolerance`` of the assumed one passes; parameters that start constant
    (zeros, ones) are skipped. With ``warn`` each message is also an :class:`OwnInitWarning`.
    """
    at_base, at_delta = (_own_init(make_model, w, inputs) for w in (base, delta))
    messages = []
    for path, spec in plan.specs.items():
        b, d = at_base.get(path), at_delta.get(path)
        if b is None or d is None or np.std(b) == 0 or np.std(d) == 0:
            continue
        fan_in_ratio = math.prod(np.shape(d)[a] / np.shape(b)[a] for a in spec.fan_in)
        expected = fan_in_ratio**-0.5
        measured = float(np.std(d) / np.std(b))
        if abs(math.log(measured / expected)) > math.log1p(tolerance):
            messages.append(
                f"parameter {path} ({spec.role}): its own init's std changes {measured:.3g}x from the base "
                f"to the delta width, but the plan assumes {expected:.3g}x (variance 1/fan_in; constant for "
                "an embedding), so the plan scales it twice. Use an initializer of that convention (e.g. "
                "nn.initializers.normal(1.0) for embedding tables)."
            )
    if warn:
        for message in messages:
            warnings.warn(message, OwnInitWarning, stacklevel=2)
    return messages


def _own_init(make_model: Callable[[Any], Any], widths: Any, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """``{path: array}`` of the model's own initial parameters at ``widths``."""
    model = make_model(widths)
    if isinstance(model, linen.Module):
        params = linen.meta.unbox(model.init(jax.random.key(0), *inputs)["params"])
    else:
        params = nnx.state(model, nnx.Param)
    return {path: np.asarray(leaf) for path, leaf in flatten_with_paths(params)}

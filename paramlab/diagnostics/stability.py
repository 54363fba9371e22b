"""Small-scale proxies for training instabilities (Wortsman et al. 2023; ``docs/reference.md`` §8).

A model records its largest attention logits and output logit in the ``"diagnostics"`` collection
(:mod:`paramlab.models.probes`); :func:`apply_with_stability` runs it with that collection and returns
them as scalar metrics a train step logs beside the loss:

- ``attention_logit/<module path>``: ``max |s q·k|`` of one attention layer (a scanned stack of layers
  gives one metric per layer, ``<module path>/<i>``), and ``attention_logit/max`` over every layer;
- ``output_logit``: ``max |logit|`` of the model's output.

At a high learning rate the attention logits of a model without qk-layernorm grow by orders of
magnitude before its loss diverges; with qk-layernorm they stay bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from paramlab.models.probes import DIAGNOSTICS
from paramlab.optim.common import flatten_with_paths

__all__ = ["apply_with_stability", "stability_metrics"]


def stability_metrics(diagnostics: Mapping[str, Any]) -> dict[str, jax.Array]:
    """The scalar metrics (module docstring) of a model's ``"diagnostics"`` collection."""
    metrics: dict[str, jax.Array] = {}
    for path, value in flatten_with_paths(dict(diagnostics), DIAGNOSTICS):
        module, _, name = path.rpartition("/")
        value = jnp.asarray(value, jnp.float32)
        key = f"{name}/{module}" if module else name
        if value.ndim == 0:
            metrics[key] = value
        else:  # one value per layer of a scanned stack
            metrics.update({f"{key}/{i}": v for i, v in enumerate(value.reshape(-1))})
    layers = [v for k, v in metrics.items() if k.startswith("attention_logit/")]
    if layers:
        metrics["attention_logit/max"] = jnp.max(jnp.stack(layers))
    return metrics


def apply_with_stability(apply_fn: Callable[..., Any]) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
    """``fn(variables, *args, **kwargs) -> (output, stability metrics)`` for a Linen ``apply`` (or a
    plan's ``wrap_apply`` of one): the same output, with ``mutable=["diagnostics"]`` read back."""

    def apply(variables: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, jax.Array]]:
        if "mutable" in kwargs:
            raise ValueError("apply_with_stability sets mutable itself; do not pass it.")
        output, collections = apply_fn(variables, *args, mutable=[DIAGNOSTICS], **kwargs)
        return output, stability_metrics(collections.get(DIAGNOSTICS, {}))

    return apply

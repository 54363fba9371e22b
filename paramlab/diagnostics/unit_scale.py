"""How far from unit scale a model's tensors sit: the RMS of every activation, weight and gradient.

u-muP's promise (Blake et al. 2024; ``docs/reference.md`` §13) is that activations, weights and
gradients all start near RMS 1 and stay there, so a low-precision format's range covers them.
:func:`tensor_rms` measures the three families on one batch: the output of every module call
(``capture_intermediates``), every stored parameter of rank >= 2, and the loss's gradient with respect
to each; :func:`scale_probe` is the same as a sweep probe (``run_sweep(probe_fn=...)``) giving, per
family, the smallest, median and largest RMS over its tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["FAMILIES", "scale_probe", "tensor_rms"]

FAMILIES = ("activation", "weight", "gradient")


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32))))


def tensor_rms(
    apply_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], Any], params: Any, inputs: Any, batch: Any
) -> dict[str, dict[str, jax.Array]]:
    """``{family: {name: RMS}}`` for the activations (module outputs of ``apply_fn(params, inputs,
    capture_intermediates=True, mutable=["intermediates"])``), the weights (parameters of rank >= 2)
    and the gradients of ``loss_fn(params, batch)`` (its first output when it returns a pair)."""
    _, state = apply_fn(params, inputs, capture_intermediates=True, mutable=["intermediates"])
    named = lambda tree: {
        jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    activations = {
        k: _rms(x) for k, x in named(state["intermediates"]).items() if jnp.issubdtype(x.dtype, jnp.floating)
    }
    scalar_loss = lambda p: (lambda out: out[0] if isinstance(out, tuple) else out)(loss_fn(p, batch))
    grads = jax.grad(scalar_loss)(params)
    matrices = lambda tree: {k: _rms(x) for k, x in named(tree).items() if jnp.ndim(x) >= 2}
    return {"activation": activations, "weight": matrices(params), "gradient": matrices(grads)}


def scale_probe(
    apply_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], Any], inputs: Any, batch: Any
) -> Callable[[Any, Any], dict[str, jax.Array]]:
    """``(params, initial_params) -> {"rms/<family>/<min|median|max>": value}`` on a fixed batch."""

    def probe(params: Any, initial_params: Any) -> dict[str, jax.Array]:
        del initial_params
        out = {}
        for family, values in tensor_rms(apply_fn, loss_fn, params, inputs, batch).items():
            stacked = jnp.stack(list(values.values()))
            out.update(
                {
                    f"rms/{family}/min": jnp.min(stacked),
                    f"rms/{family}/median": jnp.median(stacked),
                    f"rms/{family}/max": jnp.max(stacked),
                }
            )
        return out

    return probe

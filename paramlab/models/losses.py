"""Language-model losses."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from paramlab.optim.common import check_non_negative

__all__ = ["cross_entropy"]


def cross_entropy(
    logits: jax.Array,
    targets: jax.Array,
    *,
    z_loss: float = 0.0,
    weights: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean next-token cross-entropy (nats) with an optional z-loss.

    With ``log Z = logsumexp(logits)`` per position,
    ``loss = mean(log Z - logits[target]) + z_loss * mean((log Z)^2)``. The z-loss term keeps the
    softmax normaliser near 1 (PaLM, Chowdhery et al. 2022, used ``z_loss = 1e-4``). Means are over
    all positions, or weighted by ``weights`` (e.g. a 0/1 padding mask). Computed in float32.

    Args:
      logits: ``(..., vocab)``.
      targets: integer ids of shape ``logits.shape[:-1]``.
      z_loss: coefficient of the ``(log Z)^2`` term (>= 0).
      weights: optional per-position weights of shape ``targets.shape``.

    Returns:
      ``(loss, metrics)`` with metrics ``cross_entropy`` (nats per token), ``log_z_squared`` (the
      unscaled mean ``(log Z)^2``) and ``accuracy`` (argmax == target).
    """
    check_non_negative(z_loss, "z_loss")
    chex.assert_shape(targets, logits.shape[:-1])
    chex.assert_type(targets, int)
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    if weights is None:
        weights = jnp.ones_like(log_z)
    chex.assert_shape(weights, targets.shape)
    weights = weights.astype(jnp.float32)
    mean = lambda x: jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1e-12)
    ce = mean(log_z - target_logits)
    log_z_squared = mean(jnp.square(log_z))
    accuracy = mean((jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32))
    loss = ce + z_loss * log_z_squared
    return loss, {"cross_entropy": ce, "log_z_squared": log_z_squared, "accuracy": accuracy}

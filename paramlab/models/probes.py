"""What a model records for the instability diagnostics, in its ``"diagnostics"`` collection.

Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training instabilities";
``docs/reference.md`` §8) watch two quantities that grow before a loss diverges: the largest attention
logit ``max |s q·k|`` of each layer (``s`` the logit scale; qk-layernorm bounds it) and the output
logits (z-loss keeps their normaliser near 1). A model records them with :func:`record` only when the
caller asks for the collection (``apply(..., mutable=["diagnostics"])``), so a plain forward pass
computes nothing extra; :mod:`paramlab.diagnostics.stability` reads them back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

__all__ = ["DIAGNOSTICS", "max_attention_logit", "max_output_logit", "record"]

DIAGNOSTICS = "diagnostics"


def max_attention_logit(q: jax.Array, k: jax.Array, scale: float, causal: bool = True) -> jax.Array:
    """``max |scale * q_i · k_j|`` over the batch, the heads and the attended pairs ``j <= i``
    (every pair without ``causal``); ``q, k``: ``(batch, seq, heads, d_head)``. float32."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
    if causal:
        t_q, t_k = q.shape[1], k.shape[1]
        logits = jnp.where(jnp.tril(jnp.ones((t_q, t_k), bool)), logits, 0.0)
    return jnp.max(jnp.abs(logits))


def max_output_logit(logits: jax.Array) -> jax.Array:
    """``max |logit|`` over every position and class (float32)."""
    return jnp.max(jnp.abs(logits.astype(jnp.float32)))


def record(module: nn.Module, name: str, compute) -> None:
    """Store ``compute()`` as ``name`` in ``module``'s diagnostics if the caller collects them (never
    while initializing: the variables a model is created with hold parameters only)."""
    if module.is_mutable_collection(DIAGNOSTICS) and not module.is_initializing():
        module.sow(DIAGNOSTICS, name, compute(), reduce_fn=lambda _, value: value, init_fn=lambda: 0.0)

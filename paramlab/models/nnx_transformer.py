"""The decoder-only Transformer of :mod:`paramlab.models.transformer` in Flax NNX.

Same :class:`~paramlab.models.TransformerConfig`, same parameter paths (``embed/embedding``,
``block_0/attn/q/kernel``, …, ``readout/kernel``), shapes, declared fan axes (``nnx.Param``
metadata) and initializers, and the same function given the same weights (tested equal), so one plan
serves both. Blocks are unrolled (``scan_layers`` and ``remat`` are options of the Linen model).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from paramlab.models.layers import activation_fn, rotary_tables, rotate
from paramlab.models.transformer import TransformerConfig, branch

__all__ = ["NNXTransformer"]

_LECUN = nnx.initializers.lecun_normal()
_ZEROS = nnx.initializers.zeros_init()


def _fan(fan_in: tuple[int, ...], fan_out: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {"fan_in": fan_in, "fan_out": fan_out}


def _norm(cfg: TransformerConfig, features: int, rngs: nnx.Rngs) -> nnx.Module:
    common = dict(epsilon=cfg.norm_eps, dtype=cfg.dtype, scale_metadata=_fan((), (0,)), rngs=rngs)
    if cfg.norm == "rms":
        return nnx.RMSNorm(features, **common)
    return nnx.LayerNorm(features, use_bias=cfg.use_bias, bias_metadata=_fan((), (0,)), **common)


def _linear(
    cfg: TransformerConfig,
    in_features: int | tuple[int, ...],
    out_features: int | tuple[int, ...],
    fan: tuple[tuple[int, ...], tuple[int, ...]],
    rngs: nnx.Rngs,
    zero: bool = False,
    axis: int | tuple[int, ...] = -1,
) -> nnx.LinearGeneral:
    out_axes = tuple(range(len(fan[0]), len(fan[0]) + len(fan[1])))
    return nnx.LinearGeneral(
        in_features,
        out_features,
        axis=axis,
        use_bias=cfg.use_bias,
        dtype=cfg.dtype,
        kernel_init=_ZEROS if zero else _LECUN,
        bias_init=_ZEROS,
        kernel_metadata=_fan(*fan),
        bias_metadata=_fan((), tuple(a - len(fan[0]) for a in out_axes)),
        rngs=rngs,
    )


class NNXAttention(nnx.Module):
    """Causal multi-head self-attention (``q``, ``k``, ``v``, ``o``; optional ``q_norm`` / ``k_norm``)."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        heads = (cfg.n_heads, cfg.d_head)
        fan = ((0,), (1, 2))
        self.q = _linear(cfg, cfg.d_model, heads, fan, rngs, zero=cfg.zero_init_query)
        self.k = _linear(cfg, cfg.d_model, heads, fan, rngs)
        self.v = _linear(cfg, cfg.d_model, heads, fan, rngs)
        self.o = _linear(cfg, heads, cfg.d_model, ((0, 1), (2,)), rngs, axis=(-2, -1))
        if cfg.qk_layernorm:
            self.q_norm = _norm(cfg, cfg.d_head, rngs)
            self.k_norm = _norm(cfg, cfg.d_head, rngs)

    def __call__(self, x: jax.Array, rotary: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        """``rotary``: :func:`~paramlab.models.layers.rotary_tables` (with ``positions="rotary"``)."""
        cfg = self.config
        b, t, _ = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)
        if cfg.qk_layernorm:
            q, k = self.q_norm(q), self.k_norm(k)
        if cfg.positions == "rotary":
            q, k = rotate(q, rotary), rotate(k, rotary)
        out = jax.nn.dot_product_attention(
            q,
            k,
            v,
            scale=cfg.attention_logit_scale,
            is_causal=True,
            implementation=cfg.attention_implementation,
        )
        out = self.o(out)
        chex.assert_shape(out, (b, t, cfg.d_model))
        return out


class NNXMlp(nnx.Module):
    """The block's feed-forward layer ``fc_out(act(fc_in(x)))``."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.activation = cfg.activation
        self.fc_in = _linear(cfg, cfg.d_model, cfg.d_ff, ((0,), (1,)), rngs)
        self.fc_out = _linear(cfg, cfg.d_ff, cfg.d_model, ((0,), (1,)), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc_out(activation_fn(self.activation)(self.fc_in(x)))


class NNXBlock(nnx.Module):
    """A pre-norm block ``x + m f(norm(x))`` (attention, then MLP)."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.branch_multiplier = cfg.branch_multiplier
        self.attn_norm = _norm(cfg, cfg.d_model, rngs)
        self.attn = NNXAttention(cfg, rngs=rngs)
        self.mlp_norm = _norm(cfg, cfg.d_model, rngs)
        self.mlp = NNXMlp(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, rotary: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        m = self.branch_multiplier
        x = x + branch(m, self.attn(self.attn_norm(x), rotary))
        return x + branch(m, self.mlp(self.mlp_norm(x)))


class NNXTransformer(nnx.Module):
    """Decoder-only Transformer: int tokens ``(batch, seq)`` -> float32 logits ``(batch, seq, vocab)``."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        if cfg.scan_layers or cfg.remat:
            raise ValueError("NNXTransformer unrolls its blocks: scan_layers / remat are Linen options.")
        self.config = cfg
        table = nnx.initializers.normal(stddev=1.0)
        table_fan = _fan((0,), (1,))
        self.embed = nnx.Embed(
            cfg.vocab_size,
            cfg.d_model,
            dtype=cfg.dtype,
            embedding_init=table,
            embedding_metadata=table_fan,
            rngs=rngs,
        )
        if cfg.positions == "learned":
            self.pos_embed = nnx.Embed(
                cfg.max_len,
                cfg.d_model,
                dtype=cfg.dtype,
                embedding_init=table,
                embedding_metadata=table_fan,
                rngs=rngs,
            )
        for i in range(cfg.n_layers):
            setattr(self, f"block_{i}", NNXBlock(cfg, rngs=rngs))  # the Linen model's block names
        self.final_norm = _norm(cfg, cfg.d_model, rngs)
        if not cfg.tied_embeddings:
            self.readout = _linear(
                cfg, cfg.d_model, cfg.vocab_size, ((0,), (1,)), rngs, zero=cfg.zero_init_readout
            )

    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.config
        chex.assert_rank(tokens, 2)
        chex.assert_type(tokens, int)
        b, t = tokens.shape
        if cfg.positions == "learned" and t > cfg.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len} (learned positions).")
        x = self.embed(tokens)
        if cfg.positions == "learned":
            x = x + self.pos_embed(jnp.arange(t))[None]
        rotary = (
            rotary_tables(jnp.arange(t), cfg.d_head, cfg.rope_theta) if cfg.positions == "rotary" else None
        )
        for i in range(cfg.n_layers):
            x = getattr(self, f"block_{i}")(x, rotary)
        x = self.final_norm(x)
        logits = self.embed.attend(x) if cfg.tied_embeddings else self.readout(x)
        logits = logits.astype(jnp.float32)
        if cfg.logits_multiplier != 1.0:
            logits = logits * cfg.logits_multiplier
        chex.assert_shape(logits, (b, t, cfg.vocab_size))
        return logits

"""A decoder-only Transformer in the NanoDO style (Flax Linen), ready for width parametrizations.

Pre-norm blocks ``x += attn(norm(x)); x += mlp(norm(x))``, a final norm and a readout. Its parameters,
their declared fan axes and initializers are tabulated in ``docs/reference.md`` §9: every own
initializer has variance ``1 / fan_in`` (lecun) or, for the tables whose fan-in is the vocabulary /
context length, a width-independent std, and the parametrization engine rescales from there.

Tied embeddings compute ``logits = h @ embed.T``; the readout factor cannot multiply the shared table,
so a plan sets :attr:`TransformerConfig.logits_multiplier` (``Plan.tied_readout_multiplier``).
Attention is ``softmax(scale * q k^T) v`` with :attr:`TransformerConfig.attention_logit_scale`;
``d_model`` and ``n_heads * d_head`` are independent sizes, so a plan may grow heads, head width or
both. Coordinate checks read ``capture_intermediates`` paths (``block_0/attn/q/__call__``, ...).
Applied with ``mutable=["diagnostics"]`` it also records each layer's largest attention logit and the
largest output logit (:mod:`paramlab.models.probes`).

**Depth.** Each block adds ``branch_multiplier * f(norm(x))`` (``Plan.branch_multiplier``, 1 exactly
leaves the function unchanged). ``scan_layers`` runs the blocks with ``nn.scan``: one compiled block,
parameters stacked on a leading layer axis under ``blocks/`` (a *stacked* fan axis, so the engine
reads it as a depth, never a width). ``remat`` recomputes each block's activations in the backward
pass (``jax.checkpoint`` with the policy :attr:`TransformerConfig.remat_policy`).
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
from flax import linen as nn

from paramlab.models.layers import (
    COMPUTE_DTYPES,
    activation_fn,
    check_positive_int,
    embedding_init,
    kernel_init,
    ones_init,
    rotary_tables,
    rotate,
    zeros_init,
)
from paramlab.models.probes import DIAGNOSTICS, max_attention_logit, max_output_logit, record
from paramlab.models.unit_scaling import (
    check_matmul_format,
    residual_add,
    residual_taus,
    simulated_dot_general,
    unit_activation_scale,
)
from paramlab.optim.common import check_choice

__all__ = ["REMAT_POLICIES", "Transformer", "TransformerConfig", "stack_blocks"]

WIDTH_FIELDS = ("d_model", "d_ff", "n_heads", "d_head")
# jax.checkpoint_policies a block may be rematerialised with: "nothing_saveable" keeps only each
# block's input (least memory, one more forward pass); the "dots" policies keep matmul outputs
REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Sizes and options of a :class:`Transformer` (JSON-able: ``dataclasses.asdict``).

    Attributes:
      vocab_size: number of token ids (256 for byte-level data).
      d_model: residual-stream width.
      n_layers: number of blocks.
      n_heads: attention heads per block.
      d_head: width of each head (need not satisfy ``n_heads * d_head == d_model``).
      d_ff: hidden width of each block's MLP.
      max_len: longest sequence; enforced for ``positions="learned"`` (rotary has no table).
      norm: ``"rms"`` (RMSNorm) or ``"layer"`` (LayerNorm, with a bias iff ``use_bias``).
      qk_layernorm: normalise queries and keys per head (same norm kind) before the dot product.
      positions: ``"rotary"`` or ``"learned"`` (an embedding table added to the token embedding).
      tied_embeddings: readout with the token embedding's transpose instead of a ``readout`` layer.
      use_bias: biases in every Dense layer (and LayerNorm).
      activation: the MLP's activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.
      attention_scale: ``"sqrt"`` (``1/sqrt(d_head)``) or ``"linear"`` (``1/d_head``).
      attention_multiplier: constant factor on the attention scale.
      attention_base_d_head: with ``attention_scale="linear"``, the head width at which the linear
        scale equals ``1/sqrt(d_head)`` (the tuned proxy's); ``None``: plain ``1/d_head``.
      logits_multiplier: constant factor on the logits (a tied-embedding parametrization sets it).
      zero_init_readout: zero the readout kernel (untied only).
      zero_init_query: zero the query kernel.
      attention_implementation: ``"xla"`` (any device) or ``"cudnn"`` (NVIDIA GPUs, fp16/bf16
        compute: a fused flash-attention kernel), passed to ``jax.nn.dot_product_attention``.
      rope_theta: rotary base wavelength.
      norm_eps: epsilon of every norm.
      dtype: compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); parameters stay
        float32 and logits are returned in float32.
      branch_multiplier: factor on every residual branch (a depth parametrization sets it).
      scan_layers: run the blocks with ``nn.scan`` (parameters stacked under ``blocks/``).
      remat: rematerialise each block in the backward pass.
      remat_policy: the ``jax.checkpoint_policies`` name used with ``remat`` (:data:`REMAT_POLICIES`).
      unit_scaling: u-muP's unit-scaled ops (:mod:`paramlab.models.unit_scaling`): the MLP's activation
        divided by its RMS at a unit Gaussian input, and variance-preserving residual adds
        ``(x + tau f) / sqrt(1 + tau^2)``; train it with ``Parametrization("umup", ...)``.
      residual_mult, residual_attn_ratio: u-muP's residual hyperparameters (with ``unit_scaling``).
      matmul_format: ``None`` or a format of :data:`~paramlab.models.unit_scaling.MATMUL_FORMATS`
        (``"float8_e4m3fn"``, ...): both inputs of every Dense layer are cast to it and back
        (simulated low precision, straight-through gradients).
    """

    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 32
    d_ff: int = 512
    max_len: int = 256
    norm: str = "rms"
    qk_layernorm: bool = False
    positions: str = "rotary"
    tied_embeddings: bool = False
    use_bias: bool = False
    activation: str = "gelu"
    attention_scale: str = "sqrt"
    attention_multiplier: float = 1.0
    attention_base_d_head: int | None = None
    logits_multiplier: float = 1.0
    zero_init_readout: bool = False
    zero_init_query: bool = False
    attention_implementation: str = "xla"
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    dtype: str = "float32"
    branch_multiplier: float = 1.0
    scan_layers: bool = False
    remat: bool = False
    remat_policy: str = "nothing_saveable"
    unit_scaling: bool = False
    residual_mult: float = 1.0
    residual_attn_ratio: float = 1.0
    matmul_format: str | None = None

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_head", "d_ff", "max_len"):
            check_positive_int(getattr(self, name), name)
        check_choice(self.norm, ("rms", "layer"), "norm")
        check_choice(self.positions, ("rotary", "learned"), "positions")
        check_choice(self.attention_scale, ("sqrt", "linear"), "attention_scale")
        check_choice(self.attention_implementation, ("xla", "cudnn"), "attention_implementation")
        activation_fn(self.activation)
        if self.attention_base_d_head is not None:
            check_positive_int(self.attention_base_d_head, "attention_base_d_head")
        check_choice(self.remat_policy, REMAT_POLICIES, "remat_policy")
        for flag in ("scan_layers", "remat", "unit_scaling"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}.")
        for name in (
            "attention_multiplier",
            "logits_multiplier",
            "rope_theta",
            "norm_eps",
            "branch_multiplier",
            "residual_mult",
            "residual_attn_ratio",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if self.positions == "rotary" and self.d_head % 2:
            raise ValueError(f"d_head must be even for rotary positions, got {self.d_head}.")
        if self.tied_embeddings and self.zero_init_readout:
            raise ValueError(
                "zero_init_readout needs tied_embeddings=False (a zero tied table zeroes the input)."
            )
        if self.unit_scaling and self.branch_multiplier != 1.0:
            raise ValueError(
                "unit_scaling sets each residual branch's weight itself (tau); branch_multiplier must be 1, "
                f"got {self.branch_multiplier!r}."
            )
        check_matmul_format(self.matmul_format)
        dtype = jnp.dtype(self.dtype).name
        check_choice(dtype, COMPUTE_DTYPES, "dtype")
        object.__setattr__(self, "dtype", dtype)

    def with_width(
        self,
        *,
        d_model: int | None = None,
        d_ff: int | None = None,
        n_heads: int | None = None,
        d_head: int | None = None,
    ) -> TransformerConfig:
        """A copy with the given width fields changed (``None``: unchanged); re-validated."""
        changes = dict(d_model=d_model, d_ff=d_ff, n_heads=n_heads, d_head=d_head)
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def attention_logit_scale(self) -> float:
        """The factor applied to ``q . k`` before the softmax."""
        if self.attention_scale == "sqrt":
            return self.attention_multiplier / self.d_head**0.5
        return self.attention_multiplier * math.sqrt(self.attention_base_d_head or 1) / self.d_head


def _dot_general(cfg: TransformerConfig):
    """The Dense layers' matmul: XLA's, or with inputs cast to ``cfg.matmul_format``."""
    return jax.lax.dot_general if cfg.matmul_format is None else simulated_dot_general(cfg.matmul_format)


def _norm(cfg: TransformerConfig, name: str) -> nn.Module:
    common = dict(epsilon=cfg.norm_eps, dtype=cfg.dtype, scale_init=ones_init((0,)), name=name)
    if cfg.norm == "rms":
        return nn.RMSNorm(**common)
    return nn.LayerNorm(use_bias=cfg.use_bias, bias_init=zeros_init((0,)), **common)


class Attention(nn.Module):
    """Causal multi-head self-attention with 3-D ``DenseGeneral`` kernels."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: jax.Array, rotary: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        """``rotary``: :func:`~paramlab.models.layers.rotary_tables` (with ``positions="rotary"``)."""
        cfg = self.config
        b, t, _ = x.shape
        heads = (cfg.n_heads, cfg.d_head)

        def project(name: str, zero: bool = False) -> jax.Array:
            return nn.DenseGeneral(
                heads,
                use_bias=cfg.use_bias,
                kernel_init=kernel_init((0,), (1, 2), zero=zero),
                bias_init=zeros_init((0, 1)),
                dtype=cfg.dtype,
                dot_general=_dot_general(cfg),
                name=name,
            )(x)

        q, k, v = project("q", zero=cfg.zero_init_query), project("k"), project("v")
        if cfg.qk_layernorm:
            q, k = _norm(cfg, "q_norm")(q), _norm(cfg, "k_norm")(k)
        if cfg.positions == "rotary":
            q, k = rotate(q, rotary), rotate(k, rotary)
        chex.assert_shape((q, k, v), (b, t, *heads))
        record(self, "attention_logit", lambda: max_attention_logit(q, k, cfg.attention_logit_scale))
        out = jax.nn.dot_product_attention(
            q,
            k,
            v,
            scale=cfg.attention_logit_scale,
            is_causal=True,
            implementation=cfg.attention_implementation,
        )
        out = nn.DenseGeneral(
            cfg.d_model,
            axis=(-2, -1),
            use_bias=cfg.use_bias,
            kernel_init=kernel_init((0, 1), (2,)),
            bias_init=zeros_init((0,)),
            dtype=cfg.dtype,
            dot_general=_dot_general(cfg),
            name="o",
        )(out)
        chex.assert_shape(out, (b, t, cfg.d_model))
        return out


class Mlp(nn.Module):
    """The block's feed-forward layer ``fc_out(act(fc_in(x)))``."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        dense = lambda features, name: nn.Dense(
            features,
            use_bias=cfg.use_bias,
            kernel_init=kernel_init((0,), (1,)),
            bias_init=zeros_init((0,)),
            dtype=cfg.dtype,
            dot_general=_dot_general(cfg),
            name=name,
        )
        h = activation_fn(cfg.activation)(dense(cfg.d_ff, "fc_in")(x))
        if cfg.unit_scaling:
            h = h * jnp.asarray(unit_activation_scale(activation_fn(cfg.activation)), h.dtype)
        chex.assert_shape(h, (*x.shape[:-1], cfg.d_ff))
        return dense(cfg.d_model, "fc_out")(h)


def branch(multiplier: float, y: jax.Array) -> jax.Array:
    """A residual branch's output times its multiplier (untouched at exactly 1)."""
    return y if multiplier == 1.0 else y * jnp.asarray(multiplier, y.dtype)


class Block(nn.Module):
    """A pre-norm Transformer block ``x + m f(norm(x))``, twice (attention, MLP); with ``unit_scaling``
    ``(x + tau f(norm(x))) / sqrt(1 + tau^2)`` with ``taus = (tau_attn, tau_mlp)``.

    ``scanned``: the ``nn.scan`` signature ``(carry, taus, rotary) -> (carry, None)``.
    """

    config: TransformerConfig
    scanned: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, taus: jax.Array | None = None, rotary: tuple[jax.Array, jax.Array] | None = None
    ) -> jax.Array | tuple[jax.Array, None]:
        cfg = self.config
        sublayers = ((Attention, "attn", (rotary,)), (Mlp, "mlp", ()))
        for i, (module, name, extra_args) in enumerate(sublayers):
            y = module(cfg, name=name)(_norm(cfg, f"{name}_norm")(x), *extra_args)
            x = residual_add(x, y, taus[i]) if cfg.unit_scaling else x + branch(cfg.branch_multiplier, y)
        return (x, None) if self.scanned else x


def _blocks(cfg: TransformerConfig, x: jax.Array, rotary: tuple[jax.Array, jax.Array] | None) -> jax.Array:
    """All ``n_layers`` blocks: unrolled (``block_i``) or scanned (``blocks``), optionally remat-ed."""
    block = Block
    if cfg.remat:
        policy = getattr(jax.checkpoint_policies, cfg.remat_policy)
        block = nn.remat(Block, policy=policy, prevent_cse=not cfg.scan_layers)
    taus = None
    if cfg.unit_scaling:
        taus = jnp.asarray(residual_taus(cfg.n_layers, cfg.residual_mult, cfg.residual_attn_ratio), x.dtype)
    if not cfg.scan_layers:
        for i in range(cfg.n_layers):
            x = block(cfg, name=f"block_{i}")(x, None if taus is None else taus[i], rotary)
        return x
    scan = nn.scan(
        block,
        variable_axes={"params": 0, DIAGNOSTICS: 0},
        split_rngs={"params": True},
        in_axes=(0, nn.broadcast),
        length=cfg.n_layers,
    )
    x, _ = scan(cfg, scanned=True, name="blocks")(x, taus, rotary)
    return x


class Transformer(nn.Module):
    """Decoder-only Transformer: int tokens ``(batch, seq)`` -> float32 logits ``(batch, seq, vocab)``."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.config
        chex.assert_rank(tokens, 2)
        chex.assert_type(tokens, int)
        b, t = tokens.shape
        if cfg.positions == "learned" and t > cfg.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len} (learned positions).")
        embed = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=embedding_init(), dtype=cfg.dtype, name="embed"
        )
        x = embed(tokens)
        if cfg.positions == "learned":
            pos_embed = nn.Embed(
                cfg.max_len, cfg.d_model, embedding_init=embedding_init(), dtype=cfg.dtype, name="pos_embed"
            )
            x = x + pos_embed(jnp.arange(t))[None]
        rotary = None
        if cfg.positions == "rotary":
            rotary = rotary_tables(jnp.arange(t), cfg.d_head, cfg.rope_theta)
        x = _blocks(cfg, x, rotary)
        x = _norm(cfg, "final_norm")(x)
        if cfg.tied_embeddings:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(
                cfg.vocab_size,
                use_bias=cfg.use_bias,
                kernel_init=kernel_init((0,), (1,), zero=cfg.zero_init_readout),
                bias_init=zeros_init((0,)),
                dtype=cfg.dtype,
                dot_general=_dot_general(cfg),
                name="readout",
            )(x)
        logits = logits.astype(jnp.float32)
        if cfg.logits_multiplier != 1.0:
            logits = logits * cfg.logits_multiplier
        chex.assert_shape(logits, (b, t, cfg.vocab_size))
        record(self, "output_logit", lambda: max_output_logit(logits))
        return logits


def stack_blocks(params: dict, n_layers: int) -> dict:
    """Unrolled Transformer parameters (``block_i``) in the ``scan_layers`` layout (``blocks``)."""
    names = [f"block_{i}" for i in range(n_layers)]
    missing = [name for name in names if name not in params]
    if missing:
        raise ValueError(f"stack_blocks: no parameters {missing[:3]} (n_layers={n_layers}).")
    rest = {k: v for k, v in params.items() if k not in names}
    return {**rest, "blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *(params[n] for n in names))}

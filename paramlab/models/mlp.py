"""A multilayer perceptron, in Flax Linen (:class:`MLP`) and Flax NNX (:class:`NNXMLP`).

``depth`` hidden layers of ``width`` units::

    h_0 = act(x W_0 + b_0)                 dense_0:      (in_dim, width)   input weights
    h_i = act(h_{i-1} W_i + b_i)           dense_i:      (width, width)    hidden, i = 1 .. depth-1
    y   = h_{depth-1} W_r + b_r            readout:      (width, out_dim)  readout

Kernels are ``lecun_normal`` and declare fan-in ``(0,)`` / fan-out ``(1,)``; biases are zeros with
fan-out ``(0,)``. Both versions have the same parameter names (``dense_0/kernel``, ...,
``readout/bias``) and compute the same function given the same weights. :class:`ResidualMLP` is the
residual version whose depth a depth rule (``docs/reference.md`` §7) scales.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
from flax import linen as nn
from flax import nnx

from paramlab.models.layers import activation_fn, check_positive_int, kernel_init, zeros_init

__all__ = ["MLP", "MLPConfig", "NNXMLP", "ResidualMLP", "ResidualMLPConfig"]


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Sizes and options of an :class:`MLP` / :class:`NNXMLP`.

    Attributes:
      in_dim: input features.
      width: units per hidden layer (the dimension a parametrization scales).
      out_dim: output features.
      depth: number of hidden layers (>= 1).
      activation: ``"relu"``, ``"gelu"``, ``"silu"`` or ``"tanh"``.
      use_bias: add biases.
      zero_init_readout: initialise the readout kernel to zeros (muP's recommended option).
      weight_norm: wrap every Dense layer in Flax's ``nn.WeightNorm`` (Linen only): the kernel is the
        direction ``v`` and ``<layer>_weight_norm/<layer>/kernel/scale`` its per-unit gain ``g``
        (``docs/reference.md`` §7; :mod:`paramlab.parametrization.weight_norm`).
    """

    in_dim: int
    width: int
    out_dim: int
    depth: int = 2
    activation: str = "relu"
    use_bias: bool = True
    zero_init_readout: bool = False
    weight_norm: bool = False

    def __post_init__(self):
        for name in ("in_dim", "width", "out_dim", "depth"):
            check_positive_int(getattr(self, name), name)
        activation_fn(self.activation)
        if not isinstance(self.weight_norm, bool):
            raise ValueError(f"weight_norm must be a bool, got {self.weight_norm!r}.")

    def layer_dims(self) -> list[tuple[str, int, int]]:
        """``(name, fan_in, fan_out)`` of every Dense layer, input first."""
        dims = [("dense_0", self.in_dim, self.width)]
        dims += [(f"dense_{i}", self.width, self.width) for i in range(1, self.depth)]
        return dims + [("readout", self.width, self.out_dim)]


def _check_input(x: jax.Array, cfg: MLPConfig) -> None:
    if x.ndim == 0 or x.shape[-1] != cfg.in_dim:
        raise ValueError(f"MLP input of shape {x.shape} must end with in_dim={cfg.in_dim}.")


class MLP(nn.Module):
    """The Linen MLP; ``apply`` maps ``(..., in_dim)`` to ``(..., out_dim)``."""

    config: MLPConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        _check_input(x, cfg)
        act = activation_fn(cfg.activation)
        for name, _, fan_out in cfg.layer_dims():
            is_readout = name == "readout"
            zero = is_readout and cfg.zero_init_readout
            init = kernel_init((0,), (1,), zero=zero)
            if cfg.weight_norm:
                # WeightNorm names the gain after the kernel's leaf (.../value/scale for a boxed kernel
                # at init, .../scale once unboxed), so the kernel stays plain: default axes (0,), (1,)
                init = nn.initializers.zeros_init() if zero else nn.initializers.lecun_normal()
            dense = nn.Dense(
                fan_out,
                use_bias=cfg.use_bias,
                kernel_init=init,
                bias_init=zeros_init((0,)),
                name=name,
            )
            x = nn.WeightNorm(dense, name=f"{name}_weight_norm")(x) if cfg.weight_norm else dense(x)
            if not is_readout:
                x = act(x)
        chex.assert_axis_dimension(x, -1, cfg.out_dim)
        return x


class NNXMLP(nnx.Module):
    """The NNX MLP: the same architecture, parameter names and initializers as :class:`MLP`.

    Every ``nnx.Param`` carries ``fan_in`` / ``fan_out`` metadata.
    """

    def __init__(self, config: MLPConfig, *, rngs: nnx.Rngs):
        if config.weight_norm:
            raise ValueError("MLPConfig.weight_norm is a Linen option (flax.linen.WeightNorm); use MLP.")
        self.config = config
        self.layer_names = tuple(name for name, _, _ in config.layer_dims())
        for name, fan_in, fan_out in config.layer_dims():
            zero = name == "readout" and config.zero_init_readout
            init = nnx.initializers.zeros_init() if zero else nnx.initializers.lecun_normal()
            layer = nnx.Linear(
                fan_in,
                fan_out,
                use_bias=config.use_bias,
                kernel_init=init,
                bias_init=nnx.initializers.zeros_init(),
                kernel_metadata={"fan_in": (0,), "fan_out": (1,)},
                bias_metadata={"fan_in": (), "fan_out": (0,)},
                rngs=rngs,
            )
            setattr(self, name, layer)  # named like the Linen MLP's submodules

    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        _check_input(x, cfg)
        act = activation_fn(cfg.activation)
        for name in self.layer_names:
            x = getattr(self, name)(x)
            if name != "readout":
                x = act(x)
        chex.assert_axis_dimension(x, -1, cfg.out_dim)
        return x


@dataclasses.dataclass(frozen=True)
class ResidualMLPConfig:
    """Sizes and options of a :class:`ResidualMLP`.

    Attributes:
      in_dim, width, out_dim: input features, residual-stream width, output features.
      depth: number of residual blocks (>= 1).
      activation: the blocks' activation.
      branch_multiplier: the factor ``m_L`` on every branch (``Plan.branch_multiplier``).
      zero_init_readout: initialise the readout kernel to zeros.
    """

    in_dim: int
    width: int
    out_dim: int
    depth: int = 2
    activation: str = "relu"
    branch_multiplier: float = 1.0
    zero_init_readout: bool = False

    def __post_init__(self):
        for name in ("in_dim", "width", "out_dim", "depth"):
            check_positive_int(getattr(self, name), name)
        activation_fn(self.activation)
        m = self.branch_multiplier
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 0:
            raise ValueError(f"branch_multiplier must be a finite number > 0, got {m!r}.")


def _dense(features: int, name: str, zero: bool = False) -> nn.Dense:
    return nn.Dense(features, use_bias=False, kernel_init=kernel_init((0,), (1,), zero=zero), name=name)


class _ResidualBlock(nn.Module):
    """One block ``h + m fc_out(act(fc_in(h)))``: its output is the residual stream."""

    config: ResidualMLPConfig

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        cfg = self.config
        f = _dense(cfg.width, "fc_out")(activation_fn(cfg.activation)(_dense(cfg.width, "fc_in")(h)))
        return h + (f if cfg.branch_multiplier == 1.0 else cfg.branch_multiplier * f)


class ResidualMLP(nn.Module):
    """A residual MLP for depth transfer (Bordelon et al. 2023's architecture, without norms)::

    h_0 = x W_e                                      embed:                  (in_dim, width)
    h_l = h_{l-1} + m_L W_out,l act(W_in,l h_{l-1})  block_l/fc_in, /fc_out: (width, width)
    y   = h_L W_r                                    readout:                (width, out_dim)
    """

    config: ResidualMLPConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        _check_input(x, cfg)
        h = _dense(cfg.width, "embed")(x)
        for i in range(cfg.depth):
            h = _ResidualBlock(cfg, name=f"block_{i}")(h)
        y = _dense(cfg.out_dim, "readout", cfg.zero_init_readout)(h)
        chex.assert_axis_dimension(y, -1, cfg.out_dim)
        return y

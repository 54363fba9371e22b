"""Shared pieces of paramlab's models: initializers with fan axes, activations, rotary embeddings.

Every initializer here has the variance the parametrization engine assumes of a parameter's *own*
initializer: ``lecun_normal`` (variance ``1 / fan_in``) for weights that contract a width axis, a
width-independent ``normal(1.0)`` for embedding tables (their fan-in, the vocabulary or the number
of positions, does not grow with width), zeros for biases. The engine then rescales to the
parametrization's standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from paramlab.nn.metadata import with_fan_axes
from paramlab.optim.common import check_choice

__all__ = [
    "ACTIVATIONS",
    "COMPUTE_DTYPES",
    "activation_fn",
    "apply_rotary",
    "check_positive_int",
    "embedding_init",
    "kernel_init",
    "ones_init",
    "rotary_tables",
    "rotate",
    "zeros_init",
]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
}

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def check_positive_int(value: object, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an ``int`` > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` (one of :data:`ACTIVATIONS`)."""
    check_choice(name, tuple(ACTIVATIONS), "activation")
    return ACTIVATIONS[name]


def kernel_init(fan_in: Sequence[int], fan_out: Sequence[int], zero: bool = False):
    """``lecun_normal`` (or zeros) declaring the kernel's fan axes (axes of the final shape)."""
    init = nn.initializers.zeros_init() if zero else nn.initializers.lecun_normal()
    return with_fan_axes(init, fan_in, fan_out)


def zeros_init(fan_out: Sequence[int]):
    """Zeros for a bias; a bias has no fan-in and its fan-out is all of its axes."""
    return with_fan_axes(nn.initializers.zeros_init(), (), fan_out)


def ones_init(fan_out: Sequence[int]):
    """Ones for a norm gain: no fan-in, fan-out all of its axes (declared, so a stacked copy's layer
    axis is known)."""
    return with_fan_axes(nn.initializers.ones_init(), (), fan_out)


def embedding_init():
    """``normal(1.0)`` for a ``(vocab, d_model)`` table, fan-in ``(0,)`` (the fixed vocabulary).

    Flax's default ``Embed`` init (variance ``1 / d_model``) would shrink with width, which the
    engine's init rescale (relative to a width-independent embedding std) does not expect.
    """
    return with_fan_axes(nn.initializers.normal(stddev=1.0), (0,), (1,))


def rotary_tables(positions: jax.Array, d: int, theta: float = 10_000.0) -> tuple[jax.Array, jax.Array]:
    """``(cos, sin)`` of the rotary angles ``m * theta^(-2i/d)``, each ``(T, 1, d/2)`` float32.

    Computed once per forward pass and shared by every attention layer (:func:`rotate`).
    """
    if d % 2:
        raise ValueError(f"rotary positions need an even d_head, got {d}.")
    inv_freq = theta ** (-jnp.arange(d // 2, dtype=jnp.float32) * 2.0 / d)
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]  # (T, d/2)
    return jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]  # broadcast over heads


def rotate(x: jax.Array, tables: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Rotate ``x`` of shape ``(..., T, heads, d)`` by :func:`rotary_tables`' ``(cos, sin)``.

    Rotate-half layout: the pair ``(x_i, x_{i + d/2})`` turns by the ``i``-th angle. Computed in
    float32, returned in ``x.dtype``.
    """
    cos, sin = tables
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def apply_rotary(x: jax.Array, positions: jax.Array, theta: float = 10_000.0) -> jax.Array:
    """Rotary position embedding (Su et al. 2021, "RoFormer"), rotate-half layout.

    For ``x`` of shape ``(..., T, heads, d)`` with even ``d`` and integer ``positions`` of shape
    ``(T,)``, pairs ``(x_i, x_{i + d/2})`` at position ``m`` are rotated by the angle
    ``m * theta^(-2i/d)``. Then ``<rot(q, m), rot(k, n)>`` depends on ``m - n`` only. Computed in
    float32, returned in ``x.dtype``.
    """
    return rotate(x, rotary_tables(positions, x.shape[-1], theta))

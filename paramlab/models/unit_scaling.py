"""The model side of u-muP (Blake et al. 2024) and simulated low-precision matmuls (reference §13).

u-muP puts every weight at unit scale and keeps every activation there too: besides the plan's static
multipliers (``Parametrization("umup", ...)``), each nonlinearity is divided by its output RMS at a
unit Gaussian input (:func:`unit_activation_scale`), and each residual add is the variance-preserving
``(x + tau f(x)) / sqrt(1 + tau^2)`` with the ``tau`` of :func:`residual_taus` (u-muP's Appendix G rule:
every attention branch contributes alike, every MLP branch alike, ``residual_mult`` sets the branches'
total against the embedding's and ``residual_attn_ratio`` attention's against the MLP's).

:func:`simulated_dot_general` casts both inputs of a matmul to a low-precision float format and back
(saturating at the format's largest finite value), with a straight-through gradient: the forward pass
sees the format's rounding, underflow and range; the backward pass is the float one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "MATMUL_FORMATS",
    "check_matmul_format",
    "residual_add",
    "residual_taus",
    "simulated_dot_general",
    "unit_activation_scale",
]

# the formats a matmul's inputs may be cast to (None: the compute dtype itself)
MATMUL_FORMATS = ("float8_e4m3fn", "float8_e5m2", "bfloat16")


def unit_activation_scale(activation: Callable[[jax.Array], jax.Array]) -> float:
    """``1 / sqrt(E[act(z)^2])`` for ``z ~ N(0, 1)`` (Gauss-Hermite quadrature, 64 nodes)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    with jax.ensure_compile_time_eval():  # a constant, even when first asked for inside a trace
        values = np.asarray(activation(jnp.asarray(nodes, jnp.float32)), np.float64)
    second_moment = float(np.sum(weights * values**2) / math.sqrt(2 * math.pi))
    return 1.0 / math.sqrt(second_moment)


def residual_taus(n_layers: int, residual_mult: float = 1.0, residual_attn_ratio: float = 1.0) -> np.ndarray:
    """``tau`` of every residual branch, ``(n_layers, 2)``: column 0 attention, column 1 MLP.

    With ``a_mlp = residual_mult sqrt(2 / (1 + r^2))``, ``a_attn = r a_mlp`` (``r = residual_attn_ratio``)
    and branch ``i`` (``0 .. 2L-1``, attention first) preceded by ``n_attn`` attention and ``n_mlp`` MLP
    branches: ``tau_i = a_i / sqrt(L + n_attn a_attn^2 + n_mlp a_mlp^2)``. With unit-variance branches
    the adds keep the stream at unit variance, and in the output every attention branch holds the share
    ``a_attn^2 / (L (1 + a_attn^2 + a_mlp^2))`` of it, every MLP branch ``a_mlp^2 / (...)`` and the
    embedding ``1 / (1 + a_attn^2 + a_mlp^2)``, whatever the depth: with both hyperparameters 1 the
    embedding, the attention branches and the MLP branches each hold a third.
    """
    for name, value in (("residual_mult", residual_mult), ("residual_attn_ratio", residual_attn_ratio)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value > 0)
        ):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    a_mlp = residual_mult * math.sqrt(2.0 / (1.0 + residual_attn_ratio**2))
    a_attn = residual_attn_ratio * a_mlp
    taus = np.empty((n_layers, 2))
    for i in range(2 * n_layers):
        n_attn, n_mlp = (i + 1) // 2, i // 2
        a = a_attn if i % 2 == 0 else a_mlp
        taus[i // 2, i % 2] = a / math.sqrt(n_layers + n_attn * a_attn**2 + n_mlp * a_mlp**2)
    return taus


def residual_add(x: jax.Array, branch: jax.Array, tau: jax.Array | float) -> jax.Array:
    """u-muP's variance-preserving residual add ``(x + tau f) / sqrt(1 + tau^2)``."""
    tau = jnp.asarray(tau, x.dtype)
    return (x + tau * branch) * jax.lax.rsqrt(1 + tau * tau)


@functools.cache
def _quantizer(name: str) -> Callable[[jax.Array], jax.Array]:
    dtype = jnp.dtype(name)
    top = float(jnp.finfo(dtype).max)

    def quantize(x: jax.Array) -> jax.Array:
        q = jnp.clip(x, -top, top).astype(dtype).astype(x.dtype)
        return x + jax.lax.stop_gradient(q - x)  # straight-through: the float gradient

    return quantize


def check_matmul_format(name: str | None) -> None:
    """Refuse an unknown format, or one this backend cannot convert to (one line naming it)."""
    if name is None:
        return
    if name not in MATMUL_FORMATS:
        raise ValueError(f"matmul_format must be None or one of {MATMUL_FORMATS}, got {name!r}.")
    try:
        jax.block_until_ready(jax.jit(_quantizer(name))(jnp.ones((2,), jnp.float32)))
    except Exception as error:  # the backend's own message names what it lacks
        raise ValueError(
            f"matmul_format={name!r}: the {jax.default_backend()} backend cannot convert to it ({error})."
        ) from error


def simulated_dot_general(name: str) -> Callable[..., jax.Array]:
    """A ``dot_general`` for Flax's ``Dense`` / ``DenseGeneral`` whose inputs are cast to ``name``."""
    quantize = _quantizer(name)

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
        return jax.lax.dot_general(
            quantize(lhs),
            quantize(rhs),
            dimension_numbers,
            precision,
            preferred_element_type=preferred_element_type,
        )

    return dot_general

"""A fused two-argument arctangent for a non-negative second argument (``docs/reference.md`` §4).

With ``x >= 0``, ``t = min(|y|, x) / max(|y|, x)`` lies in ``[0, 1]`` for any finite inputs (no
overflow), ``atan2(y, x) = sign(y) atan(t)`` for ``|y| <= x`` and ``sign(y) (pi/2 - atan(t))``
otherwise, and ``atan(t) ~= t P(t^2)`` with the degree-6 minimax polynomial ``P`` (``P(1) = pi/4``
exactly; max error 2.634e-7, below 5e-7 in float32; ``scripts/fit_atan.py`` regenerates it). One
division instead of XLA's general ``atan2``. Special cases: ``atan2(0, 0) = 0``, ``atan2(y, 0) =
sign(y) pi/2``, ``atan2(+-inf, inf) = +-pi/4``, ``atan2(y, inf) = 0``, ``atan2(+-inf, x) = +-pi/2``;
NaN propagates; subnormals count as zero where XLA flushes them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["atan2_nonneg"]

# atan(t) ~= t * sum_k _ATAN_COEFFS[k] * t^(2k) on [0, 1]: Remez minimax fit under the constraint
# sum_k _ATAN_COEFFS[k] = pi/4 (exact at t = 1); max |error| 2.634e-7.
_ATAN_COEFFS = (
    0.9999958816722202,
    -0.33316607074361215,
    0.198008006510091,
    -0.13206151068951766,
    0.07911878994158467,
    -0.03315945446136859,
    0.006662521168050746,
)


def _atan_unit(t: jax.Array) -> jax.Array:
    """``atan(t)`` for ``t`` in ``[0, 1]`` by the minimax polynomial ``t * P(t^2)`` (Horner's rule)."""
    s = t * t
    p = jnp.asarray(_ATAN_COEFFS[-1], t.dtype)
    for c in _ATAN_COEFFS[-2::-1]:
        p = p * s + jnp.asarray(c, t.dtype)
    return t * p


def atan2_nonneg(y: jax.typing.ArrayLike, x: jax.typing.ArrayLike) -> jax.Array:
    """``atan2(y, x)`` for ``x >= 0`` by one division and a minimax polynomial.

    ``lo = min(|y|, x)``, ``hi = max(|y|, x)``, ``t = lo / hi`` (0 when ``hi = 0``, 1 when both are
    infinite); ``atan2(y, x) = sign(y) * (atan(t) if |y| <= x else pi/2 - atan(t))``, with ``atan`` on
    ``[0, 1]`` the degree-13 odd polynomial described in the module docstring.

    Args:
      y: any floating-point values (the numerator, e.g. Adam's bias-corrected first moment).
      x: non-negative values broadcastable with ``y`` (a negative ``x`` is outside the contract and
        gives a meaningless result).

    Returns:
      ``atan2(y, x)`` in the inputs' result dtype, within ``5e-7`` of the exact value (computed in
      float32 for bfloat16/float16/float32 inputs and in float64 for float64 inputs).
    """
    out_dtype = jnp.result_type(y, x)
    if not jnp.issubdtype(out_dtype, jnp.floating):
        out_dtype = jnp.result_type(float)
    compute_dtype = jnp.promote_types(out_dtype, jnp.float32)
    y = jnp.asarray(y, compute_dtype)
    x = jnp.asarray(x, compute_dtype)
    abs_y = jnp.abs(y)
    lo = jnp.minimum(abs_y, x)
    hi = jnp.maximum(abs_y, x)
    t = lo / jnp.where(hi > 0, hi, jnp.ones_like(hi))
    t = jnp.where(jnp.isinf(lo), jnp.ones_like(t), t)
    angle = _atan_unit(t)
    angle = jnp.where(abs_y > x, jnp.asarray(np.pi / 2, compute_dtype) - angle, angle)
    return jnp.copysign(angle, y).astype(out_dtype)

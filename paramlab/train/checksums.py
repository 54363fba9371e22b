"""Content checksums of a train state's arrays, saved with every checkpoint and verified on restore.

Specified in ``docs/training.md`` §3.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from paramlab.optim.common import path_str

__all__ = ["checksums", "checksum_mismatches"]

_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def checksums(tree: Any) -> dict[str, list[int]]:
    """``{path: [sum, weighted sum]}`` of every array's bits (mod 2^32), computed where the arrays live.

    The weighted sum multiplies element ``i``'s bits by ``2654435761 i + 1`` (Knuth's multiplicative
    hash), so swapped or flipped elements change it even when the plain sum is unchanged.
    """
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    sums = jax.device_get(_checksum_all([x for _, x in pairs]))
    return {path_str(p): [int(a), int(b)] for (p, _), (a, b) in zip(pairs, sums)}


def checksum_mismatches(tree: Any, saved: dict[str, list[int]]) -> list[str]:
    """The paths whose checksum differs from ``saved`` (or is missing there, or extra)."""
    current = checksums(tree)
    return sorted(k for k in set(current) | set(saved) if current.get(k) != saved.get(k))


@jax.jit
def _checksum_all(leaves: list[jax.Array]) -> list[tuple[jax.Array, jax.Array]]:
    return [_checksum(x) for x in leaves]


def _checksum(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        bits = x.astype(jnp.uint32)
    else:
        width = np.dtype(x.dtype).itemsize
        if width == 8:  # 64-bit values: checksum both 32-bit halves
            x = jax.lax.bitcast_convert_type(x, jnp.uint32)
        bits = jax.lax.bitcast_convert_type(x, _UINT[width]) if width != 8 else x
        bits = bits.astype(jnp.uint32)
    flat = bits.reshape(-1)
    weights = jnp.arange(flat.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
    return jnp.sum(flat, dtype=jnp.uint32), jnp.sum(flat * weights, dtype=jnp.uint32)

"""The top singular value of every weight matrix, by power iteration (cheap enough for every step).

Weight decay and the learning rate set the size a matrix settles at; its spectral norm ``sigma_1`` is
the width-comparable measure (``docs/reference.md`` §8). A parameter of rank >= 2 is read as the matrix
``(fan-in, fan-out)`` of its declared fan axes (other axes are batch axes: one matrix each, and the
largest ``sigma_1`` is reported); vectors and scalars are skipped. Power iteration on ``W^T W`` from a
fixed pseudo-random start converges as ``(sigma_2 / sigma_1)^(2k)``; pass the previous vectors
(``state``) to continue from them across training steps, as spectral normalisation does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from paramlab.optim.common import flatten_with_paths, is_absent
from paramlab.optim.fan_axes import FanAxes, resolve_fan_axes

__all__ = ["spectral_probe", "top_singular_values"]


def top_singular_values(
    params: Any, fan_axes: Any = None, *, iterations: int = 20, state: dict[str, jax.Array] | None = None
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """``({path: sigma_1}, state)`` for every parameter of rank >= 2 (jittable).

    ``fan_axes``: a tree of :class:`~paramlab.optim.FanAxes` (e.g. ``plan.fan_axes(params)``) or ``None``
    for the default ``(in, out)`` layout. ``state`` holds each matrix's last right singular vector
    estimate; ``None`` starts from a fixed pseudo-random vector.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}.")
    axes = dict(flatten_with_paths(resolve_fan_axes(params, fan_axes), "fan_axes"))
    sigmas, vectors = {}, {}
    for path, w in flatten_with_paths(params, "params", is_leaf=is_absent):
        if is_absent(w) or jnp.ndim(w) < 2:
            continue
        matrices = _as_matrices(jnp.asarray(w, jnp.float32), axes[path])
        start = None if state is None else state.get(path)
        sigma, v = _power_iteration(matrices, iterations, start)
        sigmas[path], vectors[path] = jnp.max(sigma), v
    return sigmas, vectors


def spectral_probe(
    fan_axes: Any = None, multipliers: Any = None, *, iterations: int = 20
) -> Callable[[Any, Any], dict[str, jax.Array]]:
    """``(params, initial_params) -> {"sigma_1/<path>": sigma_1}``: a sweep probe
    (:func:`paramlab.sweep.run_sweep`'s ``probe_fn``) of every matrix's top singular value.

    ``multipliers``: ``{path: m}`` (e.g. ``plan.values("multiplier")``) to measure the effective weight
    ``m W`` the forward pass uses rather than the stored one; ``fan_axes`` as for
    :func:`top_singular_values`, or a function ``params -> tree`` (e.g. ``plan.fan_axes``). Each call
    starts the power iteration afresh (``iterations`` steps).
    """
    scale = dict(multipliers or {})

    def probe(params: Any, initial_params: Any) -> dict[str, jax.Array]:
        del initial_params  # the spectral norm needs only the current weights
        axes = fan_axes(params) if callable(fan_axes) else fan_axes
        sigmas, _ = top_singular_values(params, axes, iterations=iterations)
        return {f"sigma_1/{path}": abs(scale.get(path, 1.0)) * s for path, s in sigmas.items()}

    return probe


def _as_matrices(w: jax.Array, fan: FanAxes) -> jax.Array:
    """``(batch, fan-in, fan-out)``: the batch axes first, then the fan-in and fan-out groups flattened."""
    batch = tuple(i for i in range(w.ndim) if i not in fan.fan_in and i not in fan.fan_out)
    moved = jnp.transpose(w, (*batch, *fan.fan_in, *fan.fan_out))
    size = lambda group: math.prod(w.shape[i] for i in group)
    return moved.reshape(size(batch), size(fan.fan_in), size(fan.fan_out))


def _power_iteration(m: jax.Array, iterations: int, start: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """``sigma_1`` of each matrix of the batch ``m`` (``(b, n, k)``) and its right singular vectors."""
    v = jax.random.normal(jax.random.key(0), m.shape[::2], m.dtype) if start is None else start

    def step(v, _):
        u = jnp.einsum("bnk,bk->bn", m, v)
        v = jnp.einsum("bnk,bn->bk", m, u)
        return v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), 1e-30), None

    v, _ = jax.lax.scan(step, v, None, length=iterations)
    return jnp.linalg.norm(jnp.einsum("bnk,bk->bn", m, v), axis=1), v

"""Alignment exponents alpha, omega, u per layer (Everett et al., 2024; ``docs/reference.md`` §2, §8).

For a dense layer ``y = x W`` with input ``x0`` and kernel ``W0`` at a reference point (usually init),
``y - y0 = x0 dW (alpha) + dx W0 (omega) + dx dW (u)``, and the exponent of a term ``v M`` is
``log(RMS(v M) / (RMS(v) RMS(M))) / log(fan_in)`` averaged over the batch's examples (1/2 for
independent ``v``, ``M``; 1 for a rank-1 ``M`` aligned with ``v``). A forward multiplier cancels, so
stored and effective parameters agree. Examples with ``v = 0`` or a zero ``M`` have no exponent and
are left out; a term with none left is ``nan``.

:func:`capture_dense_inputs` records the input and kernel of every Linen module call whose kernel
contracts the input's trailing axes (``Dense``, ``DenseGeneral``); :func:`make_alignment_fn` gives a
jit-compatible ``params -> {"alignment/alpha/<layer>": ...}``; :func:`alignment_probe` takes the
reference parameters as an argument (for vmapped sweeps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "alignment_exponent",
    "alignment_metrics",
    "alignment_probe",
    "capture_dense_inputs",
    "layer_alignment",
    "make_alignment_fn",
]

TERMS = ("alpha", "omega", "u")


def alignment_exponent(x: jax.Array, matrix: jax.Array) -> jax.Array:
    """Mean over examples of ``log(RMS(x_i M) / (RMS(x_i) RMS(M))) / log(fan_in)``.

    Args:
      x: inputs of shape ``(..., fan_in)``; every leading index is one example.
      matrix: ``M`` of shape ``(fan_in, fan_out)`` (Flax kernel layout).

    Returns:
      A float32 scalar; ``nan`` if no example (or ``M``) is non-zero.
    """
    if matrix.ndim != 2 or x.shape[-1] != matrix.shape[0]:
        raise ValueError(
            f"alignment_exponent: x of shape {x.shape} and matrix of shape {matrix.shape} do not "
            "contract (need x (..., fan_in) and matrix (fan_in, fan_out))."
        )
    fan_in = matrix.shape[0]
    if fan_in < 2:
        raise ValueError(f"alignment_exponent: fan_in must be >= 2 (log base), got {fan_in}.")
    x = x.reshape(-1, fan_in).astype(jnp.float32)
    matrix = matrix.astype(jnp.float32)
    rms_x = _rms(x, axis=-1)
    rms_m = _rms(matrix)
    rms_y = _rms(x @ matrix, axis=-1)
    valid = (rms_x > 0) & (rms_y > 0) & (rms_m > 0)
    safe = lambda v: jnp.where(valid, v, 1.0)
    per_example = jnp.log(safe(rms_y) / (safe(rms_x) * safe(rms_m))) / math.log(fan_in)
    count = jnp.sum(valid)
    return jnp.where(count > 0, jnp.sum(jnp.where(valid, per_example, 0.0)) / jnp.maximum(count, 1), jnp.nan)


def layer_alignment(x0: jax.Array, x: jax.Array, w0: jax.Array, w: jax.Array) -> dict[str, jax.Array]:
    """``{"alpha": exponent(x0, dW), "omega": exponent(dx, W0), "u": exponent(dx, dW)}`` of one layer.

    ``x0``, ``x``: the layer's inputs ``(..., fan_in)`` at the reference point and now (same batch);
    ``w0``, ``w``: its kernel ``(fan_in, fan_out)`` then and now.
    """
    if x0.shape != x.shape or w0.shape != w.shape:
        raise ValueError(
            f"layer_alignment: shapes differ between reference and now: x {x0.shape} vs {x.shape}, "
            f"w {w0.shape} vs {w.shape}."
        )
    dx, dw = x - x0, w - w0
    return {
        "alpha": alignment_exponent(x0, dw),
        "omega": alignment_exponent(dx, w0),
        "u": alignment_exponent(dx, dw),
    }


def capture_dense_inputs(apply_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, tuple]:
    """Run ``apply_fn(*args, **kwargs)`` and record every dense-like module call.

    A module call is recorded when the module has a ``kernel`` parameter of rank ``k + m`` whose
    leading ``k`` axes equal the trailing ``k`` axes of the call's first argument: ``k`` is
    ``len(module.axis)`` when the module has an ``axis`` attribute (``nn.DenseGeneral``), else 1.
    The kernel is reshaped to ``(fan_in, fan_out)`` and the input to ``(..., fan_in)``. Calls that do
    not fit (embeddings, norms, kernels with batch dimensions) are skipped.

    Returns:
      ``{layer name: (input, kernel)}`` where the name is the module path joined by ``/``, with
      ``#<i>`` appended for the ``i``-th repeated call (``i >= 1``) of the same module.
    """
    captured: dict[str, tuple] = {}

    def interceptor(next_fun, call_args, call_kwargs, context):
        if context.method_name == "__call__" and call_args:
            found = _dense_view(context.module, call_args[0])
            if found is not None:
                name = "/".join(map(str, context.module.path)) or type(context.module).__name__
                repeat, key = 0, name
                while key in captured:
                    repeat += 1
                    key = f"{name}#{repeat}"
                captured[key] = found
        return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(interceptor):
        apply_fn(*args, **kwargs)
    return captured


def alignment_metrics(reference: dict[str, tuple], current: dict[str, tuple]) -> dict[str, jax.Array]:
    """``{"alignment/<term>/<layer>": exponent}`` from two :func:`capture_dense_inputs` results.

    Raises:
      ValueError: the two captures name different layers.
    """
    if set(reference) != set(current):
        raise ValueError(
            "alignment_metrics: the captured layers differ: only in reference "
            f"{sorted(set(reference) - set(current))}, only now {sorted(set(current) - set(reference))}."
        )
    out = {}
    for name in sorted(reference):
        (x0, w0), (x, w) = reference[name], current[name]
        for term, value in layer_alignment(x0, x, w0, w).items():
            out[f"alignment/{term}/{name}"] = value
    return out


def alignment_probe(
    apply_fn: Callable[..., Any], *probe_args: Any, **probe_kwargs: Any
) -> Callable[[Any, Any], dict[str, jax.Array]]:
    """``(params, reference_params) -> alignment_metrics`` on a fixed probe batch.

    Both captures run inside the returned function, so it can be vmapped over a sweep's members
    (each against its own initial parameters: :func:`paramlab.sweep.run_sweep`'s ``probe_fn``).

    Args:
      apply_fn: called as ``apply_fn(params, *probe_args, **probe_kwargs)``, e.g.
        ``lambda p, x: model.apply({"params": p}, x)`` or a parametrization plan's wrapped apply (its
        scalar forward multipliers do not change the exponents).
      probe_args, probe_kwargs: the probe inputs, the same at every call.
    """

    def probe(params: Any, reference_params: Any) -> dict[str, jax.Array]:
        reference = capture_dense_inputs(apply_fn, reference_params, *probe_args, **probe_kwargs)
        if not reference:
            raise ValueError(
                "alignment_probe: the model has no dense-like layer to measure (no 'kernel' found)."
            )
        return alignment_metrics(
            reference, capture_dense_inputs(apply_fn, params, *probe_args, **probe_kwargs)
        )

    return probe


def make_alignment_fn(
    apply_fn: Callable[..., Any], reference_params: Any, *probe_args: Any, **probe_kwargs: Any
) -> Callable[[Any], dict[str, jax.Array]]:
    """A metric function ``params -> alignment_metrics(reference, now)`` for logging during training.

    Like :func:`alignment_probe` with the reference point fixed: its layer inputs are captured once,
    here. Returns a pure function of the current parameters (jit it, or call it inside a jitted step).
    """
    reference = capture_dense_inputs(apply_fn, reference_params, *probe_args, **probe_kwargs)
    if not reference:
        raise ValueError(
            "make_alignment_fn: the model has no dense-like layer to measure (no 'kernel' found)."
        )

    def alignment_fn(params: Any) -> dict[str, jax.Array]:
        return alignment_metrics(
            reference, capture_dense_inputs(apply_fn, params, *probe_args, **probe_kwargs)
        )

    return alignment_fn


def _dense_view(module: nn.Module, x: Any) -> tuple[jax.Array, jax.Array] | None:
    """``(x as (..., fan_in), kernel as (fan_in, fan_out))`` if ``module`` contracts ``x`` with its kernel."""
    if getattr(module, "batch_dims", ()) or not module.has_variable("params", "kernel"):
        return None
    kernel = module.get_variable("params", "kernel")
    if not hasattr(x, "shape") or not hasattr(kernel, "ndim"):
        return None
    axis = getattr(module, "axis", -1)
    k = len(axis) if isinstance(axis, (tuple, list)) else 1
    if isinstance(axis, (tuple, list)) and [a % x.ndim for a in axis] != list(range(x.ndim - k, x.ndim)):
        return None
    if kernel.ndim <= k or x.ndim < k or tuple(x.shape[x.ndim - k :]) != tuple(kernel.shape[:k]):
        return None
    fan_in = math.prod(kernel.shape[:k])
    return x.reshape(*x.shape[: x.ndim - k], fan_in), kernel.reshape(fan_in, -1)


def _rms(x: jax.Array, axis: int | None = None) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=axis))

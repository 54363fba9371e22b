"""Gradient scale per layer across widths, its exponent ``g_l``, and Adam-epsilon underflow.

At init the gradient entries of layer ``l`` scale as ``n^{-g_l}`` (``docs/reference.md`` §3, §8;
Everett et al., 2024, arXiv 2407.05872). :func:`grad_rms` measures ``RMS(dL/dw)`` per parameter
(jittable), :func:`measure_grad_rms` at init over several widths, :func:`grad_scale_exponents` fits
``g_l``; :func:`epsilon_underflow` lists the layers whose gradient RMS is within a factor of their
Adam epsilon, where the update stops being scale-free (:func:`check_epsilon_underflow` warns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging

from paramlab.diagnostics.coord_check import CoordCheckSetup, loglog_slope
from paramlab.optim.common import check_widths, flatten_with_paths

__all__ = [
    "EpsilonUnderflowWarning",
    "check_epsilon_underflow",
    "epsilon_underflow",
    "grad_rms",
    "grad_scale_exponents",
    "measure_grad_rms",
]


class EpsilonUnderflowWarning(RuntimeWarning):
    """A layer's gradient RMS is close to (or below) Adam's epsilon."""


def grad_rms(grads: Any) -> dict[str, jax.Array]:
    """``{path: sqrt(mean(g^2))}`` of every leaf of a gradient tree, in float32 (jittable).

    Paths are the tree's keys joined by ``/`` (:func:`paramlab.parametrization.spec.flatten_with_paths`).
    """
    return {
        path: jnp.sqrt(jnp.mean(jnp.square(jnp.asarray(g, jnp.float32))))
        for path, g in flatten_with_paths(grads, "grads")
    }


def measure_grad_rms(
    setup: Callable[[int], CoordCheckSetup],
    widths: Sequence[int],
    batch: Any,
    *,
    seeds: Sequence[int] = (0,),
    compiler_options: Mapping[str, Any] | None = None,
) -> dict[int, dict[str, float]]:
    """``{width: {path: RMS of dL/dparam}}`` at initialisation, per width, pooled over seeds.

    Args:
      setup: ``width -> CoordCheckSetup`` (only ``init`` and ``forward`` are used): the gradient is
        that of the stored parameters, what an optimizer sees.
      widths: distinct positive widths.
      batch: the batch ``forward`` takes.
      seeds: initialisation seeds (the same keys at every width); the result is
        ``sqrt(mean over seeds of RMS^2)``, the RMS over all the seeds' entries.
      compiler_options: ``jax.jit`` compiler options (e.g.
        :data:`paramlab.diagnostics.FAST_CPU_COMPILE`).
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("measure_grad_rms: seeds is empty.")
    table = {}
    for width in check_widths(widths):
        s = setup(width)
        rms_fn = jax.jit(
            lambda key, b, s=s: grad_rms(jax.grad(lambda p: s.forward(p, b)[0])(s.init(key))),
            compiler_options=compiler_options,
        )
        squares = []
        for seed in seeds:
            rms = jax.device_get(rms_fn(jax.random.key(seed), batch))
            squares.append({path: float(v) ** 2 for path, v in rms.items()})
        table[width] = {path: math.sqrt(sum(sq[path] for sq in squares) / len(seeds)) for path in squares[0]}
    return table


def grad_scale_exponents(rms_by_width: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """``{path: g}`` with ``RMS ~ width^{-g}``: minus the least-squares log-log slope over widths.

    Args:
      rms_by_width: ``{width: {path: rms}}`` (e.g. :func:`measure_grad_rms`), at least two widths,
        the same paths at every width.

    Returns:
      ``g`` per path (``nan`` for a path whose RMS is 0 at all but one width).
    """
    widths = sorted(rms_by_width)
    if len(widths) < 2:
        raise ValueError(f"grad_scale_exponents needs at least two widths, got {widths}.")
    paths = list(rms_by_width[widths[0]])
    for w in widths[1:]:
        if set(rms_by_width[w]) != set(paths):
            raise ValueError(
                f"grad_scale_exponents: width {w} has other paths than width {widths[0]}: "
                f"{sorted(set(rms_by_width[w]) ^ set(paths))[:5]}."
            )
    return {p: -loglog_slope(widths, [rms_by_width[w][p] for w in widths]) for p in paths}


def _eps_by_path(eps: float | Any, paths: Sequence[str]) -> dict[str, float]:
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        values = dict.fromkeys(paths, float(eps))
    else:
        values = {p: float(v) for p, v in flatten_with_paths(eps, "eps")}
        missing = [p for p in paths if p not in values]
        if missing:
            raise ValueError(f"eps has no value for {missing[:5]}.")
    bad = {p: values[p] for p in paths if not (math.isfinite(values[p]) and values[p] >= 0)}
    if bad:
        raise ValueError(f"eps must be finite and >= 0, got {bad}.")
    return values


def epsilon_underflow(
    rms: Mapping[str, float] | Any, eps: float | Any, *, factor: float = 10.0
) -> dict[str, dict[str, float]]:
    """The layers whose gradient RMS is within ``factor`` of Adam's epsilon: ``rms < factor * eps``.

    Pure; see :func:`check_epsilon_underflow` for the warning.

    Args:
      rms: ``{path: gradient RMS}`` (:func:`grad_rms`; arrays or floats).
      eps: one epsilon for every layer, or a tree / ``{path: eps}`` of per-layer values covering
        every path of ``rms`` (e.g. ``eps_0 (n/n0)^{-g_l}``).
      factor: the margin (``> 0``); ``docs/reference.md`` section 3 flags ``RMS <~ 10 eps``.

    Returns:
      ``{path: {"rms": rms, "eps": eps, "ratio": rms / eps}}`` of the offending layers, in the order
      of ``rms`` (empty when none; a layer with ``eps = 0`` never offends).
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}.")
    values = {p: float(v) for p, v in dict(rms).items()}
    eps_values = _eps_by_path(eps, list(values))
    return {
        p: {"rms": v, "eps": eps_values[p], "ratio": v / eps_values[p]}
        for p, v in values.items()
        if v < factor * eps_values[p]
    }


def check_epsilon_underflow(
    rms: Mapping[str, float] | Any, eps: float | Any, *, factor: float = 10.0, context: str = ""
) -> dict[str, dict[str, float]]:
    """:func:`epsilon_underflow`, plus one :class:`EpsilonUnderflowWarning` (and an absl log line)
    listing the offending layers when there are any. ``context`` (e.g. ``"width 2048"``) prefixes it."""
    offending = epsilon_underflow(rms, eps, factor=factor)
    if offending:
        listing = ", ".join(f"{p} (rms {o['rms']:.3g}, eps {o['eps']:.3g})" for p, o in offending.items())
        message = (
            f"{context + ': ' if context else ''}gradient RMS within {factor:g}x of Adam's epsilon in "
            f"{len(offending)} layer(s): {listing}. Adam's step is no longer scale-free there; use a "
            "smaller or per-layer epsilon, or Adam-atan2."
        )
        logging.warning(message)
        warnings.warn(message, EpsilonUnderflowWarning, stacklevel=2)
    return offending

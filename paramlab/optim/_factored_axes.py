"""Which axes the factored second moment of each parameter reduces over (``docs/reference.md`` §5).

Declared fan axes (:class:`paramlab.optim.FanAxes`) factor fan-in (rows) against fan-out (columns),
other axes being batch axes, when each group holds at least ``min_dim_size_to_factor`` elements:
a ``(d_model, heads, head_dim)`` query kernel keeps ``d_model + heads * head_dim`` numbers.
Undeclared parameters follow optax's ``scale_by_factored_rms`` rule (the two largest axes, factored
when the second-largest reaches ``min_dim_size_to_factor``). Others keep a full moment.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from paramlab.optim.common import check_same_paths, is_absent, resolve_per_leaf
from paramlab.optim.fan_axes import FanAxes

__all__ = ["FactoredAxes", "leaf_factoring"]


class FactoredAxes(NamedTuple):
    """The two axis groups of a factored parameter (non-negative, sorted); other axes are batch axes.

    Attributes:
      rows: axes indexing the row statistic ``R`` (its mean runs over ``cols``).
      cols: axes indexing the column statistic ``C`` (its mean runs over ``rows``).
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]


def optax_rule(shape: tuple[int, ...], min_dim_size_to_factor: int) -> FactoredAxes | None:
    """optax's rule: rows = the second-largest axis, cols = the largest, if the former is large enough."""
    if len(shape) < 2:
        return None
    sorted_dims = np.argsort(shape)  # the same call as optax, so ties resolve identically
    if shape[sorted_dims[-2]] < min_dim_size_to_factor:
        return None
    return FactoredAxes((int(sorted_dims[-2]),), (int(sorted_dims[-1]),))


def fan_rule(
    shape: tuple[int, ...], fan: FanAxes, min_dim_size_to_factor: int, path: str
) -> FactoredAxes | None:
    """Rows = fan-in axes, cols = fan-out axes, if both groups hold ``>= min_dim_size_to_factor``."""
    fan = fan.validate(shape, path)  # ValueError naming the path for an axis out of range
    if not fan.fan_in or not fan.fan_out:
        return None
    sizes = [math.prod(shape[a] for a in group) for group in (fan.fan_in, fan.fan_out)]
    if min(sizes) < min_dim_size_to_factor:
        return None
    return FactoredAxes(tuple(sorted(fan.fan_in)), tuple(sorted(fan.fan_out)))


def static_min_dim(value: Any) -> int:
    """``min_dim_size_to_factor`` as a Python int: it decides state shapes, so ``init`` needs it concrete.

    (``update`` reads the decision back from the state, so ``optax.inject_hyperparams`` may trace it.)
    """
    if isinstance(value, jax.core.Tracer):
        raise ValueError(
            "min_dim_size_to_factor decides the state's shapes and cannot be traced when init runs; "
            "pass a Python int (or list it in optax.inject_hyperparams(..., static_args=...))."
        )
    try:
        size = operator.index(value) if not isinstance(value, (np.ndarray, jax.Array)) else int(value)
    except TypeError as e:
        raise ValueError(f"min_dim_size_to_factor must be an integer, got {value!r}.") from e
    if size < 0:
        raise ValueError(f"min_dim_size_to_factor must be >= 0, got {value!r}.")
    return size


def _declared_fan_axes(tree: Any, fan_axes: Any) -> list[FanAxes | None]:
    """The declared :class:`FanAxes` (or ``None``) of every leaf of ``tree``, matched by path.

    Entries under leaves hidden by ``optax.masked`` / ``optax.partition`` (``optax.MaskedNode``) are
    ignored, so a ``fan_axes`` tree written for the full parameters works inside those wrappers.
    """
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_absent)[0]
    hidden = [path for path, leaf in flat if isinstance(leaf, optax.MaskedNode)]
    declared = {}
    for path, entry in jax.tree_util.tree_flatten_with_path(
        fan_axes, is_leaf=lambda x: x is None or isinstance(x, FanAxes)
    )[0]:
        if any(path[: len(h)] == h for h in hidden):
            continue
        if entry is not None and not isinstance(entry, FanAxes):
            raise ValueError(
                f"fan_axes{jax.tree_util.keystr(path)} must be a paramlab.optim.FanAxes or None, "
                f"got {entry!r}."
            )
        declared[jax.tree_util.keystr(path)] = entry
    wanted = [jax.tree_util.keystr(path) for path, leaf in flat if not isinstance(leaf, optax.MaskedNode)]
    check_same_paths(declared, wanted, "fan_axes")
    return [
        None if isinstance(leaf, optax.MaskedNode) else declared[jax.tree_util.keystr(path)]
        for path, leaf in flat
    ]


def leaf_factoring(
    tree: Any, fan_axes: Any | None, factored: bool, min_dim_size_to_factor: int
) -> list[FactoredAxes | None]:
    """The factoring of every leaf of ``tree`` (flattened with absent leaves as leaves), ``None`` = full.

    With ``min_dim_size_to_factor=0`` it gives the groups every leaf would be factored over, if any.

    Raises:
      ValueError: naming the path of a fan axis out of range, or of a ``fan_axes`` tree that does not
        match ``tree``.
    """
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_absent)[0]
    fan_axes = resolve_per_leaf(fan_axes, tree)
    declared = [None] * len(flat) if fan_axes is None else _declared_fan_axes(tree, fan_axes)
    out = []
    for (path, leaf), fan in zip(flat, declared):
        if is_absent(leaf):
            axes = None
        elif fan is None:
            axes = optax_rule(tuple(leaf.shape), min_dim_size_to_factor)
        else:
            axes = fan_rule(tuple(leaf.shape), fan, min_dim_size_to_factor, jax.tree_util.keystr(path))
        out.append(axes if factored else None)
    return out

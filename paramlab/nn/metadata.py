"""Flax Linen metadata for fan axes (:class:`paramlab.optim.FanAxes`): box, declare, split.

* Linen: wrap an initializer with :func:`with_fan_axes`; the parameter is stored boxed in
  :class:`FanAxesBox` (a ``flax.linen.meta.AxisMetadata``), which ``nn.meta.unbox`` strips.
  :func:`split_fan_axes` returns ``(params, fan_axes_tree)``.
* NNX: pass ``fan_in=..., fan_out=...`` as ``nnx.Param`` metadata (see :mod:`paramlab.nn.nnx`).

Undeclared parameters follow :func:`paramlab.optim.fan_axes.default_fan_axes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import struct
from flax.linen import meta

from paramlab.optim.fan_axes import FanAxes, default_fan_axes, resolve_fan_axes

__all__ = [
    "FanAxes",
    "FanAxesBox",
    "default_fan_axes",
    "resolve_fan_axes",
    "split_fan_axes",
    "with_fan_axes",
]


class FanAxesBox(struct.PyTreeNode, meta.AxisMetadata):
    """A Linen parameter boxed with its :class:`FanAxes` (pytree leaf: the value)."""

    value: Any
    fan_axes: FanAxes = struct.field(pytree_node=False)

    def unbox(self) -> Any:
        return self.value

    def replace_boxed(self, val: Any) -> FanAxesBox:
        return self.replace(value=val)

    @classmethod
    def from_nnx_metadata(cls, metadata: dict[str, Any]) -> FanAxesBox:
        """The box ``nnx.bridge`` rebuilds from an ``nnx.Param``'s value and ``fan_axes`` metadata
        (the rest of NNX's metadata, e.g. sharding flags, has no place in the box)."""
        return cls(metadata["value"], fan_axes=metadata["fan_axes"])

    def add_axis(self, index: int, params: dict[Any, Any]) -> FanAxesBox:
        """``nn.scan`` / ``nn.vmap`` stack the parameter: the new axis is a stacked axis."""
        return self.replace(fan_axes=self.fan_axes.shifted(index))

    def remove_axis(self, index: int, params: dict[Any, Any]) -> FanAxesBox:
        axes = self.fan_axes
        if index not in axes.stacked:
            raise ValueError(f"cannot remove axis {index} (not stacked) from a parameter boxed with {axes}.")
        shift = lambda group: tuple(a - 1 if a > index else a for a in group if a != index)
        return self.replace(fan_axes=FanAxes(shift(axes.fan_in), shift(axes.fan_out), shift(axes.stacked)))


def with_fan_axes(init_fn: Any, fan_in: Sequence[int], fan_out: Sequence[int]) -> Any:
    """Wrap a Flax initializer so the created parameter carries its fan axes.

    Example: ``nn.DenseGeneral((heads, head_dim), kernel_init=with_fan_axes(init, (0,), (1, 2)))``.
    (DenseGeneral calls its initializer with a flattened 2-D shape and reshapes the box's content; the
    axes refer to the final parameter shape.)
    """
    fan_axes = FanAxes(tuple(fan_in), tuple(fan_out))

    def boxed_init(*args, **kwargs):
        value = init_fn(*args, **kwargs)
        return FanAxesBox(value=value, fan_axes=fan_axes)

    return boxed_init


def _is_box(x: Any) -> bool:
    return isinstance(x, meta.AxisMetadata)


def split_fan_axes(tree: Any) -> tuple[Any, Any]:
    """Split a (possibly boxed) Linen variable tree into ``(plain_values, fan_axes_or_None_tree)``.

    Works on arrays and on ``jax.ShapeDtypeStruct`` trees from ``jax.eval_shape``. Leaves that are not
    :class:`FanAxesBox` get ``None`` (meaning: use :func:`default_fan_axes`). Other metadata boxes
    (e.g. ``nn.Partitioned``) are unboxed too.
    """

    def fan_of(x):
        while isinstance(x, meta.AxisMetadata):
            if isinstance(x, FanAxesBox):
                return x.fan_axes
            x = x.unbox()
        return None

    values = meta.unbox(tree)
    fan = jax.tree.map(fan_of, tree, is_leaf=_is_box)
    return values, fan

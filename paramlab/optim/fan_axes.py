"""Fan-in / fan-out axes of a parameter: the per-layer fact the parametrization and the factored
second moment both read (plain Python: no Flax, so the optax layer stands alone).

A matmul contracts its *fan-in* axes and produces its *fan-out* axes; every other axis of a
parameter is a batch axis. Shapes alone cannot tell them apart (a ``(d_model, heads, head_dim)``
query kernel and a ``(heads, head_dim, d_model)`` output kernel both have two growing axes), so
layers declare them (:mod:`paramlab.nn.metadata` for Flax) and :func:`default_fan_axes` covers the
undeclared ones: a vector ``(d,)`` (bias, norm gain) has no fan-in and fan-out ``(0,)``; a matrix
follows Flax's ``Dense`` kernel ``(in, out)`` and ``Embed`` table ``(vocab, d_model)`` layouts, fan-in
``(0,)`` and fan-out ``(1,)``; a scalar has neither. Tensors of rank >= 3 must be declared: guessing
would silently mis-scale attention kernels.

*Stacked* axes are batch axes that index copies of one layer: the layer axis ``nn.scan`` adds to a
scanned block's parameters (or ``nn.vmap``'s ensemble axis). They are never fan axes and never widths;
a stacked axis whose size changes between two models is a depth (``docs/reference.md`` §7).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["FanAxes", "default_fan_axes", "resolve_fan_axes"]


@dataclasses.dataclass(frozen=True)
class FanAxes:
    """Which axes of a parameter are fan-in and which are fan-out; all others are batch axes.

    Attributes:
      fan_in: axes contracted with the layer's input (e.g. ``(0,)`` for a Dense kernel ``(in, out)``,
        ``(0, 1)`` for an attention output kernel ``(heads, head_dim, d_model)``).
      fan_out: axes indexing the layer's output.
      stacked: axes indexing stacked copies of the layer (module docstring), e.g. ``(0,)`` for a
        kernel of ``nn.scan``-ned blocks ``(layers, in, out)``.
    """

    fan_in: tuple[int, ...] = ()
    fan_out: tuple[int, ...] = ()
    stacked: tuple[int, ...] = ()

    def __post_init__(self):
        for group in ("fan_in", "fan_out", "stacked"):
            object.__setattr__(self, group, tuple(int(a) for a in getattr(self, group)))
        groups = (self.fan_in, self.fan_out, self.stacked)
        if len({a for g in groups for a in g}) != sum(len(g) for g in groups):
            raise ValueError(f"FanAxes: an axis is in more than one group: {self}.")

    def validate(self, shape: Sequence[int], path: str = "") -> FanAxes:
        """Return a copy with non-negative axes, raising ``ValueError`` if any is out of range."""
        ndim = len(shape)
        norm = []
        for group in (self.fan_in, self.fan_out, self.stacked):
            out = []
            for axis in group:
                if not -ndim <= axis < ndim:
                    raise ValueError(
                        f"fan axis {axis} is out of range for parameter {path or '<param>'} "
                        f"of shape {tuple(shape)}."
                    )
                out.append(axis % ndim)
            norm.append(tuple(out))
        if len({a for g in norm for a in g}) != sum(len(g) for g in norm):
            raise ValueError(f"fan axes of {path or '<param>'} overlap: {norm}.")
        return FanAxes(*norm)

    def shifted(self, index: int) -> FanAxes:
        """The axes after a new stacked axis is inserted at ``index`` (which joins ``stacked``)."""
        shift = lambda axes: tuple(a + 1 if a >= index else a for a in axes)
        return FanAxes(shift(self.fan_in), shift(self.fan_out), (index, *shift(self.stacked)))

    def to_json(self) -> dict[str, list[int]]:
        data = {"fan_in": list(self.fan_in), "fan_out": list(self.fan_out)}
        return {**data, "stacked": list(self.stacked)} if self.stacked else data

    @classmethod
    def from_json(cls, data: dict[str, Sequence[int]]) -> FanAxes:
        return cls(tuple(data["fan_in"]), tuple(data["fan_out"]), tuple(data.get("stacked", ())))


def default_fan_axes(shape: Sequence[int], path: str = "") -> FanAxes:
    """The fan axes assumed for an undeclared parameter (see module docstring)."""
    ndim = len(shape)
    if ndim == 0:
        return FanAxes((), ())
    if ndim == 1:
        return FanAxes((), (0,))
    if ndim == 2:
        return FanAxes((0,), (1,))
    raise ValueError(
        f"parameter {path or '<param>'} has shape {tuple(shape)} (rank {ndim}) and no declared fan "
        "axes: declare them with paramlab.nn.with_fan_axes (Linen) or nnx.Param(..., fan_in=, "
        "fan_out=) (NNX); for a layer stacked by nn.scan, declare the inner layer's axes and the scan "
        "marks its new axis as stacked."
    )


def resolve_fan_axes(params: Any, fan_axes: Any | None = None) -> Any:
    """A tree of validated :class:`FanAxes` for every parameter (declared, else the default rule).

    Raises ``ValueError`` naming the path of a rank >= 3 parameter without declared axes, of an axis
    out of range, or of a fan-axes tree whose structure differs from the parameters'.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if fan_axes is None:
        declared = [None] * len(leaves)
    else:
        declared_leaves, declared_def = jax.tree_util.tree_flatten_with_path(
            fan_axes, is_leaf=lambda x: x is None or isinstance(x, FanAxes)
        )
        param_keys = [jax.tree_util.keystr(p) for p, _ in leaves]
        declared_keys = [jax.tree_util.keystr(p) for p, _ in declared_leaves]
        if param_keys != declared_keys:
            missing = sorted(set(param_keys) - set(declared_keys))
            extra = sorted(set(declared_keys) - set(param_keys))
            raise ValueError(
                f"fan axes tree does not match the parameters: missing {missing[:5]}, extra {extra[:5]}."
            )
        declared = [leaf for _, leaf in declared_leaves]
    resolved = []
    for (path, leaf), dec in zip(leaves, declared):
        name = jax.tree_util.keystr(path)
        shape = tuple(leaf.shape)
        resolved.append(default_fan_axes(shape, name) if dec is None else dec.validate(shape, name))
    return jax.tree_util.tree_unflatten(treedef, resolved)

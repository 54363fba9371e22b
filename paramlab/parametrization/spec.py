"""Static per-parameter specs: which axes grow with width, by how much, and the parameter's role.

:func:`infer_spec` compares three shape trees, as ``microsoft/mup``'s base shapes do: the model at
its **base** width, at a **delta** width (only to tell which axes are widths: an axis is a width iff
its size differs between base and delta) and at the **target** width. Fan-in / fan-out axes come from
the layers (:mod:`paramlab.nn.metadata`), never from a "last axis is fan-in" rule. The role follows
which of them grow (``docs/reference.md`` §1): embedding (fan-out only), hidden (both), readout (fan-in
only) or fixed (neither: every factor is exactly 1). A fixed *matrix* is more often a width the delta
model forgot to vary, so by default (``fixed="vectors"``) only fixed vectors pass: parameters without
fan-in axes (biases, gains, of any rank) or of rank <= 1 (not counting stacked layer axes).

``fan_in_mult`` / ``fan_out_mult`` are the products of ``target / base`` over those axes;
``width_mult`` is the one a role's single-width exponents refer to (``mup``'s convention: fan-out for
an embedding, fan-in otherwise). Paths join the tree's keys with ``/`` and drop the ``.value`` of
NNX variables and Linen boxes, so boxed, unboxed and NNX trees of one model give the same paths.

Depth is inferred from the same three models (:mod:`.blocks`): a parameter inside a residual block
carries its block group and depth ratio ``depth_mult = L / L0``; a stacked (``nn.scan``) layer axis
is never a width.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from paramlab.optim.common import flatten_with_paths
from paramlab.optim.fan_axes import FanAxes, resolve_fan_axes
from paramlab.parametrization.blocks import (
    canonical_paths,
    find_block_groups,
    group_of,
    stacked_depth_mult,
)
from paramlab.parametrization.tables import ROLES
from paramlab.parametrization.weight_norm import weight_norm_gains

__all__ = ["FIXED", "SPEC_ROLES", "ParamSpec", "infer_spec"]

FIXED = "fixed"
SPEC_ROLES = (*ROLES, FIXED)
_FIXED_POLICIES = ("error", "vectors", "all")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """How one parameter scales with width (static; no arrays).

    Attributes:
      path: the parameter's path, keys joined by ``/``.
      shape: its shape at the target width.
      base_shape: its shape at the base width.
      role: ``"embedding"``, ``"hidden"``, ``"readout"`` or ``"fixed"`` (module docstring).
      fan_in: the fan-in axes.
      fan_out: the fan-out axes.
      fan_in_mult: product of ``shape / base_shape`` over the fan-in axes (computed).
      fan_out_mult: the same over the fan-out axes (computed).
      width_mult: ``fan_out_mult`` (embedding), ``fan_in_mult`` (hidden, readout) or 1 (fixed).
      stacked: stacked (layer) axes, never widths (:class:`~paramlab.optim.FanAxes`).
      block: the residual block group holding the parameter (:mod:`.blocks`), ``None`` outside blocks.
      depth_mult: the block group's depth ratio ``L / L0`` (1 outside blocks).
      gain_of: for the gain ``g`` of a weight-normalised layer, the path of its direction ``v``
        (:mod:`.weight_norm`); ``None`` otherwise.
    """

    path: str
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    role: str
    fan_in: tuple[int, ...]
    fan_out: tuple[int, ...]
    stacked: tuple[int, ...] = ()
    block: str | None = None
    depth_mult: float = 1.0
    gain_of: str | None = None
    fan_in_mult: float = dataclasses.field(init=False)
    fan_out_mult: float = dataclasses.field(init=False)
    width_mult: float = dataclasses.field(init=False)

    def __post_init__(self):
        shape, base = tuple(int(d) for d in self.shape), tuple(int(d) for d in self.base_shape)
        if len(shape) != len(base):
            raise ValueError(f"parameter {self.path}: base shape {base} and shape {shape} differ in rank.")
        if self.role not in SPEC_ROLES:
            raise ValueError(
                f"parameter {self.path}: unknown role {self.role!r}; expected one of {SPEC_ROLES}."
            )
        axes = FanAxes(self.fan_in, self.fan_out, self.stacked).validate(shape, self.path)
        depth = self.depth_mult
        if (
            isinstance(depth, bool)
            or not isinstance(depth, (int, float))
            or not math.isfinite(depth)
            or depth <= 0
        ):
            raise ValueError(f"parameter {self.path}: depth_mult must be a finite number > 0, got {depth!r}.")
        if self.block is None and depth != 1.0:
            raise ValueError(f"parameter {self.path}: depth_mult {depth} outside a residual block.")
        for axis, (d, d0) in enumerate(zip(shape, base)):
            if d0 <= 0 or d <= 0:
                raise ValueError(
                    f"parameter {self.path}: axis {axis} has size 0 (shape {shape}, base {base})."
                )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "base_shape", base)
        object.__setattr__(self, "fan_in", axes.fan_in)
        object.__setattr__(self, "fan_out", axes.fan_out)
        object.__setattr__(self, "stacked", axes.stacked)
        object.__setattr__(self, "depth_mult", float(depth))
        fan_in_mult = _group_mult(shape, base, axes.fan_in)
        fan_out_mult = _group_mult(shape, base, axes.fan_out)
        width = {"embedding": fan_out_mult, "hidden": fan_in_mult, "readout": fan_in_mult, FIXED: 1.0}
        object.__setattr__(self, "fan_in_mult", fan_in_mult)
        object.__setattr__(self, "fan_out_mult", fan_out_mult)
        object.__setattr__(self, "width_mult", width[self.role])

    @property
    def is_vector(self) -> bool:
        """No fan-in axes: a bias or a norm gain (its own constants key ``"vector"``)."""
        return not self.fan_in

    @property
    def fan_in_size(self) -> int:
        """The product of the fan-in axes' sizes at the target width."""
        return math.prod(self.shape[a] for a in self.fan_in)

    @property
    def fan_out_size(self) -> int:
        """The product of the fan-out axes' sizes at the target width."""
        return math.prod(self.shape[a] for a in self.fan_out)

    @property
    def fan_axes(self) -> FanAxes:
        return FanAxes(self.fan_in, self.fan_out, self.stacked)

    def to_json(self) -> dict[str, Any]:
        data = {
            "path": self.path,
            "shape": list(self.shape),
            "base_shape": list(self.base_shape),
            "role": self.role,
            "fan_in": list(self.fan_in),
            "fan_out": list(self.fan_out),
        }
        if self.stacked:
            data["stacked"] = list(self.stacked)
        if self.block is not None:
            data.update(block=self.block, depth_mult=self.depth_mult)
        if self.gain_of is not None:
            data["gain_of"] = self.gain_of
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParamSpec:
        return cls(
            path=data["path"],
            shape=tuple(data["shape"]),
            base_shape=tuple(data["base_shape"]),
            role=data["role"],
            fan_in=tuple(data["fan_in"]),
            fan_out=tuple(data["fan_out"]),
            stacked=tuple(data.get("stacked", ())),
            block=data.get("block"),
            depth_mult=data.get("depth_mult", 1.0),
            gain_of=data.get("gain_of"),
        )


def _group_mult(shape: tuple[int, ...], base: tuple[int, ...], axes: tuple[int, ...]) -> float:
    """``prod(shape[i] / base[i])`` over ``axes`` (exactly 1.0 where they agree)."""
    num = math.prod(shape[i] for i in axes)
    den = math.prod(base[i] for i in axes)
    return 1.0 if num == den else num / den


def _shape_of(leaf: Any, path: str, what: str) -> tuple[int, ...]:
    if not hasattr(leaf, "shape"):
        raise ValueError(f"{what} tree: leaf {path} has no shape (got {type(leaf).__name__}).")
    return tuple(int(d) for d in leaf.shape)


def _shapes(tree: Any, what: str) -> dict[str, tuple[int, ...]]:
    return {path: _shape_of(leaf, path, what) for path, leaf in flatten_with_paths(tree, what)}


def _check_same_paths(ref: dict[str, Any], other: dict[str, Any], ref_name: str, other_name: str) -> None:
    missing = [p for p in ref if p not in other]
    extra = [p for p in other if p not in ref]
    if missing or extra:
        raise ValueError(
            f"the {other_name} tree does not match the {ref_name} tree: "
            f"missing {missing[:5]}, extra {extra[:5]}."
        )


def infer_spec(
    base: Any,
    delta: Any,
    target: Any,
    fan_axes: Any = None,
    *,
    roles: Mapping[str, str] | None = None,
    fixed: str = "vectors",
    integer_ratios: bool = True,
) -> dict[str, ParamSpec]:
    """Infer every parameter's :class:`ParamSpec` from its shapes at three widths (and depths).

    Args:
      base: shapes at the base width(s): any pytree whose leaves have ``.shape`` (the output of
        ``jax.eval_shape``, unboxed, e.g. by :func:`paramlab.nn.split_fan_axes`).
      delta: shapes at other widths; an axis is a width iff its size differs from ``base``.
      target: shapes at the target width(s).
      fan_axes: ``None`` or a tree matching ``target`` of :class:`~paramlab.nn.FanAxes` /
        ``None`` leaves (``None``: :func:`paramlab.nn.default_fan_axes`).
      roles: optional ``{path: role}`` overriding the inferred role of these parameters (any of
        ``"embedding"``, ``"hidden"``, ``"readout"``, ``"fixed"``); every path must exist.
      fixed: which parameters without a width axis are accepted as ``"fixed"``: ``"vectors"``
        (no fan-in or rank <= 1, the default), ``"all"``, or ``"error"`` (none; mark them with
        ``roles``).
      integer_ratios: require every width axis's ``target / base`` or ``base / target`` to be an
        integer (a target narrower than the base is legitimate: the formulas hold for any ratio).

    Returns ``{path: ParamSpec}`` in the target tree's flatten order. A ``ValueError`` names the path
    of whatever does not fit: trees of other structure or ranks, a non-integer ratio, an axis that
    changes between base and target but not between base and delta, a width axis that is neither
    fan-in nor fan-out, an unaccepted fixed parameter, an unknown path or role, or no width axis; and
    (depth, :mod:`.blocks`) a residual block that differs from its group's first block.
    """
    if fixed not in _FIXED_POLICIES:
        raise ValueError(f"fixed must be one of {_FIXED_POLICIES}, got {fixed!r}.")
    target_shapes = _shapes(target, "target")
    groups, canonical, base_shapes, delta_shapes = _matched_shapes(base, delta, target_shapes)
    resolved = resolve_fan_axes(target, fan_axes)
    axes_by_path = dict(flatten_with_paths(resolved, "fan_axes"))
    roles = dict(roles or {})
    unknown = sorted(set(roles) - set(target_shapes))
    if unknown:
        raise ValueError(f"roles names parameters that do not exist: {unknown[:5]}.")
    infinite = {
        path: _infinite_axes(
            path,
            base_shapes[c],
            delta_shapes[c],
            target_shapes[path],
            axes_by_path[path].stacked,
            integer_ratios,
        )
        for path, c in canonical.items()
    }
    if not any(infinite.values()):
        raise ValueError(
            "no parameter has a width axis: the delta shapes equal the base shapes everywhere "
            "(vary at least one width between the base and delta models)."
        )
    gains = weight_norm_gains(target_shapes)
    return {
        path: _build_spec(
            path,
            shape,
            base_shapes[canonical[path]],
            axes_by_path[path],
            infinite[path],
            roles.get(path),
            fixed,
            groups,
            gains.get(path),
        )
        for path, shape in target_shapes.items()
    }


def _build_spec(
    path: str,
    shape: tuple[int, ...],
    base_shape: tuple[int, ...],
    axes: FanAxes,
    infinite: tuple[int, ...],
    role: str | None,
    fixed: str,
    groups: Mapping,
    gain_of: str | None,
) -> ParamSpec:
    """One parameter's spec: its role (given, else inferred), its depth ratio (block group) and the
    direction it is the weight-norm gain of, if any."""
    role = role or _infer_role(path, shape, infinite, axes, fixed)
    block, depth_mult = _depth_of(path, shape, base_shape, axes.stacked, groups)
    return ParamSpec(
        path, shape, base_shape, role, axes.fan_in, axes.fan_out, axes.stacked, block, depth_mult, gain_of
    )


def _matched_shapes(base: Any, delta: Any, target_shapes: dict[str, tuple[int, ...]]) -> tuple:
    """The block groups, each target path's canonical path, and the base and delta shapes keyed by
    canonical path (checked to hold the target's parameters)."""
    base_shapes, delta_shapes = _shapes(base, "base"), _shapes(delta, "delta")
    groups = find_block_groups(base_shapes, delta_shapes, target_shapes)
    canonical = canonical_paths(target_shapes, groups)
    base_shapes = _canonical(base_shapes, groups)
    delta_shapes = _canonical(delta_shapes, groups)
    _check_same_paths(set(canonical.values()), base_shapes, "target", "base")
    _check_same_paths(set(canonical.values()), delta_shapes, "target", "delta")
    return groups, canonical, base_shapes, delta_shapes


def _canonical(shapes: dict[str, tuple[int, ...]], groups: Mapping) -> dict[str, tuple[int, ...]]:
    """One entry per parameter of a block group's first block (all blocks are checked equal)."""
    return {canonical: shapes[path] for path, canonical in canonical_paths(shapes, groups).items()}


def _depth_of(
    path: str,
    shape: tuple[int, ...],
    base_shape: tuple[int, ...],
    stacked: tuple[int, ...],
    groups: Mapping,
) -> tuple[str | None, float]:
    """``(block, depth_mult)``: the unrolled group's, or a stacked parameter's (its top module)."""
    group = group_of(path, groups)
    if group is not None:
        return group.name, group.depth_mult
    if stacked:
        return path.split("/")[0], stacked_depth_mult(path, shape, base_shape, stacked)
    return None, 1.0


def _infinite_axes(
    path: str,
    base: tuple[int, ...],
    delta: tuple[int, ...],
    target: tuple[int, ...],
    stacked: tuple[int, ...],
    integer_ratios: bool,
) -> tuple[int, ...]:
    if not len(base) == len(delta) == len(target):
        raise ValueError(
            f"parameter {path}: ranks differ between base {base}, delta {delta} and target {target}."
        )
    infinite = []
    for axis, (d0, dd, d) in enumerate(zip(base, delta, target)):
        if axis in stacked:
            continue  # a layer axis: its size is a depth, never a width
        if dd != d0:
            if integer_ratios and max(d, d0) % min(d, d0):
                raise ValueError(
                    f"parameter {path}: axis {axis} goes from {d0} (base) to {d} (target), not an "
                    "integer ratio either way (pass integer_ratios=False to allow it)."
                )
            infinite.append(axis)
        elif d != d0:
            raise ValueError(
                f"parameter {path}: axis {axis} is {d0} at base and delta but {d} at the target: the "
                "delta model must vary every width the target changes."
            )
    return tuple(infinite)


def _infer_role(path: str, shape: tuple[int, ...], infinite: tuple[int, ...], axes: Any, fixed: str) -> str:
    stray = sorted(set(infinite) - set(axes.fan_in) - set(axes.fan_out))
    if stray:
        raise ValueError(
            f"parameter {path} of shape {shape}: width axes {stray} are neither fan-in {axes.fan_in} nor "
            f"fan-out {axes.fan_out}; declare them (paramlab.nn.with_fan_axes / nnx.Param metadata)."
        )
    inf_in = any(a in infinite for a in axes.fan_in)
    inf_out = any(a in infinite for a in axes.fan_out)
    if inf_in:
        return "hidden" if inf_out else "readout"
    if inf_out:
        return "embedding"
    if fixed == "all" or (fixed == "vectors" and (not axes.fan_in or len(shape) - len(axes.stacked) <= 1)):
        return FIXED
    raise ValueError(
        f"parameter {path} of shape {shape} has no width axis (fan-in {axes.fan_in}, fan-out "
        f"{axes.fan_out}), so no parametrization can classify it; if that is intended mark it with "
        f"roles={{{path!r}: 'fixed'}} or pass fixed='all', else vary its width in the delta model."
    )

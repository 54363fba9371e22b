"""Residual blocks across depths: which parameters are inside a block, and the depth ratio ``r_L``.

Depth is inferred like width (``docs/reference.md`` §7), from the same base / delta / target models:

* **Unrolled blocks** are sibling modules named ``<prefix><i>`` (``block_0 … block_{L-1}``, or
  ``blocks/0 …`` from a list) whose number differs between the base model and the delta or target
  model. Every block of a group must hold the same parameters with the same shapes as the group's
  first block (they are copies of one layer at one width); a parameter of block ``i`` is matched to
  the same parameter of the first block in the other models. Its depth ratio is
  ``r_L = L_target / L_base``.
* **Stacked blocks** (``nn.scan``) keep one parameter per layer kind with a leading *stacked* axis
  (:class:`~paramlab.optim.FanAxes` ``stacked``). A stacked axis is never a width; when its size
  differs between the models it is a depth and ``r_L`` is the ratio of its sizes.

Parameters outside any block (embeddings, final norm, readout) get ``r_L = 1`` and no depth factor.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

__all__ = ["BlockGroup", "canonical_paths", "find_block_groups", "group_of", "stacked_depth_mult"]

_INDEXED = re.compile(r"^(?P<prefix>.*?)(?P<index>\d+)$")
Shapes = Mapping[str, tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class BlockGroup:
    """Unrolled residual blocks ``<parent>/<prefix><i>``.

    Attributes:
      parent: the path of the module holding the blocks (``""`` at the top level).
      prefix: the blocks' name before the index (``"block_"``).
      counts: the number of blocks in the base, delta and target models.
    """

    parent: str
    prefix: str
    counts: tuple[int, int, int]

    @property
    def name(self) -> str:
        """The group's name as the plan reports it: ``parent/prefix`` without a trailing ``_``."""
        stem = self.prefix.rstrip("_") or "blocks"
        return f"{self.parent}/{stem}" if self.parent else stem

    @property
    def depth_mult(self) -> float:
        """``r_L = L_target / L_base`` (exactly 1.0 when they agree)."""
        base, _, target = self.counts
        return 1.0 if base == target else target / base


def _block_of(path: str) -> tuple[str, str, int, str] | None:
    """``(parent, prefix, index, rest)`` for the first indexed component of ``path`` with a rest."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        match = _INDEXED.match(part)
        if match:
            parent = "/".join(parts[:i])
            return parent, match["prefix"], int(match["index"]), "/".join(parts[i + 1 :])
    return None


def _indices(shapes: Shapes) -> dict[tuple[str, str], dict[int, dict[str, tuple[int, ...]]]]:
    """``{(parent, prefix): {index: {rest: shape}}}`` of every indexed module in one tree."""
    found: dict[tuple[str, str], dict[int, dict[str, tuple[int, ...]]]] = {}
    for path, shape in shapes.items():
        block = _block_of(path)
        if block is not None:
            parent, prefix, index, rest = block
            found.setdefault((parent, prefix), {}).setdefault(index, {})[rest] = shape
    return found


def find_block_groups(base: Shapes, delta: Shapes, target: Shapes) -> dict[tuple[str, str], BlockGroup]:
    """The unrolled block groups whose count differs between the models (module docstring).

    Raises ``ValueError`` naming the block whose parameters differ from its group's first block, or a
    group with no block in the base model.
    """
    trees = {"base": _indices(base), "delta": _indices(delta), "target": _indices(target)}
    keys = set().union(*trees.values())
    groups = {}
    for key in sorted(keys):
        counts = tuple(len(trees[which].get(key, {})) for which in ("base", "delta", "target"))
        if len(set(counts)) == 1:
            continue
        group = BlockGroup(key[0], key[1], counts)
        if counts[0] == 0:
            raise ValueError(
                f"residual blocks {group.name}: the base model has none (delta {counts[1]}, target "
                f"{counts[2]}); the base model must have at least one block."
            )
        for which, found in trees.items():
            _check_identical_blocks(group, found.get(key, {}), which)
        groups[key] = group
    return groups


def _check_identical_blocks(group: BlockGroup, blocks: dict[int, dict[str, tuple[int, ...]]], which: str):
    if not blocks:
        return
    first = min(blocks)
    reference = blocks[first]
    for index, params in sorted(blocks.items()):
        if params != reference:
            differs = sorted(set(params.items()) ^ set(reference.items()))[:3]
            where = f"{group.parent}/" if group.parent else ""
            raise ValueError(
                f"residual block {where}{group.prefix}{index} of the {which} model differs from "
                f"{where}{group.prefix}{first} (parameters {differs}): the blocks of a depth must be copies "
                "of one layer; name layers that are not residual blocks without a trailing index."
            )


def canonical_paths(shapes: Shapes, groups: Mapping[tuple[str, str], BlockGroup]) -> dict[str, str]:
    """``{path: canonical path}``: a block parameter's path with its block index set to the first
    block's (the parameter it is matched with in the other models); other paths map to themselves."""
    first = {key: min(blocks) for key, blocks in _indices(shapes).items() if key in groups}
    out = {}
    for path in shapes:
        block = _block_of(path)
        if block is None or (block[0], block[1]) not in groups:
            out[path] = path
            continue
        parent, prefix, _, rest = block
        head = f"{parent}/" if parent else ""
        out[path] = f"{head}{prefix}{first[(parent, prefix)]}/{rest}"
    return out


def group_of(path: str, groups: Mapping[tuple[str, str], BlockGroup]) -> BlockGroup | None:
    """The block group holding ``path``, if any."""
    block = _block_of(path)
    return None if block is None else groups.get((block[0], block[1]))


def stacked_depth_mult(
    path: str, shape: tuple[int, ...], base: tuple[int, ...], stacked: tuple[int, ...]
) -> float:
    """``r_L`` of a stacked parameter: ``prod(shape[a] / base[a])`` over its stacked axes."""
    num, den = math.prod(shape[a] for a in stacked), math.prod(base[a] for a in stacked)
    if den <= 0 or num <= 0:
        raise ValueError(f"parameter {path}: a stacked axis has size 0 (shape {shape}, base {base}).")
    return 1.0 if num == den else num / den

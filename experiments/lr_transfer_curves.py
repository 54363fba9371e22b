"""Training curves of an LR-transfer grid, and the step from which a deeper model is ahead.

Each sweep member's train loss per step (:attr:`paramlab.sweep.SweepResult.history`) is averaged
over windows of ``every`` steps into one curve record::

    {"parametrization", "depth_rule", "width", "depth", "learning_rate", "seed",
     "step": [every, 2 every, ...], "train_loss": [...]}       # inf (null in JSON) once diverged

The *horizon* of a deeper cell is the first logged step from which its seed-mean curve at the
recipe's transferred LR (the one tuned at its smallest cell) stays below the shallowest depth's at the
same width: how long a run must be before depth pays off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.transformer_cells import member_fields
from paramlab.optim.common import sort_key
from paramlab.sweep import seed_mean

__all__ = ["curve_records", "depth_horizons", "transferred_curves"]


def curve_records(cell: Any, members: Sequence[Mapping[str, Any]], losses: np.ndarray, every: int) -> list:
    """One curve record per member from the train losses ``(steps, members)`` of one cell's sweep."""
    losses = np.asarray(losses, dtype=np.float64)
    steps = losses.shape[0]
    if losses.ndim != 2 or losses.shape[1] != len(members):
        raise ValueError(f"losses must be (steps, {len(members)} members), got {losses.shape}.")
    ends = list(range(every, steps + 1, every)) or [steps]
    if ends[-1] != steps:
        ends.append(steps)
    starts = [0, *ends[:-1]]
    out = []
    for k, member in enumerate(members):
        column = losses[:, k]
        values = []
        for a, b in zip(starts, ends):
            window = column[a:b]
            values.append(float(np.mean(window)) if np.isfinite(window).all() else math.inf)
        out.append(
            {
                **member_fields(cell, member),
                "step": ends,
                "train_loss": values,
            }
        )
    return out


def transferred_curves(curves: Sequence[Mapping[str, Any]], table: Sequence[Mapping[str, Any]]) -> list:
    """The curves at each recipe's transferred LR (``transferred_learning_rate`` of the summary's
    rows, keyed by ``recipe`` / ``width`` / ``depth``), seed-averaged: one row per cell with
    ``step`` and ``train_loss`` (``inf`` where a seed diverged)."""
    wanted = {(r["recipe"], r["width"], r["depth"]): r["transferred_learning_rate"] for r in table}
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for c in curves:
        key = (c["recipe"], c["width"], c["depth"])
        if key in wanted and wanted[key] is not None and math.isclose(c["learning_rate"], wanted[key]):
            grouped.setdefault(key, []).append(c)
    rows = []
    for (recipe, width, depth), members in sorted(grouped.items(), key=lambda kv: sort_key(kv[0])):
        mean = seed_mean([[math.inf if v is None else v for v in m["train_loss"]] for m in members])
        rows.append(
            {
                "recipe": recipe,
                "width": width,
                "depth": depth,
                "learning_rate": wanted[(recipe, width, depth)],
                "seeds": len(members),
                "step": list(members[0]["step"]),
                "train_loss": [float(v) for v in mean],
            }
        )
    return rows


def depth_horizons(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per recipe, width and deeper depth: ``ahead_from_step``, the first logged step from which the
    seed-mean curve stays below the shallowest depth's (``None`` if it never does), and the final gap
    ``final_train_loss_gap`` (deeper minus shallowest; negative when depth helps)."""
    by_family: dict[tuple, dict[int, Mapping[str, Any]]] = {}
    for r in rows:
        by_family.setdefault((r["recipe"], r["width"]), {})[r["depth"]] = r
    out = []
    for (recipe, width), by_depth in sorted(by_family.items(), key=lambda kv: sort_key(kv[0])):
        shallow = by_depth[min(by_depth)]
        for depth in sorted(by_depth)[1:]:
            deep = by_depth[depth]
            gap = np.asarray(deep["train_loss"]) - np.asarray(shallow["train_loss"])
            behind = np.flatnonzero(~(gap < 0))
            first = 0 if behind.size == 0 else int(behind[-1]) + 1
            ahead = deep["step"][first] if first < len(gap) else None
            out.append(
                {
                    "recipe": recipe,
                    "width": width,
                    "shallow_depth": min(by_depth),
                    "depth": depth,
                    "learning_rate": deep["learning_rate"],
                    "ahead_from_step": ahead,
                    "final_train_loss_gap": float(gap[-1]),
                }
            )
    return out

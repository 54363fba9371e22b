"""Learning-rate sensitivity (Wortsman et al., ICLR 2024, §3.2; ``docs/reference.md`` §8).

``sensitivity = mean_k min(L(eta_k), L0) - min_k L(eta_k)`` over an LR grid, ``L0`` the loss at init:
a diverged run counts as having learned nothing, small is good, and ``nan`` when no grid point has a
finite loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramlab.optim.common import sort_key
from paramlab.sweep.results import mean_over_seeds

__all__ = ["lr_sensitivity", "lr_sensitivity_table"]


def lr_sensitivity(losses: Sequence[float], loss_init: float) -> float:
    """``mean_k min(L_k, L0) - min_k min(L_k, L0)`` over the grid's final losses ``L_k``.

    Args:
      losses: the final loss at each grid learning rate (``inf``/``nan`` for a diverged run).
      loss_init: ``L0``, the loss at initialization (finite).

    Returns:
      The sensitivity (``>= 0``), or ``nan`` if no loss is finite.
    """
    if not math.isfinite(float(loss_init)):
        raise ValueError(f"loss_init must be finite, got {loss_init!r}.")
    values = np.asarray(losses, np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D sequence, got shape {values.shape}.")
    finite = np.isfinite(values)
    if not finite.any():
        return math.nan
    clipped = np.where(finite, np.minimum(values, loss_init), loss_init)
    return float(np.mean(clipped) - np.min(clipped))


def lr_sensitivity_table(
    records: Sequence[Mapping[str, Any]],
    group_by: Sequence[str],
    x: str = "learning_rate",
    y: str = "final_loss",
    y_init: str = "initial_loss",
) -> list[dict[str, Any]]:
    """:func:`lr_sensitivity` per group of sweep records (e.g. per parametrization and width).

    Losses are first averaged over seeds (records sharing ``group_by`` and ``x``; a diverged seed
    makes the mean ``inf``); ``L0`` is the mean of ``y_init`` over the group's records.

    Returns:
      One row per group, sorted: the ``group_by`` values, ``lr_sensitivity``, ``loss_init`` and
      ``n_grid``.
    """
    if not records:
        raise ValueError("records is empty.")
    curves = mean_over_seeds(records, (*group_by, x), y)
    inits = mean_over_seeds(records, tuple(group_by), y_init)
    grouped: dict[tuple, list[float]] = {}
    for key, value in curves.items():
        grouped.setdefault(key[:-1], []).append(value)
    rows = []
    for key in sorted(grouped, key=sort_key):
        rows.append(
            {
                **dict(zip(group_by, key)),
                "lr_sensitivity": lr_sensitivity(grouped[key], inits[key]),
                "loss_init": inits[key],
                "n_grid": len(grouped[key]),
            }
        )
    return rows

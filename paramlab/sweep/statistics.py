"""Seed statistics of a sweep's optimum: the loss spread at the best grid point and a fitted optimum.

The optimum of a swept hyperparameter ``x`` (a learning rate) is located more finely than the grid
by a parabola in ``log2 x`` through the seed-mean loss at the grid minimum and its two neighbours;
its spread is the standard deviation of that vertex over bootstrap resamples of the seeds.
Specified in ``docs/training.md`` §9.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramlab.optim.common import sort_key
from paramlab.sweep.results import _require

__all__ = ["fitted_log2_optimum", "optimum_statistics", "seed_mean", "seed_std"]


def fitted_log2_optimum(grid: Sequence[float], losses: Sequence[float]) -> float | None:
    r"""The vertex ``log2 x*`` of the parabola through the grid minimum of ``losses`` and its neighbours.

    With ``u = log2 x`` and the three points ``(u_i, y_i)`` around the finite minimum, the parabola
    ``y = a u^2 + b u + c`` has its vertex at ``u* = -b / (2a)``. ``None`` where the minimum is at the
    edge of the grid, a neighbour is not finite, or the curvature ``a`` is not positive: then the
    grid does not bracket an optimum.
    """
    u = np.log2(np.asarray(grid, dtype=np.float64))
    y = np.asarray(losses, dtype=np.float64)
    if u.shape != y.shape or u.ndim != 1:
        raise ValueError(f"grid and losses must be 1-D of one length, got {u.shape} and {y.shape}.")
    finite = np.isfinite(y)
    if not finite.any():
        return None
    i = int(np.argmin(np.where(finite, y, np.inf)))
    if i == 0 or i == len(y) - 1 or not finite[i - 1 : i + 2].all():
        return None
    a, b, _ = np.polyfit(u[i - 1 : i + 2], y[i - 1 : i + 2], 2)
    if not a > 0:
        return None
    return float(-b / (2 * a))


def optimum_statistics(
    records: Sequence[Mapping[str, Any]],
    group_by: Sequence[str],
    x: str = "learning_rate",
    y: str = "final_loss",
    n_bootstrap: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per group: ``best_<y>_std``, ``fitted_<x>`` and ``fitted_log2_<x>_std``, sorted by the group.

    ``best_<y>_std`` is the standard deviation over seeds (``ddof=1``; 0 with one seed) of ``y`` at
    the grid point of lowest seed-mean ``y``; ``fitted_<x>`` is ``2 ** u*`` from
    :func:`fitted_log2_optimum` on the seed-mean curve; ``fitted_log2_<x>_std`` the standard deviation
    of ``u*`` over ``n_bootstrap`` resamples of the seeds (with replacement; resamples without a
    bracketed optimum are dropped; ``None`` with one seed or none left). A diverged seed (``y``
    ``None`` or not finite) makes its grid point's mean ``inf``.

    Raises:
      ValueError: a record lacks a key, or the seeds differ between grid points of one group.
    """
    rows = []
    for key, (grid, losses) in sorted(_seed_curves(records, group_by, x, y).items(), key=_by_key):
        mean = seed_mean(losses)
        finite = np.isfinite(mean)
        best = int(np.argmin(np.where(finite, mean, np.inf))) if finite.any() else None
        spread = None if best is None else float(seed_std(losses[:, best]))
        vertex = fitted_log2_optimum(grid, mean)
        rows.append(
            {
                **dict(zip(group_by, key)),
                f"best_{y}_std": spread,
                f"fitted_{x}": None if vertex is None else float(2.0**vertex),
                f"fitted_log2_{x}_std": _bootstrap_std(grid, losses, n_bootstrap, seed),
            }
        )
    return rows


def _by_key(item: tuple[tuple, Any]) -> Any:
    return sort_key(item[0])


def _seed_key(seed: Any) -> Any:
    return sort_key((seed,))


def _seed_curves(
    records: Sequence[Mapping[str, Any]], group_by: Sequence[str], x: str, y: str
) -> dict[tuple, tuple[list[float], np.ndarray]]:
    """``{group: (sorted x grid, losses[seed, grid point])}``."""
    table: dict[tuple, dict[float, dict[Any, float]]] = {}
    for record in records:
        _require(record, (*group_by, x, y, "seed"))
        value = math.inf if record[y] is None else float(record[y])
        group = table.setdefault(tuple(record[k] for k in group_by), {})
        group.setdefault(float(record[x]), {})[record["seed"]] = value
    curves = {}
    for key, by_x in table.items():
        grid = sorted(by_x)
        seeds = sorted(by_x[grid[0]], key=_seed_key)
        if any(sorted(by_x[g], key=_seed_key) != seeds for g in grid):
            raise ValueError(f"group {key} has different seeds at different {x} values.")
        curves[key] = (grid, np.array([[by_x[g][s] for g in grid] for s in seeds]))
    return curves


def seed_mean(values: np.ndarray) -> np.ndarray:
    """The mean over axis 0 (the seeds) of ``values``; ``inf`` wherever a seed is not finite."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    return np.where(finite.all(axis=0), np.mean(np.where(finite, values, 0.0), axis=0), np.inf)


def seed_std(values: Any, axis: int = 0) -> Any:
    """The sample standard deviation over seeds (``ddof=1``; 0 with one seed) along ``axis``: the
    spread every paramlab summary reports as ``± std``. ``nan`` entries propagate."""
    values = np.asarray(values, dtype=np.float64)
    return np.std(values, axis=axis, ddof=min(1, values.shape[axis] - 1))


def _bootstrap_std(grid: list[float], losses: np.ndarray, n_bootstrap: int, seed: int) -> float | None:
    n_seeds = losses.shape[0]
    if n_seeds < 2:
        return None
    rng = np.random.default_rng(seed)
    vertices = [
        fitted_log2_optimum(grid, seed_mean(losses[rng.integers(0, n_seeds, n_seeds)]))
        for _ in range(n_bootstrap)
    ]
    kept = [v for v in vertices if v is not None]
    return float(np.std(kept)) if len(kept) >= 2 else None

"""Sweep results as a table of records: JSON and CSV files, seed averages, optima, text tables.

Specified in ``docs/training.md`` §9.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from paramlab.optim.common import sort_key, strict_json

__all__ = [
    "format_table",
    "load_records",
    "mean_over_seeds",
    "optimal_settings",
    "optimum_shift",
    "save_records",
    "strict_json",
]


def save_records(
    records: Sequence[Mapping[str, Any]],
    json_path: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
) -> None:
    """Write ``records`` as a JSON list (and, with ``csv_path``, as CSV with one column per key).

    The JSON is strict (:func:`strict_json`: a diverged member's ``inf`` losses are ``null``, its
    ``diverged`` field says why); the CSV keeps ``inf``. Its columns are the union of the records'
    keys in first-seen order; a missing value is empty.
    """
    records = [_plain_record(r) for r in records]
    with open(json_path, "w") as f:
        json.dump(strict_json(records), f, indent=1, allow_nan=False)
        f.write("\n")
    if csv_path is not None:
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(records)


def load_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read records written by :func:`save_records` (``.json``; ``.csv`` values parse as int, float, bool)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"results file {path!r} does not exist.")
    if path.endswith(".csv"):
        with open(path, newline="") as f:
            return [{k: _parse_csv_value(v) for k, v in row.items()} for row in csv.DictReader(f)]
    with open(path) as f:
        records = json.load(f)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"results file {path!r} is not a JSON list of records.")
    return records


def mean_over_seeds(
    records: Iterable[Mapping[str, Any]], keys: Sequence[str], y: str = "final_loss"
) -> dict[tuple, float]:
    """``{values of keys: mean of y}`` over the records sharing those values (typically all but the seed).

    A non-finite or ``None`` ``y`` (a diverged seed) makes the mean ``inf``.

    Raises:
      ValueError: a record lacks one of ``keys`` or ``y``.
    """
    groups: dict[tuple, list[float]] = {}
    for record in records:
        _require(record, (*keys, y))
        value = math.inf if record[y] is None else float(record[y])
        groups.setdefault(tuple(record[k] for k in keys), []).append(value)
    return {k: (float(np.mean(v)) if all(map(math.isfinite, v)) else math.inf) for k, v in groups.items()}


def optimal_settings(
    records: Sequence[Mapping[str, Any]],
    group_by: Sequence[str],
    x: str = "learning_rate",
    y: str = "final_loss",
) -> list[dict[str, Any]]:
    """The best ``x`` per group: one row per distinct ``group_by`` value, sorted by it.

    Each row holds the ``group_by`` values, ``best_<x>`` (``None`` if every ``x`` diverged),
    ``best_<y>`` (the seed-mean of ``y`` there, ``inf`` if none), ``<x>_index`` (the position of the
    best ``x`` in the sorted distinct ``x`` values of the whole table; ``None`` if none),
    ``at_grid_edge`` (the best ``x`` is the smallest or largest of the grid: the true optimum may lie
    outside it) and ``n_diverged`` (grid points with a diverged seed) out of ``n_grid``.
    """
    if not records:
        raise ValueError("records is empty.")
    means = mean_over_seeds(records, (*group_by, x), y)
    grid = sorted({float(key[-1]) for key in means})
    groups: dict[tuple, dict[float, float]] = {}
    for key, value in means.items():
        groups.setdefault(key[:-1], {})[float(key[-1])] = value
    rows = []
    for key in sorted(groups, key=sort_key):
        curve = groups[key]
        finite = {xv: yv for xv, yv in curve.items() if math.isfinite(yv)}
        best = min(finite, key=finite.get) if finite else None
        rows.append(
            {
                **dict(zip(group_by, key)),
                f"best_{x}": best,
                f"best_{y}": finite[best] if finite else math.inf,
                f"{x}_index": grid.index(best) if finite else None,
                "at_grid_edge": bool(finite) and len(grid) > 1 and best in (grid[0], grid[-1]),
                "n_diverged": len(curve) - len(finite),
                "n_grid": len(curve),
            }
        )
    return rows


def optimum_shift(
    rows: Sequence[Mapping[str, Any]], family: Sequence[str], x: str = "learning_rate"
) -> dict[tuple, int | None]:
    """How many grid steps the optimum moves within each family (e.g. across widths).

    ``rows`` come from :func:`optimal_settings`; a family is the rows sharing the ``family`` values
    (e.g. ``("parametrization", "optimizer")``). The shift is ``max - min`` of their ``<x>_index``;
    ``None`` if some row has no optimum, or if the family has a single row (one width gives no shift).
    """
    indices: dict[tuple, list] = {}
    for row in rows:
        _require(row, (*family, f"{x}_index"))
        indices.setdefault(tuple(row[k] for k in family), []).append(row[f"{x}_index"])
    return {
        k: (None if len(v) < 2 or any(i is None for i in v) else int(max(v) - min(v)))
        for k, v in sorted(indices.items(), key=lambda kv: sort_key(kv[0]))
    }


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table of ``rows`` (floats in ``%.4g``), header first."""
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    cells = [[_format_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _require(record: Mapping[str, Any], keys: Iterable[str]) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"record {dict(record)!r} lacks the keys {missing}.")


def _plain_record(record: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in record.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)) or (isinstance(v, np.ndarray) and v.ndim == 0):
            out[k] = float(v)
        else:
            out[k] = v
    return out


def _format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _parse_csv_value(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text

"""Metrics as JSON lines, a progress bar, and the loss-curve plot.

Specified in ``docs/training.md`` §10.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from paramlab.optim.common import strict_json

__all__ = ["MetricsWriter", "plot_loss_curve", "progress_bar", "read_metrics"]


class MetricsWriter:
    """Append JSON-line records to ``path``.

    Args:
      path: the ``.jsonl`` file (its directory must exist).
      resume_step: keep the records with ``step <= resume_step`` already in the file (a resumed run);
        ``None`` starts the file empty (a fresh run).
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = os.fspath(path)
        kept = [] if resume_step is None else [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        with open(self.path, "w") as f:
            f.writelines(_dumps(r) + "\n" for r in kept)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (must have an integer ``step``); values are converted to Python floats."""
        if "step" not in record:
            raise ValueError(f"metrics record has no 'step': {sorted(record)}.")
        with open(self.path, "a") as f:
            f.write(_dumps(record) + "\n")

    def close(self) -> None:
        """Nothing to release: every record is appended and closed at once."""


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics file (missing file: none), skipping a torn or unparsable line."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


def progress_bar(total: int, initial: int = 0, disable: bool = False) -> tqdm:
    """A tqdm bar over optimizer steps (rate and ETA on stderr)."""
    return tqdm(total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True, smoothing=0.1)


def plot_loss_curve(
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    reference: float | None = None,
    reference_label: str = "unigram entropy",
    title: str = "",
) -> None:
    """Train and eval loss against step, saved as a PNG (matplotlib's Agg backend, no display).

    Args:
      records: metrics records (train records have ``loss``, eval records ``eval_loss``).
      path: the ``.png`` file to write.
      reference: an optional horizontal line (e.g. the corpus's unigram entropy, same units).
      reference_label: its legend label.
      title: the figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, label, style in (("loss", "train", "-"), ("eval_loss", "eval", "o-")):
        points = _series(records, key)
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, style, label=label, markersize=3)
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle="--", label=f"{reference_label} ({reference:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)


def _series(records: Iterable[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if r.get(key) is not None and math.isfinite(r[key])]


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(strict_json({k: _plain(v) for k, v in record.items()}), allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)

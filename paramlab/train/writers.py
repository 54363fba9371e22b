"""Where a run's metrics go: ``metrics.jsonl`` always, TensorBoard event files when asked.

``metrics.jsonl`` is the record a run resumes from and plots (:class:`~paramlab.train.metrics.MetricsWriter`);
TensorBoard (through ``tensorboardX``, which needs neither TensorFlow nor a pinned JAX) is a view of the
same records. Only the primary process writes. Specified in ``docs/training.md`` §10.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from typing import Any, Protocol

from paramlab.train.metrics import MetricsWriter

__all__ = ["MetricWriter", "TensorBoardWriter", "check_tensorboard", "open_writers"]

TENSORBOARD_DIR = "tensorboard"


class MetricWriter(Protocol):
    """Takes metrics records (dicts with an integer ``step``)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def check_tensorboard() -> None:
    """A ``ValueError`` saying how to install ``tensorboardX`` when it is missing."""
    if importlib.util.find_spec("tensorboardX") is None:
        raise ValueError("tensorboard=True needs tensorboardX: pip install 'paramlab[tensorboard]'.")


class TensorBoardWriter:
    """Every finite number of a record as a TensorBoard scalar at the record's step.

    Args:
      logdir: the event-file directory.
      resume_step: on a resumed run, events after this step (written before an interruption, then
        trained again) are purged, as ``metrics.jsonl`` drops them; ``None``: a fresh run.
    """

    def __init__(self, logdir: str | os.PathLike, resume_step: int | None = None):
        check_tensorboard()
        from tensorboardX import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(os.fspath(logdir), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    self._writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self._writer.close()


class _Fanout:
    """Writes each record to every writer."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def write(self, record: dict[str, Any]) -> None:
        for writer in self.writers:
            writer.write(record)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def open_writers(
    metrics_path: str | os.PathLike, *, resume_step: int | None, tensorboard: bool, primary: bool = True
) -> MetricWriter:
    """The run's writer: JSONL at ``metrics_path`` (plus TensorBoard beside it); nothing off the primary."""
    if not primary:
        return _Fanout([])
    writers: list[MetricWriter] = [MetricsWriter(metrics_path, resume_step=resume_step)]
    if tensorboard:
        logdir = os.path.join(os.path.dirname(os.fspath(metrics_path)), TENSORBOARD_DIR)
        writers.append(TensorBoardWriter(logdir, resume_step=resume_step))
    return _Fanout(writers)

"""Users' own input pipelines as paramlab batch iterators: :class:`GrainBatches` for grain.

The training loop needs a batch iterator whose position is a JSON-able value, saved with every
checkpoint (:class:`paramlab.train.StatefulIterator`). A grain ``DatasetIterator`` already keeps its
position as a small dict (``{"next_index": n}`` for a ``MapDataset`` pipeline), so a grain pipeline
resumes exactly: the checkpoint's ``data`` item holds that dict and :meth:`GrainBatches.set_state`
hands it back to grain. grain is an optional dependency (``pip install 'paramlab[grain]'``).
Specified in ``docs/training.md`` §7.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

__all__ = ["GrainBatches"]


class GrainBatches:
    """Batches from a grain pipeline, with grain's own checkpointable position.

    Args:
      dataset: a ``grain.MapDataset`` (made an ``IterDataset`` here), a ``grain.IterDataset``, or an
        iterator of either (a ``grain.DatasetIterator``). Each element is one batch: a pytree of arrays
        with a leading batch axis (``.batch(n)`` in the pipeline). A ``MapDataset`` that should run
        for more than one epoch needs ``.repeat()``.
    """

    def __init__(self, dataset: Any):
        self._iterator = _dataset_iterator(dataset)

    def __iter__(self) -> GrainBatches:
        return self

    def __next__(self) -> Any:
        return jax.tree.map(np.asarray, next(self._iterator))

    def get_state(self) -> Any:
        """grain's position, checked to be JSON (what the checkpoint's ``data`` item stores)."""
        state = self._iterator.get_state()
        try:
            json.dumps(state)
        except TypeError as e:
            raise ValueError(
                f"GrainBatches: the grain iterator's state is not JSON ({e}); use a grain dataset "
                "pipeline (MapDataset / IterDataset), whose iterators keep a JSON position."
            ) from e
        return state

    def set_state(self, state: Any) -> None:
        self._iterator.set_state(state)


def _dataset_iterator(dataset: Any) -> Any:
    try:
        import grain
    except ImportError as e:
        raise ValueError("GrainBatches needs grain: pip install 'paramlab[grain]'.") from e
    if isinstance(dataset, grain.MapDataset):
        dataset = dataset.to_iter_dataset()
    if isinstance(dataset, grain.IterDataset):
        return iter(dataset)
    if isinstance(dataset, grain.DatasetIterator):
        return dataset
    raise ValueError(
        f"GrainBatches: dataset must be a grain MapDataset, IterDataset or DatasetIterator, got "
        f"{type(dataset).__name__}."
    )

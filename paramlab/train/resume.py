"""Which checkpoint a run continues from: the newest one that verifies, never a corrupt one.

Specified in ``docs/training.md`` §3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from paramlab.train.checkpoint import Checkpointer, CheckpointError, CorruptCheckpoint
from paramlab.train.state import TrainState

__all__ = ["newest_intact_step", "resume_newest_intact"]


def resume_newest_intact(
    ckpt: Checkpointer,
    abstract: TrainState,
    *,
    train_batches: Any,
    plan: Any,
    run_config: Mapping,
    resume_mutable: Iterable[str],
    log: Callable[[str], None],
) -> tuple[int | None, TrainState | None]:
    """``(step, state)`` of the newest checkpoint that verifies, with ``train_batches`` set to its position.

    Corrupt checkpoints are moved aside (``<step>.corrupt``) with a warning. ``(None, None)`` with no
    checkpoint at all; a :class:`CheckpointError` when every one is corrupt, or when the newest intact one
    was written by another config or plan.
    """
    steps = ckpt.all_steps()
    for step in reversed(steps):
        try:
            restored = ckpt.restore(
                step, abstract, config=run_config, resume_mutable=resume_mutable, plan=plan
            )
        except CorruptCheckpoint as e:
            moved = ckpt.quarantine(step)
            log(f"warning: {e} Moved it to {moved}; trying the next older checkpoint.")
            continue
        _set_iterator_state(ckpt, step, train_batches, restored.data_state)
        return step, restored.state
    if steps:
        raise CheckpointError(f"no intact checkpoint in {ckpt.directory} (tried steps {steps}); stopping.")
    return None, None


def newest_intact_step(ckpt: Checkpointer, abstract: TrainState) -> int | None:
    """The newest checkpoint whose arrays verify against their checksums (``None``: none does).

    Waits for pending saves first, so a checkpoint still being written is checked once it is complete.
    Corrupt checkpoints are left where they are (the next run moves them aside).
    """
    ckpt.wait()
    for step in reversed(ckpt.all_steps()):
        try:
            ckpt.restore(step, abstract)
        except CheckpointError:
            continue
        return step
    return None


def _set_iterator_state(ckpt: Checkpointer, step: int, train_batches: Any, data_state: Any) -> None:
    try:
        train_batches.set_state(data_state)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {ckpt.step_directory(step)}: its data-iterator state does not fit the "
            f"current data pipeline ({e})"
        ) from e

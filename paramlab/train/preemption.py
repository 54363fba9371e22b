"""Stopping on preemption: finish the step, save, exit, so that the same command continues the run.

One process: SIGTERM sets a flag checked between steps. Many processes: the signal reaches one
process at a time, so they agree on the step to stop at through JAX's preemption sync point (the
coordination service's own notifier, which ``jax.distributed.initialize`` installs). Specified in
``docs/training.md`` §2.
"""

from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils

__all__ = ["StopOnPreemption"]


class StopOnPreemption:
    """Context manager: :meth:`reached` says at which step every process should save and stop.

    In one process the SIGTERM handler is only installed in the main thread (Python delivers signals
    there); the previous handler is restored on exit.
    """

    def __init__(self):
        self._event = threading.Event()
        self._previous = None
        self._many = jax.process_count() > 1

    def reached(self, step: int) -> bool:
        """Whether the run should save and stop after ``step`` (the same answer on every process)."""
        if not self._many:
            return self._event.is_set()
        try:
            return bool(multihost_utils.reached_preemption_sync_point(step))
        except RuntimeError:  # the preemption service is disabled: nothing can be noticed
            return False

    def __enter__(self) -> StopOnPreemption:
        if not self._many and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._event.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

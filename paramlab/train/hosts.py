"""Many processes, one run: JAX's own multi-process runtime and what only the primary process does.

A multi-process run is ``jax.distributed.initialize`` in every process, then one global mesh over all
processes' devices (:func:`paramlab.train.sharding.make_mesh` sees ``jax.devices()``, which is global).
Every process executes the same program; the primary process (``jax.process_index() == 0``) alone
holds the workdir lock and writes metrics and plots, while orbax writes each checkpoint cooperatively
(every process saves its shards, the primary one the metadata). Specified in ``docs/training.md`` §13.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["initialize_distributed", "is_primary", "primary_decides", "sync"]


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (``jax.distributed.initialize``), before any other JAX call.

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordination service, or ``"auto"`` to let JAX
        detect the cluster (Cloud TPU, SLURM, Open MPI; then ``num_processes`` and ``process_id`` are
        ignored). On CPU the processes talk through gloo collectives.
      num_processes: how many processes take part (>= 1).
      process_id: this process's index in ``[0, num_processes)``.
    """
    if not isinstance(coordinator_address, str) or not coordinator_address:
        raise ValueError(f"coordinator_address must be 'host:port' or 'auto', got {coordinator_address!r}.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator_address == "auto":
        jax.distributed.initialize()
        return
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if process_id >= num_processes:
        raise ValueError(f"process_id={process_id} must be below num_processes={num_processes}.")
    if ":" not in coordinator_address:
        raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}.")
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


def is_primary() -> bool:
    """Whether this is the process that writes the run's files (process 0; always true in one process)."""
    return jax.process_index() == 0


def primary_decides(ok: bool) -> bool:
    """The primary process's ``ok``, on every process (so a refusal there stops all of them)."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


def sync(name: str) -> None:
    """Wait until every process reaches the point named ``name`` (no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)

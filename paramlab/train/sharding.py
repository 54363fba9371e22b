"""Device meshes and shardings for data-parallel and FSDP training (``jax.sharding``).

Specified in ``docs/training.md`` §4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "BATCH_AXES",
    "batch_sharding",
    "fsdp_partition_spec",
    "make_mesh",
    "replicated",
    "shard_batch",
    "tree_shardings",
]

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp)`` mesh over ``devices`` (default: all of ``jax.devices()``).

    Args:
      data: the data-parallel axis size; ``-1`` takes all the devices left after ``fsdp``.
      fsdp: the parameter-sharding axis size; ``-1`` takes all the devices left after ``data``.
      devices: the devices to use. With both sizes given, the mesh takes the first
        ``data * fsdp`` of them (e.g. ``data=fsdp=1`` is a one-device reference run).
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if data == -1 and fsdp == -1:
        raise ValueError("make_mesh: at most one of data and fsdp may be -1.")
    for name, size in (("data", data), ("fsdp", fsdp)):
        if isinstance(size, bool) or int(size) != size or (size != -1 and size < 1):
            raise ValueError(f"make_mesh: {name} must be -1 or an integer >= 1, got {size!r}.")
    other = fsdp if data == -1 else data
    if (data == -1 or fsdp == -1) and n % other:
        raise ValueError(f"make_mesh: {other} does not divide the {n} available devices.")
    data = n // fsdp if data == -1 else int(data)
    fsdp = n // data if fsdp == -1 else int(fsdp)
    if data * fsdp > n:
        raise ValueError(
            f"make_mesh: data x fsdp = {data} x {fsdp} needs more than the {n} available devices."
        )
    # jax.make_mesh orders the devices for the physical topology (TPU slices, GPU hosts); the axes are
    # Auto (the compiler propagates shardings), as every sharding paramlab places is a NamedSharding
    auto = (jax.sharding.AxisType.Auto,) * len(BATCH_AXES)
    return jax.make_mesh((data, fsdp), BATCH_AXES, devices=devices[: data * fsdp], axis_types=auto)


def replicated(mesh: Mesh) -> NamedSharding:
    """The same array on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh; other axes whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def fsdp_partition_spec(shape: Sequence[int], fsdp: int) -> PartitionSpec:
    """Split the largest axis divisible by ``fsdp`` over the ``fsdp`` mesh axis (none: replicated)."""
    if fsdp <= 1:
        return PartitionSpec()
    candidates = [(size, -axis) for axis, size in enumerate(shape) if size % fsdp == 0 and size >= fsdp]
    if not candidates:
        return PartitionSpec()
    axis = -max(candidates)[1]
    return PartitionSpec(*([None] * axis + ["fsdp"]))


def tree_shardings(mesh: Mesh, tree: Any) -> Any:
    """``NamedSharding`` s for every leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct`` s), by shape."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_partition_spec(np.shape(x), fsdp)), tree)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Place a host batch (numpy leaves with a leading batch axis) on the mesh, split over all devices.

    Every process passes the same global batch and places only the rows of its own devices
    (``jax.make_array_from_callback``), so one process and many give the same global array.
    """
    n = mesh.size
    sharding = batch_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(
                f"a batch leaf is a scalar; every leaf needs a leading batch axis for the {n} devices."
            )
        if x.shape[0] % n:
            raise ValueError(f"batch size {x.shape[0]} is not divisible by the {n} devices of the mesh.")
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, batch)

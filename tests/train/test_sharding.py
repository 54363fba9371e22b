"""Data-parallel and FSDP training on 4 CPU devices give the single-device losses."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from paramlab.train.sharding import (
    batch_sharding,
    fsdp_partition_spec,
    make_mesh,
    replicated,
    shard_batch,
    tree_shardings,
)
from paramlab.train.state import create_train_state
from paramlab.train.step import jit_train_step, make_train_step


def test_four_devices_available():
    assert jax.device_count() == 4


@pytest.mark.parametrize(
    "shape,fsdp,want",
    [
        ((8, 16), 4, P(None, "fsdp")),
        ((16, 8), 4, P("fsdp")),
        ((16, 16), 4, P("fsdp")),
        ((6, 8), 4, P(None, "fsdp")),
        ((6, 10), 4, P()),
        ((), 4, P()),
        ((2,), 4, P()),
        ((8, 16), 1, P()),
    ],
)
def test_fsdp_partition_spec_picks_largest_divisible_axis(shape, fsdp, want):
    assert fsdp_partition_spec(shape, fsdp) == want


def test_make_mesh_shapes_and_errors():
    assert dict(make_mesh().shape) == {"data": 4, "fsdp": 1}
    assert dict(make_mesh(data=1, fsdp=-1).shape) == {"data": 1, "fsdp": 4}
    assert dict(make_mesh(data=2, fsdp=2).shape) == {"data": 2, "fsdp": 2}
    assert make_mesh(data=1, fsdp=1).devices.size == 1
    with pytest.raises(ValueError, match="data x fsdp = 3 x 2"):
        make_mesh(data=3, fsdp=2)
    with pytest.raises(ValueError, match="3 does not divide"):
        make_mesh(fsdp=3)
    with pytest.raises(ValueError, match="fsdp"):
        make_mesh(fsdp=0)
    with pytest.raises(ValueError, match="at most one"):
        make_mesh(data=-1, fsdp=-1)


def _run(toy, optimizer, mesh, steps=4, microbatches=1):
    params = toy.params(jax.random.key(0), width=32)
    step_fn = make_train_step(toy.loss, optimizer, microbatches=microbatches)
    state = create_train_state(params, optimizer)
    if mesh is None:
        step = jit_train_step(step_fn)
        put = lambda b: b
    else:
        shardings = tree_shardings(mesh, state)
        state = jax.device_put(state, shardings)
        step = jit_train_step(step_fn, shardings, batch_sharding(mesh))
        put = lambda b: shard_batch(b, mesh)
    losses = []
    for i in range(steps):
        state, metrics = step(state, put(toy.batch(i, batch_size=16)))
        losses.append(float(metrics["loss"]))
    return np.array(losses), state


@pytest.mark.parametrize("data,fsdp,microbatches", [(4, 1, 1), (1, 4, 1), (2, 2, 2)])
def test_sharded_losses_match_one_device(toy, data, fsdp, microbatches):
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=0.1))
    want, want_state = _run(toy, optimizer, None)
    mesh = make_mesh(data=data, fsdp=fsdp)
    got, state = _run(toy, optimizer, mesh, microbatches=microbatches)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    kernel = state.params["hidden"]["kernel"]  # (8, 32)
    expected = (8, 32 // fsdp) if fsdp > 1 else (8, 32)
    assert {s.data.shape for s in kernel.addressable_shards} == {expected}
    mu = state.opt_state[1][0].mu["hidden"]["kernel"]
    assert {s.data.shape for s in mu.addressable_shards} == {expected}


def test_shard_batch_splits_over_all_devices(toy):
    mesh = make_mesh(data=2, fsdp=2)
    batch = shard_batch(toy.batch(0, batch_size=8), mesh)
    assert {s.data.shape for s in batch["x"].addressable_shards} == {(2, 8)}
    assert replicated(mesh).spec == P()
    with pytest.raises(ValueError, match="not divisible"):
        shard_batch(toy.batch(0, batch_size=6), mesh)


def test_shard_batch_names_the_batch_size_or_a_scalar_leaf():
    mesh = make_mesh(devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="a batch leaf is a scalar"):
        shard_batch({"x": np.float32(1.0)}, mesh)
    if len(jax.devices()) >= 2:
        with pytest.raises(ValueError, match=r"batch size 3 is not divisible by the 2 devices"):
            shard_batch({"x": np.zeros((3, 4))}, make_mesh(devices=jax.devices()[:2]))

"""Checkpoints: exact round trip, keep-last-N, strict config/shape checks, corrupt files, non-finite."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointSaveError,
    CorruptCheckpoint,
    config_differences,
)
from paramlab.train.loop import LoopConfig, fit
from paramlab.train.metrics import read_metrics
from paramlab.train.resume import newest_intact_step
from paramlab.train.sharding import make_mesh, tree_shardings
from paramlab.train.state import TrainingDiverged, create_train_state
from paramlab.train.step import make_train_step

CONFIG = {"model": {"width": 16}, "logging": {"every": 10}, "seed": 0}


def _trained_state(toy, width=16, steps=3):
    optimizer = optax.adamw(1e-2)
    state = create_train_state(toy.params(jax.random.key(0), width=width), optimizer)
    step = jax.jit(make_train_step(toy.loss, optimizer))
    for i in range(steps):
        state, _ = step(state, toy.batch(i))
    return state


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_round_trip_is_exact_and_keeps_last_n(toy, tmp_path):
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
        for s in (1, 2, 3):
            ckpt.save(
                state._replace(step=jnp.int32(s)), data_state={"pos": s}, config=CONFIG, plan={"p": [1]}
            )
        ckpt.wait()
        assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
        restored = ckpt.restore(3, _abstract(state), config=CONFIG)
    assert restored.data_state == {"pos": 3} and restored.plan == {"p": [1]} and restored.config == CONFIG
    assert int(restored.state.step) == 3
    for a, b in zip(jax.tree.leaves(restored.state.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(restored.state.opt_state), jax.tree.leaves(state.opt_state)):
        np.testing.assert_array_equal(a, b)


def test_relative_directory_is_resolved(toy, tmp_path, monkeypatch):
    """A relative workdir (as ``make run`` passes) saves and restores; orbax itself needs absolute paths."""
    monkeypatch.chdir(tmp_path)
    state = _trained_state(toy)
    with Checkpointer("runs/ckpt", max_to_keep=1) as ckpt:
        ckpt.save(state, data_state={"pos": 0}, config=CONFIG, plan={"p": [1]})
        ckpt.wait()
        restored = ckpt.restore(ckpt.latest_step(), _abstract(state), config=CONFIG)
    assert ckpt.directory == tmp_path / "runs" / "ckpt"
    assert (tmp_path / "runs" / "ckpt").is_dir()
    np.testing.assert_array_equal(jax.tree.leaves(restored.state.params)[0], jax.tree.leaves(state.params)[0])


def test_restore_onto_fsdp_mesh(toy, tmp_path):
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state=None, config=CONFIG)
        ckpt.wait()
        shardings = tree_shardings(make_mesh(data=1, fsdp=4), state)
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
        )
        restored = ckpt.restore(3, abstract).state
    kernel = restored.params["hidden"]["kernel"]
    assert {s.data.shape for s in kernel.addressable_shards} == {(8, 4)}
    np.testing.assert_array_equal(kernel, state.params["hidden"]["kernel"])


def test_different_config_is_an_error_naming_checkpoint_and_key(toy, tmp_path):
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state=None, config=CONFIG)
        ckpt.wait()
        changed = {**CONFIG, "logging": {"every": 5}}
        ckpt.restore(3, _abstract(state), config=changed, resume_mutable=("logging",))  # allowed
        with pytest.raises(CheckpointError, match=r"ckpt/3 .*model\.width: 16 -> 32"):
            ckpt.restore(3, _abstract(state), config={**CONFIG, "model": {"width": 32}})


def test_shape_mismatch_is_an_error_naming_the_array(toy, tmp_path):
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state=None, config=CONFIG)
        ckpt.wait()
        wider = _abstract(_trained_state(toy, width=32, steps=0))
        with pytest.raises(
            CheckpointError, match=r"params/hidden/kernel saved \(8, 16\) float32, expected \(8, 32\)"
        ):
            ckpt.restore(3, wider)


@pytest.mark.parametrize("victim", ["state", "config"])
def test_corrupt_checkpoint_is_an_error_naming_it(toy, tmp_path, victim):
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state=None, config=CONFIG)
        ckpt.wait()
    for f in (tmp_path / "ckpt" / "3" / victim).rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.latest_step() == 3
        with pytest.raises(CheckpointError, match=r"ckpt/3"):
            ckpt.restore(3, _abstract(state), config=CONFIG)


@pytest.mark.parametrize("victim", ["state", "checksums", "data"])
def test_a_checkpoint_missing_an_item_is_corrupt_naming_it(toy, tmp_path, victim):
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state={"pos": 1}, config=CONFIG)
        ckpt.wait()
    shutil.rmtree(tmp_path / "ckpt" / "3" / victim)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(CorruptCheckpoint, match=r"ckpt/3"):
            ckpt.restore(3, _abstract(state), config=CONFIG)


def test_flipped_values_fail_their_checksums(toy, tmp_path):
    """A checkpoint whose arrays no longer hash to what was saved is corrupt, named with the arrays."""
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state=None, config=CONFIG)
        ckpt.wait()
    metadata = tmp_path / "ckpt" / "3" / "checksums" / "metadata"
    saved = json.loads(metadata.read_text())
    path = sorted(k for k in saved if k.startswith("params"))[0]
    saved[path][1] ^= 1 << 7  # as if one bit of that array had flipped on disk
    metadata.write_text(json.dumps(saved))
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(CorruptCheckpoint, match=rf"ckpt/3 fails its checksums: 1 arrays .*\({path}\)"):
            ckpt.restore(3, _abstract(state), config=CONFIG)


def test_fit_falls_back_to_the_newest_intact_checkpoint(toy, tmp_path):
    from tests.train.test_loop import LOOP, _no_timing, _task

    log = []
    reference = fit(_task(toy), LoopConfig(**LOOP), tmp_path / "ref", log=log.append)
    fit(_task(toy), LoopConfig(**LOOP), tmp_path / "run", log=log.append)
    for f in (tmp_path / "run" / "checkpoints" / "12" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    log.clear()
    resumed = fit(_task(toy), LoopConfig(**LOOP), tmp_path / "run", log=log.append)
    assert resumed.resumed_from == 8 and "checkpoints/12 is unreadable" in log[0]
    assert (tmp_path / "run" / "checkpoints" / "12.corrupt").is_dir()
    assert _no_timing(read_metrics(resumed.metrics_path)) == _no_timing(read_metrics(reference.metrics_path))
    for step in Checkpointer(tmp_path / "run" / "checkpoints").all_steps():
        for f in (tmp_path / "run" / "checkpoints" / str(step) / "state").rglob("*"):
            if f.is_file():
                f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        fit(_task(toy), LoopConfig(**LOOP), tmp_path / "run", log=lambda _: None)


def test_non_finite_state_is_never_saved(toy, tmp_path):
    state = _trained_state(toy)
    bad = state._replace(params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), state.params))
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(TrainingDiverged, match="step 3"):
            ckpt.save(bad, data_state=None, config=CONFIG)
        ckpt.wait()
        assert ckpt.all_steps() == []


def test_config_differences_and_json_errors(tmp_path):
    assert config_differences({"a": {"b": 1}, "c": 2}, {"a": {"b": 1}, "c": 2}) == []
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 2, "d": 3}}) == [
        "a.b: 1 -> 2",
        "a.d: '<missing>' -> 3",
    ]
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 2}}, mutable=("a",)) == []
    with Checkpointer(tmp_path / "ckpt") as ckpt, pytest.raises(ValueError, match="config must be JSON"):
        state = create_train_state({"w": jnp.ones(2)}, optax.sgd(0.1))
        ckpt.save(state, data_state=None, config={"f": object()})
    assert json.loads(json.dumps(CONFIG)) == CONFIG


def test_different_plan_is_an_error(toy, tmp_path):
    state = _trained_state(toy)
    plan = {"version": 1, "specs": [{"path": "a", "lr": 1.0}, {"path": "b", "lr": 0.5}]}
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(state, data_state=None, config=CONFIG, plan=plan)
        ckpt.wait()
        assert ckpt.restore(3, _abstract(state), plan=plan).plan == plan
        other = {"version": 1, "specs": [{"path": "a", "lr": 1.0}, {"path": "b", "lr": 0.25}]}
        with pytest.raises(
            CheckpointError, match=r"ckpt/3 holds a different parametrization plan \(specs.1.lr"
        ):
            ckpt.restore(3, _abstract(state), plan=other)


def test_the_last_good_checkpoint_is_one_that_verifies(toy, tmp_path):
    """``newest_intact_step`` (what "diverged; the last good state is ..." names) skips a corrupt one."""
    state = _trained_state(toy)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        for s in (1, 2, 3):
            ckpt.save(state._replace(step=jnp.int32(s)), data_state=None, config=CONFIG)
        assert newest_intact_step(ckpt, _abstract(state)) == 3
        metadata = tmp_path / "ckpt" / "3" / "checksums" / "metadata"
        saved = json.loads(metadata.read_text())
        saved[sorted(saved)[0]][0] ^= 1
        metadata.write_text(json.dumps(saved))
        assert newest_intact_step(ckpt, _abstract(state)) == 2
        assert ckpt.all_steps() == [1, 2, 3]  # nothing moved: the next run quarantines it


def test_a_failed_save_is_a_checkpoint_save_error_naming_the_directory(toy, tmp_path):
    state = _trained_state(toy)
    directory = tmp_path / "ckpt"
    with pytest.raises(CheckpointSaveError, match=rf"could not save a checkpoint in {directory}"):
        with Checkpointer(directory) as ckpt:
            ckpt.save(state._replace(step=jnp.int32(1)), data_state=None, config=CONFIG)
            ckpt.wait()
            directory.rename(tmp_path / "moved")
            directory.write_text("a file where the checkpoints should be")
            ckpt.save(state._replace(step=jnp.int32(2)), data_state=None, config=CONFIG)
            ckpt.wait()
    assert [p.name for p in (tmp_path / "moved").iterdir() if p.name.isdigit()] == ["1"]

"""fit(): outputs, exact resume after SIGTERM, divergence, incompatible checkpoints, FSDP."""

import dataclasses
import json
import os
import signal

import jax
import numpy as np
import optax
import pytest

from paramlab.train.checkpoint import Checkpointer, CheckpointError
from paramlab.train.loop import FitResult, LoopConfig, Task, fit
from paramlab.train.metrics import read_metrics
from paramlab.train.state import TrainingDiverged, tree_is_finite

TIMING_KEYS = ("step_time_s", "tokens_per_s")


class ToyBatches:
    """A stateful iterator of toy batches; optionally SIGTERMs its own process or emits NaN at a position."""

    def __init__(self, toy, sigterm_at=None, nan_at=None):
        self.toy, self.pos, self.sigterm_at, self.nan_at = toy, 0, sigterm_at, nan_at

    def __next__(self):
        batch = self.toy.batch(1000 + self.pos, batch_size=8)
        self.pos += 1
        if self.pos == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.pos == self.nan_at:
            batch["y"][:] = np.nan
        return batch

    def get_state(self):
        return {"pos": self.pos}

    def set_state(self, state):
        self.pos = state["pos"]


def _task(toy, **batch_kwargs):
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-2, 3, 20)
    return Task(
        init_params=lambda rng: toy.params(rng),
        loss_fn=toy.loss,
        optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule)),
        learning_rate=schedule,
        train_batches=ToyBatches(toy, **batch_kwargs),
        eval_batches=lambda: [toy.batch(7, batch_size=8), toy.batch(8, batch_size=8)],
        tokens_per_batch=8,
        roles=toy.roles,
        plan={"name": "toy"},
        reference_loss=1.0,
    )


LOOP = dict(steps=12, log_every=2, eval_every=6, checkpoint_every=4, progress_bar=False)


def _no_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_fit_writes_metrics_checkpoints_and_plot(toy, tmp_path):
    result = fit(_task(toy), LoopConfig(**LOOP), tmp_path, run_config={"a": 1}, log=lambda _: None)
    assert isinstance(result, FitResult) and result.status == "completed" and result.step == 12
    records = read_metrics(result.metrics_path)
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert {"learning_rate", "grad_norm", "update_rms/hidden", "param_rms/readout", "tokens_per_s"} <= set(
        train[0]
    )
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [6, 12] and result.eval_loss == evals[-1]["eval_loss"]
    assert Checkpointer(result.checkpoint_dir).all_steps() == [4, 8, 12]
    assert open(result.plot_path, "rb").read(4) == b"\x89PNG"
    again = fit(_task(toy), LoopConfig(**LOOP), tmp_path, run_config={"a": 1}, log=lambda _: None)
    assert again.resumed_from == 12 and again.eval_loss == pytest.approx(result.eval_loss, rel=1e-6)
    assert read_metrics(result.metrics_path) == records


def test_sigterm_saves_and_resume_is_exact(toy, tmp_path):
    straight = fit(_task(toy), LoopConfig(**LOOP), tmp_path / "a", log=lambda _: None)
    stopped = fit(_task(toy, sigterm_at=5), LoopConfig(**LOOP), tmp_path / "b", log=lambda _: None)
    assert stopped.status == "preempted" and stopped.step == 5
    assert Checkpointer(stopped.checkpoint_dir).latest_step() == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    resumed = fit(_task(toy), LoopConfig(**LOOP), tmp_path / "b", log=lambda _: None)
    assert resumed.resumed_from == 5 and resumed.status == "completed"
    want = _no_timing(read_metrics(straight.metrics_path))
    got = [r for r in _no_timing(read_metrics(resumed.metrics_path)) if r["step"] != 5]
    assert got == want


def test_divergence_names_step_and_keeps_last_good_checkpoint(toy, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 7.*checkpoints/4"):
        fit(_task(toy, nan_at=7), LoopConfig(**LOOP), tmp_path, log=lambda _: None)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.all_steps() == [4]
    assert max(r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")) == 6


def test_resume_with_other_config_is_an_error(toy, tmp_path):
    fit(_task(toy), LoopConfig(**{**LOOP, "steps": 4}), tmp_path, run_config={"w": 1}, log=lambda _: None)
    with pytest.raises(
        CheckpointError, match=r"checkpoints/4 was written by a different config \(w: 1 -> 2\)"
    ):
        fit(_task(toy), LoopConfig(**{**LOOP, "steps": 4}), tmp_path, run_config={"w": 2}, log=lambda _: None)


def test_fsdp_and_accumulation_match_single_device(toy, tmp_path):
    base = dict(LOOP, steps=6, checkpoint_every=0, eval_every=0)
    single = fit(_task(toy), LoopConfig(**base, mesh_data=1, mesh_fsdp=1), tmp_path / "a", log=lambda _: None)
    sharded = LoopConfig(**base, mesh_data=1, mesh_fsdp=4, microbatches=2)
    fsdp = fit(_task(toy), sharded, tmp_path / "b", log=lambda _: None)
    want = [r["loss"] for r in read_metrics(single.metrics_path) if "loss" in r]
    got = [r["loss"] for r in read_metrics(fsdp.metrics_path) if "loss" in r]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"steps": 0}, "steps"), ({"log_every": 0}, "log_every"), ({"compute_dtype": "fp8"}, "compute_dtype")],
)
def test_loop_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoopConfig(**{"steps": 5, **kwargs})


def test_tree_is_finite():
    assert tree_is_finite({"a": np.ones(2), "b": np.arange(3)})
    assert not tree_is_finite({"a": np.array([1.0, np.inf])})
    assert tree_is_finite(jax.numpy.zeros(()))


def test_a_grain_pipeline_resumes_exactly(toy, tmp_path):
    """A user's grain pipeline as train_batches: stopping at step 5 and resuming logs the straight run."""
    grain = pytest.importorskip("grain")
    from paramlab.data import GrainBatches

    def grain_task():
        pipeline = grain.MapDataset.range(64).shuffle(seed=3).map(lambda i: toy.batch(int(i), batch_size=1))
        batches = pipeline.map(lambda b: {k: v[0] for k, v in b.items()}).batch(8).repeat()
        return dataclasses.replace(_task(toy), train_batches=GrainBatches(batches))

    straight = fit(grain_task(), LoopConfig(**LOOP), tmp_path / "a", log=lambda _: None)
    fit(grain_task(), LoopConfig(**{**LOOP, "steps": 5}), tmp_path / "b", log=lambda _: None)
    assert _saved_data_state(tmp_path / "b", 5) == {"next_index": 5}
    resumed = fit(grain_task(), LoopConfig(**LOOP), tmp_path / "b", log=lambda _: None)
    assert resumed.resumed_from == 5
    want = _no_timing(read_metrics(straight.metrics_path))
    got = _no_timing(read_metrics(resumed.metrics_path))
    assert [r for r in got if r["step"] > 5] == [r for r in want if r["step"] > 5]


def _saved_data_state(workdir, step):
    """The data-iterator state a checkpoint holds (its JSON item, read from disk)."""
    return json.loads(
        (Checkpointer(workdir / "checkpoints").step_directory(step) / "data" / "metadata").read_text()
    )


def test_grain_batches_refuses_what_is_not_a_grain_pipeline():
    pytest.importorskip("grain")
    from paramlab.data import GrainBatches

    with pytest.raises(
        ValueError, match="dataset must be a grain MapDataset, IterDataset or DatasetIterator"
    ):
        GrainBatches([1, 2, 3])

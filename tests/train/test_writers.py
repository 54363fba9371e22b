"""Metric writers: JSONL always, TensorBoard event files read back record by record."""

import pathlib
import struct

import pytest

from paramlab.train import writers
from paramlab.train.loop import LoopConfig
from paramlab.train.metrics import read_metrics

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")


def _events(logdir: pathlib.Path) -> list:
    """Every event of every file in ``logdir``, parsed from the TFRecord framing: length (u64), its crc
    (u32), the serialized ``Event``, its crc (u32)."""
    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def _scalars(logdir: pathlib.Path) -> list[tuple[int, str, float]]:
    return [
        (e.step, v.tag, v.simple_value)
        for e in _events(logdir)
        for v in e.summary.value
        if e.HasField("summary")
    ]


def test_tensorboard_gets_every_finite_number_of_each_record(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    writer = writers.open_writers(metrics, resume_step=None, tensorboard=True)
    writer.write({"step": 1, "loss": 2.5, "grad_norm": float("nan"), "tag": "train", "diverged": False})
    writer.write({"step": 2, "eval_loss": 1.25})
    writer.close()
    assert sorted(_scalars(tmp_path / writers.TENSORBOARD_DIR)) == [(1, "loss", 2.5), (2, "eval_loss", 1.25)]
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2]  # the JSONL record is always kept


def test_a_resumed_run_purges_the_tensorboard_steps_it_trains_again(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    first = writers.open_writers(metrics, resume_step=None, tensorboard=True)
    for step in (1, 2, 3):
        first.write({"step": step, "loss": float(step)})
    first.close()
    resumed = writers.open_writers(metrics, resume_step=1, tensorboard=True)
    resumed.write({"step": 2, "loss": 20.0})
    resumed.close()
    events = _events(tmp_path / writers.TENSORBOARD_DIR)
    # TensorBoard drops earlier events at or after a START session log's step when it reads the files
    purges = [e.step for e in events if e.HasField("session_log") and e.session_log.status == 1]
    assert purges == [2]
    assert [r["loss"] for r in read_metrics(metrics)] == [1.0, 20.0]


def test_off_the_primary_process_nothing_is_written(tmp_path):
    writer = writers.open_writers(
        tmp_path / "metrics.jsonl", resume_step=None, tensorboard=True, primary=False
    )
    writer.write({"step": 1, "loss": 1.0})
    writer.close()
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_without_tensorboardx_says_how_to_install(monkeypatch):
    monkeypatch.setattr(writers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"tensorboard=True needs tensorboardX: pip install"):
        LoopConfig(steps=1, tensorboard=True)

"""Metrics files: resume truncation, torn lines, the loss plot."""

import json

import numpy as np
import pytest

from paramlab.train.metrics import MetricsWriter, plot_loss_curve, progress_bar, read_metrics


def test_writer_appends_and_resume_drops_later_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path)
    for step in (1, 2, 3, 4):
        writer.write({"step": step, "loss": np.float32(1.0 / step), "tag": "train"})
    writer.write({"step": 4, "eval_loss": 0.5})
    with open(path, "a") as f:
        f.write('{"step": 5, "lo')  # a process killed mid-write
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 4]
    MetricsWriter(path, resume_step=2).write({"step": 3, "loss": 9.0})
    records = read_metrics(path)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 0.5), (3, 9.0)]
    assert records[0]["tag"] == "train" and isinstance(records[0]["loss"], float)
    assert all(json.loads(line) for line in path.read_text().splitlines())
    MetricsWriter(path)  # a fresh run starts an empty file
    assert read_metrics(path) == []
    with pytest.raises(ValueError, match="step"):
        MetricsWriter(path).write({"loss": 1.0})


def test_plot_writes_png(tmp_path):
    records = [{"step": s, "loss": 5.0 / s} for s in range(1, 20)] + [{"step": 10, "eval_loss": 0.6}]
    records.append({"step": 20, "loss": float("nan")})
    out = tmp_path / "loss.png"
    plot_loss_curve(records, out, reference=4.2, title="toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_progress_bar_counts_from_initial():
    bar = progress_bar(total=10, initial=4)
    bar.update(2)
    assert bar.n == 6 and bar.total == 10
    bar.close()

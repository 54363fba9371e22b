"""benchmarks/mup_sweep.py at a tiny size: both sides train the same muP MLP to the same losses."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("mup")

from benchmarks import mup_sweep as bench  # noqa: E402

pytestmark = pytest.mark.torch


def test_tiny_sweep_matches_torch_mup_losses():
    cfg = bench.BenchConfig(in_dim=8, width=64, base_width=16, out_dim=4, batch_size=16, steps=6,
                            steps_per_call=3, lrs=(1e-3, 1e-2))  # fmt: skip
    report = bench.measure(cfg)
    json.dumps(report)
    assert report["max_rel_loss_diff_first_step"] < 1e-5
    assert report["max_rel_loss_diff_last_step"] < 1e-3
    assert report["ratio_total"] > 0 and len(report["final_loss_torch_mup"]) == 2
    assert "torch + mup" in bench.summary_table(report)

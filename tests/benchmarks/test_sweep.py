"""benchmarks/sweep.py at tiny size: the swept losses equal the sequential runs' (timings not checked)."""

import json

import numpy as np

from benchmarks import sweep as bench


def test_sweep_losses_equal_sequential_runs(tmp_path):
    cfg = bench.BenchConfig(
        d_model=16,
        n_layers=1,
        n_heads=2,
        d_ff=32,
        seq_len=16,
        batch_size=2,
        steps=3,
        steps_per_call=3,  # one compiled chunk (test_vmapped checks a shorter last chunk)
        lrs=(1e-3, 1.6e-2),
        corpus_bytes=20_000,
    )
    report = bench.measure(cfg)
    assert report["max_rel_diff_all_steps"] <= 1e-4
    assert len(report["final_loss_sweep"]) == 2 and np.all(np.isfinite(report["final_loss_sequential"]))
    assert len(report["sequential"]["runs"]) == 2
    for side in ("sequential", "sweep"):
        assert report[side]["total_s"] > 0 and report[side]["compile_s"] > 0
    json.dumps(report)  # JSON-able
    assert "ratio sweep/sequential" in bench.summary_table(report)

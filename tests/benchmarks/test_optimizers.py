"""benchmarks/optimizers.py at its small size: the report is complete and JSON-able (timings not checked)."""

import json

import numpy as np

from benchmarks import optimizers as bench


def test_small_benchmark_report(tmp_path):
    report = bench.measure("small")
    assert set(report["runs"]) == set(bench.optimizers({}))
    for run in report["runs"].values():
        assert run["finite"] and run["median_ms"] > 0 and run["state_bytes"] > 0
        assert run["fraction_of_copy_bandwidth"] == run["min_traffic_gb_per_s"] / report["copy"]["gb_per_s"]
    assert report["copy"]["gb_per_s"] == 2 * report["param_bytes"] / (report["copy"]["median_ms"] / 1e3) / 1e9
    assert len(report["comparisons"]) == len(bench.COMPARISONS)
    for comparison in report["comparisons"].values():
        assert np.isfinite(comparison["time_ratio"]) and comparison["state_bytes_ratio"] <= 1.0
    runs = report["runs"]
    # The declared fan axes factor the 3-D attention kernels that optax's rule leaves in full.
    assert (
        runs["factored_moments+fan_axes"]["state_bytes_per_3d_kernel_pair_q_o"]
        < runs["optax.adafactor"]["state_bytes_per_3d_kernel_pair_q_o"]
    )
    json.dumps(report)
    assert "adam_atan2 / optax.adam" in bench.summary_table(report)

"""benchmarks/parametrization.py at a tiny size: both sides run the same program (timings not checked)."""

import json

from benchmarks import parametrization as bench


def test_tiny_step_overhead_report_has_equal_xla_costs():
    cfg = bench.BenchConfig(d_model=32, base_d_model=16, n_layers=1, d_head=8, seq_len=8, batch_size=2,
                            steps_per_block=2, blocks=2)  # fmt: skip
    report = bench.measure_step_overhead(cfg)
    json.dumps(report)
    assert set(report["step_s_median"]) == {"plan", "plain"} and report["ratio"] > 0
    # the plan adds only per-leaf multiplies: flops within 5% of plain AdamW (1.7% at this tiny size)
    assert abs(report["xla_cost_ratio"]["flops"] - 1.0) < 0.05


def test_tiny_plan_construction_report():
    report = bench.measure_plan_construction({"tiny": bench.PlanModel(d_model=512, n_layers=1)}, repeats=1)
    json.dumps(report)
    tiny = report["tiny"]
    assert tiny["n_tensors"] > 0 and tiny["make_plan_wall_s"] > 0 and tiny["ratio_to_eval_shape"] > 0

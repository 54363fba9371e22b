"""benchmarks/depth.py at a tiny size: every (layout, depth) is measured; remat under scan saves memory."""

from benchmarks import depth as bench


def test_run_measures_every_layout_and_depth():
    layouts = ("unrolled", "scan", "scan+remat")
    cfg = bench.DepthBenchConfig(
        depths=(1, 3), d_model=32, d_head=16, seq_len=16, batch_size=2, rounds=1, layouts=layouts
    )
    result = bench.run(cfg)
    assert {(r["layout"], r["depth"]) for r in result["rows"]} == {
        (lay, d) for lay in layouts for d in (1, 3)
    }
    for r in result["rows"]:
        mem = r["memory_bytes"]
        assert mem["peak"] == mem["argument"] + mem["output"] - mem["alias"] + mem["temp"] > 0
        assert r["compile_s"] > 0 and r["step_s"] > 0 and 0 < r["loss"] < 10
    # scanned blocks must stack what the backward pass needs; remat keeps only each block's input
    assert result["remat_at_max_depth"]["scan"]["memory_ratio"] < 1.0
    assert set(result["compile_growth"]) == set(layouts) and set(result["remat_at_max_depth"]) == {"scan"}
    assert "compile time, deepest / shallowest" in bench.format_table(result)

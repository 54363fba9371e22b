"""``experiments.low_precision``: a tiny end-to-end run, the summary's paired change against float32 on
hand-built records, and config errors."""

import math

import numpy as np
import pytest
from tiny_grid import tiny_config

from experiments import low_precision
from experiments.configs import low_precision as default_config
from experiments.low_precision_summary import precision_rows


def _config(**overrides):
    return tiny_config(
        default_config,
        **{
            **dict(parametrization="umup", precisions="float32,float8_e4m3fn", learning_rate_grid="0.5,1,2"),
            **overrides,
        },
    )


def test_tiny_run_records_rms_and_writes_the_summary(tmp_path):
    args, precisions = low_precision.parse_args(_config(), {"out": str(tmp_path), "data": ""})
    records = low_precision.run(args, precisions, log=lambda line: None)
    assert len(records) == 2 * 2 * 2  # precisions x lrs x seeds
    for r in records:
        assert math.isfinite(r["final_loss"])
        assert 0 < r["rms/weight/min"] <= r["rms/weight/median"] <= r["rms/weight/max"]
    for name in (
        "precision.txt",
        "precision.json",
        "init_rms.json",
        "low_precision_lr.png",
        "tensor_rms.png",
    ):
        assert (tmp_path / name).stat().st_size > 100


def test_change_is_paired_by_seed_at_the_float32_optimum():
    losses = {  # (precision, lr) -> per-seed losses
        ("float32", 0.1): [2.0, 2.2],
        ("float32", 1.0): [2.5, 2.5],
        ("bfloat16", 0.1): [2.1, 2.2],
        ("bfloat16", 1.0): [1.9, 1.9],  # bfloat16's own best is elsewhere
    }
    records = [
        {
            "parametrization": "umup",
            "precision": p,
            "learning_rate": lr,
            "seed": s,
            "final_loss": v,
            "initial_loss": 5.0,
        }
        for (p, lr), values in losses.items()
        for s, v in enumerate(values)
    ]
    rows = {r["precision"]: r for r in precision_rows(records)}
    assert rows["bfloat16"]["tuned_learning_rate"] == 0.1  # the float32 optimum
    change = [100 * (2.1 / 2.0 - 1), 0.0]
    assert rows["bfloat16"]["change_percent"] == pytest.approx(np.mean(change))
    assert rows["bfloat16"]["change_percent_std"] == pytest.approx(np.std(change, ddof=1))
    assert rows["bfloat16"]["final_loss"] == pytest.approx(2.15)
    assert rows["bfloat16"]["own_best_learning_rate"] == 1.0
    assert rows["float32"]["change_percent"] == 0.0
    # anywhere on the grid: bfloat16 is furthest above float32 at 0.1 (at 1.0 it is below)
    assert rows["bfloat16"]["largest_change_learning_rate"] == 0.1
    assert rows["bfloat16"]["largest_change_percent"] == pytest.approx(100 * (2.15 / 2.1 - 1))


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(precisions="bfloat16"), "precisions"),
        (dict(precisions="float32,float4"), "precisions"),
        (dict(precisions="float32,float32"), "precisions"),
        (dict(depths="1,2", base_depth=1), "depths"),
    ],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        low_precision.parse_args(_config(**overrides), {"out": "x", "data": ""})

"""``experiments.depth_check`` at tiny size (in-process) and its config errors."""

import json

import numpy as np
import pytest

from experiments import depth_check
from experiments.configs import depth_check as default_config


def _config(**overrides):
    config = default_config.get_config()
    config.update(dict(width=16, depths="2,8", steps=3, seeds=2, batch_size=16, in_dim=4, out_dim=2))
    config.update(overrides)
    return config


def _last_block_delta_slope(records, rule, seed):
    """The log-log slope of the last block's feature change against depth, by numpy's polyfit."""
    last = {
        r["depth"]: r["delta_rms"]
        for r in records
        if r["label"] == rule and r["seed"] == seed and r["block"] == r["depth"] - 1
    }
    depths = sorted(last)
    return np.polyfit(np.log(depths), np.log([last[d] for d in depths]), 1)[0]


def test_tiny_run_writes_records_summary_and_plot(tmp_path, capsys):
    depth_check.main(_config(), {"out": str(tmp_path)})
    records = json.loads((tmp_path / "depth_check.json").read_text())
    assert {(r["label"], r["seed"], r["depth"]) for r in records} == {
        (rule, seed, depth)
        for rule in ("none", "depth_mup", "completep")
        for seed in (0, 1)
        for depth in (2, 8)
    }
    assert len(records) == 3 * 2 * (2 + 8)  # one record per block
    summary = {r["depth_rule"]: r for r in json.loads((tmp_path / "depth_check_summary.json").read_text())}
    for rule, row in summary.items():
        slopes = [_last_block_delta_slope(records, rule, seed) for seed in (0, 1)]
        assert row["delta_slope"] == pytest.approx(np.mean(slopes))
        assert row["delta_slope_std"] == pytest.approx(np.std(slopes, ddof=1))
    assert summary["none"]["delta_slope"] > summary["completep"]["delta_slope"]
    assert (tmp_path / "depth_check.png").stat().st_size > 1000
    assert "delta_slope" in capsys.readouterr().out


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"depth_rule": "completeq"}, "config.depth_rule"),
        ({"depths": "4"}, "config.depths"),
        ({"base_depth": 16}, "config.base_depth"),
        ({"depth_alpha": 0.3}, "config.depth_alpha"),
        ({"learning_rate": -1.0}, "config.learning_rate"),
        ({"width": 0}, "config.width"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        depth_check.parse_config(_config(**overrides))

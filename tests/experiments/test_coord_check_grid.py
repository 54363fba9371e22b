"""``experiments.coord_check_grid`` at tiny widths: refused cells, seeds' statistics, outputs, bad keys."""

import json

import numpy as np
import pytest

from experiments import coord_check_grid
from experiments.configs import coord_check_grid as default_config


def _config(**overrides):
    config = default_config.get_config()
    config.update(dict(parametrization="sp_global,umup", optimizers="sgd,adam", learning_rates="0.1,0.01",
                       seeds="0,1", widths="16,32,64", base_width=16, steps=1, batch_size=8))  # fmt: skip
    config.update(overrides)
    return config


def test_grid_statistics_and_outputs(tmp_path):
    summary = coord_check_grid.run(_config(), str(tmp_path), log=lambda _: None)
    with open(tmp_path / "coord_check_grid.json") as f:
        records = json.load(f)
    # u-muP defines no SGD learning rates: that cell is refused, every other one ran for both seeds
    assert {(r["optimizer"], r["parametrization"]) for r in records} == {
        ("sgd", "sp_global"),
        ("adam", "sp_global"),
        ("adam", "umup"),
    }
    assert {r["seed"] for r in records} == {0, 1}
    # the mean and std of the per-seed log-log slopes, recomputed from the records with numpy
    row = next(
        r
        for r in summary
        if (r["optimizer"], r["parametrization"], r["module"]) == ("adam", "umup", "readout")
    )
    slopes = []
    for seed in (0, 1):
        cell = ("adam", "umup", "readout", seed)
        points = sorted(
            (r["width"], r["l1"])
            for r in records
            if (r["optimizer"], r["parametrization"], r["module"], r["seed"]) == cell
        )
        slopes.append(np.polyfit(np.log([w for w, _ in points]), np.log([v for _, v in points]), 1)[0])
    np.testing.assert_allclose(row["slope_mean"], np.mean(slopes), rtol=1e-6)
    np.testing.assert_allclose(row["slope_std"], np.std(slopes, ddof=1), rtol=1e-6, atol=1e-9)
    # at init u-muP's readout (multiplier 1 / fan_in, unit weights) shrinks as width^-1/2; SP's does not
    assert row["slope_mean"] == pytest.approx(-0.5, abs=0.15)
    table = (tmp_path / "coord_check_grid.md").read_text()
    assert "refused" in table and "| adam | readout |" in table
    assert (tmp_path / "coord_check_grid.png").stat().st_size > 0
    assert (tmp_path / "adam" / "seed1" / "coord_check.json").exists()


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"optimizers": "adam,nadam_x"}, "optimizers"),
        ({"seeds": "0,0"}, "seeds"),
        ({"seeds": ""}, "seeds"),
        ({"widths": "16,24"}, "widths"),
        ({"learning_rates": "0.1"}, "learning_rates"),
        ({"learning_rates": "0.1,-1"}, "learning_rate"),
    ],
)
def test_bad_keys_name_the_key(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        coord_check_grid.cell_configs(_config(**overrides), str(tmp_path))

"""Result tables: file round trips, seed means, optima and their shift in grid steps."""

import json
import math

import pytest

from paramlab.sweep.results import (
    format_table,
    load_records,
    mean_over_seeds,
    optimal_settings,
    optimum_shift,
    save_records,
)


def _records():
    """Two widths on a 2x grid; width 64's optimum is lr 0.02, width 128's is 0.01 (index 1 and 0)."""
    rows = []
    curves = {
        64: {0.01: 3.0, 0.02: 2.0, 0.04: 2.5, 0.08: math.inf},
        128: {0.01: 1.8, 0.02: 1.9, 0.04: math.inf},
    }
    for width, curve in curves.items():
        for lr, loss in curve.items():
            for seed in (0, 1):
                rows.append(
                    {
                        "parametrization": "mup",
                        "width": width,
                        "learning_rate": lr,
                        "seed": seed,
                        "final_loss": loss + 0.1 * seed,
                        "diverged": not math.isfinite(loss),
                    }
                )
    return rows


def test_json_and_csv_round_trip(tmp_path):
    rows = _records()
    save_records(rows, tmp_path / "r.json", tmp_path / "r.csv")
    assert load_records(tmp_path / "r.csv") == rows  # CSV keeps inf
    strict = lambda constant: pytest.fail(f"not strict JSON: {constant}")
    with open(tmp_path / "r.json") as f:
        loaded = json.load(f, parse_constant=strict)  # JSON is strict: a diverged loss is null
    assert loaded[6]["final_loss"] is None and loaded[6]["diverged"]
    assert load_records(tmp_path / "r.json") == loaded
    by_width = dict(group_by=("parametrization", "width"))
    assert optimal_settings(loaded, **by_width) == optimal_settings(rows, **by_width)


def test_missing_file_and_bad_content(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_records(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON list"):
        load_records(tmp_path / "bad.json")


def test_mean_over_seeds_and_diverged_seed_is_inf():
    rows = _records()
    rows[0]["final_loss"] = math.inf  # width 64, lr 0.01, seed 0
    means = mean_over_seeds(rows, ("width", "learning_rate"))
    assert means[(64, 0.02)] == pytest.approx(2.05)
    assert means[(64, 0.01)] == math.inf
    with pytest.raises(ValueError, match="lacks the keys"):
        mean_over_seeds(rows, ("depth",))


def test_optimal_settings_and_shift():
    table = optimal_settings(_records(), group_by=("parametrization", "width"))
    assert [
        (r["width"], r["best_learning_rate"], r["learning_rate_index"], r["n_diverged"], r["n_grid"])
        for r in table
    ] == [
        (64, 0.02, 1, 1, 4),
        (128, 0.01, 0, 1, 3),
    ]
    assert table[0]["best_final_loss"] == pytest.approx(2.05)
    assert optimum_shift(table, family=("parametrization",)) == {("mup",): 1}


def test_all_diverged_group_has_no_optimum():
    rows = [{"width": 8, "learning_rate": lr, "seed": 0, "final_loss": math.inf} for lr in (0.1, 0.2)]
    rows.append({"width": 16, "learning_rate": 0.1, "seed": 0, "final_loss": 1.0})
    table = optimal_settings(rows, group_by=("width",))
    assert table[0]["best_learning_rate"] is None and table[0]["best_final_loss"] == math.inf
    assert optimum_shift(table, family=()) == {(): None}


def test_format_table():
    text = format_table([{"a": 1, "b": 0.123456}, {"a": 10, "b": None}])
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[2].split() == ["1", "0.1235"] and lines[3].split() == ["10", "-"]

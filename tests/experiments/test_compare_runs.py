"""``experiments.compare_runs``: the cell-by-cell table against the reference run, the figure, bad specs."""

import json

import pytest

from experiments import compare_runs


def _run(directory, losses):
    directory.mkdir()
    optimal = [
        {"recipe": "ntk", "width": w, "depth": 2, "best_final_loss": loss, "best_final_loss_std": 0.01}
        for w, loss in losses.items()
    ]
    (directory / "optimal_lr.json").write_text(json.dumps({"optimal": optimal}))
    return str(directory)


def test_table_gives_each_runs_excess_over_the_reference(tmp_path):
    ref = _run(tmp_path / "ref", {64: 2.5, 256: 2.4})
    other = _run(tmp_path / "other", {64: 2.5, 256: 2.45})
    table = compare_runs.compare([f"atan2={ref}", f"eps={other}"], str(tmp_path / "out"))
    lines = table.splitlines()
    assert lines[0] == "| recipe | width | depth | atan2 | eps |"
    assert lines[3] == "| ntk | 256 | 2 | 2.400 ± 0.010 | 2.450 ± 0.010 (+0.050) |"
    assert (tmp_path / "out" / "compare_runs.md").read_text().strip() == table
    assert (tmp_path / "out" / "compare_runs.png").stat().st_size > 0


@pytest.mark.parametrize(
    "specs, match",
    [
        (["only=DIR"], "LABEL=DIR|does not exist"),
        (["no_equals_sign", "b=x"], "LABEL=DIR"),
        (["a=missing_dir", "b=missing_dir"], "does not exist"),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path, specs, match):
    with pytest.raises(ValueError, match=match):
        compare_runs.load_runs(specs)


def test_one_run_is_not_a_comparison(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        compare_runs.load_runs([f"a={_run(tmp_path / 'a', {64: 2.5})}"])


def test_command_line_usage_error(capsys):
    assert compare_runs.main(["a=b"]) == 2
    assert "usage" in capsys.readouterr().err


def test_transfer_table_gives_each_runs_fitted_optimum_and_transferred_loss(tmp_path):
    rows = {
        "a": {
            "fitted_learning_rate": 2**-7.04,
            "fitted_log2_learning_rate_std": 0.01,
            "transferred_final_loss": 1.934,
            "transfer_excess_percent": 0.0,
        },
        "b": {
            "fitted_learning_rate": 2**-8.13,
            "fitted_log2_learning_rate_std": None,
            "transferred_final_loss": 2.013,
            "transfer_excess_percent": 3.9,
        },
    }
    runs = {label: {("sp", 256, 2): row} for label, row in rows.items()}
    runs["c"] = {}
    lines = compare_runs.transfer_table(runs).splitlines()
    assert lines[2] == "| sp | 256 | 2 | 2^-7.04 ± 0.01, 1.934 (+0.0%) | 2^-8.13, 2.013 (+3.9%) | — |"

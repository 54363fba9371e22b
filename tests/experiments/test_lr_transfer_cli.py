"""``experiments.lr_transfer`` end to end at tiny size (in-process), its config errors, command lines."""

import json
import math
import os
import subprocess
import sys

import pytest

from experiments import lr_transfer
from experiments.configs import lr_transfer as default_config
from paramlab.sweep import strict_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.widths=16,32",
    "--config.base_width=16",
    "--config.d_head=8",
    "--config.n_layers=1",
    "--config.seq_len=8",
    "--config.batch_size=2",
    "--config.steps=4",
    "--config.warmup_steps=1",
    "--config.eval_batches=1",
    "--config.max_bytes=20000",
    "--config.steps_per_call=4",
]


def _run(*flags, timeout=600):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, "-m", "experiments.lr_transfer", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _refuse(constant):
    raise AssertionError(f"not strict JSON: {constant}")


def _tiny_config(**overrides):
    config = default_config.get_config()
    for flag in TINY:
        key, value = flag[len("--config.") :].split("=")
        config[key] = type(config[key])(value)
    config.update(overrides)
    return config


def test_tiny_run_writes_results_plot_and_table(tmp_path):
    out = tmp_path / "out"
    config = _tiny_config(parametrization="sp_global,mup", learning_rate_grid="1e-3,2e-3,2", seeds=2)
    lines = []
    records = lr_transfer.run(lr_transfer.parse_args(config, {"out": str(out), "data": ""}), log=lines.append)
    with open(out / "results.json") as f:
        assert json.load(f, parse_constant=_refuse) == strict_json(records)
    assert len(records) == 2 * 2 * 2 * 2  # parametrizations x widths x lrs x seeds
    keys = {"parametrization", "optimizer", "width", "lr", "seed", "final_loss", "diverged"}
    assert all(keys <= set(r) for r in records)
    assert {r["parametrization"] for r in records} == {"sp_global", "mup"}
    assert {r["width"] for r in records} == {16, 32}
    assert sorted({r["lr"] for r in records}) == pytest.approx([1e-3, 2e-3])
    assert {r["seed"] for r in records} == {0, 1}
    for r in records:
        assert r["optimizer"] == "adam"
        assert r["diverged"] or (math.isfinite(r["final_loss"]) and 0 < r["final_loss"] < 10)
    assert (out / "results.csv").exists()
    assert (out / "lr_transfer.png").stat().st_size > 1000
    table = (out / "optimal_lr.txt").read_text()
    assert "best_lr" in table and "optimum shift" in table
    assert any("best_lr" in line for line in lines)
    with open(out / "optimal_lr.json") as f:
        optimal = json.load(f)
    assert len(optimal["optimal"]) == 4 and set(optimal["shift_grid_steps"]) == {"sp_global", "mup"}


def test_log_alignment_adds_each_layers_exponents(tmp_path):
    config = _tiny_config(parametrization="mup", widths="16", learning_rates="0.01", log_alignment=True)
    records = lr_transfer.run(lr_transfer.parse_args(config, {"out": str(tmp_path), "data": ""}), log=print)
    (record,) = records
    alpha = [k for k in record if k.startswith("alignment/alpha/")]
    assert "alignment/alpha/block_0/mlp/fc_in" in alpha and all(0 < record[k] < 1.5 for k in alpha)
    assert any(k.startswith("alignment/omega/") for k in record)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("parametrization", "sp_global,xyz", "config.parametrization"),
        ("parametrization", "sp_perlayer", "config.parametrization"),
        ("optimizer", "lion", "config.optimizer"),
        ("alignment", "half", "config.alignment"),
        ("widths", "64,abc", "config.widths"),
        ("widths", "32,64", None),
        ("learning_rate_grid", "1e-3,1e-4,2", "config.learning_rate_grid"),
        ("learning_rates", "1e-3,-1", "config.learning_rates"),
        ("steps", 0, "config.steps"),
        ("eps_mode", "huge", "config.eps_mode"),
    ],
)
def test_config_values_are_checked(key, value, message):
    config = default_config.get_config()
    config[key] = value
    if message is None:
        assert lr_transfer.parse_args(config, {"out": "x", "data": ""}).widths == (32, 64)
    else:
        with pytest.raises(ValueError, match=message):
            lr_transfer.parse_args(config, {"out": "x", "data": ""})


def test_learning_rates_list_beats_the_grid():
    config = default_config.get_config()
    config.learning_rates = "0.01,0.001"
    assert lr_transfer.parse_args(config, {"out": "x", "data": ""}).lrs == (0.001, 0.01)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config.steps=zero"], "steps"),
        (["--config.optimizer=lion"], "config.optimizer"),
        (["--config.lr_grid=1,2,3"], "unknown config key 'lr_grid'"),
        (["--no_such_flag=1"], "no_such_flag"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(tmp_path, flags, message):
    proc = _run(f"--out={tmp_path}", *flags, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_alignment_can_be_a_measured_number():
    config = default_config.get_config()
    config.alignment = "0.75"
    assert lr_transfer.parse_args(config, {"out": "x", "data": ""}).alignment == 0.75
    config.alignment = "2.5"
    with pytest.raises(ValueError, match="config.alignment"):
        lr_transfer.parse_args(config, {"out": "x", "data": ""})


def test_summary_flags_grid_edges_single_widths_and_writes_strict_json(tmp_path):
    losses = {1e-3: 3.0, 2e-3: 2.0, 4e-3: math.inf}  # the largest LR diverged: the best is inside
    records = [
        {"parametrization": "mup", "width": 64, "lr": lr, "seed": 0, "final_loss": loss, "initial_loss": 5.5,
         "diverged": not math.isfinite(loss)}
        for lr, loss in losses.items()
    ] + [
        {"parametrization": "sp", "width": 64, "lr": lr, "seed": 0, "final_loss": 4.0 - i,
         "initial_loss": 5.5, "diverged": False}
        for i, lr in enumerate(losses)
    ]  # fmt: skip
    text = lr_transfer.write_summary(records, str(tmp_path), log=lambda line: None)
    assert "n/a (one width" in text
    assert "best LR at the edge of the grid" in text and "sp width 64" in text and "mup width 64" not in text
    with open(tmp_path / "optimal_lr.json") as f:
        summary = json.load(f, parse_constant=_refuse)
    assert summary["at_grid_edge"] == ["sp width 64"]
    assert {r["parametrization"]: r["at_grid_edge"] for r in summary["optimal"]} == {"mup": False, "sp": True}
    assert summary["shift_grid_steps"] == {"mup": None, "sp": None}


def test_out_that_is_a_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = _run(f"--out={tmp_path / 'file'}", timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--out" in lines[0] and "is not writable" in lines[0]

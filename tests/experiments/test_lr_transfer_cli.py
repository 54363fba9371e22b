"""``experiments.lr_transfer`` end to end at tiny size (in-process), its config errors, command lines."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import lr_transfer, transformer_cells
from experiments.configs import lr_transfer as default_config
from paramlab.sweep import strict_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.widths=16,32",
    "--config.base_width=16",
    "--config.d_head=8",
    "--config.depths=1",
    "--config.base_depth=1",
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
    keys = {"parametrization", "optimizer", "width", "learning_rate", "seed", "final_loss", "diverged"}
    assert all(keys <= set(r) for r in records)
    assert {r["parametrization"] for r in records} == {"sp_global", "mup"}
    assert {r["width"] for r in records} == {16, 32}
    assert sorted({r["learning_rate"] for r in records}) == pytest.approx([1e-3, 2e-3])
    assert {r["seed"] for r in records} == {0, 1}
    for r in records:
        assert r["optimizer"] == "adam"
        assert r["diverged"] or (math.isfinite(r["final_loss"]) and 0 < r["final_loss"] < 10)
    assert (out / "results.csv").exists()
    assert (out / "lr_transfer.png").stat().st_size > 1000
    with open(out / "curves.json") as f:
        curves = json.load(f, parse_constant=_refuse)
    assert len(curves) == len(records) and all(c["step"] == [4] for c in curves)  # steps=4, one window
    assert (out / "loss_curves.png").stat().st_size > 1000
    table = (out / "optimal_lr.txt").read_text()
    assert "best_learning_rate" in table and "optimum shift" in table
    assert any("best_learning_rate" in line for line in lines)
    with open(out / "optimal_lr.json") as f:
        optimal = json.load(f)
    assert len(optimal["optimal"]) == 4
    assert set(optimal["shift_grid_steps"]) == {"across_widths"}
    assert set(optimal["shift_grid_steps"]["across_widths"]) == {"sp_global", "mup"}
    assert {r["depth"] for r in records} == {1} and {r["depth_rule"] for r in records} == {"none"}


def test_depth_grid_records_width_depth_and_rule(tmp_path):
    config = _tiny_config(
        parametrization="mup",
        widths="16",
        depths="1,2",
        depth_rule="none,completep",
        learning_rates="1e-3,4e-3",
    )
    records = lr_transfer.run(lr_transfer.parse_args(config, {"out": str(tmp_path), "data": ""}), log=print)
    assert len(records) == 2 * 2 * 2  # rules x depths x lrs
    assert {(r["depth_rule"], r["depth"]) for r in records} == {
        (a, d) for a in ("none", "completep") for d in (1, 2)
    }
    assert all(r["width"] == 16 and math.isfinite(r["final_loss"]) for r in records)
    with open(tmp_path / "optimal_lr.json") as f:
        shifts = json.load(f)["shift_grid_steps"]
    assert set(shifts) == {"across_depths"} and set(shifts["across_depths"]) == {"mup", "mup+completep"}
    assert (tmp_path / "optimal_lr.png").stat().st_size > 1000
    # at the base depth the depth rule changes nothing: the same losses bit for bit
    base = {(r["depth_rule"], r["learning_rate"]): r["final_loss"] for r in records if r["depth"] == 1}
    assert all(base[("completep", lr)] == base[("none", lr)] for lr in (1e-3, 4e-3))


def test_build_setting_gives_the_model_the_plans_branch_multiplier():
    args = lr_transfer.parse_args(
        _tiny_config(depths="1,4", depth_rule="depth_mup"), {"out": "x", "data": ""}
    )
    setting = transformer_cells.build_setting(args, transformer_cells.Cell("mup", "depth_mup", 16, 4))
    import jax
    import jax.numpy as jnp

    params = setting.init_params(jax.random.key(0))
    assert "block_3" in params
    tokens = jnp.zeros((1, 8), jnp.int32)
    expected_args = lr_transfer.parse_args(
        _tiny_config(depths="4", depth_rule="none"), {"out": "x", "data": ""}
    )
    cfg = transformer_cells.model_config(expected_args, 16, 4, branch_multiplier=0.5)  # (4 / 1) ** -1/2
    import numpy as np

    from paramlab.models import Transformer

    np.testing.assert_allclose(
        setting.apply_fn(params, tokens), Transformer(cfg).apply({"params": params}, tokens)
    )


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
        ("depths", "", "config.depths"),
        ("depths", "2,2", "config.depths"),
        ("depth_rule", "deep", "config.depth_rule"),
        ("base_depth", 8, "config.base_depth"),
        ("depth_alpha", 0.3, "config.depth_alpha"),
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
        {"parametrization": "mup", "width": 64, "learning_rate": lr, "seed": 0, "final_loss": loss,
         "initial_loss": 5.5, "diverged": not math.isfinite(loss)}
        for lr, loss in losses.items()
    ] + [
        {"parametrization": "sp", "width": 64, "learning_rate": lr, "seed": 0, "final_loss": 4.0 - i,
         "initial_loss": 5.5, "diverged": False}
        for i, lr in enumerate(losses)
    ]  # fmt: skip
    text = lr_transfer.write_summary(records, str(tmp_path), log=lambda line: None)
    assert "n/a (one width and one depth" in text
    assert "best LR at the edge of the grid" in text and "sp width 64" in text and "mup width 64" not in text
    with open(tmp_path / "optimal_lr.json") as f:
        summary = json.load(f, parse_constant=_refuse)
    assert summary["at_grid_edge"] == ["sp width 64"]
    assert {r["recipe"]: r["at_grid_edge"] for r in summary["optimal"]} == {"mup": False, "sp": True}
    assert summary["shift_grid_steps"] == {}


def test_out_that_is_a_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = _run(f"--out={tmp_path / 'file'}", timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--out" in lines[0] and "is not writable" in lines[0]


def _depth_records():
    """mup: best LR 2e-3 at depth 2, 1e-3 at depth 8; two seeds differing by +-0.01."""
    losses = {2: {1e-3: 2.5, 2e-3: 2.4, 4e-3: 2.6}, 8: {1e-3: 2.2, 2e-3: 2.3, 4e-3: 2.9}}
    return [
        {"parametrization": "mup", "depth_rule": "none", "width": 64, "depth": depth,
         "learning_rate": lr, "seed": seed, "final_loss": loss + (0.01 if seed else -0.01),
         "initial_loss": 5.5, "diverged": False}
        for depth, curve in losses.items() for lr, loss in curve.items() for seed in (0, 1)
    ]  # fmt: skip


def test_summary_reports_seed_spread_and_the_loss_at_the_transferred_lr(tmp_path):
    lr_transfer.write_summary(_depth_records(), str(tmp_path), log=lambda line: None)
    with open(tmp_path / "optimal_lr.json") as f:
        rows = {r["depth"]: r for r in json.load(f, parse_constant=_refuse)["optimal"]}
    assert rows[2]["best_learning_rate"] == pytest.approx(2e-3) and rows[8]["best_learning_rate"] == 1e-3
    assert rows[8]["best_final_loss_std"] == pytest.approx(np.std([2.19, 2.21], ddof=1))
    assert rows[8]["transferred_learning_rate"] == pytest.approx(2e-3)  # tuned at the smallest depth
    assert rows[8]["transferred_final_loss"] == pytest.approx(2.3)
    assert rows[8]["transfer_excess_percent"] == pytest.approx(100 * 0.1 / 2.2)
    assert rows[2]["transfer_excess_percent"] == 0.0
    # the parabola through (log2 lr, loss) at depth 2: vertex of the three grid points, worked here
    a, b, _ = np.polyfit(np.log2([1e-3, 2e-3, 4e-3]), [2.5, 2.4, 2.6], 2)
    assert rows[2]["fitted_learning_rate"] == pytest.approx(2.0 ** (-b / (2 * a)))
    assert (tmp_path / "optimal_lr.png").stat().st_size > 1000
    markdown = (tmp_path / "optimal_lr.md").read_text().splitlines()
    depth8 = next(line for line in markdown if line.startswith("| mup | 64 | 8 |"))
    cells = [c.strip() for c in depth8.strip("|").split("|")]
    assert (
        cells[3] == f"2^{math.log2(1e-3):.2f} (edge)"
        and cells[5] == f"2.200 ± {np.std([2.19, 2.21], ddof=1):.3f}"
    )
    assert cells[6] == "2.300" and cells[7] == f"{100 * 0.1 / 2.2:.1f}%"


def test_results_flag_rewrites_the_summary_without_training(tmp_path):
    from paramlab.sweep import save_records

    save_records(_depth_records(), tmp_path / "results.json")
    out = tmp_path / "summary"
    config = _tiny_config(depths="2,8", base_depth=2, widths="64", base_width=64)
    lr_transfer.main(config, {"out": str(out), "data": "", "results": str(tmp_path / "results.json")})
    assert "transfer_excess_percent" in (out / "optimal_lr.txt").read_text()
    assert not (out / "results.json").exists()  # nothing was trained


def test_one_learning_rate_gives_no_shift(tmp_path):
    records = [r for r in _depth_records() if r["learning_rate"] == 1e-3]
    text = lr_transfer.write_summary(records, str(tmp_path), log=lambda line: None)
    assert "optimum shift: n/a (one learning rate" in text


def test_scanned_layers_run_the_same_grid(tmp_path):
    config = _tiny_config(parametrization="mup", widths="16", depths="1,2", depth_rule="completep",
                          learning_rates="2e-3", scan_layers=True)  # fmt: skip
    records = lr_transfer.run(lr_transfer.parse_args(config, {"out": str(tmp_path), "data": ""}), log=print)
    assert {(r["depth"], r["depth_rule"]) for r in records} == {(1, "completep"), (2, "completep")}
    assert all(math.isfinite(r["final_loss"]) and 0 < r["final_loss"] < 10 for r in records)

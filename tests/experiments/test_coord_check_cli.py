"""``python -m experiments.coord_check`` end to end at tiny widths (a subprocess), and its config errors."""

import json
import math
import os
import subprocess
import sys

import pytest

from experiments import coord_check
from experiments.configs import coord_check as default_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = {"parametrization", "optimizer", "width", "step", "module", "l1"}


def _run(*flags, timeout=240):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, "-m", "experiments.coord_check", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _records(out):
    with open(out / "coord_check.json") as f:
        return json.load(f)


def test_mlp_two_parametrizations(tmp_path):
    out = tmp_path / "mlp"
    proc = _run("--config.parametrization=sp_global,mup", "--config.optimizer=adam",
                "--config.widths=16,32,64", "--config.base_width=32", "--config.steps=3",
                "--config.model=mlp", "--config.batch_size=8", f"--out={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(out)
    modules = {"dense_0", "dense_1", "readout", "output"}
    assert len(records) == 2 * 3 * 3 * len(modules)  # parametrizations x widths x steps x modules
    assert all(set(r) == KEYS for r in records)
    assert {r["parametrization"] for r in records} == {"sp_global", "mup"}
    assert {r["optimizer"] for r in records} == {"adam"}
    assert {r["width"] for r in records} == {16, 32, 64}
    assert {r["step"] for r in records} == {1, 2, 3}
    assert {r["module"] for r in records} == modules
    assert all(isinstance(r["l1"], float) and math.isfinite(r["l1"]) and r["l1"] > 0 for r in records)
    # At the base width every parametrization is the base model: same activations at init. The width 16
    # is narrower than the base (a ratio below 1 is allowed) and there muP's readout is larger than SP's.
    at = {(r["parametrization"], r["module"], r["width"]): r["l1"] for r in records if r["step"] == 1}
    for module in modules:
        assert at[("sp_global", module, 32)] == pytest.approx(at[("mup", module, 32)], rel=1e-6)
    assert at[("mup", "readout", 16)] > 1.2 * at[("sp_global", "readout", 16)]
    assert (out / "coord_check.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "coord_check_summary.json") as f:
        summary = json.load(f)
    assert len(summary) == 2 * 3 * len(modules)
    assert "slope" in proc.stdout and "dense_1" in proc.stdout


def test_transformer_zero_readout(tmp_path):
    out = tmp_path / "tf"
    proc = _run("--config.parametrization=mup", "--config.optimizer=adam_atan2", "--config.widths=16,32",
                "--config.base_width=16", "--config.d_head=8", "--config.depth=1", "--config.seq_len=4",
                "--config.batch_size=2", "--config.vocab_size=16", "--config.steps=2",
                "--config.zero_init_readout=True", "--config.model=transformer", f"--out={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(out)
    modules = {r["module"] for r in records}
    assert {"embed", "block_0/attn/q", "block_0/mlp/fc_in", "final_norm", "readout", "output"} <= modules
    assert len(records) == 2 * 2 * len(modules)
    l1 = {(r["module"], r["width"], r["step"]): r["l1"] for r in records}
    assert l1[("output", 16, 1)] == 0.0 and l1[("output", 32, 1)] == 0.0  # zero readout at init
    assert l1[("output", 16, 2)] > 0.0
    assert (out / "coord_check.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("parametrization", "mup,xyz", "config.parametrization"),
        ("parametrization", "sp", None),
        ("optimizer", "lion", "config.optimizer"),
        ("model", "cnn", "config.model"),
        ("alignment", "half", "config.alignment"),
        ("widths", "64,abc", "config.widths"),
        ("widths", "64,96", "config.base_width"),
        ("widths", "32,64", None),
        ("steps", 0, "config.steps"),
        ("learning_rate", -1.0, "config.learning_rate"),
    ],
)
def test_config_values_are_checked(key, value, message):
    config = default_config.get_config()
    config[key] = value
    if message is None:
        assert coord_check.parse_args(config, {"out": "x"}).out == "x"
    else:
        with pytest.raises(ValueError, match=message):
            coord_check.parse_args(config, {"out": "x"})


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config.steps=two"], "steps"),
        (["--config.widhts=64"], "did you mean 'widths'?"),
        (["--config.model=cnn"], "config.model"),
        (["--no_such_flag=1"], "no_such_flag"),
        (["--config.widths=64"], "--out is required"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(tmp_path, flags, message):
    out = [] if "--out is required" in message else [f"--out={tmp_path}"]
    proc = _run(*out, *flags, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "coord_check.json")

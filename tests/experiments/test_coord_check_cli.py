"""``python -m experiments.coord_check`` end to end at tiny widths (a subprocess), and its flag errors."""

import json
import math
import os
import subprocess
import sys

import pytest

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
    proc = _run("--parametrization=sp,mup", "--optimizer=adam", "--widths=16,32,64", "--base_width=16",
                "--steps=3", "--model=mlp", "--batch_size=8", f"--out={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(out)
    modules = {"dense_0", "dense_1", "readout", "output"}
    assert len(records) == 2 * 3 * 3 * len(modules)  # parametrizations x widths x steps x modules
    assert all(set(r) == KEYS for r in records)
    assert {r["parametrization"] for r in records} == {"sp", "mup"}
    assert {r["optimizer"] for r in records} == {"adam"}
    assert {r["width"] for r in records} == {16, 32, 64}
    assert {r["step"] for r in records} == {1, 2, 3}
    assert {r["module"] for r in records} == modules
    assert all(isinstance(r["l1"], float) and math.isfinite(r["l1"]) and r["l1"] > 0 for r in records)
    # At the base width every parametrization is the base model: same activations at init.
    at_base = {
        (r["parametrization"], r["module"]): r["l1"] for r in records if r["width"] == 16 and r["step"] == 1
    }
    for module in modules:
        assert at_base[("sp", module)] == pytest.approx(at_base[("mup", module)], rel=1e-6)
    assert (out / "coord_check.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "coord_check_summary.json") as f:
        summary = json.load(f)
    assert len(summary) == 2 * 3 * len(modules)
    assert "slope" in proc.stdout and "dense_1" in proc.stdout


def test_transformer_zero_readout(tmp_path):
    out = tmp_path / "tf"
    proc = _run("--parametrization=mup", "--optimizer=adam_atan2", "--widths=16,32", "--base_width=16",
                "--d_head=8", "--depth=1", "--seq_len=4", "--batch_size=2", "--vocab_size=16", "--steps=2",
                "--zero_readout", "--model=transformer", f"--out={out}")  # fmt: skip
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
    "flag, message",
    [
        ("--parametrization=mup,xyz", "--parametrization"),
        ("--optimizer=lion", "--optimizer"),
        ("--model=cnn", "--model"),
        ("--alignment=half", "--alignment"),
        ("--widths=64,abc", "--widths"),
        ("--widths=64,96", "--base_width"),
        ("--widths=32,64", "--base_width"),
        ("--steps=0", "--steps"),
        ("--steps=two", "steps"),
        ("--lr=-1", "--lr"),
        ("--no_such_flag=1", "no_such_flag"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, flag, message):
    proc = _run(f"--out={tmp_path}", flag, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "coord_check.json")


def test_out_is_required():
    proc = _run("--widths=64", timeout=60)
    assert proc.returncode == 2 and "--out" in proc.stderr

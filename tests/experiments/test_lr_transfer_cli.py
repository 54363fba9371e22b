"""``python -m experiments.lr_transfer`` end to end at tiny size (a subprocess), and its flag errors."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--widths=16,32",
    "--base_width=16",
    "--d_head=8",
    "--n_layers=1",
    "--seq_len=8",
    "--batch_size=2",
    "--steps=4",
    "--warmup_steps=1",
    "--eval_batches=1",
    "--corpus_bytes=20000",
    "--steps_per_call=4",
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


def test_tiny_run_writes_results_plot_and_table(tmp_path):
    out = tmp_path / "out"
    proc = _run("--parametrization=sp,mup", "--optimizer=adam", "--lr_grid=1e-3,2e-3,2", "--seeds=2",
                "--log_alignment", f"--out={out}", *TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.json") as f:
        records = json.load(f)
    assert len(records) == 2 * 2 * 2 * 2  # parametrizations x widths x lrs x seeds
    keys = {"parametrization", "optimizer", "width", "lr", "seed", "final_loss", "diverged"}
    assert all(keys <= set(r) for r in records)
    assert {r["parametrization"] for r in records} == {"sp", "mup"}
    assert {r["width"] for r in records} == {16, 32}
    assert sorted({r["lr"] for r in records}) == pytest.approx([1e-3, 2e-3])
    assert {r["seed"] for r in records} == {0, 1}
    for r in records:
        assert r["optimizer"] == "adam"
        assert r["diverged"] or (math.isfinite(r["final_loss"]) and 0 < r["final_loss"] < 10)
        alpha = [k for k in r if k.startswith("alignment/alpha/")]
        assert "alignment/alpha/block_0/mlp/fc_in" in alpha and all(0 < r[k] < 1.5 for k in alpha)
    assert (out / "results.csv").exists()
    assert (out / "lr_transfer.png").stat().st_size > 1000
    table = (out / "optimal_lr.txt").read_text()
    assert "best_lr" in table and "optimum shift" in table
    assert "best_lr" in proc.stdout
    with open(out / "optimal_lr.json") as f:
        optimal = json.load(f)
    assert len(optimal["optimal"]) == 4 and set(optimal["shift_grid_steps"]) == {"sp", "mup"}


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--parametrization=sp,xyz", "--parametrization"),
        ("--optimizer=lion", "--optimizer"),
        ("--alignment=half", "--alignment"),
        ("--widths=64,abc", "--widths"),
        ("--lr_grid=1e-3,1e-4,2", "--lr_grid"),
        ("--steps=zero", "steps"),
        ("--no_such_flag=1", "no_such_flag"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, flag, message):
    proc = _run(f"--out={tmp_path}", flag, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr

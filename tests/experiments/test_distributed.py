"""Two processes, one run: ``jax.distributed`` over gloo CPU collectives on this machine.

The two-process run (one CPU device each, a global 2-device mesh) must log the losses of one process
driving two devices, and its checkpoint must resume in a single process.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 12
COMMON = [
    "--config=experiments/configs/tiny.py",
    "--config.checkpoint.every=6",
    "--config.eval.every=6",
    "--config.logging.every=2",
    "--config.logging.progress_bar=False",
]
# 1e-5 relative: the same global mesh computes the same sums; only the all-reduce (gloo between processes,
# XLA within one) may order the two devices' partial sums differently.
RTOL = 1e-5


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _command(workdir, steps, *extra):
    return [sys.executable, "-m", "experiments.train", *COMMON, f"--workdir={workdir}"] + [
        f"--config.train.steps={steps}",
        *extra,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir) -> dict[int, float]:
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def _run(command, devices):
    done = subprocess.run(command, cwd=ROOT, env=_env(devices), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_train_as_one_and_their_checkpoint_resumes_in_one(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    address = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            _command(
                two,
                STEPS,
                f"--config.distributed.coordinator_address={address}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={rank}",
            ),
            cwd=ROOT,
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    # only the primary process reports and writes
    assert "final validation loss" in outputs[0][0] and "final validation loss" not in outputs[1][0]
    assert "eval loss" not in outputs[1][0]

    _run(_command(one, STEPS), devices=2)
    two_losses, one_losses = _losses(two), _losses(one)
    assert sorted(two_losses) == sorted(one_losses) == list(range(2, STEPS + 1, 2))
    np.testing.assert_allclose(
        [two_losses[s] for s in sorted(two_losses)], [one_losses[s] for s in sorted(one_losses)], rtol=RTOL
    )
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["12", "6"]

    # the two-process checkpoint resumes in one process (here on one device) and extends the run
    resumed = _run(_command(two, STEPS + 4), devices=1)
    assert f"resuming from checkpoint {two / 'checkpoints' / str(STEPS)}" in resumed.stderr
    _run(_command(one, STEPS + 4), devices=1)
    extended_two, extended_one = _losses(two), _losses(one)
    assert max(extended_two) == STEPS + 4
    np.testing.assert_allclose(
        [extended_two[s] for s in sorted(extended_two)],
        [extended_one[s] for s in sorted(extended_one)],
        rtol=RTOL,
    )

"""experiments.train end to end: outputs, SIGKILL + restart == uninterrupted, clear CLI errors.

Every run is a subprocess of ``python -m experiments.train`` with the tiny config.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from experiments.configs import tiny
from experiments.train import build
from paramlab.data import load_corpus, unigram_entropy

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = "experiments/configs/tiny.py"
# a longer tiny run with frequent checkpoints, so a kill lands mid-training
STEPS = 80
RESUMABLE = [f"--config.train.steps={STEPS}", "--config.checkpoint.every=10", "--config.eval.every=40"]
TIMING_KEYS = {"step_time_s", "tokens_per_s"}


def _command(workdir, *overrides, config=TINY):
    return [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config={config}",
        f"--workdir={workdir}",
        *overrides,
    ]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's run
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _start(workdir, *overrides):
    return subprocess.Popen(
        _command(workdir, *overrides),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(workdir, *overrides, config=TINY):
    return subprocess.run(
        _command(workdir, *overrides, config=config),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _records(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def _wait_for_checkpoint(workdir, proc, timeout=120):
    ckpt = pathlib.Path(workdir) / "checkpoints"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir()):
            return
        time.sleep(0.01)
    raise AssertionError(
        f"no checkpoint appeared (returncode {proc.poll()}): {proc.communicate()[1][-2000:]}"
    )


def test_sigkill_then_restart_equals_uninterrupted_run(tmp_path):
    straight, killed, termed = tmp_path / "straight", tmp_path / "killed", tmp_path / "termed"
    reference = _start(straight, *RESUMABLE)
    victim = _start(killed, *RESUMABLE)
    preempted = _start(termed, *RESUMABLE)
    _wait_for_checkpoint(killed, victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL

    # SIGTERM: finish the step, save, exit 143 with a message saying how to continue
    _wait_for_checkpoint(termed, preempted)
    preempted.send_signal(signal.SIGTERM)
    term_out, term_err = preempted.communicate(timeout=300)
    assert preempted.returncode == 143, term_err[-2000:]
    stopped_at = int(term_out.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert (termed / "checkpoints" / str(stopped_at)).is_dir() and stopped_at < STEPS
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-2000:]
    partial = max(r["step"] for r in _records(killed))
    assert partial < STEPS, "the killed run finished before the kill; the test did not interrupt it"

    resumed = _run(killed, *RESUMABLE)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint" in resumed.stderr  # absl logging
    assert _records(killed) == _records(straight)

    # the uninterrupted run's report: outputs exist, learning happened
    for name in ("checkpoints", "metrics.jsonl", "loss.png"):
        assert str(straight / name) in out
    assert (straight / "loss.png").read_bytes()[:4] == b"\x89PNG"
    # the instability proxies of every logged step (config logging.stability, on by default)
    for record in (r for r in _records(straight) if "loss" in r):
        layers = [k for k in record if k.startswith("attention_logit/block_")]
        assert len(layers) == 2 and record["attention_logit/max"] == max(record[k] for k in layers)
        assert record["output_logit"] > 0
    evals = [r["eval_loss"] for r in _records(straight) if "eval_loss" in r]
    entropy = unigram_entropy(load_corpus(max_bytes=65_536).eval)
    assert f"unigram entropy {entropy:.4f} nats/byte" in out
    assert f"final validation loss {evals[-1]:.4f}" in out
    assert evals[-1] < entropy

    # the same workdir with another model: a clear error naming the checkpoint, nothing overwritten
    before = sorted(p.name for p in (straight / "checkpoints").iterdir())
    other = _run(straight, *RESUMABLE, "--config.model.n_layers=3")
    assert other.returncode == 1
    assert f"checkpoints/{STEPS} was written by a different config" in other.stderr
    assert "model.n_layers: 2 -> 3" in other.stderr and "Traceback" not in other.stderr
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == before

    # raising train.steps extends the finished run from its last checkpoint
    longer = _run(straight, *RESUMABLE, f"--config.train.steps={STEPS + 10}")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert f"resuming from checkpoint {straight / 'checkpoints' / str(STEPS)}" in longer.stderr
    assert max(r["step"] for r in _records(straight)) == STEPS + 10

    # a corrupt newest checkpoint: named, moved aside, and the run resumes from the newest intact one
    for f in (killed / "checkpoints" / str(STEPS) / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")
    corrupt = _run(killed, *RESUMABLE)
    assert corrupt.returncode == 0, corrupt.stderr[-2000:]
    assert (
        f"checkpoints/{STEPS} is unreadable" in corrupt.stderr and "next older checkpoint" in corrupt.stderr
    )
    assert f"resuming from checkpoint {killed / 'checkpoints' / str(STEPS - 10)}" in corrupt.stderr
    assert (killed / "checkpoints" / f"{STEPS}.corrupt").is_dir()
    assert _records(killed) == [r for r in _records(straight) if r["step"] <= STEPS]


def test_a_checkpoint_that_cannot_be_saved_ends_the_run_in_one_line(tmp_path):
    """The checkpoint directory turns into a file mid-run: exit 1 within seconds, one line naming it."""
    proc = _start(tmp_path, *RESUMABLE, "--config.checkpoint.every=2")
    _wait_for_checkpoint(tmp_path, proc)
    ckpt = tmp_path / "checkpoints"
    ckpt.rename(tmp_path / "saved")
    while not ckpt.is_file():  # orbax may recreate the directory before the file is written
        try:
            ckpt.write_text("not a directory")
        except IsADirectoryError:
            ckpt.rename(tmp_path / f"recreated.{time.monotonic_ns()}")
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    assert time.monotonic() - t0 < 60
    errors = [line for line in err.splitlines() if line.startswith("experiments.train: error:")]
    assert len(errors) == 1 and f"could not save a checkpoint in {ckpt}" in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert any(p.name.isdigit() for p in (tmp_path / "saved").iterdir())  # what was saved is kept


BAD_COMMAND_LINES = [
    (["--config.distributed.num_processes=2"], "config.distributed: num_processes and process_id need"),
    (["--config.distributed.coordinator_address=nohost"], "coordinator_address must be 'host:port'"),
    (["--config.model.no_such_key=1"], "unknown config key 'model.no_such_key'"),
    (["--config.model.d_modle=64"], "did you mean 'model.d_model'?"),
    (["--config.train.steps=abc"], "--config.train.steps=abc"),
    (["--config.model.norm=batch"], "config.model: norm must be one of"),
    (["--config.parametrization.name=xp"], "config.parametrization"),
    (["--config.parametrization.base_d_model=12"], "base_d_model=12"),
    (["--config.data.path=/no/such/corpus"], "config.data: data path '/no/such/corpus' does not exist"),
    (["--config.train.microbatches=3"], "train.microbatches=3"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--config.sharding.fsdp=3"], "3 does not divide the 1 available devices"),
]


def test_bad_command_lines_are_one_line_errors_with_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [(_command(tmp_path / "w", *overrides), expected) for overrides, expected in BAD_COMMAND_LINES]
    cases.append((_command(blocker / "sub"), "is not writable"))
    cases.append((_command(tmp_path / "w", f"--log_dir={blocker}/logs"), f"--log_dir {blocker}/logs is not"))
    cases.append((_command(tmp_path / "w", config="experiments/configs/nope.py"), "does not exist"))
    cases.append(([sys.executable, "-m", "experiments.train", f"--config={TINY}"], "--workdir is required"))
    procs = [
        (subprocess.Popen(cmd, cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True), cmd, expected)
        for cmd, expected in cases
    ]
    for proc, cmd, expected in procs:
        stderr = proc.communicate(timeout=120)[1]
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2, (cmd, stderr[-2000:])
        assert len(lines) == 1 and "Traceback" not in stderr, (cmd, stderr)
        assert expected in lines[0], (cmd, lines[0])
        assert lines[0].startswith("experiments.train: error: ")
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_alignment_is_a_name_or_a_measured_number_naming_its_key():
    config = tiny.get_config()
    config.parametrization.alignment = "2.5"
    with pytest.raises(ValueError, match=r"^config\.parametrization\.alignment: .*2\.5"):
        build(config)
    config.parametrization.alignment = "0.75"
    assert build(config).plan.parametrization.alignment == 0.75


def test_a_depth_rule_sets_the_branch_multiplier_and_the_block_learning_rates():
    """CompleteP at 4 blocks from a 2-block proxy: branches 2^-1; Adam block LRs r_L^(alpha - 1)."""
    config = tiny.get_config()
    config.model.n_layers = 4
    config.parametrization.base_n_layers = 2
    config.parametrization.depth_rule = "completep"
    config.parametrization.depth_alpha = 0.5
    experiment = build(config)
    assert experiment.model.config.branch_multiplier == pytest.approx(0.5**0.5)
    lr = experiment.plan.values("lr")
    config.parametrization.depth_rule = "none"
    reference = build(config).plan.values("lr")
    for path, value in lr.items():
        factor = 2.0 ** (0.5 - 1) if path.startswith("block_") else 1.0
        assert value == pytest.approx(reference[path] * factor), path


def test_scanned_layers_build_and_a_bad_depth_setting_names_its_key():
    config = tiny.get_config()
    config.model.scan_layers = True
    config.model.remat = True
    assert build(config).model.config.scan_layers
    config.parametrization.depth_rule = "completeq"
    with pytest.raises(ValueError, match="config.parametrization"):
        build(config)
    config.parametrization.depth_rule = "none"
    config.parametrization.base_n_layers = 0
    with pytest.raises(ValueError, match="base_n_layers"):
        build(config)


def test_log_dir_gets_the_status_lines_and_tensorboard_the_metrics(tmp_path):
    logs, workdir = tmp_path / "logs", tmp_path / "w"
    done = _run(workdir, "--config.train.steps=8", "--config.logging.tensorboard=True", f"--log_dir={logs}")
    assert done.returncode == 0, done.stderr[-2000:]
    log_files = [p for p in logs.iterdir() if p.is_file() and not p.is_symlink()]
    assert any("starting from scratch" in p.read_text() for p in log_files), [p.name for p in log_files]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))

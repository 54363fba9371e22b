"""One run per workdir (a lock naming its holder, stale locks taken over), writable outputs checked before
the first step, and earlier results set aside rather than overwritten."""

import json
import os
import socket
import subprocess
import sys

import pytest

from paramlab.train.loop import LoopConfig, fit
from paramlab.train.workdir import LOCK_NAME, WorkdirBusy, WorkdirLock, check_writable, set_aside
from tests.train.test_loop import LOOP, _task


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no process has this pid now (pids are not reused at once)


def test_a_live_holder_is_named_and_the_lock_released(tmp_path):
    with WorkdirLock(tmp_path, log=lambda _: None):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(WorkdirBusy, match=rf"in use by pid {os.getpid()} on {socket.gethostname()}"):
            with WorkdirLock(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_dead_holder_is_taken_over_and_another_host_refused(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0}))
    messages = []
    with WorkdirLock(tmp_path, log=messages.append):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "a process that is gone" in messages[0]
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(WorkdirBusy, match="on elsewhere"):
        with WorkdirLock(tmp_path):
            pass


def test_fit_refuses_a_busy_workdir_and_an_unwritable_checkpoint_dir(toy, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / LOCK_NAME).write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": 0})
    )
    with pytest.raises(WorkdirBusy, match="in use by pid"):
        fit(_task(toy), LoopConfig(**LOOP), busy, log=lambda _: None)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "checkpoints").write_text("a file where the checkpoint directory should be")
    with pytest.raises(OSError, match=r"checkpoint directory .*checkpoints is not writable"):
        fit(_task(toy), LoopConfig(**LOOP), blocked, log=lambda _: None)
    assert not (blocked / LOCK_NAME).exists()  # released on the error


def test_a_metrics_path_that_is_a_directory_is_named(toy, tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(OSError, match="metrics.jsonl"):
        fit(_task(toy), LoopConfig(**LOOP), tmp_path, log=lambda _: None)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_fresh_start_sets_earlier_metrics_aside(toy, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    messages = []
    fit(_task(toy), LoopConfig(**LOOP), tmp_path, log=messages.append)
    old = [p for p in os.listdir(tmp_path) if p.startswith("metrics.jsonl.") and p.endswith(".old")]
    assert len(old) == 1 and (tmp_path / old[0]).read_text() == '{"step": 1, "loss": 9.0}\n'
    assert any("moved the earlier metrics.jsonl" in m for m in messages)


def test_check_writable_and_set_aside_name_the_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError, match=r"workdir .*f/sub is not writable"):
        check_writable(tmp_path / "f" / "sub", "workdir")
    set_aside([str(tmp_path / "f"), str(tmp_path / "missing")], log=lambda _: None)
    assert not (tmp_path / "f").exists() and len(os.listdir(tmp_path)) == 1

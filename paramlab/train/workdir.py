"""One run per work directory, writable outputs, and earlier results never silently overwritten.

Specified in ``docs/training.md`` §12.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable

from paramlab.train import hosts

__all__ = ["WorkdirBusy", "WorkdirLock", "check_writable", "set_aside"]

LOCK_NAME = ".paramlab.lock"


class WorkdirBusy(RuntimeError):
    """Another live process holds the work directory."""


class WorkdirLock:
    """Context manager: hold ``workdir/.paramlab.lock`` (pid, host, start time) for the run.

    A lock whose process is gone (same host, pid not alive) is taken over; a live holder, or one on
    another host (whose liveness cannot be checked), is a :class:`WorkdirBusy` naming it. In a
    multi-process run the primary process holds the lock for all of them, and its refusal stops every
    process.
    """

    def __init__(self, workdir: str | os.PathLike, log: Callable[[str], None] = print):
        self.path = os.path.join(os.fspath(workdir), LOCK_NAME)
        self.log = log
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}

    def __enter__(self) -> WorkdirLock:
        refusal = None
        if hosts.is_primary():
            try:
                self._acquire()
            except WorkdirBusy as e:
                refusal = e
        if not hosts.primary_decides(refusal is None):
            raise refusal or WorkdirBusy(
                f"workdir {os.path.dirname(self.path)} is in use (process 0 could not take its lock)."
            )
        return self

    def _acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while not self._create():
            holder = self._holder()
            if holder is None:  # removed meanwhile, or unreadable: try again once it is gone
                _remove(self.path)
                continue
            if holder.get("host") == self.owner["host"] and not _alive(holder.get("pid")):
                self.log(f"taking over the lock of a process that is gone (pid {holder.get('pid')})")
                _remove(self.path)
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
            raise WorkdirBusy(
                f"workdir {os.path.dirname(self.path)} is in use by pid {holder.get('pid')} on "
                f"{holder.get('host')} (since {since}); wait for it, use another workdir, or delete "
                f"{self.path} if that process is gone."
            )

    def __exit__(self, *exc) -> None:
        if self._holder() == self.owner:
            _remove(self.path)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.owner, f)
        return True

    def _holder(self) -> dict | None:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


def check_writable(directory: str | os.PathLike, what: str = "directory") -> None:
    """Create ``directory`` and write a probe file in it; an ``OSError`` naming it if that fails."""
    directory = os.fspath(directory)
    probe = os.path.join(directory, f".write_probe_{socket.gethostname()}_{os.getpid()}")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise OSError(f"{what} {directory} is not writable ({e.strerror or e}).") from e


def set_aside(paths: list[str], log: Callable[[str], None] = print) -> None:
    """Rename each existing file to ``<name>.<time>.old`` (a fresh run must not overwrite it)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in paths:
        if os.path.isfile(path):
            target = f"{path}.{stamp}.old"
            os.replace(path, target)
            log(f"moved the earlier {os.path.basename(path)} (no checkpoint to resume) to {target}")


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass

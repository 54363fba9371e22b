"""Checkpoints that resume exactly: orbax ``CheckpointManager`` with four items per step.

Specified in ``docs/training.md`` §3.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from paramlab.optim.common import path_str
from paramlab.train import hosts
from paramlab.train.checksums import checksum_mismatches, checksums
from paramlab.train.state import TrainingDiverged, TrainState, tree_is_finite

__all__ = [
    "CheckpointError",
    "CheckpointSaveError",
    "Checkpointer",
    "CorruptCheckpoint",
    "Restored",
    "config_differences",
]

_ITEMS = ("state", "data", "config", "plan", "checksums")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or that belongs to a different run configuration."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint whose files cannot be read or whose arrays fail their saved checksums."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint that could not be written (unwritable directory, full disk, ...); older ones are kept."""


class Restored(NamedTuple):
    """What :meth:`Checkpointer.restore` returns."""

    state: TrainState
    data_state: Any
    config: dict
    plan: Any


class Checkpointer:
    """Save and restore train states with an orbax ``CheckpointManager``.

    Args:
      directory: where step directories are written (created if missing).
      max_to_keep: keep only the newest ``max_to_keep`` checkpoints (>= 1).
      async_save: write in a background thread (call :meth:`wait` or :meth:`close` before exit).
    """

    def __init__(self, directory: str | epath.PathLike, *, max_to_keep: int = 3, async_save: bool = True):
        if int(max_to_keep) != max_to_keep or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be an integer >= 1, got {max_to_keep!r}.")
        self.directory = _absolute(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(max_to_keep),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        handlers = {name: ocp.JsonCheckpointHandler() for name in _ITEMS if name != "state"}
        handlers["state"] = ocp.StandardCheckpointHandler()
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None`` when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of every complete checkpoint, oldest first."""
        return sorted(self._manager.all_steps())

    def step_directory(self, step: int) -> epath.Path:
        """The directory of the checkpoint at ``step``."""
        return self.directory / str(step)

    def save(self, state: TrainState, *, data_state: Any, config: Mapping, plan: Any = None) -> None:
        """Save ``state`` (at step ``int(state.step)``) with the iterator state, config and plan.

        Raises:
          TrainingDiverged: if any floating-point value in ``state`` is non-finite (never saved).
        """
        step = int(state.step)
        if not tree_is_finite(state):
            raise TrainingDiverged(f"refusing to save a non-finite train state at step {step}.")
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_json_roundtrip(data_state, "data_state")),
            config=ocp.args.JsonSave(_json_roundtrip(config, "config")),
            plan=ocp.args.JsonSave(_json_roundtrip(plan, "plan")),
            checksums=ocp.args.JsonSave(checksums(state._asdict())),
        )
        try:
            self._manager.save(step, args=args, force=True)
        except Exception as e:  # orbax raises the file system's errors, and its own
            raise self._save_error(e) from e

    def _save_error(self, error: Exception) -> CheckpointSaveError:
        """The one error every failed save becomes; the failed save's stranded threads are released."""
        _release_stranded_save_threads()
        return CheckpointSaveError(
            f"could not save a checkpoint in {self.directory} ({type(error).__name__}: {error}); "
            "the checkpoints saved before it are kept."
        )

    def restore(
        self,
        step: int,
        abstract_state: TrainState,
        *,
        config: Mapping | None = None,
        resume_mutable: Iterable[str] = (),
        plan: Any = None,
    ) -> Restored:
        """Restore the checkpoint at ``step`` onto ``abstract_state``'s shapes, dtypes and shardings.

        ``abstract_state`` is a ``TrainState`` of ``jax.ShapeDtypeStruct`` s (with shardings on a mesh).
        ``config`` (the current run's), when given, must equal the saved one except under the dotted
        key prefixes ``resume_mutable``; ``plan`` (JSON), when given, must equal the saved plan (the
        same config gives another plan if the parametrization code changed). A
        :class:`CheckpointError` names the directory when it is unreadable, was written by another
        config or plan, or holds arrays of other shapes or dtypes.
        """
        where = self.step_directory(step)
        try:
            meta = self._manager.item_metadata(step)
            saved_config = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
            saved_config = saved_config.config
        except Exception as e:  # orbax raises many types for unreadable files
            raise CorruptCheckpoint(f"checkpoint {where} is unreadable ({type(e).__name__}: {e}).") from e
        missing = [item for item in _ITEMS if item not in meta]
        if missing:
            raise CorruptCheckpoint(f"checkpoint {where} is unreadable: its items {missing} are missing.")
        _check_compatible(where, saved_config, meta["state"], config, resume_mutable, abstract_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    plan=ocp.args.JsonRestore(),
                    checksums=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:
            raise CorruptCheckpoint(f"checkpoint {where} is unreadable ({type(e).__name__}: {e}).") from e
        if plan is not None:
            diffs = config_differences(_as_mapping(restored.plan), _as_mapping(_json_roundtrip(plan, "plan")))
            if diffs:
                raise CheckpointError(
                    f"checkpoint {where} holds a different parametrization plan ({'; '.join(diffs[:4])})."
                )
        state = TrainState(*restored.state) if not isinstance(restored.state, TrainState) else restored.state
        bad = checksum_mismatches(state._asdict(), restored.checksums or {})
        if bad:
            raise CorruptCheckpoint(
                f"checkpoint {where} fails its checksums: {len(bad)} arrays differ from what was saved "
                f"({', '.join(bad[:4])})."
            )
        return Restored(state=state, data_state=restored.data, config=saved_config, plan=restored.plan)

    def quarantine(self, step: int) -> epath.Path:
        """Move a corrupt checkpoint out of the way (``<step>.corrupt[.n]``); returns where it went.

        In a multi-process run the primary process moves it and every process waits for the move.
        """
        target, n = self.directory / f"{step}.corrupt", 1
        while target.exists():
            target, n = self.directory / f"{step}.corrupt.{n}", n + 1
        if hosts.is_primary():
            self.step_directory(step).rename(target)
        hosts.sync(f"paramlab_quarantine_{step}")
        self._manager.reload()
        return target

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk (:class:`CheckpointSaveError`: one failed)."""
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(e) from e

    def close(self) -> None:
        """Finish pending saves and release the manager's threads, even when a save failed.

        After a failed save the manager's own shutdown may fail too (on the same missing directory);
        the save's error is the one reported.
        """
        try:
            self.wait()
        except CheckpointSaveError:
            self._close_manager(failed=True)
            raise
        self._close_manager(failed=False)

    def _close_manager(self, *, failed: bool) -> None:
        try:
            self._manager.close()
        except Exception as e:
            if not failed:
                raise self._save_error(e) from e

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.close()
        except CheckpointSaveError:
            if kind is None:  # otherwise the error already under way is the one to report
                raise


def _release_stranded_save_threads() -> None:
    """Let the process exit after a failed asynchronous save.

    orbax runs each save as background threads that wait for one another's completion signals; when one
    fails, the others wait for a signal that never comes (until orbax's coordination timeout, minutes),
    and the interpreter cannot exit while they do. Mark them cancelled and send the signals they wait
    for: a cancelled thread returns without running its part of the save. (``cancel()`` itself would
    also cancel a task on the thread's event loop, which may be closed by then.)
    """
    try:  # orbax internals: a version without them leaves the threads to orbax's own timeout
        from orbax.checkpoint._src.futures import future as orbax_future

        signaling_thread, set_signals = orbax_future._SignalingThread, orbax_future.set_signals
    except (ImportError, AttributeError):
        return
    for thread in threading.enumerate():
        if isinstance(thread, signaling_thread) and thread.is_alive():
            thread._cancelled = True
            set_signals(thread._receive_signals, operation_id=thread._operation_id)


def _absolute(directory: str | epath.PathLike) -> epath.Path:
    """``directory`` as an absolute path (orbax refuses relative ones); URLs such as gs:// are kept."""
    text = os.fspath(directory)
    return epath.Path(text if "://" in text else os.path.abspath(text))


def config_differences(saved: Mapping, current: Mapping, mutable: Iterable[str] = ()) -> list[str]:
    """``"key: saved -> current"`` for each dotted key whose value differs, outside ``mutable`` prefixes."""
    mutable = tuple(mutable)
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    diffs = []
    for key in sorted(set(flat_saved) | set(flat_current)):
        if any(key == m or key.startswith(m + ".") for m in mutable):
            continue
        a, b = flat_saved.get(key, "<missing>"), flat_current.get(key, "<missing>")
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def _as_mapping(tree: Any) -> Any:
    """Lists become ``{"0": ..., "1": ...}`` mappings (recursively), so differences name an index."""
    if isinstance(tree, Mapping):
        return {k: _as_mapping(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return {str(i): _as_mapping(v) for i, v in enumerate(tree)}
    return tree


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def _json_roundtrip(value: Any, name: str) -> Any:
    """``value`` as JSON would return it (tuples become lists), so saved and current compare equal."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    try:
        return json.loads(json.dumps(value))
    except TypeError as e:
        raise ValueError(f"{name} must be JSON-serializable: {e}") from e


def _check_compatible(
    where: str,
    saved_config: Any,
    saved_state: Any,
    config: Mapping | None,
    resume_mutable: Iterable[str],
    abstract_state: Any,
) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's config and array shapes fit this run."""
    if config is not None:
        diffs = config_differences(saved_config, _json_roundtrip(config, "config"), resume_mutable)
        if diffs:
            raise CheckpointError(
                f"checkpoint {where} was written by a different config ({'; '.join(diffs[:6])}); "
                "use a new workdir or the original config."
            )
    problems = _shape_problems(saved_state, abstract_state)
    if problems:
        raise CheckpointError(
            f"checkpoint {where} does not match the current model/optimizer state ({len(problems)} "
            f"arrays differ): {'; '.join(problems[:4])}."
        )


def _shape_problems(metadata: Any, abstract_state: TrainState) -> list[str]:
    """Differences in paths, shapes and dtypes between saved array metadata and the expected state."""
    tree = getattr(metadata, "tree", metadata)
    saved = {
        path_str(p): (tuple(m.shape), np.dtype(m.dtype))
        for p, m in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    }
    expected = {
        path_str(p): (tuple(x.shape), np.dtype(x.dtype))
        for p, x in jax.tree_util.tree_flatten_with_path(abstract_state._asdict())[0]
    }
    problems = []
    order = {"params": 0, "step": 1, "opt_state": 2}
    for key in sorted(set(saved) | set(expected), key=lambda k: (order.get(k.split("/")[0], 3), k)):
        if key not in saved:
            problems.append(f"{key} missing from the checkpoint")
        elif key not in expected:
            problems.append(f"{key} in the checkpoint is not in the current state")
        elif saved[key] != expected[key]:
            (s_shape, s_dtype), (e_shape, e_dtype) = saved[key], expected[key]
            problems.append(f"{key} saved {s_shape} {s_dtype}, expected {e_shape} {e_dtype}")
    return problems

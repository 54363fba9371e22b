"""The one command-line style of paramlab's experiments: an ml_collections config file and a few flags.

Every entry point (``experiments.train``, ``experiments.lr_transfer``, ``experiments.coord_check``)
is ``--config=<file>`` (a ``get_config()`` module under ``experiments/configs/``) with overrides
``--config.<key>=<value>``, plus the path flags it needs (``--workdir``, ``--out``, ``--data``).
List-valued keys (widths, learning rates, parametrizations) are comma-separated strings, read with
:func:`parse_list`: ``--config.widths=64,128,256``.

:func:`run` defines the flags when the program starts (never at import), parses them and turns
every usage error (a missing file, an unknown key, a bad value) into one line on stderr and exit
code 2; an unknown key gets a suggestion (``did you mean 'model.d_model'?``).
"""

from __future__ import annotations

import difflib
import importlib.util
import logging as std_logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

__all__ = [
    "EXIT_USAGE",
    "SWEEP_PATH_FLAGS",
    "check_positive_ints",
    "config_path",
    "fail",
    "parse_list",
    "parse_names",
    "parse_recipes",
    "run",
    "run_sweep_experiment",
]

EXIT_USAGE = 2
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def config_path(name: str) -> str:
    """The path of ``experiments/configs/<name>.py`` (a default ``--config``, whatever the cwd)."""
    return os.path.join(CONFIG_DIR, f"{name}.py")


def fail(program: str, message: Any, code: int = EXIT_USAGE, *, at_once: bool = False) -> NoReturn:
    """Print ``<program>: error: <message>`` as one line on stderr and exit with ``code``.

    ``at_once``: exit without the interpreter's shutdown (after a failed checkpoint save, orbax's
    background threads and event loops print pages of secondary errors while they unwind; everything
    saved before the failure is already on disk and every metrics record is closed).
    """
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)
    if at_once:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def parse_list(value: Any, kind: type, key: str) -> tuple:
    """A comma-separated string (or a sequence) of ``kind`` values; ``ValueError`` naming ``key``.

    An empty string gives an empty tuple.
    """
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
    try:
        return tuple(kind(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"config.{key} must be comma-separated {kind.__name__}s, got {value!r}.") from None


def parse_names(value: Any, key: str, choices: Sequence[str]) -> tuple[str, ...]:
    """Distinct names from ``choices`` in a comma-separated key; ``ValueError`` naming ``config.<key>``."""
    from paramlab.optim.common import check_choice

    names = parse_list(value, str, key)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"config.{key} must be distinct names, got {value!r}.")
    for name in names:
        check_choice(name, tuple(choices), f"config.{key}")
    return names


def parse_recipes(value: Any, key: str = "parametrization") -> tuple[str, ...]:
    """Distinct recipe names (:data:`paramlab.parametrization.RECIPES`) from a comma-separated key."""
    from paramlab.parametrization import RECIPES

    names = parse_list(value, str, key)
    unknown = [n for n in names if n not in RECIPES]
    if not names or unknown:
        raise ValueError(
            f"config.{key}: unknown {unknown or names or '(empty)'}; choose from {','.join(RECIPES)}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"config.{key} lists a name twice: {','.join(names)}.")
    return names


def check_positive_ints(config: ml_collections.ConfigDict, keys: Sequence[str]) -> None:
    """Every ``config.<key>`` is an integer >= 1."""
    for key in keys:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{key} must be an integer >= 1, got {value!r}.")


def parse_alignment(value: Any, key: str = "alignment") -> str | float | dict[str, float]:
    """``"full"``, ``"none"``, one measured exponent given as a number (``--config.alignment=0.75``) or
    one per role (``--config.alignment=hidden=0.8,readout=0.9``: a mapping)."""
    from paramlab.parametrization import alignment_exponents

    if isinstance(value, str) and "=" in value:
        value = _parse_role_values(value, key)
    elif isinstance(value, str) and value not in ("full", "none"):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"config.{key} must be 'full', 'none', a number or role=number pairs, got {value!r}."
            ) from None
    try:
        alignment_exponents(value)
    except ValueError as e:
        raise ValueError(f"config.{key}: {e}") from None
    return value


def alignment_label(alignment: str | float | dict[str, float]) -> str:
    """The alignment as its flag spells it: ``"full"``, ``"0.75"`` or ``"hidden=0.8,readout=0.9"``."""
    if isinstance(alignment, dict):
        return ",".join(f"{role}={value:g}" for role, value in alignment.items())
    return f"{alignment:g}" if isinstance(alignment, float) else str(alignment)


def _parse_role_values(value: str, key: str) -> dict[str, float]:
    """``"hidden=0.8,readout=0.9"`` -> ``{"hidden": 0.8, "readout": 0.9}`` (``ValueError`` naming ``key``)."""
    out = {}
    for item in value.split(","):
        role, _, number = item.partition("=")
        try:
            out[role.strip()] = float(number)
        except ValueError:
            raise ValueError(f"config.{key}: {item!r} is not role=number (in {value!r}).") from None
    return out


def eps_label(optimizer: str, eps: float, eps_mode: str) -> str:
    """``", eps=1e-08"`` (``" per layer"`` with ``eps_mode="per_layer"``), or ``""`` for an optimizer
    without an epsilon (``paramlab.optim.configuring``): the epsilon part of a plot title."""
    from paramlab.optim import OPTIMIZERS

    if "eps" not in OPTIMIZERS[optimizer].hyperparameters:
        return ""
    return f", eps={eps:g}" + (" per layer" if eps_mode == "per_layer" else "")


def run(
    program: str,
    main: Callable[[ml_collections.ConfigDict, Mapping[str, str]], None],
    *,
    default_config: str | None,
    path_flags: Mapping[str, str],
    required: Sequence[str] = (),
) -> None:
    """Define ``--config`` and the ``path_flags`` (name -> help), parse, and call ``main``.

    ``main(config, paths)`` receives the loaded config and ``{flag: value}`` of the path flags
    (``""`` when not given). ``--out`` must be a writable directory (created if missing). A
    ``ValueError`` or ``OSError`` from ``main`` is one line on stderr and exit 2.
    """
    try:  # with a default file, ml_collections reads it and the overrides' types right here
        config_flag = config_flags.DEFINE_config_file(
            "config", default_config, "Experiment config file (experiments/configs/*.py)."
        )
    except AttributeError:
        _unknown_key(program, sys.argv, _config_file(program, sys.argv, default_config))
    holders = {name: flags.DEFINE_string(name, "", text) for name, text in path_flags.items()}

    def start(argv: list[str]) -> None:
        _start_logging(program)
        if len(argv) > 1:
            fail(program, f"unexpected arguments {argv[1:]}; every option is a --flag")
        paths = {name: holder.value or "" for name, holder in holders.items()}
        missing = [f"--{name}" for name in required if not paths[name]]
        if missing:
            fail(program, f"{', '.join(missing)} is required")
        config = _load(program, config_flag)
        from paramlab.train.workdir import check_writable

        try:
            if paths.get("out"):
                check_writable(paths["out"], "--out")
            main(config, paths)
        except (ValueError, OSError) as e:
            fail(program, e)

    app.run(start, flags_parser=lambda argv: _parse(program, argv, default_config))


# the path flags of every sweep experiment (lr_transfer, weight_decay_transfer, stability, low_precision)
SWEEP_PATH_FLAGS = {
    "out": "Output directory (created if missing).",
    "data": "A text file or directory.",
    "results": "A results.json / .csv of an earlier run: write its summary to --out, train nothing.",
}


def run_sweep_experiment(
    program: str, main: Callable[[ml_collections.ConfigDict, Mapping[str, str]], None]
) -> None:
    """:func:`run` for a sweep experiment: ``experiments/configs/<name>.py`` (``program`` is
    ``experiments.<name>``) and :data:`SWEEP_PATH_FLAGS`, ``--out`` required."""
    name = program.removeprefix("experiments.")
    run(program, main, default_config=config_path(name), path_flags=SWEEP_PATH_FLAGS, required=("out",))


def _start_logging(program: str) -> None:
    """absl logging as its flags say: ``--verbosity`` (with :class:`_LibraryDetail`) and ``--log_dir``
    (log files there, created if missing; ``--alsologtostderr`` keeps stderr too)."""
    handler = logging.get_absl_handler()
    handler.addFilter(_LibraryDetail())
    log_dir = flags.FLAGS.log_dir
    if log_dir:
        try:
            os.makedirs(log_dir, exist_ok=True)
            handler.use_absl_log_file(program, log_dir)
        except OSError as e:
            fail(program, f"--log_dir {log_dir} is not writable ({e.strerror or e})")


class _LibraryDetail(std_logging.Filter):
    """Below ``--verbosity=1`` only paramlab's own INFO lines show: other libraries' (JAX's backend
    probing, orbax's several lines per save, matplotlib) are dropped, and so are orbax's errors with a
    traceback (a failed save, which paramlab reports itself in one line)."""

    def __init__(self):
        super().__init__()
        import paramlab  # wherever it is installed (a wheel is not beside this checkout's experiments/)

        self.own = tuple(
            os.path.dirname(os.path.abspath(module_file)) + os.sep
            for module_file in (paramlab.__file__, __file__)
        )

    def filter(self, record: std_logging.LogRecord) -> bool:
        if logging.get_verbosity() >= logging.DEBUG or record.pathname.startswith(self.own):
            return True
        if record.levelno < std_logging.WARNING:
            return False
        return not ("orbax" in record.pathname and record.exc_info)


def _load(program: str, config_flag: Any) -> ml_collections.ConfigDict:
    try:
        config = config_flag.value
        if config is None:
            raise ValueError("--config is required, e.g. --config=experiments/configs/demo.py")
        config.to_dict()
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        fail(program, _one_line(e))
    return config


def _config_file(program: str, argv: list[str], default_config: str | None) -> str | None:
    """The ``--config`` file named on the command line (which must exist), else the default."""
    config_file = default_config
    for arg in argv[1:]:
        if arg.startswith(("--config=", "-config=")):
            config_file = arg.split("=", 1)[1].split(":", 1)[0]
            if not os.path.isfile(config_file):
                fail(program, f"config file {config_file!r} does not exist")
    return config_file


def _parse(program: str, argv: list[str], default_config: str | None) -> list[str]:
    """absl flag parsing with one-line errors and exit code 2 (no traceback, no usage dump)."""
    config_file = _config_file(program, argv, default_config)
    try:
        return flags.FLAGS(argv)
    except AttributeError:
        _unknown_key(program, argv, config_file)
    except (flags.Error, OSError, ValueError, KeyError, TypeError, SyntaxError) as e:
        fail(program, _one_line(e))


def _unknown_key(program: str, argv: list[str], config_file: str | None) -> NoReturn:
    """ml_collections' error for overriding a key the config does not have, as one line."""
    overrides = [a.split("=", 1)[0].removeprefix("--config.") for a in argv[1:] if a.startswith("--config.")]
    known = _flat_keys(_read_config(config_file)) if config_file else []
    unknown = [o for o in overrides if o not in known] or overrides or ["?"]
    close = difflib.get_close_matches(unknown[0], known, n=1)
    fail(program, f"unknown config key {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""))


def _read_config(config_file: str) -> dict[str, Any]:
    """The config file's ``get_config()`` as a dict (``{}`` if it cannot be read)."""
    try:
        spec = importlib.util.spec_from_file_location("_paramlab_config", config_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config().to_dict()
    except Exception:  # noqa: BLE001 - only for a suggestion; the error itself is already known
        return {}


def _flat_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return keys


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(error).__name__

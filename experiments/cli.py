"""Command-line plumbing shared by the flag-driven experiments: one-line usage errors, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from absl import flags

EXIT_USAGE = 2


def fail(program: str, message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``<program>: error: <message>`` as one line on stderr and exit with ``code``."""
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
    """An ``app.run(flags_parser=...)`` that turns absl flag errors into :func:`fail`."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, str(e))

    return parse

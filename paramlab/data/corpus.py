"""Byte-level text corpora: the embedded Python standard library, or any text file or directory.

Specified in ``docs/training.md`` §6.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sysconfig
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "STDLIB_EXCLUDED_DIRS",
    "VOCAB_SIZE",
    "Corpus",
    "list_files",
    "load_corpus",
    "unigram_entropy",
]

VOCAB_SIZE = 256
DEFAULT_MAX_BYTES = 4_000_000
STDLIB_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "encodings", "pydoc_data"}
)


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """A byte corpus and its split.

    Attributes:
      train: ``uint8`` training bytes.
      eval: ``uint8`` held-out bytes (the tail of the corpus).
      files: the files read, as POSIX paths relative to ``root``, in order.
      root: the directory (or file) the corpus was read from.
    """

    train: np.ndarray
    eval: np.ndarray
    files: tuple[str, ...]
    root: str

    vocab_size: int = VOCAB_SIZE

    @property
    def num_bytes(self) -> int:
        return int(self.train.size + self.eval.size)


def _walk(root: pathlib.Path, skip_dir, keep_file) -> list[str]:
    """Sorted POSIX paths relative to ``root`` of the files below it, pruning skipped directories."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not skip_dir(d)]
        for name in filenames:
            path = pathlib.Path(dirpath, name)
            if path.is_file() and keep_file(name):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def list_files(
    path: str | os.PathLike | None = None, suffixes: Sequence[str] | None = None
) -> tuple[pathlib.Path, list[str]]:
    """The root and the sorted relative paths of the files a corpus reads (see module docstring)."""
    if path is None:
        root = pathlib.Path(sysconfig.get_paths()["stdlib"])
        return root, _walk(root, lambda d: d in STDLIB_EXCLUDED_DIRS, lambda f: f.endswith(".py"))
    root = pathlib.Path(path)
    if not root.exists():
        raise ValueError(f"data path {str(root)!r} does not exist.")
    if root.is_file():
        return root.parent, [root.name]
    if not root.is_dir():
        raise ValueError(f"data path {str(root)!r} is neither a file nor a directory.")
    ends = None if suffixes is None else tuple(s if s.startswith(".") else "." + s for s in suffixes)
    keep = lambda f: not f.startswith(".") and (ends is None or f.endswith(ends))
    return root, _walk(root, lambda d: d.startswith("."), keep)


def load_corpus(
    path: str | os.PathLike | None = None,
    *,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    eval_fraction: float = 0.05,
    suffixes: Sequence[str] | None = None,
) -> Corpus:
    """Read a byte corpus and split it (see module docstring).

    Args:
      path: a text file or directory; ``None`` for the embedded standard-library corpus.
      max_bytes: keep only the first ``max_bytes`` bytes (``None``: all).
      eval_fraction: fraction of the bytes held out, in ``(0, 1)``; at least one byte each side.
      suffixes: for a directory, read only files with these suffixes (e.g. ``[".py", ".txt"]``).

    Raises:
      ValueError: naming the path if it does not exist or holds no bytes, or naming
        ``max_bytes`` / ``eval_fraction`` if out of range.
    """
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 2
    ):
        raise ValueError(f"max_bytes must be an integer >= 2 or None, got {max_bytes!r}.")
    if not (isinstance(eval_fraction, (int, float)) and 0.0 < eval_fraction < 1.0):
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}.")
    root, files = list_files(path, suffixes)
    where = "the standard library at " + str(root) if path is None else repr(str(path))
    chunks, total, used = [], 0, []
    for name in files:
        if max_bytes is not None and total >= max_bytes:
            break
        data = (root / name).read_bytes()
        if max_bytes is not None:
            data = data[: max_bytes - total]
        if data:
            chunks.append(data)
            used.append(name)
            total += len(data)
    if total == 0:
        raise ValueError(f"the corpus at {where} is empty (no non-empty files).")
    if total < 2:
        raise ValueError(f"the corpus at {where} has {total} byte; a train/eval split needs at least 2.")
    tokens = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    n_eval = min(max(1, math.ceil(eval_fraction * total)), total - 1)
    return Corpus(
        train=tokens[: total - n_eval], eval=tokens[total - n_eval :], files=tuple(used), root=str(root)
    )


def unigram_entropy(tokens: np.ndarray, unit: str = "nats") -> float:
    """Entropy of the tokens' empirical unigram distribution, ``-sum_b p_b log p_b``.

    The cross-entropy of the best context-free predictor: a language model's loss should fall well
    below it. ``unit`` is ``"nats"`` (natural log, like :func:`paramlab.models.cross_entropy`) or
    ``"bits"`` (log base 2).
    """
    if unit not in ("nats", "bits"):
        raise ValueError(f"unit must be 'nats' or 'bits', got {unit!r}.")
    tokens = np.asarray(tokens)
    if tokens.size == 0:
        raise ValueError("unigram_entropy: tokens is empty.")
    if not np.issubdtype(tokens.dtype, np.integer) or tokens.min() < 0:
        raise ValueError(f"unigram_entropy: tokens must be non-negative integers, got dtype {tokens.dtype}.")
    counts = np.bincount(tokens.ravel().astype(np.int64))
    p = counts[counts > 0] / tokens.size
    entropy = float(-np.sum(p * np.log(p)))
    return entropy / math.log(2.0) if unit == "bits" else entropy

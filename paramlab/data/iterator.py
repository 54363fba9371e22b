"""Batches of next-token windows: a checkpointable training iterator and fixed eval batches.

Specified in ``docs/training.md`` §7.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Batch", "BatchIterator", "eval_batches"]

Batch = dict[str, np.ndarray]


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_tokens(tokens: Any, seq_len: int, what: str) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"{what} must be a 1-D integer array, got shape {tokens.shape} dtype {tokens.dtype}."
        )
    if tokens.size < seq_len + 1:
        raise ValueError(
            f"seq_len={seq_len} is longer than the {what}: a window needs seq_len + 1 = {seq_len + 1} "
            f"tokens, the {what} has {tokens.size}."
        )
    return tokens


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> Batch:
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    window = tokens[idx].astype(np.int32)
    return {"inputs": window[:, :-1], "targets": window[:, 1:]}


class BatchIterator:
    """Endless random training windows; state ``{"step": int, "seed": int}`` (JSON-able).

    Args:
      tokens: 1-D integer token array (e.g. ``Corpus.train``).
      seq_len: tokens per window ``T``.
      batch_size: windows per batch ``B``.
      seed: non-negative integer seed of the window positions.
    """

    def __init__(self, tokens: np.ndarray, *, seq_len: int, batch_size: int, seed: int = 0):
        _check_positive_int(seq_len, "seq_len")
        _check_positive_int(batch_size, "batch_size")
        self._check_seed(seed)
        self.tokens = _check_tokens(tokens, seq_len, "training data")
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.step = 0

    @staticmethod
    def _check_seed(seed: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")

    def batch_at(self, step: int) -> Batch:
        """The batch of training step ``step`` (does not move the iterator)."""
        rng = np.random.default_rng([self.seed, int(step)])
        starts = rng.integers(0, self.tokens.size - self.seq_len, size=self.batch_size)
        return _windows(self.tokens, starts, self.seq_len)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        batch = self.batch_at(self.step)
        self.step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        """The iterator's position: the next step to yield and the seed."""
        return {"step": self.step, "seed": self.seed}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a state returned by :meth:`get_state`."""
        if not isinstance(state, Mapping) or set(state) != {"step", "seed"}:
            raise ValueError(f"iterator state must be a dict with keys 'step' and 'seed', got {state!r}.")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"iterator state 'step' must be a non-negative integer, got {step!r}.")
        self._check_seed(state["seed"])
        self.step, self.seed = int(step), int(state["seed"])


def eval_batches(
    tokens: np.ndarray, *, seq_len: int, batch_size: int, max_batches: int | None = None
) -> list[Batch]:
    """Fixed evaluation batches of non-overlapping windows spread evenly over ``tokens``.

    Uses ``n = batch_size * k`` windows, ``k`` the number of full batches that fit (at most
    ``max_batches``); window ``i`` starts at ``floor(i * (len - 1 - seq_len) / (n - 1))``, so the
    windows are disjoint and cover the held-out data from its start to its end.

    Raises:
      ValueError: naming ``seq_len`` / ``batch_size`` / ``max_batches`` if not one batch fits.
    """
    _check_positive_int(seq_len, "seq_len")
    _check_positive_int(batch_size, "batch_size")
    if max_batches is not None:
        _check_positive_int(max_batches, "max_batches")
    tokens = _check_tokens(tokens, seq_len, "eval data")
    available = (tokens.size - 1) // seq_len
    n_batches = available // batch_size
    if n_batches == 0:
        raise ValueError(
            f"the eval data ({tokens.size} tokens) holds {available} windows of seq_len={seq_len}, "
            f"fewer than batch_size={batch_size}."
        )
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    n = n_batches * batch_size
    starts = (np.arange(n) * (tokens.size - 1 - seq_len)) // max(n - 1, 1)
    return [
        _windows(tokens, starts[i * batch_size : (i + 1) * batch_size], seq_len) for i in range(n_batches)
    ]

"""The tiny byte-Transformer grid the sweep experiments' tests run (seconds, not minutes)."""

import ml_collections

TINY_GRID = dict(
    widths="16",
    base_width=16,
    d_head=8,
    seq_len=8,
    batch_size=2,
    steps=4,
    warmup_steps=1,
    eval_batches=1,
    max_bytes=20000,
    steps_per_call=2,
    seeds=2,
    progress_bar=False,
)


def tiny_config(module, **overrides) -> ml_collections.ConfigDict:
    """``module.get_config()`` (an ``experiments/configs`` module) with TINY_GRID, then ``overrides``."""
    config = module.get_config()
    config.update({**TINY_GRID, **overrides})
    return config

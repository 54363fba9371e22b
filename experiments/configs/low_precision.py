"""``experiments.low_precision``: u-muP, muP and SP trained in float32, bfloat16 and simulated fp8.

Every key of ``experiments/configs/lr_transfer.py`` (the model, data, LR grid and seeds) plus the
precisions: ``python -m experiments.low_precision --out=runs/low_precision [--config.<key>=<value> ...]``.
The defaults are the committed run of ``docs/results.md`` §8.
"""

from experiments.configs import lr_transfer


def get_config():
    c = lr_transfer.get_config()
    c.parametrization = "sp_global,mup,umup"  # "umup" trains the unit-scaled Transformer (unit_scaling)
    c.optimizer = "adam"
    # "float32"; "bfloat16" (compute dtype, parameters float32); "float8_e4m3fn" / "float8_e5m2" (float32
    # compute, both inputs of every Dense layer cast to the format and back: simulated fp8)
    c.precisions = "float32,bfloat16,float8_e4m3fn"
    c.learning_rate_grid = "0.0009765625,4,4"  # 2^-10 ... 2^2, spaced 4x: wide enough for every recipe
    c.widths = "128"
    c.base_width = 32
    c.steps = 300
    c.warmup_steps = 30
    c.seeds = 3
    c.seq_len = 32
    c.batch_size = 8
    c.steps_per_call = 50
    return c

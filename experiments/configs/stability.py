"""``experiments.stability``: attention-logit growth, qk-layernorm, z-loss and LR sensitivity.

Every key of ``experiments/configs/lr_transfer.py`` (the model, data, LR grid and seeds) plus the
variants: ``python -m experiments.stability --out=runs/stability [--config.<key>=<value> ...]``. The
defaults are the committed run of ``docs/results.md`` §6.
"""

from experiments.configs import lr_transfer


def get_config():
    c = lr_transfer.get_config()
    c.parametrization = "sp_global,mup"
    c.optimizer = "adamw"
    # variants, each run for every recipe and width: "plain" (no qk-layernorm, no z-loss) and
    # "qk_layernorm_z_loss" (queries and keys normalised per head, z-loss z_loss * mean(log^2 Z))
    c.variants = "plain,qk_layernorm_z_loss"
    c.z_loss = 1e-4  # the z-loss coefficient of the "qk_layernorm_z_loss" variant
    c.learning_rate_grid = "0.001,1.024,2"  # 1e-3 ... ~1: far enough for the plain models to fail
    c.widths = "32,128"
    c.base_width = 32
    c.steps = 300
    c.warmup_steps = 30
    c.seeds = 3
    c.seq_len = 32
    c.batch_size = 8
    c.steps_per_call = 50
    c.curve_every = 50
    return c

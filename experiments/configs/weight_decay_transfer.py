"""``experiments.weight_decay_transfer``: do the learning rate and the weight decay transfer together?

Every key of ``experiments/configs/lr_transfer.py`` (the model, data, LR grid and seeds) plus the
decay's: ``python -m experiments.weight_decay_transfer --out=runs/wd [--config.<key>=<value> ...]``.
The defaults are the committed run of ``docs/results.md`` §5 (muP + AdamW, widths 16 → 128).
"""

from experiments.configs import lr_transfer


def get_config():
    c = lr_transfer.get_config()
    c.parametrization = "mup"
    c.optimizer = "adamw"
    # paramlab.parametrization.WEIGHT_DECAY_RULES, each one sweep per width: "transfer" (per-step decay
    # width-invariant on matrices, vectors undecayed), "fixed" (one coefficient: plain AdamW),
    # "width_invariant" (as transfer, vectors decayed too)
    c.weight_decay_rule = "transfer,fixed"
    c.weight_decay_mode = "lr_coupled"  # "lr_coupled" (AdamW: decay x LR) or "independent"
    c.weight_decays = "0.0625,0.25,1,4"  # the decay grid (> 0; the coefficient at the base width)
    c.learning_rate_grid = "0.00390625,0.03125,2"
    c.widths = "16,32,64,128"
    c.base_width = 16
    c.d_head = 8
    c.steps = 400
    c.warmup_steps = 30
    c.seeds = 3
    c.seq_len = 32
    c.batch_size = 8
    c.steps_per_call = 50  # the top singular values are probed after every compiled call
    c.spectral_iterations = 12  # power-iteration steps per probe
    c.curve_every = 50
    return c

"""``experiments.layer_constants``: per-role LR constants tuned at the smallest width, then transferred.

Every key of ``experiments/configs/lr_transfer.py`` (the model, data and seeds; ``learning_rates``
is the one global LR, already tuned at the smallest width) plus the search's:
``python -m experiments.layer_constants --out=runs/layer_constants [--config.<key>=<value> ...]``.
"""

from experiments.configs import lr_transfer


def get_config():
    c = lr_transfer.get_config()
    c.parametrization = "mup"
    c.widths = "64,512"  # the search at the first (smallest) width, the evaluation at every width
    c.learning_rates = "0.015625"  # the global LR tuned at the smallest width (2^-6: docs/results.md §1)
    c.role_constants = (
        "0.25,1,4"  # the multipliers G searched per role (embedding, hidden, readout); includes 1
    )
    c.seeds = 3  # search seeds 0 .. seeds-1
    c.eval_seeds = 3  # evaluation seeds seeds .. seeds+eval_seeds-1, fresh for the comparison
    c.steps = 200
    return c

"""``experiments.coord_check_grid``: coordinate checks, every parametrization x optimizer family x seed.

``python -m experiments.coord_check_grid --out=runs/coord_check_grid [--config.<key>=<value> ...]``. Every
other key is a key of ``experiments/configs/coord_check.py`` and means the same there (one coordinate check
per optimizer and seed is run with it).
"""

from experiments.configs import coord_check


def get_config():
    c = coord_check.get_config()
    c.parametrization = "sp_global,sp,ntk,mup,mfp,umup"  # recipes: the grid's columns
    c.optimizers = "sgd,adam,adafactor"  # one optimizer per family: the grid's rows
    c.seeds = "0,1,2"  # initialization and data seeds; the slopes are given as mean +- std over them
    c.widths = "64,128,256,512,1024,2048"
    # one global LR per optimizer (at the base width for per-layer LRs), in the order of ``optimizers``:
    # large enough that the updates, not the init, set the outputs within ``steps`` (Adafactor's is
    # relative to each matrix's RMS)
    c.learning_rates = "0.5,0.01,0.1"
    c.steps = 5
    del c.optimizer, c.seed, c.learning_rate  # replaced by the lists above
    return c

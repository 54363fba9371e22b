"""``experiments.grad_scale``: gradient RMS at init against Adam's epsilon, across width.

Every key of ``experiments/configs/coord_check.py`` (the model, recipes, widths) plus ``seeds``:
``python -m experiments.grad_scale --out=runs/grad_scale [--config.<key>=<value> ...]``. The
defaults are the committed run of ``docs/results.md`` §11.
"""

from experiments.configs import coord_check


def get_config():
    c = coord_check.get_config()
    c.parametrization = "sp,ntk,mup,mfp"
    c.widths = "64,256,1024,4096,8192"
    c.eps = 1e-8  # the fixed Adam epsilon (at the base width with eps_mode="per_layer")
    c.seeds = 3  # initialization seeds 0 .. seeds-1, each measured separately
    return c

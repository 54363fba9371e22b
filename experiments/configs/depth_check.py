"""``experiments.depth_check``: the coordinate check across depth at a fixed width. Every key.

``python -m experiments.depth_check --out=runs/depth_check [--config.<key>=<value> ...]``; list keys
are comma-separated strings (``--config.depths=2,4,8,16``).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.parametrization = "mup"  # one recipe (paramlab.parametrization.RECIPES)
    c.optimizer = "adam"  # a name of paramlab.optim.OPTIMIZERS; its family picks the LR exponents
    # depth rules, comma-separated (paramlab.parametrization.DEPTH_RULES): one line each in the plot
    c.depth_rule = "none,depth_mup,completep"
    c.depth_alpha = 1.0  # CompleteP's alpha in [0.5, 1] (only "completep" reads it)
    c.width = 64  # the fixed width of the residual MLP's blocks
    c.depths = "2,4,8,16,32"  # numbers of residual blocks
    c.base_depth = 2  # the depth at which every depth rule equals "none"
    c.steps = 5  # Adam steps on one repeated batch before the feature change is measured
    c.learning_rate = 1e-2  # global LR (at the base depth)
    c.seeds = 3  # initialization seeds (0, 1, ...): slopes are reported as mean and std over them
    c.batch_size = 64  # Gaussian input vectors per batch
    c.in_dim = 16  # input features
    c.out_dim = 8  # regression targets (mean-squared error)
    return c

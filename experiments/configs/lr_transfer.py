"""``experiments.lr_transfer``: does the learning rate transfer across width and depth? Every key.

``python -m experiments.lr_transfer --out=runs/lr_transfer [--config.<key>=<value> ...]``; list keys
are comma-separated strings (``--config.widths=64,128,256``). Width is ``d_model``; ``d_ff`` is
``ff_ratio * d_model`` and heads grow at fixed ``d_head``. Depth is the number of Transformer blocks.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # recipes (paramlab.parametrization.RECIPES): "sp_global" (SP, one global LR: the baseline), "sp",
    # "ntk", "mup", "mfp", "mup_table8" (per-layer LR exponents for the optimizer and alignment)
    c.parametrization = "sp_global,mup"
    c.optimizer = "adam"  # a name of paramlab.optim.OPTIMIZERS; its family picks the LR exponents
    # the LR exponents' alignment assumption: "full", "none", one measured exponent ("0.75") or one
    # per role ("hidden=0.8,readout=0.9", as experiments.alignment_summary writes it)
    c.alignment = "full"
    c.eps_mode = "constant"  # Adam epsilon: "constant" or "per_layer" (follows the gradient scale)
    c.eps = 1e-8  # Adam epsilon (at the base width with eps_mode="per_layer")
    c.widths = "64,128,256,512"  # d_model values (narrower than base_width is allowed)
    c.base_width = 64  # the width at which every parametrization equals SP
    c.depths = "2"  # numbers of Transformer blocks (shallower than base_depth is allowed)
    c.base_depth = 2  # the depth at which every depth rule equals "none"; <= the largest depth
    # depth rules (paramlab.parametrization.DEPTH_RULES): "none" (width rules only), "depth_mup"
    # (branches r_L^-1/2), "completep" (branches r_L^-alpha); each is run for every parametrization
    c.depth_rule = "none"
    c.depth_alpha = 1.0  # CompleteP's alpha in [0.5, 1] (only "completep" reads it)
    c.scan_layers = False  # nn.scan over the blocks: compile time independent of depth
    c.learning_rates = ""  # the LR grid as a list; "" = learning_rate_grid
    c.learning_rate_grid = "1e-4,0.1,2"  # min,max,factor: min, min*factor, ... <= max
    c.steps = 200  # optimizer steps per run
    c.seeds = 1  # initialization seeds per learning rate (0, 1, ...)
    c.d_head = 16  # per-head width (fixed; heads = width / d_head)
    c.ff_ratio = 4  # d_ff = ff_ratio * width
    c.seq_len = 64  # bytes per training sequence
    c.batch_size = 8  # sequences per step
    c.warmup_steps = 10  # linear warmup, then cosine decay to 10%
    c.eval_batches = 4  # held-out batches for final_loss
    c.max_bytes = 2_000_000  # bytes of the corpus to read
    c.steps_per_call = 25  # steps per compiled call (lax.scan)
    c.curve_every = 25  # curves.json: each member's train loss averaged over windows of this many steps
    # probe the alignment exponents (alpha, omega, u per layer) after each compiled call: the final
    # values in the records, the trajectories in alignment_curves.json, per role in alignment.*
    c.log_alignment = False
    c.progress_bar = True  # a tqdm bar per sweep (rate and ETA on stderr)
    return c

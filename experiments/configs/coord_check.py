"""``experiments.coord_check``: the coordinate check across widths. Every key, documented.

``python -m experiments.coord_check --out=runs/coord_check [--config.<key>=<value> ...]``; list keys
are comma-separated strings (``--config.widths=64,128,256``).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.parametrization = "mup"  # recipes, comma-separated (paramlab.parametrization.RECIPES)
    c.optimizer = "adam"  # a name of paramlab.optim.OPTIMIZERS; its family picks the LR exponents
    c.alignment = "full"  # "full", "none" or a measured exponent ("0.75"): the LR exponents' assumption
    c.widths = "64,128,256,512,1024"  # widths (narrower than base_width is allowed)
    c.base_width = 64  # the width at which every parametrization equals SP
    c.steps = 3  # recorded forward passes (step 1 at init)
    c.model = "mlp"  # "mlp" (depth hidden layers, 32 Gaussian inputs, 10 classes) or "transformer"
    c.learning_rate = 1e-2  # global LR (at the base width for per-layer LRs)
    c.seed = 0  # initialization and data seed
    c.eps = 1e-8  # Adam epsilon (at the base width with eps_mode="per_layer")
    c.eps_mode = "constant"  # "constant" or "per_layer"
    c.momentum = 0.0  # SGD momentum
    c.zero_init_readout = False  # zero-initialize the readout (TP-V's recommendation)
    c.weight_norm = False  # MLP only: every Dense layer in flax.linen.WeightNorm (docs/reference.md §7)
    c.depth = 2  # MLP hidden layers / Transformer blocks
    c.batch_size = 32  # examples (MLP) or sequences (Transformer) in the batch
    c.seq_len = 16  # Transformer: tokens per sequence
    c.vocab_size = 256  # Transformer: vocabulary size
    c.d_head = 16  # Transformer: per-head width (fixed; heads = width / d_head)
    c.ff_ratio = 4  # Transformer: d_ff = ff_ratio * width
    return c

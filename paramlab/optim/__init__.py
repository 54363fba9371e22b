"""paramlab.optim: optax gradient transformations for width-transferable training.

Depends on jax, optax and chex only. The named optimizers (:data:`OPTIMIZERS`, :func:`optimizer`)
are chains of the pieces below with per-leaf LR, epsilon and weight-decay trees.
"""

from paramlab.optim.adafactor import adafactor
from paramlab.optim.adam_atan2 import ScaleByAdamAtan2State, adam_atan2, scale_by_adam_atan2
from paramlab.optim.adamp import ScaleByAdamPState, adamp, scale_by_adamp
from paramlab.optim.alias import (
    FAMILIES,
    OPTIMIZERS,
    WEIGHT_DECAY_MODES,
    OptimizerEntry,
    configuring,
    family_of,
    optimizer,
)
from paramlab.optim.atan import atan2_nonneg
from paramlab.optim.factored import ScaleByFactoredMomentsState, relative_step_size, scale_by_factored_moments
from paramlab.optim.fan_axes import FanAxes, default_fan_axes, resolve_fan_axes
from paramlab.optim.scaling import (
    ScaleByAdamPerParamEpsState,
    adam_per_param_eps,
    add_decayed_weights_per_param,
    decay_weights_independent_of_lr,
    scale_by_adam_per_param_eps,
    scale_by_tree,
)

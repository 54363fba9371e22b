"""paramlab.nn: layer metadata (fan axes) and Flax Linen / NNX adapters."""

from paramlab.nn import linen, nnx
from paramlab.nn.metadata import (
    FanAxes,
    FanAxesBox,
    default_fan_axes,
    resolve_fan_axes,
    split_fan_axes,
    with_fan_axes,
)

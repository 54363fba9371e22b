"""paramlab: hyperparameters that transfer across model width, for JAX / Flax / optax."""

__version__ = "0.1.0"

from paramlab import nn, optim, parametrization  # noqa: E402,F401

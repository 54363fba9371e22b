"""paramlab: hyperparameters that transfer across model width, for JAX / Flax / optax.

``paramlab.optim`` (optax transforms), ``paramlab.parametrization`` (the engine) and ``paramlab.nn``
(Flax adapters) load with the package; ``models``, ``data``, ``train``, ``diagnostics`` and ``sweep``
load on first use (``paramlab.train.fit``), so ``import paramlab`` stays light.
"""

import importlib
from typing import Any

from paramlab import nn, optim, parametrization

__version__ = "0.1.0"
__all__ = ["data", "diagnostics", "models", "nn", "optim", "parametrization", "sweep", "train"]

_LAZY = ("data", "diagnostics", "models", "sweep", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"paramlab.{name}")
    raise AttributeError(f"module 'paramlab' has no attribute {name!r}")

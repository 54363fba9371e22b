"""Programs that run once (initialisation): compiled for compile time, not run time.

A model's init runs a single time per training run, yet ``jax.jit`` optimises it as hard as the
train step. On the CPU backend most of that compile time is LLVM's code generation for the
random-number kernels: XLA's backend optimisation level 0 cuts the init's compile time about 3x
(a 2-block Transformer with its Adam state, vmapped over 8 sweep members: 1.5 s -> 0.5 s) for a
few more milliseconds of running time. Other backends compile it as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["FAST_CPU_COMPILE", "run_once"]

# ``compiler_options`` for XLA's CPU backend at optimisation level 0: for programs compiled afresh and
# run a few times (an init, a coordinate check's steps), where compiling costs more than running.
FAST_CPU_COMPILE = {"xla_backend_optimization_level": 0}


def run_once(fn: Callable[..., Any], *args: Any, out_shardings: Any = None) -> Any:
    """``jax.jit(fn, out_shardings=...)(*args)``, compiled for a single call (module docstring)."""
    lowered = jax.jit(fn, out_shardings=out_shardings).lower(*args)
    cpu = all(device.platform == "cpu" for device in jax.devices())
    compiled = lowered.compile(compiler_options=FAST_CPU_COMPILE if cpu else None)
    return compiled(*args)

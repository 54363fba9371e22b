"""Adafactor, the paper's optimizer, as an optax chain (Shazeer & Stern, 2018, arXiv 1804.04235).

The factored second moments themselves are :func:`paramlab.optim.scale_by_factored_moments`
(``docs/reference.md`` §5); this module adds the learning rate (or the paper's relative step) and
weight decay around them.
"""

from __future__ import annotations

from typing import Any

import optax

from paramlab.optim.common import check_learning_rate, check_non_negative
from paramlab.optim.factored import relative_step_size, scale_by_factored_moments

__all__ = ["adafactor"]


def adafactor(
    learning_rate: optax.ScalarOrSchedule | None = None,
    decay_rate: float = 0.8,
    decay_schedule: str = "power",
    step_offset: int = 0,
    eps1: float = 1e-30,
    eps2: float = 1e-3,
    clipping_threshold: float | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    b1: float | None = None,
    weight_decay: optax.ScalarOrSchedule | None = None,
    weight_decay_multiplied_by_lr: bool = True,
    weight_decay_mask: Any | None = None,
    output: str = "rsqrt",
    min_dim_size_to_factor: int = 128,
    factored: bool = True,
    fan_axes: Any | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Adafactor as in the paper (Shazeer & Stern, 2018, Algorithm 4 with relative step), by default.

    ``X_t = X - lr_t max(eps2, RMS(X)) U_hat``: ``U_hat`` the clipped (``d = 1``) update of
    :func:`scale_by_factored_moments` (whose arguments these are), ``lr_t`` the relative step
    ``min(1e-2, 1/sqrt(t))`` when ``learning_rate`` is ``None``. Weight decay ``wd`` (``None``: none;
    ``weight_decay_mask`` as in ``optax.add_decayed_weights``) is ``X_t = X - lr_t (... + wd X)`` with
    ``weight_decay_multiplied_by_lr=True`` (AdamW's convention), else ``X_t = X - lr_t (...) - wd X``
    (optax's ``adafactor(weight_decay_rate=...)``, which this equals with a learning rate, float32
    parameters and no fan axes or momentum).
    """
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    if weight_decay is not None and not callable(weight_decay):
        check_non_negative(weight_decay, "weight_decay")
    core = scale_by_factored_moments(
        decay_rate=decay_rate,
        decay_schedule=decay_schedule,
        step_offset=step_offset,
        eps1=eps1,
        b1=b1,
        clipping_threshold=clipping_threshold,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        eps2=eps2,
        relative_step=False,
        output=output,
        min_dim_size_to_factor=min_dim_size_to_factor,
        factored=factored,
        fan_axes=fan_axes,
        mu_dtype=mu_dtype,
    )
    if learning_rate is None:
        learning_rate = lambda count: relative_step_size(count, step_offset)  # noqa: E731
    if weight_decay is None:
        return optax.chain(core, optax.scale_by_learning_rate(learning_rate))
    decay = optax.add_decayed_weights(weight_decay, weight_decay_mask)
    if weight_decay_multiplied_by_lr:
        return optax.chain(core, decay, optax.scale_by_learning_rate(learning_rate))
    return optax.chain(
        core, optax.scale_by_learning_rate(learning_rate, flip_sign=False), decay, optax.scale(-1.0)
    )

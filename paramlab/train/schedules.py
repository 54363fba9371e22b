"""Learning-rate schedules: linear warmup then cosine decay, or constant (after an optional warmup).

Specified in ``docs/training.md`` §5.
"""

from __future__ import annotations

import optax

__all__ = ["SCHEDULES", "make_schedule"]

SCHEDULES = ("cosine", "constant")


def make_schedule(
    name: str,
    peak_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    final_fraction: float = 0.0,
) -> optax.Schedule:
    """Build a learning-rate schedule.

    Args:
      name: ``"cosine"`` (linear warmup to ``peak_value``, then cosine decay to
        ``final_fraction * peak_value`` at ``total_steps``) or ``"constant"`` (linear warmup, then
        ``peak_value`` forever).
      peak_value: the learning rate after warmup (> 0).
      total_steps: the number of optimizer updates of the run (> ``warmup_steps`` for cosine).
      warmup_steps: linear-warmup length (>= 0).
      final_fraction: the cosine schedule's final value as a fraction of ``peak_value``, in ``[0, 1]``.

    Returns:
      An ``optax.Schedule``.

    Raises:
      ValueError: naming the argument that is out of range, or an unknown ``name``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule name must be one of {SCHEDULES}, got {name!r}.")
    if not peak_value > 0:
        raise ValueError(f"schedule peak_value must be > 0, got {peak_value!r}.")
    if int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"schedule warmup_steps must be an integer >= 0, got {warmup_steps!r}.")
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"schedule total_steps must be an integer >= 1, got {total_steps!r}.")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"schedule final_fraction must be in [0, 1], got {final_fraction!r}.")
    warmup_steps, total_steps = int(warmup_steps), int(total_steps)
    if name == "constant":
        if warmup_steps == 0:
            return optax.constant_schedule(peak_value)
        warmup = optax.linear_schedule(0.0, peak_value, warmup_steps)
        return optax.join_schedules([warmup, optax.constant_schedule(peak_value)], [warmup_steps])
    if warmup_steps >= total_steps:
        raise ValueError(
            f"schedule warmup_steps ({warmup_steps}) must be < total_steps ({total_steps}) for 'cosine'."
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak_value,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=final_fraction * peak_value,
    )

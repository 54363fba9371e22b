"""The named optimizers, each an ``optax.chain`` that takes per-leaf LR, epsilon and weight-decay trees.

This is paramlab's one optimizer registry: :data:`OPTIMIZERS` maps a name to its preconditioner and
to the *family* whose learning-rate exponents it follows (``docs/reference.md`` section 2: SGD, Adam,
or Adafactor with its parameter-scaled steps). The parametrization engine reads the family from here;
the experiments list their choices from here. :func:`optimizer` builds one::

    chain(preconditioner, [decay], scale_by_tree(lr_scales), -learning_rate, [decay])

with the decay before the learning rate for ``weight_decay_mode="lr_coupled"`` (AdamW:
``p <- p - eta lr_l (u + wd w_l p)``) and after it for ``"independent"`` (``p <- p - eta lr_l u -
wd w_l p``). Every per-leaf argument (``lr_scales``, ``eps_scales``, ``weight_decay_scales``,
``fan_axes``) is a pytree with the parameters' structure or a function ``params -> tree``, as
optax's ``mask`` arguments are; ``None`` means 1 everywhere (no fan axes: optax's factoring rule).

=============  ==========  ================================================================
name           family      preconditioner
=============  ==========  ================================================================
``adam``       adam        :func:`~paramlab.optim.scale_by_adam_per_param_eps` (``eps * eps_l``)
``adamw``      adam        the same optimizer (weight decay is always decoupled)
``adam_atan2`` adam        :func:`~paramlab.optim.scale_by_adam_atan2` (no epsilon; ``a``, ``b``)
``adamp``      adam        :func:`~paramlab.optim.scale_by_adamp` (its own decay; ``delta``, ``wd_ratio``)
``factored``   adam        Adam with a fan-factored second moment (constant ``b2``, ``b1``)
``adafactor``  adafactor   the paper's Adafactor core: power decay, clipping at 1, ``RMS(w)`` steps
``sgd``        sgd         ``optax.trace(momentum, nesterov)`` (none for ``momentum=0``)
=============  ==========  ================================================================
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import optax

from paramlab.optim.adam_atan2 import scale_by_adam_atan2
from paramlab.optim.adamp import scale_by_adamp
from paramlab.optim.common import (
    check_choice,
    check_float_params,
    check_in_unit_interval,
    check_learning_rate,
    check_non_negative,
    check_updates_match,
    resolve_per_leaf,
)
from paramlab.optim.factored import scale_by_factored_moments
from paramlab.optim.scaling import (
    add_decayed_weights_per_param,
    decay_weights_independent_of_lr,
    scale_by_adam_per_param_eps,
    scale_by_tree,
)

__all__ = [
    "FAMILIES",
    "OPTIMIZERS",
    "WEIGHT_DECAY_MODES",
    "OptimizerEntry",
    "configuring",
    "family_of",
    "optimizer",
]

FAMILIES = ("sgd", "adam", "adafactor")
WEIGHT_DECAY_MODES = ("lr_coupled", "independent")


_GT = optax.GradientTransformation


class OptimizerEntry(NamedTuple):
    """One registry entry.

    Attributes:
      family: the learning-rate-exponent family (one of :data:`FAMILIES`).
      preconditioner: ``(hyperparameters, eps_scales, fan_axes, extra) -> GradientTransformation``.
      hyperparameters: the shared arguments of :func:`optimizer` that configure it (a training config
        passes just these). ``adafactor`` is the paper's algorithm: ``b1`` / ``b2`` depart from it
        and are read only when given.
      extra: the names of the optimizer's own extra arguments (``base_kwargs`` of a plan).
      owns_decay: the preconditioner applies the (LR-coupled) weight decay itself (``h.weight_decay``
        holds the per-leaf rates), because the decay depends on its step (AdamP).
    """

    family: str
    preconditioner: Callable[..., optax.GradientTransformation]
    hyperparameters: tuple[str, ...]
    extra: tuple[str, ...] = ()
    owns_decay: bool = False


class Hyperparameters(NamedTuple):
    """The shared numeric arguments; ``None`` for ``b1`` / ``b2`` picks the optimizer's own default."""

    b1: Any
    b2: Any
    eps: Any
    eps_root: Any
    momentum: Any
    nesterov: bool
    mu_dtype: Any
    weight_decay: Any = 0.0


def _adam(h: Hyperparameters, eps_scales: Any, fan_axes: Any, extra: dict) -> _GT:
    del fan_axes, extra
    b1, b2 = _default(h.b1, 0.9), _default(h.b2, 0.999)
    eps = _scaled(h.eps, eps_scales)
    return scale_by_adam_per_param_eps(eps, b1=b1, b2=b2, eps_root=h.eps_root, mu_dtype=h.mu_dtype)


def _adam_atan2(h: Hyperparameters, eps_scales: Any, fan_axes: Any, extra: dict) -> _GT:
    del eps_scales, fan_axes
    b1, b2 = _default(h.b1, 0.9), _default(h.b2, 0.999)
    return scale_by_adam_atan2(b1=b1, b2=b2, mu_dtype=h.mu_dtype, **extra)


def _adamp(h: Hyperparameters, eps_scales: Any, fan_axes: Any, extra: dict) -> _GT:
    b1, b2 = _default(h.b1, 0.9), _default(h.b2, 0.999)
    return scale_by_adamp(
        b1, b2, _scaled(h.eps, eps_scales), h.weight_decay, nesterov=h.nesterov, fan_axes=fan_axes,
        mu_dtype=h.mu_dtype, **extra,
    )  # fmt: skip


def _sgd(h: Hyperparameters, eps_scales: Any, fan_axes: Any, extra: dict) -> _GT:
    del eps_scales, fan_axes, extra
    check_in_unit_interval(h.momentum, "momentum")
    if _is_python_number(h.momentum) and h.momentum == 0:
        return optax.identity()
    return optax.trace(decay=h.momentum, nesterov=h.nesterov, accumulator_dtype=h.mu_dtype)


def _factored(h: Hyperparameters, eps_scales: Any, fan_axes: Any, extra: dict) -> _GT:
    del eps_scales
    options = dict(b1=_default(h.b1, 0.9), decay_schedule="constant", decay_rate=_default(h.b2, 0.999))
    return scale_by_factored_moments(fan_axes=fan_axes, mu_dtype=h.mu_dtype, **{**options, **extra})


def _adafactor(h: Hyperparameters, eps_scales: Any, fan_axes: Any, extra: dict) -> _GT:
    del eps_scales
    options: dict[str, Any] = dict(b1=h.b1, clipping_threshold=1.0, multiply_by_parameter_scale=True)
    if h.b2 is not None:
        options.update(decay_schedule="constant", decay_rate=h.b2)
    options.update(extra)
    if not options["multiply_by_parameter_scale"]:
        raise ValueError(
            "'adafactor' follows the Adafactor exponents (c = c_Adam - b), which assume "
            "multiply_by_parameter_scale=True; without it use 'factored' (Adam family)."
        )
    return scale_by_factored_moments(fan_axes=fan_axes, mu_dtype=h.mu_dtype, **options)


_MOMENTS = ("b1", "b2", "mu_dtype")
_ADAM = (*_MOMENTS, "eps", "eps_root")
_FACTORED_EXTRA = (
    "decay_rate",
    "decay_schedule",
    "step_offset",
    "eps1",
    "eps2",
    "clipping_threshold",
    "multiply_by_parameter_scale",
    "relative_step",
    "output",
    "min_dim_size_to_factor",
    "factored",
)

OPTIMIZERS: Mapping[str, OptimizerEntry] = types.MappingProxyType(
    {
        "adam": OptimizerEntry("adam", _adam, _ADAM),
        "adamw": OptimizerEntry("adam", _adam, _ADAM),
        "adam_atan2": OptimizerEntry("adam", _adam_atan2, _MOMENTS, ("a", "b")),
        "adamp": OptimizerEntry("adam", _adamp, (*_MOMENTS, "eps", "nesterov"), ("delta", "wd_ratio"), True),
        "factored": OptimizerEntry("adam", _factored, _MOMENTS, _FACTORED_EXTRA),
        "adafactor": OptimizerEntry("adafactor", _adafactor, ("mu_dtype",), _FACTORED_EXTRA),
        "sgd": OptimizerEntry("sgd", _sgd, ("momentum", "nesterov", "mu_dtype")),
    }
)


def family_of(name: str) -> str:
    """The learning-rate-exponent family of the optimizer called ``name``."""
    check_choice(name, OPTIMIZERS, "optimizer")
    return OPTIMIZERS[name].family


def configuring(name: str, **values: Any) -> dict[str, Any]:
    """The entries of ``values`` that configure optimizer ``name`` (its entry's ``hyperparameters``).

    A config holding ``b1``, ``b2``, ``eps`` and ``momentum`` for every optimizer passes each one just
    its own: ``optimizer(name, lr, **configuring(name, **config))``.
    """
    check_choice(name, OPTIMIZERS, "optimizer")
    return {key: value for key, value in values.items() if key in OPTIMIZERS[name].hyperparameters}


def optimizer(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: Any = None,
    b2: Any = None,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    momentum: Any = 0.0,
    nesterov: bool = False,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
    lr_scales: Any = None,
    eps_scales: Any = None,
    weight_decay_scales: Any = None,
    weight_decay_mode: str = "lr_coupled",
    fan_axes: Any = None,
    **extra: Any,
) -> optax.GradientTransformation:
    """The optimizer ``name`` (module table) with per-leaf LR, epsilon and weight-decay factors.

    Args:
      name: a key of :data:`OPTIMIZERS`.
      learning_rate: the global LR ``eta`` (a float or an optax schedule).
      b1: first-moment decay (``None``: 0.9; ``adafactor``: no first moment).
      b2: second-moment decay (``None``: 0.999; ``adafactor``: the power schedule ``1 - t^-0.8``).
      eps, eps_root: Adam's epsilon ``eps_0`` (per leaf ``eps_0 * eps_l``) and inside the root.
      momentum, nesterov: SGD momentum (0: plain SGD).
      weight_decay: the global decay rate ``wd``, per leaf ``wd * w_l`` (a Python ``0``: no decay).
      mu_dtype: dtype of the first moment.
      lr_scales, eps_scales, weight_decay_scales: per-leaf factors ``lr_l``, ``eps_l``, ``w_l``
        (trees or ``params -> tree``; ``None``: 1).
      weight_decay_mode: ``"lr_coupled"`` or ``"independent"`` (module docstring).
      fan_axes: per-leaf :class:`~paramlab.optim.FanAxes` for the factored optimizers.
      **extra: the optimizer's own arguments (``a``, ``b`` of ``adam_atan2``; ``delta``, ``wd_ratio``
        of ``adamp``; the :func:`~paramlab.optim.scale_by_factored_moments` options of ``factored`` /
        ``adafactor``).

    Works under ``optax.inject_hyperparams(optimizer, static_args="name")``.
    """
    check_choice(name, OPTIMIZERS, "optimizer")
    check_choice(weight_decay_mode, WEIGHT_DECAY_MODES, "weight_decay_mode")
    check_non_negative(weight_decay, "weight_decay")
    check_learning_rate(learning_rate)
    entry = OPTIMIZERS[name]
    _check_extra(name, entry, extra)
    hyper = Hyperparameters(b1, b2, eps, eps_root, momentum, nesterov, mu_dtype)
    if entry.owns_decay:
        if weight_decay_mode != "lr_coupled":
            raise ValueError(
                f"optimizer {name!r} applies its own LR-coupled decay; use weight_decay_mode='lr_coupled'."
            )
        hyper = hyper._replace(weight_decay=_scaled(weight_decay, weight_decay_scales))
        weight_decay = 0.0
    preconditioner = entry.preconditioner(hyper, eps_scales, fan_axes, extra)
    return optax.chain(
        _validated(),
        preconditioner,
        *_scaling(learning_rate, lr_scales, weight_decay, weight_decay_scales, weight_decay_mode),
    )


def _validated() -> optax.GradientTransformation:
    """Refuse integer parameters (at ``init``) and updates that do not match the parameters."""

    def init_fn(params):
        check_float_params(params)
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is not None:
            check_updates_match(updates, params)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def _check_extra(name: str, entry: OptimizerEntry, extra: Mapping[str, Any]) -> None:
    unknown = sorted(set(extra) - set(entry.extra))
    if unknown:
        allowed = list(entry.extra) or "none"
        raise ValueError(f"optimizer {name!r} takes no argument(s) {unknown}; its own arguments: {allowed}.")
    if "fan_axes" in extra:
        raise ValueError("fan_axes is a per-leaf argument of optimizer(), not an extra one.")


def _scaling(
    learning_rate: Any, lr_scales: Any, weight_decay: Any, weight_decay_scales: Any, mode: str
) -> list[optax.GradientTransformation]:
    """``[decay], scale_by_tree(lr_scales), -learning_rate, [decay]`` (module docstring)."""
    parts = []
    if lr_scales is not None:
        parts.append(scale_by_tree(lr_scales))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    if _is_python_number(weight_decay) and weight_decay == 0:
        return parts
    decay = _decay(weight_decay, weight_decay_scales, mode)
    return [decay, *parts] if mode == "lr_coupled" else [*parts, decay]


def _decay(weight_decay: Any, scales: Any, mode: str) -> optax.GradientTransformation:
    rates = _scaled(weight_decay, scales)
    if mode == "lr_coupled":
        return add_decayed_weights_per_param(rates)
    return decay_weights_independent_of_lr(rates)


def _scaled(value: Any, scales: Any) -> Any:
    """``value`` times the per-leaf ``scales`` (a tree or ``params -> tree``; ``None``: ``value``)."""
    if scales is None:
        return value
    return lambda like: jax.tree.map(lambda s: value * s, resolve_per_leaf(scales, like))


def _default(value: Any, default: float) -> Any:
    return default if value is None else value


def _is_python_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

"""A parametrization applied to a model: per-parameter init, forward multiplier, LR, epsilon, decay.

:class:`Parametrization` is the model-independent recipe (a name from Table A, the optimizer family
and alignment that fix the LR exponents, per-role constants and conventions). :class:`Plan` joins it
with a model's specs (:func:`~paramlab.parametrization.infer_spec`) and computes, for every
parameter with fan-in / fan-out multipliers ``mu_in``, ``mu_out`` (target / base) and the role's
exponents split over them (:mod:`paramlab.parametrization.tables`; ``f_x = mu_in^-x.fan_in *
mu_out^-x.fan_out``, i.e. ``(n/n0)^-x`` at a single width ``n``)::

    multiplier   m_l  = M_l * f_a                    effective weight = m_l * stored weight
    init scale   s_l  = S_l * mu_in^(1/2) * f_b      stored init = s_l * (the layer's own init)
    lr           lr_l = G_l * f_c                    per-parameter LR = eta * lr_l
    epsilon      e_l  = f_g  ("per_layer") or 1      Adam epsilon = eps_0 * e_l
    weight decay w_l  = W_l / f_c ("lr_coupled") or W_l ("independent")

with per-role constants ``M, S, G, W`` (default 1). At the base width every multiplier is 1, so every
factor is exactly 1.0 and any parametrization reproduces the base model bit for bit: same init,
forward pass and updates. That is the invariant that lets one tune at the proxy size and switch
parametrization without retuning there.

**Init.** The rescale assumes each parameter's own initializer has variance ``proportional to
1/fan_in`` (lecun; Flax's ``Dense`` / ``DenseGeneral`` default) and a width-independent one when the
fan-in is fixed (embedding tables, biases, gains): ``mu_in^(1/2)`` turns it into a width-independent
variance and ``f_b`` applies the parametrization's ``n^{-b}``.

**Weight decay.** Both conventions keep the per-step shrink factor independent of width:
``"lr_coupled"`` (AdamW, ``p <- p - eta lr_l (u + wd w_l p)``) divides the decay by the width part of
the LR, so ``eta lr_l wd w_l = eta G_l wd W_l`` at every width (``mup``'s MuAdamW / MuSGD do the
same); ``"independent"`` (``p <- p - eta lr_l u - wd W_l p``) decays by ``wd W_l`` per step whatever
the LR and width. Either way the decay's timescale, which sets the equilibrium weight norm, does not
drift as the model grows.

**Per-role constants** (``multipliers``, ``init_scales``, ``learning_rates``, ``weight_decays``):
mappings whose keys are a role (``"embedding"``, ``"hidden"``, ``"readout"``, ``"fixed"``),
``"vector"`` (biases and norm gains; else they take their role's value) or an ``fnmatch`` pattern
on the parameter path for finer roles (``"*/attn/q/kernel"``, ``"*/mlp/fc_in/*"``). A pattern beats
``"vector"``, which beats a role; a pattern that matches nothing, or two patterns matching one
parameter, is a ``ValueError``.

**Global learning rate** (``lr_mode="global"``): one LR for every parameter, ``lr_l = G_l *
(n/n0)^-c``. ``global_lr_exponent=0`` (default) is the usual practice of keeping the tuned LR as the
model grows (the baseline muP fixes; Everett et al.'s global-LR runs retune this one LR at every
width instead); a number ``c`` scales it by ``mu_max^-c`` with ``mu_max`` the largest fan multiplier
of the model; ``"stable"`` takes the smallest per-layer factor ``min_l f_c`` (single width:
``c = max_l c_l``; fixed parameters, factor 1, count too), the largest single LR under which no
layer's update outgrows ``Theta(1)``.

**Tied embeddings**: the shared table stays an embedding (its init, multiplier and LR follow the
embedding rule, as ``mup`` does); the readout's scale is restored in the forward pass by
:meth:`Plan.tied_readout_multiplier` (e.g. a Transformer's ``logits_multiplier``).

**Table 8 muP** (``Parametrization("mup_table8", ...)``) is ``microsoft/mup``'s form: readout
multiplier ``1/width_mult`` with a constant-variance init, MuAdam's hidden LR ``/ width_mult``,
MuSGD's vector-like LR ``* width_mult`` and hidden LR ``* fan_out_mult / fan_in_mult``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import optax
from flax.core import FrozenDict

from paramlab.nn.metadata import FanAxes
from paramlab.optim._checks import check_in_unit_interval, check_non_negative
from paramlab.optim.adam_atan2 import scale_by_adam_atan2
from paramlab.optim.factored import scale_by_factored_moments
from paramlab.optim.scaling import (
    add_decayed_weights_per_param,
    decay_weights_independent_of_lr,
    scale_by_adam_per_param_eps,
    scale_by_tree,
)
from paramlab.parametrization.spec import FIXED, SPEC_ROLES, ParamSpec, flatten_with_paths, path_str
from paramlab.parametrization.tables import (
    OPTIMIZERS,
    PARAMETRIZATIONS,
    SGD_READOUT,
    Exponent,
    RoleExponents,
    alignment_exponents,
    role_exponents,
)

__all__ = [
    "ATTENTION_SCALES",
    "BASE_OPTIMIZERS",
    "EPS_MODES",
    "LR_MODES",
    "WEIGHT_DECAY_MODES",
    "ParamScales",
    "Parametrization",
    "Plan",
]

LR_MODES = ("per_layer", "global")
EPS_MODES = ("constant", "per_layer")
WEIGHT_DECAY_MODES = ("lr_coupled", "independent")
ATTENTION_SCALES = ("sqrt", "linear")
CONSTANT_KEYS = (*SPEC_ROLES, "vector")
CONSTANT_FIELDS = ("multipliers", "init_scales", "learning_rates", "weight_decays")
# base optimizer -> the LR-exponent family it belongs to
BASE_OPTIMIZERS = {
    "adam": "adam",
    "adamw": "adam",
    "adam_atan2": "adam",
    "factored": "adam",
    "sgd": "sgd",
    "adafactor": "adafactor",
}
_ZERO = RoleExponents(Exponent(), Exponent(), Exponent(), Exponent())
_JSON_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """A width parametrization, independent of any model.

    Attributes:
      name: ``"sp"``, ``"ntk"``, ``"mup"``, ``"mfp"`` (REFERENCE Table A) or ``"mup_table8"``
        (``microsoft/mup``'s form of muP).
      optimizer: the LR-exponent family: ``"sgd"``, ``"adam"`` (also Adam-atan2 and factored
        moments without parameter scaling) or ``"adafactor"`` (parameter-scaled steps).
      alignment: ``"full"``, ``"none"``, a measured exponent, or per-role measurements
        (:func:`~paramlab.parametrization.tables.alignment_exponents`).
      multipliers: per-role constants ``M`` of the forward multipliers (module docstring).
      init_scales: per-role constants ``S`` of the init (0 zeroes a parameter).
      learning_rates: per-role constants ``G`` of the learning rates.
      weight_decays: per-role constants ``W`` of the weight decay (0 disables it, e.g. on vectors).
      lr_mode: ``"per_layer"`` (each role its exponent) or ``"global"`` (one LR).
      global_lr_exponent: with ``lr_mode="global"``: a number ``c`` or ``"stable"``.
      eps_mode: ``"constant"`` (``eps_0`` everywhere) or ``"per_layer"`` (``eps_0 * f_g``: epsilon
        follows each layer's gradient scale, REFERENCE section 3).
      weight_decay_mode: ``"lr_coupled"`` or ``"independent"``.
      sgd_readout: ``"preserve"`` (Table B) or ``"maximal"``: the SGD readout trade-off
        (:mod:`~paramlab.parametrization.tables`).
      readout_zero_init: the plan's init zeroes every readout weight (TP-V's recommendation).
      query_zero_init: zero the attention query kernel: a model option (the plan cannot tell a
        query from a key); read it when building the model.
      attention_scale: ``"sqrt"`` (``1/sqrt(d_head)``) or ``"linear"`` (``1/d_head``, muP's rule when
        ``d_head`` grows); ``None`` picks ``"linear"`` for muP / MFP and ``"sqrt"`` for SP / NTK. A
        model option, read it through :attr:`resolved_attention_scale`.
    """

    name: str
    optimizer: str
    alignment: Any = "full"
    multipliers: Mapping[str, float] = dataclasses.field(default_factory=dict)
    init_scales: Mapping[str, float] = dataclasses.field(default_factory=dict)
    learning_rates: Mapping[str, float] = dataclasses.field(default_factory=dict)
    weight_decays: Mapping[str, float] = dataclasses.field(default_factory=dict)
    lr_mode: str = "per_layer"
    global_lr_exponent: float | str = 0.0
    eps_mode: str = "constant"
    weight_decay_mode: str = "lr_coupled"
    sgd_readout: str = "preserve"
    readout_zero_init: bool = False
    query_zero_init: bool = False
    attention_scale: str | None = None

    def __post_init__(self):
        _check_choice(self.name, PARAMETRIZATIONS, "name")
        _check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        _check_choice(self.lr_mode, LR_MODES, "lr_mode")
        _check_choice(self.eps_mode, EPS_MODES, "eps_mode")
        _check_choice(self.weight_decay_mode, WEIGHT_DECAY_MODES, "weight_decay_mode")
        _check_choice(self.sgd_readout, SGD_READOUT, "sgd_readout")
        if self.attention_scale is not None:
            _check_choice(self.attention_scale, ATTENTION_SCALES, "attention_scale")
        for flag in ("readout_zero_init", "query_zero_init"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}.")
        object.__setattr__(self, "alignment", _normalize_alignment(self.alignment))
        for field in CONSTANT_FIELDS:
            object.__setattr__(self, field, _normalize_constants(getattr(self, field), field))
        object.__setattr__(self, "global_lr_exponent", _normalize_global(self.global_lr_exponent))

    @property
    def resolved_attention_scale(self) -> str:
        """The attention logit scale to build the model with (``"sqrt"`` or ``"linear"``)."""
        if self.attention_scale is not None:
            return self.attention_scale
        return "sqrt" if self.name in ("sp", "ntk") else "linear"

    def exponents(self) -> dict[str, RoleExponents]:
        """Each role's exponents (``"fixed"``: all zero)."""
        table = role_exponents(self.name, self.optimizer, self.alignment, self.sgd_readout)
        return {**table, FIXED: _ZERO}

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_json` inverts it exactly."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Parametrization:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Parametrization.from_json: unknown keys {unknown}.")
        return cls(**data)


def _check_choice(value: Any, choices: Iterable[str], name: str) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"Parametrization.{name} must be one of {list(choices)}, got {value!r}.")


def _normalize_alignment(alignment: Any) -> Any:
    alignment_exponents(alignment)  # validates
    if isinstance(alignment, str):
        return alignment
    if isinstance(alignment, Mapping):
        return {
            role: float(v) if not isinstance(v, Mapping) else {k: float(x) for k, x in v.items()}
            for role, v in alignment.items()
        }
    return float(alignment)


def _normalize_constants(constants: Mapping[str, float], field: str) -> dict[str, float]:
    if not isinstance(constants, Mapping):
        raise ValueError(f"Parametrization.{field} must be a mapping, got {constants!r}.")
    out = {}
    for key, value in constants.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"Parametrization.{field}: keys must be non-empty strings, got {key!r}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"Parametrization.{field}[{key!r}] must be a finite number, got {value!r}.")
        if value < 0 or (field == "multipliers" and value == 0):
            bound = "> 0" if field == "multipliers" else ">= 0"
            raise ValueError(f"Parametrization.{field}[{key!r}] must be {bound}, got {value!r}.")
        out[key] = float(value)
    return out


def _normalize_global(value: Any) -> float | str:
    if value == "stable":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Parametrization.global_lr_exponent must be a number or 'stable', got {value!r}.")
    return float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class ParamScales:
    """The plan's scalars for one parameter (see the module docstring)."""

    multiplier: float
    init: float
    lr: float
    eps: float
    weight_decay: float


@dataclasses.dataclass(frozen=True, repr=False)
class Plan:
    """A :class:`Parametrization` applied to a model's specs (module docstring).

    Build it with :func:`paramlab.parametrization.make_plan` (from a model factory) or directly from
    :func:`~paramlab.parametrization.infer_spec`'s output. Trees passed to its methods may be any
    pytree whose leaf paths are the specs' (Linen dicts, ``FrozenDict``, ``nnx.State``); methods that
    take parameters also accept a Linen variables dict holding them under ``"params"``.

    Attributes:
      specs: ``{path: ParamSpec}``.
      parametrization: the recipe.
      scales: ``{path: ParamScales}`` (computed).
    """

    specs: Mapping[str, ParamSpec]
    parametrization: Parametrization
    scales: Mapping[str, ParamScales] = dataclasses.field(init=False)

    def __post_init__(self):
        specs = self.specs
        if not isinstance(specs, Mapping):
            specs = {spec.path: spec for spec in specs}
        specs = dict(specs)
        for path, spec in specs.items():
            if not isinstance(spec, ParamSpec) or spec.path != path:
                raise ValueError(f"Plan: specs[{path!r}] must be a ParamSpec with that path, got {spec!r}.")
        if not specs:
            raise ValueError("Plan: no parameters.")
        if not isinstance(self.parametrization, Parametrization):
            raise ValueError(
                f"Plan: parametrization must be a Parametrization, got {self.parametrization!r}."
            )
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "scales", _compute_scales(specs, self.parametrization))

    def __repr__(self) -> str:
        p = self.parametrization
        return f"Plan({p.name}, {p.optimizer}, alignment={p.alignment!r}, {len(self.specs)} parameters)"

    # ---- per-parameter trees -------------------------------------------------------------------

    def values(self, field: str) -> dict[str, float]:
        """``{path: value}`` of one :class:`ParamScales` field."""
        if field not in {f.name for f in dataclasses.fields(ParamScales)}:
            raise ValueError(f"unknown plan field {field!r}.")
        return {path: getattr(s, field) for path, s in self.scales.items()}

    def tree(self, field: str, like: Any) -> Any:
        """A tree shaped like ``like`` (parameters, gradients) holding ``field``'s scalars."""
        values = self.values(field)
        return self._map(like, lambda path, leaf: values[path])

    def fan_axes(self, like: Any) -> Any:
        """A tree of :class:`~paramlab.nn.FanAxes` shaped like ``like`` (from the specs)."""
        return self._map(like, lambda path, leaf: FanAxes(self.specs[path].fan_in, self.specs[path].fan_out))

    def roles(self, like: Any) -> Any:
        """A tree of role names shaped like ``like`` (for per-role metrics)."""
        return self._map(like, lambda path, leaf: self.specs[path].role)

    # ---- init and forward ----------------------------------------------------------------------

    def rescale_init(self, params: Any) -> Any:
        """The parametrization's initial parameters from the model's own init: ``s_l * p_l``."""
        scales = self.values("init")
        return self._on_params(params, lambda path, p: _scale(p, scales[path]))

    def effective_params(self, params: Any) -> Any:
        """The weights the forward pass uses: ``m_l * p_l`` (factors of exactly 1 are skipped)."""
        mults = self.values("multiplier")
        return self._on_params(params, lambda path, p: _scale(p, mults[path]))

    def wrap_apply(self, apply_fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(params_or_variables, *args, **kwargs) = apply_fn(effective, *args, **kwargs)``.

        Works for ``linen_module.apply`` (variables with a ``"params"`` collection, other collections
        passed through) and any function whose first argument is the parameter tree.
        """

        def apply(tree: Any, *args: Any, **kwargs: Any) -> Any:
            return apply_fn(self.effective_params(tree), *args, **kwargs)

        return apply

    def tied_readout_multiplier(self, path: str) -> float:
        """The logits factor for a readout that reuses the embedding table at ``path``.

        The table keeps the embedding rule (scale ``n^{-(a_e + b_e)}``); an untied readout would have
        the scale ``n^{-(a_R + b_R)}`` on its fan-in (the table's fan-out) and the readout constant
        ``M_readout``, so the logits are multiplied by ``M_readout * mu^{-(a_R + b_R - a_e - b_e)}``
        (``1 / width_mult`` under muP, ``mup``'s ``MuSharedReadout``).
        """
        if path not in self.specs:
            raise ValueError(f"tied_readout_multiplier: no parameter {path!r}.")
        spec = self.specs[path]
        if spec.role != "embedding" or spec.is_vector:
            raise ValueError(f"tied_readout_multiplier: {path} is not an embedding table (role {spec.role}).")
        ex = self.parametrization.exponents()
        readout_scale = (ex["readout"].multiplier + ex["readout"].init).total
        table_scale = (ex["embedding"].multiplier + ex["embedding"].init).total
        constant = self.parametrization.multipliers.get("readout", 1.0)
        return constant * Exponent(0.0, readout_scale - table_scale).factor(1.0, spec.fan_out_mult)

    @property
    def attention_scale(self) -> str:
        """``"sqrt"`` or ``"linear"``: the attention scale the model should use."""
        return self.parametrization.resolved_attention_scale

    # ---- optimizers ----------------------------------------------------------------------------

    def lr_scaling(self) -> optax.GradientTransformation:
        """Multiply each update by its parameter's LR factor ``lr_l``.

        Chain it after any preconditioner and before the learning rate, e.g.
        ``optax.chain(optax.scale_by_lion(), plan.lr_scaling(), optax.scale_by_learning_rate(lr))``.
        """
        return _lazy(lambda like: scale_by_tree(self.tree("lr", like)))

    def optimizer(
        self,
        base: str,
        learning_rate: optax.ScalarOrSchedule,
        *,
        b1: float | None = None,
        b2: float | None = None,
        eps: float = 1e-8,
        eps_root: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        mu_dtype: Any = None,
        base_kwargs: Mapping[str, Any] | None = None,
    ) -> optax.GradientTransformation:
        """An optax optimizer with this plan's per-parameter LR, epsilon and weight decay.

        ``chain(preconditioner, [decay], lr scaling, -learning_rate, [decay])``, the decay before the
        learning rate for ``"lr_coupled"``, after it for ``"independent"``.

        Args:
          base: its family must be the plan's optimizer.

            * ``"adam"`` / ``"adamw"``: Adam with a per-parameter epsilon
              (:func:`paramlab.optim.scale_by_adam_per_param_eps`); weight decay is always
              decoupled, so the two names are the same optimizer.
            * ``"adam_atan2"``: :func:`paramlab.optim.scale_by_adam_atan2` (no epsilon;
              ``base_kwargs`` ``a``, ``b``).
            * ``"sgd"``: ``momentum`` / ``nesterov`` (``optax.trace``).
            * ``"factored"`` (Adam family): Adam with a second moment factored over each
              parameter's fan-in / fan-out axes (:func:`paramlab.optim.scale_by_factored_moments`,
              constant decay ``b2`` with bias correction, first moment ``b1``).
            * ``"adafactor"`` (Adafactor family): the paper's Adafactor core (factored over the fan
              axes, decay ``1 - t^-0.8``, update clipping at 1, parameter-scaled step
              ``max(eps2, RMS(w))``, no first moment unless ``b1``), then this plan's LR factors and
              ``learning_rate`` (pass ``paramlab.optim.factored.relative_step_size`` as a schedule
              for the paper's relative step). Its exponents assume the parameter scaling, so
              ``multiply_by_parameter_scale=False`` is refused (use ``"factored"``). A parameter
              whose RMS is below ``eps2`` (a zero-initialised readout) steps by ``eps2``, not by its
              width-dependent scale, until it grows.

            ``base_kwargs`` are passed on to ``scale_by_factored_moments`` for both (e.g.
            ``min_dim_size_to_factor``).
          learning_rate: the global LR ``eta`` (a float or an optax schedule).
          b1: first-moment decay (default 0.9; ``"adafactor"``: none).
          b2: second-moment decay (default 0.999; ``"adafactor"``: the power schedule unless given).
          eps: ``eps_0``, Adam's epsilon at the base width (per layer with ``eps_mode="per_layer"``);
            only ``"adam"`` / ``"adamw"`` have this epsilon.
          eps_root: Adam's epsilon inside the square root.
          momentum: SGD momentum (0: plain SGD).
          nesterov: Nesterov momentum for SGD.
          weight_decay: the global decay rate ``wd`` (scaled per parameter by ``w_l``).
          mu_dtype: dtype of the first moment.
          base_kwargs: extra arguments of the base preconditioner (e.g. ``{"a": 1.0}`` for
            Adam-atan2).

        Works under ``optax.inject_hyperparams(plan.optimizer, static_args="base")``: the numeric
        arguments may be arrays (a weight decay of exactly ``0`` or a momentum of exactly ``0``
        given as Python numbers leave their transformation out).
        """
        if base not in BASE_OPTIMIZERS:
            raise ValueError(f"unknown base optimizer {base!r}; expected one of {list(BASE_OPTIMIZERS)}.")
        family = BASE_OPTIMIZERS[base]
        if family != self.parametrization.optimizer:
            raise ValueError(
                f"base optimizer {base!r} follows the {family!r} LR exponents but this plan was built for "
                f"{self.parametrization.optimizer!r}; build the Parametrization with optimizer={family!r}."
            )
        check_non_negative(weight_decay, "weight_decay")
        base_kwargs = dict(base_kwargs or {})
        pre = self._preconditioner(base, b1, b2, eps, eps_root, momentum, nesterov, mu_dtype, base_kwargs)
        parts = [pre]
        decay = _lazy(lambda like: self._decay(like, weight_decay))
        coupled = self.parametrization.weight_decay_mode == "lr_coupled"
        use_decay = not (_is_python_number(weight_decay) and weight_decay == 0)
        if use_decay and coupled:
            parts.append(decay)
        parts += [self.lr_scaling(), optax.scale_by_learning_rate(learning_rate)]
        if use_decay and not coupled:
            parts.append(decay)
        return optax.chain(*parts)

    def _decay(self, like: Any, weight_decay: float) -> optax.GradientTransformation:
        rates = jax.tree.map(lambda w: weight_decay * w, self.tree("weight_decay", like))
        if self.parametrization.weight_decay_mode == "lr_coupled":
            return add_decayed_weights_per_param(rates)
        return decay_weights_independent_of_lr(rates)

    def _preconditioner(
        self,
        base: str,
        b1: float,
        b2: float,
        eps: float,
        eps_root: float,
        momentum: float,
        nesterov: bool,
        mu_dtype: Any,
        base_kwargs: dict[str, Any],
    ) -> optax.GradientTransformation:
        if base in ("adam", "adamw", "sgd") and base_kwargs:
            raise ValueError(f"base optimizer {base!r} takes no extra arguments, got {sorted(base_kwargs)}.")
        if base in ("factored", "adafactor"):
            return self._factored(base, b1, b2, mu_dtype, base_kwargs)
        b1 = 0.9 if b1 is None else b1
        b2 = 0.999 if b2 is None else b2
        if base in ("adam", "adamw"):
            if self.parametrization.eps_mode == "constant" and _is_python_number(eps):
                return scale_by_adam_per_param_eps(eps, b1=b1, b2=b2, eps_root=eps_root, mu_dtype=mu_dtype)
            return _lazy(
                lambda like: scale_by_adam_per_param_eps(
                    jax.tree.map(lambda e: eps * e, self.tree("eps", like)),
                    b1=b1,
                    b2=b2,
                    eps_root=eps_root,
                    mu_dtype=mu_dtype,
                )
            )
        if base == "adam_atan2":
            return scale_by_adam_atan2(b1=b1, b2=b2, mu_dtype=mu_dtype, **base_kwargs)
        check_in_unit_interval(momentum, "momentum")  # sgd
        if _is_python_number(momentum) and momentum == 0:
            return optax.identity()
        return optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=mu_dtype)

    def _factored(
        self, base: str, b1: Any, b2: Any, mu_dtype: Any, base_kwargs: dict[str, Any]
    ) -> optax.GradientTransformation:
        if base == "factored":
            options = dict(b1=0.9 if b1 is None else b1, decay_schedule="constant", decay_rate=0.999)
        else:
            options = dict(b1=b1, clipping_threshold=1.0, multiply_by_parameter_scale=True)
        if b2 is not None:
            options.update(decay_schedule="constant", decay_rate=b2)
        options.update(mu_dtype=mu_dtype, **base_kwargs)
        if "fan_axes" in options:
            raise ValueError("base_kwargs: fan_axes come from the plan's specs; do not pass them.")
        if base == "adafactor" and not options.get("multiply_by_parameter_scale"):
            raise ValueError(
                "base 'adafactor' follows the Adafactor exponents (c = c_Adam - b), which assume "
                "multiply_by_parameter_scale=True; without it use base 'factored' (Adam family)."
            )
        return _lazy(lambda like: scale_by_factored_moments(fan_axes=self.fan_axes(like), **options))

    # ---- serialization and display -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (specs and parametrization); :meth:`from_json` rebuilds an equal plan."""
        return {
            "version": _JSON_VERSION,
            "parametrization": self.parametrization.to_json(),
            "specs": [spec.to_json() for spec in self.specs.values()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Plan:
        """Inverse of :meth:`to_json` (also accepts the ``json.dumps`` string)."""
        if isinstance(data, str):
            data = json.loads(data)
        if data.get("version") != _JSON_VERSION:
            raise ValueError(f"Plan.from_json: unsupported version {data.get('version')!r}.")
        specs = [ParamSpec.from_json(s) for s in data["specs"]]
        return cls({s.path: s for s in specs}, Parametrization.from_json(data["parametrization"]))

    def describe(self) -> str:
        """A text table: path, shape, role, fan multipliers and every scale factor."""
        header = ("path", "shape", "role", "mu_in", "mu_out", "mult", "init", "lr", "eps", "wd")
        rows = [header]
        for path, spec in self.specs.items():
            s = self.scales[path]
            rows.append(
                (
                    path,
                    "x".join(map(str, spec.shape)) or "()",
                    spec.role + (" (vector)" if spec.is_vector and spec.role != FIXED else ""),
                    *(f"{v:.4g}" for v in (spec.fan_in_mult, spec.fan_out_mult)),
                    *(f"{v:.4g}" for v in (s.multiplier, s.init, s.lr, s.eps, s.weight_decay)),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        p = self.parametrization
        title = (
            f"{p.name} / {p.optimizer} / alignment={p.alignment} / lr_mode={p.lr_mode} / "
            f"eps_mode={p.eps_mode} / weight_decay_mode={p.weight_decay_mode} / "
            f"attention_scale={p.resolved_attention_scale}"
        )
        lines = [title] + ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines)

    # ---- tree plumbing -------------------------------------------------------------------------

    def _map(self, tree: Any, fn: Callable[[str, Any], Any]) -> Any:
        """``fn(path, leaf)`` over a tree whose paths must be exactly the specs'.

        Absent leaves (``None``, and the ``optax.MaskedNode`` that ``optax.masked`` / ``optax.partition``
        put in place of the parameters another transformation handles) are kept as they are.
        """
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_absent)
        paths = [path_str(p) for p, _ in leaves]
        present = set(paths)
        missing = [p for p in self.specs if p not in present]
        extra = [p for p in paths if p not in self.specs]
        if missing or extra:
            raise ValueError(
                f"the tree does not match the plan's parameters: missing {missing[:5]}, unknown {extra[:5]}."
            )
        mapped = [leaf if _is_absent(leaf) else fn(p, leaf) for p, (_, leaf) in zip(paths, leaves)]
        return jax.tree_util.tree_unflatten(treedef, mapped)

    def _on_params(self, tree: Any, fn: Callable[[str, Any], Any]) -> Any:
        """Apply ``fn(path, param)`` to a params tree, or to the ``"params"`` of a Linen variables dict."""
        if not self._matches(tree) and isinstance(tree, Mapping) and "params" in tree:
            new = self._on_params(tree["params"], fn)
            return tree.copy({"params": new}) if isinstance(tree, FrozenDict) else {**tree, "params": new}

        def checked(path: str, leaf: Any) -> Any:
            shape = tuple(getattr(leaf, "shape", ()))
            if shape != self.specs[path].shape:
                raise ValueError(
                    f"parameter {path} has shape {shape} but the plan's spec says {self.specs[path].shape}."
                )
            return fn(path, leaf)

        return self._map(tree, checked)

    def _matches(self, tree: Any) -> bool:
        pairs = flatten_with_paths(tree)
        return len(pairs) == len(self.specs) and all(path in self.specs for path, _ in pairs)


def _is_absent(x: Any) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def _is_python_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scale(x: Any, factor: float) -> Any:
    return x if factor == 1.0 else (x * factor).astype(x.dtype)


def _lazy(build: Callable[[Any], optax.GradientTransformation]) -> optax.GradientTransformation:
    """A transformation built from the tree it sees (its per-parameter scalars laid out like it).

    Building is pure Python on the tree's structure, so rebuilding at every (traced) update costs
    nothing at run time.
    """

    def init_fn(params):
        return build(params).init(params)

    def update_fn(updates, state, params=None):
        return build(updates).update(updates, state, params)

    return optax.GradientTransformation(init_fn, update_fn)


def _constant(constants: Mapping[str, float], spec: ParamSpec, patterns: list[str]) -> float:
    hits = [pattern for pattern in patterns if fnmatch.fnmatchcase(spec.path, pattern)]
    if len(hits) > 1:
        raise ValueError(f"parameter {spec.path} matches several constant patterns: {hits}.")
    if hits:
        return constants[hits[0]]
    if spec.is_vector and "vector" in constants:
        return constants["vector"]
    return constants.get(spec.role, 1.0)


def _compute_scales(specs: dict[str, ParamSpec], p: Parametrization) -> dict[str, ParamScales]:
    exps = p.exponents()
    patterns = {}
    for field in CONSTANT_FIELDS:
        constants = getattr(p, field)
        pats = [k for k in constants if k not in CONSTANT_KEYS]
        for pattern in pats:
            if not any(fnmatch.fnmatchcase(path, pattern) for path in specs):
                raise ValueError(f"Parametrization.{field}: pattern {pattern!r} matches no parameter.")
        patterns[field] = pats
    lr_width = {path: exps[s.role].lr.factor(s.fan_in_mult, s.fan_out_mult) for path, s in specs.items()}
    if p.lr_mode == "global":
        lr_width = dict.fromkeys(specs, _global_lr(specs, lr_width, p.global_lr_exponent))
    scales = {}
    for path, s in specs.items():
        ex = exps[s.role]
        const = {field: _constant(getattr(p, field), s, patterns[field]) for field in CONSTANT_FIELDS}
        mu_in, mu_out = s.fan_in_mult, s.fan_out_mult
        # the own init's std is ~ mu_in^(-1/2): undo it, then apply the parametrization's n^(-b)
        own_init_correction = math.sqrt(mu_in)
        init = const["init_scales"] * own_init_correction * ex.init.factor(mu_in, mu_out)
        if p.readout_zero_init and s.role == "readout":
            init = 0.0
        coupled = p.weight_decay_mode == "lr_coupled"
        scales[path] = ParamScales(
            multiplier=const["multipliers"] * ex.multiplier.factor(mu_in, mu_out),
            init=init,
            lr=const["learning_rates"] * lr_width[path],
            eps=ex.grad.factor(mu_in, mu_out) if p.eps_mode == "per_layer" else 1.0,
            weight_decay=const["weight_decays"] / lr_width[path] if coupled else const["weight_decays"],
        )
    return scales


def _global_lr(specs: dict[str, ParamSpec], lr_width: dict[str, float], exponent: float | str) -> float:
    if exponent == "stable":
        return min(lr_width.values())
    mu_max = max(max(s.fan_in_mult, s.fan_out_mult) for s in specs.values())
    return Exponent(float(exponent), 0.0).factor(mu_max, 1.0)

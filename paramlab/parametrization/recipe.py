"""A width parametrization, independent of any model: :class:`Parametrization`.

A parametrization is a name from Table A of ``docs/reference.md`` (its ``(a, b)`` exponents), the
optimizer it trains with (whose family, from :data:`paramlab.optim.OPTIMIZERS`, fixes the LR
exponents of Table B), an alignment assumption, per-role constants and a few conventions. Applied to
a model's specs it becomes a :class:`~paramlab.parametrization.Plan`.

The command-line names of :data:`RECIPES` add one: ``"sp_global"``, the standard parametrization
with one global learning rate kept as the model grows (the baseline every other recipe is measured
against); :func:`named_parametrization` builds any of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from paramlab.optim import OPTIMIZERS, WEIGHT_DECAY_MODES, family_of
from paramlab.optim.common import check_choice
from paramlab.parametrization.spec import FIXED, SPEC_ROLES
from paramlab.parametrization.tables import (
    DEPTH_RULES,
    PARAMETRIZATIONS,
    SGD_READOUT,
    DepthExponents,
    Exponent,
    RoleExponents,
    alignment_exponents,
    depth_exponents,
    resolve_depth_alpha,
    role_exponents,
)

__all__ = [
    "ATTENTION_SCALES",
    "DEPTH_RULES",
    "CONSTANT_FIELDS",
    "CONSTANT_KEYS",
    "EPS_MODES",
    "LR_MODES",
    "NAMES",
    "UNIT_SCALED",
    "WEIGHT_DECAY_RULES",
    "RECIPES",
    "Parametrization",
    "named_parametrization",
]

LR_MODES = ("per_layer", "global")
EPS_MODES = ("constant", "per_layer")
# how the decay scales with width (docs/reference.md §7): the per-step decay width-invariant on every
# parameter, the same with vectors undecayed (the transfer rule), or one decay coefficient everywhere
WEIGHT_DECAY_RULES = ("width_invariant", "transfer", "fixed")
ATTENTION_SCALES = ("sqrt", "linear")
CONSTANT_KEYS = (*SPEC_ROLES, "vector")
CONSTANT_FIELDS = ("multipliers", "init_scales", "learning_rates", "weight_decays")
# u-muP (Blake et al. 2024): muP moved by the abc-symmetry to unit init, its width scaling in static
# multipliers, with absolute fan sizes instead of ratios to a base width, and an embedding table's Adam LR
# times d_model^-1/2 (docs/reference.md §13)
UNIT_SCALED = "umup"
NAMES = (*PARAMETRIZATIONS, UNIT_SCALED)
RECIPES = ("sp_global", *NAMES)
_ZERO = RoleExponents(Exponent(), Exponent(), Exponent(), Exponent())
# JSON keys of version-1 plans (checkpoints written before the zero-init fields were renamed)
_RENAMED_KEYS = {"readout_zero_init": "zero_init_readout", "query_zero_init": "zero_init_query"}


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """A width parametrization, independent of any model.

    Attributes:
      name: ``"sp"``, ``"ntk"``, ``"mup"``, ``"mfp"`` (Table A of ``docs/reference.md``),
        ``"mup_table8"`` (``microsoft/mup``'s form of muP) or ``"umup"`` (u-muP: unit init, the
        width scaling in forward multipliers of the absolute fan-in, ``docs/reference.md`` §13; Adam
        and Adafactor families only).
      optimizer: the optimizer it trains with, any name of :data:`paramlab.optim.OPTIMIZERS`
        (``"adam"``, ``"adamw"``, ``"adam_atan2"``, ``"adamp"``, ``"factored"``, ``"adafactor"``,
        ``"sgd"``); its :attr:`family` picks the LR exponents.
      alignment: ``"full"``, ``"none"``, a measured exponent, or per-role measurements
        (:func:`~paramlab.parametrization.tables.alignment_exponents`).
      multipliers: per-role constants ``M`` of the forward multipliers (:mod:`.plan`).
      init_scales: per-role constants ``S`` of the init (0 zeroes a parameter).
      learning_rates: per-role constants ``G`` of the learning rates.
      weight_decays: per-role constants ``W`` of the weight decay (0 disables it, e.g. on vectors).
      lr_mode: ``"per_layer"`` (each role its exponent) or ``"global"`` (one LR).
      global_lr_exponent: with ``lr_mode="global"``: a number ``c`` or ``"stable"``.
      eps_mode: ``"constant"`` (``eps_0`` everywhere) or ``"per_layer"`` (``eps_0 * f_g``: epsilon
        follows each layer's gradient scale, ``docs/reference.md`` section 3).
      weight_decay_mode: ``"lr_coupled"`` (the decay is multiplied by the parameter's learning rate,
        AdamW) or ``"independent"`` (it is not).
      weight_decay_rule: how the decay scales with width (``docs/reference.md`` §7):
        ``"width_invariant"`` keeps the per-step decay the same at every width (coupled: ``W / f_c``,
        so ``eta lr wd`` is width-invariant; independent: ``W``); ``"transfer"`` is the same on
        matrices and leaves vectors undecayed (``W = 0`` unless a ``"vector"`` or pattern constant sets
        it): the rule of "Robust Layerwise Scaling Rules by Proper Weight Decay Tuning" (muP:
        ``lambda ∝ width`` under ``eta ∝ 1/width``); ``"fixed"`` uses ``W`` everywhere, so a coupled
        per-step decay follows the learning rate (plain AdamW with per-layer LRs: under muP a matrix's
        decay shrinks like ``1/width``).
      sgd_readout: ``"preserve"`` (Table B) or ``"maximal"``: the SGD readout trade-off
        (:mod:`~paramlab.parametrization.tables`).
      zero_init_readout: the plan's init zeroes every readout weight (TP-V's recommendation).
      zero_init_query: zero the attention query kernel: a model option (the plan cannot tell a
        query from a key); read it when building the model.
      attention_scale: ``"sqrt"`` (``1/sqrt(d_head)``) or ``"linear"`` (``1/d_head``, muP's rule when
        ``d_head`` grows); ``None`` picks ``"linear"`` for muP / MFP and ``"sqrt"`` for SP / NTK. A
        model option, read it through :attr:`resolved_attention_scale`.
      depth_rule: ``"none"`` (width rules only), ``"depth_mup"`` (branch ``r_L^(-1/2)``) or
        ``"completep"`` (branch ``r_L^(-alpha)``): the depth factors of the parameters inside
        residual blocks (``docs/reference.md`` §7, :func:`~.tables.depth_exponents`).
      depth_alpha: CompleteP's ``alpha`` in [1/2, 1] (``None``: 1); the other rules fix it.
      absorb_multipliers: fold every forward multiplier into the init, LR, epsilon and decay (the
        abc-symmetry, ``docs/reference.md`` §1), so that the plan's multipliers are all 1 and the model's
        own ``apply`` is right without :meth:`~paramlab.parametrization.Plan.wrap_apply`. The trained
        function is the same up to Adam's epsilon when it is constant (per-layer epsilon folds too),
        Adafactor's parameter-scale floor, and global-norm gradient clipping (gradients change by the
        multipliers). The residual branch multiplier of a depth rule stays a model option.
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
    weight_decay_rule: str = "width_invariant"
    sgd_readout: str = "preserve"
    zero_init_readout: bool = False
    zero_init_query: bool = False
    attention_scale: str | None = None
    depth_rule: str = "none"
    depth_alpha: float | None = None
    absorb_multipliers: bool = False

    def __post_init__(self):
        for field, choices in (
            ("name", NAMES),
            ("optimizer", OPTIMIZERS),
            ("lr_mode", LR_MODES),
            ("eps_mode", EPS_MODES),
            ("weight_decay_mode", WEIGHT_DECAY_MODES),
            ("weight_decay_rule", WEIGHT_DECAY_RULES),
            ("sgd_readout", SGD_READOUT),
            ("depth_rule", DEPTH_RULES),
        ):
            check_choice(getattr(self, field), choices, f"Parametrization.{field}")
        if self.attention_scale is not None:
            check_choice(self.attention_scale, ATTENTION_SCALES, "Parametrization.attention_scale")
        for flag in ("zero_init_readout", "zero_init_query", "absorb_multipliers"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}.")
        object.__setattr__(self, "alignment", _normalize_alignment(self.alignment))
        for field in CONSTANT_FIELDS:
            object.__setattr__(self, field, _normalize_constants(getattr(self, field), field))
        object.__setattr__(self, "global_lr_exponent", _normalize_global(self.global_lr_exponent))
        resolve_depth_alpha(self.depth_rule, self.depth_alpha)  # validates
        if self.unit_scaled and self.family == "sgd":
            raise ValueError(
                f"Parametrization.name='umup' defines Adam and Adafactor learning rates; optimizer "
                f"{self.optimizer!r} is SGD."
            )
        if self.depth_rule != "none" and self.lr_mode == "global":
            raise ValueError(
                f"depth_rule={self.depth_rule!r} scales each block's learning rate; it needs "
                "lr_mode='per_layer', not 'global'."
            )

    @property
    def family(self) -> str:
        """The LR-exponent family of :attr:`optimizer`: ``"sgd"``, ``"adam"`` or ``"adafactor"``."""
        return family_of(self.optimizer)

    @property
    def unit_scaled(self) -> bool:
        """u-muP: unit init and absolute fan sizes for matrices whose fan-in is a width (§13)."""
        return self.name == UNIT_SCALED

    @property
    def resolved_attention_scale(self) -> str:
        """The attention logit scale to build the model with (``"sqrt"`` or ``"linear"``)."""
        if self.attention_scale is not None:
            return self.attention_scale
        return "sqrt" if self.name in ("sp", "ntk") else "linear"

    @property
    def resolved_depth_alpha(self) -> float:
        """The branch exponent ``alpha`` (0 for ``depth_rule="none"``)."""
        return resolve_depth_alpha(self.depth_rule, self.depth_alpha)

    def depth_exponents(self) -> DepthExponents:
        """The depth exponents of every parameter inside a residual block (§7)."""
        return depth_exponents(self.depth_rule, self.depth_alpha, self.family)

    def exponents(self) -> dict[str, RoleExponents]:
        """Each role's exponents (``"fixed"``: all zero)."""
        # u-muP's exponents are muP's moved to b = 0 by the abc-symmetry: MFP's (docs/reference.md §13)
        name = "mfp" if self.unit_scaled else self.name
        table = role_exponents(name, self.family, self.alignment, self.sgd_readout)
        return {**table, FIXED: _ZERO}

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_json` inverts it exactly."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Parametrization:
        data = {_RENAMED_KEYS.get(k, k): v for k, v in data.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Parametrization.from_json: unknown keys {unknown}.")
        return cls(**data)


def named_parametrization(name: str, optimizer: str, **options: Any) -> Parametrization:
    """The :class:`Parametrization` a recipe name of :data:`RECIPES` stands for.

    ``"sp_global"`` is ``Parametrization("sp", optimizer, lr_mode="global")`` (whatever ``lr_mode``
    the options give); every other name is itself. ``options`` are further :class:`Parametrization`
    fields.
    """
    check_choice(name, RECIPES, "parametrization")
    if name == "sp_global":
        return Parametrization("sp", optimizer, **{**options, "lr_mode": "global"})
    return Parametrization(name, optimizer, **options)


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

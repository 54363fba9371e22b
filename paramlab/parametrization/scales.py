"""Every parameter's scale factors under a parametrization (``docs/reference.md`` §1–3, §7).

:func:`compute_scales` turns a :class:`~paramlab.parametrization.Parametrization` and a model's specs
into :class:`ParamScales`: multiplier ``M f_a``, init ``S mu_in^(1/2) f_b``, LR ``G f_c d_c``, epsilon
``f_g d_eps`` and weight decay ``W / f_c`` (``lr_coupled``) or ``W`` (``independent``), where ``f_x`` are
the width factors of the role's exponents and ``d_x`` the depth factors of a residual-block parameter
(1 outside blocks). Every factor is exactly 1.0 at the base width and depth.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Mapping

from paramlab.parametrization.recipe import CONSTANT_FIELDS, CONSTANT_KEYS, Parametrization
from paramlab.parametrization.spec import ParamSpec
from paramlab.parametrization.tables import Exponent, depth_factor

__all__ = ["ParamScales", "compute_scales"]


@dataclasses.dataclass(frozen=True)
class ParamScales:
    """The plan's scalars for one parameter (see the module docstring)."""

    multiplier: float
    init: float
    lr: float
    eps: float
    weight_decay: float


def _constant(constants: Mapping[str, float], spec: ParamSpec, patterns: list[str]) -> float:
    hits = [pattern for pattern in patterns if fnmatch.fnmatchcase(spec.path, pattern)]
    if len(hits) > 1:
        raise ValueError(f"parameter {spec.path} matches several constant patterns: {hits}.")
    if hits:
        return constants[hits[0]]
    if spec.is_vector and "vector" in constants:
        return constants["vector"]
    return constants.get(spec.role, 1.0)


def compute_scales(specs: dict[str, ParamSpec], p: Parametrization) -> dict[str, ParamScales]:
    """``{path: ParamScales}`` of ``p`` applied to ``specs`` (module docstring)."""
    exps, depth = p.exponents(), p.depth_exponents()
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
        if p.zero_init_readout and s.role == "readout":
            init = 0.0
        coupled = p.weight_decay_mode == "lr_coupled"
        in_block = s.block is not None
        lr_depth = depth_factor(s.depth_mult, depth.lr) if in_block else 1.0
        eps_depth = depth_factor(s.depth_mult, depth.eps) if in_block else 1.0
        scales[path] = ParamScales(
            multiplier=const["multipliers"] * ex.multiplier.factor(mu_in, mu_out),
            init=init,
            lr=const["learning_rates"] * lr_width[path] * lr_depth,
            eps=ex.grad.factor(mu_in, mu_out) * eps_depth if p.eps_mode == "per_layer" else 1.0,
            # coupled: the decay's width factor cancels the LR's (eta * lambda width-invariant), while
            # the depth LR factor multiplies it, as in CompleteP's reference (docs/reference.md §7)
            weight_decay=const["weight_decays"] / lr_width[path] if coupled else const["weight_decays"],
        )
    return scales


def _global_lr(specs: dict[str, ParamSpec], lr_width: dict[str, float], exponent: float | str) -> float:
    if exponent == "stable":
        return min(lr_width.values())
    mu_max = max(max(s.fan_in_mult, s.fan_out_mult) for s in specs.values())
    return Exponent(float(exponent), 0.0).factor(mu_max, 1.0)

"""Every parameter's scale factors under a parametrization (``docs/reference.md`` §1–3, §7).

:func:`compute_scales` turns a :class:`~paramlab.parametrization.Parametrization` and a model's specs
into :class:`ParamScales`: multiplier ``M f_a``, init ``S mu_in^(1/2) f_b``, LR ``G f_c d_c``, epsilon
``f_g d_eps`` and weight decay ``W / f_c`` (``lr_coupled``) or ``W`` (``independent``) under the
``"width_invariant"`` and ``"transfer"`` rules (the latter with ``W = 0`` on vectors by default), ``W``
under ``"fixed"``, where ``f_x`` are the width factors of the role's exponents and ``d_x`` the depth
factors of a residual-block parameter (1 outside blocks). Every factor is exactly 1.0 at the base width
and depth. The gain of a weight-normalised layer carries its direction's scale instead
(:mod:`.weight_norm`, ``docs/reference.md`` §12).

With ``absorb_multipliers`` each multiplier ``m`` is folded into the stored parameter by the
abc-symmetry (``docs/reference.md`` §1): the stored weight is ``W = m w``, so init ``× m``; the gradient
with respect to ``W`` is ``1/m`` of that with respect to ``w``, so the LR that gives the same change of
``W`` is ``× m^2`` for SGD, ``× m`` for Adam (whose step ignores the gradient's scale) and ``× 1`` for
Adafactor (whose step is already relative to ``RMS(W)``); Adam's epsilon ``× 1/m``; an LR-coupled decay
``× lr / lr'`` (the product ``lr · decay`` is unchanged), an independent one unchanged; multiplier 1.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Mapping

from paramlab.parametrization.recipe import CONSTANT_FIELDS, CONSTANT_KEYS, Parametrization
from paramlab.parametrization.spec import ParamSpec
from paramlab.parametrization.tables import Exponent, RoleExponents, depth_factor

__all__ = ["ParamScales", "compute_scales"]


@dataclasses.dataclass(frozen=True)
class ParamScales:
    """The plan's scalars for one parameter (see the module docstring)."""

    multiplier: float
    init: float
    lr: float
    eps: float
    weight_decay: float


def _constant(
    constants: Mapping[str, float], spec: ParamSpec, patterns: list[str], vector_default: float | None = None
) -> float:
    """The constant of ``spec``: a matching pattern, else ``"vector"`` for a vector (else
    ``vector_default`` if given), else its role's, else 1."""
    hits = [pattern for pattern in patterns if fnmatch.fnmatchcase(spec.path, pattern)]
    if len(hits) > 1:
        raise ValueError(f"parameter {spec.path} matches several constant patterns: {hits}.")
    if hits:
        return constants[hits[0]]
    if spec.is_vector and "vector" in constants:
        return constants["vector"]
    if spec.is_vector and vector_default is not None:
        return vector_default
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
    fans = {path: _fans(s, p) for path, s in specs.items()}
    lr_width = {
        path: exps[s.role].lr.factor(*fans[path]) * _unit_embedding_lr(s, p) for path, s in specs.items()
    }
    if p.lr_mode == "global":
        lr_width = dict.fromkeys(specs, _global_lr(specs, lr_width, p.global_lr_exponent))
    # the transfer rule leaves vectors undecayed unless a constant says otherwise
    vector_defaults = {"weight_decays": 0.0} if p.weight_decay_rule == "transfer" else {}
    scales, constants = {}, {}
    for path, s in specs.items():
        ex = exps[s.role]
        const = {
            field: _constant(getattr(p, field), s, patterns[field], vector_defaults.get(field))
            for field in CONSTANT_FIELDS
        }
        constants[path] = const
        mu_in, mu_out = fans[path]
        # the own init's std is ~ mu_in^(-1/2): undo it, then apply the parametrization's n^(-b)
        own_init_correction = math.sqrt(mu_in)
        init = const["init_scales"] * own_init_correction * ex.init.factor(mu_in, mu_out)
        if p.zero_init_readout and s.role == "readout":
            init = 0.0
        in_block = s.block is not None
        lr_depth = depth_factor(s.depth_mult, depth.lr) if in_block else 1.0
        eps_depth = depth_factor(s.depth_mult, depth.eps) if in_block else 1.0
        scales[path] = ParamScales(
            multiplier=const["multipliers"] * ex.multiplier.factor(mu_in, mu_out),
            init=init,
            lr=const["learning_rates"] * lr_width[path] * lr_depth,
            eps=ex.grad.factor(s.fan_in_mult, s.fan_out_mult) * eps_depth
            if p.eps_mode == "per_layer"
            else 1.0,
            # coupled: the decay's width factor cancels the LR's (eta * lambda width-invariant), while
            # the depth LR factor multiplies it, as in CompleteP's reference (docs/reference.md §7)
            weight_decay=_decay(const["weight_decays"], lr_width[path], p),
        )
    for path, s in specs.items():
        if s.gain_of is not None:
            scales[path] = _weight_norm_gain(path, scales, specs[s.gain_of], exps, p, constants[path])
    if p.absorb_multipliers:
        scales = {path: _absorbed(s, p) for path, s in scales.items()}
    return scales


def _weight_norm_gain(
    path: str,
    scales: Mapping[str, ParamScales],
    direction: ParamSpec,
    exps: Mapping[str, RoleExponents],
    p: Parametrization,
    const: Mapping[str, float],
) -> ParamScales:
    """The gain ``g`` of ``W = g v / ||v||`` (:mod:`.weight_norm`): init ``m_v s_v``, multiplier 1, an
    LR with the width factor of ``m_v s_v`` (Adam; 1 for Adafactor; with ``lr_mode="global"`` the
    global one) and the decay that goes with it; its epsilon stays its own."""
    if p.family == "sgd":
        raise ValueError(
            f"parameter {path} is the weight-norm gain of {direction.path}: its rule is derived for the "
            "Adam and Adafactor families, not for SGD (docs/reference.md §12)."
        )
    v, g = scales[direction.path], scales[path]
    if p.lr_mode == "global":
        return dataclasses.replace(g, multiplier=1.0, init=v.multiplier * v.init)
    ex, (mu_in, mu_out) = exps[direction.role], _fans(direction, p)
    width = ex.multiplier.factor(mu_in, mu_out) * math.sqrt(mu_in) * ex.init.factor(mu_in, mu_out)
    lr_width = width if p.family == "adam" else 1.0
    return dataclasses.replace(
        g,
        multiplier=1.0,
        init=v.multiplier * v.init,
        lr=const["learning_rates"] * lr_width,
        weight_decay=_decay(const["weight_decays"], lr_width, p),
    )


def _fans(s: ParamSpec, p: Parametrization) -> tuple[float, float]:
    """The fan-in and fan-out the width factors are evaluated at: the ratios to the base width, or for
    u-muP's matrices whose fan-in is a width (hidden, readout) the absolute fan sizes (§13)."""
    if p.unit_scaled and s.role in ("hidden", "readout"):
        return float(s.fan_in_size), float(s.fan_out_size)
    return s.fan_in_mult, s.fan_out_mult


def _unit_embedding_lr(s: ParamSpec, p: Parametrization) -> float:
    """u-muP's Adam rule for an embedding table: LR × ``d_model^-1/2`` (its fan-out, the absolute size;
    the unit-scaling reference counts a table's hidden size as its fan-in, §13); 1 otherwise."""
    if p.unit_scaled and p.family == "adam" and s.role == "embedding" and not s.is_vector:
        return float(s.fan_out_size) ** -0.5
    return 1.0


def _decay(constant: float, lr_width: float, p: Parametrization) -> float:
    """The decay scale: ``W / f_c`` when coupled to the LR and width-scaled, else ``W``."""
    width_scaled = p.weight_decay_mode == "lr_coupled" and p.weight_decay_rule != "fixed"
    return constant / lr_width if width_scaled else constant


_ABSORBED_LR_POWER = {"sgd": 2, "adam": 1, "adafactor": 0}


def _absorbed(s: ParamScales, p: Parametrization) -> ParamScales:
    """``s`` with its multiplier folded into init, LR, epsilon and decay (module docstring)."""
    m = s.multiplier
    if m in (0.0, 1.0):
        return s  # nothing to fold (a zero multiplier has no equivalent stored weight)
    lr = s.lr * m ** _ABSORBED_LR_POWER[p.family]
    coupled = p.weight_decay_mode == "lr_coupled"
    return ParamScales(
        multiplier=1.0,
        init=s.init * m,
        lr=lr,
        eps=s.eps / m,
        weight_decay=s.weight_decay * s.lr / lr if coupled and lr else s.weight_decay,
    )


def _global_lr(specs: dict[str, ParamSpec], lr_width: dict[str, float], exponent: float | str) -> float:
    if exponent == "stable":
        return min(lr_width.values())
    mu_max = max(max(s.fan_in_mult, s.fan_out_mult) for s in specs.values())
    return Exponent(float(exponent), 0.0).factor(mu_max, 1.0)

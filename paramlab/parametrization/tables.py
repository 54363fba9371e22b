"""Width-scaling exponents of the abc-parametrizations, derived from closed forms (``docs/reference.md``).

Table A (``abc``, §1) is data: the ``(a, b)`` pairs of each parametrization (Everett et al., 2024,
arXiv 2407.05872; Yang et al., 2022, "Tensor Programs V", arXiv 2203.03466). Everything else is
derived from it by the closed forms of §2 (learning rates for SGD, Adam and Adafactor under an
alignment assumption, with the SGD readout convention ``sgd_readout``) and §3 (gradient scale), so a
user's own alignment measurement goes through the same formulas. Each exponent is split over a
parameter's fan-in and fan-out multipliers (:class:`Exponent`, §1 "Several widths"); ``x.total`` is
the single-width exponent the tables print. The tests check all 24 cells of Table B and the
symmetry between ``"mup"``, ``"mfp"`` and ``"mup_table8"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from paramlab.optim import FAMILIES

__all__ = [
    "ALIGNMENTS",
    "DEPTH_RULES",
    "DepthExponents",
    "FAMILIES",
    "PARAMETRIZATIONS",
    "ROLES",
    "SGD_READOUT",
    "Exponent",
    "RoleExponents",
    "abc",
    "alignment_exponents",
    "depth_exponents",
    "depth_factor",
    "resolve_depth_alpha",
    "grad_exponents",
    "lr_exponents",
    "role_exponents",
]

ROLES = ("embedding", "hidden", "readout")
PARAMETRIZATIONS = ("sp", "ntk", "mup", "mfp", "mup_table8")
ALIGNMENTS = ("full", "none")
SGD_READOUT = ("preserve", "maximal")
DEPTH_RULES = ("none", "depth_mup", "completep")
# the branch exponent alpha each depth rule fixes (None: any alpha in [1/2, 1], default 1)
_DEPTH_ALPHA = {"none": 0.0, "depth_mup": 0.5, "completep": None}

# Table A: (a, b) per role. "mup" is Everett et al.'s form (TP-V Table 9), "mup_table8" is TP-V
# Table 8 (microsoft/mup); they are related by the symmetry a <- a + theta, b <- b - theta with
# theta = (+1/2, 0, +1/2) on (embedding, hidden, readout).
_ABC: dict[str, dict[str, tuple[float, float]]] = {
    "sp": {"embedding": (0.0, 0.0), "hidden": (0.0, 0.5), "readout": (0.0, 0.5)},
    "ntk": {"embedding": (0.0, 0.0), "hidden": (0.5, 0.0), "readout": (0.5, 0.0)},
    "mup": {"embedding": (-0.5, 0.5), "hidden": (0.0, 0.5), "readout": (0.5, 0.5)},
    "mfp": {"embedding": (0.0, 0.0), "hidden": (0.5, 0.0), "readout": (1.0, 0.0)},
    "mup_table8": {"embedding": (0.0, 0.0), "hidden": (0.0, 0.5), "readout": (1.0, 0.0)},
}

# (alpha, omega, u) of the two named alignment assumptions (docs/reference.md section 2).
_NAMED_ALIGNMENT = {"full": (1.0, 0.5, 1.0), "none": (0.5, 0.5, 0.5)}


@dataclasses.dataclass(frozen=True)
class Exponent:
    """A width-scaling exponent split over a parameter's fan-in and fan-out multipliers.

    The scale factor it describes is ``fan_in_mult ** -fan_in * fan_out_mult ** -fan_out``; with a
    single width ``n/n0`` on both sides that is ``(n/n0) ** -total``.
    """

    fan_in: float = 0.0
    fan_out: float = 0.0

    @property
    def total(self) -> float:
        return self.fan_in + self.fan_out

    def __add__(self, other: Exponent) -> Exponent:
        return Exponent(self.fan_in + other.fan_in, self.fan_out + other.fan_out)

    def __sub__(self, other: Exponent) -> Exponent:
        return Exponent(self.fan_in - other.fan_in, self.fan_out - other.fan_out)

    def factor(self, fan_in_mult: float, fan_out_mult: float) -> float:
        """``fan_in_mult ** -fan_in * fan_out_mult ** -fan_out`` (exactly 1.0 at multipliers 1)."""
        return _power(fan_in_mult, -self.fan_in) * _power(fan_out_mult, -self.fan_out)


@dataclasses.dataclass(frozen=True)
class RoleExponents:
    """All exponents of one role: forward multiplier ``a``, init ``b``, learning rate ``c`` and the
    gradient scale at init ``g`` (each split over fan-in / fan-out)."""

    multiplier: Exponent
    init: Exponent
    lr: Exponent
    grad: Exponent


def _power(base: float, exponent: float) -> float:
    return 1.0 if exponent == 0 or base == 1.0 else float(base) ** exponent


def _check_name(name: str) -> str:
    if name not in _ABC:
        raise ValueError(f"unknown parametrization name {name!r}; expected one of {list(PARAMETRIZATIONS)}.")
    return name


def abc(name: str) -> dict[str, tuple[float, float]]:
    """Table A: ``{role: (a, b)}`` for ``name`` in ``"sp"``, ``"ntk"``, ``"mup"``, ``"mfp"``,
    ``"mup_table8"`` (effective weight ``n^{-a} w``, init std ``n^{-b}``)."""
    return dict(_ABC[_check_name(name)])


def alignment_exponents(alignment: Any) -> dict[str, float]:
    """The limiting alignment exponent ``A_l = max(alpha_l, u_l)`` of the hidden and readout roles.

    Args:
      alignment: ``"full"`` (``(alpha, omega, u) = (1, 1/2, 1)``), ``"none"`` (all ``1/2``), a
        number (``alpha = u`` = it, for both roles), or a mapping with keys ``"hidden"`` and
        ``"readout"`` whose values are numbers or mappings with keys ``"alpha"`` and ``"u"`` (and
        optionally ``"omega"``, which does not enter the LR exponents), e.g. measured with
        :mod:`paramlab.diagnostics.alignment`. An ``"embedding"`` entry is accepted and ignored:
        the embedding's fan-in does not grow, so alignment does not enter its exponents.

    Returns:
      ``{"hidden": A_hidden, "readout": A_readout}``.
    """
    if isinstance(alignment, str):
        if alignment not in _NAMED_ALIGNMENT:
            raise ValueError(
                f"unknown alignment {alignment!r}; expected 'full', 'none', a number or a per-role mapping."
            )
        alpha, _, u = _NAMED_ALIGNMENT[alignment]
        return {"hidden": max(alpha, u), "readout": max(alpha, u)}
    if _is_number(alignment):
        value = _check_alignment_value(alignment, "alignment")
        return {"hidden": value, "readout": value}
    if isinstance(alignment, Mapping):
        unknown = set(alignment) - set(ROLES)
        missing = {"hidden", "readout"} - set(alignment)
        if unknown or missing:
            raise ValueError(
                f"per-role alignment needs keys 'hidden' and 'readout' (optionally 'embedding'); "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}."
            )
        return {role: _role_alignment(alignment[role], role) for role in ("hidden", "readout")}
    raise ValueError(f"alignment must be 'full', 'none', a number or a per-role mapping, got {alignment!r}.")


def _role_alignment(value: Any, role: str) -> float:
    if _is_number(value):
        return _check_alignment_value(value, f"alignment[{role!r}]")
    if isinstance(value, Mapping):
        unknown = set(value) - {"alpha", "omega", "u"}
        if unknown or not {"alpha", "u"} <= set(value):
            raise ValueError(
                f"alignment[{role!r}] must have keys 'alpha' and 'u' (and optionally 'omega'), "
                f"got {sorted(value)}."
            )
        for key in value:
            _check_alignment_value(value[key], f"alignment[{role!r}][{key!r}]")
        return max(float(value["alpha"]), float(value["u"]))
    raise ValueError(f"alignment[{role!r}] must be a number or a mapping, got {value!r}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_alignment_value(value: Any, what: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{what} must be an exponent in [0, 1], got {value!r}.")
    return value


def role_exponents(
    name: str,
    family: str,
    alignment: Any = "full",
    sgd_readout: str = "preserve",
) -> dict[str, RoleExponents]:
    """Every exponent of every role, split over fan-in / fan-out (see the module docstring).

    Args:
      name: a parametrization (:data:`PARAMETRIZATIONS`).
      family: the optimizer's LR-exponent family, ``"sgd"``, ``"adam"`` or ``"adafactor"``
        (Adafactor with parameter scaling); :func:`paramlab.optim.family_of` gives an optimizer's.
      alignment: see :func:`alignment_exponents`.
      sgd_readout: ``"preserve"`` or ``"maximal"``: the SGD readout trade-off (module docstring);
        ignored by Adam and Adafactor.
    """
    table = abc(name)
    if family not in FAMILIES:
        raise ValueError(f"unknown optimizer family {family!r}; expected one of {list(FAMILIES)}.")
    if sgd_readout not in SGD_READOUT:
        raise ValueError(f"unknown sgd_readout {sgd_readout!r}; expected one of {list(SGD_READOUT)}.")
    align = alignment_exponents(alignment)
    (a_e, b_e), (a_h, b_h), (a_r, b_r) = table["embedding"], table["hidden"], table["readout"]
    a = {"embedding": Exponent(0.0, a_e), "hidden": Exponent(a_h, 0.0), "readout": Exponent(a_r, 0.0)}
    b = {"embedding": Exponent(0.0, b_e), "hidden": Exponent(b_h, 0.0), "readout": Exponent(b_r, 0.0)}
    r = a_r + b_r
    grad = {
        "embedding": Exponent(0.0, a_e + r),
        "hidden": Exponent(a_h, r),
        "readout": Exponent(a_r, 0.0),
    }
    if family == "sgd":
        lr = _sgd_lr(a_e, a_h, a_r, r, align, sgd_readout)
    else:
        lr = {
            "embedding": Exponent(0.0, -a_e),
            "hidden": Exponent(align["hidden"] - a_h, 0.0),
            "readout": Exponent(align["readout"] - a_r, 0.0),
        }
        if family == "adafactor":
            lr = {role: lr[role] - b[role] for role in ROLES}
    return {role: RoleExponents(a[role], b[role], lr[role], grad[role]) for role in ROLES}


def _sgd_lr(
    a_e: float, a_h: float, a_r: float, r: float, align: dict[str, float], sgd_readout: str
) -> dict[str, Exponent]:
    """SGD: ``c = A - a - g`` with ``g`` the gradient exponent (``A = 0`` on a fixed fan-in)."""
    a_readout = align["readout"]
    if sgd_readout == "preserve":
        r_eff, c_readout = r, max(a_readout, r) - 2.0 * a_r
    else:
        r_eff, c_readout = min(r, a_readout), a_readout - 2.0 * a_r
    return {
        "embedding": Exponent(0.0, -2.0 * a_e - r_eff),
        "hidden": Exponent(align["hidden"] - 2.0 * a_h, -r_eff),
        "readout": Exponent(c_readout, 0.0),
    }


def lr_exponents(
    name: str, family: str, alignment: Any = "full", sgd_readout: str = "preserve"
) -> dict[str, float]:
    """Table B: ``{role: c}``, the learning rate of a role scaling as ``n^{-c}`` (single width).

    Derived by :func:`role_exponents`; see the module docstring for the closed forms.
    """
    return {role: e.lr.total for role, e in role_exponents(name, family, alignment, sgd_readout).items()}


def grad_exponents(name: str) -> dict[str, float]:
    """``docs/reference.md`` section 3: ``{role: g}``, the gradient entries of a role scaling as ``n^{-g}`` at
    init (``g_emb = a_emb + r``, ``g_hidden = a_hidden + r``, ``g_readout = a_readout``)."""
    return {role: e.grad.total for role, e in role_exponents(name, "adam").items()}


@dataclasses.dataclass(frozen=True)
class DepthExponents:
    """Depth exponents of a residual-block parameter: each factor is ``r_L ** -exponent``.

    Attributes:
      branch: the block's branch multiplier ``m_L = r_L^(-alpha)`` (a model option).
      lr: the learning rate's: Adam / Adafactor ``1 - alpha``, SGD ``1 - 2 alpha``.
      eps: Adam epsilon's (with ``eps_mode="per_layer"``): ``alpha``, the gradients' own exponent.
    """

    branch: float = 0.0
    lr: float = 0.0
    eps: float = 0.0


def resolve_depth_alpha(rule: str, alpha: float | None) -> float:
    """The branch exponent of ``rule``: ``"none"`` 0, ``"depth_mup"`` 1/2, ``"completep"`` ``alpha``
    (default 1) in [1/2, 1]; a value the rule does not take is a ``ValueError`` naming it."""
    if rule not in _DEPTH_ALPHA:
        raise ValueError(f"unknown depth_rule {rule!r}; expected one of {list(DEPTH_RULES)}.")
    fixed = _DEPTH_ALPHA[rule]
    if fixed is not None:
        if alpha is not None and alpha != fixed:
            raise ValueError(
                f"depth_alpha={alpha!r} does not apply to depth_rule={rule!r} (which fixes it"
                + (f" at {fixed}" if rule != "none" else "")
                + "); use depth_rule='completep' for another alpha."
            )
        return fixed
    if alpha is None:
        return 1.0
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.5 <= alpha <= 1.0:
        raise ValueError(f"depth_alpha must be a number in [0.5, 1], got {alpha!r}.")
    return float(alpha)


def depth_exponents(rule: str, alpha: float | None, family: str) -> DepthExponents:
    """``docs/reference.md`` §7: the depth exponents of a parameter inside a residual block.

    With the branch multiplier ``r_L^(-alpha)`` every block's share of the feature update must be
    ``Theta(1/L)`` as the depth grows (CompleteP, Dey et al. 2025, arXiv 2505.01618, Table 1; depth-muP,
    Yang et al. 2023, arXiv 2310.02244, and Bordelon et al. 2023, arXiv 2309.16620 at alpha = 1/2).
    Adam's update ignores the gradient's scale, so the block's contribution is
    ``r_L^(-alpha) * eta``: ``eta ∝ r_L^(alpha - 1)``; Adafactor's parameter scale has no depth factor,
    so it follows Adam. SGD's update carries the branch factor once more: ``r_L^(-2 alpha) * eta``, so
    ``eta ∝ r_L^(2 alpha - 1)`` (constant for depth-muP, as Bordelon et al. find). The gradient
    entries shrink by ``r_L^(-alpha)``, and so does a per-layer epsilon. Init has no depth factor.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown optimizer family {family!r}; expected one of {list(FAMILIES)}.")
    a = resolve_depth_alpha(rule, alpha)
    if rule == "none":
        return DepthExponents()
    lr = 1.0 - 2.0 * a if family == "sgd" else 1.0 - a
    return DepthExponents(branch=a, lr=lr, eps=a)


def depth_factor(depth_mult: float, exponent: float) -> float:
    """``depth_mult ** -exponent``, exactly 1.0 at the base depth or a zero exponent."""
    return _power(depth_mult, -exponent)

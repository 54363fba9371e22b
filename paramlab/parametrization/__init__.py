"""paramlab.parametrization: SP / NTK / muP / MFP for SGD, Adam and Adafactor, applied per parameter.

``tables`` (exponents, derived from closed forms), ``spec`` (which axes are widths, and each
parameter's role), ``plan`` (per-parameter init, forward multiplier, LR, epsilon, weight decay, and
the optax optimizer), ``build`` (a plan from a Linen or NNX model factory).
"""

from paramlab.parametrization.build import make_plan, model_shapes
from paramlab.parametrization.plan import BASE_OPTIMIZERS, Parametrization, ParamScales, Plan
from paramlab.parametrization.spec import ParamSpec, infer_spec
from paramlab.parametrization.tables import (
    OPTIMIZERS,
    PARAMETRIZATIONS,
    ROLES,
    Exponent,
    RoleExponents,
    abc,
    alignment_exponents,
    grad_exponents,
    lr_exponents,
    role_exponents,
)

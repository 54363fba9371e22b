"""paramlab.parametrization: SP / NTK / muP / MFP for SGD, Adam and Adafactor, applied per parameter.

``tables`` (exponents, derived from closed forms), ``spec`` (which axes are widths, and each
parameter's role), ``plan`` (per-parameter init, forward multiplier, LR, epsilon, weight decay, and
the optax optimizer), ``build`` (a plan from a Linen or NNX model factory). Usage::

    make_model = lambda width: MLP(MLPConfig(in_dim=8, width=width, out_dim=4))
    plan = make_plan(make_model, Parametrization("mup", "adam"), base=64, delta=128, target=1024,
                     inputs=(x,))                                   # jax.eval_shape only
    model = make_model(1024)
    params = paramlab.nn.linen.init(plan, model, rng, x)["params"]  # init at the plan's std
    apply = plan.wrap_apply(model.apply)                            # forward: multiplier * param
    tx = plan.optimizer("adamw", 3e-3, weight_decay=0.1)            # per-parameter LR / eps / decay
    print(plan.describe())                                          # every factor, per parameter
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

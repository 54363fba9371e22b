"""paramlab.parametrization: SP / NTK / muP / MFP for SGD, Adam and Adafactor, applied per parameter.

``tables`` (width and depth exponents, derived from closed forms), ``spec`` (which axes are widths,
each parameter's role) and ``blocks`` (residual blocks and the depth ratio), ``recipe``
(:class:`Parametrization`: the model-independent choice), ``scales`` (per-parameter init, forward
multiplier, LR, epsilon and weight-decay factors), ``plan`` (applying them), ``build`` (a plan from
a Linen or NNX model factory). The optimizers themselves are :mod:`paramlab.optim`'s, fed the
plan's per-leaf factors. Usage::

    make_model = lambda width: MLP(MLPConfig(in_dim=8, width=width, out_dim=4))
    plan = make_plan(make_model, Parametrization("mup", "adamw"), base=64, delta=128, target=1024,
                     inputs=(x,))                                   # jax.eval_shape only
    model = make_model(1024)
    params = paramlab.nn.linen.init(plan, model, rng, x)["params"]  # init at the plan's std
    apply = plan.wrap_apply(model.apply)                            # forward: multiplier * param
    tx = plan.optimizer(learning_rate=3e-3, weight_decay=0.1)       # per-parameter LR / eps / decay
    print(plan.describe())                                          # every factor, per parameter
"""

from paramlab.parametrization.build import make_plan, model_shapes
from paramlab.parametrization.init_check import OwnInitWarning, check_own_init
from paramlab.parametrization.plan import ParamScales, Plan
from paramlab.parametrization.recipe import (
    ATTENTION_SCALES,
    DEPTH_RULES,
    EPS_MODES,
    LR_MODES,
    RECIPES,
    WEIGHT_DECAY_RULES,
    Parametrization,
    named_parametrization,
)
from paramlab.parametrization.spec import FIXED, ParamSpec, infer_spec
from paramlab.parametrization.tables import (
    ALIGNMENTS,
    FAMILIES,
    PARAMETRIZATIONS,
    ROLES,
    DepthExponents,
    Exponent,
    RoleExponents,
    abc,
    alignment_exponents,
    depth_exponents,
    grad_exponents,
    lr_exponents,
    role_exponents,
)

"""Every paramlab transform refuses what it cannot do right, with a ValueError naming the culprit."""

import jax.numpy as jnp
import numpy as np
import pytest

from paramlab import optim
from paramlab.parametrization import Parametrization, Plan, infer_spec

BAD_NUMBERS = [float("nan"), float("inf"), -1e-3]
ALIASES = {
    "optimizer": lambda lr: optim.optimizer("adamw", lr),
    "adam_atan2": lambda lr: optim.adam_atan2(lr),
    "adamp": lambda lr: optim.adamp(lr),
    "adafactor": lambda lr: optim.adafactor(lr),
    "adam_per_param_eps": lambda lr: optim.adam_per_param_eps(lr, 1e-8),
}


def _params():
    return {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("alias", list(ALIASES))
def test_bad_learning_rates(alias, value):
    with pytest.raises(ValueError, match="learning_rate"):
        ALIASES[alias](value)
    ALIASES[alias](lambda count: 1e-3)  # a schedule is fine


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_bad_decays_and_epsilons(value):
    with pytest.raises(ValueError, match="weight_decay"):
        optim.optimizer("adamw", 1e-3, weight_decay=value)
    with pytest.raises(ValueError, match="eps"):
        optim.scale_by_adam_per_param_eps(value).init(_params())
    with pytest.raises(ValueError, match="weight_decay"):
        optim.adamp(1e-3, weight_decay=value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -2.0])
def test_bad_multipliers_name_the_leaf(value):
    with pytest.raises(ValueError, match=r"multipliers\['w'\]"):
        optim.scale_by_tree({"w": value, "b": 1.0}).init(_params())


@pytest.mark.parametrize("name", ["adam", "adam_atan2", "adamp", "factored", "sgd"])
def test_integer_parameters_are_refused(name):
    params = {"w": jnp.ones((3, 2)), "steps": jnp.zeros(2, jnp.int32)}
    with pytest.raises(ValueError, match=r"parameter steps has dtype int32"):
        optim.optimizer(name, 1e-3).init(params)


def test_gradients_must_match_the_parameters():
    params = _params()
    tx = optim.optimizer("adam", 1e-3)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"missing entries for \['b'\]"):
        tx.update({"w": jnp.ones((3, 2))}, state, params)
    with pytest.raises(ValueError, match=r"update w has shape \(2, 3\), its parameter \(3, 2\)"):
        tx.update({"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}, state, params)


def test_a_plan_refuses_parameters_of_another_model():
    shapes = lambda n: {"w": jnp.zeros((4, n)), "out": jnp.zeros((n, 3))}
    plan = Plan(infer_spec(shapes(8), shapes(16), shapes(32)), Parametrization("mup", "adam"))
    tx = plan.optimizer(learning_rate=1e-3)
    with pytest.raises(
        ValueError, match=r"parameter (w|out) has shape \(\S+, \S+\) but the plan.s spec says"
    ):
        tx.init(shapes(16))
    np.testing.assert_equal(jnp.shape(tx.init(shapes(32))[0].count), ())  # the right model is fine

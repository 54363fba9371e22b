"""The optimizer registry (``paramlab.optim.alias``) against optax's own optimizers and by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab import optim


def _params():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=3), jnp.float32),
    }


def _run(tx, steps=12):
    params = _params()
    state = tx.init(params)
    for step in range(steps):
        grads = jax.tree.map(lambda p, s=step: jnp.sin(p * (s + 1)) + 0.1 * p, params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("adam", dict(b1=0.8, b2=0.95, eps=1e-6), optax.adam(1e-2, b1=0.8, b2=0.95, eps=1e-6)),
        ("adamw", dict(weight_decay=0.1), optax.adamw(1e-2, weight_decay=0.1)),
        ("sgd", dict(momentum=0.9, nesterov=True), optax.sgd(1e-2, momentum=0.9, nesterov=True)),
        ("sgd", {}, optax.sgd(1e-2)),
    ],
)
def test_named_optimizers_equal_optax(name, ours, theirs):
    got, want = _run(optim.optimizer(name, 1e-2, **ours)), _run(theirs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7), got, want)


def test_per_leaf_factors_by_hand():
    """One SGD step: ``-eta lr_l (g + wd w_l p)`` coupled, ``-eta lr_l g - wd w_l p`` independent."""
    params = _params()
    grads = jax.tree.map(jnp.ones_like, params)
    lr = {"w": 0.5, "b": 2.0}
    wd = {"w": 1.0, "b": 0.0}
    for mode in ("lr_coupled", "independent"):
        tx = optim.optimizer(
            "sgd",
            0.1,
            weight_decay=0.01,
            lr_scales=lr,
            weight_decay_scales=lambda p: wd,
            weight_decay_mode=mode,
        )
        updates, _ = tx.update(grads, tx.init(params), params)
        for k in params:
            p = np.asarray(params[k], np.float64)
            if mode == "lr_coupled":
                want = -0.1 * lr[k] * (1.0 + 0.01 * wd[k] * p)
            else:
                want = -0.1 * lr[k] * 1.0 - 0.01 * wd[k] * p
            np.testing.assert_allclose(updates[k], want, rtol=1e-6)


def test_per_leaf_epsilon_multiplies_eps():
    params = _params()
    grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
    tx = optim.optimizer("adam", 1.0, eps=1e-3, eps_scales={"w": 1.0, "b": 0.0})
    updates, _ = tx.update(grads, tx.init(params), params)
    # first Adam step: m_hat = g, sqrt(v_hat) = |g|: -g / (|g| + eps * eps_l)
    np.testing.assert_allclose(updates["w"], -0.5, rtol=1e-5)
    np.testing.assert_allclose(updates["b"], -1.0, rtol=1e-5)


def test_registry_families_and_hyperparameters():
    assert {name: optim.family_of(name) for name in optim.OPTIMIZERS} == {
        "adam": "adam",
        "adamw": "adam",
        "adam_atan2": "adam",
        "adamp": "adam",
        "factored": "adam",
        "adafactor": "adafactor",
        "sgd": "sgd",
    }
    assert set(optim.FAMILIES) == {entry.family for entry in optim.OPTIMIZERS.values()}
    assert "eps" not in optim.OPTIMIZERS["adam_atan2"].hyperparameters
    assert "momentum" in optim.OPTIMIZERS["sgd"].hyperparameters


def test_bad_names_and_arguments_are_named():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optim.optimizer("adamx", 1e-3)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optim.family_of("lion")
    with pytest.raises(ValueError, match=r"'adam' takes no argument\(s\) \['a'\]"):
        optim.optimizer("adam", 1e-3, a=1.0)
    with pytest.raises(ValueError, match="weight_decay_mode"):
        optim.optimizer("adam", 1e-3, weight_decay_mode="coupled")
    with pytest.raises(ValueError, match="weight_decay"):
        optim.optimizer("adam", 1e-3, weight_decay=-1.0)
    with pytest.raises(ValueError, match="multiply_by_parameter_scale"):
        optim.optimizer("adafactor", 1e-3, multiply_by_parameter_scale=False)


def test_configuring_passes_each_optimizer_its_own_keys():
    config = dict(b1=0.8, b2=0.9, eps=1e-6, momentum=0.5)
    assert optim.configuring("adamw", **config) == dict(b1=0.8, b2=0.9, eps=1e-6)
    assert optim.configuring("adam_atan2", **config) == dict(b1=0.8, b2=0.9)
    assert optim.configuring("sgd", **config) == dict(momentum=0.5)
    assert optim.configuring("adafactor", **config) == {}
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optim.configuring("adamx", **config)

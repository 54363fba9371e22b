"""paramlab.optim.scaling against optax and float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.optim import (
    adam_per_param_eps,
    add_decayed_weights_per_param,
    decay_weights_independent_of_lr,
    scale_by_adam_per_param_eps,
    scale_by_tree,
)

SHAPES = {"kernel": (4, 3), "bias": (3,), "head": {"w": (2, 3, 2)}}


def _tree(fn):
    return jax.tree.map(fn, SHAPES, is_leaf=lambda x: isinstance(x, tuple))


def _grads(seed: int, steps: int) -> list:
    rng = np.random.default_rng(seed)
    return [_tree(lambda shape: (0.1 * rng.normal(size=shape)).astype(np.float32)) for _ in range(steps)]


def _params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return _tree(lambda shape: rng.normal(size=shape).astype(np.float32))


def _run_updates(opt, grads_seq, params) -> list:
    state = opt.init(params)
    update = jax.jit(opt.update)
    out = []
    for grads in grads_seq:
        updates, state = update(grads, state, params)
        out.append(jax.tree.map(np.asarray, updates))
    return out


def _run_training(opt, grads_seq, params) -> dict:
    """Apply ``opt`` for ``len(grads_seq)`` steps with the given gradients; return the final params."""
    state = opt.init(params)
    update = jax.jit(opt.update)
    for grads in grads_seq:
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)


def _assert_trees_close(got, want, **tol) -> None:
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **tol), got, want)


# Adam with a per-parameter epsilon ----------------------------------------------------------------


@pytest.mark.parametrize("hparams", [{}, {"b1": 0.5, "b2": 0.9, "eps_root": 1e-6}])
def test_uniform_eps_equals_optax_scale_by_adam(hparams):
    grads, params = _grads(0, 10), _params()
    want = _run_updates(optax.scale_by_adam(eps=1e-3, **hparams), grads, params)
    shared = _run_updates(scale_by_adam_per_param_eps(1e-3, **hparams), grads, params)
    per_leaf = _run_updates(scale_by_adam_per_param_eps(_tree(lambda _: 1e-3), **hparams), grads, params)
    for got in (shared, per_leaf):
        _assert_trees_close(got, want, rtol=1e-6, atol=1e-7)


def _numpy_adam(grads_seq, eps_tree, b1=0.9, b2=0.999) -> list:
    """Textbook Adam in float64 with a per-leaf epsilon: ``m_hat / (sqrt(v_hat) + eps_l)``."""
    flat_eps = jax.tree.leaves(eps_tree)
    treedef = jax.tree.structure(grads_seq[0])
    m = [np.zeros(np.shape(g)) for g in jax.tree.leaves(grads_seq[0])]
    v = [np.zeros(np.shape(g)) for g in jax.tree.leaves(grads_seq[0])]
    out = []
    for t, grads in enumerate(grads_seq, start=1):
        step = []
        for i, g in enumerate(jax.tree.leaves(grads)):
            g = np.asarray(g, np.float64)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            step.append((m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + flat_eps[i]))
        out.append(jax.tree.unflatten(treedef, step))
    return out


def test_per_leaf_eps_matches_numpy_reference():
    # Gradients ~0.1: eps = 1e-1 halves the step, 1e-3 barely changes it, 0 is plain sign-like Adam.
    eps = {"kernel": 1e-1, "bias": 1e-3, "head": {"w": 0.0}}
    grads, params = _grads(1, 12), _params()
    got = _run_updates(scale_by_adam_per_param_eps(eps), grads, params)
    want = _numpy_adam(grads, eps)
    _assert_trees_close(got, want, rtol=2e-5, atol=1e-6)
    # The per-leaf eps matters: the kernel's step differs from the eps = 0 step by a large factor.
    no_eps = _numpy_adam(grads, _tree(lambda _: 0.0))
    assert np.max(np.abs(no_eps[-1]["kernel"])) > 1.5 * np.max(np.abs(got[-1]["kernel"]))


def test_per_param_eps_alias_and_inject_hyperparams():
    grads, params = _grads(2, 5), _params()
    direct = _run_updates(adam_per_param_eps(1e-2, 1e-3), grads, params)
    want = _run_updates(optax.adam(1e-2, eps=1e-3), grads, params)
    _assert_trees_close(direct, want, rtol=1e-6, atol=1e-9)
    # inject_hyperparams turns the shared eps into a 0-d array; it must still count as one scalar.
    injected = _run_updates(optax.inject_hyperparams(adam_per_param_eps)(1e-2, 1e-3), grads, params)
    _assert_trees_close(injected, want, rtol=2e-5, atol=1e-9)  # b1, b2 then are float32 arrays


def test_per_param_eps_keeps_dtypes():
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.bfloat16), _params())
    grads = [jax.tree.map(lambda g: jnp.asarray(g, jnp.bfloat16), g) for g in _grads(3, 2)]
    opt = scale_by_adam_per_param_eps(1e-8, mu_dtype=jnp.float32)
    state = opt.init(params)
    updates, state = opt.update(grads[0], state)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.mu))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.nu))


# scale_by_tree -------------------------------------------------------------------------------------


def test_scale_by_tree_multiplies_each_leaf():
    multipliers = {"kernel": 0.5, "bias": 2.0, "head": {"w": jnp.float32(3.0)}}
    grads = _grads(4, 1)[0]
    (got,) = _run_updates(scale_by_tree(multipliers), [grads], _params())
    want = jax.tree.map(lambda g, s: np.asarray(g, np.float64) * float(s), grads, multipliers)
    _assert_trees_close(got, want, rtol=1e-7)


def test_scale_by_tree_keeps_bfloat16_and_none():
    params = {"a": jnp.ones(3, jnp.bfloat16), "frozen": None}
    opt = scale_by_tree({"a": 0.25, "frozen": None})
    updates, _ = opt.update({"a": jnp.ones(3, jnp.bfloat16), "frozen": None}, opt.init(params))
    assert updates["a"].dtype == jnp.bfloat16
    assert updates["frozen"] is None
    np.testing.assert_array_equal(np.asarray(updates["a"], np.float32), 0.25)


def test_scale_by_tree_mismatch_names_the_path():
    with pytest.raises(ValueError, match=r"multipliers.*\['bias'\]"):
        scale_by_tree({"kernel": 1.0, "head": {"w": 1.0}}).init(_params())
    with pytest.raises(ValueError, match=r"multipliers.*\['extra'\]"):
        scale_by_tree({"kernel": 1.0, "bias": 1.0, "head": {"w": 1.0}, "extra": 1.0}).init(_params())
    with pytest.raises(ValueError, match=r"multipliers\['bias'\] must be a scalar.*\(3,\)"):
        scale_by_tree({"kernel": 1.0, "bias": np.ones(3), "head": {"w": 1.0}}).init(_params())


# Weight decay in both conventions ------------------------------------------------------------------

RATES = {"kernel": 0.1, "bias": 0.0, "head": {"w": 0.3}}
SCHEDULE = optax.linear_schedule(0.1, 0.01, 10)


def _lr(t: int) -> float:
    return 0.1 + (0.01 - 0.1) * min(t, 10) / 10


def test_decay_multiplied_by_lr_matches_numpy():
    grads, params0 = _grads(5, 10), _params(5)
    opt = optax.chain(add_decayed_weights_per_param(RATES), optax.scale_by_learning_rate(SCHEDULE))
    got = _run_training(opt, grads, params0)
    want = jax.tree.map(lambda p: np.asarray(p, np.float64), params0)
    for t, g in enumerate(grads):
        want = jax.tree.map(lambda p, g_, wd: p - _lr(t) * (g_ + wd * p), want, g, RATES)  # noqa: B023
    _assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_decay_independent_of_lr_matches_numpy():
    grads, params0 = _grads(6, 10), _params(6)
    opt = optax.chain(optax.scale_by_learning_rate(SCHEDULE), decay_weights_independent_of_lr(RATES))
    got = _run_training(opt, grads, params0)
    want = jax.tree.map(lambda p: np.asarray(p, np.float64), params0)
    for t, g in enumerate(grads):
        want = jax.tree.map(lambda p, g_, wd: p - _lr(t) * g_ - wd * p, want, g, RATES)  # noqa: B023
    _assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lr", [1e-3, 1.0])
def test_conventions_differ_in_lr_dependence(lr):
    # Zero gradients isolate the decay: independent gives (1 - wd)^T, AdamW gives (1 - lr wd)^T.
    params0, steps = _params(7), 5
    zeros = [jax.tree.map(np.zeros_like, params0)] * steps
    indep = _run_training(
        optax.chain(optax.scale_by_learning_rate(lr), decay_weights_independent_of_lr(0.2)), zeros, params0
    )
    coupled = _run_training(
        optax.chain(add_decayed_weights_per_param(0.2), optax.scale_by_learning_rate(lr)), zeros, params0
    )
    _assert_trees_close(indep, jax.tree.map(lambda p: p * 0.8**steps, params0), rtol=1e-5)
    _assert_trees_close(coupled, jax.tree.map(lambda p: p * (1 - 0.2 * lr) ** steps, params0), rtol=1e-5)


def test_decay_rates_injectable_as_shared_scalar():
    grads, params = _grads(8, 3), _params(8)

    def factory(learning_rate, rate):
        return optax.chain(add_decayed_weights_per_param(rate), optax.scale_by_learning_rate(learning_rate))

    want = _run_updates(optax.adamw(0.1, b1=0.0, b2=0.0, eps=1e30, weight_decay=0.2), grads, params)
    got = _run_updates(optax.inject_hyperparams(factory)(0.1, 0.2), grads, params)
    # adamw with eps = 1e30 turns the Adam part off (below 1e-30): its update is -lr * wd * p.
    for got_t, want_t, grads_t in zip(got, want, grads):
        _assert_trees_close(
            got_t, jax.tree.map(lambda w, g: w - 0.1 * g, want_t, grads_t), rtol=1e-5, atol=1e-7
        )


def test_decay_errors_name_the_argument_or_path():
    with pytest.raises(ValueError, match=r"rates\['head'\]\['w'\] must be >= 0"):
        add_decayed_weights_per_param({"kernel": 0.1, "bias": 0.0, "head": {"w": -0.1}}).init(_params())
    with pytest.raises(ValueError, match=r"rates.*\['kernel'\]"):
        decay_weights_independent_of_lr({"bias": 0.0, "head": {"w": 0.1}}).init(_params())
    with pytest.raises(ValueError, match="^rates must be >= 0"):
        decay_weights_independent_of_lr(-1.0).init(_params())
    for transform in (add_decayed_weights_per_param(0.1), decay_weights_independent_of_lr(0.1)):
        with pytest.raises(ValueError, match="needs params"):
            transform.update(_grads(0, 1)[0], transform.init(_params()), None)


def test_bad_adam_hyperparameters_name_the_argument():
    with pytest.raises(ValueError, match="^b1 must"):
        scale_by_adam_per_param_eps(1e-8, b1=1.0)
    with pytest.raises(ValueError, match="^b2 must"):
        scale_by_adam_per_param_eps(1e-8, b2=-0.5)
    with pytest.raises(ValueError, match="^eps must be >= 0"):
        scale_by_adam_per_param_eps(-1e-8)
    with pytest.raises(ValueError, match="^eps_root must be >= 0"):
        scale_by_adam_per_param_eps(1e-8, eps_root=-1.0)
    with pytest.raises(ValueError, match=r"eps\['bias'\] must be >= 0"):
        scale_by_adam_per_param_eps({"kernel": 1e-8, "bias": -1e-8, "head": {"w": 0.0}}).init(_params())


# optax.partition / optax.masked hand the transform only part of the parameters ---------------------


def test_full_scalar_trees_work_inside_optax_partition():
    params = _params(9)
    labels = {"kernel": "scaled", "bias": "sgd", "head": "scaled"}
    grads = _grads(9, 1)[0]
    multipliers = {"kernel": 2.0, "bias": 5.0, "head": {"w": 0.5}}
    inner = optax.chain(
        scale_by_tree(multipliers),
        add_decayed_weights_per_param(RATES),
        optax.scale_by_learning_rate(0.1),
        decay_weights_independent_of_lr(RATES),
    )
    opt = optax.partition({"scaled": inner, "sgd": optax.sgd(1.0)}, labels)
    (got,) = _run_updates(opt, [grads], params)

    def want_leaf(g, p, s, wd):
        return -0.1 * (s * g + wd * p) - wd * p

    np.testing.assert_allclose(got["bias"], -grads["bias"], rtol=1e-7)
    np.testing.assert_allclose(
        got["kernel"], want_leaf(grads["kernel"], params["kernel"], 2.0, 0.1), rtol=1e-6
    )
    np.testing.assert_allclose(
        got["head"]["w"], want_leaf(grads["head"]["w"], params["head"]["w"], 0.5, 0.3), rtol=1e-6
    )

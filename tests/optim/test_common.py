"""A matrix over every paramlab optimizer: jit, inject_hyperparams, MultiSteps, bf16, partition, convergence.

Modelled on optax's ``contrib/_common_test.py``. Each case builds its transformation from a learning rate
and the parameters (per-leaf scalar trees need the parameters' structure). Every named optimizer of the
registry (:data:`paramlab.optim.OPTIMIZERS`) is a case too, with per-leaf LR, epsilon and weight-decay
factors given as functions of the tree (as a plan gives them). Properties tested here are not tested
again per optimizer.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab import optim
from paramlab.optim.adafactor import adafactor
from paramlab.optim.factored import scale_by_factored_moments


def _per_leaf(params: Any, matrix: float, other: float) -> Any:
    """A scalar per parameter: ``matrix`` for leaves of rank >= 2, ``other`` for vectors and scalars."""
    return jax.tree.map(lambda p: matrix if np.ndim(p) >= 2 else other, params)


def _per_param_chain(learning_rate: Any, params: Any) -> optax.GradientTransformation:
    """Every per-parameter primitive at once, as a parametrization plan would chain them."""
    return optax.chain(
        optim.scale_by_adam_per_param_eps(_per_leaf(params, 1e-8, 1e-6)),
        optim.scale_by_tree(_per_leaf(params, 0.5, 1.0)),
        optim.add_decayed_weights_per_param(_per_leaf(params, 1e-3, 0.0)),
        optax.scale_by_learning_rate(learning_rate),
        optim.decay_weights_independent_of_lr(_per_leaf(params, 1e-5, 0.0)),
    )


@dataclasses.dataclass(frozen=True)
class Case:
    """An optimizer under test: ``make(learning_rate, params)`` and a learning rate that converges here."""

    name: str
    make: Callable[[Any, Any], optax.GradientTransformation]
    learning_rate: float


CASES = [
    Case("adam_atan2", lambda lr, params: optim.adam_atan2(lr), 0.05),
    Case(
        "adam_atan2_decay",
        lambda lr, params: optim.adam_atan2(
            lr, b=2.0, weight_decay=1e-3, mask=lambda p: _per_leaf(p, True, False)
        ),
        0.1,
    ),
    Case(
        "adam_per_param_eps",
        lambda lr, params: optim.adam_per_param_eps(lr, _per_leaf(params, 1e-8, 1e-7)),
        0.05,
    ),
    Case("per_param_chain", _per_param_chain, 0.1),
    # min_dim_size_to_factor=2: the tiny matrices here are factored, not kept in full.
    Case("adafactor", lambda lr, params: adafactor(lr, min_dim_size_to_factor=2), 1.0),
    Case(
        "factored_moments",
        lambda lr, params: optax.chain(
            scale_by_factored_moments(min_dim_size_to_factor=2), optax.scale_by_learning_rate(lr)
        ),
        0.3,
    ),
]
_REGISTRY_LR = {"sgd": 1.0, "adafactor": 0.5}
_REGISTRY_EXTRA = {"factored": {"min_dim_size_to_factor": 2}, "adafactor": {"min_dim_size_to_factor": 2}}


def _registry_case(name: str) -> Case:
    """The registry's optimizer with per-leaf factors as ``tree -> tree`` functions, like a plan's."""

    def make(lr, params):
        return optim.optimizer(
            name,
            lr,
            momentum=0.9,
            weight_decay=1e-4,
            lr_scales=lambda like: _per_leaf(like, 0.5, 1.0),
            eps_scales=lambda like: _per_leaf(like, 1.0, 10.0),
            weight_decay_scales=lambda like: _per_leaf(like, 1.0, 0.0),
            **_REGISTRY_EXTRA.get(name, {}),
        )

    return Case(f"registry_{name}", make, _REGISTRY_LR.get(name, 0.1))


CASES += [_registry_case(name) for name in optim.OPTIMIZERS]
IDS = [case.name for case in CASES]


# Problems -------------------------------------------------------------------------------------------

TARGET = {"vector": jnp.asarray([1.0, -1.0, 2.0]), "matrix": jnp.asarray([[1.0, 0.0], [-1.0, 1.0]])}


def _quadratic_params(dtype=jnp.float32) -> dict:
    return {"vector": jnp.zeros(3, dtype), "matrix": jnp.zeros((2, 2), dtype)}


def _quadratic_loss(params: dict) -> jax.Array:
    return sum(jnp.sum(jnp.square(params[k].astype(jnp.float32) - TARGET[k])) for k in TARGET)


def _train(opt: optax.GradientTransformation, loss_fn, params, steps: int):
    """``steps`` optimizer steps under one ``lax.scan``; returns final params and state."""

    def step(carry, _):
        params, state = carry
        grads = jax.grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), length=steps))(
        params, opt.init(params)
    )
    return params, state


def _grads_sequence(params: Any, steps: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params) for _ in range(steps)
    ]


def _assert_trees_close(got, want, **tol) -> None:
    jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), **tol), got, want)


# The matrix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_does_not_recompile_between_steps(case):
    params = _quadratic_params()
    opt = case.make(case.learning_rate, params)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)  # runs only while tracing
        updates, state = opt.update(jax.grad(_quadratic_loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    for _ in range(4):
        params, state = step(params, state)
    assert len(traces) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inject_hyperparams_learning_rate(case):
    params = _quadratic_params()
    grads = _grads_sequence(params, 3)
    direct = case.make(case.learning_rate, params)
    injected = optax.inject_hyperparams(lambda learning_rate: case.make(learning_rate, params))(
        learning_rate=case.learning_rate
    )
    traces = []

    @jax.jit
    def update(grads, state):
        traces.append(1)
        return injected.update(grads, state, params)

    d_state, i_state = direct.init(params), injected.init(params)
    for g in grads:
        d_updates, d_state = direct.update(g, d_state, params)
        i_updates, i_state = update(g, i_state)
        _assert_trees_close(i_updates, d_updates, rtol=1e-5, atol=1e-8)
    # Changing the injected learning rate takes effect without retracing.
    i_state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
    zero_lr_updates, _ = update(grads[0], i_state)
    assert len(traces) == 1
    decay_only = case.make(0.0, params).update(grads[0], d_state, params)[0]
    _assert_trees_close(zero_lr_updates, decay_only, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_multi_steps_averages_micro_batches(case):
    params = _quadratic_params()
    grads = _grads_sequence(params, 4, seed=1)
    base = case.make(case.learning_rate, params)
    multi = optax.MultiSteps(case.make(case.learning_rate, params), every_k_schedule=2)
    m_state, b_state = multi.init(params), base.init(params)
    m_update = jax.jit(multi.update)
    for k in range(2):
        first, m_state = m_update(grads[2 * k], m_state, params)
        jax.tree.map(lambda u: np.testing.assert_array_equal(u, np.zeros_like(u)), first)
        second, m_state = m_update(grads[2 * k + 1], m_state, params)
        mean = jax.tree.map(lambda a, b: (a + b) / 2, grads[2 * k], grads[2 * k + 1])
        want, b_state = base.update(mean, b_state, params)
        _assert_trees_close(second, want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bfloat16_params(case):
    params = _quadratic_params(jnp.bfloat16)
    opt = case.make(case.learning_rate, params)
    grads = jax.grad(_quadratic_loss)(params)
    updates, state = jax.jit(opt.update)(grads, opt.init(params), params)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(state))
    final, state = _train(opt, _quadratic_loss, params, steps=60)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(final))
    assert float(_quadratic_loss(final)) < 0.05 * float(_quadratic_loss(params))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_optax_partition(case):
    params = {"tuned": _quadratic_params(), "frozen": jnp.ones(4)}
    labels = {"tuned": "opt", "frozen": "zero"}
    grads = _grads_sequence(params, 3, seed=2)
    opt = optax.partition({"opt": case.make(case.learning_rate, params), "zero": optax.set_to_zero()}, labels)
    alone = case.make(case.learning_rate, params["tuned"])
    state, a_state = opt.init(params), alone.init(params["tuned"])
    update = jax.jit(opt.update)
    for g in grads:
        updates, state = update(g, state, params)
        want, a_state = alone.update(g["tuned"], a_state, params["tuned"])
        np.testing.assert_array_equal(updates["frozen"], np.zeros(4))
        _assert_trees_close(updates["tuned"], want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_converges_on_quadratic(case):
    params = _quadratic_params()
    schedule = optax.cosine_decay_schedule(case.learning_rate, 300)
    final, _ = _train(case.make(schedule, params), _quadratic_loss, params, steps=300)
    assert float(_quadratic_loss(final)) < 1e-3 * float(_quadratic_loss(params))
    _assert_trees_close(final, TARGET, atol=3e-2)


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(32)(x))
        x = nn.tanh(nn.Dense(32)(x))
        return nn.Dense(1)(x)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_converges_on_flax_mlp_regression(case):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
    y = jnp.sin(x @ jnp.asarray(rng.normal(size=(4, 1)), jnp.float32))
    model = _MLP()
    params = model.init(jax.random.key(0), x)["params"]

    def loss_fn(p):
        return jnp.mean(jnp.square(model.apply({"params": p}, x) - y))

    schedule = optax.cosine_decay_schedule(case.learning_rate / 5, 300)
    final, _ = _train(case.make(schedule, params), loss_fn, params, steps=300)
    assert float(loss_fn(final)) < 0.02 * float(loss_fn(params))

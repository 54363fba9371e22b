"""The train step against closed-form gradients, large-batch equivalence, bf16 and donation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.train.schedules import make_schedule
from paramlab.train.state import create_train_state
from paramlab.train.step import evaluate, jit_train_step, make_eval_step, make_train_step, role_rms


def _linear_loss(params, batch):
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2), {}


def test_sgd_step_matches_closed_form_gradient():
    rng = np.random.default_rng(0)
    x, y, w = rng.normal(size=(32, 5)), rng.normal(size=(32, 3)), rng.normal(size=(5, 3))
    batch = {"x": x.astype(np.float32), "y": y.astype(np.float32)}
    lr = 0.1
    step = jax.jit(make_train_step(_linear_loss, optax.sgd(lr), learning_rate=lr))
    state = create_train_state({"w": jnp.asarray(w, jnp.float32)}, optax.sgd(lr))
    new_state, metrics = step(state, batch)
    residual = x @ w - y
    grad = 2.0 / residual.size * x.T @ residual  # d/dW mean((xW - y)^2)
    np.testing.assert_allclose(metrics["loss"], np.mean(residual**2), rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(grad), rtol=1e-5)
    np.testing.assert_allclose(new_state.params["w"], w - lr * grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["update_rms/all"], np.sqrt(np.mean((lr * grad) ** 2)), rtol=1e-5)
    assert int(new_state.step) == 1 and float(metrics["learning_rate"]) == pytest.approx(lr)


@pytest.mark.parametrize("k", [2, 4])
def test_gradient_accumulation_equals_large_batch(toy, k):
    optimizer = optax.adam(1e-2)
    params = toy.params(jax.random.key(0))
    full = jax.jit(make_train_step(toy.loss, optimizer))
    accum = jax.jit(make_train_step(toy.loss, optimizer, microbatches=k))
    s_full = s_acc = create_train_state(params, optimizer)
    for i in range(3):
        batch = toy.batch(i, batch_size=16)
        s_full, m_full = full(s_full, batch)
        s_acc, m_acc = accum(s_acc, batch)
        np.testing.assert_allclose(m_acc["loss"], m_full["loss"], rtol=1e-6)
        np.testing.assert_allclose(m_acc["grad_norm"], m_full["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s_acc.params), jax.tree.leaves(s_full.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_microbatches_must_divide_batch(toy):
    step = make_train_step(toy.loss, optax.sgd(0.1), microbatches=3)
    state = create_train_state(toy.params(jax.random.key(0)), optax.sgd(0.1))
    with pytest.raises(ValueError, match="microbatches=3"):
        step(state, toy.batch(0, batch_size=16))
    with pytest.raises(ValueError, match="microbatches"):
        make_train_step(toy.loss, optax.sgd(0.1), microbatches=0)


def test_bf16_compute_keeps_float32_params(toy):
    optimizer = optax.adam(1e-2)
    params = toy.params(jax.random.key(1))
    batch = toy.batch(0, batch_size=16)
    seen = []

    def spy_loss(p, b):
        seen.append(jax.tree.leaves(p)[0].dtype)
        return toy.loss(p, b)

    bf16 = jax.jit(make_train_step(spy_loss, optimizer, compute_dtype=jnp.bfloat16))
    f32 = jax.jit(make_train_step(toy.loss, optimizer))
    s_bf16, m_bf16 = bf16(create_train_state(params, optimizer), batch)
    _, m_f32 = f32(create_train_state(params, optimizer), batch)
    assert seen == [jnp.bfloat16]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s_bf16.params))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s_bf16.opt_state) if x.ndim)
    np.testing.assert_allclose(m_bf16["loss"], m_f32["loss"], rtol=3e-2)
    assert float(m_bf16["loss"]) != float(m_f32["loss"])


def test_state_is_donated_and_lr_metric_follows_schedule(toy):
    schedule = make_schedule("cosine", 1e-2, total_steps=10, warmup_steps=2)
    optimizer = optax.adam(schedule)
    step = jit_train_step(make_train_step(toy.loss, optimizer, learning_rate=schedule))
    state = create_train_state(toy.params(jax.random.key(0)), optimizer)
    for i in range(4):
        old = state
        state, metrics = step(state, toy.batch(i))
        assert all(x.is_deleted() for x in jax.tree.leaves(old.params))
        np.testing.assert_allclose(metrics["learning_rate"], schedule(i), rtol=1e-6)
        assert float(metrics["max_err"]) >= float(metrics["loss"])


def test_role_rms_matches_numpy(toy):
    params = toy.params(jax.random.key(2))
    got = role_rms(params, toy.roles, "param_rms")
    assert sorted(got) == ["param_rms/embedding", "param_rms/hidden", "param_rms/readout"]
    biases = np.concatenate([np.asarray(params["hidden"]["bias"]), np.asarray(params["out"]["bias"])])
    np.testing.assert_allclose(got["param_rms/embedding"], np.sqrt(np.mean(biases**2)), atol=1e-7)
    np.testing.assert_allclose(
        got["param_rms/hidden"], np.sqrt(np.mean(np.asarray(params["hidden"]["kernel"]) ** 2)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="roles"):
        role_rms(params, jax.tree.map(lambda _: 1, toy.roles), "x")


def test_evaluate_is_mean_of_batch_losses(toy):
    params = toy.params(jax.random.key(3))
    batches = [toy.batch(i) for i in range(3)]
    want = np.mean([float(toy.loss(params, b)[0]) for b in batches])
    np.testing.assert_allclose(evaluate(make_eval_step(toy.loss), params, batches), want, rtol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        evaluate(make_eval_step(toy.loss), params, [])

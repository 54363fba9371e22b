"""Vmapped sweeps against the ordinary (one run at a time) train step, and divergence masking."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.sweep import product_members
from paramlab.sweep.vmapped import init_sweep, run_sweep
from paramlab.train import create_train_state, jit_train_step, make_train_step


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(16)(x))
        return nn.Dense(1)(x)


_MODEL = _MLP()


def _init_params(rng):
    return _MODEL.init(rng, jnp.zeros((1, 4)))["params"]


def _loss_fn(params, batch):
    pred = _MODEL.apply({"params": params}, batch["x"])[:, 0]
    return jnp.mean(jnp.square(pred - batch["y"])), {}


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=(8, 4)).astype(np.float32)
        out.append({"x": x, "y": np.sin(x.sum(axis=1)).astype(np.float32)})
    return out


def _sequential(optimizer, seed, batches):
    """Ordinary training: paramlab.train's jitted step, one run, returns losses and final params."""
    state = create_train_state(_init_params(jax.random.key(seed)), optimizer)
    step = jit_train_step(make_train_step(_loss_fn, optimizer))
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return np.asarray(losses), state.params


def test_members_match_sequential_runs():
    batches = _batches(12)
    members = product_members(seeds=(0, 1), learning_rate=(1e-3, 1e-2, 3e-2))
    result = run_sweep(
        _init_params, _loss_fn, lambda learning_rate: optax.adam(learning_rate), members, iter(batches), 12,
        steps_per_call=5,
    )  # fmt: skip
    assert result.history["loss"].shape == (12, 6)
    for k, member in enumerate(members):
        losses, params = _sequential(optax.adam(member["learning_rate"]), member["seed"], batches)
        np.testing.assert_allclose(result.history["loss"][:, k], losses, rtol=1e-5)
        member_params = jax.tree.map(lambda x, k=k: x[k], result.state.train.params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), member_params, params
        )
        record = result.records[k]
        assert record["learning_rate"] == member["learning_rate"] and record["seed"] == member["seed"]
        assert record["initial_loss"] == pytest.approx(losses[0], rel=1e-5)
        assert record["final_loss"] == record["train_loss"] == pytest.approx(losses[-1], rel=1e-5)
        assert record["diverged"] is False and record["diverged_step"] is None and record["steps"] == 12


def test_several_hyperparameters_live_in_the_optimizer_state():
    members = product_members(learning_rate=(1e-3, 2e-3), b1=(0.5, 0.9))
    state = init_sweep(_init_params, lambda learning_rate, b1: optax.adam(learning_rate, b1=b1), members)
    hyper = state.train.opt_state.hyperparams
    np.testing.assert_allclose(hyper["learning_rate"], [m["learning_rate"] for m in members])
    np.testing.assert_allclose(hyper["b1"], [m["b1"] for m in members])
    batches = _batches(3)
    adam = lambda learning_rate, b1: optax.adam(learning_rate, b1=b1)
    result = run_sweep(_init_params, _loss_fn, adam, members, iter(batches), 3)
    losses, _ = _sequential(optax.adam(2e-3, b1=0.5), 0, batches)
    np.testing.assert_allclose(result.history["loss"][:, 2], losses, rtol=1e-5)


def test_diverged_member_is_frozen_and_others_go_on(capsys):
    batches = _batches(15)
    members = product_members(learning_rate=(0.05, 1e4))
    result = run_sweep(
        _init_params, _loss_fn, optax.sgd, members, iter(batches), 15, steps_per_call=4, progress_bar=True
    )
    assert "15/15" in capsys.readouterr().err  # the bar counted every step, chunk by chunk (4+4+4+3)
    good, bad = result.records
    assert not good["diverged"]
    losses, _ = _sequential(optax.sgd(0.05), 0, batches)
    np.testing.assert_allclose(result.history["loss"][:, 0], losses, rtol=1e-5)

    assert bad["diverged"] and bad["final_loss"] == math.inf and bad["train_loss"] == math.inf
    t = bad["diverged_step"]
    assert 1 <= t <= 15
    assert np.all(np.isfinite(result.history["loss"][: t - 1, 1]))
    assert np.all(result.history["loss"][t - 1 :, 1] == np.inf)
    assert np.all(np.isnan(result.history["grad_norm"][t - 1 :, 1]))
    # frozen at the last finite state: the member's step count stopped, its parameters are finite
    assert int(result.state.train.step[1]) == t - 1
    assert all(bool(jnp.all(jnp.isfinite(x[1]))) for x in jax.tree.leaves(result.state.train.params))
    # the sequential run with that learning rate agrees on the finite prefix
    seq, _ = _sequential(optax.sgd(1e4), 0, batches[: t - 1])
    np.testing.assert_allclose(result.history["loss"][: t - 1, 1], seq, rtol=1e-4)


def test_eval_batches_and_final_window():
    batches, held_out = _batches(6), _batches(2, seed=1)
    members = product_members(learning_rate=(1e-2,))
    result = run_sweep(
        _init_params, _loss_fn, optax.adam, members, iter(batches), 6,
        eval_batches=lambda: held_out, final_window=3,
    )  # fmt: skip
    losses, params = _sequential(optax.adam(1e-2), 0, batches)
    record = result.records[0]
    assert record["train_loss"] == pytest.approx(losses[-3:].mean(), rel=1e-5)
    expected = np.mean([float(_loss_fn(params, b)[0]) for b in held_out])
    assert record["eval_loss"] == record["final_loss"] == pytest.approx(expected, rel=1e-5)


def test_bad_arguments():
    members = product_members(learning_rate=(1e-3,))
    with pytest.raises(ValueError, match="does not take"):
        init_sweep(_init_params, optax.adam, product_members(lr=(1e-3,)))
    with pytest.raises(ValueError, match="empty"):
        init_sweep(_init_params, optax.adam, [])
    with pytest.raises(ValueError, match="members\\[1\\] has keys"):
        init_sweep(_init_params, optax.adam, [{"learning_rate": 1.0}, {"b1": 0.9}])
    with pytest.raises(ValueError, match="must be a number"):
        init_sweep(_init_params, optax.adam, [{"learning_rate": "big"}])
    with pytest.raises(ValueError, match="non-empty sequence"):
        product_members(learning_rate=())
    with pytest.raises(ValueError, match="steps must be"):
        run_sweep(_init_params, _loss_fn, optax.adam, members, iter([]), 0)
    with pytest.raises(ValueError, match="final_window"):
        run_sweep(_init_params, _loss_fn, optax.adam, members, iter([]), 3, final_window=4)


@pytest.mark.parametrize(
    "name,value",
    [("learning_rate", float("nan")), ("learning_rate", -1e-3), ("weight_decay", -0.1), ("b1", 1.5)],
)
def test_a_bad_member_value_is_refused_before_compiling_naming_member_and_argument(name, value):
    from paramlab.optim import adam_atan2

    grid = {"learning_rate": (1e-3,), "weight_decay": (0.0,), "b1": (0.9,), name: (0.5, value)}
    members = product_members(**grid)  # the second member holds the bad value
    with pytest.raises(ValueError, match=rf"members\[1\].*{name} must be"):
        init_sweep(_init_params, adam_atan2, members)


def test_alignment_probe_per_member():
    """One SGD step on one example: every layer's update is rank 1 along its input, alpha = 1."""
    from paramlab.diagnostics import alignment_probe

    batch = _batches(1)[0]
    one = {k: v[:1] for k, v in batch.items()}
    probe = alignment_probe(lambda p, x: _MODEL.apply({"params": p}, x), one["x"])
    members = product_members(learning_rate=(0.01, 0.1))
    result = run_sweep(_init_params, _loss_fn, optax.sgd, members, iter([one]), 1, probe_fn=probe)
    names = [k for k in result.probes if k.startswith("alignment/alpha/")]
    assert len(names) == 2 and list(result.probes["step"]) == [1]
    for name in names:
        np.testing.assert_allclose(result.probes[name][-1], 1.0, atol=1e-4)
        assert [r[name] for r in result.records] == pytest.approx([1.0, 1.0], abs=1e-4)


def test_members_sharded_over_devices_equal_the_unsharded_sweep():
    """The member axis over the 4 CPU devices of tests/conftest.py: the same results, members on 4 devices."""
    batches = _batches(6)
    members = product_members(seeds=(0, 1), learning_rate=(1e-3, 1e-2, 3e-2, 1e-1))
    adam = lambda learning_rate: optax.adam(learning_rate)
    run = lambda devices: run_sweep(
        _init_params, _loss_fn, adam, members, iter(batches), 6, steps_per_call=3, member_devices=devices
    )
    one, four = run(1), run(4)
    kernel = jax.tree.leaves(four.state.train.params)[0]
    assert len(kernel.sharding.device_set) == 4 and kernel.sharding.shard_shape(kernel.shape)[0] == 2
    np.testing.assert_allclose(four.history["loss"], one.history["loss"], rtol=1e-6)
    assert [r["final_loss"] for r in four.records] == pytest.approx([r["final_loss"] for r in one.records])
    with pytest.raises(ValueError, match="member_devices=3 must divide the 8 members"):
        run(3)

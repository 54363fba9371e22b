"""Alignment exponents: the two closed-form cases of docs/reference.md §2 and the Flax capture."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.diagnostics.alignment import (
    alignment_exponent,
    alignment_metrics,
    capture_dense_inputs,
    layer_alignment,
    make_alignment_fn,
)


def _numpy_exponent(x, m):
    """The formula written out in numpy, per example then averaged."""
    rms = lambda a: np.sqrt(np.mean(np.square(a)))
    values = [math.log(rms(row @ m) / (rms(row) * rms(m))) / math.log(m.shape[0]) for row in x]
    return float(np.mean(values))


def test_matches_numpy_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 16)) * rng.uniform(0.1, 3.0, size=(5, 1))
    m = rng.normal(size=(16, 7))
    got = float(alignment_exponent(jnp.asarray(x), jnp.asarray(m)))
    assert got == pytest.approx(_numpy_exponent(x, m), rel=1e-5)


def test_independent_random_inputs_give_one_half():
    kx, km = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (64, 1024))
    m = 0.02 * jax.random.normal(km, (1024, 256))
    assert float(alignment_exponent(x, m)) == pytest.approx(0.5, abs=0.01)


def test_rank_one_update_aligned_with_input_gives_one():
    kx, kg, ks = jax.random.split(jax.random.key(1), 3)
    v = jax.random.normal(kx, (256,))
    g = jax.random.normal(kg, (64,))
    x = jax.random.normal(ks, (8, 1)) * v  # a batch of multiples of one direction
    update = jnp.outer(v, g)
    assert float(alignment_exponent(x, update)) == pytest.approx(1.0, abs=1e-5)


def test_zero_examples_are_left_out_and_all_zero_is_nan():
    x = jnp.concatenate([jnp.zeros((3, 32)), jax.random.normal(jax.random.key(2), (4, 32))])
    m = jax.random.normal(jax.random.key(3), (32, 8))
    assert float(alignment_exponent(x, m)) == pytest.approx(float(alignment_exponent(x[3:], m)), rel=1e-6)
    assert math.isnan(float(alignment_exponent(jnp.zeros((2, 32)), m)))
    assert math.isnan(float(alignment_exponent(x, jnp.zeros((32, 8)))))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="do not contract"):
        alignment_exponent(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="differ"):
        layer_alignment(jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.ones((3, 3)), jnp.ones((3, 3)))


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64, name="hidden0")(x))
        x = nn.relu(nn.Dense(64, name="hidden1")(x))
        return nn.Dense(3, name="readout")(x)


def test_one_sgd_step_on_one_example_is_fully_aligned():
    """SGD on a single example changes each kernel by -lr * x^T delta: rank 1, aligned with x => alpha = 1."""
    model = _MLP()
    x = jax.random.normal(jax.random.key(4), (1, 32))
    params = model.init(jax.random.key(5), x)["params"]
    apply = lambda p, inputs: model.apply({"params": p}, inputs)
    grads = jax.grad(lambda p: jnp.sum(apply(p, x) ** 2))(params)
    stepped = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)

    metrics = jax.jit(make_alignment_fn(apply, params, x))(stepped)
    assert sorted({k.split("/")[-1] for k in metrics}) == ["hidden0", "hidden1", "readout"]
    for layer in ("hidden0", "hidden1", "readout"):
        assert float(metrics[f"alignment/alpha/{layer}"]) == pytest.approx(1.0, abs=1e-4)
    # the first layer's input does not move: omega and u are undefined there
    assert math.isnan(float(metrics["alignment/omega/hidden0"]))
    assert np.isfinite(float(metrics["alignment/omega/readout"]))


class _Attention(nn.Module):
    @nn.compact
    def __call__(self, x):
        q = nn.DenseGeneral((4, 8), name="query")(x)  # kernel (16, 4, 8)
        return nn.DenseGeneral(16, axis=(-2, -1), name="out")(q)  # kernel (4, 8, 16)


def test_capture_reshapes_dense_general_kernels():
    model = _Attention()
    x = jax.random.normal(jax.random.key(6), (2, 5, 16))
    params = model.init(jax.random.key(7), x)["params"]
    captured = capture_dense_inputs(lambda p: model.apply({"params": p}, x), params)
    assert sorted(captured) == ["out", "query"]
    q_in, q_kernel = captured["query"]
    assert q_in.shape == (2, 5, 16) and q_kernel.shape == (16, 32)
    out_in, out_kernel = captured["out"]
    assert out_in.shape == (2, 5, 32) and out_kernel.shape == (32, 16)
    np.testing.assert_allclose(out_kernel, params["out"]["kernel"].reshape(32, 16))
    # the recorded input of "out" is the query projection, flattened over (heads, head_dim)
    expected = jnp.einsum("btd,dhk->bthk", x, params["query"]["kernel"]) + params["query"]["bias"]
    np.testing.assert_allclose(out_in, expected.reshape(2, 5, 32), rtol=1e-5, atol=1e-6)


def test_alignment_metrics_rejects_different_layers():
    a = {"l": (jnp.ones((2, 4)), jnp.ones((4, 3)))}
    with pytest.raises(ValueError, match="captured layers differ"):
        alignment_metrics(a, {"m": a["l"]})

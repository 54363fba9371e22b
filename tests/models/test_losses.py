"""cross_entropy against a numpy reference and optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.models import cross_entropy


def _numpy_reference(logits, targets, z_loss, weights):
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1, keepdims=True)
    log_z = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    nll = log_z - np.take_along_axis(logits, np.asarray(targets)[..., None], -1)[..., 0]
    w = np.asarray(weights, np.float64)
    ce = (nll * w).sum() / w.sum()
    zz = (log_z**2 * w).sum() / w.sum()
    acc = ((logits.argmax(-1) == np.asarray(targets)) * w).sum() / w.sum()
    return ce + z_loss * zz, ce, zz, acc


@pytest.mark.parametrize("z_loss", [0.0, 1e-4, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_numpy_reference(z_loss, weighted):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    logits = 3.0 * jax.random.normal(k1, (3, 5, 11)) + 2.0
    targets = jax.random.randint(k2, (3, 5), 0, 11)
    weights = (jax.random.uniform(k3, (3, 5)) > 0.3).astype(jnp.float32) if weighted else jnp.ones((3, 5))
    loss, metrics = cross_entropy(logits, targets, z_loss=z_loss, weights=weights if weighted else None)
    loss_ref, ce, zz, acc = _numpy_reference(logits, targets, z_loss, weights)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["cross_entropy"], ce, rtol=1e-5)
    np.testing.assert_allclose(metrics["log_z_squared"], zz, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], acc, rtol=1e-6)


def test_matches_optax_and_handles_bfloat16():
    logits = jax.random.normal(jax.random.key(1), (4, 7, 13)).astype(jnp.bfloat16)
    targets = jax.random.randint(jax.random.key(2), (4, 7), 0, 13)
    loss, _ = jax.jit(cross_entropy)(logits, targets)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_errors():
    logits, targets = jnp.zeros((2, 3, 5)), jnp.zeros((2, 3), jnp.int32)
    with pytest.raises(ValueError, match="z_loss"):
        cross_entropy(logits, targets, z_loss=-1.0)
    with pytest.raises(AssertionError):
        cross_entropy(logits, jnp.zeros((2, 4), jnp.int32))

"""top_singular_values against numpy's SVD: plain, 3-D attention kernels (fan axes), batch axes, resumed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.diagnostics import top_singular_values
from paramlab.optim import FanAxes


def _params():
    rng = np.random.default_rng(0)
    return {
        "dense": jnp.asarray(rng.normal(size=(12, 7)), jnp.float32),
        "q": jnp.asarray(rng.normal(size=(16, 2, 4)), jnp.float32),  # (d_model, heads, head_dim)
        "stacked": jnp.asarray(rng.normal(size=(3, 5, 6)), jnp.float32),  # a leading layer axis
        "bias": jnp.zeros(7),
    }


FAN = {
    "dense": FanAxes((0,), (1,)),
    "q": FanAxes((0,), (1, 2)),
    "stacked": FanAxes((1,), (2,)),
    "bias": FanAxes((), (0,)),
}


def test_matches_numpy_svd():
    params = _params()
    sigmas, _ = jax.jit(lambda p: top_singular_values(p, FAN, iterations=200))(params)
    assert set(sigmas) == {"dense", "q", "stacked"}  # vectors are skipped
    want = {
        "dense": np.linalg.svd(np.asarray(params["dense"]), compute_uv=False)[0],
        "q": np.linalg.svd(np.asarray(params["q"]).reshape(16, 8), compute_uv=False)[0],
        "stacked": max(
            np.linalg.svd(np.asarray(m), compute_uv=False)[0] for m in np.asarray(params["stacked"])
        ),
    }
    for path, value in want.items():
        np.testing.assert_allclose(sigmas[path], value, rtol=1e-4, err_msg=path)


def test_resuming_from_the_previous_vectors_converges_step_by_step():
    params = _params()
    _, state = top_singular_values(params, FAN, iterations=200)
    one_step, _ = top_singular_values(params, FAN, iterations=1, state=state)
    cold, _ = top_singular_values(params, FAN, iterations=1)
    exact = np.linalg.svd(np.asarray(params["dense"]), compute_uv=False)[0]
    assert abs(float(one_step["dense"]) - exact) < 1e-4 * exact < abs(float(cold["dense"]) - exact)


def test_errors_are_named():
    with pytest.raises(ValueError, match="iterations"):
        top_singular_values(_params(), FAN, iterations=0)
    with pytest.raises(ValueError, match="q"):
        top_singular_values(_params())  # a 3-D kernel needs declared fan axes


def test_spectral_probe_measures_the_effective_weight_of_every_member():
    from paramlab.diagnostics import spectral_probe

    params = _params()
    members = jax.tree.map(lambda x: jnp.stack([x, 3.0 * x]), params)  # two sweep members
    probe = spectral_probe(FAN, {"dense": -0.5}, iterations=200)
    values = jax.jit(jax.vmap(probe))(members, members)
    assert set(values) == {"sigma_1/dense", "sigma_1/q", "sigma_1/stacked"}
    dense = np.linalg.svd(np.asarray(params["dense"]), compute_uv=False)[0]
    np.testing.assert_allclose(values["sigma_1/dense"], [0.5 * dense, 1.5 * dense], rtol=1e-4)
    q = np.linalg.svd(np.asarray(params["q"]).reshape(16, 8), compute_uv=False)[0]
    np.testing.assert_allclose(values["sigma_1/q"], [q, 3 * q], rtol=1e-4)

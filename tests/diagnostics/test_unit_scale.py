"""tensor_rms / scale_probe against numpy: activations, weights and gradients of a small MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.diagnostics import scale_probe, tensor_rms
from paramlab.models import MLP, MLPConfig
from paramlab.nn import split_fan_axes

MODEL = MLP(MLPConfig(in_dim=3, width=5, out_dim=2, depth=1, use_bias=False))


def _setup():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    params, _ = split_fan_axes(MODEL.init(jax.random.key(0), x)["params"])
    apply = lambda p, x, **kw: MODEL.apply({"params": p}, x, **kw)
    loss = lambda p, batch: jnp.mean(apply(p, batch) ** 2)
    return params, x, apply, loss


def test_tensor_rms_matches_numpy():
    params, x, apply, loss = _setup()
    out = tensor_rms(apply, loss, params, x, x)
    w0 = np.asarray(params["dense_0"]["kernel"], np.float64)
    wr = np.asarray(params["readout"]["kernel"], np.float64)
    h = np.maximum(np.asarray(x, np.float64) @ w0, 0)
    y = h @ wr
    rms = lambda a: np.sqrt(np.mean(np.square(a)))
    acts = out["activation"]
    assert sorted(np.round([float(v) for v in acts.values()], 5)) == sorted(
        np.round([rms(np.asarray(x) @ w0), rms(y), rms(y)], 5)  # dense_0, readout and the MLP's output
    )
    assert float(out["weight"]["['dense_0']['kernel']"]) == pytest.approx(rms(w0), rel=1e-6)
    # d mean(y^2) / d W_r = 2 h^T y / (batch * out)
    grad_wr = 2 * h.T @ y / y.size
    assert float(out["gradient"]["['readout']['kernel']"]) == pytest.approx(rms(grad_wr), rel=1e-4)


def test_scale_probe_summarises_each_family_and_vmaps():
    params, x, apply, loss = _setup()
    full = tensor_rms(apply, loss, params, x, x)
    probe = scale_probe(apply, loss, x, x)
    two = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    values = jax.jit(jax.vmap(probe))(two, two)
    weights = [float(v) for v in full["weight"].values()]
    assert float(values["rms/weight/max"][0]) == pytest.approx(max(weights), rel=1e-6)
    assert float(values["rms/weight/min"][1]) == pytest.approx(2 * min(weights), rel=1e-6)
    assert set(values) == {
        f"rms/{f}/{s}" for f in ("activation", "weight", "gradient") for s in ("min", "median", "max")
    }

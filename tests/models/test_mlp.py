"""MLP (Linen) and NNXMLP: shapes, a numpy reference, fan axes, Linen == NNX, options and errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from paramlab.models import MLP, NNXMLP, MLPConfig
from paramlab.nn import FanAxes, resolve_fan_axes, split_fan_axes

CFG = MLPConfig(in_dim=3, width=16, out_dim=2, depth=3, activation="tanh")


def _linen_params(cfg, seed=0):
    variables = MLP(cfg).init(jax.random.key(seed), jnp.zeros((1, cfg.in_dim)))
    return split_fan_axes(variables["params"])


def _numpy_mlp(params, x, act, depth):
    h = np.asarray(x, np.float64)
    for i in range(depth):
        layer = params[f"dense_{i}"]
        h = act(h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64))
    out = params["readout"]
    return h @ np.asarray(out["kernel"], np.float64) + np.asarray(out["bias"], np.float64)


def test_param_tree_and_numpy_reference():
    params, fan = _linen_params(CFG)
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes == {
        "dense_0": {"kernel": (3, 16), "bias": (16,)},
        "dense_1": {"kernel": (16, 16), "bias": (16,)},
        "dense_2": {"kernel": (16, 16), "bias": (16,)},
        "readout": {"kernel": (16, 2), "bias": (2,)},
    }
    for name in shapes:
        assert fan[name]["kernel"] == FanAxes((0,), (1,))
        assert fan[name]["bias"] == FanAxes((), (0,))
    resolve_fan_axes(params, fan)
    # Biases start at zero; give them values so the reference checks them.
    params = jax.tree.map(lambda p: p + 0.1, params)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = MLP(CFG).apply({"params": params}, x)
    chex.assert_shape(y, (5, 2))
    np.testing.assert_allclose(y, _numpy_mlp(params, x, np.tanh, 3), rtol=1e-5, atol=1e-5)


def test_kernel_init_is_lecun():
    cfg = MLPConfig(in_dim=64, width=256, out_dim=8, depth=2)
    params, _ = _linen_params(cfg)
    for name, fan_in in (("dense_0", 64), ("dense_1", 256), ("readout", 256)):
        std = float(jnp.std(params[name]["kernel"]))
        assert abs(std * np.sqrt(fan_in) - 1.0) < 0.15, (name, std)


def _nnx_from_linen(cfg, params):
    model = NNXMLP(cfg, rngs=nnx.Rngs(123))
    for name, layer in params.items():
        getattr(model, name).kernel.value = layer["kernel"]
        if cfg.use_bias:
            getattr(model, name).bias.value = layer["bias"]
    return model


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
def test_nnx_equals_linen(activation, use_bias):
    cfg = MLPConfig(in_dim=4, width=8, out_dim=3, depth=2, activation=activation, use_bias=use_bias)
    params, _ = _linen_params(cfg)
    params = jax.tree.map(lambda p: p + 0.05, params)
    model = _nnx_from_linen(cfg, params)
    x = jax.random.normal(jax.random.key(2), (6, 4))
    np.testing.assert_allclose(model(x), MLP(cfg).apply({"params": params}, x), rtol=1e-6, atol=1e-6)
    nnx_shapes = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    assert nnx_shapes == jax.tree.map(jnp.shape, params)


def test_nnx_params_declare_fan_axes():
    model = NNXMLP(CFG, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert len(leaves) == 8
    for var in leaves:
        meta = var.get_metadata()
        expected = ((0,), (1,)) if var.value.ndim == 2 else ((), (0,))
        assert (meta["fan_in"], meta["fan_out"]) == expected


def test_zero_init_readout():
    cfg = MLPConfig(in_dim=3, width=8, out_dim=2, zero_init_readout=True)
    params, _ = _linen_params(cfg)
    assert not np.any(params["readout"]["kernel"])
    assert np.any(params["dense_1"]["kernel"])
    x = jnp.ones((2, 3))
    assert not np.any(MLP(cfg).apply({"params": params}, x))
    assert not np.any(NNXMLP(cfg, rngs=nnx.Rngs(0))(x))


def test_depth_one():
    params, _ = _linen_params(MLPConfig(in_dim=3, width=8, out_dim=2, depth=1))
    assert sorted(params) == ["dense_0", "readout"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(in_dim=0, width=8, out_dim=2), "in_dim"),
        (dict(in_dim=3, width=-1, out_dim=2), "width"),
        (dict(in_dim=3, width=8, out_dim=2, depth=0), "depth"),
        (dict(in_dim=3, width=8, out_dim=2.0), "out_dim"),
        (dict(in_dim=3, width=8, out_dim=2, activation="swish"), "activation"),
    ],
)
def test_config_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MLPConfig(**kwargs)


def test_wrong_input_dim():
    params, _ = _linen_params(CFG)
    with pytest.raises(ValueError, match="in_dim"):
        MLP(CFG).apply({"params": params}, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="in_dim"):
        NNXMLP(CFG, rngs=nnx.Rngs(0))(jnp.ones((2, 4)))

"""u-muP's model side: the activation scale and residual taus against their definitions, the
unit-scaled Transformer at unit scale under Parametrization("umup"), simulated low-precision matmuls."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from paramlab.models import Transformer, TransformerConfig, stack_blocks
from paramlab.models.unit_scaling import residual_taus, simulated_dot_general, unit_activation_scale
from paramlab.nn import linen as linen_adapter
from paramlab.parametrization import Parametrization, make_plan


@pytest.mark.parametrize("name", ["gelu", "relu", "tanh"])
def test_activation_scale_gives_unit_rms_on_a_unit_gaussian(name):
    act = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "tanh": jnp.tanh}[name]
    z = np.random.default_rng(0).normal(size=2_000_000)
    rms = np.sqrt(np.mean(np.asarray(act(jnp.asarray(z, jnp.float32)), np.float64) ** 2))
    assert unit_activation_scale(act) == pytest.approx(1 / rms, rel=2e-3)
    if name == "relu":
        assert unit_activation_scale(act) == pytest.approx(np.sqrt(2), rel=1e-6)  # E[relu(z)^2] = 1/2


@pytest.mark.parametrize("layers,mult,ratio", [(1, 1.0, 1.0), (4, 1.0, 1.0), (6, 2.0, 0.5), (3, 0.5, 3.0)])
def test_residual_taus_share_the_variance_as_u_mup_appendix_g_says(layers, mult, ratio):
    taus = residual_taus(layers, mult, ratio)
    shares = [1.0]  # the embedding's share of a unit-variance stream; each add keeps the total at 1
    for i in range(2 * layers):
        tau = taus[i // 2, i % 2]
        shares = [s / (1 + tau**2) for s in shares] + [tau**2 / (1 + tau**2)]
    embedding, attn, mlp = shares[0], np.array(shares[1::2]), np.array(shares[2::2])
    assert sum(shares) == pytest.approx(1.0)
    np.testing.assert_allclose(attn, attn[0], rtol=1e-9)  # every attention branch alike
    np.testing.assert_allclose(mlp, mlp[0], rtol=1e-9)  # every MLP branch alike
    a_mlp = mult * np.sqrt(2 / (1 + ratio**2))
    assert attn.sum() / embedding == pytest.approx((ratio * a_mlp) ** 2)
    assert mlp.sum() / embedding == pytest.approx(a_mlp**2)


def test_residual_taus_refuse_bad_hyperparameters():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="residual_mult"):
            residual_taus(2, bad, 1.0)
    with pytest.raises(ValueError, match="residual_attn_ratio"):
        TransformerConfig(unit_scaling=True, residual_attn_ratio=0.0)
    with pytest.raises(ValueError, match="branch_multiplier must be 1"):
        TransformerConfig(unit_scaling=True, branch_multiplier=0.5)


def _umup(width, **overrides):
    config = TransformerConfig(
        d_model=width,
        n_heads=width // 16,
        d_head=16,
        d_ff=4 * width,
        n_layers=2,
        max_len=16,
        attention_scale="linear",
        unit_scaling=True,
        **overrides,
    )
    make = lambda w: Transformer(config.with_width(d_model=w, n_heads=w // 16, d_ff=4 * w))
    tokens = jax.ShapeDtypeStruct((1, 16), jnp.int32)
    plan = make_plan(
        make, Parametrization("umup", "adam"), base=64, delta=128, target=width, inputs=(tokens,)
    )
    return plan, make(width)


@pytest.mark.parametrize("width", [64, 256])
def test_u_mup_weights_and_activations_sit_at_unit_scale(width):
    plan, model = _umup(width)
    params = linen_adapter.init(plan, model, jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    for path, w in jax.tree_util.tree_flatten_with_path(params)[0]:
        if w.ndim >= 2:  # every matrix, embedding included, has unit RMS
            assert float(jnp.sqrt(jnp.mean(w**2))) == pytest.approx(1.0, rel=0.05), path
    tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, 256)
    _, state = plan.wrap_apply(model.apply)(
        {"params": params}, tokens, capture_intermediates=True, mutable=["intermediates"]
    )
    inter = state["intermediates"]
    rms = lambda a: float(jnp.sqrt(jnp.mean(jnp.square(a))))
    for i in range(2):  # every matmul of the MLP gives unit-RMS outputs at init
        assert rms(inter[f"block_{i}"]["mlp"]["fc_in"]["__call__"][0]) == pytest.approx(1.0, rel=0.1)
        assert rms(inter[f"block_{i}"]["attn"]["q"]["__call__"][0]) == pytest.approx(1.0, rel=0.1)


def test_scanned_u_mup_blocks_equal_the_unrolled_ones():
    plan, model = _umup(64)
    params = linen_adapter.init(plan, model, jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 256)
    scanned = Transformer(dataclasses.replace(model.config, scan_layers=True))
    np.testing.assert_allclose(
        plan.wrap_apply(model.apply)({"params": params}, tokens),
        scanned.apply({"params": stack_blocks(plan.effective_params(params), 2)}, tokens),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "bfloat16"])
def test_simulated_matmul_rounds_both_inputs_and_passes_the_float_gradient(fmt):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 8)).astype(np.float32), (3 * rng.normal(size=(8, 5))).astype(np.float32)
    x[0, 0] = 1e4  # beyond float8_e4m3fn's 448: saturates
    dot = simulated_dot_general(fmt)
    dims = (((1,), (0,)), ((), ()))
    top = float(ml_dtypes.finfo(getattr(ml_dtypes, fmt)).max)
    cast = lambda a: np.clip(a, -top, top).astype(getattr(ml_dtypes, fmt)).astype(np.float64)
    np.testing.assert_allclose(dot(x, w, dims), cast(x) @ cast(w), rtol=1e-5)
    grad = jax.grad(lambda x: jnp.sum(dot(x, w, dims) ** 2))(x)
    want = 2 * (cast(x) @ cast(w)) @ cast(w).T  # straight through the cast of x; the matmul saw cast(w)
    np.testing.assert_allclose(grad, want, rtol=1e-4)


def test_matmul_format_changes_the_transformer_only_by_rounding():
    plan, model = _umup(64)
    params = plan.effective_params(
        linen_adapter.init(plan, model, jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    )
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 256)
    exact = model.apply({"params": params}, tokens)
    fp8 = Transformer(dataclasses.replace(model.config, matmul_format="float8_e4m3fn")).apply(
        {"params": params}, tokens
    )
    err = float(jnp.sqrt(jnp.mean((fp8 - exact) ** 2)) / jnp.sqrt(jnp.mean(exact**2)))
    assert 1e-3 < err < 0.2  # rounded (3 mantissa bits), not broken
    with pytest.raises(ValueError, match="matmul_format"):
        TransformerConfig(matmul_format="float4")

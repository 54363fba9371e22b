"""NNX adapter: fan axes from Param metadata, the base-width identity, and the same training as the
Linen MLP from the same weights (one engine under both)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from paramlab.models import MLP, NNXMLP, MLPConfig
from paramlab.nn import FanAxes
from paramlab.nn import nnx as nnx_adapter
from paramlab.parametrization import PARAMETRIZATIONS, Parametrization, make_plan

X = jax.random.normal(jax.random.key(1), (8, 6))
Y = jax.random.normal(jax.random.key(2), (8, 3))


def make_nnx(width, seed=0):
    return NNXMLP(MLPConfig(in_dim=6, width=width, out_dim=3), rngs=nnx.Rngs(seed))


def _mse(model):
    return jnp.mean((model(X) - Y) ** 2)


def test_param_shapes_reads_metadata():
    class Custom(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(jnp.zeros((4, 2, 8)), fan_in=(0,), fan_out=(1, 2))
            self.b = nnx.Param(jnp.zeros((8,)))

    shapes, fan = nnx_adapter.param_shapes(lambda: Custom(nnx.Rngs(0)))
    assert shapes["w"].shape == (4, 2, 8) and fan == {"w": FanAxes((0,), (1, 2)), "b": None}

    class Half(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.zeros((4, 4)), fan_in=(0,))

    with pytest.raises(ValueError, match="both fan_in and fan_out"):
        nnx_adapter.param_shapes(Half)


@pytest.mark.parametrize("name", PARAMETRIZATIONS)
def test_base_width_is_exactly_the_base_model(name):
    plan = make_plan(
        make_nnx, Parametrization(name, "adam", eps_mode="per_layer"), base=16, delta=32, target=16
    )
    model, reference = make_nnx(16), make_nnx(16)
    nnx_adapter.rescale_init(plan, model)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.Param), nnx.state(reference, nnx.Param))
    np.testing.assert_array_equal(nnx_adapter.effective_model(plan, model)(X), reference(X))
    grads = nnx.grad(lambda m: _mse(nnx_adapter.effective_model(plan, m)))(model)
    ref_grads = nnx.grad(_mse)(reference)
    jax.tree.map(np.testing.assert_array_equal, grads, ref_grads)
    params = nnx.state(model, nnx.Param)
    opt, ref_opt = plan.optimizer("adam", 0.05), optax.adam(0.05)
    updates, _ = opt.update(grads, opt.init(params), params)
    ref_updates, _ = ref_opt.update(ref_grads, ref_opt.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, updates, ref_updates)


def test_nnx_and_linen_train_alike_at_a_larger_width():
    parametrization = Parametrization("mup", "adam")
    n0, n = 16, 64
    nnx_plan = make_plan(make_nnx, parametrization, base=n0, delta=2 * n0, target=n)
    make_linen = lambda w: MLP(MLPConfig(in_dim=6, width=w, out_dim=3))
    linen_plan = make_plan(make_linen, parametrization, base=n0, delta=2 * n0, target=n, inputs=(X,))
    assert nnx_plan == linen_plan

    model = make_nnx(n)
    nnx_adapter.rescale_init(nnx_plan, model)
    params = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param).to_pure_dict())
    graphdef, state = nnx.split(model, nnx.Param)
    linen_apply = linen_plan.wrap_apply(make_linen(n).apply)
    tx = nnx_plan.optimizer("adam", 1e-2)

    # NNX: functional loop on the nnx.State; Linen: the same optimizer on the plain dict.
    def nnx_loss(state):
        return _mse(nnx_adapter.merge(nnx_plan, graphdef, state))

    def linen_loss(params):
        return jnp.mean((linen_apply({"params": params}, X) - Y) ** 2)

    opt_state, linen_state = tx.init(state), tx.init(params)
    for _ in range(3):
        loss_a, grads = jax.value_and_grad(nnx_loss)(state)
        updates, opt_state = tx.update(grads, opt_state, state)
        state = optax.apply_updates(state, updates)
        loss_b, grads = jax.value_and_grad(linen_loss)(params)
        updates, linen_state = tx.update(grads, linen_state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)


def test_nnx_optimizer_with_effective_model():
    plan = make_plan(make_nnx, Parametrization("mup_table8", "sgd"), base=16, delta=32, target=32)
    model = make_nnx(32)
    nnx_adapter.rescale_init(plan, model)
    optimizer = nnx.Optimizer(model, plan.optimizer("sgd", 0.05, momentum=0.9), wrt=nnx.Param)
    loss = lambda m: _mse(nnx_adapter.effective_model(plan, m))
    first = float(loss(model))
    for _ in range(5):
        grads = nnx.grad(loss)(model)
        optimizer.update(model, grads)
    assert float(loss(model)) < first
    roles = plan.roles(nnx.state(model, nnx.Param))
    assert roles["readout"]["kernel"].get_value() == "readout"


def test_the_linen_transformer_through_nnx_bridge_keeps_its_fan_axes_and_trains_as_linen():
    """``nnx.bridge.ToNNX`` carries each FanAxesBox over as ``fan_axes`` metadata: the bridged module's
    plan is the Linen module's, and one plan step from the same weights gives the same loss."""
    from flax.nnx import bridge

    from paramlab.models import Transformer, TransformerConfig, cross_entropy

    tokens = jax.random.randint(jax.random.key(3), (2, 8), 0, 64)
    config = lambda w: TransformerConfig(
        vocab_size=64, d_model=w, n_layers=1, n_heads=w // 16, d_head=16, d_ff=2 * w, max_len=8
    )
    bridged = lambda w: bridge.lazy_init(bridge.ToNNX(Transformer(config(w)), rngs=nnx.Rngs(0)), tokens)
    recipe = Parametrization("mfp", "adam")  # multipliers on every role: the forward paths must agree
    nnx_plan = make_plan(bridged, recipe, base=32, delta=64, target=64)
    linen_plan = make_plan(
        lambda w: Transformer(config(w)), recipe, base=32, delta=64, target=64, inputs=(tokens,)
    )
    assert nnx_plan.specs == linen_plan.specs and nnx_plan.scales == linen_plan.scales
    assert nnx_plan.specs["block_0/attn/q/kernel"].fan_axes == FanAxes((0,), (1, 2))

    module = bridged(64)
    nnx_adapter.rescale_init(nnx_plan, module)
    params = nnx.state(module, nnx.Param)
    linen_params = nnx.to_pure_dict(params)
    linen_apply = linen_plan.wrap_apply(Transformer(config(64)).apply)

    def loss(logits):
        return cross_entropy(logits[:, :-1], tokens[:, 1:])[0]

    nnx_loss = lambda m: loss(nnx_adapter.effective_model(nnx_plan, m)(tokens))
    linen_loss = lambda p: loss(linen_apply({"params": p}, tokens))

    opt = nnx_plan.optimizer(learning_rate=1e-2)
    grads = nnx.grad(nnx_loss, argnums=nnx.DiffState(0, nnx.Param))(module)
    updates, _ = opt.update(grads, opt.init(params), params)
    before = float(nnx_loss(module))
    nnx.update(module, optax.apply_updates(params, updates))
    nnx_losses = (before, float(nnx_loss(module)))

    opt = linen_plan.optimizer(learning_rate=1e-2)
    updates, _ = opt.update(jax.grad(linen_loss)(linen_params), opt.init(linen_params), linen_params)
    linen_losses = (
        float(linen_loss(linen_params)),
        float(linen_loss(optax.apply_updates(linen_params, updates))),
    )
    np.testing.assert_allclose(nnx_losses, linen_losses, rtol=1e-5)
    assert nnx_losses[1] < nnx_losses[0]

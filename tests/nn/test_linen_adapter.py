"""Linen adapter: at the base width every parametrization is exactly the base model; init statistics
follow docs/reference.md section 1 at other widths; a Transformer plan drives a jitted train step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.linen import meta

from paramlab.models import MLP, MLPConfig, Transformer, TransformerConfig
from paramlab.nn import linen as linen_adapter
from paramlab.optim.adafactor import adafactor
from paramlab.parametrization import PARAMETRIZATIONS, Parametrization, abc, make_plan

X = jax.random.normal(jax.random.key(1), (8, 6))
Y = jax.random.normal(jax.random.key(2), (8, 3))
make_mlp = lambda width: MLP(MLPConfig(in_dim=6, width=width, out_dim=3))

BASES = {
    "sgd": ("sgd", dict(momentum=0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    "adam": ("adam", {}, lambda: optax.adam(0.05)),
    "adafactor": ("adafactor", {}, lambda: adafactor(0.05)),
}


def _loss(apply_fn):
    return lambda params: jnp.mean((apply_fn({"params": params}, X) - Y) ** 2)


@pytest.mark.parametrize("family", sorted(BASES))
@pytest.mark.parametrize("name", PARAMETRIZATIONS)
def test_base_width_is_exactly_the_base_model(name, family):
    parametrization = Parametrization(name, family, eps_mode="per_layer", weight_decay_mode="independent")
    plan = make_plan(make_mlp, parametrization, base=16, delta=32, target=16, inputs=(X,))
    model = make_mlp(16)
    reference = meta.unbox(model.init(jax.random.key(0), X))
    variables = plan.rescale_init(reference)
    jax.tree.map(np.testing.assert_array_equal, variables, reference)  # init
    out = plan.wrap_apply(model.apply)(variables, X)
    np.testing.assert_array_equal(out, model.apply(reference, X))  # forward
    base, kwargs, plain = BASES[family]
    opt, ref_opt = plan.optimizer(base, 0.05, **kwargs), plain()
    grads = jax.grad(_loss(plan.wrap_apply(model.apply)))(variables["params"])
    ref_grads = jax.grad(_loss(model.apply))(reference["params"])
    jax.tree.map(np.testing.assert_array_equal, grads, ref_grads)
    updates, _ = opt.update(grads, opt.init(variables["params"]), variables["params"])
    ref_updates, _ = ref_opt.update(ref_grads, ref_opt.init(reference["params"]), reference["params"])
    jax.tree.map(np.testing.assert_array_equal, updates, ref_updates)  # first update


def test_adapter_init_is_the_rescaled_model_init():
    rng = jax.random.key(0)
    for target in (16, 64):
        plan = make_plan(
            make_mlp, Parametrization("mup", "adam"), base=16, delta=32, target=target, inputs=(X,)
        )
        model = make_mlp(target)
        variables = linen_adapter.init(plan, model, rng, X)
        expected = plan.rescale_init(meta.unbox(jax.jit(model.init)(rng, X)))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), variables, expected)
        boxed = linen_adapter.init(plan, model, rng, X, unbox=False)
        assert type(boxed["params"]["dense_0"]["kernel"]).__name__ == "FanAxesBox"


@pytest.mark.parametrize("name", ["sp", "mup", "mup_table8", "ntk"])
def test_init_std_follows_the_parametrization(name):
    # docs/reference.md section 1: init_std_l = sigma_l * (n / n0)^(-b_l), sigma_l the base width's std.
    n0, n = 32, 512
    plan = make_plan(make_mlp, Parametrization(name, "adam"), base=n0, delta=2 * n0, target=n, inputs=(X,))
    params = plan.rescale_init(meta.unbox(make_mlp(n).init(jax.random.key(0), X)["params"]))
    b = {role: ab[1] for role, ab in abc(name).items()}
    base_std = {"dense_0": 6**-0.5, "dense_1": n0**-0.5, "readout": n0**-0.5}  # lecun at the base width
    roles = {"dense_0": "embedding", "dense_1": "hidden", "readout": "readout"}
    for layer, role in roles.items():
        want = base_std[layer] * (n / n0) ** -b[role]
        got = float(jnp.std(params[layer]["kernel"]))
        assert got == pytest.approx(want, rel=0.05), (layer, got, want)


def test_transformer_plan_in_a_jitted_step():
    cfg = TransformerConfig(vocab_size=32, d_model=16, n_heads=2, d_head=8, d_ff=32, n_layers=1)
    parametrization = Parametrization("mup", "adam", zero_init_readout=True, zero_init_query=True)

    def make(w):
        return Transformer(
            dataclasses.replace(
                cfg,
                d_model=w,
                d_ff=2 * w,
                n_heads=w // 8,
                attention_scale=parametrization.resolved_attention_scale,
                attention_base_d_head=8,  # the linear scale equals 1/sqrt(d_head) at d_head = 8
                zero_init_query=parametrization.zero_init_query,
            )
        )

    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 32)
    plan = make_plan(make, parametrization, base=16, delta=32, target=64, inputs=(tokens,))
    model = make(64)
    variables = linen_adapter.init(plan, model, jax.random.key(0), tokens)
    assert float(jnp.abs(variables["params"]["readout"]["kernel"]).max()) == 0.0
    apply = plan.wrap_apply(model.apply)

    def loss(params):
        logits = apply({"params": params}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()

    opt = plan.optimizer("adam", 1e-2)
    params, state = variables["params"], opt.init(variables["params"])

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(3):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert losses[0] == pytest.approx(np.log(32), rel=1e-3)  # zero readout: uniform logits
    assert losses[-1] < losses[0]


def test_tied_embeddings_keep_the_embedding_rule():
    cfg = TransformerConfig(
        vocab_size=32, d_model=16, n_heads=2, d_head=8, d_ff=32, n_layers=1, tied_embeddings=True
    )
    make = lambda w: Transformer(dataclasses.replace(cfg, d_model=w, d_ff=2 * w))
    tokens = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    for name, expected in [("mup", 0.25), ("mup_table8", 0.25), ("sp", 0.5)]:
        plan = make_plan(make, Parametrization(name, "adam"), base=16, delta=32, target=64, inputs=(tokens,))
        assert "readout/kernel" not in plan.specs and plan.specs["embed/embedding"].role == "embedding"
        assert plan.tied_readout_multiplier("embed/embedding") == pytest.approx(expected)
        base_plan = make_plan(
            make, Parametrization(name, "adam"), base=16, delta=32, target=16, inputs=(tokens,)
        )
        assert base_plan.tied_readout_multiplier("embed/embedding") == 1.0

"""Depth options of the models: scanned == unrolled, remat == plain, the branch multiplier as an exact
rescaling of the branch outputs, the residual MLP against numpy, and the NNX Transformer equal to the
Linen one (paths, shapes, fan axes, function, plan)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from paramlab.models import (
    NNXTransformer,
    ResidualMLP,
    ResidualMLPConfig,
    Transformer,
    TransformerConfig,
    cross_entropy,
    stack_blocks,
)
from paramlab.nn import nnx as nnx_adapter
from paramlab.nn import split_fan_axes
from paramlab.optim.common import flatten_with_paths
from paramlab.parametrization import Parametrization, make_plan

CFG = TransformerConfig(vocab_size=31, d_model=16, n_layers=3, n_heads=2, d_head=8, d_ff=32, max_len=12)
TOKENS = jax.random.randint(jax.random.key(7), (2, 10), 0, 31)


def _params(cfg: TransformerConfig, seed: int = 0) -> dict:
    return split_fan_axes(Transformer(cfg).init(jax.random.key(seed), TOKENS)["params"])[0]


def _loss(cfg: TransformerConfig, params: dict) -> jax.Array:
    logits = Transformer(cfg).apply({"params": params}, TOKENS[:, :-1])
    return cross_entropy(logits, TOKENS[:, 1:])[0]


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_blocks_compute_the_unrolled_loss_and_gradients(remat):
    params = _params(CFG)
    scanned = dataclasses.replace(CFG, scan_layers=True, remat=remat)
    loss, grads = jax.value_and_grad(lambda p: _loss(CFG, p))(params)
    loss_s, grads_s = jax.value_and_grad(lambda p: _loss(scanned, p))(stack_blocks(params, CFG.n_layers))
    np.testing.assert_allclose(loss_s, loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(stack_blocks(grads, CFG.n_layers)), jax.tree.leaves(grads_s)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_scanned_init_stacks_one_block_per_layer_with_a_stacked_axis():
    variables = Transformer(dataclasses.replace(CFG, scan_layers=True)).init(jax.random.key(0), TOKENS)
    params, fan = split_fan_axes(variables["params"])
    assert "block_0" not in params
    assert params["blocks"]["attn"]["q"]["kernel"].shape == (3, 16, 2, 8)
    assert fan["blocks"]["attn"]["q"]["kernel"].stacked == (0,)
    assert fan["blocks"]["attn"]["q"]["kernel"].fan_in == (1,)
    kernels = params["blocks"]["mlp"]["fc_in"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # each layer its own init


@pytest.mark.parametrize("policy", ["nothing_saveable", "dots_saveable"])
def test_remat_keeps_loss_and_gradients(policy):
    params = _params(CFG)
    remat = dataclasses.replace(CFG, remat=True, remat_policy=policy)
    g = jax.grad(lambda p: _loss(CFG, p))(params)
    g_r = jax.grad(lambda p: _loss(remat, p))(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_r)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_branch_multiplier_scales_each_branch_output():
    """Without biases a branch is linear in its output kernel (``o``, ``fc_out``): multiplying the
    branch by m equals multiplying those kernels by m."""
    m = 0.37
    params = _params(CFG)
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, x: x * m if any(getattr(k, "key", None) in ("o", "fc_out") for k in path) else x, params
    )
    with_m = Transformer(dataclasses.replace(CFG, branch_multiplier=m)).apply({"params": params}, TOKENS)
    np.testing.assert_allclose(
        with_m, Transformer(CFG).apply({"params": scaled}, TOKENS), rtol=1e-5, atol=1e-6
    )


def test_residual_mlp_matches_numpy():
    cfg = ResidualMLPConfig(in_dim=5, width=12, out_dim=3, depth=4, activation="tanh", branch_multiplier=0.5)
    x = np.asarray(jax.random.normal(jax.random.key(1), (7, 5)))
    params = split_fan_axes(ResidualMLP(cfg).init(jax.random.key(0), x)["params"])[0]
    w = jax.tree.map(np.asarray, params)
    h = x @ w["embed"]["kernel"]
    for i in range(4):
        block = w[f"block_{i}"]
        h = h + 0.5 * (np.tanh(h @ block["fc_in"]["kernel"]) @ block["fc_out"]["kernel"])
    np.testing.assert_allclose(
        ResidualMLP(cfg).apply({"params": params}, x), h @ w["readout"]["kernel"], rtol=1e-5
    )


def test_residual_mlp_plan_finds_its_blocks():
    make = lambda wd: ResidualMLP(ResidualMLPConfig(in_dim=4, width=wd[0], out_dim=2, depth=wd[1]))
    x = jax.ShapeDtypeStruct((3, 4), jnp.float32)
    plan = make_plan(
        make,
        Parametrization("mup", "adam", depth_rule="depth_mup"),
        base=(8, 2),
        delta=(16, 4),
        target=(32, 8),
        inputs=(x,),
    )
    assert plan.specs["block_7/fc_in/kernel"].role == "hidden"
    assert plan.specs["embed/kernel"].block is None
    assert plan.branch_multiplier() == pytest.approx(0.5)


NNX_CONFIGS = [
    CFG,
    dataclasses.replace(
        CFG,
        norm="layer",
        use_bias=True,
        qk_layernorm=True,
        positions="learned",
        tied_embeddings=True,
        logits_multiplier=0.5,
        branch_multiplier=0.3,
    ),
]


def _nnx_params_as_linen(model: NNXTransformer) -> dict:
    params: dict = {}
    for keys, variable in nnx.state(model, nnx.Param).flat_state():
        node = params
        for key in keys[:-1]:
            node = node.setdefault(str(key), {})
        node[str(keys[-1])] = variable.get_value()
    return params


@pytest.mark.parametrize("cfg", NNX_CONFIGS, ids=["default", "options"])
def test_nnx_transformer_equals_the_linen_one(cfg):
    shapes, fan = nnx_adapter.param_shapes(lambda: NNXTransformer(cfg, rngs=nnx.Rngs(0)))
    linen_shapes, linen_fan = split_fan_axes(
        jax.eval_shape(Transformer(cfg).init, jax.random.key(0), TOKENS)["params"]
    )
    linen_shapes = dict(flatten_with_paths(linen_shapes))
    linen_fan = dict(flatten_with_paths(linen_fan, is_leaf=lambda x: x is None))
    assert sorted(shapes) == sorted(linen_shapes)
    for path in shapes:
        assert shapes[path].shape == linen_shapes[path].shape, path
        assert fan[path] == linen_fan[path], path
    model = NNXTransformer(cfg, rngs=nnx.Rngs(0))
    expected = Transformer(cfg).apply({"params": _nnx_params_as_linen(model)}, TOKENS)
    np.testing.assert_allclose(model(TOKENS), expected, rtol=1e-6, atol=1e-6)


def test_nnx_transformer_plan_equals_the_linen_plan():
    p = Parametrization("mup", "adam", depth_rule="completep", eps_mode="per_layer")
    sizes = lambda wd: dataclasses.replace(CFG, d_model=wd[0], d_ff=2 * wd[0], n_layers=wd[1])
    kw = dict(base=(16, 2), delta=(32, 4), target=(64, 6))
    linen = make_plan(lambda wd: Transformer(sizes(wd)), p, inputs=(TOKENS,), **kw)
    nnx_plan = make_plan(lambda wd: NNXTransformer(sizes(wd), rngs=nnx.Rngs(0)), p, **kw)
    assert nnx_plan.scales == linen.scales
    assert nnx_plan.branch_multiplier() == linen.branch_multiplier() == pytest.approx(1 / 3)


def test_nnx_transformer_trains_under_a_depth_plan_as_the_linen_one():
    """Same initial weights (NNX's, rescaled by the plan): three plan-optimizer steps through the NNX
    adapter (forward multipliers in ``merge``) and through Linen's ``wrap_apply`` give the same losses."""
    p = Parametrization("mup", "adam", depth_rule="completep")
    sizes = lambda wd, m=1.0: dataclasses.replace(
        CFG, d_model=wd[0], d_ff=2 * wd[0], n_layers=wd[1], branch_multiplier=m
    )
    plan = make_plan(lambda wd: NNXTransformer(sizes(wd), rngs=nnx.Rngs(0)), p, base=(16, 2), delta=(32, 4),
                     target=(32, 6))  # fmt: skip
    cfg = sizes((32, 6), plan.branch_multiplier())
    model = NNXTransformer(cfg, rngs=nnx.Rngs(3))
    nnx_adapter.rescale_init(plan, model)
    graphdef, params = nnx.split(model, nnx.Param)
    linen_apply = plan.wrap_apply(Transformer(cfg).apply)
    losses = {
        "nnx": lambda q: cross_entropy(nnx_adapter.merge(plan, graphdef, q)(TOKENS[:, :-1]), TOKENS[:, 1:])[
            0
        ],
        "linen": lambda q: cross_entropy(linen_apply({"params": q}, TOKENS[:, :-1]), TOKENS[:, 1:])[0],
    }
    curves = {}
    for name, start in (("nnx", params), ("linen", _nnx_params_as_linen(model))):
        tx, q, curve = plan.optimizer(learning_rate=1e-2), start, []
        state, step = tx.init(q), jax.jit(jax.value_and_grad(losses[name]))
        for _ in range(3):
            loss, grads = step(q)
            updates, state = tx.update(grads, state, q)
            q, curve = optax.apply_updates(q, updates), [*curve, float(loss)]
        curves[name] = curve
    np.testing.assert_allclose(curves["nnx"], curves["linen"], rtol=1e-5)
    assert curves["nnx"][-1] < curves["nnx"][0]


def test_scanned_and_unrolled_plans_agree():
    p = Parametrization("mup", "adamw", depth_rule="completep", depth_alpha=0.5)
    sizes = lambda wd, scan: dataclasses.replace(
        CFG, d_model=wd[0], d_ff=2 * wd[0], n_layers=wd[1], scan_layers=scan
    )
    kw = dict(base=(16, 2), delta=(32, 4), target=(64, 8), inputs=(TOKENS,))
    unrolled = make_plan(lambda wd: Transformer(sizes(wd, False)), p, **kw)
    scanned = make_plan(lambda wd: Transformer(sizes(wd, True)), p, **kw)
    for path, scales in scanned.scales.items():
        twin = path.replace("blocks/", "block_5/", 1)
        assert scales == unrolled.scales[twin], path
    assert scanned.branch_multiplier() == unrolled.branch_multiplier() == pytest.approx(0.5)
    # the plan's per-leaf trees fit the stacked parameters and drive an optimizer step
    params = _params(sizes((64, 8), True))
    tx = scanned.optimizer(learning_rate=1e-3)
    updates, _ = tx.update(params, tx.init(params), params)
    assert jax.tree.structure(optax.apply_updates(params, updates)) == jax.tree.structure(params)


def test_nnx_transformer_refuses_linen_only_options():
    with pytest.raises(ValueError, match="scan_layers"):
        NNXTransformer(dataclasses.replace(CFG, scan_layers=True), rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    ("field", "value"), [("branch_multiplier", 0.0), ("remat_policy", "everything"), ("scan_layers", 1)]
)
def test_bad_depth_options_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CFG, **{field: value})

"""Transformer: param tree and fan axes, shapes, causality, rotary, attention (numpy reference),
tied readout, zero-init options, bf16 compute, memorisation, config errors."""

import dataclasses
import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.models.layers import apply_rotary
from paramlab.nn import FanAxes, resolve_fan_axes, split_fan_axes

TINY = TransformerConfig(vocab_size=23, d_model=16, n_layers=1, n_heads=2, d_head=8, d_ff=32, max_len=12)


def _init(cfg, seq=8, seed=0):
    variables = jax.jit(Transformer(cfg).init)(jax.random.key(seed), jnp.zeros((2, seq), jnp.int32))
    return split_fan_axes(variables["params"])


@functools.cache
def _jitted_apply(cfg, capture):
    if capture:
        return jax.jit(
            lambda p, t: Transformer(cfg).apply(
                {"params": p}, t, capture_intermediates=True, mutable=["intermediates"]
            )
        )
    return jax.jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))


def _apply(cfg, params, tokens, capture=False):
    """Jitted apply; with ``capture``, also every submodule's output (``capture_intermediates``)."""
    if capture:
        logits, state = _jitted_apply(cfg, True)(params, tokens)
        return logits, state["intermediates"]
    return _jitted_apply(cfg, False)(params, tokens)


def _tokens(cfg, shape, seed=1):
    return jax.random.randint(jax.random.key(seed), shape, 0, cfg.vocab_size)


def _flat(tree):
    return {
        "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    }


def _expected_shapes(cfg):
    d, h, dh, f, v = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.vocab_size
    shapes = {"embed/embedding": (v, d)}
    if cfg.positions == "learned":
        shapes["pos_embed/embedding"] = (cfg.max_len, d)

    def norm(prefix, dim):
        shapes[f"{prefix}/scale"] = (dim,)
        if cfg.norm == "layer" and cfg.use_bias:
            shapes[f"{prefix}/bias"] = (dim,)

    def dense(prefix, kernel, bias):
        shapes[f"{prefix}/kernel"] = kernel
        if cfg.use_bias:
            shapes[f"{prefix}/bias"] = bias

    for i in range(cfg.n_layers):
        b = f"block_{i}"
        norm(f"{b}/attn_norm", d)
        norm(f"{b}/mlp_norm", d)
        for name in "qkv":
            dense(f"{b}/attn/{name}", (d, h, dh), (h, dh))
        if cfg.qk_layernorm:
            norm(f"{b}/attn/q_norm", dh)
            norm(f"{b}/attn/k_norm", dh)
        dense(f"{b}/attn/o", (h, dh, d), (d,))
        dense(f"{b}/mlp/fc_in", (d, f), (f,))
        dense(f"{b}/mlp/fc_out", (f, d), (d,))
    norm("final_norm", d)
    if not cfg.tied_embeddings:
        dense("readout", (d, v), (v,))
    return shapes


VARIANTS = [
    dict(),
    dict(norm="layer", use_bias=True, qk_layernorm=True),
    dict(positions="learned", tied_embeddings=True),
    dict(norm="layer", use_bias=False, positions="learned", qk_layernorm=True, tied_embeddings=True),
    dict(use_bias=True, d_model=12, n_heads=3, d_head=6),  # d_model != n_heads * d_head
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_param_tree_fan_axes_and_shapes(overrides):
    cfg = dataclasses.replace(TINY, **overrides)
    params, fan = _init(cfg)
    shapes = {k: tuple(v.shape) for k, v in _flat(params).items()}
    assert shapes == _expected_shapes(cfg)
    resolved = _flat(resolve_fan_axes(params, fan))
    declared = _flat(fan)
    expected_fans = {
        "attn/q/kernel": FanAxes((0,), (1, 2)),
        "attn/k/kernel": FanAxes((0,), (1, 2)),
        "attn/v/kernel": FanAxes((0,), (1, 2)),
        "attn/q/bias": FanAxes((), (0, 1)),
        "attn/o/kernel": FanAxes((0, 1), (2,)),
        "fc_in/kernel": FanAxes((0,), (1,)),
        "embedding": FanAxes((0,), (1,)),
        "readout/kernel": FanAxes((0,), (1,)),
    }
    for path, shape in shapes.items():
        if len(shape) >= 3 or path.endswith(("kernel", "embedding")):
            assert declared[path] is not None, path  # declared explicitly, not by the default rule
        for suffix, fan_axes in expected_fans.items():
            if path.endswith(suffix):
                assert resolved[path] == fan_axes, path
    # The spec can be read from shapes alone (no arrays), as the parametrization engine does.
    abstract = jax.eval_shape(Transformer(cfg).init, jax.random.key(0), jnp.zeros((2, 8), jnp.int32))
    abstract_params, abstract_fan = split_fan_axes(abstract["params"])
    assert resolve_fan_axes(abstract_params, abstract_fan) == resolve_fan_axes(params, fan)
    logits = _apply(cfg, params, _tokens(cfg, (3, 7)))
    chex.assert_shape(logits, (3, 7, cfg.vocab_size))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)


def test_initializer_scales():
    cfg = dataclasses.replace(TINY, d_model=64, n_heads=4, d_head=16, d_ff=128, vocab_size=200)
    p = _init(cfg)[0]
    np.testing.assert_allclose(np.std(p["embed"]["embedding"]), 1.0, rtol=0.05)  # width-independent
    for kernel, fan_in in (
        (p["block_0"]["attn"]["q"]["kernel"], 64),
        (p["block_0"]["attn"]["o"]["kernel"], 64),
        (p["block_0"]["mlp"]["fc_in"]["kernel"], 64),
        (p["block_0"]["mlp"]["fc_out"]["kernel"], 128),
        (p["readout"]["kernel"], 64),
    ):
        np.testing.assert_allclose(np.std(kernel) * np.sqrt(fan_in), 1.0, rtol=0.15)


@pytest.mark.parametrize("overrides", [dict(), dict(positions="learned", qk_layernorm=True, norm="layer")])
def test_causality(overrides):
    cfg = dataclasses.replace(TINY, n_layers=2, **overrides)
    params, _ = _init(cfg)
    tokens = _tokens(cfg, (2, 10))
    changed = tokens.at[:, 6:].set((tokens[:, 6:] + 5) % cfg.vocab_size)
    a, b = _apply(cfg, params, tokens), _apply(cfg, params, changed)
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert np.all(np.abs(a[:, 6:] - b[:, 6:]).max(axis=-1) > 1e-4)


def test_rotary_matches_numpy_rotation_and_is_relative():
    d, theta = 8, 10_000.0
    x = np.asarray(jax.random.normal(jax.random.key(0), (5, 1, d)))
    positions = np.array([0, 1, 3, 7, 20])
    out = np.asarray(apply_rotary(jnp.asarray(x), jnp.asarray(positions), theta))
    for t, m in enumerate(positions):
        for i in range(d // 2):
            angle = m * theta ** (-2 * i / d)
            c, s = np.cos(angle), np.sin(angle)
            a, b = x[t, 0, i], x[t, 0, i + d // 2]
            np.testing.assert_allclose(out[t, 0, [i, i + d // 2]], [c * a - s * b, s * a + c * b], atol=1e-5)
    q, k = jax.random.normal(jax.random.key(1), (2, 1, 1, d))

    def score(m, n):
        rq = apply_rotary(q, jnp.array([m]), theta)
        rk = apply_rotary(k, jnp.array([n]), theta)
        return float(jnp.sum(rq * rk))

    for m, n, shift in ((3, 1, 5), (0, 4, 11), (9, 9, 2)):
        np.testing.assert_allclose(score(m, n), score(m + shift, n + shift), rtol=1e-4, atol=1e-5)
    assert abs(score(3, 1) - score(3, 2)) > 1e-4
    with pytest.raises(ValueError, match="even"):
        apply_rotary(jnp.ones((2, 1, 5)), jnp.arange(2))


def _numpy_attention(x, p, scale, n_heads, d_head):
    x = np.asarray(x, np.float64)
    q, k, v = (np.einsum("btd,dhe->bthe", x, np.asarray(p[n]["kernel"], np.float64)) for n in "qkv")
    logits = np.einsum("bthe,bshe->bhts", q, k) * scale
    t = x.shape[1]
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out = np.einsum("bhts,bshe->bthe", w, v)
    return np.einsum("bthe,hed->btd", out, np.asarray(p["o"]["kernel"], np.float64))


@pytest.mark.parametrize("scale_kind", ["sqrt", "linear"])
def test_attention_matches_numpy_reference(scale_kind):
    cfg = dataclasses.replace(TINY, positions="learned", attention_scale=scale_kind, d_head=6, d_model=10)
    params, _ = _init(cfg)
    _, inter = _apply(cfg, params, _tokens(cfg, (2, 7)), capture=True)
    inter = inter["block_0"]
    attn_in = inter["attn_norm"]["__call__"][0]
    attn_out = inter["attn"]["__call__"][0]
    scale = 1 / np.sqrt(6) if scale_kind == "sqrt" else 1 / 6
    expected = _numpy_attention(attn_in, params["block_0"]["attn"], scale, cfg.n_heads, cfg.d_head)
    np.testing.assert_allclose(attn_out, expected, rtol=1e-4, atol=1e-5)


def test_linear_scale_with_base_multiplier_equals_sqrt_at_base():
    base = dataclasses.replace(TINY, attention_scale="sqrt")
    linear = dataclasses.replace(TINY, attention_scale="linear", attention_base_d_head=TINY.d_head)
    assert linear.attention_logit_scale == pytest.approx(base.attention_logit_scale)
    wider = dataclasses.replace(linear, d_head=2 * TINY.d_head)
    assert wider.attention_logit_scale == pytest.approx(np.sqrt(TINY.d_head) / (2 * TINY.d_head))
    plain_linear = dataclasses.replace(TINY, attention_scale="linear")
    assert plain_linear.attention_logit_scale == pytest.approx(1 / TINY.d_head)
    params, _ = _init(base)
    tokens = _tokens(base, (2, 8))
    run = lambda cfg: _apply(cfg, params, tokens)
    np.testing.assert_allclose(run(base), run(linear), rtol=1e-5, atol=1e-5)
    assert np.abs(run(base) - run(plain_linear)).max() > 1e-4


def test_tied_readout_is_embedding_transpose():
    cfg = dataclasses.replace(TINY, tied_embeddings=True, logits_multiplier=0.25)
    params, _ = _init(cfg)
    assert "readout" not in params
    logits, inter = _apply(cfg, params, _tokens(cfg, (2, 5)), capture=True)
    h = np.asarray(inter["final_norm"]["__call__"][0], np.float64)
    expected = 0.25 * h @ np.asarray(params["embed"]["embedding"], np.float64).T
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    untied_params, _ = _init(TINY)
    assert untied_params["readout"]["kernel"].shape == (TINY.d_model, TINY.vocab_size)


def test_zero_init_readout_gives_uniform_predictions():
    cfg = dataclasses.replace(TINY, zero_init_readout=True)
    params, _ = _init(cfg)
    assert not np.any(params["readout"]["kernel"])
    tokens = _tokens(cfg, (2, 6))
    loss, _ = cross_entropy(_apply(cfg, params, tokens), tokens)
    np.testing.assert_allclose(loss, np.log(cfg.vocab_size), rtol=1e-6)


def test_zero_init_query_gives_uniform_causal_attention():
    cfg = dataclasses.replace(TINY, zero_init_query=True)
    params, _ = _init(cfg)
    for i in range(cfg.n_layers):
        assert not np.any(params[f"block_{i}"]["attn"]["q"]["kernel"])
        assert np.any(params[f"block_{i}"]["attn"]["k"]["kernel"])
    _, inter = _apply(cfg, params, _tokens(cfg, (1, 6)), capture=True)
    inter = inter["block_0"]["attn"]
    v = np.asarray(inter["v"]["__call__"][0], np.float64)  # (1, T, heads, d_head)
    prefix_mean = np.cumsum(v, axis=1) / np.arange(1, 7)[None, :, None, None]
    expected = np.einsum("bthe,hed->btd", prefix_mean, np.asarray(params["block_0"]["attn"]["o"]["kernel"]))
    np.testing.assert_allclose(inter["__call__"][0], expected, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_with_float32_params():
    cfg16 = dataclasses.replace(TINY, dtype=jnp.bfloat16, qk_layernorm=True)
    assert cfg16.dtype == "bfloat16"
    params, _ = _init(cfg16)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    tokens = _tokens(cfg16, (2, 8))
    logits16, inter = _apply(cfg16, params, tokens, capture=True)
    assert inter["block_0"]["mlp"]["fc_in"]["__call__"][0].dtype == jnp.bfloat16
    assert logits16.dtype == jnp.float32
    logits32 = _apply(dataclasses.replace(cfg16, dtype="float32"), params, tokens)
    np.testing.assert_allclose(logits16, logits32, atol=0.1 * float(jnp.std(logits32)))
    loss_fn = lambda p: cross_entropy(Transformer(cfg16).apply({"params": p}, tokens), tokens)[0]
    grads = jax.jit(jax.grad(loss_fn))(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize("overrides", [dict(), dict(tied_embeddings=True, positions="learned")])
def test_memorises_a_repeated_sequence(overrides):
    cfg = dataclasses.replace(TINY, vocab_size=16, **overrides)
    sequence = jax.random.randint(jax.random.key(3), (1, 13), 0, cfg.vocab_size)
    batch = {"inputs": jnp.tile(sequence[:, :-1], (4, 1)), "targets": jnp.tile(sequence[:, 1:], (4, 1))}
    model = Transformer(cfg)
    params, _ = _init(cfg)
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state):
        loss_fn = lambda p: cross_entropy(model.apply({"params": p}, batch["inputs"]), batch["targets"])[0]
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    first = None
    for _ in range(60):
        params, opt_state, loss = step(params, opt_state)
        first = float(loss) if first is None else first
    # Only the first target lacks context; every other next byte is determined by the prefix.
    assert float(loss) < 0.05, (first, float(loss))


def test_learned_positions_limit_and_rotary_extrapolates():
    learned = dataclasses.replace(TINY, positions="learned", max_len=8)
    params, _ = _init(learned)
    with pytest.raises(ValueError, match="max_len"):
        Transformer(learned).apply({"params": params}, jnp.zeros((1, 9), jnp.int32))
    rotary = dataclasses.replace(TINY, max_len=8)
    params, _ = _init(rotary)
    chex.assert_shape(_apply(rotary, params, jnp.zeros((1, 9), jnp.int32)), (1, 9, 23))


def test_with_width_and_json():
    wide = TINY.with_width(d_model=32, d_ff=64, n_heads=4)
    assert (wide.d_model, wide.d_ff, wide.n_heads, wide.d_head, wide.n_layers) == (32, 64, 4, 8, 1)
    assert TransformerConfig(**json.loads(json.dumps(dataclasses.asdict(wide)))) == wide
    with pytest.raises(ValueError, match="d_ff"):
        TINY.with_width(d_ff=0)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(vocab_size=0), "vocab_size"),
        (dict(d_model=-4), "d_model"),
        (dict(n_layers=0), "n_layers"),
        (dict(n_heads=1.5), "n_heads"),
        (dict(d_head=0), "d_head"),
        (dict(d_ff=0), "d_ff"),
        (dict(max_len=0), "max_len"),
        (dict(d_head=7), "d_head"),
        (dict(norm="batch"), "norm"),
        (dict(positions="alibi"), "positions"),
        (dict(attention_scale="cubic"), "attention_scale"),
        (dict(activation="swish"), "activation"),
        (dict(attention_multiplier=0.0), "attention_multiplier"),
        (dict(logits_multiplier=float("nan")), "logits_multiplier"),
        (dict(dtype="int32"), "dtype"),
        (dict(attention_implementation="flash"), "attention_implementation"),
        (dict(tied_embeddings=True, zero_init_readout=True), "zero_init_readout"),
    ],
)
def test_config_errors(overrides, name):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(TINY, **overrides)


def test_odd_d_head_allowed_with_learned_positions():
    cfg = dataclasses.replace(TINY, positions="learned", d_head=7)
    chex.assert_shape(_apply(cfg, _init(cfg)[0], jnp.zeros((1, 4), jnp.int32)), (1, 4, 23))

"""Instability proxies: the recorded attention / output logits against numpy, their metric names for
unrolled and scanned blocks, nothing recorded unless asked, and the growth that qk-layernorm stops."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.diagnostics import apply_with_stability, stability_metrics
from paramlab.models import Transformer, TransformerConfig, cross_entropy, stack_blocks
from paramlab.nn import split_fan_axes

CFG = TransformerConfig(
    vocab_size=19, d_model=12, n_layers=2, n_heads=2, d_head=6, d_ff=24, max_len=9, positions="learned"
)


def _setup(cfg, seed=0):
    tokens = jax.random.randint(jax.random.key(seed + 1), (3, 9), 0, cfg.vocab_size)
    params, _ = split_fan_axes(Transformer(cfg).init(jax.random.key(seed), tokens)["params"])
    return params, tokens


def _rms_norm(x, eps):
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps)


def test_attention_logit_matches_numpy_for_every_layer():
    params, tokens = _setup(CFG)
    model = Transformer(CFG)
    logits, metrics = jax.jit(apply_with_stability(model.apply))({"params": params}, tokens)
    _, inter = model.apply({"params": params}, tokens, capture_intermediates=True, mutable=["intermediates"])
    scale = 1 / np.sqrt(CFG.d_head)
    causal = np.tril(np.ones((9, 9), bool))
    for i in range(CFG.n_layers):
        block = f"block_{i}"
        x = np.asarray(inter["intermediates"][block]["attn_norm"]["__call__"][0], np.float64)
        q = np.einsum("btd,dhe->bthe", x, np.asarray(params[block]["attn"]["q"]["kernel"], np.float64))
        k = np.einsum("btd,dhe->bthe", x, np.asarray(params[block]["attn"]["k"]["kernel"], np.float64))
        s = scale * np.einsum("bqhe,bkhe->bhqk", q, k)
        want = np.max(np.abs(s[:, :, causal]))
        np.testing.assert_allclose(metrics[f"attention_logit/{block}/attn"], want, rtol=1e-5)
    layers = [metrics[f"attention_logit/block_{i}/attn"] for i in range(CFG.n_layers)]
    assert metrics["attention_logit/max"] == max(layers)
    np.testing.assert_allclose(metrics["output_logit"], np.max(np.abs(np.asarray(logits))), rtol=1e-6)
    # the output is the plain forward pass's, and a plain apply records nothing
    np.testing.assert_allclose(logits, model.apply({"params": params}, tokens), rtol=1e-4, atol=1e-5)
    _, state = model.apply({"params": params}, tokens, mutable=["intermediates"])
    assert "diagnostics" not in state


def test_scanned_blocks_give_one_metric_per_layer_equal_to_the_unrolled_ones():
    params, tokens = _setup(CFG)
    unrolled = apply_with_stability(Transformer(CFG).apply)({"params": params}, tokens)[1]
    scanned_model = Transformer(dataclasses.replace(CFG, scan_layers=True))
    scanned = apply_with_stability(scanned_model.apply)({"params": stack_blocks(params, 2)}, tokens)[1]
    assert set(scanned) == {"attention_logit/blocks/attn/0", "attention_logit/blocks/attn/1"} | {
        "attention_logit/max",
        "output_logit",
    }
    for i in range(2):
        np.testing.assert_allclose(
            scanned[f"attention_logit/blocks/attn/{i}"],
            unrolled[f"attention_logit/block_{i}/attn"],
            rtol=1e-5,
        )
    np.testing.assert_allclose(scanned["output_logit"], unrolled["output_logit"], rtol=1e-5)


def test_init_holds_parameters_only_and_mutable_is_refused():
    variables = Transformer(CFG).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
    assert set(variables) == {"params"}
    with pytest.raises(ValueError, match="mutable"):
        apply_with_stability(Transformer(CFG).apply)(variables, jnp.zeros((1, 4), jnp.int32), mutable=True)


def test_stability_metrics_without_attention():
    assert stability_metrics({"output_logit": jnp.float32(2.0)}) == {"output_logit": 2.0}


def _max_attention_logit_after_training(qk_layernorm, lr=0.3, steps=40):
    cfg = dataclasses.replace(CFG, n_layers=1, d_model=32, n_heads=2, d_head=16, qk_layernorm=qk_layernorm)
    params, tokens = _setup(cfg, seed=3)
    apply = apply_with_stability(Transformer(cfg).apply)
    tx = optax.adam(lr)

    def loss_fn(p):
        logits, metrics = apply({"params": p}, tokens[:, :-1])
        return cross_entropy(logits, tokens[:, 1:])[0], metrics

    @jax.jit
    def step(p, s):
        (_, metrics), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, metrics["attention_logit/max"]

    state, seen = tx.init(params), []
    for _ in range(steps):
        params, state, logit = step(params, state)
        seen.append(float(logit))
    return seen


def test_attention_logits_grow_at_high_lr_unless_queries_and_keys_are_normalised():
    plain, normalised = (_max_attention_logit_after_training(flag) for flag in (False, True))
    # Wortsman et al.: without qk-layernorm the logits grow by orders of magnitude at a high LR
    assert max(plain) > 100 * plain[0]
    # with it, |s q.k| <= s * d_head * (gain of q_norm) * (gain of k_norm): it stays near its start
    assert max(normalised) < 0.2 * max(plain)

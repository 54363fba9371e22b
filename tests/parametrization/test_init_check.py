"""check_own_init: a model whose own init already scales with width (Flax's default Embed) is named."""

import dataclasses
import re

import flax.linen as nn
import jax.numpy as jnp
import pytest
from flax import nnx

from paramlab.models import MLP, NNXMLP, MLPConfig, Transformer, TransformerConfig
from paramlab.nn import with_fan_axes
from paramlab.parametrization import OwnInitWarning, Parametrization, check_own_init, make_plan

MUP = Parametrization("mup", "adam")


class DefaultEmbedModel(nn.Module):
    """An embedding with Flax's default init (std 1/sqrt(width)) and a lecun readout."""

    width: int

    @nn.compact
    def __call__(self, tokens):
        h = nn.Embed(256, self.width, name="embed")(tokens)
        kernel_init = with_fan_axes(nn.initializers.lecun_normal(), (0,), (1,))
        return nn.Dense(10, kernel_init=kernel_init, name="readout")(h)


def _check(make_model, inputs=()):
    plan = make_plan(make_model, MUP, base=32, delta=128, target=256, inputs=inputs)
    return check_own_init(make_model, plan, base=32, delta=128, inputs=inputs, warn=False)


def test_flax_default_embed_is_named():
    tokens = jnp.zeros((1, 4), jnp.int32)
    with pytest.warns(OwnInitWarning, match="embed/embedding"):
        plan = make_plan(
            lambda w: DefaultEmbedModel(w), MUP, base=32, delta=128, target=256, inputs=(tokens,)
        )
        messages = check_own_init(lambda w: DefaultEmbedModel(w), plan, base=32, delta=128, inputs=(tokens,))
    # std 1/sqrt(width): a 4x wider delta halves it, where the plan assumes a width-independent std
    assert len(messages) == 1 and re.search(r"changes 0\.(4[5-9]|5[0-5])\d*x", messages[0])
    assert "assumes 1x" in messages[0]


def test_paramlab_models_follow_the_convention():
    x = jnp.ones((1, 8))
    assert _check(lambda w: MLP(MLPConfig(8, w, 4, depth=3)), (x,)) == []
    assert _check(lambda w: NNXMLP(MLPConfig(8, w, 4, depth=3), rngs=nnx.Rngs(0))) == []
    base = TransformerConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_head=16, d_ff=64, max_len=8)
    grow = lambda w: Transformer(dataclasses.replace(base, d_model=w, n_heads=w // 16, d_ff=2 * w))
    assert _check(grow, (jnp.zeros((1, 8), jnp.int32),)) == []

"""make_plan: the delta trace is skipped exactly when the target widths mark the same width axes."""

import jax
import jax.numpy as jnp
import pytest

from paramlab.models import MLP, MLPConfig, NNXTransformer, Transformer, TransformerConfig
from paramlab.parametrization import Parametrization, Plan, infer_spec, make_plan, model_shapes
from paramlab.parametrization.build import _target_serves_as_delta

TOKENS = jax.ShapeDtypeStruct((2, 8), jnp.int32)
MUP = Parametrization("mup", "adamw")


def _transformer_factory(traced: list, nnx: bool = False):
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, d_head=16, d_ff=64, max_len=8)

    def make(widths):
        traced.append(dict(widths))
        config = cfg.with_width(**widths)
        if nnx:
            from flax import nnx as flax_nnx

            return NNXTransformer(config, rngs=flax_nnx.Rngs(0))
        return Transformer(config)

    return make


def _widths(d_model: int, n_heads: int = 2) -> dict:
    return {"d_model": d_model, "d_ff": 2 * d_model, "n_heads": n_heads, "d_head": 16}


def _three_trace_plan(make, base, delta, target, inputs=()) -> Plan:
    (b, _), (d, _), (t, fan) = (model_shapes(make, w, inputs) for w in (base, delta, target))
    return Plan(infer_spec(b, d, t, fan), MUP)


@pytest.mark.parametrize("nnx", [False, True], ids=["linen", "nnx"])
def test_plan_from_two_traces_equals_the_three_trace_plan(nnx):
    traced = []
    make = _transformer_factory(traced, nnx)
    base, delta, target = _widths(32), _widths(64, n_heads=4), _widths(128, n_heads=8)
    inputs = () if nnx else (TOKENS,)
    plan = make_plan(make, MUP, base=base, delta=delta, target=target, inputs=inputs)
    assert delta not in traced  # built for the framework probe or traced: never the delta widths
    assert plan.specs == _three_trace_plan(make, base, delta, target, inputs).specs


def test_delta_is_traced_when_the_target_keeps_a_base_width():
    traced = []
    make = _transformer_factory(traced)
    base, delta, target = _widths(32, n_heads=2), _widths(64, n_heads=4), _widths(128, n_heads=2)
    plan = make_plan(make, MUP, base=base, delta=delta, target=target, inputs=(TOKENS,))
    assert delta in traced
    assert plan.specs == _three_trace_plan(make, base, delta, target, (TOKENS,)).specs


def test_training_at_the_base_width_still_uses_the_delta():
    traced = []
    make = _transformer_factory(traced)
    plan = make_plan(make, MUP, base=_widths(32), delta=_widths(64), target=_widths(32), inputs=(TOKENS,))
    assert _widths(64) in traced
    for field in ("multiplier", "init", "lr"):
        assert set(plan.values(field).values()) == {1.0}, field


def test_integer_widths_mlp():
    calls = []

    def make(width):
        calls.append(width)
        return MLP(MLPConfig(in_dim=5, width=width, out_dim=3))

    x = jax.ShapeDtypeStruct((4, 5), jnp.float32)
    plan = make_plan(make, MUP, base=16, delta=32, target=128, inputs=(x,))
    assert 32 not in calls
    assert plan.specs == _three_trace_plan(make, 16, 32, 128, (x,)).specs


@pytest.mark.parametrize(
    "base, delta, target, expected",
    [
        (16, 32, 64, True),
        (16, 32, 16, False),  # target at the base width
        ((16, 2), (32, 4), (64, 8), True),
        ((16, 2), (32, 4), (64, 2), False),  # depth changes in delta only
        ((16, 2), (32, 2), (64, 8), False),  # the target changes a width that delta keeps
        ({"d": 16, "h": 2}, {"d": 32, "h": 4}, {"d": 64, "h": 2}, False),
        ({"d": 16, "h": 2}, {"d": 32, "h": 4}, {"d": 64, "h": 8}, True),
        ({"d": 16}, {"d": 32}, {"e": 64}, False),  # other structure
        ("small", "medium", "large", False),  # not numbers: keep the delta trace
        ((16, True), (32, True), (64, True), False),  # a flag among the widths
    ],
)
def test_target_serves_as_delta(base, delta, target, expected):
    assert _target_serves_as_delta(base, delta, target) is expected

"""Spec inference: roles and per-axis multipliers from shapes, and strict errors naming the path."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from paramlab.models import MLP, NNXMLP, MLPConfig, Transformer, TransformerConfig
from paramlab.nn import FanAxes, split_fan_axes
from paramlab.parametrization import ParamSpec, infer_spec, model_shapes

S = jax.ShapeDtypeStruct


def _s(*shape):
    return S(shape, jnp.float32)


def _mlp_shapes(width, nnx_model=False):
    cfg = MLPConfig(in_dim=5, width=width, out_dim=3)
    if nnx_model:
        return model_shapes(lambda w: NNXMLP(cfg, rngs=nnx.Rngs(0)), width)
    return model_shapes(lambda w: MLP(cfg), width, (S((2, 5), jnp.float32),))


def test_mlp_roles_and_multipliers():
    (b, _), (d, _), (t, fan) = (_mlp_shapes(w) for w in (16, 32, 64))
    specs = infer_spec(b, d, t, fan)
    roles = {p: s.role for p, s in specs.items()}
    assert roles == {
        "dense_0/bias": "embedding",
        "dense_0/kernel": "embedding",
        "dense_1/bias": "embedding",
        "dense_1/kernel": "hidden",
        "readout/bias": "fixed",
        "readout/kernel": "readout",
    }
    k = specs["dense_0/kernel"]
    assert (k.fan_in_mult, k.fan_out_mult, k.width_mult) == (1.0, 4.0, 4.0)
    assert k.base_shape == (5, 16) and k.shape == (5, 64) and not k.is_vector
    h = specs["dense_1/kernel"]
    assert (h.fan_in_mult, h.fan_out_mult, h.width_mult) == (4.0, 4.0, 4.0)
    r = specs["readout/kernel"]
    assert (r.fan_in_mult, r.fan_out_mult, r.width_mult) == (4.0, 1.0, 4.0)
    assert specs["dense_1/bias"].is_vector and specs["readout/bias"].width_mult == 1.0


def test_nnx_and_linen_give_the_same_specs():
    linen = infer_spec(*(_mlp_shapes(w)[0] for w in (16, 32)), *_mlp_shapes(48)[::1])
    nnx_specs = infer_spec(*(_mlp_shapes(w, True)[0] for w in (16, 32)), *_mlp_shapes(48, True))
    assert linen == nnx_specs


def test_transformer_3d_kernels_and_separate_widths():
    cfg = TransformerConfig(
        vocab_size=50, d_model=16, n_heads=2, d_head=8, d_ff=32, n_layers=1, use_bias=True
    )
    widths = {
        "base": dict(d_model=16, n_heads=2, d_head=8, d_ff=32),
        "delta": dict(d_model=32, n_heads=4, d_head=8, d_ff=64),
        "target": dict(d_model=64, n_heads=4, d_head=8, d_ff=256),  # x4, x2, fixed, x8
    }
    tok = S((1, 4), jnp.int32)
    shapes = {
        k: model_shapes(lambda w: Transformer(cfg.with_width(**w)), w, (tok,)) for k, w in widths.items()
    }
    specs = infer_spec(shapes["base"][0], shapes["delta"][0], *shapes["target"])

    def mults(path):
        s = specs[path]
        return s.role, s.fan_in_mult, s.fan_out_mult, s.width_mult

    assert mults("block_0/attn/q/kernel") == ("hidden", 4.0, 2.0, 4.0)  # (d_model, heads, d_head)
    assert specs["block_0/attn/q/kernel"].fan_out == (1, 2)
    assert mults("block_0/attn/o/kernel") == ("hidden", 2.0, 4.0, 2.0)  # (heads, d_head, d_model)
    assert mults("block_0/attn/q/bias") == ("embedding", 1.0, 2.0, 2.0)  # (heads, d_head)
    assert mults("block_0/mlp/fc_in/kernel") == ("hidden", 4.0, 8.0, 4.0)
    assert mults("block_0/mlp/fc_out/kernel") == ("hidden", 8.0, 4.0, 8.0)
    assert mults("embed/embedding") == ("embedding", 1.0, 4.0, 4.0)  # (vocab, d_model), vocab = fan-in
    assert mults("readout/kernel") == ("readout", 4.0, 1.0, 4.0)
    assert mults("final_norm/scale") == ("embedding", 1.0, 4.0, 4.0)
    assert mults("readout/bias") == ("fixed", 1.0, 1.0, 1.0)


def _tree(**shapes):
    return {k: _s(*v) for k, v in shapes.items()}


def test_spec_json_round_trip():
    spec = ParamSpec("a/kernel", (6, 8, 16), (2, 8, 4), "hidden", (0,), (1, 2))
    assert (spec.fan_in_mult, spec.fan_out_mult) == (3.0, 4.0)
    assert ParamSpec.from_json(spec.to_json()) == spec


def test_flat_and_nested_trees_give_the_same_paths():
    nested = {"a": {"kernel": _s(4, 4)}, "b": {"bias": _s(4)}}
    flat = {"a/kernel": _s(4, 4), "b/bias": _s(4)}
    small = {"a": {"kernel": _s(2, 2)}, "b": {"bias": _s(2)}}
    assert infer_spec(small, nested, nested) == infer_spec(
        {"a/kernel": _s(2, 2), "b/bias": _s(2)}, flat, flat
    )


@pytest.mark.parametrize(
    "base,delta,target,match",
    [
        (_tree(w=(8, 8)), _tree(w=(16, 16)), _tree(w=(3, 3)), "not an integer"),
        (_tree(w=(8, 8)), _tree(w=(16, 16)), _tree(w=(12, 12)), "not an integer"),
        (_tree(w=(8, 8)), _tree(w=(16, 16)), _tree(v=(16, 16)), "missing"),
        (_tree(w=(8, 8)), _tree(w=(16, 16)), _tree(w=(16, 16, 1)), "rank"),
        (
            _tree(w=(8, 8), u=(3, 8)),
            _tree(w=(16, 16), u=(3, 16)),
            _tree(w=(16, 16), u=(6, 16)),
            "delta model",
        ),
        (
            _tree(w=(8, 8), m=(3, 4)),
            _tree(w=(16, 16), m=(3, 4)),
            _tree(w=(16, 16), m=(3, 4)),
            "no width axis",
        ),
        (_tree(w=(8, 8)), _tree(w=(8, 8)), _tree(w=(8, 8)), "no parameter has a width axis"),
    ],
)
def test_errors_name_the_problem(base, delta, target, match):
    with pytest.raises(ValueError, match=match):
        infer_spec(base, delta, target)


def test_error_names_path():
    with pytest.raises(ValueError, match="enc/w"):
        infer_spec({"enc": {"w": _s(8, 8)}}, {"enc": {"w": _s(16, 16)}}, {"enc": {"w": _s(12, 12)}})


def test_target_narrower_than_base():
    """A width ratio below 1 is legitimate: the multipliers are target / base whichever is larger."""
    specs = infer_spec(_tree(w=(8, 8), b=(8,)), _tree(w=(16, 16), b=(16,)), _tree(w=(2, 2), b=(2,)))
    assert specs["w"].role == "hidden" and specs["w"].fan_in_mult == 0.25 == specs["w"].fan_out_mult
    assert specs["b"].role == "embedding" and specs["b"].width_mult == 0.25


def test_integer_ratios_can_be_relaxed():
    specs = infer_spec(_tree(w=(8, 8)), _tree(w=(16, 16)), _tree(w=(12, 12)), integer_ratios=False)
    assert specs["w"].fan_in_mult == 1.5


def test_width_axis_outside_fan_groups_is_an_error():
    base, delta = _tree(w=(8, 4, 8)), _tree(w=(16, 8, 16))
    fan = {"w": FanAxes((0,), (2,))}
    with pytest.raises(ValueError, match="neither fan-in"):
        infer_spec(base, delta, delta, fan)
    # rank-3 parameters must declare their fan axes
    with pytest.raises(ValueError, match="no declared fan axes"):
        infer_spec(base, delta, delta)


def test_fixed_policies_and_role_marks():
    base = _tree(w=(8, 8), b=(3,), m=(3, 5))
    delta = _tree(w=(16, 16), b=(3,), m=(3, 5))
    with pytest.raises(ValueError, match="'m'"):
        infer_spec(base, delta, delta)
    specs = infer_spec(base, delta, delta, roles={"m": "fixed"})
    assert specs["m"].role == "fixed" and specs["b"].role == "fixed"
    assert infer_spec(base, delta, delta, fixed="all") == specs
    with pytest.raises(ValueError, match="'b'"):
        infer_spec(base, delta, delta, fixed="error", roles={"m": "fixed"})
    with pytest.raises(ValueError, match="do not exist"):
        infer_spec(base, delta, delta, roles={"nope": "fixed"})
    with pytest.raises(ValueError, match="unknown role"):
        infer_spec(base, delta, delta, roles={"m": "output"})
    with pytest.raises(ValueError, match="fixed must be"):
        infer_spec(base, delta, delta, fixed="some")


def test_linen_boxes_are_transparent():
    def boxed(width):
        model = MLP(MLPConfig(in_dim=5, width=width, out_dim=3))
        return jax.eval_shape(model.init, jax.random.key(0), _s(1, 5))["params"]

    trees = [boxed(w) for w in (8, 16, 32)]
    plain = [split_fan_axes(t)[0] for t in trees]
    _, fan = split_fan_axes(trees[2])
    assert infer_spec(*trees) == infer_spec(*plain, fan)

"""Weight normalisation under a parametrization: the gain / direction pairs of flax.linen.WeightNorm,
the gain's init and LR by hand, the effective weight at init against the plain layer's, refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.models import MLP, NNXMLP, MLPConfig
from paramlab.nn import linen as linen_adapter
from paramlab.parametrization import Parametrization, Plan, make_plan
from paramlab.parametrization.weight_norm import weight_norm_gains

X = jnp.ones((2, 8))
LAYERS = ("dense_0", "dense_1", "readout")


def _model(width, weight_norm=True):
    return MLP(MLPConfig(in_dim=8, width=width, out_dim=4, weight_norm=weight_norm))


def _plan(name, optimizer, weight_norm=True, **kw):
    make = lambda w: _model(w, weight_norm)
    return make_plan(make, Parametrization(name, optimizer, **kw), base=16, delta=32, target=64, inputs=(X,))


def _gain(layer):
    return f"{layer}_weight_norm/{layer}/kernel/scale"


def test_gains_are_paired_with_their_directions():
    shapes = {
        "Dense_1/kernel": (3, 4),
        "WeightNorm_0/Dense_1/kernel/scale": (4,),
        "Bar_0/Baz_0/Dense_0/kernel": (5, 2),
        "WeightNorm_1/Bar_0/Baz_0/Dense_0/kernel/scale": (2,),  # flax's docstring example
        "block/fc/kernel": (6, 7),
        "block/fc_weight_norm/fc/kernel/value/scale": (7,),  # a boxed kernel
        "block/norm/scale": (6,),  # a LayerNorm gain: no direction
        "WeightNorm_2/Dense_9/kernel/scale": (4,),  # no such kernel
        "WeightNorm_3/Dense_1/kernel/scale": (5,),  # shape mismatch
    }
    assert weight_norm_gains(shapes) == {
        "WeightNorm_0/Dense_1/kernel/scale": "Dense_1/kernel",
        "WeightNorm_1/Bar_0/Baz_0/Dense_0/kernel/scale": "Bar_0/Baz_0/Dense_0/kernel",
        "block/fc_weight_norm/fc/kernel/value/scale": "block/fc/kernel",
    }


def test_spec_marks_gains_and_round_trips():
    plan = _plan("mup", "adam")
    assert {p for p, s in plan.specs.items() if s.gain_of} == {_gain(n) for n in LAYERS}
    assert plan.specs[_gain("dense_1")].gain_of == "dense_1/kernel"
    assert plan.specs["dense_1/kernel"].role == "hidden" and plan.specs[_gain("dense_1")].is_vector
    assert Plan.from_json(plan.to_json()).specs == plan.specs


@pytest.mark.parametrize("name", ["mup", "sp", "ntk", "mfp"])
def test_gain_carries_the_layers_scale_and_a_relative_adam_lr(name):
    plan = _plan(name, "adamw", weight_decays={"vector": 1.0})
    plain = _plan(name, "adamw", weight_norm=False, weight_decays={"vector": 1.0})
    mu = 4.0  # 64 / 16
    for layer in LAYERS:
        v, g = plan.scales[f"{layer}/kernel"], plan.scales[_gain(layer)]
        w = plain.scales[f"{layer}/kernel"]
        assert (v.init, v.lr, v.multiplier) == (w.init, w.lr, w.multiplier)  # v: the plain weight's rule
        # g: the layer's effective scale m * s, multiplier 1, Adam LR with the same width factor
        assert g.multiplier == 1.0 and g.init == pytest.approx(w.multiplier * w.init)
        assert g.lr == pytest.approx(w.multiplier * w.init)  # constants 1: the width factor itself
        assert g.lr * g.weight_decay == pytest.approx(1.0)  # coupled decay: eta lr wd width-invariant
    if name == "mup":  # by hand: the readout's effective std n^-1 is n^-1/2 per unit of fan-in norm
        assert plan.scales[_gain("readout")].init == pytest.approx(mu**-0.5)
        assert plan.scales[_gain("dense_1")].init == pytest.approx(1.0)


def test_adafactor_gain_lr_is_relative_already_and_sgd_is_refused():
    plan = _plan("mup", "adafactor")
    assert {plan.scales[_gain(n)].lr for n in LAYERS} == {1.0}
    assert plan.scales[_gain("readout")].init == pytest.approx(0.5)
    with pytest.raises(
        ValueError, match="dense_0_weight_norm/.* is the weight-norm gain of dense_0/kernel.*SGD"
    ):
        _plan("mup", "sgd")


def test_effective_weight_at_init_has_the_plain_layers_scale():
    plan, plain = _plan("mup", "adam"), _plan("mup", "adam", weight_norm=False)
    wn = linen_adapter.init(plan, _model(64), jax.random.key(3), X)["params"]
    ref = plain.effective_params(linen_adapter.init(plain, _model(64, False), jax.random.key(3), X)["params"])
    for layer in LAYERS:
        v = np.asarray(wn[layer]["kernel"], np.float64)
        g = np.asarray(wn[f"{layer}_weight_norm"][f"{layer}/kernel/scale"], np.float64)
        m, s = plain.scales[f"{layer}/kernel"].multiplier, plain.scales[f"{layer}/kernel"].init
        effective = g * v / np.linalg.norm(v, axis=0)  # what flax's WeightNorm computes
        np.testing.assert_allclose(np.linalg.norm(effective, axis=0), m * s, rtol=1e-5)
        # the plain layer's effective weight m s w_0 has per-unit norm m s ||w_0||, ||w_0|| ~ 1 (lecun)
        plain_norms = np.linalg.norm(np.asarray(ref[layer]["kernel"], np.float64), axis=0)
        assert np.mean(plain_norms) == pytest.approx(m * s, rel=0.15)
    y = plan.wrap_apply(_model(64).apply)({"params": wn}, X)
    assert y.shape == (2, 4) and bool(jnp.all(jnp.isfinite(y)))


def test_nnx_mlp_refuses_weight_norm():
    from flax import nnx

    with pytest.raises(ValueError, match="weight_norm is a Linen option"):
        NNXMLP(MLPConfig(in_dim=8, width=16, out_dim=4, weight_norm=True), rngs=nnx.Rngs(0))

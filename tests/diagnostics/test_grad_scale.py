"""paramlab.diagnostics.grad_scale: gradient RMS, fitted exponents, and the Adam-epsilon underflow check.

The science test measures the gradient-scale exponents ``g_l`` (gradient entries ``~ n^{-g_l}`` at
init) of a 2-hidden-layer MLP over widths 128..2048 and compares them with the values written in
docs/reference.md section 3: SP (1/2, 1/2, 0), NTK (1/2, 1, 1/2), muP (1/2, 1, 1/2), MFP (1, 3/2, 1)
for (embedding, hidden, readout).
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.diagnostics import (
    FAST_CPU_COMPILE,
    EpsilonUnderflowWarning,
    check_epsilon_underflow,
    epsilon_underflow,
    grad_rms,
    grad_scale_exponents,
    linen_plan_setup,
    measure_grad_rms,
)
from paramlab.models import MLP, MLPConfig, cross_entropy
from paramlab.parametrization import Parametrization

# docs/reference.md section 3, (embedding, hidden, readout).
REFERENCE_G = {
    "sp": (0.5, 0.5, 0.0),
    "ntk": (0.5, 1.0, 0.5),
    "mup": (0.5, 1.0, 0.5),
    "mfp": (1.0, 1.5, 1.0),
}
# The MLP's kernels by role: input weights (fan-in fixed), hidden (n x n), readout (fan-out fixed).
KERNELS = ("dense_0/kernel", "dense_1/kernel", "readout/kernel")


def test_grad_rms_matches_numpy():
    rng = np.random.default_rng(0)
    grads = {"a": {"kernel": rng.normal(size=(3, 5))}, "b": [rng.normal(size=(7,)), np.zeros((2, 2))]}
    got = jax.jit(grad_rms)(jax.tree.map(jnp.asarray, grads))
    assert set(got) == {"a/kernel", "b/0", "b/1"}
    np.testing.assert_allclose(got["a/kernel"], np.sqrt(np.mean(grads["a"]["kernel"] ** 2)), rtol=1e-6)
    np.testing.assert_allclose(got["b/0"], np.sqrt(np.mean(grads["b"][0] ** 2)), rtol=1e-6)
    assert float(got["b/1"]) == 0.0


def test_exponents_of_exact_power_laws():
    widths = [128, 256, 512, 1024]
    table = {w: {"x": 3.0 * w**-0.5, "y": 0.1 * w**-1.5, "z": 2.0} for w in widths}
    g = grad_scale_exponents(table)
    assert g["x"] == pytest.approx(0.5, abs=1e-12)
    assert g["y"] == pytest.approx(1.5, abs=1e-12)
    assert g["z"] == pytest.approx(0.0, abs=1e-12)


def test_exponents_errors():
    with pytest.raises(ValueError, match="two widths"):
        grad_scale_exponents({64: {"x": 1.0}})
    with pytest.raises(ValueError, match="other paths"):
        grad_scale_exponents({64: {"x": 1.0}, 128: {"y": 1.0}})


def test_epsilon_underflow_constant_and_per_layer():
    rms = {"emb": 1e-3, "hidden": 5e-8, "readout": 2e-7, "vec": jnp.float32(1e-9)}
    assert set(epsilon_underflow(rms, 1e-8)) == {"hidden", "vec"}  # rms < 10 * 1e-8
    got = epsilon_underflow(rms, 1e-8, factor=100.0)
    assert list(got) == ["hidden", "readout", "vec"]
    assert got["readout"] == pytest.approx({"rms": 2e-7, "eps": 1e-8, "ratio": 20.0})
    per_layer = {"emb": 1e-8, "hidden": 1e-12, "readout": 1e-10, "vec": 0.0}  # eps = 0: never offends
    assert epsilon_underflow(rms, per_layer) == {}
    # a per-layer eps given as a tree shaped like the params (paths "layer/kernel")
    tree_rms = grad_rms({"layer": {"kernel": jnp.full((4, 4), 1e-6)}, "out": {"kernel": jnp.ones((4, 2))}})
    tree_eps = {"layer": {"kernel": 1e-6}, "out": {"kernel": 1e-8}}
    assert list(epsilon_underflow(tree_rms, tree_eps)) == ["layer/kernel"]


def test_epsilon_underflow_errors():
    with pytest.raises(ValueError, match="no value"):
        epsilon_underflow({"a": 1.0, "b": 1.0}, {"a": 1e-8})
    with pytest.raises(ValueError, match="eps"):
        epsilon_underflow({"a": 1.0}, -1.0)
    with pytest.raises(ValueError, match="factor"):
        epsilon_underflow({"a": 1.0}, 1e-8, factor=0.0)


def test_check_epsilon_underflow_warns_only_when_needed():
    with pytest.warns(EpsilonUnderflowWarning, match=r"width 2048.*hidden"):
        offending = check_epsilon_underflow({"hidden": 1e-8, "emb": 1.0}, 1e-8, context="width 2048")
    assert list(offending) == ["hidden"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_epsilon_underflow({"hidden": 1.0}, 1e-8) == {}


IN, OUT, BATCH = 16, 8, 32


def _mlp_setup(name):
    x = jax.random.normal(jax.random.key(1), (BATCH, IN))
    y = jax.random.randint(jax.random.key(2), (BATCH,), 0, OUT)
    setup = linen_plan_setup(
        lambda w: MLP(MLPConfig(IN, w, OUT, depth=2)),
        Parametrization(name, "adam"),
        x,
        lambda logits, t: cross_entropy(logits, t)[0],
        base_width=128,
    )
    return setup, (x, y)


@pytest.mark.parametrize("name", sorted(REFERENCE_G))
def test_gradient_exponents_at_init_match_reference(name):
    setup, batch = _mlp_setup(name)
    table = measure_grad_rms(
        setup, [128, 256, 512, 1024, 2048], batch, seeds=(0, 1), compiler_options=FAST_CPU_COMPILE
    )
    g = grad_scale_exponents(table)
    measured = tuple(g[k] for k in KERNELS)
    print(name, "measured g (embedding, hidden, readout):", tuple(round(v, 3) for v in measured))
    assert measured == pytest.approx(REFERENCE_G[name], abs=0.1)
    assert all(math.isfinite(v) for v in g.values())

"""paramlab.diagnostics.coord_check: the procedure (against a numpy re-computation), the fits, the plot,
and the science: under muP with Adam every module's activation size is width-independent after
training starts, under SP with one global learning rate it grows (docs/reference.md section 6, TP-V)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from paramlab.diagnostics import (
    FAST_CPU_COMPILE,
    CoordCheckSetup,
    coord_check,
    coord_check_summary,
    intermediates_by_module,
    linen_forward,
    linen_plan_setup,
    loglog_slope,
    nnx_plan_setup,
    plot_coord_check,
)
from paramlab.models import MLP, NNXMLP, MLPConfig, Transformer, TransformerConfig, cross_entropy
from paramlab.parametrization import Parametrization

WIDTHS = (64, 128, 256, 512, 1024)
SP_WIDTHS = (64, 256, 1024)  # enough to fit a slope; fewer compilations


# ---- the procedure ---------------------------------------------------------------------------------


def _linear_setup(in_dim, lr_scale=1.0):
    """A linear model ``y = x W`` (W: (in_dim, width)) with loss ``0.5 mean((y - t)^2)`` and SGD."""

    def setup(width):
        def init(key):
            return {"w": jax.random.normal(key, (in_dim, width)) / math.sqrt(in_dim)}

        def forward(params, batch):
            x, t = batch
            y = x @ params["w"][:, : t.shape[1]]
            return 0.5 * jnp.mean((y - t) ** 2), {"linear": x @ params["w"], "twice": 2 * (x @ params["w"])}

        return CoordCheckSetup(init, forward, lambda lr: optax.sgd(lr * lr_scale))

    return setup


def test_steps_follow_the_procedure_numpy_reference():
    """Step 1 sees the init; step t the parameters after t - 1 SGD steps on the same batch."""
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 2))
    lr, steps = 0.1, 3
    records = coord_check(
        _linear_setup(5), [3, 4], (jnp.asarray(x), jnp.asarray(t)), steps=steps, learning_rate=lr, seed=7,
        parametrization="p", optimizer="sgd",
    )  # fmt: skip
    assert [tuple(r) for r in records] == [
        ("parametrization", "optimizer", "width", "step", "module", "l1")
    ] * 12
    for width in (3, 4):
        w = np.asarray(jax.random.normal(jax.random.key(7), (5, width)) / math.sqrt(5), np.float64)
        for step in range(1, steps + 1):
            got = {r["module"]: r["l1"] for r in records if r["width"] == width and r["step"] == step}
            assert got["linear"] == pytest.approx(np.mean(np.abs(x @ w)), rel=1e-5)
            assert got["twice"] == pytest.approx(2 * np.mean(np.abs(x @ w)), rel=1e-5)
            residual = x @ w[:, :2] - t  # d/dW of 0.5 mean((xW - t)^2) = x^T r / r.size
            w[:, :2] -= lr * x.T @ residual / residual.size
    assert [(r["width"], r["step"], r["module"]) for r in records[:4]] == [
        (3, 1, "linear"), (3, 1, "twice"), (3, 2, "linear"), (3, 2, "twice"),
    ]  # fmt: skip
    assert {(r["parametrization"], r["optimizer"]) for r in records} == {("p", "sgd")}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_bad_arguments_and_non_finite_activations():
    batch = (jnp.ones((2, 3)), jnp.ones((2, 1)))
    for widths in ([], [4, 4], [0], [2.5]):
        with pytest.raises(ValueError, match="widths"):
            coord_check(_linear_setup(3), widths, batch)
    with pytest.raises(ValueError, match="steps"):
        coord_check(_linear_setup(3), [4], batch, steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        coord_check(_linear_setup(3), [4], batch, learning_rate=math.nan)
    with pytest.raises(ValueError, match="mean \\|output\\|"):
        coord_check(_linear_setup(3, lr_scale=1e30), [4], batch, steps=4, learning_rate=1e10)


class _Twice(nn.Module):
    @nn.compact
    def __call__(self, x):
        dense = nn.Dense(3, name="shared")
        return dense(nn.relu(dense(x))), jnp.argmax(x, -1)


def test_intermediates_by_module_names_and_values():
    model = MLP(MLPConfig(4, 8, 3, depth=2))
    x = jax.random.normal(jax.random.key(0), (5, 4))
    variables = model.init(jax.random.key(1), x)
    forward = linen_forward(lambda p, xx, **kw: model.apply(p, xx, **kw), lambda out, t: jnp.sum(out))
    loss, acts = forward(variables, (x, None))
    assert set(acts) == {"dense_0", "dense_1", "readout", "output"}
    out = model.apply(variables, x)
    np.testing.assert_allclose(acts["output"], out)
    np.testing.assert_allclose(acts["readout"], out)
    np.testing.assert_allclose(loss, jnp.sum(out), rtol=1e-6)
    k0 = variables["params"]["dense_0"]["kernel"].value
    np.testing.assert_allclose(
        acts["dense_0"], x @ k0 + variables["params"]["dense_0"]["bias"].value, rtol=1e-5
    )

    twice = _Twice()
    x = jnp.ones((2, 3))
    _, state = twice.apply(twice.init(jax.random.key(0), x), x, capture_intermediates=True, mutable=True)
    names = set(intermediates_by_module(state["intermediates"], output_name="model"))
    assert names == {"shared", "shared#1", "model"}  # the int argmax output is skipped


def test_loglog_slope():
    x = np.array([64, 128, 256, 512])
    assert loglog_slope(x, 3.0 * x**0.7) == pytest.approx(0.7, abs=1e-12)
    assert loglog_slope(x, np.full(4, 2.0)) == pytest.approx(0.0, abs=1e-12)
    assert loglog_slope(x, [0.0, 2.0, 4.0, 0.0]) == pytest.approx(1.0)  # zeros left out
    assert math.isnan(loglog_slope(x, [0.0, 0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([0, 1], [1, 1])


def test_summary_slopes_and_ratios():
    records = [
        dict(parametrization="p", optimizer="o", width=w, step=s, module=m, l1=v)
        for w in (64, 256)
        for s in (1, 2)
        for m, v in (("a", w**0.5 * s), ("zero", 0.0), ("half", 0.0 if w == 64 else 1.0))
    ]
    rows = {(r["module"], r["step"]): r for r in coord_check_summary(records)}
    assert rows[("a", 2)]["slope"] == pytest.approx(0.5)
    assert rows[("a", 2)]["ratio"] == pytest.approx(2.0)
    assert rows[("a", 1)]["widths"] == [64, 256]
    assert rows[("zero", 1)]["ratio"] == 1.0 and math.isnan(rows[("zero", 1)]["slope"])
    assert rows[("half", 1)]["ratio"] == math.inf
    with pytest.raises(ValueError, match="lacks keys"):
        coord_check_summary([{"width": 1}])


def test_plot_writes_a_png(tmp_path):
    records = [
        dict(
            parametrization=p,
            optimizer="adam",
            width=w,
            step=s,
            module=m,
            l1=0.0 if s == 1 and m == "output" else 1.0,
        )
        for p in ("sp", "mup")
        for w in (16, 32)
        for s in (1, 2, 3)
        for m in ("a", "b", "output")
    ]
    path = tmp_path / "cc.png"
    plot_coord_check(records, path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="not in the records"):
        plot_coord_check(records, tmp_path / "x.png", modules=["nope"])
    with pytest.raises(ValueError, match="no records"):
        plot_coord_check([], tmp_path / "x.png")


# ---- the science -----------------------------------------------------------------------------------
#
# Pass criteria (issue 4, docs/reference.md section 6): under muP + Adam (LR 1e-2) every module other than the
# output varies across widths 64..1024 by less than 2x at steps 2 and 3, and the output by less than 3x
# (at step 1 the output may shrink like width^-1/2: the readout is not zero-initialised here). Under SP
# with one global LR the activations of the layers that contract a width-sized input grow: fitted
# log-log slope >= 0.3 at steps 2 and 3.


def _check_mup(records, output="output", readout="readout"):
    rows = [r for r in coord_check_summary(records) if r["step"] in (2, 3)]
    assert rows
    for r in rows:
        bound = 3.0 if r["module"] in (output, readout) else 2.0
        assert r["ratio"] < bound, r


def _slopes(records):
    return {(r["module"], r["step"]): r["slope"] for r in coord_check_summary(records)}


MLP_IN, MLP_OUT, MLP_BATCH = 32, 10, 64


def _mlp_records(name, widths=WIDTHS, **kwargs):
    x = jax.random.normal(jax.random.key(1), (MLP_BATCH, MLP_IN))
    y = jax.random.randint(jax.random.key(2), (MLP_BATCH,), 0, MLP_OUT)
    setup = linen_plan_setup(
        lambda w: MLP(MLPConfig(MLP_IN, w, MLP_OUT, depth=2)),
        Parametrization(name, "adam", **kwargs),
        x,
        lambda logits, t: cross_entropy(logits, t)[0],
        base_width=64,
    )
    return coord_check(
        setup, widths, (x, y), steps=3, learning_rate=1e-2, parametrization=name, optimizer="adam",
        compiler_options=FAST_CPU_COMPILE,
    )  # fmt: skip


def test_mlp_mup_is_flat_in_width():
    records = _mlp_records("mup")
    assert {r["module"] for r in records} == {"dense_0", "dense_1", "readout", "output"}
    _check_mup(records)


def test_mlp_sp_global_lr_grows_with_width():
    slopes = _slopes(_mlp_records("sp", SP_WIDTHS, lr_mode="global"))
    for step in (2, 3):
        assert slopes[("dense_1", step)] >= 0.3  # the hidden layer
        assert slopes[("output", step)] >= 0.3


# The tiny Transformer: d_model = width in 64..1024, heads grow at a fixed d_head = 16 (n_heads = width/16,
# 4..64), d_ff = 4 width, 2 blocks, 2 sequences of 8 tokens over a 32-token vocabulary. The small
# vocabulary matters for the SP check: mean |logit| averages over the vocabulary, and only the target
# column of each token receives an update aligned with that token's features.
TF_BATCH, TF_SEQ, TF_VOCAB, TF_D_HEAD = 2, 8, 32, 16


def _transformer_records(name, widths=WIDTHS, **kwargs):
    parametrization = Parametrization(name, "adam", **kwargs)
    scale = parametrization.resolved_attention_scale
    tokens = jax.random.randint(jax.random.key(3), (TF_BATCH, TF_SEQ + 1), 0, TF_VOCAB)

    def make(width):
        return Transformer(
            TransformerConfig(
                vocab_size=TF_VOCAB, d_model=width, n_layers=2, n_heads=width // TF_D_HEAD, d_head=TF_D_HEAD,
                d_ff=4 * width, max_len=TF_SEQ, attention_scale=scale,
                attention_base_d_head=TF_D_HEAD,
            )
        )  # fmt: skip

    loss_fn = lambda logits, t: cross_entropy(logits, t)[0]
    setup = linen_plan_setup(make, parametrization, tokens[:, :-1], loss_fn, base_width=64)
    batch = (tokens[:, :-1], tokens[:, 1:])
    return coord_check(
        setup, widths, batch, steps=3, learning_rate=1e-2, parametrization=name, optimizer="adam",
        compiler_options=FAST_CPU_COMPILE,
    )  # fmt: skip


def test_nnx_and_linen_mlps_give_the_same_coordinates():
    """The NNX and Linen MLPs compute the same function from the same weights: same records."""
    x = jax.random.normal(jax.random.key(1), (16, MLP_IN))
    y = jax.random.randint(jax.random.key(2), (16,), 0, MLP_OUT)
    parametrization = Parametrization("mup", "adam")
    loss_fn = lambda logits, t: cross_entropy(logits, t)[0]
    linen = linen_plan_setup(
        lambda w: MLP(MLPConfig(MLP_IN, w, MLP_OUT)), parametrization, x, loss_fn, base_width=32
    )
    nnx_setup = nnx_plan_setup(
        lambda w, rngs: NNXMLP(MLPConfig(MLP_IN, w, MLP_OUT), rngs=rngs),
        parametrization,
        loss_fn,
        base_width=32,
    )

    def nnx_with_linen_weights(width):
        s, reference = nnx_setup(width), linen(width)

        def init(key):
            state = s.init(key)
            nnx.replace_by_pure_dict(state, reference.init(key))
            return state

        return CoordCheckSetup(init, s.forward, s.optimizer)

    kwargs = dict(steps=3, compiler_options=FAST_CPU_COMPILE)
    a = coord_check(linen, [32, 128], (x, y), **kwargs)
    b = coord_check(nnx_with_linen_weights, [32, 128], (x, y), **kwargs)
    assert [(r["width"], r["step"], r["module"]) for r in a] == [
        (r["width"], r["step"], r["module"]) for r in b
    ]
    np.testing.assert_allclose([r["l1"] for r in a], [r["l1"] for r in b], rtol=1e-5)


def test_transformer_mup_is_flat_in_width():
    records = _transformer_records("mup")
    modules = {r["module"] for r in records}
    assert {"embed", "block_1/attn/q", "block_1/mlp/fc_out", "final_norm", "readout", "output"} <= modules
    _check_mup(records)


def test_transformer_sp_global_lr_grows_with_width():
    slopes = _slopes(_transformer_records("sp", SP_WIDTHS, lr_mode="global"))
    # The residual stream, the MLP branches and the logits grow from step 2 on; the attention branch of
    # the second block (its input normalised, its update the sign of a sum over all tokens) by step 3.
    growing = {
        2: ["output", "block_0", "block_1", "block_0/mlp/fc_out", "block_1/mlp/fc_out", "block_0/attn/o"]
    }
    growing[3] = growing[2] + ["block_1/attn/o"]
    for step, modules in growing.items():
        for module in modules:
            assert slopes[(module, step)] >= 0.3, (module, step, slopes[(module, step)])

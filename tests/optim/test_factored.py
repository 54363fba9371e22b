"""scale_by_factored_moments vs optax.scale_by_factored_rms, a float64 numpy reference, and properties."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.nn import FanAxes
from paramlab.optim import ScaleByFactoredMomentsState, scale_by_factored_moments

STEPS = 12


def _grads_sequence(shapes: dict, steps: int, seed: int, dtype=np.float32) -> list[dict]:
    """Normal gradients with a different scale per step and per leaf."""
    rng = np.random.default_rng(seed)
    return [
        {k: (rng.normal(size=s) * rng.uniform(0.1, 10.0)).astype(dtype) for k, s in shapes.items()}
        for _ in range(steps)
    ]


def _run(opt, grads_seq: list, params: dict, update=None) -> tuple[list, object]:
    """Feed a fixed gradient sequence through ``opt`` (params fixed); return every step's updates.

    ``update``: an already jitted ``opt.update`` to reuse (one compilation for several runs).
    """
    state = opt.init(params)
    update = update or jax.jit(opt.update)
    out = []
    for grads in grads_seq:
        updates, state = update(grads, state, params)
        out.append(jax.tree.map(np.asarray, updates))
    return out, state


# optax ----------------------------------------------------------------------------------------------

OPTAX_SHAPES = {
    "tall": (256, 130),
    "wide": (130, 256),
    "square": (160, 160),
    "batched": (3, 256, 140),  # optax's rule: axes 1 and 2 factored, axis 0 a batch axis
    "small": (10, 20),
    "vector": (300,),
    "scalar": (),
}


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"decay_rate": 0.5, "eps1": 1e-3}, {"min_dim_size_to_factor": 16}, {"factored": False}],
    ids=["defaults", "decay_eps", "min_dim_16", "unfactored"],
)
def test_matches_optax_scale_by_factored_rms(kwargs):
    optax_kwargs = {"epsilon" if k == "eps1" else k: v for k, v in kwargs.items()}
    grads = _grads_sequence(OPTAX_SHAPES, STEPS, seed=0)
    params = jax.tree.map(jnp.zeros_like, grads[0])
    got, state = _run(scale_by_factored_moments(**kwargs), grads, params)
    want, want_state = _run(optax.scale_by_factored_rms(**optax_kwargs), grads, params)
    for t, (g, w) in enumerate(zip(got, want)):
        for k in OPTAX_SHAPES:
            np.testing.assert_allclose(g[k], w[k], rtol=1e-6, atol=0, err_msg=f"step {t + 1}, {k}")
    for field in ("v_row", "v_col", "v"):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
            getattr(state, field),
            getattr(want_state, field),
        )
    assert isinstance(state, ScaleByFactoredMomentsState) and int(state.count) == STEPS


# numpy reference on 2-D and 3-D leaves ----------------------------------------------------------------

MIN_DIM = 8
REF_SHAPES = {
    "query": (24, 4, 6),  # (d_model, heads, head_dim)
    "out": (4, 6, 24),  # (heads, head_dim, d_model)
    "experts": (3, 16, 20),  # a batch axis (experts) in front of (in, out)
    "dense": (16, 20),  # undeclared: optax's rule
    "tall": (20, 16),  # undeclared: optax's rule makes the second axis the rows
    "mid_batch": (16, 3, 20),  # a batch axis between the fan-in and fan-out axes
    "split_rows": (4, 16, 6),  # a fan-in group split around the fan-out axis
    "head_bias": (4, 6),  # DenseGeneral bias: no fan-in, not factored
    "norm": (24,),
}
REF_FANS = {
    "query": FanAxes((0,), (1, 2)),
    "out": FanAxes((0, 1), (2,)),
    "experts": FanAxes((1,), (2,)),
    "dense": None,
    "tall": None,
    "mid_batch": FanAxes((0,), (2,)),
    "split_rows": FanAxes((0, 2), (1,)),
    "head_bias": FanAxes((), (0, 1)),
    "norm": None,
}
# (rows, cols) of each factored leaf as the reference sees them, None for a full moment.
REF_GROUPS = {
    "query": ((0,), (1, 2)),
    "out": ((0, 1), (2,)),
    "experts": ((1,), (2,)),
    "dense": ((0,), (1,)),
    "tall": ((1,), (0,)),
    "mid_batch": ((0,), (2,)),
    "split_rows": ((0, 2), (1,)),
    "head_bias": None,
    "norm": None,
}


def _to_blocks(x: np.ndarray, rows, cols) -> tuple[np.ndarray, tuple]:
    """View ``x`` as ``(batch, n_rows, n_cols)``; returns it and the permutation used."""
    batch = tuple(a for a in range(x.ndim) if a not in rows + cols)
    perm = batch + rows + cols
    y = np.transpose(x, perm)
    n_b = math.prod(x.shape[a] for a in batch)
    n_r = math.prod(x.shape[a] for a in rows)
    return y.reshape(n_b, n_r, -1), perm


def _from_blocks(y: np.ndarray, shape: tuple, perm: tuple) -> np.ndarray:
    return np.transpose(y.reshape([shape[a] for a in perm]), np.argsort(perm))


def _numpy_factored(
    grads_seq,
    params,
    decay_rate=0.8,
    constant_decay=False,
    step_offset=0,
    eps1=1e-30,
    b1=None,
    clip=None,
    param_scale=False,
    eps2=1e-3,
    relative_step=False,
    atan2=False,
) -> list[dict]:
    """The algorithm in float64 with the paper's sums: V = rowsum (x) colsum / sum, per batch index."""
    stats, momentum, out = {}, {}, []
    for t, grads in enumerate(grads_seq, start=1):
        t_eff = max(t - step_offset, 1)
        beta = decay_rate if constant_decay else 1.0 - t_eff ** (-decay_rate)
        step = {}
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            g2 = g * g + (0.0 if atan2 else eps1)
            groups = REF_GROUPS[k]
            if groups is None:
                prev = stats.get(k, np.zeros_like(g))
                stats[k] = beta * prev + (1 - beta) * g2
                v = stats[k]
            else:
                blocks, perm = _to_blocks(g2, *groups)
                r_prev, c_prev = stats.get(k, (0.0, 0.0))
                r = beta * r_prev + (1 - beta) * blocks.sum(axis=2)
                c = beta * c_prev + (1 - beta) * blocks.sum(axis=1)
                stats[k] = (r, c)
                v = _from_blocks(r[:, :, None] * c[:, None, :] / r.sum(axis=1)[:, None, None], g.shape, perm)
            if constant_decay:
                v = v / (1 - decay_rate**t)
            num = g
            if b1 is not None:
                momentum[k] = b1 * momentum.get(k, 0.0) + (1 - b1) * g
                num = momentum[k] / (1 - b1**t)
            u = np.arctan2(num, np.sqrt(v)) if atan2 else num / np.sqrt(v)
            if clip is not None:
                u = u / max(1.0, np.sqrt(np.mean(u * u)) / clip)
            if param_scale:
                u = u * max(eps2, np.sqrt(np.mean(np.asarray(params[k], np.float64) ** 2)))
            if relative_step:
                u = u * min(1e-2, 1 / np.sqrt(t_eff))
            step[k] = u
        out.append(step)
    return out


REF_CONFIGS = {
    "defaults": {},
    "adafactor": {"clipping_threshold": 1.0, "multiply_by_parameter_scale": True, "relative_step": True},
    "momentum_clip_decay": {"b1": 0.9, "clipping_threshold": 0.5, "decay_rate": 0.5, "eps1": 1e-3},
    "constant_decay_offset": {"decay_schedule": "constant", "decay_rate": 0.95, "b1": 0.8, "step_offset": 3},
    "atan2": {"output": "atan2", "b1": 0.9, "multiply_by_parameter_scale": True, "eps2": 0.5},
}


def _reference_kwargs(kwargs: dict) -> dict:
    names = {
        "clipping_threshold": "clip",
        "multiply_by_parameter_scale": "param_scale",
        "decay_schedule": "constant_decay",
        "output": "atan2",
    }
    ref = {names.get(k, k): v for k, v in kwargs.items()}
    ref["constant_decay"] = ref.get("constant_decay") == "constant"
    ref["atan2"] = ref.get("atan2") == "atan2"
    return ref


@pytest.mark.parametrize("name", list(REF_CONFIGS))
def test_matches_numpy_reference_on_2d_and_3d_leaves(name):
    kwargs = REF_CONFIGS[name]
    grads = _grads_sequence(REF_SHAPES, STEPS, seed=1)
    params = {k: np.random.default_rng(2).normal(size=s).astype(np.float32) for k, s in REF_SHAPES.items()}
    opt = scale_by_factored_moments(min_dim_size_to_factor=MIN_DIM, fan_axes=REF_FANS, **kwargs)
    got, state = _run(opt, grads, params)
    want = _numpy_factored(grads, params, **_reference_kwargs(kwargs))
    for t, (g, w) in enumerate(zip(got, want)):
        for k in REF_SHAPES:
            np.testing.assert_allclose(g[k], w[k], rtol=2e-5, atol=1e-7, err_msg=f"step {t + 1}, {k}")
    stat_shapes = {k: (state.v_row[k].shape, state.v_col[k].shape, state.v[k].shape) for k in REF_SHAPES}
    assert stat_shapes["query"] == ((24,), (4, 6), (1,))
    assert stat_shapes["out"] == ((4, 6), (24,), (1,))
    assert stat_shapes["experts"] == ((3, 16), (3, 20), (1,))
    assert stat_shapes["dense"] == ((16,), (20,), (1,))
    assert stat_shapes["tall"] == ((16,), (20,), (1,))
    assert stat_shapes["mid_batch"] == ((16, 3), (3, 20), (1,))
    assert stat_shapes["split_rows"] == ((4, 6), (16,), (1,))
    assert stat_shapes["head_bias"] == ((1,), (1,), (4, 6))
    assert (state.mu is None) == ("b1" not in kwargs)


@pytest.mark.parametrize(
    "shape, fan", [((512, 8, 64), FanAxes((0,), (1, 2))), ((8, 64, 512), FanAxes((0, 1), (2,)))]
)
def test_attention_kernel_state_is_at_most_two_percent(shape, fan):
    def state_bytes(opt):
        state = jax.eval_shape(opt.init, {"kernel": jax.ShapeDtypeStruct(shape, jnp.float32)})
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((state.v_row, state.v_col, state.v)))

    full = math.prod(shape) * 4
    assert state_bytes(scale_by_factored_moments(fan_axes={"kernel": fan})) <= 0.02 * full
    # optax's rule factors the two largest axes only if the second is >= 128: here it keeps it all.
    assert state_bytes(scale_by_factored_moments()) >= full


# decay offsets, atan2 -----------------------------------------------------------------------------


@pytest.mark.parametrize("step_offset", range(6))
def test_decay_offsets_never_give_nan(step_offset):
    shapes = {"matrix": (16, 12), "vector": (5,)}
    grads = _grads_sequence(shapes, 8, seed=3)
    params = jax.tree.map(jnp.zeros_like, grads[0])
    opt = scale_by_factored_moments(step_offset=step_offset, min_dim_size_to_factor=4, b1=0.9)
    got, state = _run(opt, grads, params)
    assert all(np.all(np.isfinite(u[k])) for u in got for k in shapes)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))
    # Until the offset is passed the decay is 0: the full moment is the last g^2 + eps1.
    last = min(step_offset + 1, 8)
    _, state = _run(opt, grads[:last], params)
    np.testing.assert_allclose(state.v["vector"], grads[last - 1]["vector"] ** 2 + 1e-30, rtol=1e-6)


def test_atan2_output_is_scale_free_bounded_and_eps_independent():
    shapes = {"query": (24, 4, 6), "dense": (16, 20), "norm": (24,)}
    fans = {"query": FanAxes((0,), (1, 2)), "dense": None, "norm": None}
    grads = _grads_sequence(shapes, 6, seed=4)
    params = jax.tree.map(jnp.zeros_like, grads[0])

    opts = {
        eps1: scale_by_factored_moments(
            output="atan2", b1=0.9, eps1=eps1, min_dim_size_to_factor=4, fan_axes=fans
        )
        for eps1 in (1e-30, 1.0)
    }
    updates = {eps1: jax.jit(opt.update) for eps1, opt in opts.items()}

    def run(scale, eps1=1e-30):
        scaled = [jax.tree.map(lambda g: g * np.float32(scale), gs) for gs in grads]
        return _run(opts[eps1], scaled, params, updates[eps1])[0]

    base = run(1.0)
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        for got, want in zip(run(scale), base):
            for k in shapes:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-7, err_msg=f"scale {scale}")
    for got, want in zip(run(1.0, eps1=1.0), base):
        for k in shapes:
            np.testing.assert_array_equal(got[k], want[k])
    assert all(np.max(np.abs(u[k])) <= np.pi / 2 for u in base for k in shapes)
    zero = _run(opts[1e-30], [params] * 2, params, updates[1e-30])[0]
    assert all(np.all(u[k] == 0) for u in zero for k in shapes)


# transformations and dtypes ---------------------------------------------------------------------------

MATRIX_SHAPES = {"query": (12, 2, 4), "dense": (8, 6), "norm": (8,)}
MATRIX_FANS = {"query": FanAxes((0,), (1, 2)), "dense": None, "norm": None}
FULL = {
    "b1": 0.9,
    "clipping_threshold": 1.0,
    "multiply_by_parameter_scale": True,
    "relative_step": True,
    "min_dim_size_to_factor": 4,
}


def _params(dtype=jnp.float32) -> dict:
    rng = np.random.default_rng(5)
    return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in MATRIX_SHAPES.items()}


def _assert_trees_close(got, want, **tol):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol), got, want)


def test_inject_hyperparams_traces_every_numeric_hyperparameter():
    hparams = {
        "decay_rate": 0.7,
        "eps1": 1e-20,
        "eps2": 1e-2,
        "clipping_threshold": 0.8,
        "b1": 0.8,
        "step_offset": 1,
    }
    other = {k: v for k, v in FULL.items() if k not in hparams}
    direct = scale_by_factored_moments(fan_axes=MATRIX_FANS, **hparams, **other)
    injected = optax.inject_hyperparams(scale_by_factored_moments, static_args=("min_dim_size_to_factor",))(
        fan_axes=MATRIX_FANS, **hparams, **other
    )
    params = _params()
    d_state, i_state = direct.init(params), injected.init(params)
    update, d_update = jax.jit(injected.update), jax.jit(direct.update)
    for grads in _grads_sequence(MATRIX_SHAPES, 3, seed=7):
        want, d_state = d_update(grads, d_state, params)
        got, i_state = update(grads, i_state, params)
        _assert_trees_close(got, want, rtol=1e-5, atol=1e-8)
    assert set(hparams) <= set(i_state.hyperparams)


def test_min_dim_size_may_be_traced_in_update_but_not_in_init():
    params = _params()
    grads = _grads_sequence(MATRIX_SHAPES, 2, seed=11)
    injected = optax.inject_hyperparams(scale_by_factored_moments)(
        min_dim_size_to_factor=4, fan_axes=MATRIX_FANS
    )
    direct = scale_by_factored_moments(min_dim_size_to_factor=4, fan_axes=MATRIX_FANS)
    i_state, d_state = injected.init(params), direct.init(params)
    for g in grads:
        got, i_state = jax.jit(injected.update)(g, i_state, params)
        want, d_state = jax.jit(direct.update)(g, d_state, params)
        _assert_trees_close(got, want, rtol=1e-6, atol=0)
    assert i_state.inner_state.v["dense"].shape == (1,)  # factored
    with pytest.raises(ValueError, match="min_dim_size_to_factor"):
        jax.jit(lambda m: scale_by_factored_moments(min_dim_size_to_factor=m).init(params))(4)


def test_optax_partition_with_the_full_fan_axes_tree():
    params = {"tuned": _params(), "frozen": jnp.ones((4, 3, 2))}
    fans = {"tuned": MATRIX_FANS, "frozen": FanAxes((0,), (1, 2))}
    labels = {"tuned": {k: "opt" for k in MATRIX_SHAPES}, "frozen": "zero"}
    inner = scale_by_factored_moments(fan_axes=fans, **FULL)
    opt = optax.partition({"opt": inner, "zero": optax.set_to_zero()}, labels)
    alone = scale_by_factored_moments(fan_axes=MATRIX_FANS, **FULL)
    state, a_state = opt.init(params), alone.init(params["tuned"])
    update, a_update = jax.jit(opt.update), jax.jit(alone.update)
    for grads in _grads_sequence({"frozen": (4, 3, 2), **MATRIX_SHAPES}, 3, seed=9):
        grads = {"frozen": grads.pop("frozen"), "tuned": grads}
        updates, state = update(grads, state, params)
        want, a_state = a_update(grads["tuned"], a_state, params["tuned"])
        np.testing.assert_array_equal(updates["frozen"], np.zeros((4, 3, 2)))
        _assert_trees_close(updates["tuned"], want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("output", ["rsqrt", "atan2"])
def test_bfloat16_params_keep_float32_statistics(output):
    params = _params(jnp.bfloat16)
    opt = scale_by_factored_moments(fan_axes=MATRIX_FANS, output=output, **FULL)
    state = opt.init(params)
    update = jax.jit(opt.update)
    for grads in _grads_sequence(MATRIX_SHAPES, 3, seed=10):
        updates, state = update(jax.tree.map(lambda g: jnp.asarray(g, jnp.bfloat16), grads), state, params)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    assert all(np.all(np.isfinite(np.asarray(u, np.float32))) for u in jax.tree.leaves(updates))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((state.v_row, state.v_col, state.v)))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.mu))


# errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"decay_rate": 0.0}, "decay_rate"),
        ({"decay_rate": -0.8}, "decay_rate"),
        ({"decay_schedule": "constant", "decay_rate": 1.0}, "decay_rate"),
        ({"decay_schedule": "cosine"}, "decay_schedule"),
        ({"step_offset": -1}, "step_offset"),
        ({"eps1": -1e-30}, "eps1"),
        ({"eps2": -1.0}, "eps2"),
        ({"b1": 1.0}, "b1"),
        ({"clipping_threshold": 0.0}, "clipping_threshold"),
        ({"output": "divide"}, "output"),
        ({"min_dim_size_to_factor": -1}, "min_dim_size_to_factor"),
        ({"min_dim_size_to_factor": 1.5}, "min_dim_size_to_factor"),
    ],
)
def test_invalid_hyperparameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        scale_by_factored_moments(**kwargs)


@pytest.mark.parametrize(
    "fans, match",
    [
        ({"query": FanAxes((0,), (3,)), "dense": None, "norm": None}, r"\['query'\]"),
        ({"query": FanAxes((0,), (1, 2)), "dense": FanAxes((-3,), (1,)), "norm": None}, r"\['dense'\]"),
        ({"query": FanAxes((0,), (1, 2)), "dense": None}, r"\['norm'\]"),
        ({"query": FanAxes((0,), (1, 2)), "dense": None, "norm": None, "extra": None}, r"\['extra'\]"),
        ({"query": (0, 1), "dense": None, "norm": None}, r"fan_axes\['query'\]"),
    ],
    ids=["out_of_range", "negative_out_of_range", "missing", "extra", "not_fan_axes"],
)
def test_bad_fan_axes_name_the_path(fans, match):
    opt = scale_by_factored_moments(fan_axes=fans)
    with pytest.raises(ValueError, match=match):
        opt.init(_params())


def test_parameter_scale_needs_params():
    opt = scale_by_factored_moments(multiply_by_parameter_scale=True)
    params = _params()
    with pytest.raises(ValueError, match="params"):
        opt.update(params, opt.init(params))

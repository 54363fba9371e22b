"""Plan: per-parameter factors computed by hand, the base-width identity, optimizers vs optax / numpy."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.nn import FanAxes
from paramlab.optim import adam_atan2
from paramlab.optim.adafactor import adafactor
from paramlab.optim.factored import scale_by_factored_moments
from paramlab.parametrization import RECIPES, Parametrization, Plan, infer_spec, named_parametrization


def _shapes(n, in_dim=5, out_dim=3, ff=None):
    ff = ff or n
    tree = {
        "in": {"kernel": (in_dim, n), "bias": (n,)},
        "h": {"kernel": (n, ff)},
        "out": {"kernel": (ff, out_dim), "bias": (out_dim,)},
    }
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, jnp.float32), tree, is_leaf=lambda x: isinstance(x, tuple)
    )


def _specs(n0=8, n=32, ff_ratio=1):
    return infer_spec(
        _shapes(n0, ff=n0 * ff_ratio), _shapes(2 * n0, ff=2 * n0 * ff_ratio), _shapes(n, ff=n * ff_ratio)
    )


def _plan(name, optimizer, n=32, **kw):
    return Plan(_specs(n=n), Parametrization(name, optimizer, **kw))


def _params(n, seed=0, ff=None):
    shapes = _shapes(n, ff=ff)
    keys = iter(jax.random.split(jax.random.key(seed), 8))
    return jax.tree.map(lambda s: jax.random.normal(next(keys), s.shape, s.dtype), shapes)


PATHS = ["in/kernel", "in/bias", "h/kernel", "out/kernel", "out/bias"]


def _vals(plan, field):
    v = plan.values(field)
    return [v[p] for p in PATHS]


@pytest.mark.parametrize(
    "name,optimizer,alignment,expected",
    [
        # mu = 32 / 8 = 4. microsoft/mup MuAdam: hidden / width_mult; MuSGD: vectors * width_mult.
        ("mup_table8", "adam", "full", [1, 1, 0.25, 1, 1]),
        ("mup_table8", "sgd", "full", [4, 4, 1, 4, 1]),
        ("sp", "adam", "full", [1, 1, 0.25, 0.25, 1]),
        ("ntk", "sgd", "none", [2, 2, 4, 2, 1]),  # c = (-1/2, -1, -1/2)
        ("mup", "adam", "none", [0.5, 0.5, 0.5, 1, 1]),  # c = (1/2, 1/2, 0)
        ("mfp", "adafactor", "none", [1, 1, 1, 2, 1]),  # c = (0, 0, -1/2)
    ],
)
def test_lr_multipliers_by_hand(name, optimizer, alignment, expected):
    assert _vals(_plan(name, optimizer, alignment=alignment), "lr") == pytest.approx(expected)


def test_nonsquare_hidden_uses_fan_in_and_fan_out():
    # h/kernel: (n, 2n) at n = 32 vs (8, 16): mu_in = 4, mu_out = 4; out/kernel fan-in grows by 4.
    specs = _specs(ff_ratio=2)
    assert (specs["h/kernel"].fan_in_mult, specs["h/kernel"].fan_out_mult) == (4.0, 4.0)
    specs = infer_spec(_shapes(8, ff=8), _shapes(16, ff=16), _shapes(16, ff=64))  # mu_in 2, mu_out 8
    sgd = Plan(specs, Parametrization("mup_table8", "sgd")).values("lr")
    adam = Plan(specs, Parametrization("mup_table8", "adam")).values("lr")
    assert sgd["h/kernel"] == pytest.approx(8 / 2)  # MuSGD: lr / (fanin_mult / fanout_mult)
    assert adam["h/kernel"] == pytest.approx(1 / 2)  # MuAdam: lr / fanin_mult
    assert sgd["out/kernel"] == pytest.approx(8) and adam["out/kernel"] == 1.0


@pytest.mark.parametrize(
    "name,mult,init",
    [
        # init = mu_in^(1/2) * width_mult^(-b): the own lecun init already has variance 1/fan_in.
        ("sp", [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]),
        ("ntk", [1, 1, 0.5, 0.5, 1], [1, 1, 2, 2, 1]),
        ("mup", [2, 2, 1, 0.5, 1], [0.5, 0.5, 1, 1, 1]),
        ("mfp", [1, 1, 0.5, 0.25, 1], [1, 1, 2, 2, 1]),
        ("mup_table8", [1, 1, 1, 0.25, 1], [1, 1, 1, 2, 1]),
    ],
)
def test_multipliers_and_init_by_hand(name, mult, init):
    plan = _plan(name, "adam")
    assert _vals(plan, "multiplier") == pytest.approx(mult)
    assert _vals(plan, "init") == pytest.approx(init)


def test_effective_readout_scale_is_the_parametrizations():
    # effective std of the readout relative to base = mult * init * (own init 1/sqrt(mu)) = mu^-(a+b)
    for name, a_plus_b in [("sp", 0.5), ("ntk", 0.5), ("mup", 1), ("mfp", 1), ("mup_table8", 1)]:
        s = _plan(name, "sgd").scales["out/kernel"]
        assert s.multiplier * s.init * 4**-0.5 == pytest.approx(4**-a_plus_b)


ALL_CONFIGS = list(
    itertools.product(
        ["sp", "ntk", "mup", "mfp", "mup_table8"],
        ["sgd", "adam", "adafactor"],
        ["full", "none", 0.7],
        [("per_layer", 0.0), ("global", "stable"), ("global", 1.0)],
        ["constant", "per_layer"],
        ["lr_coupled", "independent"],
    )
)


def test_every_factor_is_exactly_one_at_base_width():
    specs = _specs(n=8)
    params = _params(8)
    for name, opt, align, (lr_mode, gexp), eps_mode, wd_mode in ALL_CONFIGS:
        p = Parametrization(
            name,
            opt,
            align,
            lr_mode=lr_mode,
            global_lr_exponent=gexp,
            eps_mode=eps_mode,
            weight_decay_mode=wd_mode,
        )
        plan = Plan(specs, p)
        for field in ("multiplier", "init", "lr", "eps", "weight_decay"):
            assert set(plan.values(field).values()) == {1.0}, (p, field)
        same = jax.tree.map(lambda a, b: a is b, plan.rescale_init(params), params)
        assert all(jax.tree.leaves(same))  # not even a multiply by 1.0


def test_per_layer_eps_follows_gradient_scale():
    # NTK gradient exponents (1/2, 1, 1/2); mu = 4.
    plan = _plan("ntk", "adam", eps_mode="per_layer")
    assert _vals(plan, "eps") == pytest.approx([0.5, 0.5, 0.25, 0.5, 1])
    assert set(_plan("ntk", "adam").values("eps").values()) == {1.0}
    # First Adam step in numpy: m_hat = g, v_hat = g^2, u = -lr * lr_l * g / (|g| + eps_l).
    grads = jax.tree.map(lambda x: 1e-7 * x, _params(32, seed=1))
    opt = plan.optimizer("adam", 0.1, eps=1e-6)
    updates, _ = opt.update(grads, opt.init(_params(32)), _params(32))
    lr, eps = plan.values("lr"), plan.values("eps")
    for path in PATHS:
        a, b = path.split("/")
        g = np.asarray(grads[a][b], np.float64)
        want = -0.1 * lr[path] * g / (np.abs(g) + 1e-6 * eps[path])
        np.testing.assert_allclose(updates[a][b], want, rtol=2e-5)


@pytest.mark.parametrize("name,optimizer", [("mup_table8", "adam"), ("ntk", "sgd"), ("sp", "adam")])
def test_weight_decay_shrink_is_width_independent(name, optimizer):
    base = "adam" if optimizer == "adam" else "sgd"
    params = _params(32)
    zeros = jax.tree.map(jnp.zeros_like, params)  # no gradient: the update is the decay alone
    for mode, per_step in [("lr_coupled", 0.1 * 0.01), ("independent", 0.01)]:
        plan = _plan(name, optimizer, weight_decay_mode=mode, weight_decays={"vector": 0.0})
        opt = plan.optimizer(base, 0.1, weight_decay=0.01)
        updates, _ = opt.update(zeros, opt.init(params), params)
        for path in PATHS:
            a, b = path.split("/")
            want = 0.0 if b == "bias" else -per_step
            np.testing.assert_allclose(updates[a][b], want * params[a][b], rtol=1e-6, atol=0)


def _decay_per_step(plan, params, eta=0.1, weight_decay=0.01):
    """The update of a zero gradient divided by the parameter: minus each parameter's per-step decay."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    opt = plan.optimizer("adam", eta, weight_decay=weight_decay)
    updates, _ = opt.update(zeros, opt.init(params), params)
    return [float(np.mean(updates[a][b] / params[a][b])) for a, b in (p.split("/") for p in PATHS)]


@pytest.mark.parametrize("n", [32, 64])
def test_weight_decay_rules_under_mup(n):
    # microsoft/mup's MuAdam at width_mult mu = n / 8: hidden LR / mu, everything else 1 (Table 8)
    mu = n / 8
    lr = np.array([1, 1, 1 / mu, 1, 1])
    matrix = np.array([1, 0, 1, 1, 0], bool)
    params = _params(n)
    eta, wd = 0.1, 0.01

    def rule(name, **kw):
        plan = _plan("mup_table8", "adam", n=n, weight_decay_rule=name, **kw)
        return np.array(_decay_per_step(plan, params, eta, wd))

    # width_invariant: eta * lr * (wd / lr) = eta * wd on every parameter, at every width
    np.testing.assert_allclose(rule("width_invariant"), -eta * wd * np.ones(5), rtol=1e-4)
    # transfer: the same on matrices (lambda = wd * mu on the hidden kernel), vectors undecayed
    np.testing.assert_allclose(rule("transfer"), -eta * wd * matrix, rtol=1e-4)
    # ... unless the "vector" constant asks for a decay
    with_vectors = rule("transfer", weight_decays={"vector": 0.5})
    np.testing.assert_allclose(with_vectors, -eta * wd * np.where(matrix, 1.0, 0.5), rtol=1e-4)
    # fixed: plain AdamW, one coefficient: the per-step decay follows the LR (hidden: 1 / mu)
    np.testing.assert_allclose(rule("fixed"), -eta * wd * lr, rtol=1e-4)
    # independent of the LR: wd per step under every rule but transfer's vectors
    for name, want in [("width_invariant", 1.0), ("fixed", 1.0), ("transfer", matrix)]:
        got = rule(name, weight_decay_mode="independent")
        np.testing.assert_allclose(got, -wd * np.ones(5) * want, rtol=1e-4)


def test_weight_decay_rule_json_round_trip_and_bad_name():
    p = Parametrization("mup", "adamw", weight_decay_rule="transfer")
    assert Parametrization.from_json(json.loads(json.dumps(p.to_json()))) == p
    with pytest.raises(ValueError, match="weight_decay_rule"):
        Parametrization("mup", "adamw", weight_decay_rule="proper")


def test_global_lr_modes():
    assert set(_plan("sp", "adam", lr_mode="global").values("lr").values()) == {1.0}
    stable = _plan("sp", "adam", lr_mode="global", global_lr_exponent="stable").values("lr")
    assert set(stable.values()) == {0.25}  # c = max(0, 1, 1)
    fixed_c = _plan("mup", "sgd", lr_mode="global", global_lr_exponent=0.5).values("lr")
    assert set(fixed_c.values()) == {0.5}
    # per-role constants still apply on top of the one LR
    plan = _plan("sp", "adam", lr_mode="global", learning_rates={"readout": 3.0})
    assert _vals(plan, "lr") == [1, 1, 1, 3, 1]


def test_constants_roles_vectors_patterns():
    p = Parametrization(
        "mup_table8",
        "adam",
        multipliers={"readout": 2.0},
        learning_rates={"hidden": 0.5, "vector": 3.0, "in/k*": 7.0},
        init_scales={"embedding": 0.1},
    )
    plan = Plan(_specs(), p)
    assert _vals(plan, "multiplier") == pytest.approx([1, 1, 1, 0.5, 1])
    assert _vals(plan, "lr") == pytest.approx([7, 3, 0.125, 1, 3])
    assert _vals(plan, "init") == pytest.approx([0.1, 0.1, 1, 2, 1])
    with pytest.raises(ValueError, match="matches no parameter"):
        Plan(_specs(), Parametrization("mup", "adam", learning_rates={"hiden": 2.0}))
    with pytest.raises(ValueError, match="several"):
        Plan(_specs(), Parametrization("mup", "adam", learning_rates={"in/*": 2.0, "*/kernel": 1.0}))


def test_zero_init_readout_and_model_options():
    plan = _plan("mup", "adam", zero_init_readout=True)
    assert _vals(plan, "init") == pytest.approx([0.5, 0.5, 1, 0, 1])
    assert plan.attention_scale == "linear" and _plan("sp", "adam").attention_scale == "sqrt"
    assert _plan("sp", "adam", attention_scale="linear").attention_scale == "linear"


def test_tied_readout_multiplier():
    table = lambda d: {"e": jax.ShapeDtypeStruct((50, d), jnp.float32)}  # (vocab, d_model)
    specs = infer_spec(table(8), table(16), table(32))
    mult = lambda name, **kw: Plan(specs, Parametrization(name, "adam", **kw)).tied_readout_multiplier("e")
    assert mult("mup") == pytest.approx(0.25) and mult("mup_table8") == pytest.approx(0.25)
    assert mult("sp") == pytest.approx(0.5) and mult("mfp") == pytest.approx(0.25)
    assert mult("mup", multipliers={"readout": 2.0}) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not an embedding"):
        _plan("mup", "adam").tied_readout_multiplier("h/kernel")


def test_json_round_trip_is_exact():
    p = Parametrization(
        "mfp",
        "adam",
        {"hidden": {"alpha": 0.9, "omega": 0.5, "u": 0.7}, "readout": 0.6},
        learning_rates={"*/kernel": 0.3},
        weight_decays={"vector": 0.0},
        lr_mode="global",
        global_lr_exponent="stable",
        eps_mode="per_layer",
        weight_decay_mode="independent",
        sgd_readout="maximal",
        zero_init_readout=True,
        zero_init_query=True,
        attention_scale="sqrt",
    )
    plan = Plan(_specs(), p)
    text = json.dumps(plan.to_json())
    again = Plan.from_json(json.loads(text))
    assert again == plan and again.scales == plan.scales
    assert Plan.from_json(text) == plan
    with pytest.raises(ValueError, match="unknown keys"):
        Parametrization.from_json({**p.to_json(), "extra": 1})


def test_describe_lists_every_parameter():
    text = _plan("mup", "adam").describe()
    assert all(path in text for path in PATHS) and "mup / adam" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(name="mu"),
        dict(optimizer="rmsprop"),
        dict(alignment="some"),
        dict(lr_mode="layerwise"),
        dict(global_lr_exponent="max"),
        dict(eps_mode="tiny"),
        dict(weight_decay_mode="l2"),
        dict(weight_decay_rule="scaled"),
        dict(sgd_readout="x"),
        dict(attention_scale="cubic"),
        dict(multipliers={"readout": 0.0}),
        dict(learning_rates={"hidden": -1.0}),
        dict(zero_init_readout=1),
    ],
)
def test_bad_parametrization_raises(kwargs):
    with pytest.raises(ValueError):
        Parametrization(**{"name": "mup", "optimizer": "adam", **kwargs})


# ---- optimizers against optax --------------------------------------------------------------------


def _run(opt, params, steps=2):
    state = opt.init(params)
    out = []
    for i in range(steps):
        grads = _params(32, seed=10 + i)
        updates, state = opt.update(grads, state, params)
        out.append(updates)
    return out


@pytest.mark.parametrize(
    "name,family,base,kw,reference",
    [
        ("mup_table8", "adam", "adam", {}, lambda: optax.adam(0.1)),
        ("ntk", "adam", "adamw", {}, lambda: optax.adam(0.1)),
        ("mup", "adam", "adam_atan2", {}, lambda: adam_atan2(0.1)),
        ("mup_table8", "sgd", "sgd", dict(momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
        ("sp", "sgd", "sgd", dict(momentum=0.9, nesterov=True), lambda: optax.sgd(0.1, 0.9, nesterov=True)),
        ("mfp", "sgd", "sgd", {}, lambda: optax.sgd(0.1)),
    ],
)
def test_optimizer_is_optax_times_lr_multiplier(name, family, base, kw, reference):
    plan = _plan(name, family)
    params = _params(32)
    got = _run(plan.optimizer(base, 0.1, **kw), params)
    want = _run(reference(), params)
    lr = plan.values("lr")
    for g, w in zip(got, want):
        for path in PATHS:
            a, b = path.split("/")
            np.testing.assert_allclose(g[a][b], lr[path] * w[a][b], rtol=1e-6, atol=1e-9)


def test_factored_bases_are_paramlab_optim_times_lr_multiplier():
    params = _params(32)
    small = {"min_dim_size_to_factor": 8}  # factor the 32 x 32 hidden matrix
    plan = _plan("mup", "adafactor")
    fan = plan.fan_axes(params)
    assert fan["h"]["kernel"] == FanAxes((0,), (1,))
    got = _run(plan.optimizer("adafactor", 0.1, base_kwargs=small), params)
    want = _run(adafactor(0.1, fan_axes=fan, **small), params)
    lr = plan.values("lr")
    for path in PATHS:
        a, b = path.split("/")
        np.testing.assert_allclose(got[1][a][b], lr[path] * want[1][a][b], rtol=1e-6)
    plan = _plan("mup", "adam")
    got = _run(plan.optimizer("factored", 0.1, base_kwargs=small), params)
    core = scale_by_factored_moments(
        b1=0.9, decay_schedule="constant", decay_rate=0.999, fan_axes=fan, **small
    )
    want = _run(optax.chain(core, optax.scale_by_learning_rate(0.1)), params)
    lr = plan.values("lr")
    np.testing.assert_allclose(got[1]["h"]["kernel"], lr["h/kernel"] * want[1]["h"]["kernel"], rtol=1e-6)
    with pytest.raises(ValueError, match="multiply_by_parameter_scale"):
        _plan("mup", "adafactor").optimizer(
            "adafactor", 0.1, base_kwargs={"multiply_by_parameter_scale": False}
        )
    with pytest.raises(ValueError, match="fan_axes"):
        plan.optimizer("factored", 0.1, base_kwargs={"fan_axes": None})


def test_lr_scaling_after_any_preconditioner():
    plan = _plan("sp", "adam")
    params = _params(32)
    got = _run(
        optax.chain(optax.scale_by_lion(), plan.lr_scaling(), optax.scale_by_learning_rate(0.1)), params
    )
    want = _run(optax.lion(0.1, weight_decay=0.0), params)
    lr = plan.values("lr")
    np.testing.assert_allclose(got[1]["h"]["kernel"], lr["h/kernel"] * want[1]["h"]["kernel"], rtol=1e-6)


def test_optimizer_under_jit_and_inject_hyperparams():
    plan = _plan("mup", "adam", eps_mode="per_layer")
    opt = optax.inject_hyperparams(plan.optimizer, static_args=("base",))(base="adam", learning_rate=0.1)
    params = _params(32)
    state = opt.init(params)
    step = jax.jit(lambda g, s, p: opt.update(g, s, p))
    updates, state = step(_params(32, seed=3), state, params)
    ref, _ = plan.optimizer("adam", 0.1).update(
        _params(32, seed=3), plan.optimizer("adam", 0.1).init(params), params
    )
    # (inject_hyperparams holds b2 in float32, which moves Adam's bias correction by ~1e-5)
    np.testing.assert_allclose(updates["h"]["kernel"], ref["h"]["kernel"], rtol=1e-4)
    decayed = optax.inject_hyperparams(plan.optimizer, static_args=("base",))(
        base="adam", learning_rate=0.1, weight_decay=0.5
    )
    state = decayed.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(decayed.update)(zeros, state, params)
    np.testing.assert_allclose(updates["h"]["kernel"], -0.1 * 0.5 * params["h"]["kernel"], rtol=1e-6)


def test_optimizer_inside_partition_multisteps_and_bf16():
    plan = _plan("mup", "adam", eps_mode="per_layer")
    params = _params(32)
    labels = {
        "in": {"kernel": "plan", "bias": "plan"},
        "h": {"kernel": "plan"},
        "out": {"kernel": "frozen", "bias": "plan"},
    }
    opt = optax.partition(
        {"plan": plan.optimizer("adamw", 0.1, weight_decay=0.1), "frozen": optax.set_to_zero()}, labels
    )
    got = _run(opt, params)
    want = _run(plan.optimizer("adamw", 0.1, weight_decay=0.1), params)
    np.testing.assert_array_equal(got[1]["out"]["kernel"], 0.0)
    np.testing.assert_allclose(got[1]["h"]["kernel"], want[1]["h"]["kernel"], rtol=1e-6)
    multi = optax.MultiSteps(plan.optimizer("adam", 0.1), every_k_schedule=2)
    got = _run(multi, params)
    assert (
        float(jnp.abs(got[0]["h"]["kernel"]).max()) == 0.0 and float(jnp.abs(got[1]["h"]["kernel"]).max()) > 0
    )
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    opt = plan.optimizer("adam", 0.1)
    updates, _ = opt.update(half, opt.init(half), half)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(plan.effective_params(half)))


def test_optimizer_errors():
    plan = _plan("mup", "adam")
    with pytest.raises(ValueError, match="built for 'adam'"):
        plan.optimizer("sgd", 0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        plan.optimizer("lamb", 0.1)
    with pytest.raises(ValueError, match="takes no argument"):
        plan.optimizer("adam", 0.1, base_kwargs={"foo": 1})
    with pytest.raises(ValueError, match="missing"):
        plan.optimizer("adam", 0.1).init({"h": {"kernel": jnp.zeros((32, 32))}})


# ---- forward -------------------------------------------------------------------------------------


def test_effective_params_and_wrap_apply():
    plan = _plan("mup", "adam")
    params = _params(32)
    eff = plan.effective_params(params)
    np.testing.assert_array_equal(eff["out"]["kernel"], 0.5 * params["out"]["kernel"])
    np.testing.assert_array_equal(eff["in"]["bias"], 2.0 * params["in"]["bias"])
    assert eff["h"]["kernel"] is params["h"]["kernel"]
    seen = {}

    def apply_fn(variables, x, scale=1.0):
        seen.update(variables)
        return x * scale

    out = plan.wrap_apply(apply_fn)({"params": params, "cache": 7}, 3.0, scale=2.0)
    assert out == 6.0 and seen["cache"] == 7
    np.testing.assert_array_equal(seen["params"]["out"]["kernel"], eff["out"]["kernel"])
    with pytest.raises(ValueError, match="shape"):
        plan.effective_params(_params(16))
    with pytest.raises(ValueError, match="missing"):
        plan.effective_params({"in": params["in"]})
    assert jax.tree.leaves(plan.roles(params)) == ["hidden", "embedding", "embedding", "fixed", "readout"]


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp", "mup_table8"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adafactor"])
def test_narrower_than_base_follows_the_same_power_laws(name, optimizer):
    """Every factor is ``mu^-c``: at ``mu = 1/2`` it is the ``mu = 4`` factor to the power ``-1/2``."""
    wide, narrow = _plan(name, optimizer, n=32), _plan(name, optimizer, n=4)
    for field in ("lr", "multiplier", "init", "eps"):
        np.testing.assert_allclose(_vals(narrow, field), np.power(_vals(wide, field), -0.5), rtol=1e-12)


def test_narrower_than_base_by_hand():
    # muP, Adam, full alignment: c = (1/2, 1, 1/2) for (embedding, hidden, readout); mu = 4 / 8.
    assert _vals(_plan("mup", "adam", n=4), "lr") == pytest.approx([2**0.5, 2**0.5, 2, 2**0.5, 1])


def test_named_parametrization_sp_global_is_sp_with_one_lr():
    assert RECIPES[0] == "sp_global" and set(RECIPES[1:]) == {"sp", "ntk", "mup", "mfp", "mup_table8", "umup"}
    p = named_parametrization("sp_global", "adamw", alignment="none")
    assert p == Parametrization("sp", "adamw", alignment="none", lr_mode="global")
    assert p.family == "adam"
    assert set(Plan(_specs(), p).values("lr").values()) == {1.0}
    assert named_parametrization("mup", "sgd") == Parametrization("mup", "sgd")
    with pytest.raises(ValueError, match="parametrization must be one of"):
        named_parametrization("sp_perlayer", "adam")

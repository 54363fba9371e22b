"""Adam-atan2 against a float64 numpy reference, optax.adam, and its defining properties."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.optim import ScaleByAdamAtan2State, adam_atan2, scale_by_adam_atan2

SHAPES = {"kernel": (4, 3), "bias": (3,), "conv": (2, 3, 2), "scalar": ()}


def _random_grads(seed: int, steps: int, dtype=np.float32) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            name: (rng.normal(size=shape) * rng.uniform(0.1, 10.0)).astype(dtype)
            for name, shape in SHAPES.items()
        }
        for _ in range(steps)
    ]


def _run(opt: optax.GradientTransformation, grads_seq: list, params: dict) -> tuple[list, object]:
    """Apply ``opt`` to a fixed gradient sequence (params stay fixed); return every step's updates."""
    state = opt.init(params)
    update = jax.jit(opt.update)
    out = []
    for grads in grads_seq:
        updates, state = update(jax.tree.map(jnp.asarray, grads), state, params)
        out.append(jax.tree.map(np.asarray, updates))
    return out, state


def _numpy_adam_atan2(grads_seq: list, b1=0.9, b2=0.999, a=1.27, b=1.0) -> tuple[list, dict, dict]:
    """The textbook algorithm in float64: EMAs, bias correction, ``a * arctan2(m_hat, b sqrt(v_hat))``."""
    m = {k: np.zeros(np.shape(g), np.float64) for k, g in grads_seq[0].items()}
    v = {k: np.zeros(np.shape(g), np.float64) for k, g in grads_seq[0].items()}
    out = []
    for t, grads in enumerate(grads_seq, start=1):
        step = {}
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            step[k] = a * np.arctan2(m_hat, b * np.sqrt(v_hat))
        out.append(step)
    return out, m, v


def _params(dtype=jnp.float32) -> dict:
    return {name: jnp.zeros(shape, dtype) for name, shape in SHAPES.items()}


def _assert_steps_close(got: list, want: list, **tol) -> None:
    for t, (g_step, w_step) in enumerate(zip(got, want, strict=True)):
        for k in w_step:
            np.testing.assert_allclose(g_step[k], w_step[k], err_msg=f"step {t + 1}, leaf {k}", **tol)


@pytest.mark.parametrize(
    "hparams",
    [{}, {"b1": 0.8, "b2": 0.95, "a": 1.0, "b": 2.0}, {"b1": 0.0, "b2": 0.5, "a": 0.5, "b": 0.3}],
)
def test_matches_numpy_reference_float32(hparams):
    grads = _random_grads(0, 12)
    got, state = _run(scale_by_adam_atan2(**hparams), grads, _params())
    want, m, v = _numpy_adam_atan2(grads, **hparams)
    # float32 arithmetic; b2 = 0.999 itself is off by 1.3e-5 relative in (1 - b2) when rounded to float32.
    _assert_steps_close(got, want, rtol=1e-5, atol=1e-5)
    assert isinstance(state, ScaleByAdamAtan2State)
    assert int(state.count) == 12
    for k in SHAPES:
        np.testing.assert_allclose(state.mu[k], m[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.nu[k], np.sqrt(v[k]), rtol=1e-5)  # nu stores sqrt(v)


def test_matches_numpy_reference_float64():
    grads = _random_grads(1, 10, np.float64)
    with jax.enable_x64(True):
        got, _ = _run(scale_by_adam_atan2(b1=0.9, b2=0.99), grads, _params(jnp.float64))
        assert all(u.dtype == np.float64 for u in got[0].values())
    want, _, _ = _numpy_adam_atan2(grads, b1=0.9, b2=0.99)
    # Only the arctangent polynomial's error (2.5e-7) times a remains.
    _assert_steps_close(got, want, rtol=0, atol=1.27 * 3e-7)


@pytest.mark.parametrize("a, b", [(1.27, 1.0), (1.0, 2.0)])
def test_small_ratio_regime_is_adam_with_scaled_lr(a, b):
    # Alternating signs plus a small bias: the gradient mean is 2% of its spread. After the bias
    # correction's transient, |m_hat| / sqrt(v_hat) ~= 0.1/1.9 + 0.02 ~= 0.07, where
    # atan(z) = z (1 - z^2/3 + ...) differs from z by < 0.2%.
    rng = np.random.default_rng(2)
    sigma = {k: rng.uniform(0.5, 2.0, size=shape) for k, shape in SHAPES.items()}
    grads = [{k: (((-1) ** t + 0.02) * s).astype(np.float32) for k, s in sigma.items()} for t in range(40)]
    lr = 1e-2
    got, _ = _run(adam_atan2(lr, a=a, b=b), grads, _params())
    want, _ = _run(optax.adam(a * lr / b, eps=0.0), grads, _params())
    for g_step, w_step in zip(got[20:], want[20:]):
        for k in SHAPES:
            np.testing.assert_allclose(g_step[k], w_step[k], rtol=5e-3)
    # Step 1 (|m_hat| = sqrt(v_hat)) is outside the regime: there the two differ by far more than 0.5%.
    assert np.all(np.abs(got[0]["kernel"] / want[0]["kernel"] - 1) > 0.05)


def _max_rel_change(updates: list, reference: list) -> float:
    return max(
        float(np.max(np.abs(u[k].astype(np.float64) - r[k]) / np.abs(r[k])))
        for u, r in zip(updates, reference)
        for k in r
    )


def test_scale_invariance_float32():
    grads = _random_grads(3, 10)
    params = _params()
    base, _ = _run(scale_by_adam_atan2(), grads, params)
    adam_base, _ = _run(optax.scale_by_adam(eps=1e-8), grads, params)
    for s in (1e-30, 1e-15, 1e-8, 1e8, 1e30):
        scaled = [{k: (g * np.float64(s)).astype(np.float32) for k, g in step.items()} for step in grads]
        got, _ = _run(scale_by_adam_atan2(), scaled, params)
        # Elementwise: the scaled gradients are rounded to float32, and momentum cancellation can amplify
        # that to a few 1e-6 relative on near-zero coordinates.
        _assert_steps_close(got, base, rtol=1e-5, atol=1e-7)
        if s in (1e-15, 1e-8):  # gradients at or below eps = 1e-8: Adam's step shrinks
            adam_scaled, _ = _run(optax.scale_by_adam(eps=1e-8), scaled, params)
            assert _max_rel_change(adam_scaled, adam_base) > 0.1, s


def test_scale_invariance_float64_down_to_1e_minus_30():
    grads = _random_grads(4, 10, np.float64)
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        base, _ = _run(scale_by_adam_atan2(), grads, params)
        for s in (1e-30, 1e-15, 1e-8, 1e8, 1e30):
            scaled = [{k: g * s for k, g in step.items()} for step in grads]
            got, _ = _run(scale_by_adam_atan2(), scaled, params)
            _assert_steps_close(got, base, rtol=1e-10, atol=1e-14)


def test_zero_gradients_give_exact_zeros():
    zeros = [{k: np.zeros(shape, np.float32) for k, shape in SHAPES.items()} for _ in range(5)]
    got, state = _run(scale_by_adam_atan2(), zeros, _params())
    alias_got, _ = _run(adam_atan2(1e-3), zeros, _params())
    for step in got + alias_got:
        for u in step.values():
            np.testing.assert_array_equal(u, np.zeros_like(u))
    for moment in jax.tree.leaves((state.mu, state.nu)):
        np.testing.assert_array_equal(moment, np.zeros_like(moment))


def test_zero_gradients_after_nonzero_keep_finite_momentum():
    grads = _random_grads(5, 3) + [{k: np.zeros(shape, np.float32) for k, shape in SHAPES.items()}] * 4
    got, _ = _run(scale_by_adam_atan2(), grads, _params())
    want, _, _ = _numpy_adam_atan2(grads)
    _assert_steps_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("magnitude", [1e-30, 1e-20, 1e20, 1e30])
def test_extreme_constant_gradients_are_finite_and_correct(magnitude):
    # A constant gradient has m_hat = g and sqrt(v_hat) = |g| at every step: u = a * pi/4 * sign(g).
    signs = {
        k: np.where(np.arange(np.prod(shape)).reshape(shape) % 2 == 0, 1.0, -1.0)
        for k, shape in SHAPES.items()
    }
    grads = [{k: (magnitude * s).astype(np.float32) for k, s in signs.items()} for _ in range(10)]
    got, state = _run(scale_by_adam_atan2(), grads, _params())
    for step in got:
        for k, u in step.items():
            np.testing.assert_allclose(u, 1.27 * np.pi / 4 * signs[k], rtol=1e-5)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(state))


def test_gradients_spanning_1e_minus_30_to_1e30_match_reference():
    rng = np.random.default_rng(6)
    grads = [
        {
            k: (10.0 ** rng.uniform(-30, 30, size=shape) * rng.choice([-1.0, 1.0], size=shape)).astype(
                np.float32
            )
            for k, shape in SHAPES.items()
        }
        for _ in range(10)
    ]
    got, state = _run(adam_atan2(1.0), grads, _params())
    want, _, _ = _numpy_adam_atan2(grads)
    _assert_steps_close(got, [{k: -u for k, u in step.items()} for step in want], rtol=1e-5, atol=1e-5)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(state))


def test_updates_are_bounded_by_a_pi_over_two():
    grads = _random_grads(7, 10)
    got, _ = _run(scale_by_adam_atan2(a=0.7), grads, _params())
    assert max(float(np.max(np.abs(u))) for step in got for u in step.values()) <= 0.7 * np.pi / 2


def test_alias_weight_decay_is_multiplied_by_scheduled_lr_and_masked():
    grads = _random_grads(8, 10)
    rng = np.random.default_rng(9)
    params0 = {k: rng.normal(size=shape).astype(np.float32) for k, shape in SHAPES.items()}
    mask = {k: k != "bias" for k in SHAPES}
    wd = 0.1
    schedule = optax.linear_schedule(1e-2, 1e-3, 10)
    opt = adam_atan2(schedule, weight_decay=wd, mask=mask)
    params, state = jax.tree.map(jnp.asarray, params0), opt.init(params0)
    step = jax.jit(lambda g, s, p: opt.update(g, s, p))
    pre, _, _ = _numpy_adam_atan2(grads)
    want = {k: p.astype(np.float64) for k, p in params0.items()}
    for t, grads_t in enumerate(grads):
        updates, state = step(grads_t, state, params)
        params = optax.apply_updates(params, updates)
        lr = 1e-2 + (1e-3 - 1e-2) * t / 10
        for k in want:
            want[k] = want[k] - lr * (pre[t][k] + (wd * want[k] if mask[k] else 0.0))
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-6)


def test_dtypes_follow_params_unless_mu_dtype():
    grads = _random_grads(10, 3)
    params = _params(jnp.bfloat16)
    bf16_grads = [{k: jnp.asarray(g, jnp.bfloat16) for k, g in step.items()} for step in grads]
    got, state = _run(scale_by_adam_atan2(), bf16_grads, params)
    assert all(u.dtype == jnp.bfloat16 for u in got[-1].values())
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves((state.mu, state.nu)))
    # bfloat16 storage, float32 arithmetic: close to the float32 run on the same (rounded) gradients.
    ref, _ = _run(
        scale_by_adam_atan2(),
        [jax.tree.map(lambda g: g.astype(jnp.float32), s) for s in bf16_grads],
        _params(),
    )
    for k in SHAPES:
        np.testing.assert_allclose(got[-1][k].astype(np.float32), ref[-1][k], atol=0.05)
    _, state = _run(scale_by_adam_atan2(mu_dtype=jnp.float32), bf16_grads, params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.mu))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.nu))


def test_all_hyperparameters_injectable():
    grads = _random_grads(11, 4)
    hparams = {"learning_rate": 0.1, "b1": 0.8, "b2": 0.9, "a": 1.1, "b": 0.7, "weight_decay": 0.01}
    direct, _ = _run(adam_atan2(**hparams), grads, _params())
    injected, state = _run(optax.inject_hyperparams(adam_atan2)(**hparams), grads, _params())
    _assert_steps_close(injected, direct, rtol=1e-6, atol=1e-8)
    assert set(hparams) <= set(state.hyperparams)


def test_none_and_masked_leaves_pass_through():
    params = {"a": jnp.ones(3), "frozen": None}
    opt = scale_by_adam_atan2()
    state = opt.init(params)
    updates, _ = opt.update({"a": jnp.ones(3), "frozen": None}, state)
    assert updates["frozen"] is None
    np.testing.assert_allclose(updates["a"], 1.27 * np.pi / 4, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"b1": 1.0}, "b1"),
        ({"b1": -0.1}, "b1"),
        ({"b2": 1.0}, "b2"),
        ({"b2": 1.5}, "b2"),
        ({"a": 0.0}, "a"),
        ({"a": -1.0}, "a"),
        ({"b": 0.0}, "b"),
        ({"b": -2.0}, "b"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        scale_by_adam_atan2(**kwargs)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        adam_atan2(1e-3, **kwargs)


def test_negative_weight_decay_raises():
    with pytest.raises(ValueError, match="^weight_decay must"):
        adam_atan2(1e-3, weight_decay=-0.1)

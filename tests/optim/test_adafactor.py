"""paramlab.optim.adafactor: the paper's algorithm (float64 numpy, step by step), optax, transforms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab.nn import FanAxes
from paramlab.optim import adafactor

STEPS = 12
SHAPES = {
    "dense": (160, 130),  # factored by the default rule (second-largest axis >= 128)
    "query": (128, 2, 64),  # factored by its declared fan axes: 128 fan-in x (2 * 64) fan-out
    "small": (20, 30),  # below the size rule: full second moment
    "norm": (50,),
}
FANS = {"dense": None, "query": FanAxes((0,), (1, 2)), "small": None, "norm": None}
MATRIX_VIEW = {"dense": (160, 130), "query": (128, 128)}  # the factored leaves as the paper's n x m matrices


def _params(dtype=np.float32) -> dict:
    rng = np.random.default_rng(0)
    params = {k: (0.05 * rng.normal(size=s)).astype(dtype) for k, s in SHAPES.items()}
    params["norm"] = np.zeros(SHAPES["norm"], dtype)  # RMS(X) = 0: the eps2 floor
    return params


def _grads_sequence(steps: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {k: (rng.normal(size=s) * rng.uniform(1e-3, 1.0)).astype(np.float32) for k, s in SHAPES.items()}
        for _ in range(steps)
    ]


def _paper_adafactor(
    params,
    grads_seq,
    learning_rate=None,
    b1=None,
    weight_decay=None,
    decay_times_lr=True,
    decay_mask=None,
    d=1.0,
    eps1=1e-30,
    eps2=1e-3,
    c=0.8,
) -> list[dict]:
    """Shazeer & Stern (2018), Algorithm 4 with relative step, in float64; returns the params after each step.

    With ``b1`` the numerator is Adam's bias-corrected gradient EMA; ``weight_decay`` subtracts
    ``lr_t * wd * X`` (``decay_times_lr``) or ``wd * X``.
    """
    x = {k: np.asarray(p, np.float64) for k, p in params.items()}
    r, col, v, m = {}, {}, {}, {}
    trajectory = []
    for t, grads in enumerate(grads_seq, start=1):
        if learning_rate is None:
            rho = min(1e-2, 1 / np.sqrt(t))
        else:
            rho = learning_rate(t - 1) if callable(learning_rate) else learning_rate
        beta = 1 - t ** (-c)
        new_x = {}
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            if k in MATRIX_VIEW:
                g2 = (g * g + eps1).reshape(MATRIX_VIEW[k])
                r[k] = beta * r.get(k, 0.0) + (1 - beta) * g2.sum(axis=1)  # row sums (n)
                col[k] = beta * col.get(k, 0.0) + (1 - beta) * g2.sum(axis=0)  # column sums (m)
                v_hat = (np.outer(r[k], col[k]) / r[k].sum()).reshape(g.shape)
            else:
                v[k] = beta * v.get(k, 0.0) + (1 - beta) * (g * g + eps1)
                v_hat = v[k]
            num = g
            if b1 is not None:
                m[k] = b1 * m.get(k, 0.0) + (1 - b1) * g
                num = m[k] / (1 - b1**t)
            u = num / np.sqrt(v_hat)
            u_hat = u / max(1.0, np.sqrt(np.mean(u * u)) / d)
            alpha = max(eps2, np.sqrt(np.mean(x[k] ** 2))) * rho
            new_x[k] = x[k] - alpha * u_hat
            if weight_decay is not None and (decay_mask is None or decay_mask[k]):
                new_x[k] = new_x[k] - (rho if decay_times_lr else 1.0) * weight_decay * x[k]
        x = new_x
        trajectory.append(x)
    return trajectory


def _train_on(opt, params, grads_seq) -> list[dict]:
    """Apply ``opt`` to the gradient sequence, updating params; returns the params after each step."""

    def step(carry, grads):
        p, s = carry
        updates, s = opt.update(grads, s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), p

    stacked = jax.tree.map(lambda *g: jnp.stack(g), *grads_seq)
    params = jax.tree.map(jnp.asarray, params)
    _, history = jax.jit(lambda p, s, g: jax.lax.scan(step, (p, s), g))(params, opt.init(params), stacked)
    return [jax.tree.map(lambda h, i=i: np.asarray(h[i]), history) for i in range(len(grads_seq))]


def _assert_trajectories_close(got, want, **tol):
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        for k in w:
            np.testing.assert_allclose(g[k], w[k], err_msg=f"step {t + 1}, {k}", **tol)


def test_default_is_the_papers_algorithm():
    params, grads = _params(), _grads_sequence(STEPS, seed=1)
    got = _train_on(adafactor(fan_axes=FANS), params, grads)
    _assert_trajectories_close(got, _paper_adafactor(params, grads), rtol=1e-5, atol=1e-8)
    assert not np.allclose(got[-1]["norm"], 0.0)  # zero-initialised leaves move by eps2 * rho


@pytest.mark.parametrize(
    "learning_rate", [0.05, optax.linear_schedule(0.1, 0.01, STEPS)], ids=["constant", "schedule"]
)
def test_learning_rate_replaces_the_relative_step(learning_rate):
    params, grads = _params(), _grads_sequence(STEPS, seed=2)
    got = _train_on(adafactor(learning_rate, fan_axes=FANS), params, grads)
    want = _paper_adafactor(params, grads, learning_rate=learning_rate)
    _assert_trajectories_close(got, want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("times_lr", [True, False], ids=["times_lr", "independent_of_lr"])
def test_weight_decay_conventions(times_lr):
    params, grads = _params(), _grads_sequence(STEPS, seed=3)
    mask = {"dense": True, "query": True, "small": False, "norm": False}
    opt = adafactor(
        weight_decay=0.1, weight_decay_multiplied_by_lr=times_lr, weight_decay_mask=mask, fan_axes=FANS
    )
    got = _train_on(opt, params, grads)
    want = _paper_adafactor(params, grads, weight_decay=0.1, decay_times_lr=times_lr, decay_mask=mask)
    _assert_trajectories_close(got, want, rtol=1e-5, atol=1e-8)


def test_b1_is_an_adam_style_gradient_ema_before_normalising():
    params, grads = _params(), _grads_sequence(STEPS, seed=4)
    got = _train_on(adafactor(b1=0.9, fan_axes=FANS), params, grads)
    _assert_trajectories_close(got, _paper_adafactor(params, grads, b1=0.9), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("weight_decay", [None, 1e-3], ids=["no_decay", "decay"])
def test_matches_optax_adafactor_configured_alike(weight_decay):
    shapes = {"tall": (256, 130), "wide": (130, 256), "small": (10, 20), "vector": (300,)}
    rng = np.random.default_rng(5)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    ours = adafactor(0.01, weight_decay=weight_decay, weight_decay_multiplied_by_lr=False)
    theirs = optax.adafactor(0.01, weight_decay_rate=weight_decay)
    o_state, t_state = ours.init(params), theirs.init(params)
    o_update, t_update = jax.jit(ours.update), jax.jit(theirs.update)
    for _ in range(STEPS):
        grads = {
            k: jnp.asarray(rng.normal(size=s) * rng.uniform(0.1, 10), jnp.float32) for k, s in shapes.items()
        }
        got, o_state = o_update(grads, o_state, params)
        want, t_state = t_update(grads, t_state, params)
        for k in shapes:
            # Relative to the leaf's largest update: the decay term cancels part of some entries.
            scale = float(jnp.max(jnp.abs(want[k])))
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6 * scale, err_msg=k)


# transformations and dtypes ------------------------------------------------------------------------


def test_jit_inject_hyperparams_and_no_recompilation():
    params = jax.tree.map(jnp.asarray, _params())
    grads = _grads_sequence(3, seed=6)
    direct = adafactor(0.02, weight_decay=1e-2, fan_axes=FANS)
    injected = optax.inject_hyperparams(adafactor, static_args=("min_dim_size_to_factor",))(
        learning_rate=0.02, weight_decay=1e-2, fan_axes=FANS
    )
    traces = []

    @jax.jit
    def update(grads, state):
        traces.append(1)
        return injected.update(grads, state, params)

    d_state, i_state = direct.init(params), injected.init(params)
    d_update = jax.jit(direct.update)
    for g in grads:
        want, d_state = d_update(g, d_state, params)
        got, i_state = update(g, i_state)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9), got, want)
    i_state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
    i_state.hyperparams["weight_decay"] = jnp.asarray(0.0, jnp.float32)
    zero, _ = update(grads[0], i_state)
    assert len(traces) == 1
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(zero))


TARGET = {"vector": jnp.asarray([1.0, -1.0, 2.0]), "matrix": jnp.asarray([[1.0, 0.0], [-1.0, 1.0]])}


def _quadratic_loss(params):
    return sum(jnp.sum(jnp.square(params[k].astype(jnp.float32) - TARGET[k])) for k in TARGET)


def _fit(opt, loss_fn, params, steps):
    def step(carry, _):
        p, s = carry
        updates, s = opt.update(jax.grad(loss_fn)(p), s, p)
        return (optax.apply_updates(p, updates), s), None

    (final, _), _ = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), length=steps))(params, opt.init(params))
    return final


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(32)(x))
        x = nn.tanh(nn.Dense(32)(x))
        return nn.Dense(1)(x)


def test_converges_on_flax_mlp_regression_with_relative_step():
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
    y = jnp.sin(x @ jnp.asarray(rng.normal(size=(4, 1)), jnp.float32))
    model = _MLP()
    params = model.init(jax.random.key(0), x)["params"]

    def loss_fn(p):
        return jnp.mean(jnp.square(model.apply({"params": p}, x) - y))

    final = _fit(adafactor(min_dim_size_to_factor=16), loss_fn, params, 300)
    assert float(loss_fn(final)) < 0.1 * float(loss_fn(params))


def test_invalid_weight_decay_names_the_argument():
    with pytest.raises(ValueError, match="weight_decay"):
        adafactor(weight_decay=-1.0)
    with pytest.raises(ValueError, match="clipping_threshold"):
        adafactor(clipping_threshold=-1.0)

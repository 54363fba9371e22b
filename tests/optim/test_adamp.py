"""AdamP against a numpy port of the published algorithm (Heo et al., 2021; clovaai/AdamP).

The port works in the reference's layout (channels first: one row per output unit); paramlab's
Flax layout has the channels on the fan-out axes, so each leaf is viewed as ``(channels, rest)``
before it goes to the port. The gradients make every branch happen: orthogonal to each channel
(channel-wise projection), orthogonal only to the whole matrix (layer-wise), aligned with the
weights (no projection), and a vector (never projected).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramlab import optim

LR, B1, B2, EPS, WD, DELTA, WD_RATIO = 0.05, 0.9, 0.999, 1e-8, 0.02, 0.1, 0.1
FAN_OUT = {"channel": (1,), "layer": (1,), "aligned": (1,), "q": (1, 2), "b": (0,)}


def _rows(x, fan_out):
    """The reference's layout: fan-out axes first, flattened to ``(channels, rest)``."""
    moved = np.moveaxis(x, fan_out, range(len(fan_out)))
    return moved.reshape(int(np.prod([x.shape[a] for a in fan_out])), -1) if x.ndim > 1 else x


def _reference_projection(w, g, perturb):
    """clovaai/AdamP's ``_projection`` on channels-first 2-D arrays: (perturb, decay ratio, branch)."""
    for name, view in (("channel", lambda x: x), ("layer", lambda x: x.reshape(1, -1))):
        wv, gv = view(w), view(g)
        cos = np.abs(np.sum(wv * gv, 1)) / np.maximum(
            np.linalg.norm(wv, axis=1) * np.linalg.norm(gv, axis=1), EPS
        )
        if cos.max() < DELTA / np.sqrt(wv.shape[1]):
            w_n = w / (np.linalg.norm(wv, axis=1).reshape(-1, *[1] * (w.ndim - 1)) + EPS)
            dot = view(w_n * perturb).sum(1).reshape(-1, *[1] * (w.ndim - 1))
            return perturb - w_n * dot, WD_RATIO, name
    return perturb, 1.0, "none"


def _gradients(params, step):
    rng = np.random.default_rng(step)
    grads = {}
    for key, w in params.items():
        r = rng.normal(size=w.shape)
        if key in ("channel", "q"):  # orthogonal to every output unit
            rows, rr = _rows(w, FAN_OUT[key]), _rows(r, FAN_OUT[key])
            rr = rr - rows * (np.sum(rows * rr, 1, keepdims=True) / np.sum(rows * rows, 1, keepdims=True))
            moved = tuple(w.shape[a] for a in FAN_OUT[key]) + tuple(
                n for i, n in enumerate(w.shape) if i not in FAN_OUT[key]
            )
            r = np.moveaxis(rr.reshape(moved), range(len(FAN_OUT[key])), FAN_OUT[key])
        elif key == "layer":  # orthogonal to the whole matrix only
            r = r - w * np.sum(w * r) / np.sum(w * w)
        elif key == "aligned":
            r = r + 3 * w
        grads[key] = r
    return grads


def _reference(params, steps, nesterov):
    """The published update, step by step in float64; returns the params and the branches taken."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    history, branches = [], set()
    for t in range(1, steps + 1):
        grads = _gradients(params, t)
        history.append(grads)
        for k in params:
            g = grads[k]
            m[k] = B1 * m[k] + (1 - B1) * g
            v[k] = B2 * v[k] + (1 - B2) * g * g
            denom = np.sqrt(v[k]) / np.sqrt(1 - B2**t) + EPS
            perturb = (B1 * m[k] + (1 - B1) * g) / denom if nesterov else m[k] / denom
            ratio = 1.0
            if params[k].ndim > 1:
                fan = FAN_OUT[k]
                p_rows, step_rows, branch = _reference_projection(
                    _rows(params[k], fan), _rows(g, fan), _rows(perturb, fan)
                )
                shape = tuple(params[k].shape[a] for a in fan) + tuple(
                    n for i, n in enumerate(params[k].shape) if i not in fan
                )
                perturb = np.moveaxis(p_rows.reshape(shape), range(len(fan)), fan)
                ratio = step_rows
                branches.add((k, branch))
            params[k] = params[k] * (1 - LR * WD * ratio) - LR / (1 - B1**t) * perturb
    return params, history, branches


def _initial():
    rng = np.random.default_rng(0)
    shapes = {"channel": (5, 4), "layer": (6, 3), "aligned": (3, 4), "q": (4, 2, 3), "b": (4,)}
    return {k: rng.normal(size=s) for k, s in shapes.items()}


@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_the_reference_algorithm(nesterov):
    initial, steps = _initial(), 12
    want, grads, branches = _reference(initial, steps, nesterov)
    assert {("channel", "channel"), ("q", "channel"), ("layer", "layer"), ("aligned", "none")} <= branches
    fan_axes = {k: optim.FanAxes((), fan) for k, fan in FAN_OUT.items()}
    tx = optax.chain(
        optim.scale_by_adamp(B1, B2, EPS, WD, DELTA, WD_RATIO, nesterov, fan_axes=fan_axes),
        optax.scale_by_learning_rate(LR),
    )
    params = {k: jnp.asarray(v, jnp.float32) for k, v in initial.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in grads:
        updates, state = update({k: jnp.asarray(x, jnp.float32) for k, x in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)  # float32 vs float64


def test_without_projection_it_is_adamw():
    """A vanishing ``delta`` never projects: AdamP is then AdamW (decay multiplied by the learning rate)."""
    params = {k: jnp.asarray(v, jnp.float32) for k, v in _initial().items()}
    ours, theirs = optim.adamp(LR, weight_decay=WD, delta=1e-30), optax.adamw(LR, weight_decay=WD)
    s_ours, s_theirs, p_ours, p_theirs = ours.init(params), theirs.init(params), params, params
    for t in range(1, 11):
        rng = np.random.default_rng(t)  # generic gradients: no cosine comes near 0
        g = {k: jnp.asarray(rng.normal(size=x.shape), jnp.float32) for k, x in params.items()}
        u, s_ours = ours.update(g, s_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, u)
        u, s_theirs = theirs.update(g, s_theirs, p_theirs)
        p_theirs = optax.apply_updates(p_theirs, u)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p_ours, p_theirs)


def test_plan_factors_and_errors():
    params = {k: jnp.asarray(v, jnp.float32) for k, v in _initial().items()}
    tx = optim.optimizer("adamp", 0.1, weight_decay=0.1, lr_scales={k: 0.5 for k in params})
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)  # zero gradient: the decay alone, ratio 1
    np.testing.assert_allclose(updates["b"], -0.1 * 0.5 * 0.1 * params["b"], rtol=1e-6)
    with pytest.raises(ValueError, match="lr_coupled"):
        optim.optimizer("adamp", 0.1, weight_decay=0.1, weight_decay_mode="independent")
    with pytest.raises(ValueError, match="needs params"):
        optim.scale_by_adamp().update(zeros, optim.scale_by_adamp().init(params))
    with pytest.raises(ValueError, match="b1"):
        optim.adamp(0.1, b1=1.5)
    for bad in (
        dict(delta=0.0),
        dict(delta=-0.1),
        dict(delta=float("nan")),
        dict(wd_ratio=1.5),
        dict(wd_ratio=-0.1),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            optim.adamp(0.1, **bad)
        with pytest.raises(ValueError, match=next(iter(bad))):
            optim.optimizer("adamp", 0.1, **bad)

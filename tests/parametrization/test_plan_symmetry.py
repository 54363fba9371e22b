"""REFERENCE section 1's symmetry through plans, for what the Adam-only symmetry test does not cover:
in float64 SGD (``c <- c - 2 theta``), Adafactor (``c`` unchanged) and Table-8 muP train exactly like
their equivalents, and a per-layer Adam epsilon (section 3) keeps SP = NTK and muP = MFP exact even
when epsilon is not negligible, while a constant one breaks it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.linen import meta

from paramlab.models import MLP, MLPConfig
from paramlab.parametrization import Parametrization, make_plan

N0, N = 16, 128


def _losses(name, family, base, eps_mode="constant", steps=4, **opt_kwargs):
    with jax.enable_x64(True):
        make = lambda w: MLP(MLPConfig(in_dim=6, width=w, out_dim=3, activation="tanh"))
        x = jax.random.normal(jax.random.key(1), (16, 6), jnp.float64)
        y = jnp.sin(x[:, :3])
        parametrization = Parametrization(name, family, eps_mode=eps_mode)
        plan = make_plan(make, parametrization, base=N0, delta=2 * N0, target=N, inputs=(x,))
        model = make(N)
        own = meta.unbox(model.init(jax.random.key(0), x)["params"])  # the same draw for every name
        params = plan.rescale_init(jax.tree.map(lambda p: p.astype(jnp.float64), own))
        apply = plan.wrap_apply(model.apply)
        opt = plan.optimizer(base, 3e-2, **opt_kwargs)
        state = opt.init(params)
        losses = []
        for _ in range(steps):
            loss, grads = jax.value_and_grad(lambda p: jnp.mean((apply({"params": p}, x) - y) ** 2))(params)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            losses.append(float(loss))
        return np.array(losses)


@pytest.mark.parametrize("a,b", [("sp", "ntk"), ("mup", "mfp"), ("mup", "mup_table8")])
def test_sgd_equivalents_train_identically(a, b):
    kwargs = dict(momentum=0.9)
    np.testing.assert_allclose(
        _losses(a, "sgd", "sgd", **kwargs), _losses(b, "sgd", "sgd", **kwargs), rtol=1e-9
    )


def test_table8_mup_trains_like_mup_with_adam():
    kwargs = dict(eps=0.0)
    mup = _losses("mup", "adam", "adam", **kwargs)
    np.testing.assert_allclose(mup, _losses("mup_table8", "adam", "adam", **kwargs), rtol=1e-9)


def test_adafactor_sp_and_ntk_train_identically():
    # The parameter-scaled step absorbs theta (c unchanged); exact while every scaled leaf's RMS is
    # above eps2. (muP vs MFP differ here: their zero-initialised biases step by the eps2 floor in
    # stored units, and theta_embedding != 0 scales those steps differently.)
    small = dict(base_kwargs={"min_dim_size_to_factor": 8})
    sp = _losses("sp", "adafactor", "adafactor", **small)
    np.testing.assert_allclose(sp, _losses("ntk", "adafactor", "adafactor", **small), rtol=1e-9)


@pytest.mark.parametrize("a,b", [("sp", "ntk"), ("mup", "mfp")])
def test_epsilon_breaks_the_symmetry_unless_per_layer(a, b):
    eps = dict(eps=1e-3)  # comparable to the gradients: epsilon is not negligible
    per_layer = [_losses(n, "adam", "adam", eps_mode="per_layer", **eps) for n in (a, b)]
    np.testing.assert_allclose(per_layer[0], per_layer[1], rtol=1e-9)
    constant = [_losses(n, "adam", "adam", eps_mode="constant", **eps) for n in (a, b)]
    assert np.max(np.abs(constant[0] - constant[1]) / constant[0]) > 1e-4

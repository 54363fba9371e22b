"""docs/reference.md section 1's symmetry, end to end through plans: in float64, parametrizations of one
equivalence class (SP = NTK, muP = MFP = Table-8 muP) with their own exponents train identically,
and Adam's epsilon breaks that unless it is scaled per layer with the gradient (section 3).

Below the first block of tests: the same identities measured on loss *and* function values over a
training trajectory with cross-entropy, and the float32 view of the epsilon effect at large width.
SP and NTK (theta = (0, 1/2, 1/2) on embedding, hidden, readout) and muP and MFP
(theta = (1/2, 1/2, 1/2)) are each one function class under Adam with their matched (Table B) learning
rate exponents. The identity is exact only when the update is invariant to the gradient's scale: with
Adam-atan2 or with Adam at ``eps = 0``, in float64 the two members of a pair train identically (loss and
function values, rel <= 1e-9) at any width. Adam's ``eps = 1e-8`` is not scale-free: at large width the
NTK / MFP gradients (``n^-g`` with a larger ``g``, docs/reference.md section 3) come close to it and
their runs depart from SP / muP in float32, far above float32 rounding, while a per-layer
``eps_l = eps (n/n0)^-g_l`` or Adam-atan2 remove the departure (down to rounding).

The trajectory model is a 2-hidden-layer tanh MLP (tanh: no dead units, so Adam at ``eps = 0`` never
divides 0 by 0); base width 64, and widths whose ratio to it has an irrational square root (so the forward
multipliers and init scales really round).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.linen import meta

from paramlab.diagnostics import FAST_CPU_COMPILE, linen_plan_setup
from paramlab.models import MLP, MLPConfig, cross_entropy
from paramlab.parametrization import Parametrization, make_plan

N0, N = 16, 128


def _losses(
    name, family, base, eps_mode="constant", steps=4, absorb=False, decay_mode="lr_coupled", **opt_kwargs
):
    with jax.enable_x64(True):
        make = lambda w: MLP(MLPConfig(in_dim=6, width=w, out_dim=3, activation="tanh"))
        x = jax.random.normal(jax.random.key(1), (16, 6), jnp.float64)
        y = jnp.sin(x[:, :3])
        parametrization = Parametrization(
            name, family, eps_mode=eps_mode, absorb_multipliers=absorb, weight_decay_mode=decay_mode
        )
        plan = make_plan(make, parametrization, base=N0, delta=2 * N0, target=N, inputs=(x,))
        model = make(N)
        own = meta.unbox(model.init(jax.random.key(0), x)["params"])  # the same draw for every name
        params = plan.rescale_init(jax.tree.map(lambda p: p.astype(jnp.float64), own))
        apply = model.apply if absorb else plan.wrap_apply(model.apply)
        opt = plan.optimizer(base, 3e-2, **opt_kwargs)
        state = opt.init(params)
        losses = []
        for _ in range(steps):
            loss, grads = jax.value_and_grad(lambda p: jnp.mean((apply({"params": p}, x) - y) ** 2))(params)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            losses.append(float(loss))
        return np.array(losses)


CLASSES = [("sp", "ntk"), ("mup", "mfp"), ("mup", "mup_table8")]


@pytest.mark.parametrize("a,b", CLASSES)
@pytest.mark.parametrize(
    "family,base,kwargs",
    [
        ("adam", "adam", dict(eps=0.0)),
        ("adam", "adam_atan2", {}),
        ("sgd", "sgd", dict(momentum=0.9)),
    ],
)
def test_equivalent_parametrizations_train_identically(a, b, family, base, kwargs):
    np.testing.assert_allclose(
        _losses(a, family, base, **kwargs), _losses(b, family, base, **kwargs), rtol=1e-9
    )


ABSORBED = [
    ("adam", "adam", dict(eps=1e-8)),  # a constant epsilon: the fold scales it per leaf
    ("adam", "adamw", dict(weight_decay=0.1)),
    ("adam", "adamw", dict(weight_decay=0.1, decay_mode="independent")),
    ("adam", "adam_atan2", {}),
    ("sgd", "sgd", dict(momentum=0.9, weight_decay=0.1)),
    ("adafactor", "adafactor", dict(base_kwargs={"min_dim_size_to_factor": 8})),
]


@pytest.mark.parametrize("name", ["ntk", "mfp", "mup_table8"])
@pytest.mark.parametrize("family,base,kwargs", ABSORBED)
def test_absorbed_multipliers_train_like_wrapped_apply_with_the_model_own_apply(name, family, base, kwargs):
    """abc-symmetry: multipliers folded into init / LR / epsilon / decay, no ``wrap_apply`` needed."""
    wrapped = _losses(name, family, base, **kwargs)
    absorbed = _losses(name, family, base, absorb=True, **kwargs)
    np.testing.assert_allclose(absorbed, wrapped, rtol=1e-9)


def test_without_the_fold_the_model_own_apply_is_another_model():
    """The trap the fold removes: the plain apply of a wrapped plan's params trains something else."""
    with jax.enable_x64(True):
        make = lambda w: MLP(MLPConfig(in_dim=6, width=w, out_dim=3, activation="tanh"))
        x = jnp.ones((2, 6), jnp.float64)
        plans = {
            absorb: make_plan(
                make,
                Parametrization("mfp", "adam", absorb_multipliers=absorb),
                base=N0,
                delta=2 * N0,
                target=N,
                inputs=(x,),
            )
            for absorb in (False, True)
        }
        assert set(plans[True].values("multiplier").values()) == {1.0}
        assert set(plans[False].values("multiplier").values()) != {1.0}
        own = meta.unbox(make(N).init(jax.random.key(0), x)["params"])
        own = jax.tree.map(lambda p: p.astype(jnp.float64), own)
        wrapped = plans[False].wrap_apply(make(N).apply)({"params": plans[False].rescale_init(own)}, x)
        absorbed = make(N).apply({"params": plans[True].rescale_init(own)}, x)
        plain = make(N).apply({"params": plans[False].rescale_init(own)}, x)
        np.testing.assert_allclose(absorbed, wrapped, rtol=1e-12)
        assert not np.allclose(plain, wrapped, rtol=1e-3)


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


# ---- trajectories: loss and function values; float32 epsilon departure at large width --------

IN, OUT, BATCH, BASE, STEPS, LR = 16, 8, 32, 64, 6, 1e-2
PAIRS = [("sp", "ntk"), ("mup", "mfp")]


def _trajectory(name, width, *, dtype, base_optimizer="adam", eps_mode="constant", **optimizer_kwargs):
    """Losses and outputs (function values on the batch) before each of ``STEPS`` updates."""
    x = jax.random.normal(jax.random.key(1), (BATCH, IN), dtype)
    y = jax.random.randint(jax.random.key(2), (BATCH,), 0, OUT)
    setup = linen_plan_setup(
        lambda w: MLP(MLPConfig(IN, w, OUT, depth=2, activation="tanh")),
        Parametrization(name, "adam", eps_mode=eps_mode),
        x,
        lambda logits, t: cross_entropy(logits, t)[0],
        base_width=BASE,
        base_optimizer=base_optimizer,
        param_dtype=dtype,
        **optimizer_kwargs,
    )(width)
    tx = setup.optimizer(LR)

    def run(key):
        params = setup.init(key)
        assert all(p.dtype == dtype for p in jax.tree.leaves(params))

        def step(carry, _):
            params, state = carry
            (loss, acts), grads = jax.value_and_grad(setup.forward, has_aux=True)(params, (x, y))
            updates, state = tx.update(grads, state, params)
            return (jax.tree.map(jnp.add, params, updates), state), (loss, acts["output"])

        return jax.lax.scan(step, (params, tx.init(params)), length=STEPS)[1]

    losses, outputs = jax.jit(run, compiler_options=FAST_CPU_COMPILE)(jax.random.key(0))
    return np.asarray(losses, np.float64), np.asarray(outputs, np.float64)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _departure(pair, width, **kwargs):
    (la, oa), (lb, ob) = (_trajectory(name, width, **kwargs) for name in pair)
    return max(_rel(la, lb), _rel(oa, ob)), la


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize(
    "optimizer",
    [dict(base_optimizer="adam_atan2"), dict(base_optimizer="adam", eps=0.0)],
    ids=["atan2", "eps0"],
)
def test_float64_pairs_train_identically(pair, optimizer):
    with jax.enable_x64(True):
        departure, losses = _departure(pair, 512, dtype=jnp.float64, **optimizer)
    print(pair, optimizer, f"float64 rel difference {departure:.2e}")
    assert departure <= 1e-9
    assert losses[-1] < losses[0] - 0.05  # it trains


def test_float32_epsilon_breaks_the_symmetry_at_large_width():
    rows = {}
    for pair in PAIRS:
        large, _ = _departure(pair, 2048, dtype=jnp.float32, eps=1e-8)
        per_layer, _ = _departure(pair, 2048, dtype=jnp.float32, eps=1e-8, eps_mode="per_layer")
        atan2, _ = _departure(pair, 2048, dtype=jnp.float32, base_optimizer="adam_atan2")
        rows[pair] = dict(eps_2048=large, per_layer_eps_2048=per_layer, atan2_2048=atan2)
        print(pair, {k: f"{v:.2e}" for k, v in rows[pair].items()})
    for pair, r in rows.items():
        assert r["eps_2048"] > 1e-5, (pair, r)  # a real departure, far above float32 rounding
        for fix in ("per_layer_eps_2048", "atan2_2048"):
            assert r[fix] < 2e-6 and r[fix] * 20 < r["eps_2048"], (pair, fix, r)

"""u-muP's plan against its paper's table (Blake et al. 2024): unit init, multipliers 1/sqrt(fan_in)
(hidden) and 1/fan_in (readout) of the absolute fan-in, Adam LRs 1/sqrt(fan_in) and 1; and the
abc-symmetry that makes it muP."""

import math

import jax
import jax.numpy as jnp
import pytest

from paramlab.parametrization import RECIPES, Parametrization, Plan, infer_spec


def _shapes(n, ff):
    tree = {
        "in": {"kernel": (5, n), "bias": (n,)},
        "h": {"kernel": (n, ff)},
        "out": {"kernel": (ff, 3), "bias": (3,)},
    }
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, jnp.float32), tree, is_leaf=lambda x: isinstance(x, tuple)
    )


def _plan(name, optimizer, n=32, ff_ratio=2, **kw):
    specs = infer_spec(_shapes(8, 8 * ff_ratio), _shapes(16, 16 * ff_ratio), _shapes(n, n * ff_ratio))
    return Plan(specs, Parametrization(name, optimizer, **kw))


@pytest.mark.parametrize("n", [8, 32, 128])
def test_u_mup_table_with_absolute_fans(n):
    plan = _plan("umup", "adam", n=n)
    s = plan.scales
    fan_h, fan_out = n, 2 * n  # the hidden layer's fan-in is n; the readout's is d_ff = 2 n
    # hidden: unit init (the lecun std 1/sqrt(fan_in) times sqrt(fan_in)), multiplier and LR 1/sqrt(fan_in)
    assert s["h/kernel"].init == pytest.approx(math.sqrt(fan_h))
    assert s["h/kernel"].multiplier == pytest.approx(fan_h**-0.5)
    assert s["h/kernel"].lr == pytest.approx(fan_h**-0.5)
    # readout: unit init, multiplier 1/fan_in, LR 1
    assert s["out/kernel"].init == pytest.approx(math.sqrt(fan_out))
    assert s["out/kernel"].multiplier == pytest.approx(1 / fan_out)
    assert s["out/kernel"].lr == pytest.approx(1.0)
    # the input layer (fan-in fixed: an embedding) keeps its own init and multiplier 1; its Adam LR is
    # 1/sqrt(fan_out), the unit-scaling reference's rule for embedding tables; vectors keep everything
    assert (s["in/kernel"].init, s["in/kernel"].multiplier) == (1.0, 1.0)
    assert s["in/kernel"].lr == pytest.approx(n**-0.5)
    for path in ("in/bias", "out/bias"):
        assert (s[path].init, s[path].multiplier, s[path].lr) == (1.0, 1.0, 1.0)
    assert _plan("umup", "adafactor", n=n).scales["in/kernel"].lr == 1.0  # Adafactor: relative steps


def test_u_mup_is_mup_moved_by_the_abc_symmetry():
    # from the base width to n, the effective weight's init (m s) and Adam step (m lr) scale as muP's:
    # u-muP is muP with unit init, the same functions and updates up to the base width's constants, but for
    # the embedding LR
    def growth(name, n, path, field):
        scale = lambda p: p.scales[path].multiplier * getattr(p.scales[path], field)
        return scale(_plan(name, "adam", n=n)) / scale(_plan(name, "adam", n=8))

    for n in (32, 128):
        for path in ("in/kernel", "h/kernel", "out/kernel"):
            for field in ("init", "lr"):
                # u-muP's one departure from muP: the embedding table's LR shrinks like width^-1/2
                departure = (n / 8) ** -0.5 if (path, field) == ("in/kernel", "lr") else 1.0
                want = growth("mup", n, path, field) * departure
                assert growth("umup", n, path, field) == pytest.approx(want), (n, path, field)


def test_u_mup_is_a_recipe_refuses_sgd_and_uses_the_linear_attention_scale():
    assert "umup" in RECIPES
    assert Parametrization("umup", "adamw").resolved_attention_scale == "linear"
    assert Parametrization("umup", "adafactor").unit_scaled
    with pytest.raises(ValueError, match="umup.*SGD"):
        Parametrization("umup", "sgd")

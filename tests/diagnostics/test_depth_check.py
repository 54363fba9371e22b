"""Depth coordinate check on a residual MLP: the last block's feature change is flat in depth under
depth-muP and CompleteP, grows without a depth rule; CompleteP's per-block update is ~1/L; the
measurements match a numpy recomputation; bad input is named."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.diagnostics import depth_check, depth_check_summary, linen_depth_setup, plot_depth_check
from paramlab.models import ResidualMLP, ResidualMLPConfig
from paramlab.parametrization import Parametrization

X = jax.random.normal(jax.random.key(0), (32, 8))
Y = jax.random.normal(jax.random.key(1), (32, 4))
DEPTHS = [2, 8]


def _make(width, depth, branch_multiplier):
    return ResidualMLP(ResidualMLPConfig(8, width, 4, depth=depth, branch_multiplier=branch_multiplier))


def _mse(out, targets):
    return jnp.mean((out - targets) ** 2)


@functools.cache
def _summary(rule: str) -> dict:
    setup = linen_depth_setup(
        _make, Parametrization("mup", "adam", depth_rule=rule), X, _mse, width=32, base_depth=2
    )
    records = depth_check(setup, DEPTHS, (X, Y), steps=4, learning_rate=1e-2, label=rule)
    return depth_check_summary(records)[0]


def test_depth_rules_keep_the_feature_change_flat_and_width_only_mup_does_not():
    none, depth_mup, completep = (_summary(rule) for rule in ("none", "depth_mup", "completep"))
    assert none["delta_slope"] > 0.5  # width-only muP: the last block's change grows with depth
    assert abs(depth_mup["delta_slope"]) < 0.3
    assert abs(completep["delta_slope"]) < 0.4
    assert completep["update_slope"] < -0.8  # every block contributes ~1/L
    assert depth_mup["update_slope"] < -0.3  # ~1/sqrt(L)
    # init: without a rule the stream grows with depth; 1/sqrt(L) branches keep it flat; 1/L branches
    # shrink the blocks' share, so it falls toward the embedding's
    assert none["rms_slope"] > 0.5 and abs(depth_mup["rms_slope"]) < 0.3 and completep["rms_slope"] <= 0


def test_depth_mup_blocks_turn_lazy_with_depth_and_completep_blocks_do_not():
    """CompleteP's claim (Dey et al. 2025): alpha = 1/2 blocks approach their linearisation as depth
    grows; alpha = 1 blocks keep a depth-independent nonlinear share of their change."""
    depth_mup, completep = _summary("depth_mup"), _summary("completep")
    assert depth_mup["nonlinear_slope"] < -0.25
    assert completep["nonlinear_slope"] > depth_mup["nonlinear_slope"] + 0.15
    assert all(0 < v < 1 for v in completep["mean_nonlinear_fraction"])


def test_nonlinear_fraction_matches_its_closed_form_on_a_toy_stream():
    """h_0 = w0^2 x (quadratic in its own parameter), h_1 = w1 x + w0^2 x (linear in its own; moves
    with block 0 only if the masking leaks): block 0's fraction is |dw| / |w + w'|, block 1's is 0."""
    from paramlab.diagnostics.depth_check import _nonlinear_fraction

    x = jnp.linspace(-1.0, 1.0, 7)
    stream = lambda p: jnp.stack(
        [p["block_0"]["w"] ** 2 * x, p["block_1"]["w"] * x + p["block_0"]["w"] ** 2 * x]
    )
    init = {"block_0": {"w": jnp.float32(1.5)}, "block_1": {"w": jnp.float32(-0.7)}}
    trained = {"block_0": {"w": jnp.float32(1.9)}, "block_1": {"w": jnp.float32(0.4)}}
    fraction = _nonlinear_fraction(stream, init, trained, 2, "block_")
    np.testing.assert_allclose(fraction, [0.4 / 3.4, 0.0], atol=1e-6)


def test_measurements_match_numpy_at_zero_learning_rate_and_by_hand():
    """At learning rate 0 nothing moves; the init RMS per block is recomputed in numpy."""
    setup = linen_depth_setup(
        _make, Parametrization("mup", "adam", depth_rule="completep"), X, _mse, width=32, base_depth=2
    )
    records = depth_check(setup, [4], (X, Y), steps=2, learning_rate=0.0)
    assert all(r["delta_rms"] == r["update_rms"] == r["nonlinear_fraction"] == 0.0 for r in records)
    params = setup(4).init(jax.random.key(0))
    w = jax.tree.map(np.asarray, params)
    h = np.asarray(X) @ w["embed"]["kernel"]
    for i, record in enumerate(records):
        block = w[f"block_{i}"]
        h = h + 0.5 * (
            np.maximum(h @ block["fc_in"]["kernel"], 0) @ block["fc_out"]["kernel"]
        )  # m = (4/2)^-1
        np.testing.assert_allclose(record["rms"], np.sqrt(np.mean(h**2)), rtol=1e-5)


def test_seeds_run_together_as_they_run_alone():
    setup = linen_depth_setup(_make, Parametrization("mup", "adam"), X, _mse, width=32, base_depth=2)
    together = depth_check(setup, [2, 4], (X, Y), steps=2, seeds=(3, 5))
    alone = [r for seed in (3, 5) for r in depth_check(setup, [2, 4], (X, Y), steps=2, seeds=(seed,))]
    key = lambda r: (r["seed"], r["depth"], r["block"])
    for a, b in zip(sorted(together, key=key), sorted(alone, key=key), strict=True):
        assert key(a) == key(b)
        for k in ("rms", "delta_rms", "update_rms", "nonlinear_fraction"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), (key(a), k)
    assert {r["seed"] for r in together} == {3, 5}


def test_plot_is_written(tmp_path):
    setup = linen_depth_setup(_make, Parametrization("mup", "adam"), X, _mse, width=32, base_depth=2)
    plot_depth_check(depth_check(setup, [2, 4], (X, Y), steps=2, label="mup"), tmp_path / "depth.png")
    assert (tmp_path / "depth.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(depths=[2, 2]), "depths"),
        (dict(steps=0), "steps"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(seeds=(1, 1)), "seeds"),
        (dict(seeds=()), "seeds"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    setup = linen_depth_setup(_make, Parametrization("mup", "adam"), X, _mse, width=32, base_depth=2)
    with pytest.raises(ValueError, match=match):
        depth_check(setup, **{"depths": [2], "batch": (X, Y), **kwargs})


def test_a_model_without_the_named_blocks_is_an_error():
    setup = linen_depth_setup(_make, Parametrization("mup", "adam"), X, _mse, width=32, base_depth=2)
    with pytest.raises(ValueError, match="recorded no output for modules"):
        depth_check(setup, [2], (X, Y), block_prefix="layer_")

"""``experiments.layer_constants``: the per-role scaling equals the recipe's LR constants, the search's
choice, the paired gain, a tiny run, config errors."""

import json

import jax
import numpy as np
import optax
import pytest

from experiments import layer_constants, lr_transfer
from experiments.configs import layer_constants as default_config
from experiments.configs import lr_transfer as lr_transfer_config
from experiments.layer_constants_summary import gain_rows, search_rows
from experiments.transformer_cells import Cell, build_setting
from tests.experiments.tiny_grid import tiny_config

CONSTANTS = {"embedding": 2.0, "hidden": 0.5, "readout": 4.0}


def test_role_scaling_equals_the_recipes_learning_rate_constants():
    """Three Adam steps with the traced per-role scaling equal three with the constants in the recipe."""
    args = lr_transfer.parse_args(
        tiny_config(lr_transfer_config, widths="16,32"), {"out": "unused", "data": ""}
    )
    cell = Cell("mup", "none", 32, 2)
    plain, constant = build_setting(args, cell), build_setting(args, cell, learning_rates=CONSTANTS)
    scaled = optax.chain(plain.optimizer_fn(1e-2), layer_constants.scale_by_role(plain.plan, CONSTANTS))
    reference = constant.optimizer_fn(1e-2)
    params = plain.init_params(jax.random.key(0))
    batch = {"inputs": np.arange(16).reshape(2, 8) % 7, "targets": np.arange(16).reshape(2, 8) % 5}
    grad = jax.grad(lambda p: plain.loss_fn(p, batch)[0])
    p_a, p_b, s_a, s_b = params, params, scaled.init(params), reference.init(params)
    for _ in range(3):
        u_a, s_a = scaled.update(grad(p_a), s_a, p_a)
        u_b, s_b = reference.update(grad(p_b), s_b, p_b)
        p_a, p_b = optax.apply_updates(p_a, u_a), optax.apply_updates(p_b, u_b)
    for a, b in zip(jax.tree.leaves(p_a), jax.tree.leaves(p_b)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(p_a)[0], jax.tree.leaves(params)[0])


def _record(stage, seed, loss, width=64, embedding=1.0, hidden=1.0, readout=1.0, diverged=False):
    return {
        "stage": stage,
        "width": width,
        "seed": seed,
        "final_loss": loss,
        "diverged": diverged,
        "embedding": embedding,
        "hidden": hidden,
        "readout": readout,
    }


def test_search_picks_the_lowest_seed_mean_and_a_diverged_seed_disqualifies():
    records = [
        _record("search", 0, 2.0),
        _record("search", 1, 2.2),  # mean 2.1
        _record("search", 0, 1.9, hidden=2.0),
        _record("search", 1, 2.1, hidden=2.0),  # mean 2.0
        _record("search", 0, 1.0, readout=4.0),
        _record("search", 1, None, readout=4.0, diverged=True),
    ]
    assert layer_constants.best_combination(records) == {"embedding": 1.0, "hidden": 2.0, "readout": 1.0}
    rows = search_rows(records)
    assert [r["loss"] for r in rows[:2]] == pytest.approx([2.0, 2.1])
    assert rows[0]["loss_std"] == pytest.approx(np.std([1.9, 2.1], ddof=1))
    assert rows[-1]["loss"] == float("inf")


def test_gain_is_the_paired_difference_over_seeds():
    base = {3: 2.50, 4: 2.40, 5: 2.60}
    tuned = {3: 2.45, 4: 2.38, 5: 2.50}
    records = [_record("evaluate", s, v, width=512) for s, v in base.items()]
    records += [_record("evaluate", s, v, width=512, hidden=0.25) for s, v in tuned.items()]
    (row,) = gain_rows(records)
    diffs = np.array([base[s] - tuned[s] for s in base])
    assert row["gain"] == pytest.approx(diffs.mean()) and row["gain_std"] == pytest.approx(diffs.std(ddof=1))
    assert row["gain_percent"] == pytest.approx(100 * diffs.mean() / np.mean(list(base.values())))
    assert (row["hidden"], row["seeds"]) == (0.25, 3)


def test_tiny_run_searches_then_evaluates_on_fresh_seeds(tmp_path):
    config = tiny_config(default_config, widths="16,32", learning_rates="0.004", role_constants="0.5,1")
    args, constants, eval_seeds = layer_constants.parse_args(config, {"out": str(tmp_path), "data": ""})
    records = layer_constants.run(args, constants, eval_seeds, log=lambda s: None)
    search = [r for r in records if r["stage"] == "search"]
    evaluate = [r for r in records if r["stage"] == "evaluate"]
    assert len(search) == 2**3 * config.seeds and {r["width"] for r in search} == {16}
    assert {r["seed"] for r in evaluate}.isdisjoint({r["seed"] for r in search})
    assert {r["width"] for r in evaluate} == {16, 32}
    summary = json.loads((tmp_path / "layer_constants.json").read_text())
    assert [r["width"] for r in summary["gain"]] == [16, 32]
    assert (tmp_path / "layer_constants.png").stat().st_size > 0


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(learning_rates="0.001,0.002"), "one learning rate"),
        (dict(role_constants="0.5,2"), "including 1"),
        (dict(role_constants="0,1"), "positive"),
        (dict(widths="16"), "at least one more"),
        (dict(eval_seeds=0), "eval_seeds"),
    ],
)
def test_bad_config_is_one_line_error(tmp_path, overrides, match):
    config = tiny_config(default_config, **{"widths": "16,32", "learning_rates": "0.004", **overrides})
    with pytest.raises(ValueError, match=match):
        layer_constants.parse_args(config, {"out": str(tmp_path), "data": ""})

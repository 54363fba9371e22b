"""``experiments.stability``: a tiny end-to-end run, the summary against hand-built records (LR
sensitivity per seed by the formula, its mean and spread), and config errors."""

import math

import numpy as np
import pytest
from tiny_grid import tiny_config

from experiments import stability
from experiments.configs import stability as default_config
from experiments.stability_summary import sensitivity_rows


def _config(**overrides):
    return tiny_config(
        default_config, **{**dict(parametrization="mup", learning_rate_grid="1e-3,4,4000"), **overrides}
    )


def test_tiny_run_records_logits_and_writes_the_summary(tmp_path):
    args, variants, z_loss = stability.parse_args(_config(), {"out": str(tmp_path), "data": ""})
    records = stability.run(args, variants, z_loss, log=lambda line: None)
    assert len(records) == 2 * 2 * 2  # variants x lrs x seeds
    assert {r["variant"] for r in records} == {"plain", "qk_layernorm_z_loss"}
    for r in records:
        assert r["max_attention_logit"] >= r["last_attention_logit"] > 0
        assert r["max_output_logit"] >= r["last_output_logit"] > 0
    for name in ("sensitivity.txt", "sensitivity.json", "stability_lr.png", "stability_sensitivity.png"):
        assert (tmp_path / name).stat().st_size > 100


def test_sensitivity_rows_follow_the_formula_per_seed():
    lrs = [0.01, 0.1, 1.0]
    losses = {0: [2.0, 1.5, math.inf], 1: [2.2, 1.4, 3.5]}  # seed 1's last run is worse than init
    records = [
        {
            "parametrization": "mup",
            "variant": "plain",
            "width": 8,
            "learning_rate": lr,
            "seed": seed,
            "final_loss": losses[seed][i],
            "initial_loss": 3.0,
            "diverged": not math.isfinite(losses[seed][i]),
            "max_attention_logit": 10.0 ** (i + seed),
            "max_output_logit": 5.0,
        }
        for seed in (0, 1)
        for i, lr in enumerate(lrs)
    ]
    (row,) = sensitivity_rows(records)
    # Wortsman et al.: mean_k min(L_k, L0) - min_k L_k, a diverged run counting as L0
    per_seed = [np.mean([2.0, 1.5, 3.0]) - 1.5, np.mean([2.2, 1.4, 3.0]) - 1.4]
    assert row["lr_sensitivity"] == pytest.approx(np.mean(per_seed))
    assert row["lr_sensitivity_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["best_learning_rate"] == 0.1 and row["best_final_loss"] == pytest.approx(1.45)
    assert row["best_final_loss_std"] == pytest.approx(np.std([1.5, 1.4], ddof=1))
    assert row["n_diverged"] == 1
    assert row["attention_logit_at_min_lr"] == pytest.approx(5.5)  # mean of 1 and 10
    assert row["attention_logit_at_max_lr"] == pytest.approx(550.0)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(variants="plain,qk"), "variants"),
        (dict(variants="plain,plain"), "variants"),
        (dict(z_loss=-1.0), "z_loss"),
        (dict(z_loss=float("nan")), "z_loss"),
        (dict(depths="1,2", base_depth=1), "depths"),
    ],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        stability.parse_args(_config(**overrides), {"out": "x", "data": ""})

"""``experiments.weight_decay_transfer``: a tiny end-to-end run, the summary against hand-built
records (known optima, shifts and sigma ratios), and config errors."""

import json
import math

import numpy as np
import pytest
from tiny_grid import tiny_config

from experiments import weight_decay_transfer
from experiments.configs import weight_decay_transfer as default_config
from experiments.weight_decay_summary import optimum_rows, rule_summary


def _config(**overrides):
    return tiny_config(
        default_config,
        **{
            **dict(
                widths="16,32", spectral_iterations=4, learning_rate_grid="1e-3,2e-3,2", weight_decays="0.1,1"
            ),
            **overrides,
        },
    )


def test_tiny_run_writes_records_spectra_and_summary(tmp_path):
    args = weight_decay_transfer.parse_args(_config(widths="16"), {"out": str(tmp_path), "data": ""})
    records = weight_decay_transfer.run(args, log=lambda line: None)
    assert len(records) == 2 * 2 * 2 * 2  # rules x lrs x decays x seeds
    assert {r["weight_decay_rule"] for r in records} == {"transfer", "fixed"}
    assert {r["weight_decay"] for r in records} == {0.1, 1.0}
    for r in records:
        assert math.isfinite(r["final_loss"]) and r["tokens_per_parameter"] == pytest.approx(
            4 * 2 * 8 / r["parameters"]
        )
        sigmas = {k: v for k, v in r.items() if k.startswith("sigma_1/")}
        assert "sigma_1/block_0/mlp/fc_in/kernel" in sigmas and "sigma_1/readout/kernel" in sigmas
        assert not any("scale" in k for k in sigmas)  # vectors have no singular value
        assert all(v > 0 for v in sigmas.values())
    with open(tmp_path / "spectra.json") as f:
        spectra = json.load(f)
    assert all(s["step"] == [2, 4] for s in spectra)
    # the last probe is the record's final value
    one = next(s for s in spectra if s["path"] == "readout/kernel")
    match = [
        r
        for r in records
        if (r["weight_decay_rule"], r["width"], r["learning_rate"], r["weight_decay"], r["seed"])
        == (one["weight_decay_rule"], one["width"], one["learning_rate"], one["weight_decay"], one["seed"])
    ]
    assert match[0]["sigma_1/readout/kernel"] == pytest.approx(one["sigma_1"][-1])
    for name in ("optimum.txt", "optimum.json", "wd_transfer.png", "sigma_transfer.png", "sigma_curves.png"):
        assert (tmp_path / name).stat().st_size > 100


def _records():
    """Two rules x widths 8, 16, 32 x 3 LRs x 3 decays x 2 seeds with a known quadratic loss."""
    rng = np.random.default_rng(0)
    lrs, wds = [0.01, 0.02, 0.04], [0.1, 0.2, 0.4]
    out = []
    for rule, drift in (("transfer", 0), ("fixed", 1)):
        for w_i, width in enumerate((8, 16, 32)):
            best_lr = 1  # the transfer rule's optimum stays at (0.02, 0.2)
            best_wd = min(1 + drift * w_i, 2)  # the fixed rule's decay optimum moves one step per width
            for i, lr in enumerate(lrs):
                for j, wd in enumerate(wds):
                    for seed in (0, 1):
                        loss = 2 + 0.1 * (i - best_lr) ** 2 + 0.1 * (j - best_wd) ** 2 + 0.001 * rng.random()
                        out.append(
                            {
                                "weight_decay_rule": rule,
                                "width": width,
                                "learning_rate": lr,
                                "weight_decay": wd,
                                "seed": seed,
                                "final_loss": loss,
                                "tokens_per_parameter": 100 / width,
                                "sigma_1/h": (1.0 if rule == "transfer" else width / 8) * (1 + wd),
                            }
                        )
    return out


def test_summary_finds_the_joint_optimum_shifts_and_sigma_ratio():
    rows = optimum_rows(_records())
    by = {(r["weight_decay_rule"], r["width"]): r for r in rows}
    for width in (8, 16, 32):
        assert (by["transfer", width]["best_learning_rate"], by["transfer", width]["best_weight_decay"]) == (
            0.02,
            0.2,
        )
        assert by["transfer", width]["fitted_learning_rate"] == pytest.approx(0.02, rel=0.02)
    assert [by["fixed", w]["best_weight_decay"] for w in (8, 16, 32)] == [0.2, 0.4, 0.4]
    # the strongest decay (0.4) costs the curvature 0.1 one step from the transfer rule's optimum
    assert by["transfer", 16]["largest_decay_excess"] == pytest.approx(0.1, abs=0.002)
    assert by["fixed", 32]["largest_decay_excess"] == pytest.approx(0.0, abs=0.002)
    # transferred from width 8: fixed at width 32 pays the decay's curvature, 0.1 nats, in percent
    excess = by["fixed", 32]["transfer_excess_percent"]
    assert excess == pytest.approx(100 * 0.1 / by["fixed", 32]["best_final_loss"], rel=0.02)
    summary = {r["weight_decay_rule"]: r for r in rule_summary(rows)}
    assert summary["transfer"]["learning_rate_shift"] == 0 and summary["transfer"]["weight_decay_shift"] == 0
    assert summary["fixed"]["weight_decay_shift"] == 1
    assert summary["transfer"]["max_sigma_ratio"] == pytest.approx(1.0)
    assert summary["fixed"]["max_sigma_ratio"] == pytest.approx(4.0)  # sigma grows with width: 32 / 8


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(weight_decay_rule="transfer,proper"), "weight_decay_rule"),
        (dict(weight_decay_rule="transfer,transfer"), "weight_decay_rule"),
        (dict(weight_decay_mode="coupled"), "weight_decay_mode"),
        (dict(weight_decays="0,1"), "weight_decays"),
        (dict(weight_decays="nan"), "weight_decays"),
        (dict(spectral_iterations=0), "spectral_iterations"),
        (dict(depths="1,2", base_depth=1), "depths"),
    ],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        weight_decay_transfer.parse_args(_config(**overrides), {"out": "x", "data": ""})


def test_sigma_ratio_is_taken_over_the_spectral_scale():
    # sigma_1 growing like the spectral condition's sqrt(fan_out / fan_in) is width-invariant feature learning
    records = [{**r, "spectral_scale/h": r["width"] / 8} for r in _records()]
    summary = {r["weight_decay_rule"]: r for r in rule_summary(optimum_rows(records))}
    assert summary["fixed"]["max_sigma_ratio"] == pytest.approx(1.0)  # sigma ∝ width, scale ∝ width
    assert summary["transfer"]["max_sigma_ratio"] == pytest.approx(4.0)


def test_spectral_scales_follow_fan_sizes():
    from experiments.weight_decay_transfer import spectral_scales
    from paramlab.models import MLP, MLPConfig
    from paramlab.parametrization import Parametrization, make_plan

    make = lambda w: MLP(MLPConfig(in_dim=3, width=w, out_dim=5))
    plan = make_plan(
        make, Parametrization("mup", "adam"), base=8, delta=16, target=32, inputs=(np.zeros((1, 3)),)
    )
    scales = spectral_scales(plan)
    assert scales == pytest.approx(
        {
            "spectral_scale/dense_0/kernel": math.sqrt(32 / 3),
            "spectral_scale/dense_1/kernel": 1.0,
            "spectral_scale/readout/kernel": math.sqrt(5 / 32),
        }
    )

"""LR sensitivity (Wortsman et al.) on hand-made tables, values worked out by hand."""

import math

import pytest

from paramlab.diagnostics.sensitivity import lr_sensitivity, lr_sensitivity_table


def test_hand_computed_value():
    # clipped at L0 = 5: (3, 2, 4, 5) -> mean 3.5, best 2 -> 1.5
    assert lr_sensitivity([3.0, 2.0, 4.0, 6.0], loss_init=5.0) == pytest.approx(1.5)


def test_diverged_runs_count_as_the_initial_loss():
    # inf and nan -> 5: (3, 5, 5) -> mean 13/3, best 3
    assert lr_sensitivity([3.0, math.inf, math.nan], loss_init=5.0) == pytest.approx(13 / 3 - 3)


def test_flat_curve_is_zero_and_no_finite_loss_is_nan():
    assert lr_sensitivity([2.0, 2.0, 2.0], loss_init=5.0) == 0.0
    assert math.isnan(lr_sensitivity([math.inf, math.nan], loss_init=5.0))


def test_bad_input():
    with pytest.raises(ValueError, match="loss_init"):
        lr_sensitivity([1.0], loss_init=math.inf)
    with pytest.raises(ValueError, match="losses"):
        lr_sensitivity([], loss_init=1.0)


def test_table_averages_seeds_and_groups():
    rows = []
    # width 64: seeds average to (2, 3) at lr (0.1, 0.2); L0 = 4  -> mean 2.5 - best 2 = 0.5
    for seed, losses in ((0, (1.5, 3.5)), (1, (2.5, 2.5))):
        for lr, loss in zip((0.1, 0.2), losses):
            rows.append(
                {"width": 64, "learning_rate": lr, "seed": seed, "final_loss": loss, "initial_loss": 4.0}
            )
    # width 128: seed 1 diverges at lr 0.2 -> that point is inf -> clipped to L0 = 5: (1, 5) -> 3 - 1 = 2
    for seed, losses in ((0, (1.0, 2.0)), (1, (1.0, math.inf))):
        for lr, loss in zip((0.1, 0.2), losses):
            rows.append(
                {"width": 128, "learning_rate": lr, "seed": seed, "final_loss": loss, "initial_loss": 5.0}
            )
    table = lr_sensitivity_table(rows, group_by=("width",))
    assert [r["width"] for r in table] == [64, 128]
    assert table[0]["lr_sensitivity"] == pytest.approx(0.5)
    assert table[1]["lr_sensitivity"] == pytest.approx(2.0)
    assert table[1]["loss_init"] == 5.0 and table[1]["n_grid"] == 2

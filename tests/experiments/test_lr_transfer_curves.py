"""Training curves of an LR-transfer grid: window means, transferred-LR curves, depth horizons."""

import math

import numpy as np
import pytest

from experiments.lr_transfer_curves import curve_records, depth_horizons, transferred_curves
from experiments.transformer_cells import Cell


def test_curves_are_window_means_and_inf_once_diverged():
    losses = np.arange(10.0).reshape(5, 2)  # 5 steps, 2 members
    losses[3, 1] = np.inf
    members = [{"learning_rate": 1e-3, "seed": 0}, {"learning_rate": 2e-3, "seed": 0}]
    first, second = curve_records(Cell("mup", "completep", 64, 4), members, losses, every=2)
    assert first["step"] == [2, 4, 5]  # a short last window ends at the last step
    assert first["train_loss"] == pytest.approx([np.mean([0, 2]), np.mean([4, 6]), 8.0])
    assert (
        second["train_loss"][:1] == pytest.approx([np.mean([1, 3])]) and second["train_loss"][1] == math.inf
    )
    assert (first["depth_rule"], first["width"], first["depth"], second["learning_rate"]) == (
        "completep", 64, 4, 2e-3,
    )  # fmt: skip
    with pytest.raises(ValueError, match="2 members"):
        curve_records(Cell("mup", "none", 64, 4), members, losses[:, :1], every=2)


def _curve(recipe, depth, lr, seed, values):
    return {"recipe": recipe, "width": 64, "depth": depth, "learning_rate": lr, "seed": seed,
            "step": [10, 20, 30, 40], "train_loss": values}  # fmt: skip


def test_transferred_curves_average_the_seeds_at_the_transferred_lr():
    table = [{"recipe": "r", "width": 64, "depth": d, "transferred_learning_rate": 1e-3} for d in (2, 8)]
    curves = [
        _curve("r", 2, 1e-3, 0, [3.0, 2.8, 2.6, 2.5]),
        _curve("r", 2, 1e-3, 1, [3.2, 3.0, 2.8, 2.7]),
        _curve("r", 2, 2e-3, 0, [9.0, 9.0, 9.0, 9.0]),  # another LR: left out
        _curve("r", 8, 1e-3, 0, [3.5, 2.9, 2.5, None]),  # diverged at the end (null in JSON)
    ]
    rows = {r["depth"]: r for r in transferred_curves(curves, table)}
    assert rows[2]["train_loss"] == pytest.approx([3.1, 2.9, 2.7, 2.6]) and rows[2]["seeds"] == 2
    assert (
        rows[8]["train_loss"][:3] == pytest.approx([3.5, 2.9, 2.5]) and rows[8]["train_loss"][3] == math.inf
    )


def test_horizon_is_the_step_from_which_the_deeper_curve_stays_ahead():
    shallow = {"recipe": "r", "width": 64, "depth": 2, "learning_rate": 1e-3, "step": [10, 20, 30, 40],
               "train_loss": [3.0, 2.8, 2.6, 2.5]}  # fmt: skip
    ahead_late = {**shallow, "depth": 8, "train_loss": [2.9, 2.9, 2.5, 2.4]}  # ahead, behind, then ahead
    never = {**shallow, "depth": 16, "train_loss": [3.1, 2.9, 2.7, 2.6]}
    wide = [{**c, "width": 256} for c in (shallow, never)]
    horizons = depth_horizons([*wide, shallow, ahead_late, never])
    assert [(r["width"], r["depth"]) for r in horizons] == [(64, 8), (64, 16), (256, 16)]  # numeric order
    rows = {r["depth"]: r for r in horizons if r["width"] == 64}
    assert rows[8]["ahead_from_step"] == 30 and rows[8]["final_train_loss_gap"] == pytest.approx(-0.1)
    assert rows[16]["ahead_from_step"] is None and rows[16]["final_train_loss_gap"] == pytest.approx(0.1)
    assert rows[8]["shallow_depth"] == 2

"""``experiments.lr_transfer_ranking``: recipes ranked at their own best LR, gaps paired by seed."""

import math

import numpy as np
import pytest

from experiments.lr_transfer_ranking import ranking_markdown, ranking_rows


def _record(recipe, lr, seed, loss, width=256, diverged=False):
    return {
        "recipe": recipe,
        "width": width,
        "depth": 2,
        "learning_rate": lr,
        "seed": seed,
        "final_loss": None if diverged else loss,
        "diverged": diverged,
    }


def test_gap_is_paired_by_seed_at_each_recipes_own_best_lr():
    sp = {0: 2.50, 1: 2.60, 2: 2.40}
    mup = {0: 2.48, 1: 2.57, 2: 2.39}
    records = [_record("sp", 0.01, s, v) for s, v in sp.items()]
    records += [_record("mup", 0.02, s, v) for s, v in mup.items()]
    records += [_record("sp", 0.02, s, 1.0) for s in sp]  # not sp's best LR: ignored
    records.append(_record("mup", 0.02, 0, 9.0, width=64))  # a width with one recipe: no ranking
    table = [
        {"recipe": "sp", "width": 256, "depth": 2, "best_learning_rate": 0.01},
        {"recipe": "mup", "width": 256, "depth": 2, "best_learning_rate": 0.02},
        {"recipe": "mup", "width": 64, "depth": 2, "best_learning_rate": 0.02},
    ]
    leader, second = ranking_rows(records, table)
    assert (leader["recipe"], leader["rank"], second["recipe"], second["rank"]) == ("mup", 1, "sp", 2)
    gaps = np.array([sp[s] - mup[s] for s in sp])
    assert second["gap"] == pytest.approx(gaps.mean()) and second["gap_std"] == pytest.approx(
        gaps.std(ddof=1)
    )
    assert second["gap_std"] < np.std(list(sp.values()), ddof=1)  # pairing removes the shared seed spread
    assert leader["loss"] == pytest.approx(np.mean(list(mup.values())))
    assert "| 256 | 2 | 2 | sp |" in ranking_markdown([leader, second])


def test_a_diverged_seed_ranks_last_with_an_infinite_gap():
    records = [_record("a", 0.1, s, 2.0) for s in (0, 1)] + [
        _record("b", 0.1, 0, 1.0),
        _record("b", 0.1, 1, None, diverged=True),
    ]
    table = [{"recipe": r, "width": 256, "depth": 2, "best_learning_rate": 0.1} for r in "ab"]
    rows = ranking_rows(records, table)
    assert [r["recipe"] for r in rows] == ["a", "b"] and math.isinf(rows[1]["gap"])

"""The fitted optimum and its seed spread against closed forms and numpy worked in the test."""

import math

import numpy as np
import pytest

from paramlab.sweep import fitted_log2_optimum, optimum_statistics

GRID = [2.0**-k for k in range(9, 3, -1)]  # 2^-9 ... 2^-4


def _quadratic(center, curvature=0.1, floor=2.0):
    return [floor + curvature * (math.log2(lr) - center) ** 2 for lr in GRID]


def test_parabola_vertex_recovers_an_exact_quadratic_off_the_grid():
    assert fitted_log2_optimum(GRID, _quadratic(-6.3)) == pytest.approx(-6.3, abs=1e-9)


def test_vertex_uses_only_the_minimum_and_its_neighbours():
    losses = _quadratic(-6.0)
    losses[0] = 100.0  # far from the minimum: must not move the vertex
    assert fitted_log2_optimum(GRID, losses) == pytest.approx(-6.0, abs=1e-9)


@pytest.mark.parametrize(
    "losses",
    [
        [1.0, 2, 3, 4, 5, 6],  # minimum at the lower edge
        [6.0, 5, 4, 3, 2, 1],  # minimum at the upper edge
        [3.0, 2, 1, math.inf, 4, 5],  # a neighbour diverged
        [math.inf] * 6,
    ],
)
def test_no_vertex_without_a_bracketed_optimum(losses):
    assert fitted_log2_optimum(GRID, losses) is None


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="one length"):
        fitted_log2_optimum(GRID, [1.0, 2.0])


def _records(curves_by_seed, group="a"):
    return [
        {"recipe": group, "learning_rate": lr, "seed": seed, "final_loss": loss}
        for seed, curve in enumerate(curves_by_seed)
        for lr, loss in zip(GRID, curve)
    ]


def test_statistics_match_numpy_over_seeds():
    rng = np.random.default_rng(1)
    curves = [np.array(_quadratic(c)) + rng.normal(0, 0.003, len(GRID)) for c in (-6.2, -5.9, -6.1)]
    (row,) = optimum_statistics(_records(curves), ("recipe",), n_bootstrap=300, seed=3)
    mean = np.mean(curves, axis=0)
    best = int(np.argmin(mean))
    assert row["best_final_loss_std"] == pytest.approx(np.std([c[best] for c in curves], ddof=1))
    u = np.log2(GRID[best - 1 : best + 2])
    a, b, _ = np.polyfit(u, mean[best - 1 : best + 2], 2)
    assert row["fitted_learning_rate"] == pytest.approx(2.0 ** (-b / (2 * a)))
    # resampling seeds: the vertex spread is of the order of the seed centres' spread, not zero
    assert 0.01 < row["fitted_log2_learning_rate_std"] < 0.5


def test_identical_seeds_have_zero_spread_and_one_seed_has_none():
    curve = _quadratic(-6.4)
    (row,) = optimum_statistics(_records([curve, curve, curve]), ("recipe",))
    assert row["best_final_loss_std"] == 0.0
    assert row["fitted_log2_learning_rate_std"] == pytest.approx(0.0, abs=1e-12)
    (single,) = optimum_statistics(_records([curve]), ("recipe",))
    assert single["best_final_loss_std"] == 0.0 and single["fitted_log2_learning_rate_std"] is None
    assert math.log2(single["fitted_learning_rate"]) == pytest.approx(-6.4)


def test_a_diverged_seed_removes_its_grid_point_from_the_mean():
    good = _quadratic(-6.0)
    bad = list(good)
    bad[3] = math.inf  # log2 lr = -6: the true minimum, diverged in one seed
    (row,) = optimum_statistics(_records([good, bad]), ("recipe",))
    assert row["fitted_learning_rate"] is None  # the minimum's neighbour is gone: nothing bracketed


def test_groups_are_separate_and_sorted_and_seeds_must_match():
    records = _records([_quadratic(-5.5)], "b") + _records([_quadratic(-7.5)], "a")
    rows = optimum_statistics(records, ("recipe",))
    assert [r["recipe"] for r in rows] == ["a", "b"]
    assert [math.log2(r["fitted_learning_rate"]) for r in rows] == pytest.approx([-7.5, -5.5])
    with pytest.raises(ValueError, match="different seeds"):
        optimum_statistics(records[:-1] + [{**records[-1], "seed": 7}], ("recipe",))
    with pytest.raises(ValueError, match="lacks the keys"):
        optimum_statistics([{"recipe": "a", "learning_rate": 1.0}], ("recipe",))


def test_seed_std_is_the_sample_std_and_zero_for_one_seed():
    from paramlab.sweep import seed_std

    values = np.array([[1.0, 2.0], [3.0, 6.0], [2.0, 1.0]])
    np.testing.assert_allclose(
        seed_std(values), [1.0, np.sqrt(((2 - 3) ** 2 + (6 - 3) ** 2 + (1 - 3) ** 2) / 2)]
    )
    assert seed_std([2.5]) == 0.0

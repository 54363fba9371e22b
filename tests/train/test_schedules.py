"""Schedules against the closed forms written out in numpy."""

import numpy as np
import pytest

from paramlab.train.schedules import make_schedule


def _cosine_reference(t, peak, warmup, total, final):
    end = final * peak
    if t < warmup:
        return peak * t / warmup
    if t >= total:
        return end
    s = (t - warmup) / (total - warmup)
    return end + (peak - end) * (1 + np.cos(np.pi * s)) / 2


@pytest.mark.parametrize("warmup,final", [(0, 0.0), (10, 0.1), (25, 0.0)])
def test_cosine_matches_closed_form(warmup, final):
    schedule = make_schedule("cosine", 3e-3, total_steps=100, warmup_steps=warmup, final_fraction=final)
    for t in [0, 1, 5, 9, 10, 11, 37, 50, 99, 100, 150]:
        np.testing.assert_allclose(
            float(schedule(t)), _cosine_reference(t, 3e-3, warmup, 100, final), rtol=1e-5, atol=1e-9
        )


def test_constant_with_and_without_warmup():
    flat = make_schedule("constant", 0.5, total_steps=10)
    assert [float(flat(t)) for t in (0, 5, 100)] == [0.5, 0.5, 0.5]
    warm = make_schedule("constant", 0.5, total_steps=10, warmup_steps=4)
    np.testing.assert_allclose([float(warm(t)) for t in (0, 2, 4, 9)], [0.0, 0.25, 0.5, 0.5], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "linear"}, "schedule name"),
        ({"peak_value": 0.0}, "peak_value"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"final_fraction": 1.5}, "final_fraction"),
        ({"warmup_steps": 10, "total_steps": 10}, "warmup_steps"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"name": "cosine", "peak_value": 1e-3, "total_steps": 10, "warmup_steps": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_schedule(**args)

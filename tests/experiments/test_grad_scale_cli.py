"""``experiments.grad_scale``: the fitted exponents against docs/reference.md §3's table, the per-layer
epsilon's flat ratio, the summary's arithmetic, config errors."""

import json

import pytest

from experiments import grad_scale
from experiments.configs import grad_scale as default_config

# docs/reference.md §3: g for (embedding, hidden, readout) kernels
THEORY = {"sp": (0.5, 0.5, 0.0), "ntk": (0.5, 1.0, 0.5), "mup": (0.5, 1.0, 0.5), "mfp": (1.0, 1.5, 1.0)}
KERNELS = ("dense_0/kernel", "dense_1/kernel", "readout/kernel")


def test_summary_fits_the_power_law_and_extrapolates_the_underflow_width():
    widths, eps = [64, 256, 1024], 1e-8
    records = [
        {
            "parametrization": "ntk",
            "width": w,
            "seed": s,
            "path": "h",
            "role": "hidden",
            "rms": 1e-3 * (w / 64) ** -1.0 * (1 + 0.01 * s),
            "eps_scale": (w / 64) ** -1.0,
        }
        for w in widths
        for s in (0, 1)
    ]
    (row,) = grad_scale.summary_rows(records, eps)
    assert row["g"] == pytest.approx(1.0, abs=1e-9)
    mean_rms = 1e-3 * 1.005 / 16
    assert row["ratio_fixed"][-1] == pytest.approx(mean_rms / eps)
    assert row["ratio_per_layer"] == pytest.approx([1e-3 * 1.005 / eps] * 3)
    under = row["underflow_width"]  # the power law reaches RMS = 10 eps there
    assert mean_rms * (under / 1024) ** -1.0 == pytest.approx(10 * eps)


def test_a_gradient_that_does_not_shrink_never_underflows():
    records = [
        {
            "parametrization": "sp",
            "width": w,
            "seed": 0,
            "path": "r",
            "role": "readout",
            "rms": 1e-3,
            "eps_scale": 1.0,
        }
        for w in (64, 128)
    ]
    assert grad_scale.summary_rows(records, 1e-8)[0]["underflow_width"] is None


def test_measured_exponents_follow_the_reference_table(tmp_path):
    config = default_config.get_config()
    config.update(widths="64,256,1024", seeds=2)
    rows = grad_scale.run(*grad_scale.parse_args(config, {"out": str(tmp_path)}), log=lambda s: None)
    by = {(r["parametrization"], r["path"]): r for r in rows}
    for recipe, expected in THEORY.items():
        for path, g in zip(KERNELS, expected):
            assert by[(recipe, path)]["g"] == pytest.approx(g, abs=0.1), (recipe, path)
            ratio = by[(recipe, path)]["ratio_per_layer"]  # eps follows the gradient: flat
            assert max(ratio) / min(ratio) < 1.5, (recipe, path, ratio)
    summary = json.loads((tmp_path / "grad_scale_summary.json").read_text())
    assert len(summary) == len(rows) and (tmp_path / "grad_scale.png").stat().st_size > 0


@pytest.mark.parametrize(
    "overrides, match",
    [(dict(widths="64"), "at least two"), (dict(seeds=0), "seeds"), (dict(eps=0.0), "eps")],
)
def test_bad_config_is_one_line_error(overrides, match):
    config = default_config.get_config()
    config.update(overrides)
    with pytest.raises(ValueError, match=match):
        grad_scale.parse_args(config, {"out": "unused"})

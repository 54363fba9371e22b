"""``experiments.alignment_summary``: per-role alignment over training, the measured alignment, its flag."""

import json
import math

import numpy as np
import pytest

from experiments import alignment_summary, cli, lr_transfer
from experiments.configs import lr_transfer as lr_transfer_config
from paramlab.parametrization import alignment_exponents
from tests.experiments.tiny_grid import tiny_config

STEPS = [5, 10, 15]


def _record(layer, role, term, seed, values, lr=0.01, width=64, parametrization="sp"):
    return {
        "parametrization": parametrization,
        "depth_rule": "none",
        "width": width,
        "depth": 2,
        "learning_rate": lr,
        "seed": seed,
        "layer": layer,
        "role": role,
        "term": term,
        "step": STEPS,
        "exponent": list(values),
    }


def _records(rng):
    """Two seeds, two hidden layers and a readout with random exponents, plus records the summary
    must ignore (another LR, an embedding-role layer)."""
    values = {}
    records = []
    for seed in (0, 1):
        for layer, role in (("a", "hidden"), ("b", "hidden"), ("readout", "readout")):
            for term in ("alpha", "omega", "u"):
                v = rng.uniform(0.4, 1.0, size=len(STEPS))
                values[(seed, layer, term)] = v
                records.append(_record(layer, role, term, seed, v))
                records.append(_record(layer, role, term, seed, v + 5.0, lr=0.02))  # not the best LR
        records.append(_record("embed", "embedding", "alpha", seed, [9.0, 9.0, 9.0]))
    return records, values


def test_table_is_the_seed_statistics_of_the_role_mean():
    records, values = _records(np.random.default_rng(0))
    table = alignment_summary.alignment_table(records, {("sp", 64, 2): 0.01})
    rows = {(r["role"], r["term"]): r for r in table}
    assert set(rows) == {
        (role, t) for role in ("hidden", "readout") for t in ("alpha", "omega", "u", "limiting")
    }
    for term in ("alpha", "omega", "u"):
        per_seed = np.stack([(values[(s, "a", term)] + values[(s, "b", term)]) / 2 for s in (0, 1)])
        np.testing.assert_allclose(rows[("hidden", term)]["mean"], per_seed.mean(0), rtol=1e-12)
        np.testing.assert_allclose(rows[("hidden", term)]["std"], per_seed.std(0, ddof=1), rtol=1e-12)
    limiting = np.stack(
        [np.maximum(values[(s, "readout", "alpha")], values[(s, "readout", "u")]) for s in (0, 1)]
    )
    np.testing.assert_allclose(rows[("readout", "limiting")]["mean"], limiting.mean(0), rtol=1e-12)
    assert rows[("readout", "limiting")]["step"] == STEPS and rows[("readout", "limiting")]["seeds"] == 2


def test_measured_alignment_averages_the_limiting_exponent_and_round_trips_as_a_flag():
    rng = np.random.default_rng(1)
    records, values = _records(rng)
    table = alignment_summary.alignment_table(records, {("sp", 64, 2): 0.01})
    measured = alignment_summary.measured_alignment(table)["sp"]
    hidden = np.mean(
        [
            np.maximum(
                (values[(s, "a", "alpha")] + values[(s, "b", "alpha")]) / 2,
                (values[(s, "a", "u")] + values[(s, "b", "u")]) / 2,
            )
            for s in (0, 1)
        ]
    )
    assert measured["hidden"] == pytest.approx(hidden, rel=1e-12)
    flag = alignment_summary.alignment_flag(measured)
    parsed = cli.parse_alignment(flag)
    assert parsed == {"hidden": round(measured["hidden"], 2), "readout": round(measured["readout"], 2)}
    assert alignment_exponents(parsed) == parsed


def test_across_widths_recovers_the_scaling_exponent_where_per_width_exponents_are_biased():
    """Alignment ratios ``C fan_in^A`` (``C = 3, 4`` for the two seeds): each width's exponent
    ``A + log C / log fan_in`` is biased upwards, the slope across widths is ``A`` (two hidden layers,
    one with fan-in ``4 width``)."""
    true_a, c, widths = {"hidden": 0.8, "readout": 0.95}, 3.0, (64, 128, 256)
    records, per_width = [], []
    for seed in (0, 1):
        for width in widths:
            for layer, role, fan_in in (
                ("q", "hidden", width),
                ("fc_out", "hidden", 4 * width),
                ("readout", "readout", width),
            ):
                exponent = true_a[role] + np.log(c + seed) / np.log(fan_in)  # C = 3, 4: same slope
                per_width.append(exponent)
                for term, value in (("alpha", exponent), ("u", exponent - 0.1)):
                    record = _record(layer, role, term, seed, [value] * len(STEPS), width=width)
                    records.append({**record, "fan_in": fan_in})
    best = {("sp", w, 2): 0.01 for w in widths}
    across = alignment_summary.across_widths_alignment(records, best)["sp"]
    assert across["hidden"]["mean"] == pytest.approx(0.8, abs=1e-9)
    assert across["readout"]["mean"] == pytest.approx(0.95, abs=1e-9)
    assert across["hidden"]["std"] == pytest.approx(0.0, abs=1e-9)
    measured = alignment_summary.measured_alignment(alignment_summary.alignment_table(records, best))["sp"]
    assert measured["hidden"] > 0.8 + 0.15  # the per-width average carries log C / log n
    text = alignment_summary.markdown([], {}, {"sp": across})
    assert "alignment across widths, sp: hidden 0.80 ± 0.00, readout 0.95 ± 0.00" in text


def test_json_null_exponents_count_as_missing():
    records = [
        _record("a", "hidden", "alpha", 0, [0.6, None, 0.8]),
        _record("b", "hidden", "alpha", 0, [0.8, 0.7, None]),
    ]
    (row,) = alignment_summary.alignment_table(records, {("sp", 64, 2): 0.01})
    np.testing.assert_allclose(row["mean"], [0.7, 0.7, 0.8])


@pytest.mark.parametrize(
    "value, match",
    [
        ("hidden=0.8", "missing \\['readout'\\]"),
        ("hidden=x,readout=1", "not role=number"),
        ("foo", "role=number"),
    ],
)
def test_bad_per_role_alignment_flags_are_one_line_errors(value, match):
    with pytest.raises(ValueError, match=match):
        cli.parse_alignment(value)


def test_tiny_run_logs_trajectories_consistent_with_the_final_records(tmp_path):
    config = tiny_config(
        lr_transfer_config,
        parametrization="mup",
        widths="16,32",
        learning_rates="0.001,0.004",
        log_alignment=True,
        alignment="hidden=0.75,readout=0.9",
    )
    out = tmp_path / "out"
    records = lr_transfer.run(
        lr_transfer.parse_args(config, {"out": str(out), "data": ""}), log=lambda s: None
    )
    curves = json.loads((out / "alignment_curves.json").read_text())
    assert {c["role"] for c in curves} == {"hidden", "readout"}
    assert {c["step"][-1] for c in curves} == {config.steps}
    for r in records:  # the last point of every trajectory is the value the record keeps
        for c in curves:
            if (c["width"], c["learning_rate"], c["seed"]) == (r["width"], r["learning_rate"], r["seed"]):
                last = r[f"alignment/{c['term']}/{c['layer']}"]
                assert c["exponent"][-1] == pytest.approx(last, rel=1e-6) or (
                    last is None or math.isnan(last)
                )
    summary = json.loads((out / "alignment.json").read_text())
    assert set(summary["measured"]["mup"]) == {"hidden", "readout"}
    assert set(summary["across_widths"]["mup"]) == {"hidden", "readout"}
    assert {c["fan_in"] for c in curves if c["layer"] == "readout"} == {16, 32}
    assert (out / "alignment.png").stat().st_size > 0
    assert "measured alignment, mup" in (out / "alignment.md").read_text()
    rewritten = tmp_path / "rewritten"
    paths = {"out": str(rewritten), "data": "", "results": str(out / "results.json")}
    lr_transfer.main(config, paths)
    assert json.loads((rewritten / "alignment.json").read_text()) == summary
    # trajectories written before they carried the fan-in get it from the cells' plans
    (out / "alignment_curves.json").write_text(
        json.dumps([{k: v for k, v in c.items() if k != "fan_in"} for c in curves])
    )
    lr_transfer.main(config, paths)
    assert json.loads((rewritten / "alignment.json").read_text()) == summary

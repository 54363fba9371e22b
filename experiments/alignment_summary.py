r"""Alignment exponents over training: where each role sits between no and full alignment.

``experiments.lr_transfer --config.log_alignment=True`` probes every sweep member's alignment
exponents (:mod:`paramlab.diagnostics.alignment`; ``docs/reference.md`` §2) after each compiled call,
against its own initial parameters, and keeps them as one trajectory record per member, layer and term::

    {"parametrization", "depth_rule", "width", "depth", "learning_rate", "seed",
     "layer", "role", "term", "step": [...], "exponent": [...]}     # nan after a divergence

The summary reads them at each cell's best grid LR (the optimum table of
:mod:`experiments.lr_transfer_summary`): per role, the mean over that role's layers, then mean ± std
over seeds at every logged step (``alignment.json``, ``alignment.md``, ``alignment.png``). The
*limiting* exponent ``A = max(alpha, u)`` is what enters the per-layer LR exponents (Everett et al.,
2024, §3): ``1/2`` is the "none" assumption, ``1`` the "full" one. Two estimates of it are written as
the flag that trains with it (``--config.alignment=hidden=<A>,readout=<A>``): the *measured* alignment,
the per-width exponent averaged over the logged steps and widths, and the alignment *across widths*,
the slope of the log alignment ratio against the log fan-in (:func:`across_widths_alignment`), which is
what an LR exponent across widths needs: the per-width exponent carries ``log C / log n`` for a ratio
``C n^A``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from experiments.lr_transfer_summary import recipe_label
from experiments.summary_plots import figure, style_axes
from experiments.transformer_cells import member_fields
from paramlab.optim.common import sort_key
from paramlab.sweep import seed_std

__all__ = [
    "alignment_flag",
    "across_widths_alignment",
    "alignment_records",
    "alignment_table",
    "layer_kernels",
    "measured_alignment",
    "write_alignment",
]

ROLES = ("hidden", "readout")  # the roles whose fan-in grows with width: alignment enters their LR
NONE, FULL = 0.5, 1.0  # the limiting exponent under the "none" and "full" assumptions


def layer_kernels(specs: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """``{layer: (role, fan_in)}`` from a plan's specs: the role and fan-in (the product of the fan-in
    axes' sizes) of the layer's ``kernel`` parameter."""
    return {
        path[: -len("/kernel")]: (s.role, math.prod(s.shape[a] for a in s.fan_in))
        for path, s in specs.items()
        if path.endswith("/kernel")
    }


def alignment_records(
    cell: Any,
    members: Sequence[Mapping[str, Any]],
    probes: Mapping[str, np.ndarray],
    kernels: Mapping[str, tuple[str, int]],
) -> list[dict[str, Any]]:
    """One trajectory record per member, layer and term from one sweep's probe table
    (:attr:`paramlab.sweep.SweepResult.probes`: ``step`` and ``alignment/<term>/<layer>`` of shape
    ``(calls, members)``), with the layer's role and fan-in from ``kernels`` (:func:`layer_kernels`;
    role ``"unknown"`` and fan-in ``None`` for a layer it lacks)."""
    steps = [int(s) for s in probes["step"]]
    out = []
    for name, values in sorted(probes.items()):
        if not name.startswith("alignment/"):
            continue
        _, term, layer = name.split("/", 2)
        values = np.asarray(values, dtype=np.float64)
        role, fan_in = kernels.get(layer, ("unknown", None))
        for k, member in enumerate(members):
            out.append(
                {
                    **member_fields(cell, member),
                    "layer": layer,
                    "role": role,
                    "fan_in": fan_in,
                    "term": term,
                    "step": steps,
                    "exponent": [float(v) for v in values[:, k]],
                }
            )
    return out


def _at_best_lr(
    records: Sequence[Mapping[str, Any]], best_lrs: Mapping[tuple[str, int, int], float]
) -> Iterator[tuple[str, Mapping[str, Any], np.ndarray]]:
    """``(recipe label, record, exponents)`` for the records of a role in ``ROLES`` at their cell's LR in
    ``best_lrs``; a JSON ``null`` exponent (no value) is ``nan``."""
    for r in records:
        recipe = recipe_label(r["parametrization"], r["depth_rule"])
        lr = best_lrs.get((recipe, r["width"], r["depth"]))
        if r["role"] in ROLES and lr is not None and math.isclose(r["learning_rate"], lr):
            yield recipe, r, np.asarray([math.nan if v is None else v for v in r["exponent"]], float)


def alignment_table(
    records: Sequence[Mapping[str, Any]], best_lrs: Mapping[tuple[str, int, int], float]
) -> list[dict[str, Any]]:
    """Per (recipe, width, depth, role, term) at the cell's LR in ``best_lrs`` (keyed by recipe label,
    width, depth): ``step``, ``mean`` and ``std`` over seeds of the role's layer-mean exponent; the
    term ``"limiting"`` is ``max(alpha, u)`` per seed and step."""
    by_seed: dict[tuple, dict[int, list[np.ndarray]]] = {}
    steps: dict[tuple, list[int]] = {}
    for recipe, r, exponent in _at_best_lr(records, best_lrs):
        key = (recipe, r["width"], r["depth"], r["role"], r["term"])
        by_seed.setdefault(key, {}).setdefault(r["seed"], []).append(exponent)
        steps[key] = list(r["step"])
    per_seed = {  # key -> (seeds, steps): the mean over the role's layers
        key: np.stack([np.nanmean(np.stack(layers), axis=0) for _, layers in sorted(seeds.items())])
        for key, seeds in by_seed.items()
    }
    for key in [k for k in per_seed if k[-1] == "alpha"]:
        partner = (*key[:-1], "u")
        if partner in per_seed:
            per_seed[(*key[:-1], "limiting")] = np.maximum(per_seed[key], per_seed[partner])
            steps[(*key[:-1], "limiting")] = steps[key]
    rows = []
    for key in sorted(per_seed, key=sort_key):
        values = per_seed[key]
        recipe, width, depth, role, term = key
        rows.append(
            {
                "recipe": recipe,
                "width": width,
                "depth": depth,
                "role": role,
                "term": term,
                "seeds": values.shape[0],
                "step": steps[key],
                "mean": [float(v) for v in np.nanmean(values, axis=0)],
                "std": [float(v) for v in np.nanstd(values, axis=0, ddof=min(1, len(values) - 1))],
            }
        )
    return rows


def measured_alignment(table: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{recipe: {role: A}}``: the limiting exponent averaged over the logged steps and widths."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for r in table:
        if r["term"] == "limiting":
            values = [v for v in r["mean"] if math.isfinite(v)]
            pooled.setdefault(r["recipe"], {}).setdefault(r["role"], []).extend(values)
    return {
        recipe: {role: float(np.mean(v)) for role, v in roles.items() if v}
        for recipe, roles in pooled.items()
    }


def across_widths_alignment(
    records: Sequence[Mapping[str, Any]], best_lrs: Mapping[tuple[str, int, int], float]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{recipe: {role: {"mean", "std"}}}``: the alignment exponent as the LR rule uses it, the growth of
    the alignment ratio with the fan-in across widths.

    A layer's alignment ratio ``RMS(v M) / (RMS(v) RMS(M)) = fan_in^A_w`` is measured at each width; the
    rule needs how it *scales*, the slope of ``A_w log(fan_in)`` against ``log(fan_in)`` over the widths
    (a ratio ``C n^A`` with ``C != 1`` gives per-width exponents ``A + log C / log n``, biased at any
    finite width). Per layer, seed and logged step the slope of the limiting ``max(alpha, u)`` at each
    cell's best LR; averaged over steps and the role's layers, then mean ± std over seeds. Needs two
    widths and records with ``fan_in``.
    """
    logs: dict[tuple, dict[int, dict[str, tuple[int, np.ndarray]]]] = {}
    for recipe, r, exponent in _at_best_lr(records, best_lrs):
        if r["term"] not in ("alpha", "u") or r.get("fan_in") is None:
            continue
        key = (recipe, r["role"], r["layer"], r["seed"])
        logs.setdefault(key, {}).setdefault(r["width"], {})[r["term"]] = (r["fan_in"], exponent)
    per_seed: dict[tuple, dict[Any, list[float]]] = {}
    for (recipe, role, _, seed), by_width in logs.items():
        widths = sorted(w for w, terms in by_width.items() if len(terms) == 2)
        if len(widths) < 2:
            continue
        x = np.log([by_width[w]["alpha"][0] for w in widths])
        y = np.stack(
            [np.maximum(by_width[w]["alpha"][1], by_width[w]["u"][1]) * xi for w, xi in zip(widths, x)]
        )
        slopes = [np.polyfit(x, y[:, k], 1)[0] for k in range(y.shape[1]) if np.all(np.isfinite(y[:, k]))]
        if slopes:
            per_seed.setdefault((recipe, role), {}).setdefault(seed, []).append(float(np.mean(slopes)))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (recipe, role), seeds in per_seed.items():
        values = [float(np.mean(v)) for _, v in sorted(seeds.items())]
        out.setdefault(recipe, {})[role] = {"mean": float(np.mean(values)), "std": float(seed_std(values))}
    return out


def alignment_flag(measured: Mapping[str, float]) -> str:
    """``"hidden=0.81,readout=0.93"``: the ``--config.alignment`` value of a measured alignment."""
    return ",".join(f"{role}={measured[role]:.2f}" for role in ROLES if role in measured)


def write_alignment(
    records: Sequence[Mapping[str, Any]], optimum: Sequence[Mapping[str, Any]], out: str, title: str = ""
) -> str:
    """``alignment.json`` (the table and the measured alignment), ``alignment.md`` and ``alignment.png``
    from trajectory records and the optimum table's rows; returns the Markdown."""
    from paramlab.sweep import strict_json

    best = {(r["recipe"], r["width"], r["depth"]): r["best_learning_rate"] for r in optimum}
    table = alignment_table(records, best)
    measured = measured_alignment(table)
    across = across_widths_alignment(records, best)
    summary = {"table": table, "measured": measured, "across_widths": across}
    with open(os.path.join(out, "alignment.json"), "w") as f:
        json.dump(strict_json(summary), f, indent=1, allow_nan=False)
    text = markdown(table, measured, across)
    with open(os.path.join(out, "alignment.md"), "w") as f:
        f.write(text + "\n")
    if table:
        plot_alignment(table, os.path.join(out, "alignment.png"), title)
    return text


def markdown(
    table: Sequence[Mapping[str, Any]],
    measured: Mapping[str, Mapping[str, float]],
    across: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> str:
    """Per recipe, width and role: alpha, omega, u and the limiting exponent at the first and last
    logged step (mean ± std over seeds), then each recipe's measured alignment flag, per width and
    across widths."""
    cells: dict[tuple, dict[str, Mapping[str, Any]]] = {}
    for r in table:
        cells.setdefault((r["recipe"], r["width"], r["depth"], r["role"]), {})[r["term"]] = r
    fmt = lambda r, i: "-" if r is None else f"{r['mean'][i]:.2f} ± {r['std'][i]:.2f}"
    lines = [
        "| recipe | width | role | step | alpha | omega | u | A = max(alpha, u) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (recipe, width, _, role), terms in sorted(cells.items(), key=lambda kv: sort_key(kv[0])):
        steps = next(iter(terms.values()))["step"]
        for i in sorted({0, len(steps) - 1}):
            values = " | ".join(fmt(terms.get(t), i) for t in ("alpha", "omega", "u", "limiting"))
            lines.append(f"| {recipe} | {width} | {role} | {steps[i]} | {values} |")
    lines.append("")
    for recipe, roles in sorted(measured.items()):
        lines.append(f"measured alignment, {recipe}: `--config.alignment={alignment_flag(roles)}`")
    for recipe, roles in sorted((across or {}).items()):
        spread = ", ".join(f"{role} {v['mean']:.2f} ± {v['std']:.2f}" for role, v in sorted(roles.items()))
        flag = alignment_flag({role: min(1.0, max(0.0, v["mean"])) for role, v in roles.items()})
        lines.append(f"alignment across widths, {recipe}: {spread} (`--config.alignment={flag}`)")
    return "\n".join(lines)


def plot_alignment(table: Sequence[Mapping[str, Any]], path: str, title: str = "") -> None:
    """One panel per recipe (rows) and role (columns): alpha (solid) and u (dashed) against the step,
    one colour per width, ± std bands, with the "none" (1/2) and "full" (1) levels."""
    recipes = sorted({r["recipe"] for r in table})
    widths = sorted({r["width"] for r in table})
    colors = {w: f"C{i}" for i, w in enumerate(widths)}
    fig = figure(len(recipes), len(ROLES), title)
    for i, recipe in enumerate(recipes):
        for j, role in enumerate(ROLES):
            ax = fig.add_subplot(len(recipes), len(ROLES), i * len(ROLES) + j + 1)
            for r in table:
                if r["recipe"] != recipe or r["role"] != role or r["term"] not in ("alpha", "u"):
                    continue
                mean, std = np.asarray(r["mean"]), np.asarray(r["std"])
                style = "-" if r["term"] == "alpha" else "--"
                label = f"{r['term']}, width {r['width']}"
                ax.plot(r["step"], mean, style, color=colors[r["width"]], label=label)
                ax.fill_between(r["step"], mean - std, mean + std, color=colors[r["width"]], alpha=0.15)
            for level, name in ((NONE, "none"), (FULL, "full")):
                ax.axhline(level, color="gray", lw=0.8, ls=":")
                ax.annotate(name, (0, level), xycoords=("axes fraction", "data"), fontsize=7, color="gray")
            style_axes(ax, "step", "alignment exponent", f"{recipe}, {role}", legend_size=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

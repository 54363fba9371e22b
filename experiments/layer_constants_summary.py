"""The summary of ``experiments.layer_constants``: the search's best per-role constants and their gain.

From the records (``stage`` ``"search"`` or ``"evaluate"``, the per-role constants ``embedding``,
``hidden``, ``readout``, ``seed``, ``width``, ``final_loss``): the search table (every combination's
seed-mean loss ± std at the search width, best first) and, per width, the global constant (every
``G = 1``) against the best combination on the evaluation seeds, with the paired gain
``loss(global) - loss(per role)`` as mean ± std over seeds (``layer_constants.md`` / ``.json``,
``layer_constants.png``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from experiments.summary_plots import figure, style_axes
from paramlab.sweep import seed_std

__all__ = ["gain_rows", "search_rows", "write_summary"]

ROLES = ("embedding", "hidden", "readout")  # the roles with a searched constant (vectors count as embedding)


def _loss(r: Mapping[str, Any]) -> float:
    return math.inf if r["final_loss"] is None or r["diverged"] else float(r["final_loss"])


def _combination(r: Mapping[str, Any]) -> tuple[float, ...]:
    return tuple(float(r[role]) for role in ROLES)


def search_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per searched combination: its constants, ``seeds``, ``loss`` and ``loss_std`` (over
    seeds; ``inf`` if a seed diverged), best first."""
    by_combination: dict[tuple, list[float]] = {}
    for r in records:
        if r["stage"] == "search":
            by_combination.setdefault(_combination(r), []).append(_loss(r))
    rows = [
        {**dict(zip(ROLES, key)), "seeds": len(v), "loss": float(np.mean(v)), "loss_std": _std(v)}
        for key, v in by_combination.items()
    ]
    return sorted(rows, key=lambda row: (row["loss"], _combination(row)))


def _std(values: Sequence[float]) -> float:
    """The std over seeds, ``inf`` when a seed diverged."""
    return float(seed_std(values)) if np.all(np.isfinite(values)) else math.inf


def gain_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per width: the global constant's and the per-role combination's loss (mean ± std over the
    evaluation seeds) and the paired gain (mean ± std over seeds; positive = per role is better)."""
    global_key = (1.0,) * len(ROLES)
    by_width: dict[int, dict[tuple, dict[Any, float]]] = {}
    for r in records:
        if r["stage"] == "evaluate":
            by_width.setdefault(r["width"], {}).setdefault(_combination(r), {})[r["seed"]] = _loss(r)
    rows = []
    for width, combos in sorted(by_width.items()):
        tuned = [k for k in combos if k != global_key]
        key = tuned[0] if tuned else global_key
        base, best = combos.get(global_key, {}), combos[key]
        seeds = sorted(set(base) & set(best))
        gains = np.asarray([base[s] - best[s] for s in seeds])
        base_mean = float(np.mean([base[s] for s in seeds]))
        rows.append(
            {
                "width": width,
                **dict(zip(ROLES, key)),
                "seeds": len(seeds),
                "global_loss": base_mean,
                "global_loss_std": _std([base[s] for s in seeds]),
                "per_role_loss": float(np.mean([best[s] for s in seeds])),
                "per_role_loss_std": _std([best[s] for s in seeds]),
                "gain": float(np.mean(gains)),
                "gain_std": float(seed_std(gains)),
                "gain_percent": float(100 * np.mean(gains) / base_mean),
            }
        )
    return rows


def write_summary(
    records: Sequence[Mapping[str, Any]], out: str, title: str = "", log: Callable[[str], None] = print
) -> str:
    """``layer_constants.md`` / ``.json`` and ``layer_constants.png``; returns (and logs) the Markdown."""
    from paramlab.sweep import strict_json

    search, gains = search_rows(records), gain_rows(records)
    with open(os.path.join(out, "layer_constants.json"), "w") as f:
        json.dump(strict_json({"search": search, "gain": gains}), f, indent=1, allow_nan=False)
    text = markdown(search, gains, title)
    with open(os.path.join(out, "layer_constants.md"), "w") as f:
        f.write(text + "\n")
    plot(search, gains, os.path.join(out, "layer_constants.png"), title)
    log(text)
    return text


def markdown(search: Sequence[Mapping[str, Any]], gains: Sequence[Mapping[str, Any]], title: str) -> str:
    """The five best searched combinations, then the gain per width."""
    consts = lambda r: ", ".join(f"{r[role]:g}" for role in ROLES)
    lines = [
        title,
        "",
        "| embedding, hidden, readout | loss ± std (search seeds) |",
        "|---|---:|",
        *(f"| {consts(r)} | {r['loss']:.4f} ± {r['loss_std']:.4f} |" for r in search[:5]),
        "",
        "| width | per-role constants | global constant: loss ± std | per role: loss ± std | gain ± std |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in gains:
        lines.append(
            f"| {r['width']} | {consts(r)} | {r['global_loss']:.4f} ± {r['global_loss_std']:.4f} | "
            f"{r['per_role_loss']:.4f} ± {r['per_role_loss_std']:.4f} | "
            f"{r['gain']:+.4f} ± {r['gain_std']:.4f} ({r['gain_percent']:+.2f}%) |"
        )
    return "\n".join(lines)


def plot(
    search: Sequence[Mapping[str, Any]], gains: Sequence[Mapping[str, Any]], path: str, title: str = ""
) -> None:
    """Left: the search's best loss at each value of one role's constant (the others free), per role.
    Right: the global constant and the per-role constants per width, with seed-std error bars."""
    fig = figure(1, 2, title)
    ax = fig.add_subplot(1, 2, 1)
    for role in ROLES:
        values = sorted({r[role] for r in search})
        best = [min(r["loss"] for r in search if r[role] == v) for v in values]
        ax.plot(values, best, "o-", label=role)
    ax.set_xscale("log", base=2)
    style_axes(ax, "role constant G", "best search loss (others free)", "search at the smallest width")
    ax = fig.add_subplot(1, 2, 2)
    x = np.arange(len(gains))
    for offset, key, label in (
        (-0.15, "global", "global constant"),
        (0.15, "per_role", "per-role constants"),
    ):
        ax.errorbar(
            x + offset,
            [r[f"{key}_loss"] for r in gains],
            yerr=[r[f"{key}_loss_std"] for r in gains],
            fmt="o",
            capsize=3,
            label=label,
        )
    ax.set_xticks(x, [str(r["width"]) for r in gains])
    style_axes(ax, "width", "held-out loss (evaluation seeds)", "transferred across width")
    fig.tight_layout()
    fig.savefig(path, dpi=110)

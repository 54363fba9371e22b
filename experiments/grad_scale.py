r"""Gradient scale against Adam's epsilon across width: ``python -m experiments.grad_scale``.

Everett et al. (2024, §4) explain why NTK and mean-field parametrizations degrade at large width under
Adam: their gradients shrink like ``n^{-g_l}`` (``docs/reference.md`` §3) until ``RMS(g) ~ eps``, where
Adam's update stops being scale-free. This experiment measures, for every recipe, layer and width,
the gradient RMS of the stored parameters at initialisation (:func:`paramlab.diagnostics.measure_grad_rms`,
one fixed random batch, every seed separately), its fitted exponent ``g_l``, and the ratio
``RMS(g) / eps`` for a fixed epsilon and for the per-layer epsilon ``eps (n/n_0)^{-g_l}`` of
``eps_mode="per_layer"``; it extrapolates the width at which a fixed epsilon reaches ``10 x RMS``
territory (``RMS < 10 eps``, :func:`paramlab.diagnostics.epsilon_underflow`'s margin).

Every key is that of ``experiments/configs/coord_check.py`` plus ``seeds``
(``experiments/configs/grad_scale.py``). Writes to ``--out``: ``grad_scale.json`` (per recipe, layer,
width and seed the RMS), ``grad_scale.md`` / ``grad_scale_summary.json`` (per recipe and layer: the
role, ``g_l``, ``RMS / eps`` at the widest width mean ± std over seeds, fixed and per layer, and the
extrapolated width) and ``grad_scale.png``. Exit codes: 0 done; 2 a bad config value.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from experiments import cli, coord_check
from experiments.summary_plots import figure, style_axes
from paramlab.sweep import seed_std

PROGRAM = "experiments.grad_scale"
UNDERFLOW_MARGIN = 10.0  # RMS(g) < 10 eps: paramlab.diagnostics.epsilon_underflow's default
SHRINKS = 0.1  # a fitted g below this counts as a gradient that does not shrink with width


def parse_args(config: ml_collections.ConfigDict, paths: dict[str, str]) -> tuple[Any, int]:
    """``(coord_check.Args, seeds)``, validated (``ValueError`` naming the key)."""
    args = coord_check.parse_args(config, paths)
    cli.check_positive_ints(config, ("seeds",))
    if len(args.widths) < 2:
        raise ValueError(f"config.widths needs at least two widths to fit an exponent, got {args.widths}.")
    if args.eps <= 0:
        raise ValueError(f"config.eps must be > 0 (the ratio RMS / eps), got {args.eps}.")
    return args, config.seeds


def measure(args: Any, seeds: int) -> list[dict[str, Any]]:
    """One record per recipe, parameter, width and seed: ``rms`` of its gradient at init, its
    ``role`` and the per-layer epsilon scale ``eps_scale`` (``(n/n_0)^{-g_l}``) at that width."""
    import jax

    from paramlab.diagnostics import FAST_CPU_COMPILE, measure_grad_rms
    from paramlab.parametrization import make_plan

    options = FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None
    records = []
    for name in args.parametrizations:
        parametrization = coord_check.make_parametrization(args, name)
        per_layer = coord_check.make_parametrization(dataclasses.replace(args, eps_mode="per_layer"), name)
        make_model, batch, loss_fn = coord_check.make_task(args, parametrization)
        setup = coord_check.plan_setup(args, parametrization, make_model, batch, loss_fn)
        by_seed = [
            measure_grad_rms(setup, args.widths, batch, seeds=(seed,), compiler_options=options)
            for seed in range(seeds)
        ]
        for width in args.widths:
            plan = make_plan(
                make_model,
                per_layer,
                base=args.base_width,
                delta=2 * args.base_width,
                target=width,
                inputs=(batch[0],),
            )
            eps_scales = plan.values("eps")
            for seed, table in enumerate(by_seed):
                for path, rms in table[width].items():
                    records.append(
                        {
                            "parametrization": name,
                            "width": width,
                            "seed": seed,
                            "path": path,
                            "role": plan.specs[path].role,
                            "rms": rms,
                            "eps_scale": eps_scales[path],
                        }
                    )
    return records


def summary_rows(records: Sequence[Mapping[str, Any]], eps: float) -> list[dict[str, Any]]:
    """Per recipe and parameter: ``g`` (minus the log-log slope of the seed-mean RMS over widths),
    the seed-mean ± std of ``RMS / eps`` at every width (fixed and per-layer epsilon), and
    ``underflow_width``, the width at which the fitted power law reaches ``RMS = 10 eps`` with a fixed
    epsilon (``None`` if the gradient does not shrink, ``g < 0.1``; the widest width if already there)."""
    from paramlab.diagnostics.coord_check import loglog_slope

    grouped: dict[tuple[str, str], dict[int, list[Mapping[str, Any]]]] = {}
    for r in records:
        grouped.setdefault((r["parametrization"], r["path"]), {}).setdefault(r["width"], []).append(r)
    rows = []
    for (name, path), by_width in sorted(grouped.items()):
        widths = sorted(by_width)
        fixed = [np.asarray([r["rms"] / eps for r in by_width[w]]) for w in widths]
        per_layer = [np.asarray([r["rms"] / (eps * r["eps_scale"]) for r in by_width[w]]) for w in widths]
        g = -loglog_slope(widths, [float(np.mean(v)) for v in fixed])
        last = float(np.mean(fixed[-1]))
        if last <= UNDERFLOW_MARGIN:
            underflow = widths[-1]
        elif g > SHRINKS:
            underflow = widths[-1] * (last / UNDERFLOW_MARGIN) ** (1.0 / g)
        else:
            underflow = None
        rows.append(
            {
                "parametrization": name,
                "path": path,
                "role": by_width[widths[0]][0]["role"],
                "g": g,
                "widths": widths,
                "ratio_fixed": [float(np.mean(v)) for v in fixed],
                "ratio_fixed_std": [float(seed_std(v)) for v in fixed],
                "ratio_per_layer": [float(np.mean(v)) for v in per_layer],
                "ratio_per_layer_std": [float(seed_std(v)) for v in per_layer],
                "underflow_width": underflow,
            }
        )
    return rows


def markdown(rows: Sequence[Mapping[str, Any]], eps: float) -> str:
    """Per recipe and parameter: role, ``g``, ``RMS / eps`` at the narrowest and widest widths."""
    lines = [
        f"| recipe | parameter | role | g | RMS/eps (fixed eps={eps:g}), narrowest → widest | "
        "RMS/eps (per layer), widest | width where RMS = 10 eps |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        n0, n1 = r["widths"][0], r["widths"][-1]
        under = r["underflow_width"]
        lines.append(
            f"| {r['parametrization']} | {r['path']} | {r['role']} | {r['g']:.2f} | "
            f"{r['ratio_fixed'][0]:.3g} ({n0}) → "
            f"{r['ratio_fixed'][-1]:.3g} ± {r['ratio_fixed_std'][-1]:.2g} ({n1}) | "
            f"{r['ratio_per_layer'][-1]:.3g} ± {r['ratio_per_layer_std'][-1]:.2g} | "
            + ("- (does not shrink)" if under is None else f"{under:.3g}")
            + " |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[Mapping[str, Any]], path: str, eps: float, title: str = "") -> None:
    """One panel per recipe: ``RMS(g) / eps`` against width per parameter (solid: fixed epsilon,
    dotted: per-layer epsilon), seed-std bars, and the underflow margin."""
    recipes = list(dict.fromkeys(r["parametrization"] for r in rows))
    fig = figure(1, len(recipes), title, panel_width=4.0)
    for i, recipe in enumerate(recipes):
        ax = fig.add_subplot(1, len(recipes), i + 1)
        for k, r in enumerate(x for x in rows if x["parametrization"] == recipe):
            color = f"C{k % 10}"
            ax.errorbar(
                r["widths"],
                r["ratio_fixed"],
                yerr=r["ratio_fixed_std"],
                fmt="o-",
                ms=3,
                color=color,
                label=f"{r['path']} (g={r['g']:.2f})",
            )
            ax.plot(r["widths"], r["ratio_per_layer"], ":", color=color)
        ax.axhline(UNDERFLOW_MARGIN, color="red", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        style_axes(ax, "width", f"RMS(g) / eps (eps = {eps:g})", recipe, legend_size=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args: Any, seeds: int, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure, then write every output to ``args.out``; returns the summary rows."""
    from paramlab.sweep import strict_json

    os.makedirs(args.out, exist_ok=True)
    records = measure(args, seeds)
    rows = summary_rows(records, args.eps)
    with open(os.path.join(args.out, "grad_scale.json"), "w") as f:
        json.dump(strict_json(records), f, indent=1, allow_nan=False)
    with open(os.path.join(args.out, "grad_scale_summary.json"), "w") as f:
        json.dump(strict_json(rows), f, indent=1, allow_nan=False)
    text = markdown(rows, args.eps)
    with open(os.path.join(args.out, "grad_scale.md"), "w") as f:
        f.write(text + "\n")
    title = (
        f"gradient RMS at init / Adam eps: {args.model} (depth {args.depth}), {args.optimizer}, "
        f"base width {args.base_width}, {seeds} seed(s); dotted: per-layer eps"
    )
    plot(rows, os.path.join(args.out, "grad_scale.png"), args.eps, title)
    log(text)
    return rows


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    run(*parse_args(config, paths))


if __name__ == "__main__":
    cli.run(
        PROGRAM,
        main,
        default_config=cli.config_path("grad_scale"),
        path_flags={"out": "Output directory (created if missing)."},
        required=("out",),
    )

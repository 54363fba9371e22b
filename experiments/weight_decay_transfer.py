r"""Do the learning rate and the weight decay transfer across width together?

``python -m experiments.weight_decay_transfer``.

For every weight-decay rule (``paramlab.parametrization.WEIGHT_DECAY_RULES``) and width, one vmapped
sweep (:mod:`paramlab.sweep`) trains the byte-level Transformer of ``experiments.lr_transfer`` at every
(learning rate, weight decay, seed) of the grid, and probes the top singular value ``sigma_1`` of
every matrix (the effective weight, multiplier included; :func:`paramlab.diagnostics.spectral_probe`)
after every compiled call. Every key is documented in ``experiments/configs/weight_decay_transfer.py``::

    python -m experiments.weight_decay_transfer --out=runs/wd_transfer \
        --config.weight_decay_rule=transfer,fixed --config.widths=32,64,128,256

Writes to ``--out``: ``results.json`` / ``.csv`` (one record per rule, width, LR, decay and seed:
``final_loss`` in nats per byte, ``tokens_per_parameter``, the final ``sigma_1/<path>``),
``spectra.json`` (``sigma_1`` of every member at every probe), and the summary of
:mod:`experiments.weight_decay_summary` (``optimum.txt`` / ``.json``, ``wd_transfer.png``,
``sigma_transfer.png``, ``sigma_curves.png``); ``--results=<results.json>`` rewrites the summary from
an earlier run. Exit codes: 0 done; 2 a bad flag or config value (one line on stderr).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import ml_collections

from experiments import cli, lr_transfer
from experiments.transformer_cells import build_setting, member_record
from experiments.weight_decay_summary import write_summary

PROGRAM = "experiments.weight_decay_transfer"


@dataclasses.dataclass(frozen=True)
class DecayArgs:
    """The validated command line: the LR-transfer grid and the decay's keys."""

    grid: lr_transfer.Args
    rules: tuple[str, ...]
    mode: str
    weight_decays: tuple[float, ...]
    spectral_iterations: int


def parse_args(config: ml_collections.ConfigDict, paths: dict[str, str]) -> DecayArgs:
    """Validate the config (``ValueError`` naming the key)."""
    from paramlab.optim import WEIGHT_DECAY_MODES
    from paramlab.optim.common import check_choice
    from paramlab.parametrization import WEIGHT_DECAY_RULES

    grid = lr_transfer.parse_args(config, paths)
    rules = cli.parse_names(config.weight_decay_rule, "weight_decay_rule", WEIGHT_DECAY_RULES)
    check_choice(config.weight_decay_mode, WEIGHT_DECAY_MODES, "config.weight_decay_mode")
    decays = cli.parse_list(config.weight_decays, float, "weight_decays")
    if not decays or any(not (math.isfinite(d) and d > 0) for d in decays) or len(set(decays)) != len(decays):
        raise ValueError(f"config.weight_decays must be distinct numbers > 0, got {config.weight_decays!r}.")
    cli.check_positive_ints(config, ("spectral_iterations",))
    if grid.depths != (grid.base_depth,) or grid.depth_rules != ("none",):
        raise ValueError("config.depths / depth_rule: the decay experiment runs at the base depth only.")
    return DecayArgs(grid, rules, config.weight_decay_mode, tuple(sorted(decays)), config.spectral_iterations)


def run(args: DecayArgs, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every sweep; writes the outputs to ``args.grid.out`` and returns the records."""
    from paramlab.data import BatchIterator, eval_batches, load_corpus
    from paramlab.sweep import product_members, save_records

    g = args.grid
    os.makedirs(g.out, exist_ok=True)
    corpus = load_corpus(g.data or None, max_bytes=g.max_bytes)
    held_out = eval_batches(
        corpus.eval, seq_len=g.seq_len, batch_size=g.batch_size, max_batches=g.eval_batches
    )
    members = product_members(
        seeds=tuple(range(g.seeds)), learning_rate=g.lrs, weight_decay=args.weight_decays
    )
    records: list[dict[str, Any]] = []
    spectra: list[dict[str, Any]] = []
    for rule in args.rules:
        for cell in lr_transfer.cells(g):
            t0 = time.perf_counter()
            batches = BatchIterator(corpus.train, seq_len=g.seq_len, batch_size=g.batch_size, seed=0)
            result, n_params, scales = _sweep(args, cell, rule, members, batches, held_out)
            tokens_per_parameter = g.steps * g.batch_size * g.seq_len / n_params
            for r in result.records:
                sigmas = {k: v for k, v in r.items() if k.startswith("sigma_1/")}
                records.append(
                    {
                        **member_record(g, cell, r),
                        "weight_decay": r["weight_decay"],
                        "weight_decay_rule": rule,
                        "weight_decay_mode": args.mode,
                        "parameters": n_params,
                        "tokens_per_parameter": tokens_per_parameter,
                        **sigmas,
                        **scales,
                    }
                )
            spectra += _spectra(rule, cell.width, members, result.probes)
            log(
                f"{rule:>15} width {cell.width:>4}: {len(members)} runs in {time.perf_counter() - t0:.1f} s, "
                f"{tokens_per_parameter:.2f} tokens per parameter"
            )
            save_records(records, os.path.join(g.out, "results.json"), os.path.join(g.out, "results.csv"))
            save_records(spectra, os.path.join(g.out, "spectra.json"))
    write_summary(records, g.out, title=_title(args), spectra=spectra, log=log)
    return records


def _sweep(args: DecayArgs, cell: Any, rule: str, members: list, batches: Any, held_out: list) -> tuple:
    """One cell's sweep with the spectral probe: ``(SweepResult, number of parameters, spectral scales)``."""
    import jax

    from paramlab.diagnostics import spectral_probe
    from paramlab.sweep import run_sweep

    g = args.grid
    setting = build_setting(g, cell, weight_decay_rule=rule, weight_decay_mode=args.mode)
    shapes = jax.eval_shape(setting.init_params, jax.random.key(0))
    probe = spectral_probe(
        setting.plan.fan_axes, setting.plan.values("multiplier"), iterations=args.spectral_iterations
    )
    result = run_sweep(
        setting.init_params,
        setting.loss_fn,
        setting.optimizer_fn,
        members,
        batches,
        g.steps,
        eval_batches=lambda: held_out,
        steps_per_call=min(g.steps_per_call, g.steps),
        probe_fn=probe,
        progress_bar=g.progress_bar,
    )
    return result, sum(x.size for x in jax.tree.leaves(shapes)), spectral_scales(setting.plan)


def spectral_scales(plan: Any) -> dict[str, float]:
    """``{"spectral_scale/<path>": sqrt(fan_out / fan_in)}`` for every matrix: how its top singular value
    scales with width when feature learning is width-independent (the spectral condition of Yang, Simon
    & Bernstein 2023: ``||W|| ∝ sqrt(fan_out / fan_in)``), so that ``sigma_1 / scale`` compares across
    widths for every role (hidden: 1; readout: ``n^-1/2``; embedding: ``n^1/2``)."""
    scales = {}
    for path, spec in plan.specs.items():
        if spec.fan_in and len(spec.shape) - len(spec.stacked) >= 2:
            scales[f"spectral_scale/{path}"] = math.sqrt(spec.fan_out_size / spec.fan_in_size)
    return scales


def add_spectral_scales(args: DecayArgs, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of a run without ``spectral_scale/<path>`` keys, with them (from each cell's plan)."""
    if all(any(k.startswith("spectral_scale/") for k in r) for r in records):
        return records
    cells = {c.width: c for c in lr_transfer.cells(args.grid)}
    scales = {
        (rule, width): spectral_scales(build_setting(args.grid, cells[width], weight_decay_rule=rule).plan)
        for rule, width in {(r["weight_decay_rule"], r["width"]) for r in records}
    }
    return [{**r, **scales[r["weight_decay_rule"], r["width"]]} for r in records]


def _spectra(rule: str, width: int, members: list, probes: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per member and matrix: ``sigma_1`` at every probed step."""
    steps = [int(s) for s in probes["step"]]
    return [
        {
            "weight_decay_rule": rule,
            "width": width,
            **member,
            "path": name.removeprefix("sigma_1/"),
            "step": steps,
            "sigma_1": [float(v) for v in values[:, k]],
        }
        for name, values in probes.items()
        if name != "step"
        for k, member in enumerate(members)
    ]


def _title(args: DecayArgs) -> str:
    g = args.grid
    return (
        f"{','.join(g.parametrizations)} + {g.optimizer} ({args.mode} decay), base width {g.base_width}, "
        f"{g.steps} steps x {g.batch_size}x{g.seq_len} bytes, {g.seeds} seed(s)"
    )


def main(config: ml_collections.ConfigDict, paths: dict[str, str]) -> None:
    """Validate, then run every sweep; with ``--results``, rewrite the summary of those records."""
    args = parse_args(config, paths)
    if paths.get("results"):
        from paramlab.sweep import load_records

        os.makedirs(args.grid.out, exist_ok=True)
        spectra_path = os.path.join(os.path.dirname(paths["results"]), "spectra.json")
        spectra = load_records(spectra_path) if os.path.exists(spectra_path) else None
        records = add_spectral_scales(args, load_records(paths["results"]))
        write_summary(records, args.grid.out, title=_title(args), spectra=spectra)
        return
    run(args)


if __name__ == "__main__":
    cli.run_sweep_experiment(PROGRAM, main)

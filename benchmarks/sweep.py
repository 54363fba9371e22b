"""Benchmark: an 8-learning-rate sweep as one vmapped program vs the 8 runs one after another.

Both sides train the same small byte-level Transformer (SP, Adam, the embedded corpus) on the same
batches from the same initialization, in the same process:

* **sequential**: for each learning rate, ordinary training as :func:`paramlab.train.fit` does it:
  :func:`paramlab.train.run_once` (init), :func:`paramlab.train.make_train_step` +
  :func:`paramlab.train.jit_train_step` (donated state), compiled once per run, then one dispatch
  per step; losses fetched at the end.
* **sweep**: :func:`paramlab.sweep.run_sweep` (vmap over the members, ``lax.scan`` over steps).

* **sharded sweep** (only with several devices): the same sweep with its member axis sharded over
  all of them (``run_sweep(member_devices=...)``).

Reported: wall time of each side (end to end, and split into compilation and training), the ratio
``sweep / sequential`` (target <= 0.3) and the largest relative difference between each member's
loss and its sequential run's loss, at the last step (target <= 1e-4) and over all steps; with several
devices also ``sharded / sweep`` and the sharded sweep's largest difference from the unsharded one.

    python -m benchmarks.sweep --out=DIR      # writes DIR/sweep.json, prints a table
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.sweep --out=DIR  # + sharded
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from paramlab.data import BatchIterator, load_corpus
from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.nn import split_fan_axes
from paramlab.sweep import product_members, run_sweep
from paramlab.sweep.results import format_table
from paramlab.train import create_train_state, jit_train_step, make_train_step, run_once


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmark (defaults: the reported configuration)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    seq_len: int = 64
    batch_size: int = 8
    steps: int = 50
    steps_per_call: int = 25
    lrs: tuple[float, ...] = tuple(2.0**-k for k in range(13, 5, -1))  # 2^-13 .. 2^-6, spaced 2x
    seed: int = 0
    corpus_bytes: int = 1_000_000


def _task(cfg: BenchConfig):
    """``(init_params, loss_fn, batches)`` of the benchmark model."""
    model = Transformer(
        TransformerConfig(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_head=cfg.d_model // cfg.n_heads,
            d_ff=cfg.d_ff,
            max_len=cfg.seq_len,
        )
    )

    def init_params(rng):
        return split_fan_axes(model.init(rng, jnp.zeros((1, cfg.seq_len), jnp.int32)))[0]["params"]

    def loss_fn(params, batch):
        return cross_entropy(model.apply({"params": params}, batch["inputs"]), batch["targets"])

    tokens = load_corpus(max_bytes=cfg.corpus_bytes).train
    data = BatchIterator(tokens, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed)
    return init_params, loss_fn, [next(data) for _ in range(cfg.steps)]


def _sequential_run(init_params, loss_fn, lr: float, seed: int, batches: Sequence) -> tuple[np.ndarray, dict]:
    """One ordinary training run; returns its per-step losses and timings."""
    t_start = time.perf_counter()
    optimizer = optax.adam(lr)
    state = run_once(lambda rng: create_train_state(init_params(rng), optimizer), jax.random.key(seed))
    step = jit_train_step(make_train_step(loss_fn, optimizer))
    t0 = time.perf_counter()
    compiled = step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses = []
    for batch in batches:
        state, metrics = compiled(state, batch)
        losses.append(metrics["loss"])
    losses = np.asarray(jax.device_get(losses), np.float64)
    train_s = time.perf_counter() - t0
    return losses, {"total_s": time.perf_counter() - t_start, "compile_s": compile_s, "train_s": train_s}


def measure(cfg: BenchConfig) -> dict:
    """Run both sides once and compare them; returns the JSON-able report."""
    init_params, loss_fn, batches = _task(cfg)
    sequential, seq_times = [], []
    for lr in cfg.lrs:
        losses, times = _sequential_run(init_params, loss_fn, lr, cfg.seed, batches)
        sequential.append(losses)
        seq_times.append(times)
    sequential = np.stack(sequential, axis=1)  # (steps, K)

    sweep_total, result = _timed_sweep(cfg, init_params, loss_fn, batches, member_devices=1)
    swept = result.history["loss"].astype(np.float64)

    rel = np.abs(swept - sequential) / np.abs(sequential)
    seq_total = sum(t["total_s"] for t in seq_times)
    seq_compile = sum(t["compile_s"] for t in seq_times)
    seq_train = sum(t["train_s"] for t in seq_times)
    report = {
        "config": dataclasses.asdict(cfg),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "sequential": {
            "total_s": seq_total,
            "compile_s": seq_compile,
            "train_s": seq_train,
            "runs": seq_times,
        },
        "sweep": {"total_s": sweep_total, **result.timings},
        "ratio_total": sweep_total / seq_total,
        "ratio_train": result.timings["train_s"] / seq_train,
        "max_rel_diff_final": float(rel[-1].max()),
        "max_rel_diff_all_steps": float(rel.max()),
        "final_loss_sequential": sequential[-1].tolist(),
        "final_loss_sweep": swept[-1].tolist(),
    }
    devices = jax.device_count()
    if devices > 1 and len(cfg.lrs) % devices == 0:
        sharded_total, sharded = _timed_sweep(cfg, init_params, loss_fn, batches, member_devices=devices)
        diff = np.abs(sharded.history["loss"].astype(np.float64) - swept) / np.abs(swept)
        report["sweep_sharded"] = {"total_s": sharded_total, "member_devices": devices, **sharded.timings}
        report["ratio_sharded_to_sweep"] = sharded_total / sweep_total
        report["max_rel_diff_sharded_vs_sweep"] = float(diff.max())
    return report


def _timed_sweep(cfg: BenchConfig, init_params, loss_fn, batches: Sequence, member_devices: int):
    """``(wall seconds, SweepResult)`` of the benchmark's sweep, its members over ``member_devices``."""
    t0 = time.perf_counter()
    result = run_sweep(
        init_params,
        loss_fn,
        lambda learning_rate: optax.adam(learning_rate),
        product_members(seeds=(cfg.seed,), learning_rate=cfg.lrs),
        iter(batches),
        cfg.steps,
        steps_per_call=cfg.steps_per_call,
        member_devices=member_devices,
    )
    return time.perf_counter() - t0, result


def summary_table(report: dict) -> str:
    """The printed table: one row per side, then the ratios and loss differences."""
    sides = [name for name in ("sequential", "sweep", "sweep_sharded") if name in report]
    rows = [{"": name, **{k: report[name][k] for k in ("total_s", "compile_s", "train_s")}} for name in sides]
    lines = [
        format_table(rows),
        f"ratio sweep/sequential: total {report['ratio_total']:.3f} (target <= 0.3), "
        f"train only {report['ratio_train']:.3f}",
        f"max rel loss diff: final step {report['max_rel_diff_final']:.2e} (target <= 1e-4), "
        f"all steps {report['max_rel_diff_all_steps']:.2e}",
    ]
    if "sweep_sharded" in report:
        lines.append(
            f"sharded over {report['sweep_sharded']['member_devices']} devices / unsharded sweep: "
            f"{report['ratio_sharded_to_sweep']:.3f}; "
            f"max rel loss diff {report['max_rel_diff_sharded_vs_sweep']:.2e}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = BenchConfig(steps=_STEPS.value, d_model=_D_MODEL.value, d_ff=4 * _D_MODEL.value)
    report = measure(cfg)
    os.makedirs(_OUT.value, exist_ok=True)
    path = os.path.join(_OUT.value, "sweep.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(summary_table(report))
    print(f"wrote {path}")


if __name__ == "__main__":
    # Flags are defined only when run as a program, so tests can import several benchmarks.
    _OUT = flags.DEFINE_string("out", None, "Directory for sweep.json (created if missing).", required=True)
    _STEPS = flags.DEFINE_integer("steps", BenchConfig.steps, "Training steps per run.")
    _D_MODEL = flags.DEFINE_integer("d_model", BenchConfig.d_model, "Transformer width.")
    app.run(main)

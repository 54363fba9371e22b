"""Benchmark: paramlab's muP train step vs a hand-written optax AdamW train step of the same model.

Both sides train the same byte-level Transformer from the same (muP-initialized) parameters on the
same batch, in the same process:

* **paramlab**: the step :func:`paramlab.train.fit` runs: :func:`~paramlab.train.make_train_step`
  with the plan's forward multipliers (``plan.wrap_apply``), the plan's AdamW (per-parameter LR,
  epsilon and weight decay), the gradient norm, learning rate and per-role update / parameter RMS
  metrics, compiled by :func:`~paramlab.train.jit_train_step` over a one-device mesh with the state
  donated;
* **optax**: ``jax.value_and_grad`` + ``optax.adamw`` + ``optax.apply_updates``, ``jax.jit`` with
  params and optimizer state donated, returning only the loss.

Reported: the median step time over interleaved rounds (A, B, B, A, ...: drifting machine load
hits both sides alike), tokens/s, the throughput ratio paramlab / optax (the median of the paired
per-round ratios; target >= 0.97), on CPU also the ratio of process CPU time per step, and each
compiled program's peak memory from XLA's ``memory_analysis()`` (arguments + outputs - aliased
(donated) + temporaries; target within 5%). On a GPU also model FLOPs utilization (6 N + 12 L T d
FLOPs per token, PaLM's formula, against the chip's dense bf16 peak).

    python -m benchmarks.train_step --out=DIR     # writes DIR/train_step.json, prints a table
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from paramlab.data import BatchIterator, load_corpus
from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.nn import linen as linen_adapter
from paramlab.parametrization import Parametrization, make_plan
from paramlab.train import (
    batch_sharding,
    create_train_state,
    jit_train_step,
    make_mesh,
    make_train_step,
    shard_batch,
    tree_shardings,
)

# dense bf16 peak FLOP/s by device kind (vendor datasheets), for MFU on accelerators
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
LR, B1, B2, EPS, WEIGHT_DECAY = 3e-3, 0.9, 0.95, 1e-8, 0.1


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    d_model: int = 256
    n_layers: int = 2
    d_head: int = 32
    seq_len: int = 128
    batch_size: int = 16
    dtype: str = "float32"
    steps: int = 2
    rounds: int = 21

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


def _widths(d_model: int, d_head: int) -> dict[str, int]:
    return {"d_model": d_model, "d_ff": 4 * d_model, "n_heads": max(1, d_model // d_head)}


def build(cfg: BenchConfig):
    """The model, the muP plan (base width d_model / 4), initial params and one batch."""
    model_config = TransformerConfig(
        max_len=cfg.seq_len,
        n_layers=cfg.n_layers,
        d_head=cfg.d_head,
        attention_scale="linear",
        attention_base_d_head=cfg.d_head,
        zero_init_readout=True,
        dtype=cfg.dtype,
        **_widths(cfg.d_model, cfg.d_head),
    )
    base = max(cfg.d_head, cfg.d_model // 4)
    plan = make_plan(
        lambda w: Transformer(model_config.with_width(**w)),
        Parametrization("mup", "adamw"),
        base=_widths(base, cfg.d_head),
        delta=_widths(2 * base, cfg.d_head),
        target=_widths(cfg.d_model, cfg.d_head),
        inputs=(jax.ShapeDtypeStruct((1, cfg.seq_len), jnp.int32),),
    )
    model = Transformer(model_config)
    tokens = jnp.zeros((1, cfg.seq_len), jnp.int32)
    params = linen_adapter.init(plan, model, jax.random.key(0), tokens)["params"]
    data = BatchIterator(
        load_corpus(max_bytes=1_000_000).train, seq_len=cfg.seq_len, batch_size=cfg.batch_size
    )
    return model, plan, params, next(data)


def paramlab_step(cfg: BenchConfig, model, plan, params, batch):
    """``(compiled step, state, batch)`` as :func:`paramlab.train.fit` builds them."""
    apply = plan.wrap_apply(model.apply)

    def loss_fn(p, b):
        return cross_entropy(apply({"params": p}, b["inputs"]), b["targets"])

    optimizer = plan.optimizer(learning_rate=LR, b1=B1, b2=B2, eps=EPS, weight_decay=WEIGHT_DECAY)
    compute_dtype = None if cfg.dtype == "float32" else jnp.dtype(cfg.dtype)
    step = make_train_step(
        loss_fn, optimizer, learning_rate=LR, compute_dtype=compute_dtype, roles=plan.roles(params)
    )
    mesh = make_mesh(data=1, fsdp=1)
    state = create_train_state(params, optimizer)
    shardings = tree_shardings(mesh, state)
    state = jax.device_put(state, shardings)
    batch = shard_batch(batch, mesh)
    compiled = jit_train_step(step, shardings, batch_sharding(mesh)).lower(state, batch).compile()
    return compiled, state, batch


def optax_step(model, params, batch):
    """``(compiled step, (params, opt_state), batch)``: the plain optax AdamW train step.

    Written by hand on purpose: it is the independent reference a user would write without paramlab,
    so the ratio measures everything paramlab's step adds (multipliers, per-leaf scales, metrics).
    """
    optimizer = optax.adamw(LR, b1=B1, b2=B2, eps=EPS, weight_decay=WEIGHT_DECAY)

    def step(state, b):
        p, opt_state = state

        def loss_fn(q):
            return cross_entropy(model.apply({"params": q}, b["inputs"]), b["targets"])[0]

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    state = (params, optimizer.init(params))
    batch = jax.device_put(batch)
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch).compile()
    return compiled, state, batch


def memory(compiled) -> dict[str, int]:
    """XLA's memory analysis of a compiled program; ``peak`` = args + outputs - aliased + temps."""
    m = compiled.memory_analysis()
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes")
    out = {f.removesuffix("_size_in_bytes"): int(getattr(m, f)) for f in fields}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def _timed(compiled, state, batch, steps: int):
    """``((wall seconds, process CPU seconds) per step, new state)``."""
    jax.block_until_ready(state)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    return ((time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps), state


def model_flops_per_token(cfg: BenchConfig, params) -> float:
    """``6 N + 12 L T d_attn`` (PaLM appendix B), N the non-embedding parameter count."""
    n = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(params) if "embed" not in str(path[0]))
    d_attn = _widths(cfg.d_model, cfg.d_head)["n_heads"] * cfg.d_head
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.seq_len * d_attn


def run(cfg: BenchConfig) -> dict:
    model, plan, params, batch = build(cfg)
    ours, ours_state, ours_batch = paramlab_step(cfg, model, plan, jax.tree.map(jnp.copy, params), batch)
    theirs, theirs_state, theirs_batch = optax_step(model, jax.tree.map(jnp.copy, params), batch)
    _, ours_state = _timed(ours, ours_state, ours_batch, 2)  # warm-up
    _, theirs_state = _timed(theirs, theirs_state, theirs_batch, 2)
    ours_times, theirs_times, ours_cpu, theirs_cpu = [], [], [], []
    for r in range(cfg.rounds):
        if r % 2:  # alternate which side goes first
            (t_theirs, c_theirs), theirs_state = _timed(theirs, theirs_state, theirs_batch, cfg.steps)
        (t, c), ours_state = _timed(ours, ours_state, ours_batch, cfg.steps)
        if not r % 2:
            (t_theirs, c_theirs), theirs_state = _timed(theirs, theirs_state, theirs_batch, cfg.steps)
        ours_times.append(t)
        ours_cpu.append(c)
        theirs_times.append(t_theirs)
        theirs_cpu.append(c_theirs)
    ours_t, theirs_t = statistics.median(ours_times), statistics.median(theirs_times)
    round_ratios = [b / a for a, b in zip(ours_times, theirs_times)]
    ours_mem, theirs_mem = memory(ours), memory(theirs)
    device = jax.devices()[0]
    result = {
        "benchmark": "train_step",
        "config": dataclasses.asdict(cfg),
        "device": f"{device.platform}:{device.device_kind}",
        "devices": jax.device_count(),
        "host": platform.node(),
        "jax": jax.__version__,
        "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
        "paramlab": {
            "step_time_s": ours_t,
            "tokens_per_s": cfg.tokens_per_step / ours_t,
            "memory_bytes": ours_mem,
            "round_times_s": ours_times,
        },
        "optax": {
            "step_time_s": theirs_t,
            "tokens_per_s": cfg.tokens_per_step / theirs_t,
            "memory_bytes": theirs_mem,
            "round_times_s": theirs_times,
        },
        # the median of the paired (adjacent in time) per-round ratios: robust to drifting load
        "throughput_ratio": statistics.median(round_ratios),
        "round_throughput_ratios": round_ratios,
        # process CPU seconds per step (all threads): the work each step does, insensitive to waiting
        # for a busy machine; meaningful on CPU only
        "cpu_time_ratio": statistics.median(theirs_cpu) / statistics.median(ours_cpu),
        "memory_ratio": ours_mem["peak"] / theirs_mem["peak"],
        "targets": {"throughput_ratio": ">= 0.97", "memory_ratio": "<= 1.05"},
    }
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device.device_kind), None)
    if device.platform == "gpu" and peak is not None:
        flops = model_flops_per_token(cfg, params) * cfg.tokens_per_step
        result["mfu"] = {side: flops / result[side]["step_time_s"] / peak for side in ("paramlab", "optax")}
        result["mfu"]["peak_flops"] = peak
    return result


def format_table(result: dict) -> str:
    rows = [("", "paramlab muP", "optax AdamW", "ratio")]
    p, o = result["paramlab"], result["optax"]
    rows.append(("step time (ms)", f"{p['step_time_s'] * 1e3:.2f}", f"{o['step_time_s'] * 1e3:.2f}", ""))
    rows.append(
        (
            "tokens/s",
            f"{p['tokens_per_s']:,.0f}",
            f"{o['tokens_per_s']:,.0f}",
            f"{result['throughput_ratio']:.3f}",
        )
    )
    rows.append(
        (
            "peak memory (MiB)",
            f"{p['memory_bytes']['peak'] / 2**20:.2f}",
            f"{o['memory_bytes']['peak'] / 2**20:.2f}",
            f"{result['memory_ratio']:.3f}",
        )
    )
    if result["device"].startswith("cpu"):
        rows.append(("CPU time / step", "", "", f"{result['cpu_time_ratio']:.3f}"))
    if "mfu" in result:
        rows.append(("MFU", f"{result['mfu']['paramlab']:.1%}", f"{result['mfu']['optax']:.1%}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    cfg = result["config"]
    title = (
        f"train_step on {result['device']}: d_model={cfg['d_model']} n_layers={cfg['n_layers']} "
        f"batch={cfg['batch_size']}x{cfg['seq_len']} {cfg['dtype']} "
        f"({result['parameters'] / 1e6:.2f}M params)"
    )
    return "\n".join([title, *lines])


def main(argv):
    del argv
    if not _OUT.value:
        raise app.UsageError("--out=DIR is required")
    cfg = BenchConfig(
        d_model=_D_MODEL.value,
        n_layers=_N_LAYERS.value,
        d_head=_D_HEAD.value,
        seq_len=_SEQ_LEN.value,
        batch_size=_BATCH.value,
        dtype=_DTYPE.value,
        steps=_STEPS.value,
        rounds=_ROUNDS.value,
    )
    result = run(cfg)
    os.makedirs(_OUT.value, exist_ok=True)
    path = os.path.join(_OUT.value, "train_step.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=lambda x: np.asarray(x).tolist())
    print(format_table(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    # Flags are defined only when run as a program, so tests can import several benchmarks.
    _OUT = flags.DEFINE_string("out", None, "Directory for train_step.json.")
    _D_MODEL = flags.DEFINE_integer("d_model", 256, "Residual width of the benchmarked model.")
    _N_LAYERS = flags.DEFINE_integer("n_layers", 2, "Transformer blocks.")
    _D_HEAD = flags.DEFINE_integer("d_head", 32, "Per-head width (n_heads = d_model / d_head).")
    _SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Tokens per sequence.")
    _BATCH = flags.DEFINE_integer("batch_size", 16, "Sequences per step.")
    _DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (params float32).")
    _STEPS = flags.DEFINE_integer("steps", 2, "Timed steps per round and side.")
    _ROUNDS = flags.DEFINE_integer("rounds", 21, "Interleaved timing rounds.")
    app.run(main)

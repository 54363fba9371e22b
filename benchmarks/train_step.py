"""Benchmark: paramlab's muP train step vs a hand-written optax AdamW train step of the same model.

Both sides train the same byte-level Transformer from the same (muP-initialized) parameters on the
same batch, in the same process:

* **paramlab**: the step :func:`paramlab.train.fit` runs: :func:`~paramlab.train.make_train_step`
  with the plan's forward multipliers (``plan.wrap_apply``), the plan's AdamW (per-parameter LR,
  epsilon and weight decay), the gradient norm, learning rate and per-role update / parameter RMS
  metrics, compiled by :func:`~paramlab.train.jit_train_step` over a one-device mesh with the state
  donated;
* **paramlab_plain**: the same step, metrics and compilation with ``model.apply`` and ``optax.adamw``
  in place of the plan: the ratio paramlab / paramlab_plain is what the plan costs (targets:
  throughput >= 0.99, peak memory within 2%);
* **optax**: ``jax.value_and_grad`` + ``optax.adamw`` + ``optax.apply_updates``, ``jax.jit`` with
  params and optimizer state donated, returning only the loss: paramlab / optax adds the cost of the
  step's metrics and state.

Reported: the median step time over interleaved rounds (A, B, B, A, ...: drifting machine load
hits every side alike), tokens/s, the throughput ratios (the median of the paired per-round
ratios), on CPU also the ratio of process CPU time per step, and each compiled program's peak memory
from XLA's ``memory_analysis()`` (arguments + outputs - aliased (donated) + temporaries). On a GPU
also model FLOPs utilization (6 N + 12 L T d FLOPs per token, PaLM's formula, against the chip's
dense bf16 peak).

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


def paramlab_step(cfg: BenchConfig, model, plan, params, batch, use_plan: bool = True):
    """``(compiled step, state, batch)`` as :func:`paramlab.train.fit` builds them; ``use_plan=False``:
    the same step with ``model.apply`` and ``optax.adamw`` (the plan still names the metrics' roles)."""
    apply = plan.wrap_apply(model.apply) if use_plan else model.apply

    def loss_fn(p, b):
        return cross_entropy(apply({"params": p}, b["inputs"]), b["targets"])

    if use_plan:
        optimizer = plan.optimizer(learning_rate=LR, b1=B1, b2=B2, eps=EPS, weight_decay=WEIGHT_DECAY)
    else:
        optimizer = optax.adamw(LR, b1=B1, b2=B2, eps=EPS, weight_decay=WEIGHT_DECAY)
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


SIDES = ("paramlab", "paramlab_plain", "optax")
RATIOS = {  # name -> (side, baseline side, target)
    "throughput_ratio": ("paramlab", "paramlab_plain", ">= 0.99"),
    "handwritten_throughput_ratio": ("paramlab", "optax", None),
}


def run(cfg: BenchConfig) -> dict:
    model, plan, params, batch = build(cfg)
    copy = lambda: jax.tree.map(jnp.copy, params)  # noqa: E731
    steps = {
        "paramlab": paramlab_step(cfg, model, plan, copy(), batch),
        "paramlab_plain": paramlab_step(cfg, model, plan, copy(), batch, use_plan=False),
        "optax": optax_step(model, copy(), batch),
    }
    states = {side: steps[side][1] for side in SIDES}
    for side in SIDES:  # warm-up
        _, states[side] = _timed(steps[side][0], states[side], steps[side][2], 2)
    times = {side: [] for side in SIDES}
    cpu = {side: [] for side in SIDES}
    for r in range(cfg.rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:  # alternate the order
            (t, c), states[side] = _timed(steps[side][0], states[side], steps[side][2], cfg.steps)
            times[side].append(t)
            cpu[side].append(c)
    mem = {side: memory(steps[side][0]) for side in SIDES}
    device = jax.devices()[0]
    result = {
        "benchmark": "train_step",
        "config": dataclasses.asdict(cfg),
        "device": f"{device.platform}:{device.device_kind}",
        "devices": jax.device_count(),
        "host": platform.node(),
        "jax": jax.__version__,
        "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
        **{
            side: {
                "step_time_s": statistics.median(times[side]),
                "tokens_per_s": cfg.tokens_per_step / statistics.median(times[side]),
                "memory_bytes": mem[side],
                "round_times_s": times[side],
            }
            for side in SIDES
        },
        "targets": {name: target for name, (_, _, target) in RATIOS.items() if target},
    }
    result["targets"]["memory_ratio"] = "<= 1.02"
    for name, (side, base, _) in RATIOS.items():
        # the median of the paired (adjacent in time) per-round ratios: robust to drifting load
        round_ratios = [b / a for a, b in zip(times[side], times[base])]
        result[name] = statistics.median(round_ratios)
        result[f"round_{name}s"] = round_ratios
        # process CPU seconds per step (all threads): the work each step does, insensitive to waiting
        # for a busy machine; meaningful on CPU only
        result[name.replace("throughput", "cpu_time")] = statistics.median(cpu[base]) / statistics.median(
            cpu[side]
        )
    result["memory_ratio"] = mem["paramlab"]["peak"] / mem["paramlab_plain"]["peak"]
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device.device_kind), None)
    if device.platform == "gpu" and peak is not None:
        flops = model_flops_per_token(cfg, params) * cfg.tokens_per_step
        result["mfu"] = {side: flops / result[side]["step_time_s"] / peak for side in SIDES}
        result["mfu"]["peak_flops"] = peak
    return result


def format_table(result: dict) -> str:
    header = ("", "paramlab muP", "paramlab AdamW", "optax AdamW", "muP / AdamW", "muP / optax")
    rows = [header]
    sides = [result[side] for side in SIDES]
    ratios = (result["throughput_ratio"], result["handwritten_throughput_ratio"])
    rows.append(("step time (ms)", *(f"{s['step_time_s'] * 1e3:.2f}" for s in sides), "", ""))
    rows.append(("tokens/s", *(f"{s['tokens_per_s']:,.0f}" for s in sides), *(f"{r:.3f}" for r in ratios)))
    rows.append(
        (
            "peak memory (MiB)",
            *(f"{s['memory_bytes']['peak'] / 2**20:.2f}" for s in sides),
            f"{result['memory_ratio']:.3f}",
            "",
        )
    )
    if result["device"].startswith("cpu"):
        cpu_ratios = (result["cpu_time_ratio"], result["handwritten_cpu_time_ratio"])
        rows.append(("CPU time / step", "", "", "", *(f"{r:.3f}" for r in cpu_ratios)))
    if "mfu" in result:
        rows.append(("MFU", *(f"{result['mfu'][side]:.1%}" for side in SIDES), "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
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

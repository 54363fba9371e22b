"""Benchmark: compile time, step time and peak memory of the train step against depth, per block layout.

For each depth and layout (``unrolled``: ``block_i`` modules; ``scan``: ``nn.scan`` over one block;
``remat`` variants of both: each block's activations recomputed in the backward pass, policy
``nothing_saveable``) the byte Transformer under muP + CompleteP is trained with
:func:`paramlab.train.make_train_step` and the plan's AdamW, and measured in the same process:

* ``compile_s``: wall time of ``jit(step).lower(...).compile()`` (tracing included);
* ``step_s``: median step time over ``rounds`` (state donated);
* ``memory_bytes``: XLA's ``memory_analysis()`` of the compiled step (``peak`` = arguments + outputs -
  aliased + temporaries).

Reported ratios: compile time at the deepest vs the shallowest depth per layout (target for ``scan``:
<= 1.5), and at the deepest depth remat's peak memory and step time against the same layout without
remat (target: memory >= 30% lower).

    python -m benchmarks.depth --out=DIR      # writes DIR/depth.json, prints a table
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
from absl import app, flags

from benchmarks.train_step import memory
from paramlab.data import BatchIterator, load_corpus
from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.nn import linen as linen_adapter
from paramlab.parametrization import Parametrization, make_plan
from paramlab.train import create_train_state, make_train_step

LAYOUTS = {
    "unrolled": dict(scan_layers=False, remat=False),
    "unrolled+remat": dict(scan_layers=False, remat=True),
    "scan": dict(scan_layers=True, remat=False),
    "scan+remat": dict(scan_layers=True, remat=True),
}
LR = 3e-3


@dataclasses.dataclass(frozen=True)
class DepthBenchConfig:
    depths: tuple[int, ...] = (2, 4, 8, 16)
    d_model: int = 128
    d_head: int = 32
    seq_len: int = 128
    batch_size: int = 16
    rounds: int = 5
    layouts: tuple[str, ...] = tuple(LAYOUTS)


def _model_config(cfg: DepthBenchConfig, d_model: int, depth: int, layout: str, branch: float = 1.0):
    return TransformerConfig(
        d_model=d_model,
        n_layers=depth,
        n_heads=d_model // cfg.d_head,
        d_head=cfg.d_head,
        d_ff=4 * d_model,
        max_len=cfg.seq_len,
        branch_multiplier=branch,
        **LAYOUTS[layout],
    )


def measure(cfg: DepthBenchConfig, depth: int, layout: str, batch: dict) -> dict:
    """Compile time, median step time and compiled memory of one (depth, layout)."""
    tokens = jax.ShapeDtypeStruct((1, cfg.seq_len), jnp.int32)
    plan = make_plan(
        lambda size: Transformer(_model_config(cfg, *size, layout)),
        Parametrization("mup", "adamw", depth_rule="completep"),
        base=(cfg.d_model, 2),
        delta=(2 * cfg.d_model, 4),
        target=(cfg.d_model, depth),
        inputs=(tokens,),
    )
    model = Transformer(_model_config(cfg, cfg.d_model, depth, layout, plan.branch_multiplier()))
    params = linen_adapter.init(plan, model, jax.random.key(0), jnp.zeros((1, cfg.seq_len), jnp.int32))[
        "params"
    ]
    apply = plan.wrap_apply(model.apply)
    optimizer = plan.optimizer(learning_rate=LR, weight_decay=0.1)
    step = make_train_step(
        lambda p, b: cross_entropy(apply({"params": p}, b["inputs"]), b["targets"]), optimizer
    )
    state = create_train_state(params, optimizer)
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, _ = compiled(state, batch)  # warm-up
    times = []
    for _ in range(cfg.rounds):
        jax.block_until_ready(state)
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return {
        "depth": depth,
        "layout": layout,
        "compile_s": compile_s,
        "step_s": statistics.median(times),
        "memory_bytes": memory(compiled),
        "loss": float(metrics["loss"]),
    }


def run(cfg: DepthBenchConfig) -> dict:
    data = BatchIterator(load_corpus(max_bytes=500_000).train, seq_len=cfg.seq_len, batch_size=cfg.batch_size)
    batch = jax.device_put(next(data))
    rows = [measure(cfg, depth, layout, batch) for layout in cfg.layouts for depth in cfg.depths]
    cell = {(r["layout"], r["depth"]): r for r in rows}
    low, high = min(cfg.depths), max(cfg.depths)
    compile_growth = {lay: cell[lay, high]["compile_s"] / cell[lay, low]["compile_s"] for lay in cfg.layouts}
    remat = {}
    for base in ("unrolled", "scan"):
        if base in cfg.layouts and f"{base}+remat" in cfg.layouts:
            plain, rem = cell[base, high], cell[f"{base}+remat", high]
            remat[base] = {
                "memory_ratio": rem["memory_bytes"]["peak"] / plain["memory_bytes"]["peak"],
                "step_time_ratio": rem["step_s"] / plain["step_s"],
            }
    device = jax.devices()[0]
    return {
        "benchmark": "depth",
        "config": dataclasses.asdict(cfg),
        "device": f"{device.platform}:{device.device_kind}",
        "host": platform.node(),
        "jax": jax.__version__,
        "load_average": os.getloadavg(),
        "rows": rows,
        "compile_growth": compile_growth,
        "remat_at_max_depth": remat,
        "targets": {"compile_growth[scan]": "<= 1.5", "remat memory_ratio": "<= 0.7"},
    }


def format_table(result: dict) -> str:
    lines = [f"depth benchmark on {result['device']} (load average {result['load_average'][0]:.2f})"]
    lines.append(f"{'layout':<16}{'depth':>6}{'compile s':>11}{'step ms':>10}{'peak MiB':>10}")
    for r in result["rows"]:
        lines.append(
            f"{r['layout']:<16}{r['depth']:>6}{r['compile_s']:>11.2f}{r['step_s'] * 1e3:>10.1f}"
            f"{r['memory_bytes']['peak'] / 2**20:>10.1f}"
        )
    lines.append(
        "compile time, deepest / shallowest: "
        + ", ".join(f"{k} {v:.2f}" for k, v in result["compile_growth"].items())
    )
    for base, v in result["remat_at_max_depth"].items():
        lines.append(
            f"remat vs {base} at max depth: memory x{v['memory_ratio']:.2f}, "
            f"step time x{v['step_time_ratio']:.2f}"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    if not _OUT.value:
        raise app.UsageError("--out=DIR is required")
    cfg = DepthBenchConfig(
        depths=tuple(int(d) for d in _DEPTHS.value),
        d_model=_D_MODEL.value,
        seq_len=_SEQ_LEN.value,
        batch_size=_BATCH.value,
        rounds=_ROUNDS.value,
    )
    result = run(cfg)
    os.makedirs(_OUT.value, exist_ok=True)
    path = os.path.join(_OUT.value, "depth.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=lambda x: np.asarray(x).tolist())
    print(format_table(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    _OUT = flags.DEFINE_string("out", None, "Directory for depth.json.")
    _DEPTHS = flags.DEFINE_list("depths", ["2", "4", "8", "16"], "Numbers of blocks.")
    _D_MODEL = flags.DEFINE_integer("d_model", 128, "Residual width.")
    _SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Tokens per sequence.")
    _BATCH = flags.DEFINE_integer("batch_size", 16, "Sequences per step.")
    _ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed steps per (depth, layout).")
    app.run(main)

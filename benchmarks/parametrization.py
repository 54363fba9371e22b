"""Benchmark: the cost of a parametrization plan in the train step, and of building a plan.

1. **Train-step overhead.** The same byte-level Transformer (:class:`paramlab.models.Transformer`) at
   a width where every plan factor is non-trivial (``d_model`` = 4x the base), the same batches and
   initial parameters, two jitted train steps with donated state, in the same process:

   * **plan**: muP + AdamW with the plan's forward multipliers (``plan.wrap_apply``), per-parameter
     learning rates, per-layer epsilon and weight-decay rates (``plan.optimizer("adamw", ...)``);
   * **plain**: ``model.apply`` and ``optax.adamw`` with the same global hyperparameters.

   Both are timed in alternating blocks of steps (plan, plain, plan, ...) so that drift in the
   machine's speed hits both; reported: the median seconds per step of each and the ratio
   ``plan / plain`` (target <= 1.03), and, independent of the machine's load, the ratio of XLA's
   cost analysis (flops, bytes accessed) of the two compiled steps.
2. **Plan construction** for a ~1B-parameter Transformer: ``make_plan`` end to end (three
   ``jax.eval_shape`` traces at the base, delta and target widths, spec inference and the plan),
   no parameter memory (target < 2 s): wall and process CPU time (on a shared machine the CPU time is
   the figure to read), and the part after the traces alone.

    python -m benchmarks.parametrization --out=DIR    # writes DIR/parametrization.json, prints a table
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from paramlab.models import Transformer, TransformerConfig, cross_entropy
from paramlab.nn import linen as linen_adapter
from paramlab.parametrization import Parametrization, Plan, infer_spec, make_plan, model_shapes
from paramlab.sweep.results import format_table
from paramlab.train import create_train_state, jit_train_step, make_train_step


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmark (defaults: the reported configuration)."""

    d_model: int = 256
    base_d_model: int = 64
    n_layers: int = 2
    d_head: int = 32
    seq_len: int = 128
    batch_size: int = 8
    steps_per_block: int = 10
    blocks: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0
    # the ~1B-parameter plan
    big_d_model: int = 2048
    big_base_d_model: int = 256
    big_n_layers: int = 18
    big_vocab: int = 32768


def _widths(d_model: int, d_head: int) -> dict[str, int]:
    return {"d_model": d_model, "d_ff": 4 * d_model, "n_heads": d_model // d_head, "d_head": d_head}


def _config(cfg: BenchConfig, parametrization: Parametrization) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=256,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.d_model // cfg.d_head,
        d_head=cfg.d_head,
        d_ff=4 * cfg.d_model,
        max_len=cfg.seq_len,
        attention_scale=parametrization.resolved_attention_scale,
        attention_base_d_head=cfg.d_head,
    )


def _step_fn(apply, optimizer):
    """The train loop's own step (:func:`paramlab.train.make_train_step`), jitted with donation."""

    def loss_fn(params, batch):
        return cross_entropy(apply({"params": params}, batch[:, :-1]), batch[:, 1:])

    return jit_train_step(make_train_step(loss_fn, optimizer))


def measure_step_overhead(cfg: BenchConfig) -> dict:
    """Median seconds per step with and without the plan (see the module docstring)."""
    parametrization = Parametrization("mup", "adamw", eps_mode="per_layer")
    model_config = _config(cfg, parametrization)
    make_model = lambda w: Transformer(model_config.with_width(**w))
    tokens = jax.ShapeDtypeStruct((cfg.batch_size, cfg.seq_len), jnp.int32)
    plan = make_plan(
        make_model,
        parametrization,
        base=_widths(cfg.base_d_model, cfg.d_head),
        delta=_widths(2 * cfg.base_d_model, cfg.d_head),
        target=_widths(cfg.d_model, cfg.d_head),
        inputs=(tokens,),
    )
    model = make_model(_widths(cfg.d_model, cfg.d_head))
    params = linen_adapter.init(plan, model, jax.random.key(cfg.seed), jnp.zeros(tokens.shape, jnp.int32))[
        "params"
    ]
    rng = np.random.default_rng(cfg.seed)
    batches = [
        jnp.asarray(rng.integers(0, 256, (cfg.batch_size, cfg.seq_len + 1)), jnp.int32)
        for _ in range(cfg.steps_per_block)
    ]
    optimizers = {
        "plan": (
            plan.wrap_apply(model.apply),
            plan.optimizer(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay),
        ),
        "plain": (model.apply, optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay)),
    }
    sides = {name: (_step_fn(apply, opt), opt) for name, (apply, opt) in optimizers.items()}
    states, compile_s, per_step = {}, {}, {name: [] for name in sides}
    cost = {}
    for name, (step, optimizer) in sides.items():
        state = create_train_state(jax.tree.map(jnp.copy, params), optimizer)
        analysis = step.lower(state, batches[0]).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        cost[name] = {k: float(analysis[k]) for k in ("flops", "bytes accessed") if k in analysis}
        t0 = time.perf_counter()
        state, _ = step(state, batches[0])
        jax.block_until_ready(state)
        compile_s[name] = time.perf_counter() - t0
        states[name] = state
    for _ in range(cfg.blocks):
        for name, (step, _) in sides.items():
            state = states[name]
            t0 = time.perf_counter()
            for batch in batches:
                state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))
            per_step[name].append((time.perf_counter() - t0) / len(batches))
            states[name] = state
    median = {name: statistics.median(times) for name, times in per_step.items()}
    n_params = sum(x.size for x in jax.tree.leaves(params))
    return {
        "n_params": int(n_params),
        "compile_s": compile_s,
        "step_s_median": median,
        "step_s_all": per_step,
        "ratio": median["plan"] / median["plain"],
        "xla_cost": cost,
        "xla_cost_ratio": {
            k: cost["plan"][k] / cost["plain"][k] for k in cost["plan"] if cost["plain"].get(k)
        },
    }


def measure_plan_construction(cfg: BenchConfig) -> dict:
    """``make_plan`` wall time for a ~1B-parameter Transformer (abstract shapes only)."""
    parametrization = Parametrization("mup", "adamw", eps_mode="per_layer")
    big = TransformerConfig(
        vocab_size=cfg.big_vocab,
        d_model=cfg.big_d_model,
        n_layers=cfg.big_n_layers,
        n_heads=cfg.big_d_model // 128,
        d_head=128,
        d_ff=4 * cfg.big_d_model,
        max_len=2048,
    )
    make_model = lambda w: Transformer(big.with_width(**w))
    tokens = jax.ShapeDtypeStruct((1, 16), jnp.int32)
    widths = [_widths(d, 128) for d in (cfg.big_base_d_model, 2 * cfg.big_base_d_model, cfg.big_d_model)]
    build = lambda: make_plan(
        make_model, parametrization, base=widths[0], delta=widths[1], target=widths[2], inputs=(tokens,)
    )
    build()  # the first call also pays for imports and JAX's tracing caches
    t0, c0 = time.perf_counter(), time.process_time()
    plan = build()
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    shapes = [model_shapes(make_model, w, (tokens,)) for w in widths]
    t0 = time.perf_counter()
    Plan(infer_spec(shapes[0][0], shapes[1][0], *shapes[2]), parametrization)
    after_traces = time.perf_counter() - t0
    n_params = sum(int(np.prod(s.shape)) for s in plan.specs.values())
    return {
        "n_params": n_params,
        "n_tensors": len(plan.specs),
        "make_plan_s": total,
        "make_plan_cpu_s": cpu,
        "spec_and_plan_s": after_traces,
    }


def measure(cfg: BenchConfig) -> dict:
    """Both measurements; returns the JSON-able report."""
    return {
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
        "train_step": measure_step_overhead(cfg),
        "plan_construction": measure_plan_construction(cfg),
    }


def summary_table(report: dict) -> str:
    step = report["train_step"]
    rows = [
        {"side": name, "step_ms": 1e3 * step["step_s_median"][name], "compile_s": step["compile_s"][name]}
        for name in ("plain", "plan")
    ]
    build = report["plan_construction"]
    return "\n".join(
        [
            f"Transformer d_model={report['config']['d_model']} ({step['n_params'] / 1e6:.2f}M params), "
            f"muP + AdamW, base d_model={report['config']['base_d_model']}",
            format_table(rows),
            f"overhead plan/plain: {step['ratio']:.4f} (target <= 1.03); XLA cost analysis plan/plain: "
            + ", ".join(f"{k} {v:.4f}" for k, v in step["xla_cost_ratio"].items()),
            f"plan construction, {build['n_params'] / 1e9:.2f}B params in {build['n_tensors']} tensors: "
            f"{build['make_plan_s']:.3f} s wall, {build['make_plan_cpu_s']:.3f} s CPU (target < 2 s), "
            f"of which spec + plan {build['spec_and_plan_s']:.4f} s",
        ]
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = BenchConfig(d_model=_D_MODEL.value, blocks=_BLOCKS.value)
    report = measure(cfg)
    os.makedirs(_OUT.value, exist_ok=True)
    path = os.path.join(_OUT.value, "parametrization.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(summary_table(report))
    print(f"wrote {path}")


if __name__ == "__main__":
    # Flags are defined only when run as a program, so tests can import several benchmarks.
    _OUT = flags.DEFINE_string(
        "out", None, "Directory for parametrization.json (created if missing).", required=True
    )
    _D_MODEL = flags.DEFINE_integer(
        "d_model", BenchConfig.d_model, "Transformer width of the step benchmark."
    )
    _BLOCKS = flags.DEFINE_integer("blocks", BenchConfig.blocks, "Timed blocks per side.")
    app.run(main)

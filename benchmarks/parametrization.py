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
2. **Plan construction**: ``make_plan`` end to end (abstract traces at the base and target widths,
   and at the delta widths when the target cannot stand in for them; spec inference; the plan) for
   the 24-layer, d_model 1024 Transformer, unrolled and scanned, and a ~1B-parameter one, against one
   ``jax.eval_shape`` of the target model's init (target: <= 2x that, and <= 0.5 s at 24 x 1024).
   No parameter memory is allocated.

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
from paramlab.parametrization import Parametrization, make_plan
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


@dataclasses.dataclass(frozen=True)
class PlanModel:
    """A Transformer whose plan construction is timed (base and delta at 1/4 and 1/2 of its width)."""

    d_model: int
    n_layers: int
    vocab: int = 256
    scan_layers: bool = False


PLAN_MODELS = {  # name -> model; the 24-layer model unrolled and scanned, and a ~1B model
    "24x1024": PlanModel(1024, 24),
    "24x1024_scan": PlanModel(1024, 24, scan_layers=True),
    "1B": PlanModel(2048, 18, vocab=32768),
}


def _timed(call, repeats: int) -> tuple[object, dict[str, float]]:
    """``call()``'s result and its median wall and CPU seconds over ``repeats`` calls after a warm-up."""
    result = call()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = call()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return result, {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}


def _plan_construction(model: PlanModel, repeats: int) -> dict:
    """One model's ``make_plan`` and ``eval_shape`` timings (see :func:`measure_plan_construction`)."""
    config = TransformerConfig(
        vocab_size=model.vocab,
        d_model=model.d_model,
        n_layers=model.n_layers,
        n_heads=model.d_model // 128,
        d_head=128,
        d_ff=4 * model.d_model,
        max_len=2048,
        scan_layers=model.scan_layers,
    )
    tokens = jax.ShapeDtypeStruct((1, 16), jnp.int32)
    base, delta, target = (_widths(d, 128) for d in (model.d_model // 4, model.d_model // 2, model.d_model))
    make_model = lambda w: Transformer(config.with_width(**w))  # noqa: E731
    parametrization = Parametrization("mup", "adamw", eps_mode="per_layer")
    plan, plan_time = _timed(
        lambda: make_plan(
            make_model, parametrization, base=base, delta=delta, target=target, inputs=(tokens,)
        ),
        repeats,
    )
    target_model = make_model(target)
    # a new function per call, as make_plan's traces are: no cached trace is reused
    _, trace_time = _timed(
        lambda: jax.eval_shape(lambda r, x: target_model.init(r, x), jax.random.key(0), tokens), repeats
    )
    return {
        "model": dataclasses.asdict(model),
        "n_params": sum(int(np.prod(s.shape)) for s in plan.specs.values()),
        "n_tensors": len(plan.specs),
        **{f"make_plan_{unit}": v for unit, v in plan_time.items()},
        **{f"eval_shape_{unit}": v for unit, v in trace_time.items()},
        "ratio_to_eval_shape": plan_time["wall_s"] / trace_time["wall_s"],
    }


def measure_plan_construction(models: dict[str, PlanModel], repeats: int = 3) -> dict:
    """``make_plan`` against one ``jax.eval_shape`` of the target's init, per model (abstract shapes only).

    Each figure is the median of ``repeats`` calls after one warm-up call (which pays for imports and
    JAX's caches); process CPU time is recorded too (on a shared machine it is the steadier figure).
    """
    return {name: _plan_construction(model, repeats) for name, model in models.items()}


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
        "plan_construction": measure_plan_construction(PLAN_MODELS),
    }


def summary_table(report: dict) -> str:
    step = report["train_step"]
    rows = [
        {"side": name, "step_ms": 1e3 * step["step_s_median"][name], "compile_s": step["compile_s"][name]}
        for name in ("plain", "plan")
    ]
    lines = [
        f"Transformer d_model={report['config']['d_model']} ({step['n_params'] / 1e6:.2f}M params), "
        f"muP + AdamW, base d_model={report['config']['base_d_model']}",
        format_table(rows),
        f"overhead plan/plain: {step['ratio']:.4f} (target <= 1.03); XLA cost analysis plan/plain: "
        + ", ".join(f"{k} {v:.4f}" for k, v in step["xla_cost_ratio"].items()),
        "plan construction, make_plan vs one eval_shape of the target's init "
        "(target <= 2x; 24x1024 <= 0.5 s):",
    ]
    for name, build in report["plan_construction"].items():
        lines.append(
            f"  {name}: {build['n_params'] / 1e6:.0f}M params, {build['n_tensors']} tensors: make_plan "
            f"{build['make_plan_wall_s']:.3f} s ({build['make_plan_cpu_s']:.3f} s CPU), eval_shape "
            f"{build['eval_shape_wall_s']:.3f} s, ratio {build['ratio_to_eval_shape']:.2f}"
        )
    return "\n".join(lines)


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

"""Benchmark: paramlab's optimizers against optax's on a Transformer-shaped parameter tree.

The tree (``--size=full``: d_model 512, 5 layers, 8 heads of 64, MLP 2048, byte vocabulary 256; about
16.0M parameters) holds an embedding and a readout matrix, per layer 3-D attention kernels q/k/v
``(d, heads, head_dim)`` (fan-in ``(0,)``, fan-out ``(1, 2)``) and o ``(heads, head_dim, d)`` (fan-in
``(0, 1)``, fan-out ``(2,)``), two MLP matrices with biases, and norm gains.

Each optimizer runs ``params, state = step(params, state, grads)`` (update and ``apply_updates`` in one
``jax.jit`` with params and state donated) on fixed random gradients. All optimizers are timed in the same
process, interleaved in rounds (so drift in machine speed hits all alike); reported is the median step
time over all rounds after warm-up. Compared:

* ``paramlab.optim.adam_atan2`` vs ``optax.adam`` (target ratio <= 1.05).
* ``scale_by_factored_moments`` in the Adafactor configuration (clipping 1, parameter scale, learning
  rate 1e-2) and ``paramlab.optim.adafactor(1e-2)``, each with optax's factoring rule and with the
  declared fan axes, vs ``optax.adafactor(1e-2)`` (target ratio <= 1.0; optimizer-state bytes in total
  and on the 3-D attention kernels, which optax's rule leaves unfactored), and with the fan axes vs
  ``optax.adam`` (target ratio <= 1.0: a factored step moves fewer bytes than Adam's).

Each ratio is given twice: from the medians over all rounds, and as the median, minimum and maximum
of the per-round ratios (the spread is the machine's noise).

Also reported: "minimum traffic" bandwidth, ``(2 params + grads + 2 state) bytes / step time``, a lower
bound on the memory traffic of a step, and the figure of merit: that bandwidth as a fraction of the
machine's copy bandwidth, measured in the same rounds as ``2 params bytes / time`` of a jitted copy of
the parameter tree into a donated tree of the same shapes (read one, write the other in place).

    python -m benchmarks.optimizers --out=DIR [--size=small]   # writes DIR/optimizers.json, prints a table
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from paramlab import optim
from paramlab.nn import FanAxes


@dataclasses.dataclass(frozen=True)
class TreeConfig:
    """Sizes of the Transformer-shaped parameter tree."""

    d_model: int = 512
    n_layers: int = 5
    n_heads: int = 8
    d_head: int = 64
    d_ff: int = 2048
    vocab: int = 256


SIZES = {
    "full": (TreeConfig(), 3, 6, 10),  # (tree, warmup steps, timed steps per round, rounds): 60 timed
    "small": (TreeConfig(d_model=128, n_layers=1, n_heads=2, d_head=64, d_ff=256), 1, 2, 2),
}

_Q_FAN = FanAxes((0,), (1, 2))
_O_FAN = FanAxes((0, 1), (2,))
ATTENTION_KERNELS = ("q", "k", "v", "o")


def make_tree(cfg: TreeConfig) -> tuple[dict, dict]:
    """``(shapes, fan_axes)``: nested dicts of shapes and of :class:`FanAxes` (``None``: the default)."""
    d, h, dh, f = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff
    shapes: dict[str, Any] = {"embed": (cfg.vocab, d), "final_norm": (d,), "readout": (d, cfg.vocab)}
    fans: dict[str, Any] = {"embed": None, "final_norm": None, "readout": None}
    for layer in range(cfg.n_layers):
        shapes[f"layer_{layer}"] = {
            "attn_norm": (d,),
            "q": (d, h, dh),
            "k": (d, h, dh),
            "v": (d, h, dh),
            "o": (h, dh, d),
            "mlp_norm": (d,),
            "mlp_in": (d, f),
            "mlp_in_bias": (f,),
            "mlp_out": (f, d),
            "mlp_out_bias": (d,),
        }
        fans[f"layer_{layer}"] = {
            name: (_O_FAN if name == "o" else _Q_FAN) if name in ATTENTION_KERNELS else None
            for name in shapes[f"layer_{layer}"]
        }
    return shapes, fans


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


def random_tree(shapes: dict, seed: int, scale: float) -> dict:
    """Float32 arrays of the given shapes, normal with std ``scale``."""
    keys = iter(jax.random.split(jax.random.key(seed), 256))
    return jax.tree.map(
        lambda s: scale * jax.random.normal(next(keys), s, jnp.float32), shapes, is_leaf=_is_shape
    )


def optimizers(fans: dict) -> dict[str, Callable[[Any], optax.GradientTransformation]]:
    """Name -> factory taking the ``fan_axes`` tree (of the parameters it is initialised with)."""
    lr = 1e-2

    def factored_moments(fan_axes):
        return optax.chain(
            optim.scale_by_factored_moments(
                clipping_threshold=1.0, multiply_by_parameter_scale=True, fan_axes=fan_axes
            ),
            optax.scale_by_learning_rate(lr),
        )

    return {
        "optax.adam": lambda fan_axes: optax.adam(1e-3),
        "adam_atan2": lambda fan_axes: optim.adam_atan2(1e-3),
        "optax.adafactor": lambda fan_axes: optax.adafactor(lr),
        "factored_moments": lambda fan_axes: factored_moments(None),
        "factored_moments+fan_axes": factored_moments,
        "paramlab.adafactor": lambda fan_axes: optim.adafactor(lr),
        "paramlab.adafactor+fan_axes": lambda fan_axes: optim.adafactor(lr, fan_axes=fan_axes),
    }


COMPARISONS = (  # (name, baseline, target ratio)
    ("adam_atan2", "optax.adam", 1.05),
    ("factored_moments+fan_axes", "optax.adam", 1.0),
    ("paramlab.adafactor+fan_axes", "optax.adam", 1.0),
    ("factored_moments", "optax.adafactor", 1.0),
    ("factored_moments+fan_axes", "optax.adafactor", 1.0),
    ("paramlab.adafactor", "optax.adafactor", 1.0),
    ("paramlab.adafactor+fan_axes", "optax.adafactor", 1.0),
)


def tree_bytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def _make_step(opt: optax.GradientTransformation):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def measure(size: str = "full") -> dict:
    """Time every optimizer (interleaved rounds), count state bytes; returns the JSON-able report."""
    cfg, warmup, steps_per_round, rounds = SIZES[size]
    load_before = os.getloadavg()[0]
    shapes, fans = make_tree(cfg)
    grads = random_tree(shapes, seed=1, scale=1e-3)
    factories = optimizers(fans)
    runs = {}
    for name, factory in factories.items():
        opt = factory(fans)
        params = random_tree(shapes, seed=0, scale=0.02)
        state = jax.jit(opt.init)(params)
        step = _make_step(opt)
        t0 = time.perf_counter()
        step = step.lower(params, state, grads).compile()
        compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            params, state = step(params, state, grads)
        jax.block_until_ready((params, state))
        runs[name] = {"step": step, "params": params, "state": state, "times": [], "compile_s": compile_s}
    # the copy writes into a donated tree, as the optimizers write into their donated params and state
    # (a fresh output tree would time the operating system's page faults, not the memory)
    copy_into = jax.jit(lambda source, target: jax.tree.map(jnp.copy, source), donate_argnums=1)
    copy_source = random_tree(shapes, seed=0, scale=0.02)
    copy_target = jax.block_until_ready(copy_into(copy_source, random_tree(shapes, seed=2, scale=1.0)))
    copy_times = []
    for _ in range(rounds):
        for run in runs.values():
            for _ in range(steps_per_round):
                t0 = time.perf_counter()
                run["params"], run["state"] = run["step"](run["params"], run["state"], grads)
                jax.block_until_ready((run["params"], run["state"]))
                run["times"].append(time.perf_counter() - t0)
        for _ in range(steps_per_round):
            t0 = time.perf_counter()
            copy_target = jax.block_until_ready(copy_into(copy_source, copy_target))
            copy_times.append(time.perf_counter() - t0)

    kernels = {"q": shapes["layer_0"]["q"], "o": shapes["layer_0"]["o"]}
    kernel_fans = {"q": _Q_FAN, "o": _O_FAN}
    n_params = int(sum(np.prod(s) for s in jax.tree.leaves(shapes, is_leaf=_is_shape)))
    param_bytes = 4 * n_params
    copy_gb_per_s = 2 * param_bytes / float(np.median(copy_times)) / 1e9
    report_runs = {}
    for name, run in runs.items():
        state_bytes = tree_bytes(run["state"])
        kernel_state = jax.eval_shape(factories[name](kernel_fans).init, random_tree(kernels, 0, 1.0))
        median_s = float(np.median(run["times"]))
        min_traffic = 3 * param_bytes + 2 * state_bytes
        report_runs[name] = {
            "median_ms": 1e3 * median_s,
            "min_ms": 1e3 * float(np.min(run["times"])),
            "compile_s": run["compile_s"],
            "state_bytes": state_bytes,
            "state_bytes_per_3d_kernel_pair_q_o": tree_bytes(kernel_state),
            "min_traffic_gb_per_s": min_traffic / median_s / 1e9,
            "fraction_of_copy_bandwidth": min_traffic / median_s / 1e9 / copy_gb_per_s,
            "finite": bool(all(np.all(np.isfinite(x)) for x in jax.tree.leaves(run["params"]))),
        }
    comparisons = {}
    for name, base, target in COMPARISONS:
        # each round's median time ratio: the two were timed minutes apart at most, so drifts in the
        # machine's speed cancel; their spread is the measurement's noise
        per_round = [
            np.median(runs[name]["times"][i : i + steps_per_round])
            / np.median(runs[base]["times"][i : i + steps_per_round])
            for i in range(0, rounds * steps_per_round, steps_per_round)
        ]
        comparisons[f"{name} / {base}"] = {
            "time_ratio": report_runs[name]["median_ms"] / report_runs[base]["median_ms"],
            "round_ratio_median": float(np.median(per_round)),
            "round_ratio_min": float(np.min(per_round)),
            "round_ratio_max": float(np.max(per_round)),
            "target": target,
            "state_bytes_ratio": report_runs[name]["state_bytes"] / report_runs[base]["state_bytes"],
        }
    return {
        "size": size,
        "tree": dataclasses.asdict(cfg),
        "n_params": n_params,
        "param_bytes": param_bytes,
        "timed_steps": rounds * steps_per_round,
        "copy": {"median_ms": 1e3 * float(np.median(copy_times)), "gb_per_s": copy_gb_per_s},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "optax": optax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "runs": report_runs,
        "comparisons": comparisons,
    }


def summary_table(report: dict) -> str:
    """One row per optimizer, then one per comparison."""
    copy, load = report["copy"], report["machine"]["load_average_1min"]
    lines = [
        f"{report['n_params'] / 1e6:.2f}M parameters, median of {report['timed_steps']} steps "
        f"({report['machine']['backend']}, jax {report['machine']['jax']})",
        f"jnp copy of the parameters: {copy['median_ms']:.2f} ms, {copy['gb_per_s']:.2f} GB/s; "
        f"load average {load['before']:.2f} before, {load['after']:.2f} after",
        f"{'optimizer':<30}{'median ms':>11}{'state MB':>10}{'q+o state KB':>14}{'min GB/s':>10}"
        f"{'of copy':>9}",
    ]
    for name, run in report["runs"].items():
        lines.append(
            f"{name:<30}{run['median_ms']:>11.2f}{run['state_bytes'] / 2**20:>10.2f}"
            f"{run['state_bytes_per_3d_kernel_pair_q_o'] / 2**10:>14.1f}{run['min_traffic_gb_per_s']:>10.2f}"
            f"{run['fraction_of_copy_bandwidth']:>9.2f}"
        )
    lines.append(
        f"{'comparison':<50}{'time ratio':>11}{'rounds: min-max':>17}{'target':>8}{'state ratio':>13}"
    )
    for name, cmp in report["comparisons"].items():
        spread = f"{cmp['round_ratio_min']:.3f}-{cmp['round_ratio_max']:.3f}"
        lines.append(
            f"{name:<50}{cmp['time_ratio']:>11.3f}{spread:>17}{cmp['target']:>8.2f}"
            f"{cmp['state_bytes_ratio']:>13.3f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    report = measure(_SIZE.value)
    os.makedirs(_OUT.value, exist_ok=True)
    path = os.path.join(_OUT.value, "optimizers.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(summary_table(report))
    print(f"wrote {path}")


if __name__ == "__main__":
    # Flags are defined only when run as a program, so tests can import several benchmarks.
    _OUT = flags.DEFINE_string(
        "out", None, "Directory for optimizers.json (created if missing).", required=True
    )
    _SIZE = flags.DEFINE_enum(
        "size", "full", list(SIZES), "Tree size: full (~16M parameters) or small (smoke)."
    )
    app.run(main)

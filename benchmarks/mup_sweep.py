"""Benchmark: an 8-learning-rate muP sweep of an MLP, paramlab's vmapped sweep vs PyTorch + microsoft/mup.

Both sides train the same MLP (``in_dim -> width -> width -> out_dim``, ReLU, muP Table 8 with Adam:
``mup.MuReadout`` and ``mup.MuAdam`` on the torch side, :class:`paramlab.models.MLP` with a
``"mup_table8"`` plan on paramlab's) from the same initial weights (torch's, after
``mup.set_base_shapes``, copied into the JAX parameters) on the same teacher-student regression
batches, for each learning rate:

* **paramlab**: :func:`paramlab.sweep.run_sweep`, every learning rate in one vmapped program;
* **torch + mup**: the runs one after another, each a new seeded model (``set_base_shapes``) and a
  ``MuAdam``, as a mup user writes a sweep (``torch.set_num_threads`` left at its default: every core).

Reported: each side's wall time end to end (paramlab also split into init, compile and train), the
ratio ``paramlab / torch``, and the largest relative difference between the two sides' losses per
learning rate (first and last step), which checks that both trained the same thing.

    python -m benchmarks.mup_sweep --out=DIR [--widths=128,512]   # DIR/mup_sweep.json, one table per width

Needs the ``[mup]`` extra (``torch==2.13.0``, CPU build, and ``mup``): ``make setup`` installs it.
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
from absl import app, flags

from paramlab.models import MLP, MLPConfig
from paramlab.parametrization import Parametrization, make_plan
from paramlab.sweep import product_members, run_sweep


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmark (defaults: the reported configuration)."""

    in_dim: int = 64
    width: int = 512
    base_width: int = 64
    out_dim: int = 16
    batch_size: int = 128
    steps: int = 300
    steps_per_call: int = 100
    lrs: tuple[float, ...] = tuple(2.0**-k for k in range(12, 4, -1))  # 2^-12 .. 2^-5, spaced 2x
    seed: int = 0


def _torch_mlp(cfg: BenchConfig, width: int):
    """The torch side's model: ``nn.Linear`` input and hidden layers, a ``mup.MuReadout`` readout."""
    import mup
    import torch

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense_0 = torch.nn.Linear(cfg.in_dim, width)
            self.dense_1 = torch.nn.Linear(width, width)
            self.readout = mup.MuReadout(width, cfg.out_dim)

        def forward(self, x):
            h = torch.relu(self.dense_0(x))
            return self.readout(torch.relu(self.dense_1(h)))

    return TorchMLP()


def _torch_model(cfg: BenchConfig):
    """The muP-initialised torch model at ``cfg.width`` (``mup.set_base_shapes``)."""
    import mup
    import torch

    torch.manual_seed(cfg.seed)
    model = _torch_mlp(cfg, cfg.width)
    mup.set_base_shapes(model, _torch_mlp(cfg, cfg.base_width), delta=_torch_mlp(cfg, 2 * cfg.base_width))
    return model


def _jax_params(model) -> dict:
    """The torch model's weights as :class:`paramlab.models.MLP` parameters (kernels transposed)."""
    params: dict = {}
    for name, p in model.named_parameters():
        layer, kind = name.split(".")
        value = p.detach().numpy()
        params.setdefault(layer, {})["kernel" if kind == "weight" else "bias"] = (
            value.T if kind == "weight" else value
        )
    return params


def _batches(cfg: BenchConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Teacher-student regression: ``y = tanh(x T)``, ``T`` a fixed random ``(in_dim, out_dim)`` map."""
    rng = np.random.default_rng(cfg.seed)
    teacher = rng.standard_normal((cfg.in_dim, cfg.out_dim)).astype(np.float32) / np.sqrt(cfg.in_dim)
    xs = [rng.standard_normal((cfg.batch_size, cfg.in_dim)).astype(np.float32) for _ in range(cfg.steps)]
    return [(x, np.tanh(x @ teacher)) for x in xs]


def torch_sweep(cfg: BenchConfig, batches) -> tuple[float, np.ndarray]:
    """``(wall seconds, losses (steps, K))``: the runs one after another, each a new seeded model."""
    import mup
    import torch

    t0 = time.perf_counter()
    losses = np.zeros((cfg.steps, len(cfg.lrs)))
    for k, lr in enumerate(cfg.lrs):
        run = _torch_model(cfg)  # the same weights each time (seeded)
        optimizer = mup.MuAdam(run.parameters(), lr=lr)
        for step, (x, y) in enumerate(batches):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(run(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()
            optimizer.step()
            losses[step, k] = loss.item()
    return time.perf_counter() - t0, losses


def paramlab_sweep(cfg: BenchConfig, params: dict, batches) -> tuple[float, dict, np.ndarray]:
    """``(wall seconds, timings, losses (steps, K))`` of :func:`paramlab.sweep.run_sweep`."""
    t0 = time.perf_counter()
    mlp = lambda width: MLP(MLPConfig(in_dim=cfg.in_dim, width=width, out_dim=cfg.out_dim))  # noqa: E731
    plan = make_plan(
        mlp,
        Parametrization("mup_table8", "adam"),
        base=cfg.base_width,
        delta=2 * cfg.base_width,
        target=cfg.width,
        inputs=(jax.ShapeDtypeStruct((cfg.batch_size, cfg.in_dim), jnp.float32),),
    )
    apply = plan.wrap_apply(mlp(cfg.width).apply)

    def loss_fn(p, batch):
        return jnp.mean((apply({"params": p}, batch["x"]) - batch["y"]) ** 2), {}

    result = run_sweep(
        lambda rng: jax.tree.map(jnp.asarray, params),  # every member starts from torch's weights
        loss_fn,
        lambda learning_rate: plan.optimizer("adam", learning_rate),
        product_members(seeds=(cfg.seed,), learning_rate=cfg.lrs),
        iter({"x": x, "y": y} for x, y in batches),
        cfg.steps,
        steps_per_call=cfg.steps_per_call,
    )
    return time.perf_counter() - t0, result.timings, result.history["loss"].astype(np.float64)


def measure(cfg: BenchConfig) -> dict:
    """Both sides once; returns the JSON-able report."""
    import torch

    model = _torch_model(cfg)
    batches = _batches(cfg)
    ours_s, timings, ours = paramlab_sweep(cfg, _jax_params(model), batches)
    theirs_s, theirs = torch_sweep(cfg, batches)
    rel = np.abs(ours - theirs) / np.abs(theirs)
    return {
        "config": dataclasses.asdict(cfg),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "backend": jax.default_backend(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_1min": os.getloadavg()[0],
        },
        "paramlab": {"total_s": ours_s, **timings},
        "torch_mup": {"total_s": theirs_s},
        "ratio_total": ours_s / theirs_s,
        "ratio_train": timings["train_s"] / theirs_s,
        "max_rel_loss_diff_first_step": float(rel[0].max()),
        "max_rel_loss_diff_last_step": float(rel[-1].max()),
        "final_loss_paramlab": ours[-1].tolist(),
        "final_loss_torch_mup": theirs[-1].tolist(),
    }


def summary_table(report: dict) -> str:
    cfg, ours = report["config"], report["paramlab"]
    return "\n".join(
        [
            f"muP MLP width {cfg['width']} (base {cfg['base_width']}), {len(cfg['lrs'])} learning rates x "
            f"{cfg['steps']} Adam steps, batch {cfg['batch_size']}",
            f"paramlab vmapped sweep: {ours['total_s']:.2f} s (init {ours['init_s']:.2f}, compile "
            f"{ours['compile_s']:.2f}, train {ours['train_s']:.2f})",
            f"torch + mup, sequential: {report['torch_mup']['total_s']:.2f} s "
            f"({report['machine']['torch_threads']} threads)",
            f"ratio paramlab / torch: total {report['ratio_total']:.3f}, "
            f"train only {report['ratio_train']:.3f}",
            f"max rel loss diff: first step {report['max_rel_loss_diff_first_step']:.2e}, last step "
            f"{report['max_rel_loss_diff_last_step']:.2e}",
        ]
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    reports = {}
    for width in _WIDTHS.value:
        reports[width] = measure(BenchConfig(width=int(width), steps=_STEPS.value))
        print(summary_table(reports[width]))
    os.makedirs(_OUT.value, exist_ok=True)
    path = os.path.join(_OUT.value, "mup_sweep.json")
    with open(path, "w") as f:
        json.dump(reports, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    # Flags are defined only when run as a program, so tests can import several benchmarks.
    _OUT = flags.DEFINE_string(
        "out", None, "Directory for mup_sweep.json (created if missing).", required=True
    )
    _WIDTHS = flags.DEFINE_list("widths", ["128", "512"], "MLP widths, one comparison each.")
    _STEPS = flags.DEFINE_integer("steps", BenchConfig.steps, "Adam steps per learning rate.")
    app.run(main)

"""The config-built Transformer (experiments/configs/tiny.py) under DP, FSDP + accumulation, and bf16.

In-process on the 4 CPU devices of tests/conftest.py: sharded losses equal one device's (rel <= 1e-5).
"""

import numpy as np

from experiments.configs import tiny
from experiments.train import build
from paramlab.train import fit, read_metrics


def _tiny_losses(tmp_path, name, **overrides):
    """Train the tiny config in-process (4 CPU devices from tests/conftest.py) and return its losses."""
    config = tiny.get_config()
    config.train.steps, config.eval.every, config.checkpoint.every, config.logging.every = 6, 0, 0, 1
    config.schedule.warmup_steps = 2
    for key, value in overrides.items():
        section, field = key.split("__")
        setattr(getattr(config, section), field, value)
    experiment = build(config)
    result = fit(experiment.task, experiment.loop, tmp_path / name, log=lambda _: None)
    return [r["loss"] for r in read_metrics(result.metrics_path) if "loss" in r]


def test_transformer_data_parallel_fsdp_and_bf16(tmp_path):
    one = _tiny_losses(tmp_path, "one", sharding__data=1)
    fsdp = _tiny_losses(tmp_path, "fsdp", sharding__data=2, sharding__fsdp=2, train__microbatches=2)
    np.testing.assert_allclose(fsdp, one, rtol=1e-5)
    bf16 = _tiny_losses(tmp_path, "bf16", sharding__data=1, train__compute_dtype="bfloat16")
    assert np.all(np.isfinite(bf16)) and bf16 != one
    np.testing.assert_allclose(bf16, one, rtol=2e-2)

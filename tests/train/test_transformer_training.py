"""The config-built Transformer (experiments/configs/tiny.py) under DP, FSDP + accumulation, and bf16.

In-process on the 4 CPU devices of tests/conftest.py: sharded losses equal one device's (rel <= 1e-5).
"""

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from experiments.train import build
from paramlab.optim import OPTIMIZERS
from paramlab.train import create_train_state, fit, make_train_step, read_metrics


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


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("parametrization", ["mup", "sp"])
def test_every_configured_optimizer_builds_and_traces(name, parametrization):
    config = tiny.get_config()
    config.optimizer.name, config.parametrization.name = name, parametrization
    if name == "adafactor":
        config.model.zero_init_readout = config.model.zero_init_query = False
    experiment = build(config)
    task = experiment.task
    state = jax.eval_shape(
        lambda rng: create_train_state(task.init_params(rng), task.optimizer), jax.random.key(0)
    )
    batch = next(task.train_batches)
    step = make_train_step(task.loss_fn, task.optimizer, learning_rate=task.learning_rate, roles=task.roles)
    new_state, metrics = jax.eval_shape(step, state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert {"loss", "grad_norm", "learning_rate", "update_rms/hidden", "param_rms/readout"} <= set(metrics)


def test_adafactor_with_zero_init_is_refused():
    config = tiny.get_config()
    config.optimizer.name = "adafactor"
    with pytest.raises(ValueError, match="model.zero_init_readout=False and model.zero_init_query=False"):
        build(config)

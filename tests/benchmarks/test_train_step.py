"""benchmarks/train_step.py at a tiny size: both steps train the same model to the same losses."""

import jax
import numpy as np

from benchmarks import train_step as bench


def _assert_same_training(ours, state, ours_batch, theirs, theirs_state, theirs_batch):
    """Three steps of each: the same losses and the same parameters."""
    for _ in range(3):
        state, metrics = ours(state, ours_batch)
        theirs_state, loss = theirs(theirs_state, theirs_batch)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(theirs_state[0])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_paramlab_and_optax_steps_agree_at_base_width():
    # base width == target width (d_model = d_head): every muP factor is 1, so the plan's AdamW must equal
    # optax.adamw exactly up to float rounding
    cfg = bench.BenchConfig(d_model=16, d_head=16, n_layers=1, seq_len=16, batch_size=4, steps=1, rounds=1)
    model, plan, params, batch = bench.build(cfg)
    ours, state, ours_batch = bench.paramlab_step(cfg, model, plan, jax.tree.map(np.array, params), batch)
    theirs, theirs_state, theirs_batch = bench.optax_step(model, jax.tree.map(np.array, params), batch)
    _assert_same_training(ours, state, ours_batch, theirs, theirs_state, theirs_batch)


def test_run_reports_ratios_and_table():
    cfg = bench.BenchConfig(d_model=32, d_head=8, n_layers=1, seq_len=16, batch_size=4, steps=1, rounds=2)
    result = bench.run(cfg)
    assert result["throughput_ratio"] > 0 and len(result["round_throughput_ratios"]) == 2
    mem = result["paramlab"]["memory_bytes"]
    assert mem["peak"] == mem["argument"] + mem["output"] - mem["alias"] + mem["temp"] > 0
    assert 0.5 < result["memory_ratio"] < 2.0
    table = bench.format_table(result)
    assert "tokens/s" in table and "peak memory" in table


def test_plain_side_is_the_optax_step_inside_paramlabs_train_step():
    # away from the base width: the plain side must still equal the hand-written optax AdamW step
    cfg = bench.BenchConfig(d_model=32, d_head=8, n_layers=1, seq_len=16, batch_size=4, steps=1, rounds=1)
    model, plan, params, batch = bench.build(cfg)
    plain, state, plain_batch = bench.paramlab_step(
        cfg, model, plan, jax.tree.map(np.array, params), batch, use_plan=False
    )
    theirs, theirs_state, theirs_batch = bench.optax_step(model, jax.tree.map(np.array, params), batch)
    _assert_same_training(plain, state, plain_batch, theirs, theirs_state, theirs_batch)

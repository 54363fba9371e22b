"""A seconds-long run for tests: a 2-layer d_model=32 muP Transformer on 64 KB of the embedded corpus.

``python -m experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/tiny``
"""

from experiments.configs import base


def get_config():
    c = base.get_config()
    c.model.d_model = 32
    c.model.n_layers = 2
    c.model.n_heads = 2
    c.model.d_head = 16
    c.model.d_ff = 64
    c.parametrization.base_d_model = 16
    c.data.max_bytes = 65_536
    c.data.seq_len = 32
    c.data.batch_size = 8
    c.data.eval_batches = 2
    c.optimizer.learning_rate = 1e-2
    c.schedule.warmup_steps = 5
    c.train.steps = 40
    c.eval.every = 20
    c.checkpoint.every = 10
    c.logging.every = 5
    c.logging.progress_bar = False
    return c

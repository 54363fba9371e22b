"""The ``make run`` demo: a small muP Transformer on the embedded corpus, a few minutes on 2 CPU cores.

A 4-layer, d_model=128 byte-level Transformer under muP (base width 64: tune at 64, train at 128 with
the same numbers) with AdamW, warmup + cosine, on the Python standard library's source. Its validation
loss ends far below the corpus's unigram entropy (~3.1 nats/byte).

``python -m experiments.train --config=experiments/configs/demo.py --workdir=runs/demo``
"""

from experiments.configs import base


def get_config():
    c = base.get_config()
    c.model.d_model = 128
    c.model.n_layers = 4
    c.model.n_heads = 4
    c.model.d_head = 32
    c.model.d_ff = 512
    c.parametrization.name = "mup"
    c.parametrization.base_d_model = 64
    c.data.seq_len = 128
    c.data.batch_size = 32
    c.data.eval_batches = 16
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 5e-3
    c.optimizer.weight_decay = 0.0
    c.schedule.warmup_steps = 50
    c.train.steps = 600
    c.eval.every = 100
    c.checkpoint.every = 100
    c.logging.every = 10
    return c

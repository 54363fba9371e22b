"""Batch iterators: window contents, determinism, exact state restore, eval batches, errors."""

import json

import numpy as np
import pytest

from paramlab.data import BatchIterator, eval_batches, load_corpus

# Token i has value i: a window's content reveals its start.
RAMP = np.arange(5000, dtype=np.int64)


def _starts(batch, seq_len):
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.dtype == targets.dtype == np.int32
    assert inputs.shape == targets.shape == (inputs.shape[0], seq_len)
    starts = inputs[:, 0]
    np.testing.assert_array_equal(inputs, starts[:, None] + np.arange(seq_len))
    np.testing.assert_array_equal(targets, inputs + 1)
    return starts


def test_windows_are_contiguous_shifted_and_in_range():
    it = BatchIterator(RAMP, seq_len=16, batch_size=64, seed=3)
    starts = np.concatenate([_starts(next(it), 16) for _ in range(20)])
    assert starts.min() >= 0 and starts.max() + 16 <= RAMP.size - 1
    assert len(np.unique(starts)) > 1000  # spread over the data, not a few fixed windows


def test_deterministic_in_seed_and_step():
    a = BatchIterator(RAMP, seq_len=8, batch_size=4, seed=7)
    b = BatchIterator(RAMP, seq_len=8, batch_size=4, seed=7)
    c = BatchIterator(RAMP, seq_len=8, batch_size=4, seed=8)
    for _ in range(5):
        x, y, z = next(a), next(b), next(c)
        np.testing.assert_array_equal(x["inputs"], y["inputs"])
        assert not np.array_equal(x["inputs"], z["inputs"])
    np.testing.assert_array_equal(a.batch_at(2)["inputs"], b.batch_at(2)["inputs"])
    assert a.get_state() == {"step": 5, "seed": 7}


def test_restored_state_replays_the_same_batches():
    uninterrupted = BatchIterator(RAMP, seq_len=8, batch_size=4, seed=1)
    expected = [next(uninterrupted) for _ in range(10)]
    first = BatchIterator(RAMP, seq_len=8, batch_size=4, seed=1)
    for _ in range(6):
        next(first)
    saved = json.loads(json.dumps(first.get_state()))  # what a checkpoint stores
    resumed = BatchIterator(RAMP, seq_len=8, batch_size=4, seed=999)
    resumed.set_state(saved)
    for want in expected[6:]:
        got = next(resumed)
        np.testing.assert_array_equal(got["inputs"], want["inputs"])
        np.testing.assert_array_equal(got["targets"], want["targets"])
    assert resumed.get_state() == {"step": 10, "seed": 1}


def test_train_and_eval_batches_stay_in_their_split(tmp_path):
    text = bytes(np.random.default_rng(0).integers(0, 256, size=4000, dtype=np.uint8))
    (tmp_path / "data.bin").write_bytes(text)
    corpus = load_corpus(tmp_path, eval_fraction=0.25)
    n_train = corpus.train.size
    offsets = np.arange(len(text))
    train_it = BatchIterator(offsets[:n_train], seq_len=32, batch_size=16)
    for _ in range(10):
        starts = _starts(next(train_it), 32)
        assert starts.max() + 32 < n_train
    for batch in eval_batches(offsets[n_train:], seq_len=32, batch_size=4):
        assert _starts(batch, 32).min() >= n_train
    # The same windows over the real bytes.
    eval_bytes = eval_batches(corpus.eval, seq_len=32, batch_size=4)
    window = eval_bytes[0]["inputs"][0].astype(np.uint8).tobytes()
    assert window == text[n_train : n_train + 32]


def test_eval_batches_fixed_disjoint_and_spread():
    batches = eval_batches(RAMP, seq_len=10, batch_size=8)
    assert len(batches) == (RAMP.size - 1) // 10 // 8  # every full batch of disjoint windows
    starts = np.concatenate([_starts(b, 10) for b in batches])
    assert np.all(np.diff(starts) >= 10)
    assert starts[0] == 0 and starts[-1] + 10 == RAMP.size - 1
    again = eval_batches(RAMP, seq_len=10, batch_size=8)
    assert all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(batches, again))
    few = eval_batches(RAMP, seq_len=10, batch_size=8, max_batches=3)
    starts = np.concatenate([_starts(b, 10) for b in few])
    assert len(few) == 3 and starts[0] == 0 and starts[-1] + 10 == RAMP.size - 1
    assert np.all(np.diff(starts) >= 10)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(seq_len=0, batch_size=2), "seq_len"),
        (dict(seq_len=4, batch_size=-1), "batch_size"),
        (dict(seq_len=4.0, batch_size=2), "seq_len"),
        (dict(seq_len=5000, batch_size=2), "seq_len"),
        (dict(seq_len=4, batch_size=2, seed=-1), "seed"),
    ],
)
def test_iterator_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BatchIterator(RAMP, **kwargs)


def test_state_and_eval_errors():
    it = BatchIterator(RAMP, seq_len=4, batch_size=2)
    for bad in ({"step": 1}, {"step": -1, "seed": 0}, {"step": 1, "seed": "x"}, [1, 2]):
        with pytest.raises(ValueError, match="state|step|seed"):
            it.set_state(bad)
    with pytest.raises(ValueError, match="1-D integer"):
        BatchIterator(RAMP.astype(float), seq_len=4, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        eval_batches(RAMP[:50], seq_len=10, batch_size=8)
    with pytest.raises(ValueError, match="seq_len"):
        eval_batches(RAMP[:50], seq_len=50, batch_size=1)
    with pytest.raises(ValueError, match="max_batches"):
        eval_batches(RAMP, seq_len=4, batch_size=2, max_batches=0)

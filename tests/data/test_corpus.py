"""Corpora: the embedded stdlib corpus, user files and directories, the split, entropy, errors."""

import collections
import math
import pathlib
import sysconfig

import numpy as np
import pytest

from paramlab.data import DEFAULT_MAX_BYTES, VOCAB_SIZE, load_corpus, unigram_entropy


def _joined(corpus):
    return np.concatenate([corpus.train, corpus.eval]).tobytes()


def test_stdlib_corpus_is_deterministic_sorted_python_source():
    a = load_corpus(max_bytes=300_000)
    b = load_corpus(max_bytes=300_000)
    assert a.vocab_size == VOCAB_SIZE == 256
    assert a.files == b.files and _joined(a) == _joined(b)
    assert list(a.files) == sorted(a.files) and all(f.endswith(".py") for f in a.files)
    assert a.num_bytes == 300_000
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    assert a.root == str(root)
    excluded = {"site-packages", "test", "tests", "encodings", "__pycache__"}
    assert not any(excluded & set(pathlib.PurePosixPath(f).parts[:-1]) for f in a.files)
    # Independent truth: the files' bytes, concatenated and truncated.
    expected = b"".join((root / f).read_bytes() for f in a.files)[:300_000]
    assert _joined(a) == expected
    assert a.eval.size == math.ceil(0.05 * 300_000)


def test_default_cap_and_entropy_below_uniform():
    corpus = load_corpus()
    assert corpus.num_bytes <= DEFAULT_MAX_BYTES
    assert corpus.train.dtype == np.uint8
    h = unigram_entropy(corpus.train)
    assert 2.0 < h < math.log(256)  # source code is far from uniform bytes


def _write_tree(root):
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello world\n")
    (root / "b" / "c.py").write_bytes("caf\u00e9 = 1\n".encode())
    (root / "b" / "empty.txt").write_bytes(b"")
    (root / ".hidden").write_bytes(b"secret")
    (root / ".git").mkdir()
    (root / ".git" / "x.txt").write_bytes(b"secret too")
    (root / "z.txt").write_bytes(b"the end of the corpus")


def test_directory_corpus(tmp_path):
    _write_tree(tmp_path)
    corpus = load_corpus(tmp_path, eval_fraction=0.25)
    assert corpus.files == ("a.txt", "b/c.py", "z.txt")  # sorted, hidden and empty files left out
    expected = b"hello world\n" + "caf\u00e9 = 1\n".encode() + b"the end of the corpus"
    assert _joined(corpus) == expected
    n_eval = math.ceil(0.25 * len(expected))
    assert corpus.eval.tobytes() == expected[-n_eval:]
    assert corpus.train.tobytes() == expected[:-n_eval]
    only_py = load_corpus(tmp_path, suffixes=["py"])
    assert only_py.files == ("b/c.py",)


def test_single_file_and_cap(tmp_path):
    path = tmp_path / "notes.md"
    path.write_bytes(bytes(range(256)) * 4)
    corpus = load_corpus(str(path), max_bytes=100, eval_fraction=0.1)
    assert corpus.files == ("notes.md",)
    assert corpus.train.tobytes() == bytes(range(90))
    assert corpus.eval.tobytes() == bytes(range(90, 100))
    assert load_corpus(path, max_bytes=None).num_bytes == 1024


def test_cap_spanning_files(tmp_path):
    for name, text in (("1.txt", b"aaaa"), ("2.txt", b"bbbb"), ("3.txt", b"cccc")):
        (tmp_path / name).write_bytes(text)
    corpus = load_corpus(tmp_path, max_bytes=6, eval_fraction=0.5)
    assert corpus.files == ("1.txt", "2.txt")
    assert (corpus.train.tobytes(), corpus.eval.tobytes()) == (b"aaa", b"abb")


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty")
    (tmp_path / "empty" / "blank.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty")
    (tmp_path / "one.txt").write_bytes(b"x")
    with pytest.raises(ValueError, match="at least 2"):
        load_corpus(tmp_path / "one.txt")
    (tmp_path / "two.txt").write_bytes(b"xy")
    for bad in (0.0, 1.0, -0.1, "0.1"):
        with pytest.raises(ValueError, match="eval_fraction"):
            load_corpus(tmp_path / "two.txt", eval_fraction=bad)
    for bad in (0, 1, 2.5, True):
        with pytest.raises(ValueError, match="max_bytes"):
            load_corpus(tmp_path / "two.txt", max_bytes=bad)


def test_unigram_entropy_against_direct_formula():
    rng = np.random.default_rng(0)
    tokens = rng.choice(5, size=1000, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    counts = collections.Counter(tokens.tolist())
    expected = -sum(c / 1000 * math.log(c / 1000) for c in counts.values())
    assert unigram_entropy(tokens) == pytest.approx(expected, rel=1e-12)
    assert unigram_entropy(tokens, unit="bits") == pytest.approx(expected / math.log(2), rel=1e-12)
    assert unigram_entropy(np.arange(256, dtype=np.uint8), unit="bits") == pytest.approx(8.0)
    assert unigram_entropy(np.zeros(7, np.uint8)) == 0.0
    with pytest.raises(ValueError, match="unit"):
        unigram_entropy(tokens, unit="dits")
    with pytest.raises(ValueError, match="empty"):
        unigram_entropy(np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="integers"):
        unigram_entropy(np.array([0.5, 1.0]))

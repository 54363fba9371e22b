"""paramlab.data: byte-level corpora (embedded stdlib, text files) and checkpointable batch iterators."""

from paramlab.data.corpus import (
    DEFAULT_MAX_BYTES,
    VOCAB_SIZE,
    Corpus,
    list_files,
    load_corpus,
    unigram_entropy,
)
from paramlab.data.iterator import Batch, BatchIterator, eval_batches
from paramlab.data.pipelines import GrainBatches

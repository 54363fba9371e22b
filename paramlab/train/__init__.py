"""paramlab.train: train state, jit-compiled step, schedules, sharding, orbax checkpoints, metrics, loop."""

from paramlab.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointSaveError,
    CorruptCheckpoint,
    Restored,
    config_differences,
)
from paramlab.train.checksums import checksum_mismatches, checksums
from paramlab.train.hosts import initialize_distributed, is_primary
from paramlab.train.loop import FitResult, LoopConfig, StatefulIterator, Task, fit
from paramlab.train.metrics import MetricsWriter, plot_loss_curve, progress_bar, read_metrics
from paramlab.train.run_once import run_once
from paramlab.train.schedules import make_schedule
from paramlab.train.sharding import (
    batch_sharding,
    fsdp_partition_spec,
    make_mesh,
    replicated,
    shard_batch,
    tree_shardings,
)
from paramlab.train.state import TrainingDiverged, TrainState, create_train_state, tree_is_finite
from paramlab.train.step import evaluate, jit_train_step, make_eval_step, make_train_step, role_rms
from paramlab.train.workdir import WorkdirBusy, WorkdirLock, check_writable, set_aside
from paramlab.train.writers import MetricWriter, TensorBoardWriter, open_writers

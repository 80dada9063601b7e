"""Compatibility: the names `catmner_model.train` had before training became the `catmner_model.training`
package (`loop.py`, `inputs.py`, `optim.py`, `checkpoint.py`, `distributed.py`, `record.py`, `config.py`).

``from catmner_model.train import TrainConfig, train`` keeps working; new code imports from the owning module.
Patch a name where it is used (e.g. ``catmner_model.training.loop.save_checkpoint``), not here.
"""

from __future__ import annotations

from catmner_model.batching import to_device
from catmner_model.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    TRAINING_SIDECAR,
    caught_writes,
    check_writable,
    load_checkpoint,
    read_checkpoint_state,
    replace_dir,
    save_best_model,
    save_checkpoint,
)
from catmner_model.training.config import (
    LABEL_WORD_VARIANTS,
    TrainConfig,
    TrainError,
    build_model_config,
    check_config,
    config_fingerprint,
    default_output,
    effective_visual,
)
from catmner_model.training.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    gather_objects,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_distributed,
    unwrap,
)
from catmner_model.training.inputs import (
    epoch_batches,
    example_lengths,
    load_label_words,
    load_splits,
    prepare_visual,
)
from catmner_model.training.loop import evaluate_split, run_epoch, train
from catmner_model.training.optim import linear_schedule, make_optimizer, param_groups
from catmner_model.training.record import RUN_RECORD_SCHEMA, RunRecord, peak_rss_mib, run_record

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "LABEL_WORD_VARIANTS",
    "RUN_RECORD_SCHEMA",
    "TRAINING_SIDECAR",
    "RunRecord",
    "DistInfo",
    "TrainConfig",
    "TrainError",
    "barrier",
    "broadcast_object",
    "build_model_config",
    "caught_writes",
    "check_config",
    "check_writable",
    "config_fingerprint",
    "default_output",
    "effective_visual",
    "epoch_batches",
    "evaluate_split",
    "example_lengths",
    "gather_objects",
    "linear_schedule",
    "load_checkpoint",
    "load_label_words",
    "load_splits",
    "make_optimizer",
    "param_groups",
    "peak_rss_mib",
    "prepare_visual",
    "read_checkpoint_state",
    "replace_dir",
    "rng_state",
    "run_epoch",
    "run_record",
    "save_best_model",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "setup_distributed",
    "to_device",
    "train",
    "unwrap",
]

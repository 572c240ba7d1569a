"""The training engine: distributed set-up, data sharding, seeding, precision, checkpoints, logs, ``fit``.

A trainer follows :mod:`training.toy_trainer`: ``run_training`` (``setup_distributed``, logging, one-line errors,
``cleanup``) calls its ``train``: ``check_run_paths`` (:mod:`.layout`) -> ``start_process`` (threads, seeds,
determinism, precision; the toy calls its parts) -> data and ``make_loader`` -> model, optimizer, scheduler ->
``resume`` (with ``--resume``) -> ``wrap_ddp`` -> ``fit`` into ``--run-dir`` -> ``save_model_folder`` as ``--out``
on rank 0.
"""

from __future__ import annotations

from .checkpoint import Resumed, TrainState, load_checkpoint, resume, save_checkpoint
from .config import portable_config, run_config, settings_key, warn_changed_settings
from .distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    cleanup,
    make_loader,
    setup_distributed,
    unwrap_model,
    wrap_ddp,
)
from .logs import CsvLogger, Progress, read_csv, setup_logging
from .loop import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    EPOCHS_CSV,
    LAST_CHECKPOINT,
    STEPS_CSV,
    EarlyStopping,
    FitConfig,
    FitResult,
    Means,
    fit,
)
from .precision import Precision, make_precision
from .sampling import ResumableDistributedSampler, ShardSampler, WeightedDistributedSampler, set_loader_epoch
from .seeding import capture_rng_state, configure_determinism, restore_rng_state, seed_everything

__all__ = [
    "BEST_CHECKPOINT", "CHECKPOINT_DIR", "EPOCHS_CSV", "LAST_CHECKPOINT", "STEPS_CSV",
    "CsvLogger", "DistContext", "EarlyStopping", "FitConfig", "FitResult", "Means", "Precision", "Progress",
    "ResumableDistributedSampler", "Resumed", "ShardSampler", "TrainState", "WeightedDistributedSampler",
    "all_gather_objects", "all_reduce_mean", "all_reduce_sum", "barrier", "capture_rng_state", "cleanup",
    "configure_determinism", "fit", "load_checkpoint", "make_loader", "make_precision", "portable_config", "read_csv",
    "restore_rng_state", "resume", "run_config", "save_checkpoint", "seed_everything", "set_loader_epoch",
    "settings_key", "setup_distributed", "setup_logging", "unwrap_model", "warn_changed_settings", "wrap_ddp",
]

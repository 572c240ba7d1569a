"""Checkpoints: everything a run needs to continue exactly, written atomically by rank 0.

A checkpoint is one ``torch.save`` file holding plain data only, so it loads with ``weights_only=True``:
the network's state dict (unwrapped from DDP, on CPU), optimizer, LR scheduler and gradient-scaler states,
the :class:`TrainState` counters, every rank's RNG states, the world size, and the run configuration as a
JSON string. It is written to a temporary file beside its final name and renamed over it, so a crash
never leaves a half-written checkpoint and readers see either the old or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from PELabelUpLib.errors import InputError

from .distributed import DistContext, all_gather_objects, unwrap_model
from .seeding import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass
class TrainState:
    """Counters of a run; the same on every rank.

    Attributes:
        epoch: epochs completed.
        step: optimizer steps done since the start of the run.
        batch_in_epoch: batches done in the epoch under way (0 at an epoch boundary).
        epoch_loss_sum: sum over the epoch's samples so far of the loss (all ranks), for the epoch mean.
        epoch_samples: samples (all ranks) behind ``epoch_loss_sum``.
        best_metric: best value of the early-stopping monitor so far (None before the first validation).
        bad_epochs: validations in a row without improvement of the monitor.
    """

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_samples: int = 0
    best_metric: float | None = None
    bad_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown train-state fields {sorted(unknown)}")
        return cls(**values)


@dataclass
class Resumed:
    """What :func:`resume` restored besides the objects it was given."""

    state: TrainState
    config: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1


def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
                    ctx: DistContext, scheduler: Any = None, scaler: torch.amp.GradScaler | None = None,
                    config: dict[str, Any] | None = None) -> Path | None:
    """Write a checkpoint of the run to ``path`` (rank 0 writes; every rank must call: RNG states are gathered).

    Args:
        model: the network, DDP-wrapped or not (the plain network's state dict is saved).
        config: JSON-serialisable run configuration (paths are written as text), stored for the record and
            for checks on resume.

    Returns:
        ``path`` on rank 0, None on the other ranks.
    """
    rng_states = all_gather_objects(capture_rng_state())
    if not ctx.is_main:
        return None
    config_json = json.dumps(config or {}, sort_keys=True, default=_path_as_text)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "train_state": state.to_dict(),
        "rng": rng_states,
        "world_size": ctx.world_size,
        "config_json": config_json,
    }
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(final.parent)
    log.debug("checkpoint at epoch %d step %d -> %s", state.epoch, state.step, final.name)
    return final


def _path_as_text(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"run configuration value {value!r} ({type(value).__name__}) is not JSON-serialisable")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        InputError: missing, unreadable, or not a checkpoint of this format.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(source, "checkpoint not found")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise InputError(source, f"unreadable checkpoint: {' '.join(str(exc).split())[:200]}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(source, f"not a checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})")
    return payload


def resume(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
           scheduler: Any = None, scaler: torch.amp.GradScaler | None = None, ctx: DistContext | None = None,
           restore_rng: bool = True) -> Resumed:
    """Restore a run from a checkpoint: weights, optimizer, scheduler, scaler, counters and RNG states.

    Call it after building model, optimizer and scheduler and just before training, on every rank
    (each rank reads the file and restores its own RNG states). A run resumed with the same world size and
    data continues exactly as if it had not stopped (bit for bit on CPU).
    """
    ctx = ctx or DistContext()
    payload = load_checkpoint(path)
    try:
        unwrap_model(model).load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise InputError(path, f"weights do not fit the model: {' '.join(str(exc).split())[:200]}") from exc
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        if payload["scheduler"] is None:
            raise InputError(path, "the checkpoint has no LR-scheduler state, but a scheduler was given")
        scheduler.load_state_dict(payload["scheduler"])
    if scaler is not None and scaler.is_enabled() and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    saved_world = int(payload["world_size"])
    if restore_rng:
        states = payload["rng"]
        if saved_world != ctx.world_size:
            log.warning("checkpoint written by %d processes, resumed by %d: data order and random streams "
                        "will not continue exactly", saved_world, ctx.world_size)
        restore_rng_state(states[ctx.rank % len(states)])
    state = TrainState.from_dict(payload["train_state"])
    log.info("resumed from %s: epoch %d, step %d", Path(path).name, state.epoch, state.step)
    return Resumed(state=state, config=json.loads(payload["config_json"]), world_size=saved_world)

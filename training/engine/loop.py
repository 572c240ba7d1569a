"""``fit``: the training loop shared by the trainers (one process or DDP; the caller builds everything).

Per step: forward and loss under autocast, backward through the gradient scaler, optional gradient clipping,
optimizer step, optional per-step LR schedule, a loss row in ``train_steps.csv``. Per epoch: optional
per-epoch LR schedule, validation (metrics reduced over ranks), a row in ``epochs.csv``, early stopping,
``checkpoints/last.pt`` (and ``best.pt`` when the monitored metric improves). Resuming is
:func:`~training.engine.checkpoint.resume` followed by ``fit(..., state=resumed.state)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .checkpoint import TrainState, save_checkpoint
from .distributed import DistContext, all_reduce_mean, all_reduce_sum
from .logs import CsvLogger, Progress, ProgressMode
from .precision import Precision, make_precision
from .sampling import set_loader_epoch

log = logging.getLogger(__name__)

STEPS_CSV = "train_steps.csv"
EPOCHS_CSV = "epochs.csv"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class Means:
    """Sums and counts of metrics on one rank, reduced over all ranks into exact global means.

    ``means.add("val_loss", loss_sum, n)`` for a batch of ``n`` samples whose losses sum to ``loss_sum``.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, name: str, value_sum: float, count: float = 1) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value_sum)
        self.counts[name] = self.counts.get(name, 0.0) + float(count)

    def reduce(self, ctx: DistContext) -> dict[str, float]:
        """Global means (every rank must call, with the same metric names)."""
        names = sorted(self.sums)
        local = torch.tensor([[self.sums[n], self.counts[n]] for n in names], dtype=torch.float64,
                             device=ctx.device).reshape(-1, 2)
        total = all_reduce_sum(local).cpu()
        return {n: float(total[i, 0] / total[i, 1]) if total[i, 1] > 0 else math.nan for i, n in enumerate(names)}


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` (a key of the validation metrics) has not improved for ``patience`` epochs."""

    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 5
    min_delta: float = 0.0

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return math.isfinite(value)
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


@dataclass(frozen=True)
class FitConfig:
    """How ``fit`` runs.

    Attributes:
        epochs: total epochs of the schedule.
        seed: run seed (data order of each epoch derives from it).
        grad_clip_norm: clip the global gradient norm to this value (None: no clipping).
        scheduler_interval: call ``scheduler.step()`` after every optimizer ``step`` or every ``epoch``.
        checkpoint_every_steps: also checkpoint every N steps within epochs (None: at epoch ends only).
        log_every_steps: a ``train_steps.csv`` row every N steps.
        early_stopping: optional early stopping on a validation metric (needs ``validate``).
        stop_after_epoch / stop_after_step: stop with a checkpoint once this many epochs / steps are done, as a
            pre-empted or time-boxed job would; the schedule still spans ``epochs``.
        progress, progress_every_s: see :class:`~training.engine.logs.Progress`.
    """

    epochs: int
    seed: int = 0
    grad_clip_norm: float | None = None
    scheduler_interval: Literal["step", "epoch"] = "epoch"
    checkpoint_every_steps: int | None = None
    log_every_steps: int = 1
    early_stopping: EarlyStopping | None = None
    stop_after_epoch: int | None = None
    stop_after_step: int | None = None
    progress: ProgressMode = "auto"
    progress_every_s: float = 10.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be step or epoch, got {self.scheduler_interval!r}")
        for name in ("checkpoint_every_steps", "log_every_steps", "stop_after_epoch", "stop_after_step"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass
class FitResult:
    """What ``fit`` did: final counters, one dict per epoch (the ``epochs.csv`` rows of this call), and why
    it ended (``completed``, ``early_stopped`` or ``interrupted`` by ``stop_after_*``); ``samples_per_s`` (all
    ranks) and ``last_lr`` are those of the last epoch trained."""

    state: TrainState
    history: list[dict[str, Any]] = field(default_factory=list)
    ended: Literal["completed", "early_stopped", "interrupted"] = "completed"
    samples_per_s: float = math.nan
    last_lr: float = math.nan
    last_checkpoint: Path | None = None


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with its tensors (in tuples, lists and dicts) moved to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the length of its first tensor."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, Mapping) else batch
    for value in values:
        if isinstance(value, Tensor):
            return int(value.shape[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__} without tensors")


ComputeLoss = Callable[[nn.Module, Any], Tensor]
Validate = Callable[[nn.Module], "Means | dict[str, float]"]


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader, compute_loss: ComputeLoss,
        *, ctx: DistContext, config: FitConfig, out_dir: str | Path, precision: Precision | None = None,
        scheduler: Any = None, validate: Validate | None = None, state: TrainState | None = None,
        run_config: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` (already on ``ctx.device``, DDP-wrapped when distributed) for ``config.epochs`` epochs.

    Args:
        train_loader: from :func:`~training.engine.distributed.make_loader` (resumable sampler).
        compute_loss: ``(model, batch) -> scalar loss`` (mean over the batch); the batch is already on the
            device, and the call runs under autocast.
        out_dir: where ``train_steps.csv``, ``epochs.csv`` and ``checkpoints/`` go (rank 0 writes).
        validate: ``model -> metrics`` on this rank's shard: a :class:`Means` (exact global means) or a dict of
            per-rank means (averaged over ranks). Called in ``eval`` mode under ``torch.no_grad`` and autocast
            (cast logits to float before metrics).
        state: counters of a resumed run (:func:`~training.engine.checkpoint.resume`); None starts afresh.
        run_config: JSON-serialisable configuration stored in the checkpoints.
    """
    out = Path(out_dir)
    precision = precision or make_precision(ctx.device, "auto")
    state = state or TrainState()
    resuming = state.step > 0 or state.epoch > 0
    if config.early_stopping is not None and validate is None:
        raise ValueError("early stopping needs a validate callback")
    steps_csv = CsvLogger(out / STEPS_CSV, enabled=ctx.is_main, resume_step=state.step if resuming else None)
    epochs_csv = CsvLogger(out / EPOCHS_CSV, enabled=ctx.is_main, resume_step=state.step if resuming else None)
    checkpoint_dir = out / CHECKPOINT_DIR
    result = FitResult(state=state)

    def checkpoint(name: str = LAST_CHECKPOINT) -> None:
        result.last_checkpoint = save_checkpoint(checkpoint_dir / name, model=model, optimizer=optimizer,
                                                 state=state, ctx=ctx, scheduler=scheduler,
                                                 scaler=precision.scaler, config=run_config)

    stopping = config.early_stopping
    if stopping is not None and state.bad_epochs >= stopping.patience:
        log.info("the resumed run had stopped early already (epoch %d)", state.epoch)
        result.ended = "early_stopped"
        return result
    with steps_csv, epochs_csv:
        while state.epoch < config.epochs:
            stopped = _train_epoch(model, optimizer, train_loader, compute_loss, ctx=ctx, config=config,
                                   precision=precision, scheduler=scheduler, state=state, steps_csv=steps_csv,
                                   checkpoint=checkpoint, result=result)
            if stopped:
                result.ended = "interrupted"
                return result
            row, improved = _end_epoch(model, ctx=ctx, config=config, precision=precision, scheduler=scheduler,
                                       validate=validate, state=state, result=result)
            epochs_csv.log(**row)
            result.history.append(row)
            if improved:
                checkpoint(BEST_CHECKPOINT)
            checkpoint()
            if stopping is not None and state.bad_epochs >= stopping.patience:
                log.info("early stop after epoch %d: %s has not improved for %d epochs (best %.4g)",
                         state.epoch, stopping.monitor, state.bad_epochs, state.best_metric)
                result.ended = "early_stopped"
                return result
            if (config.stop_after_epoch is not None and state.epoch >= config.stop_after_epoch) or \
                    (config.stop_after_step is not None and state.step >= config.stop_after_step):
                log.info("stopped after epoch %d (step %d)", state.epoch, state.step)
                result.ended = "interrupted"
                return result
    return result


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                 compute_loss: ComputeLoss, *, ctx: DistContext, config: FitConfig, precision: Precision,
                 scheduler: Any, state: TrainState, steps_csv: CsvLogger, checkpoint: Callable[[], None],
                 result: FitResult) -> bool:
    """One epoch (or its remainder after a mid-epoch resume). Returns True when ``stop_after_step`` hit."""
    set_loader_epoch(loader, state.epoch, seed=config.seed, rank=ctx.rank, skip_batches=state.batch_in_epoch)
    batches = len(loader) + state.batch_in_epoch
    progress = Progress(batches, desc=f"epoch {state.epoch + 1}/{config.epochs}", enabled=ctx.is_main,
                        mode=config.progress, every_s=config.progress_every_s, start_step=state.batch_in_epoch)
    model.train()
    try:
        for batch in loader:
            batch = move_to_device(batch, ctx.device)
            samples = batch_size_of(batch)
            optimizer.zero_grad(set_to_none=True)
            lr = float(optimizer.param_groups[0]["lr"])  # the rate this step uses
            with precision.autocast():
                loss = compute_loss(model, batch)
            precision.scaler.scale(loss).backward()
            if config.grad_clip_norm is not None:
                precision.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            precision.scaler.step(optimizer)
            precision.scaler.update()
            if scheduler is not None and config.scheduler_interval == "step":
                scheduler.step()
            loss_sum, global_samples = all_reduce_sum(
                torch.stack([loss.detach().double() * samples, torch.tensor(samples, dtype=torch.float64,
                                                                           device=loss.device)])).tolist()
            step_loss = loss_sum / global_samples
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"loss is {step_loss} at step {state.step + 1} (epoch {state.epoch + 1})")
            state.step += 1
            state.batch_in_epoch += 1
            state.epoch_loss_sum += loss_sum
            state.epoch_samples += int(global_samples)
            progress.update(int(global_samples), loss=step_loss)
            result.last_lr = lr
            if state.step % config.log_every_steps == 0:
                steps_csv.log(step=state.step, epoch=state.epoch + 1, batch=state.batch_in_epoch, loss=step_loss,
                              lr=lr, samples_per_s=progress.samples_per_s)
            last_batch = state.batch_in_epoch == batches
            if last_batch:  # the epoch end checkpoints
                continue
            if config.stop_after_step is not None and state.step >= config.stop_after_step:
                checkpoint()
                log.info("stopped after step %d (epoch %d, batch %d/%d)", state.step, state.epoch + 1,
                         state.batch_in_epoch, batches)
                return True
            if config.checkpoint_every_steps and state.step % config.checkpoint_every_steps == 0:
                checkpoint()
    finally:
        progress.close()
    result.samples_per_s = progress.samples_per_s
    return False


def _end_epoch(model: nn.Module, *, ctx: DistContext, config: FitConfig, precision: Precision, scheduler: Any,
               validate: Validate | None, state: TrainState, result: FitResult) -> tuple[dict[str, Any], bool]:
    """Close the epoch: schedule, validate, early stopping; returns the ``epochs.csv`` row and whether the
    monitored metric improved."""
    if scheduler is not None and config.scheduler_interval == "epoch":
        scheduler.step()
    train_loss = state.epoch_loss_sum / max(state.epoch_samples, 1)
    row: dict[str, Any] = {"epoch": state.epoch + 1, "step": state.step, "train_loss": train_loss,
                           "lr": result.last_lr, "samples_per_s": result.samples_per_s}
    if validate is not None:
        model.eval()
        with torch.no_grad(), precision.autocast():
            metrics = validate(model)
        model.train()
        if isinstance(metrics, Means):
            reduced = metrics.reduce(ctx)
        else:
            names = sorted(metrics)
            values = all_reduce_mean(torch.tensor([float(metrics[n]) for n in names], dtype=torch.float64,
                                                  device=ctx.device)).tolist()
            reduced = dict(zip(names, values, strict=True))
        row |= reduced
    state.epoch += 1
    state.batch_in_epoch = 0
    state.epoch_loss_sum = 0.0
    state.epoch_samples = 0
    stopping = config.early_stopping
    improved = False
    if stopping is not None:
        if stopping.monitor not in row:
            raise ValueError(f"early stopping monitors {stopping.monitor!r}, validation gave {sorted(row)}")
        value = float(row[stopping.monitor])
        improved = stopping.improved(value, state.best_metric)
        if improved:
            state.best_metric = value
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
    shown = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
    log.info("epoch %d/%d done: %s", state.epoch, config.epochs, shown)
    return row, improved

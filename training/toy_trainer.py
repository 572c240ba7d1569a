"""Toy trainer: is there a bright square in a noisy 16x16 image? The template the real trainers follow.

Runs the whole engine on a dataset generated in memory, in one process or under torchrun::

    python -m training.toy_trainer --out models/toy --epochs 3
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m training.toy_trainer \\
        --out models/toy-ddp --epochs 3 --batch-size 16      # same global batch (2 x 16) as --batch-size 32

and, like every trainer (:mod:`training.engine.layout`), writes the model folder ``--out`` when the schedule
completes and ``train_steps.csv``, ``epochs.csv`` and ``checkpoints/`` into ``--run-dir`` (default ``<out>.run``);
``--resume`` continues from ``<run-dir>/checkpoints/last.pt``. ``--batch-size`` is per process.

The network normalises with GroupNorm and has no dropout, so a DDP step equals the single-process step on
the global batch (BatchNorm would normalise with per-rank statistics; torch's SyncBatchNorm needs CUDA).
It is registered in :data:`TOY_NETWORKS` here, not in the core's ``NETWORKS``: load it with
:func:`load_toy_model`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import ModelFolder, read_model_folder, save_model_folder, verify_weights
from PELabelUpLib.precision import TRAINING_PRECISIONS
from training.engine import (
    DistContext,
    FitConfig,
    FitResult,
    Means,
    barrier,
    configure_determinism,
    fit,
    make_loader,
    make_precision,
    resume,
    run_config,
    seed_everything,
    unwrap_model,
    warn_changed_settings,
    wrap_ddp,
)
from training.engine.cli import log_completed, run_training
from training.engine.layout import add_output_arguments, check_run_paths, last_checkpoint, resolve_run_dir

log = logging.getLogger("training.toy_trainer")

IMAGE_SIZE = 16


class ToySquareNet(nn.Module):
    """``(N, 1, H, W)`` image -> ``(N, 1)`` logit: two conv blocks (GroupNorm, ReLU), max+mean pooling, linear."""

    def __init__(self, in_channels: int = 1, width: int = 8, groups: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.GroupNorm(groups, width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2, bias=False), nn.GroupNorm(groups, width), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1))


TOY_NETWORKS = {"ToySquareNet": ToySquareNet}


def make_squares(n: int, *, seed: int, positive_fraction: float = 0.5, size: int = IMAGE_SIZE,
                 noise: float = 0.3) -> TensorDataset:
    """``n`` images ``(1, size, size)`` float32 of Gaussian noise; positives carry a 4x4 square of +1.

    Labels are float32 ``(n,)``, 1 for a square. The same ``seed`` gives the same data on every rank.
    """
    if n < 1 or not 0 <= positive_fraction <= 1:
        raise ValueError(f"need n >= 1 and positive_fraction in [0, 1], got n={n}, {positive_fraction}")
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, noise, size=(n, 1, size, size)).astype(np.float32)
    labels = (rng.random(n) < positive_fraction).astype(np.float32)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, size - 4, size=2)
        images[i, 0, y:y + 4, x:x + 4] += 1.0
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))


def compute_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    images, labels = batch
    return nn.functional.binary_cross_entropy_with_logits(model(images).squeeze(1), labels)


def evaluate(model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> Means:
    """Loss and accuracy sums of this rank's shard (reduced over ranks by ``fit``)."""
    means = Means()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images).squeeze(1).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        means.add("val_loss", loss.item(), len(labels))
        means.add("val_accuracy", ((logits > 0).float() == labels).sum().item(), len(labels))
    return means


def load_toy_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a toy model folder (checked sha256) into a :class:`ToySquareNet` in eval mode on CPU."""
    folder: ModelFolder = read_model_folder(path)
    verify_weights(folder)
    spec = folder.metadata["network"]
    if spec["name"] not in TOY_NETWORKS:
        raise InputError(folder.path, f"not a toy network: {spec['name']!r}")
    network = TOY_NETWORKS[spec["name"]](**spec.get("kwargs", {}))
    network.load_state_dict(torch.load(folder.weights_path, map_location="cpu", weights_only=True))
    return network.eval(), folder.metadata


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.toy_trainer", description=__doc__.split("\n")[0])
    add_output_arguments(p)
    p.add_argument("--epochs", type=int, default=3, help="epochs of the schedule")
    p.add_argument("--batch-size", type=int, default=32, help="per process; global = this x world size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (SGD, momentum 0.9, cosine)")
    p.add_argument("--train-samples", type=int, default=256)
    p.add_argument("--val-samples", type=int, default=128)
    p.add_argument("--positive-fraction", type=float, default=0.5)
    p.add_argument("--balance", action="store_true", help="draw classes equally often (weighted sampler)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0 turns clipping off")
    p.add_argument("--precision", choices=TRAINING_PRECISIONS, default="auto")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--checkpoint-every-steps", type=int)
    p.add_argument("--stop-after-epoch", type=int, help="stop (checkpointed) after this many epochs")
    p.add_argument("--stop-after-step", type=int, help="stop (checkpointed) after this many steps")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto")
    args = p.parse_args(argv)
    resolve_run_dir(args)
    return args


@dataclass
class ToyRun:
    """What :func:`train` did: ``fit``'s result and, on rank 0 of a completed run, the model folder."""

    fit: FitResult
    model_folder: Path | None
    seconds: float


def train(args: argparse.Namespace, ctx: DistContext) -> ToyRun:
    """Train on ``ctx`` (set up by the caller) and, when the schedule completes, write the model folder."""
    started = time.perf_counter()
    check_run_paths(args)  # every rank checks before anything is written
    barrier()
    seed_everything(args.seed, ctx.rank)
    configure_determinism(ctx.device)
    precision = make_precision(ctx.device, args.precision)

    train_set = make_squares(args.train_samples, seed=args.seed, positive_fraction=args.positive_fraction)
    val_set = make_squares(args.val_samples, seed=args.seed + 1_000_003, positive_fraction=0.5)
    weights = None
    if args.balance:
        labels = train_set.tensors[1]
        positives = float(labels.sum())
        if positives in (0.0, float(len(labels))):
            raise ValueError(f"--balance needs both classes, got {positives:.0f} positives of {len(labels)}")
        weights = torch.where(labels > 0, 0.5 / positives, 0.5 / (len(labels) - positives))
    train_loader = make_loader(train_set, args.batch_size, shuffle=True, seed=args.seed, ctx=ctx,
                               num_workers=args.num_workers, sample_weights=weights)
    val_loader = make_loader(val_set, args.batch_size, shuffle=False, seed=args.seed, ctx=ctx, pad_shards=False)

    network_spec = {"name": "ToySquareNet", "kwargs": {"in_channels": 1, "width": 8, "groups": 2}}
    model = TOY_NETWORKS[network_spec["name"]](**network_spec["kwargs"]).to(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))
    config = FitConfig(epochs=args.epochs, seed=args.seed, grad_clip_norm=args.grad_clip or None,
                       scheduler_interval="step", checkpoint_every_steps=args.checkpoint_every_steps,
                       stop_after_epoch=args.stop_after_epoch, stop_after_step=args.stop_after_step,
                       progress=args.progress, progress_every_s=5.0)
    config_json = run_config(args, ctx)
    state = None
    if args.resume:
        resumed = resume(last_checkpoint(args), model=model, optimizer=optimizer, scheduler=scheduler,
                         scaler=precision.scaler, ctx=ctx)
        warn_changed_settings(resumed.config, config_json,
                              ("seed", "batch_size", "epochs", "lr", "train_samples", "world_size"))
        state = resumed.state
    ddp_model = wrap_ddp(model, ctx)
    result = fit(ddp_model, optimizer, train_loader, compute_loss, ctx=ctx, config=config, out_dir=args.run_dir,
                 precision=precision, scheduler=scheduler, validate=lambda m: evaluate(m, val_loader, ctx.device),
                 state=state, run_config=config_json)
    folder = None
    if result.ended != "interrupted" and ctx.is_main:
        last = result.history[-1] if result.history else {}
        metadata = {
            "name": "toy-squares", "version": "0.1.0", "task": "classifier", "network": network_spec,
            "preprocessing": {"input": f"(1, {IMAGE_SIZE}, {IMAGE_SIZE}) float32, no normalisation"},
            "inputs": f"images (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE})", "outputs": "logit (N, 1): a bright square",
            "training": config_json | {"precision": precision.name, "epochs_done": result.state.epoch,
                                      "steps": result.state.step, "ended": result.ended,
                                      "samples_per_s": result.samples_per_s},
            "metrics": {k: last[k] for k in ("val_loss", "val_accuracy") if k in last},
            "intended_use": "engine tests and template; not a medical model",
            "changelog": ["0.1.0: toy model of the training engine"],
        }
        folder = save_model_folder(args.out, unwrap_model(ddp_model), metadata).path
    barrier()
    return ToyRun(fit=result, model_folder=folder, seconds=time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    ok, run, ctx = run_training(parse_args(argv), train)
    if not ok:
        return 2
    log_completed(run, processes=ctx.world_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the artery territory model (3-D ``ArteryUNet``) on a NIfTI-layout phantom cohort.

Fully supervised on the cohort's artery masks (anatomy labels: lumen *including* clot); emboli masks are never
read. Follows :mod:`training.toy_trainer` and runs in one process or under torchrun::

    python -m training.artery.train --cohort cohort-train --out models/pelabelup-arteries --threads 2
    python -m training.artery.train --cohort cohort-train --out models/pelabelup-arteries --threads 2 --resume

writes the model folder ``--out`` (:func:`~PELabelUpLib.models.folder.save_model_folder`) when the schedule
completes, and ``train_steps.csv``, ``epochs.csv`` and ``checkpoints/`` into ``--run-dir`` (default: beside
``--out``, named ``<out>.run``). Working-grid arrays are cached in ``--cache-dir`` (default: ``.cache`` in the
first cohort). ``--cohort`` may be repeated; the last ``--val-cases`` cases (of the last cohort) are held out
for a per-epoch patch Dice.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from PELabelUpLib.errors import InputError
from PELabelUpLib.io.validate import check_spacing
from PELabelUpLib.models.artery import ArteryPreprocessing
from PELabelUpLib.models.folder import load_model, save_model_folder
from PELabelUpLib.models.networks import build_network
from training.engine import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    DistContext,
    EarlyStopping,
    FitConfig,
    FitResult,
    Means,
    barrier,
    fit,
    load_checkpoint,
    make_loader,
    resume,
    run_config,
    unwrap_model,
    warn_changed_settings,
    wrap_ddp,
)
from training.engine.cli import log_completed, run_training, start_process
from training.engine.layout import check_run_paths, last_checkpoint, resolve_run_dir
from training.engine.options import add_run_arguments
from training.engine.records import patch_metrics, patch_run_record

from .augment import AUGMENTATIONS
from .data import (
    LABEL_COVERAGE,
    ArteryPatchDataset,
    check_label_coverage,
    fixed_patches,
    list_cohort_cases,
    load_working_cases,
)

log = logging.getLogger("training.artery.train")

MODEL_NAME = "pelabelup-arteries"
#: HU window of the input. The core's default PE window (100, 700) clips everything below -250 HU to 0, and
#: 10-30 % of the phantoms' artery voxels (half-covered distal branches in the lung) lie below -250 HU.
WINDOW_HU = (-50.0, 1500.0)
#: settings whose change makes a resumed run differ from an uninterrupted one
RUN_DEFINING = ("seed", "epochs", "batch_size", "patch", "patches_per_epoch", "artery_fraction", "augmentation",
                "lr", "channels", "norm", "res_units", "window", "spacing", "label_coverage", "val_cases", "world_size")
#: settings that came after the first checkpoints, with the value those checkpoints ran with
SETTINGS_ADDED = {"spacing": list(ArteryPreprocessing.spacing_mm), "label_coverage": LABEL_COVERAGE}


def network_spec(channels: Sequence[int], res_units: int, norm: str) -> dict[str, Any]:
    """The ``metadata["network"]`` of an ``ArteryUNet``: 1 channel (windowed CT) in, 1 logit out."""
    return {"name": "ArteryUNet", "kwargs": {
        "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [int(c) for c in channels],
        "strides": [2] * (len(channels) - 1), "num_res_units": int(res_units), "norm": norm}}


class ArteryLoss(nn.Module):
    """Soft Dice over the whole batch (patches without artery do not divide by zero) plus binary cross-entropy.

    ``logits`` and ``target`` are ``(N, 1, Z, Y, X)``; target 0/1.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        prob = torch.sigmoid(logits)
        intersection = (prob * target).sum()
        dice = (2.0 * intersection + self.smooth) / (prob.sum() + target.sum() + self.smooth)
        return (1.0 - dice) + nn.functional.binary_cross_entropy_with_logits(logits, target)


def patch_dice_means(model: nn.Module, patches: Sequence, ctx: DistContext, threshold: float = 0.5) -> Means:
    """Pooled Dice and mean loss over this rank's share of fixed validation patches (see :func:`fixed_patches`)."""
    means = Means()
    loss_fn = ArteryLoss()
    for i in range(ctx.rank, len(patches), ctx.world_size):
        image, label = patches[i]
        x = torch.from_numpy(image)[None, None].to(ctx.device)
        y = torch.from_numpy(label.astype("float32"))[None, None].to(ctx.device)
        logits = model(x).float()
        pred = (torch.sigmoid(logits) >= threshold).float()
        means.add("val_dice", 2.0 * float((pred * y).sum()), float(pred.sum() + y.sum()))
        means.add("val_loss", float(loss_fn(logits, y)), 1)
    return means


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.artery.train", description=__doc__.split("\n")[0])
    p.add_argument("--cohort", type=Path, required=True, action="append",
                   help="NIfTI-layout cohort (pelabelup synth --out ...); repeat to train on several")
    p.add_argument("--cache-dir", type=Path, help="working-grid cache (default: .cache in the first --cohort)")
    add_run_arguments(p, epochs=20, lr=2e-3, patches_per_epoch=240, val_cases=3)
    p.add_argument("--patch", type=int, nargs=3, default=(64, 64, 64), metavar=("Z", "Y", "X"))
    p.add_argument("--artery-fraction", type=float, default=0.6, help="share of patches centred on artery")
    p.add_argument("--augmentation", choices=tuple(AUGMENTATIONS), default="occlusion",
                   help="light: x flips, HU scale/shift, noise; anatomy: light plus synthetic filling defects in "
                        "the lumen and brighter non-arterial vessels; occlusion: anatomy plus occluded stretches "
                        "of thin branches (see training.artery.augment); spatial: occlusion plus a random rotation "
                        "and zoom of two patches in three (training.artery.warp); none: off")
    p.add_argument("--init-weights", type=Path,
                   help="start from this model folder's weights (fine-tuning; not with --resume)")
    p.add_argument("--channels", type=int, nargs="+", default=(16, 32, 64, 128))
    p.add_argument("--res-units", type=int, default=1)
    p.add_argument("--norm", choices=("batch", "instance"), default="batch",
                   help="batch (the shipped model; per-rank statistics under DDP) or instance")
    p.add_argument("--window", type=float, nargs=2, default=WINDOW_HU, metavar=("LEVEL", "WIDTH"),
                   help="HU window of the network input (default: level -50, width 1500, i.e. -800..700 HU, so "
                        "that partial-volume lung arteries stay visible)")
    p.add_argument("--spacing", type=float, nargs=3, default=ArteryPreprocessing.spacing_mm, metavar=("X", "Y", "Z"),
                   help="working grid spacing, mm (default: %(default)s)")
    p.add_argument("--label-coverage", type=float, default=LABEL_COVERAGE,
                   help="a working-grid voxel is labelled artery when at least this share of it lies inside the "
                        "mask (default %(default)s; lower keeps thin branches whole, see training.artery.data)")
    p.add_argument("--adapt-norm-patches", type=int, default=0,
                   help="written into the metadata: at inference, re-estimate the batch-norm statistics on this "
                        "many random 64^3 patches of each study (PELabelUpLib.models.norm_adaptation); 0 (default): "
                        "keep the training statistics")
    p.add_argument("--version", default="1.0.0", help="model version written into the metadata")
    args = p.parse_args(argv)
    resolve_run_dir(args)
    args.cache_dir = args.cache_dir or args.cohort[0] / ".cache"
    args.patch = tuple(args.patch)
    args.channels = tuple(args.channels)
    args.window = tuple(args.window)
    args.spacing = tuple(args.spacing)
    try:
        check_spacing("--spacing", args.spacing, "working spacing")
        check_label_coverage(args.label_coverage)
    except InputError as e:
        p.error(str(e))
    except ValueError as e:
        p.error(f"--label-coverage: {e}")
    return args


@dataclass
class ArteryRun:
    """What :func:`train` did: ``fit``'s result and, on rank 0 of a completed run, the model folder."""

    fit: FitResult
    model_folder: Path | None
    seconds: float


def _load_init_weights(folder: Path, model: nn.Module, spec: dict[str, Any]) -> dict[str, str]:
    """Copy a model folder's (sha256-checked) weights into ``model``; returns what was loaded, for the metadata."""
    source, metadata = load_model(folder)
    if json.dumps(metadata["network"], sort_keys=True) != json.dumps(spec, sort_keys=True):
        raise ValueError(f"--init-weights {folder}: its network {metadata['network']} differs from this run's {spec}")
    model.load_state_dict(source.state_dict())
    return {"name": metadata["name"], "version": metadata["version"], "sha256": metadata["sha256"]}


def _metadata(args: argparse.Namespace, ctx: DistContext, spec: dict[str, Any], prep: ArteryPreprocessing,
              result: FitResult, train_ids: list[str], val_ids: list[str], seconds: float,
              precision: str, init: dict[str, str] | None) -> dict[str, Any]:
    """The model folder's metadata (the core's contract: name, version, task, network, preprocessing, ...)."""
    return {
        "name": MODEL_NAME, "version": args.version, "task": "artery", "network": spec,
        "preprocessing": prep.as_metadata(),
        "inputs": "CT in HU, any grid: resampled (linear) to preprocessing.spacing_mm and windowed to [0, 1] "
                  "with preprocessing.window_hu; the network sees (N, 1, Z, Y, X) float32",
        "outputs": "(N, 1, Z, Y, X) logits of the pulmonary arterial territory (lumen including contrast or clot); "
                   "sigmoid >= preprocessing.threshold is territory, put back on the input grid",
        "training": {
            "cohort": {"names": [c.name for c in args.cohort], "description": args.cohort_description,
                       "train_cases": len(train_ids), "val_cases": val_ids, "labels": "arteries.nii.gz",
                       "label_coverage": args.label_coverage},
            "init_weights": init, "artery_fraction": args.artery_fraction,
        } | patch_run_record(args, result, seconds, world_size=ctx.world_size, patch_zyx=args.patch,
                             augmentation={"name": args.augmentation} | asdict(AUGMENTATIONS[args.augmentation]),
                             precision=precision, device=ctx.device.type),
        "metrics": patch_metrics(result),
        "changelog": [f"{args.version}: ArteryUNet trained on {len(train_ids)} synthetic phantoms ({args.epochs} "
                      f"epochs of {args.patches_per_epoch} patches, {args.augmentation} augmentation"
                      + (f", from {init['name']} {init['version']})" if init else ")")],
    }


def train(args: argparse.Namespace, ctx: DistContext) -> ArteryRun:
    """Train on ``ctx`` (set up by the caller) and, when the schedule completes, write the model folder."""
    started = time.perf_counter()
    check_run_paths(args)
    barrier()
    precision = start_process(args, ctx)
    prep = ArteryPreprocessing(spacing_mm=args.spacing, window_hu=args.window,
                               adapt_norm_patches=args.adapt_norm_patches)

    cases = [case for cohort in args.cohort for case in list_cohort_cases(cohort)]
    if args.val_cases < 0 or args.val_cases >= len(cases):
        raise ValueError(f"--val-cases must lie in [0, {len(cases) - 1}] for {len(cases)} cases, got {args.val_cases}")
    split = len(cases) - args.val_cases
    if ctx.is_main:  # rank 0 fills the cache; the others then read it
        load_working_cases(cases, prep, args.cache_dir, label_coverage=args.label_coverage)
    barrier()
    train_cases = load_working_cases(cases[:split], prep, args.cache_dir, label_coverage=args.label_coverage)
    val_cases = load_working_cases(cases[split:], prep, args.cache_dir, label_coverage=args.label_coverage)
    log.info("%d training cases, %d validation cases on the %s mm grid", len(train_cases), len(val_cases),
             prep.spacing_mm)
    dataset = ArteryPatchDataset(train_cases, prep, patches_per_epoch=args.patches_per_epoch, patch_zyx=args.patch,
                                 artery_fraction=args.artery_fraction, augmentation=AUGMENTATIONS[args.augmentation])
    loader = make_loader(dataset, args.batch_size, shuffle=True, seed=args.seed, ctx=ctx,
                         num_workers=args.num_workers)
    val_patches = fixed_patches(val_cases, prep, patches_per_case=args.val_patches, patch_zyx=args.patch,
                                seed=args.seed + 1)

    spec = network_spec(args.channels, args.res_units, args.norm)
    model = build_network(spec)
    init = _load_init_weights(args.init_weights, model, spec) if args.init_weights else None
    model = model.to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader),
                                                           eta_min=0.02 * args.lr)
    loss_fn = ArteryLoss()

    def compute_loss(net: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return loss_fn(net(batch["image"]), batch["label"])

    stopping = EarlyStopping(monitor="val_dice", mode="max", patience=args.epochs + 1) if val_patches else None
    config = FitConfig(epochs=args.epochs, seed=args.seed, grad_clip_norm=2.0, scheduler_interval="step",
                       early_stopping=stopping, stop_after_epoch=args.stop_after_epoch, progress=args.progress,
                       progress_every_s=30.0)
    config_json = run_config(args, ctx)
    state = None
    if args.resume:
        resumed = resume(last_checkpoint(args), model=model, optimizer=optimizer,
                         scheduler=scheduler, scaler=precision.scaler, ctx=ctx)
        warn_changed_settings(resumed.config, config_json, RUN_DEFINING, added=SETTINGS_ADDED)
        state = resumed.state
    ddp_model = wrap_ddp(model, ctx)
    validate = (lambda m: patch_dice_means(m, val_patches, ctx, prep.threshold)) if val_patches else None
    result = fit(ddp_model, optimizer, loader, compute_loss, ctx=ctx, config=config, out_dir=args.run_dir,
                 precision=precision, scheduler=scheduler, validate=validate, state=state, run_config=config_json)
    folder = None
    if result.ended != "interrupted" and ctx.is_main:
        network = unwrap_model(ddp_model)
        best = args.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
        if args.select == "best" and best.is_file():
            network.load_state_dict(load_checkpoint(best)["model"])
        metadata = _metadata(args, ctx, spec, prep, result, [c.case_id for c in train_cases],
                             [c.case_id for c in val_cases], time.perf_counter() - started, precision.name, init)
        folder = save_model_folder(args.out, network, metadata).path
    barrier()
    return ArteryRun(fit=result, model_folder=folder, seconds=time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    ok, run, _ = run_training(parse_args(argv), train)
    if not ok:
        return 2
    log_completed(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the emboli segmenter (3-D DynUNet, ``pelabelup-segmenter``) on pseudo-masks or ground-truth masks.

Weak supervision (pseudo-masks of the label-up chain) or full supervision (the upper bound); label and
territory sources are described in :mod:`training.segmenter.sources`. Follows :mod:`training.toy_trainer` and
runs in one process or under torchrun::

    python -m training.segmenter.train --cohort cohort-train --labels pseudo:predictions-train \\
        --out models/pelabelup-segmenter --epochs 40
    python -m training.segmenter.train --cohort cohort-train --labels gt --territory pred:predictions-train \\
        --out models/segmenter-gt --epochs 40
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m training.segmenter.train ...

writes the model folder ``--out`` when the schedule completes, and ``train_steps.csv``, ``epochs.csv``,
``checkpoints/`` and ``label_sources.csv`` (which label file each case used) into ``--run-dir`` (default:
``<out>.run``). Working-grid arrays are cached in ``--cache-dir`` (default: ``<cohort>/.cache``). The last
``--val-cases`` cases are held out for a per-epoch patch Dice against their labels. Fine-tuning is
:mod:`training.finetune`, which calls :func:`train` with a base model.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import save_model_folder
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.models.segmenter import SegmenterPreprocessing
from training.artery.augment import NO_AUGMENTATION, Augmentation
from training.artery.train import ArteryLoss
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
from training.engine.layout import check_run_paths, last_checkpoint

from .data import SegmenterPatchDataset, fixed_patches, load_working_cases
from .lineage import BaseModel
from .options import add_training_arguments, finish_args, gather_cases
from .records import LABEL_SOURCES_CSV, case_records, model_metadata, write_label_sources
from .sources import SegmenterCase

log = logging.getLogger("training.segmenter.train")

NORMS: dict[str, Any] = {"batch": "batch", "instance": ["instance", {"affine": True}]}
#: settings whose change makes a resumed run differ from an uninterrupted one
RUN_DEFINING = ("seed", "epochs", "batch_size", "patch", "patches_per_epoch", "lr", "filters", "norm", "spacing",
                "labels", "datastore", "territory", "val_cases", "world_size")


def network_spec(filters: Sequence[int], norm: str = "batch") -> dict[str, Any]:
    """``metadata["network"]`` of the segmenter: a DynUNet with 2 input channels (CT, territory), 1 logit out;
    the first stage keeps full resolution, each further one halves it (patches: multiples of 2**(len-1)).

    ``norm``: ``batch`` (default: at inference a voxel's probability does not depend on what else lies in its
    sliding window, so windows stitch consistently; a tiny case is overfitted in tens of steps where instance norm
    needs far more) or ``instance`` (nnU-Net's choice, affine), per-window statistics.
    """
    n = len(filters)
    if n < 3:
        raise ValueError(f"filters must name at least 3 stages (DynUNet), got {list(filters)}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
    return {"name": "DynUNet", "kwargs": {
        "spatial_dims": 3, "in_channels": 2, "out_channels": 1, "kernel_size": [3] * n, "strides": [1] + [2] * (n - 1),
        "upsample_kernel_size": [2] * (n - 1), "filters": [int(f) for f in filters], "res_block": True,
        "norm_name": NORMS[norm]}}


def patch_multiple(spec: dict[str, Any]) -> int:
    """Patch sides must be multiples of this (the product of the network's strides)."""
    return int(math.prod(int(s) for s in spec["kwargs"].get("strides", [1])))


def patch_dice_means(model: nn.Module, patches: Sequence, ctx: DistContext, threshold: float) -> Means:
    """Pooled Dice and mean loss over this rank's share of the fixed validation patches."""
    means = Means()
    loss_fn = ArteryLoss()
    for i in range(ctx.rank, len(patches), ctx.world_size):
        image, label = patches[i]
        x = torch.from_numpy(image)[None].to(ctx.device)
        y = torch.from_numpy(label.astype("float32"))[None, None].to(ctx.device)
        logits = model(x).float()
        pred = (torch.sigmoid(logits) >= threshold).float()
        means.add("val_dice", 2.0 * float((pred * y).sum()), float(pred.sum() + y.sum()))
        means.add("val_loss", float(loss_fn(logits, y)), 1)
    return means


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.segmenter.train", description=__doc__.split("\n")[0])
    add_training_arguments(p, epochs=40, lr=2e-3)
    p.add_argument("--patch", type=int, nargs=3, default=(64, 64, 64), metavar=("Z", "Y", "X"),
                   help="training patch = inference window, working-grid voxels")
    p.add_argument("--spacing", type=float, nargs=3, default=SegmenterPreprocessing().spacing_mm,
                   metavar=("X", "Y", "Z"), help="working spacing, mm")
    p.add_argument("--filters", type=int, nargs="+", default=(16, 32, 64, 128), help="DynUNet stage widths")
    p.add_argument("--norm", choices=sorted(NORMS), default="batch", help="DynUNet normalisation (see network_spec)")
    p.add_argument("--territory-dilation-mm", type=float, default=SegmenterPreprocessing().territory_dilation_mm)
    p.add_argument("--version", default="1.0.0", help="model version written into the metadata")
    args = p.parse_args(argv)
    args.patch, args.spacing, args.filters = tuple(args.patch), tuple(args.spacing), tuple(args.filters)
    return finish_args(args)


@dataclass
class SegmenterRun:
    """What :func:`train` did: ``fit``'s result, the cases and, on rank 0 of a completed run, the model folder."""

    fit: FitResult
    model_folder: Path | None
    cases: list[SegmenterCase]
    seconds: float


def _augmentation(args: argparse.Namespace) -> Augmentation:
    return NO_AUGMENTATION if args.augmentation == "none" else Augmentation()


def _model_setup(args: argparse.Namespace, base: BaseModel | None) -> tuple[dict[str, Any], SegmenterPreprocessing]:
    """The network spec and preprocessing: the base model's when fine-tuning (unchanged), else from ``args``."""
    if base is not None:
        prep = SegmenterPreprocessing.from_metadata(base.metadata)
        spec = base.metadata["network"]
    else:
        prep = SegmenterPreprocessing(spacing_mm=tuple(args.spacing), roi_size=tuple(args.patch),
                                      territory_dilation_mm=args.territory_dilation_mm)
        spec = network_spec(args.filters, args.norm)
    multiple = patch_multiple(spec)
    if any(int(p) % multiple for p in prep.roi_size):
        raise ValueError(f"patch sides must be multiples of {multiple} for this network, got {prep.roi_size}")
    return spec, prep


def train(args: argparse.Namespace, ctx: DistContext, *, base: BaseModel | None = None) -> SegmenterRun:
    """Train on ``ctx`` (set up by the caller) and, when the schedule completes, write the model folder.

    With ``base`` (:func:`~training.segmenter.lineage.load_base_model`) the network starts from the base's weights
    and keeps its network and preprocessing (patch = the base's ``roi_size``); the folder records the lineage.
    """
    started = time.perf_counter()
    check_run_paths(args)
    barrier()
    precision = start_process(args, ctx)
    spec, prep = _model_setup(args, base)

    cases = gather_cases(args)
    if args.val_cases < 0 or args.val_cases >= len(cases):
        raise ValueError(f"--val-cases must lie in [0, {len(cases) - 1}] for {len(cases)} cases, got {args.val_cases}")
    split = len(cases) - args.val_cases
    if ctx.is_main:  # rank 0 fills the cache; the others then read it
        load_working_cases(cases, prep, args.cache_dir, workers=args.cache_workers)
    barrier()
    train_cases = load_working_cases(cases[:split], prep, args.cache_dir)
    val_cases = load_working_cases(cases[split:], prep, args.cache_dir)
    used = {c.case_id for c in train_cases + val_cases}
    records = (case_records([c for c in cases[:split] if c.case_id in used], args.cohort, "train")
               + case_records([c for c in cases[split:] if c.case_id in used], args.cohort, "val"))
    if ctx.is_main:
        write_label_sources(args.run_dir / LABEL_SOURCES_CSV, records)
    log.info("%d training cases (%d with label voxels), %d validation cases on the %s mm grid", len(train_cases),
             sum(c.label_voxels.size > 0 for c in train_cases), len(val_cases), prep.spacing_mm)
    dataset = SegmenterPatchDataset(train_cases, prep, patches_per_epoch=args.patches_per_epoch,
                                    patch_zyx=prep.roi_size, label_fraction=args.label_fraction,
                                    augmentation=_augmentation(args))
    loader = make_loader(dataset, args.batch_size, shuffle=True, seed=args.seed, ctx=ctx,
                         num_workers=args.num_workers)
    val_patches = fixed_patches(val_cases, prep, patches_per_case=args.val_patches, patch_zyx=prep.roi_size,
                                seed=args.seed + 1)

    model = build_network(spec)
    if base is not None:
        model.load_state_dict(base.state_dict)
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
    config_json = run_config(args, ctx, skip=("label_sources", "territory_source"))
    state = None
    if args.resume:
        resumed = resume(last_checkpoint(args), model=model, optimizer=optimizer,
                         scheduler=scheduler, scaler=precision.scaler, ctx=ctx)
        warn_changed_settings(resumed.config, config_json, RUN_DEFINING)
        state = resumed.state
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    ddp_model = wrap_ddp(model, ctx, sync_batchnorm=has_batchnorm and ctx.device.type == "cuda")
    validate = (lambda m: patch_dice_means(m, val_patches, ctx, prep.threshold)) if val_patches else None
    result = fit(ddp_model, optimizer, loader, compute_loss, ctx=ctx, config=config, out_dir=args.run_dir,
                 precision=precision, scheduler=scheduler, validate=validate, state=state, run_config=config_json)
    folder = None
    if result.ended != "interrupted" and ctx.is_main:
        network = unwrap_model(ddp_model)
        best = args.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
        if args.select == "best" and best.is_file():
            network.load_state_dict(load_checkpoint(best)["model"])
        args.world_size, args.device_used = ctx.world_size, str(ctx.device)
        metadata = model_metadata(args, spec, prep, result, records, [c.case_id for c in val_cases],
                                  time.perf_counter() - started, precision.name, asdict(_augmentation(args)), base)
        folder = save_model_folder(args.out, network, metadata).path
    barrier()
    return SegmenterRun(fit=result, model_folder=folder, cases=cases, seconds=time.perf_counter() - started)


def run_main(args: argparse.Namespace, *, base_path: Path | None = None) -> int:
    """Set up the processes, train (from ``base_path``'s model when given), clean up; the exit status."""
    from .lineage import load_base_model

    def train_from_base(args: argparse.Namespace, ctx: DistContext) -> SegmenterRun:
        return train(args, ctx, base=load_base_model(base_path) if base_path is not None else None)

    ok, run, _ = run_training(args, train_from_base)
    if not ok:
        return 2
    log_completed(run)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except (InputError, ValueError) as exc:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        log.error("%s", exc)
        return 2
    return run_main(args)


if __name__ == "__main__":
    sys.exit(main())

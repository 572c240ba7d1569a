"""Train the 2.5-D slice PE classifier from image-level labels, in one process or under torchrun.

    python -m training.classifier.train --cohort COHORT [--cohort MORE] --val-cohort VAL --out models/clf \\
        [--artery-model Resources/Models/pelabelup-arteries | --territory gt] [--supervision slice|study]
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m training.classifier.train ...

``--supervision slice`` learns from ``pe_present_on_image`` (RSPECT's slice labels); ``study`` learns from
study labels alone (multiple-instance learning: each study's top slices over ``--top-mm`` are found without
gradients, then the mean of their probabilities is trained against the study label, the same aggregation as
:func:`~PELabelUpLib.models.slices.study_probability`). Like the other trainers (:mod:`training.engine.layout`)
it writes the model folder ``--out`` when the schedule completes, and ``train_steps.csv``, ``epochs.csv`` and
``checkpoints/`` into ``--run-dir`` (default: ``<out>.run`` beside ``--out``); ``--resume`` continues a stopped
run from ``<run-dir>/checkpoints/last.pt``. Slice stacks and territories are cached in ``--cache-dir``
(default: ``<run-dir>/cache``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from PELabelUpLib.models.folder import load_model, save_model_folder
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.models.slices import SliceSpec
from training.engine import (
    DistContext,
    FitConfig,
    barrier,
    fit,
    make_loader,
    portable_config,
    resume,
    run_config,
    unwrap_model,
    wrap_ddp,
)
from training.engine.cli import run_training, start_process
from training.engine.layout import add_output_arguments, check_run_paths, last_checkpoint, resolve_run_dir
from training.engine.options import add_process_arguments
from training.engine.records import optimizer_text, run_figures

from .cohort import read_training_studies, training_studies
from .data import CachedStudy, SliceDataset, balanced_weights, cached_studies
from .validation import validate_studies

log = logging.getLogger("training.classifier")

MODEL_NAME = "pelabelup-classifier"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.classifier.train", description=__doc__.split("\n")[0])
    p.add_argument("--cohort", type=Path, required=True, action="append",
                   help="training cohort (RSPECT or NIfTI layout); repeat to train on several")
    p.add_argument("--val-cohort", type=Path, help="validation cohort (study and slice AUC each epoch)")
    add_output_arguments(p)
    p.add_argument("--cache-dir", type=Path,
                   help="cache folder of slice stacks and artery territories (default: <run-dir>/cache)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--artery-model", type=Path, help="artery territory model folder")
    source.add_argument("--territory", choices=("gt",), help="gt: use the cohort's artery masks (development)")
    p.add_argument("--supervision", choices=("slice", "study"), default="slice")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--samples-per-epoch", type=int, default=6000, help="slices drawn per epoch (slice mode)")
    p.add_argument("--batch-size", type=int, default=32, help="per process (slices; studies in study mode)")
    p.add_argument("--positive-fraction", type=float, default=0.35, help="share of positive slices drawn")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--top-mm", type=float, default=10.0, help="study aggregation length (mm)")
    p.add_argument("--widths", type=int, nargs=4, default=(16, 32, 64, 96))
    p.add_argument("--norm", choices=("batch", "group"), default="batch",
                   help="batch: BatchNorm (the bundled model); group: GroupNorm, whose results do not depend on "
                        "the batch, so a torchrun run matches one process exactly")
    p.add_argument("--pixel-mm", type=float, default=SliceSpec.pixel_mm, help="in-plane pixel of the input (mm)")
    p.add_argument("--size-px", type=int, default=SliceSpec.size_px, help="side of the square input (pixels)")
    p.add_argument("--territory-dilation-mm", type=float, default=SliceSpec.territory_dilation_mm,
                   help="the CT is seen inside the territory grown in-plane by this much (mm)")
    p.add_argument("--version", default="0.1.0", help="version written into the model folder")
    add_process_arguments(p, progress="auto")
    args = p.parse_args(argv)
    args.cache_dir = args.cache_dir or resolve_run_dir(args) / "cache"
    return args


def slice_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x).reshape(-1), y)


class StudyBagLoss:
    """Multiple-instance loss: study label vs the mean probability of the study's top slices."""

    def __init__(self, studies: Sequence[CachedStudy], spec: SliceSpec, top_mm: float, chunk: int = 64) -> None:
        self.studies, self.spec, self.top_mm, self.chunk = studies, spec, top_mm, chunk

    def __call__(self, model: nn.Module, batch: tuple[Tensor]) -> Tensor:
        (indices,) = batch
        device = indices.device
        losses = []
        for i in indices.tolist():
            study = self.studies[i]
            z = study.stack.image.shape[0]
            k = int(min(z, max(1, round(self.top_mm / study.slice_spacing_mm))))
            with torch.no_grad():
                was_training = model.training
                model.eval()
                logits = torch.cat([model(torch.from_numpy(study.stack.batch(range(s, min(z, s + self.chunk)),
                                                                                 self.spec.context)).to(device))
                                    .reshape(-1) for s in range(0, z, self.chunk)])
                model.train(was_training)
            top = torch.topk(logits, k).indices.cpu().numpy()
            x = torch.from_numpy(study.stack.batch(top, self.spec.context)).to(device)
            p = torch.sigmoid(model(x).reshape(-1).float()).mean().clamp(1e-6, 1 - 1e-6)
            target = torch.tensor(float(study.positive), device=device)
            losses.append(nn.functional.binary_cross_entropy(p, target))
        return torch.stack(losses).mean()


def _prepare(args: argparse.Namespace, ctx: DistContext, spec: SliceSpec) -> tuple[list, list, dict | None]:
    artery = None
    artery_info = None
    if args.artery_model is not None:
        artery = load_model(args.artery_model, device=str(ctx.device))
        artery_info = {"name": artery[1]["name"], "version": artery[1]["version"], "sha256": artery[1]["sha256"]}
    cache = args.cache_dir
    studies = training_studies(args.cohort)
    # rank 0 fills the cache first, the others then read it
    if ctx.is_main:
        train = cached_studies(studies, cache, spec, artery, device=str(ctx.device),
                               on_study=lambda c: log.info("prepared %s", c))
    barrier()
    if not ctx.is_main:
        train = cached_studies(studies, cache, spec, artery, device=str(ctx.device))
    val = []
    if args.val_cohort is not None:
        if ctx.is_main:
            val = cached_studies(read_training_studies(args.val_cohort), cache, spec, artery, device=str(ctx.device))
        barrier()
        if not ctx.is_main:
            val = cached_studies(read_training_studies(args.val_cohort), cache, spec, artery,
                                 device=str(ctx.device))
    return train, val, artery_info


def train(args: argparse.Namespace, ctx: DistContext) -> Path | None:
    started = time.perf_counter()
    check_run_paths(args)
    barrier()
    precision = start_process(args, ctx)
    spec = SliceSpec(pixel_mm=args.pixel_mm, size_px=args.size_px, territory_dilation_mm=args.territory_dilation_mm)
    train_studies, val_studies, artery_info = _prepare(args, ctx, spec)
    n_slices = sum(len(s.slice_labels) for s in train_studies)
    n_pos = sum(int(s.slice_labels.sum()) for s in train_studies)
    log.info("training on %d studies, %d slices (%d positive)", len(train_studies), n_slices, n_pos)

    if args.supervision == "slice":
        dataset = SliceDataset(train_studies, spec, augment=True, seed=args.seed + ctx.rank)
        weights = torch.from_numpy(balanced_weights(dataset.labels, args.positive_fraction))
        loader = make_loader(dataset, args.batch_size, shuffle=True, seed=args.seed, ctx=ctx, sample_weights=weights,
                             num_samples=args.samples_per_epoch, num_workers=args.num_workers)
        compute_loss = slice_loss
    else:
        dataset = TensorDataset(torch.arange(len(train_studies)))
        loader = make_loader(dataset, args.batch_size, shuffle=True, seed=args.seed, ctx=ctx)
        compute_loss = StudyBagLoss(train_studies, spec, args.top_mm)

    network_spec = {"name": "SliceClassifier", "kwargs": {"in_channels": spec.channels, "widths": list(args.widths),
                                                       "norm": args.norm}}
    model = build_network(network_spec).to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * len(loader),
                                                    pct_start=0.15)
    config_json = run_config(args, ctx)
    state = None
    if args.resume:
        state = resume(last_checkpoint(args), model=model, optimizer=optimizer, scheduler=scheduler,
                       scaler=precision.scaler, ctx=ctx).state
    ddp_model = wrap_ddp(model, ctx)
    validate = None
    if val_studies:
        def validate(m: nn.Module) -> dict[str, float]:
            return validate_studies(m, val_studies, spec, ctx, top_mm=args.top_mm)
    config = FitConfig(epochs=args.epochs, seed=args.seed, grad_clip_norm=5.0, scheduler_interval="step",
                       log_every_steps=10, progress=args.progress, progress_every_s=30.0,
                       stop_after_epoch=args.stop_after_epoch)
    result = fit(ddp_model, optimizer, loader, compute_loss, ctx=ctx, config=config, out_dir=args.run_dir,
                 precision=precision, scheduler=scheduler, validate=validate, state=state, run_config=config_json)
    folder = None
    if result.ended != "interrupted" and ctx.is_main:
        last = result.history[-1] if result.history else {}
        metadata: dict[str, Any] = {
            "name": MODEL_NAME, "version": args.version, "task": "classifier", "network": network_spec,
            "preprocessing": spec.as_metadata() | {"study_top_mm": args.top_mm},
            "inputs": f"(N, {spec.channels}, {spec.size_px}, {spec.size_px}) float32: PE-windowed slices k-1..k+1 "
                      "masked to the dilated artery territory, then the territory of slice k",
            "outputs": "(N, 1) logit of pe_present_on_image",
            "requires": {"artery_model": artery_info, "territory": "gt" if artery_info is None else "model"},
            "training": portable_config(config_json, PATH_ARGUMENTS) | {
                "precision": precision.name, "device": str(ctx.device),
                "optimizer": optimizer_text(args.lr, args.weight_decay, schedule="one-cycle per step, 15% warm-up"),
                "studies": len(train_studies), "slices": n_slices, "positive_slices": n_pos}
            | run_figures(result, time.perf_counter() - started),
            "metrics": {k: v for k, v in last.items() if k.startswith("val_")},
            "changelog": [f"{args.version}: slice classifier trained with {args.supervision} labels"],
        }
        folder = save_model_folder(args.out, unwrap_model(ddp_model), metadata).path
    barrier()
    return folder


#: arguments that are paths: the model folder records their names only
PATH_ARGUMENTS = ("cohort", "val_cohort", "out", "run_dir", "cache_dir", "artery_model")


def main(argv: Sequence[str] | None = None) -> int:
    ok, folder, _ = run_training(parse_args(argv), train)
    if not ok:
        return 2
    if folder:
        log.info("model folder: %s", folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

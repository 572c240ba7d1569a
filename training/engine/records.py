"""Pieces of a model folder's ``metadata.json`` that every patch trainer writes the same way.

Every trainer records how a run went with the same keys: what the schedule did (epochs and steps done, mean
throughput, wall time) and the optimiser in words; the artery and segmenter trainers (and their fine-tunes) also
their patch settings and the fixed validation patches' figures. Building them here keeps those keys and their meaning one thing.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from .loop import FitResult

#: the loss of the artery and segmenter networks, as the metadata states it
DICE_BCE_LOSS = "soft Dice (batch) + binary cross-entropy"


def optimizer_text(lr: float, weight_decay: float, schedule: str = "cosine per step to 2%") -> str:
    """The optimiser every trainer uses (AdamW) and its learning-rate ``schedule``, as the metadata states them
    (the patch trainers' cosine by default)."""
    return f"AdamW lr {lr} wd {weight_decay}, {schedule}"


def run_figures(result: FitResult, seconds: float) -> dict[str, Any]:
    """``epochs_done``, ``steps``, ``samples_per_s`` (mean over the epochs of this call; ``None`` without any)
    and ``wall_s`` of a :func:`~training.engine.fit` run."""
    rates = [float(r["samples_per_s"]) for r in result.history
             if r.get("samples_per_s") is not None and not math.isnan(float(r["samples_per_s"]))]
    return {"epochs_done": result.state.epoch, "steps": result.state.step,
            "samples_per_s": round(sum(rates) / len(rates), 3) if rates else None, "wall_s": round(seconds, 1)}


def patch_metrics(result: FitResult) -> dict[str, Any]:
    """The last epoch's Dice and loss on the fixed validation patches, and the best Dice of the run."""
    last = result.history[-1] if result.history else {}
    return {"val_patch_dice": last.get("val_dice"), "val_patch_loss": last.get("val_loss"),
            "best_val_patch_dice": result.state.best_metric}


def patch_run_record(args: argparse.Namespace, result: FitResult, seconds: float, *, world_size: int,
                     patch_zyx: Sequence[int], augmentation: dict[str, Any], precision: str,
                     device: str) -> dict[str, Any]:
    """The ``metadata["training"]`` keys of a patch trainer's run: settings from ``args`` (seed, schedule,
    batch, optimiser, selection), the patch, the augmentation, where and how it ran, and :func:`run_figures`.
    Each trainer adds what its data were and how its patches are centred."""
    figures = run_figures(result, seconds)
    return {
        "seed": args.seed, "epochs": args.epochs, "epochs_done": figures["epochs_done"], "steps": figures["steps"],
        "patches_per_epoch": args.patches_per_epoch, "batch_size": args.batch_size, "world_size": world_size,
        "patch_zyx": [int(v) for v in patch_zyx], "optimizer": optimizer_text(args.lr, args.weight_decay),
        "loss": DICE_BCE_LOSS, "augmentation": augmentation, "precision": precision, "device": device,
        "selected": args.select, "samples_per_s": figures["samples_per_s"], "wall_s": figures["wall_s"],
    }

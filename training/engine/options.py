"""Command-line options the trainers share.

:func:`add_process_arguments`: what every trainer takes, the slice classifier's included (seeding, devices, threads,
data-loading workers, precision, optimiser weight decay, an early stop and progress). :func:`add_run_arguments`: those
plus what the patch trainers (the artery and segmenter trainers and ``pelabelup finetune``) take besides: where the
run goes (:func:`~training.engine.layout.add_output_arguments`, which the slice classifier takes too), their
schedule and validation. Each trainer adds its own data and network options around them."""

from __future__ import annotations

import argparse

from PELabelUpLib.cli.options import non_negative_float, non_negative_int, positive_float, positive_int
from PELabelUpLib.precision import TRAINING_PRECISIONS

from .layout import add_output_arguments


def add_process_arguments(p: argparse.ArgumentParser, *, progress: str = "lines") -> None:
    """The options of every trainer; ``progress`` is the default of ``--progress``."""
    p.add_argument("--weight-decay", type=non_negative_float, default=1e-4)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--num-workers", type=non_negative_int, default=0,
                   help="data-loading worker processes per training process")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=TRAINING_PRECISIONS, default="auto")
    p.add_argument("--cohort-description", default="", help="how the cohort was made, for the metadata")
    p.add_argument("--stop-after-epoch", type=positive_int, help="stop (checkpointed) after this many epochs")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default=progress)


def add_run_arguments(p: argparse.ArgumentParser, *, epochs: int, lr: float, patches_per_epoch: int,
                      val_cases: int) -> None:
    """The patch trainers' options, with the defaults that differ between them passed in."""
    add_output_arguments(p)
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--patches-per-epoch", type=positive_int, default=patches_per_epoch,
                   help="training patches drawn per epoch")
    p.add_argument("--batch-size", type=positive_int, default=2, help="per process")
    p.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate (AdamW, cosine to 2%%)")
    p.add_argument("--val-cases", type=non_negative_int, default=val_cases,
                   help="cases held out (the last ones) for the per-epoch Dice")
    p.add_argument("--val-patches", type=non_negative_int, default=6,
                   help="fixed validation patches per held-out case")
    p.add_argument("--select", choices=("last", "best"), default="last",
                   help="weights to ship: the last epoch's or the best patch Dice's")
    add_process_arguments(p)

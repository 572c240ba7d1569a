"""Where a trainer's run goes: the model folder it writes, the run folder of its logs and checkpoints, and resuming.

Every trainer (artery, segmenter, slice classifier, ``pelabelup finetune``) takes the same three options
(:func:`add_output_arguments`): ``--out`` is the model folder written when the schedule completes (it must not
exist), ``--run-dir`` holds ``train_steps.csv``, ``epochs.csv`` and ``checkpoints/`` (default ``<out>.run``
beside it), and ``--resume`` continues from ``<run-dir>/checkpoints/last.pt``. A run refused for bad input removes
the run folder it made, unless a checkpoint is in it (:func:`discard_unfinished_run`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PELabelUpLib.errors import InputError

from .loop import CHECKPOINT_DIR, LAST_CHECKPOINT


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--run-dir`` and ``--resume``."""
    p.add_argument("--out", type=Path, required=True, help="model folder to write (must not exist)")
    p.add_argument("--run-dir", type=Path, help="logs and checkpoints (default: <out>.run beside --out)")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoints/last.pt")


def resolve_run_dir(args: argparse.Namespace) -> Path:
    """Set ``args.run_dir`` to its default, ``<out>.run`` beside ``--out``, when it was not given; return it."""
    args.run_dir = args.run_dir or args.out.with_name(args.out.name + ".run")
    return args.run_dir


def last_checkpoint(args: argparse.Namespace) -> Path:
    """The checkpoint ``--resume`` continues from."""
    return args.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


def check_run_paths(args: argparse.Namespace) -> None:
    """Refuse a run that would overwrite a model folder or another run, or resume from nothing.

    Raises:
        FileExistsError: ``--out`` exists, or ``--run-dir`` holds a run and ``--resume`` was not given.
        InputError: ``--resume`` without a checkpoint in ``--run-dir``.
    """
    if args.out.exists():
        raise FileExistsError(f"{args.out}: model folder exists already; choose another --out or --version")
    last = last_checkpoint(args)
    if args.resume and not last.is_file():
        raise InputError(last, "nothing to resume: no checkpoint")
    if not args.resume and last.exists():
        raise FileExistsError(f"{args.run_dir}: holds a run already; pass --resume or choose another --run-dir")


def discard_unfinished_run(run_dir: Path) -> bool:
    """Remove a run folder that holds no checkpoint (what a refused run wrote: ``label_sources.csv``, logs,
    a cache); a folder with one is kept for ``--resume``. Returns whether it was removed."""
    if not run_dir.is_dir() or any((run_dir / CHECKPOINT_DIR).glob("*.pt")):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True

"""Command-line options shared by training (:mod:`training.segmenter.train`) and fine-tuning
(:mod:`training.finetune`), and the training cases they name (:mod:`training.segmenter.sources`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from PELabelUpLib.cli.options import fraction, positive_int
from PELabelUpLib.errors import InputError
from training.engine.layout import resolve_run_dir
from training.engine.options import add_run_arguments

from .sources import (
    SegmenterCase,
    datastore_cases,
    default_territory,
    merge_datastore,
    parse_label_source,
    parse_territory_source,
    resolve_cases,
)


def add_training_arguments(p: argparse.ArgumentParser, *, epochs: int, lr: float, datastore: bool = False) -> None:
    """Options shared by training and fine-tuning; with ``datastore``, ``--datastore`` too (and then ``--cohort``
    and ``--labels`` are optional)."""
    p.add_argument("--cohort", type=Path, required=not datastore,
                   help="cohort folder (cohort.csv; NIfTI or RSPECT layout)")
    p.add_argument("--labels", nargs="+", required=not datastore, default=[], metavar="SOURCE",
                   help="gt | pseudo:DIR | corrected:DIR, in order of precedence (first with a file wins)")
    if datastore:
        p.add_argument("--datastore", type=Path,
                       help="training datastore: its latest final masks come before every --labels source")
    p.add_argument("--territory", help="gt | pred:DIR (default: pred:DIR of the first pseudo source, else gt)")
    p.add_argument("--cache-dir", type=Path,
                   help="working-grid cache (default: <cohort>/.cache, or <run-dir>/cache without a cohort)")
    p.add_argument("--cache-workers", type=positive_int, default=1,
                   help="processes that bring the cases onto the working grid when the cache lacks them")
    add_run_arguments(p, epochs=epochs, lr=lr, patches_per_epoch=64, val_cases=2)
    p.add_argument("--label-fraction", type=fraction, default=0.6,
                   help="share of patches centred on label voxels (the rest on the territory)")
    p.add_argument("--augmentation", choices=("light", "none"), default="light",
                   help="light: x flips, HU scale/shift and noise (training.artery.data.Augmentation); none: off")


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults that depend on other arguments; label and territory sources parsed (folders checked).

    Raises:
        InputError: ``--cohort`` without ``--labels``.
        ValueError: ``--labels`` without ``--cohort``, or neither them nor ``--datastore``.
    """
    args.datastore = getattr(args, "datastore", None)
    if args.cohort is not None and not args.labels:
        raise InputError(args.cohort, "--cohort and --labels go together: give --labels, the label sources of its "
                                      "cases (gt | pseudo:DIR | corrected:DIR)")
    if args.cohort is None and args.labels:
        raise ValueError("--cohort and --labels go together: --labels names the label sources of a --cohort's cases")
    if args.cohort is None and args.datastore is None:
        raise ValueError("nothing to train on: give --cohort with --labels, or --datastore")
    resolve_run_dir(args)
    args.cache_dir = args.cache_dir or (args.cohort / ".cache" if args.cohort is not None else args.run_dir / "cache")
    args.label_sources = [parse_label_source(s) for s in args.labels]
    args.territory_source = (parse_territory_source(args.territory) if args.territory
                             else default_territory(args.label_sources))
    args.territory = args.territory_source.spec
    return args


def gather_cases(args: argparse.Namespace) -> list[SegmenterCase]:
    """The cohort's cases (:func:`~.sources.resolve_cases`), with the datastore's cases put first in line
    (:func:`~.sources.merge_datastore`) when ``args.datastore`` is set."""
    cases = resolve_cases(args.cohort, args.label_sources, args.territory_source) if args.cohort is not None else []
    if args.datastore is None:
        return cases
    territories = {key: c.territory_path for c in cases for key in (c.case_id, c.study_uid) if key}
    merged = merge_datastore(cases, datastore_cases(args.datastore, territories))
    if not merged:
        raise InputError(args.datastore, "no case to train on (no export with an artery territory)")
    return merged

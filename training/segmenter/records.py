"""What a segmenter model folder records: its metadata, and which label file each training case used.

Label files are named relative to their source folder's parent (``predictions/<case>/pseudomask.nii.gz``), and the
metadata keeps label kinds, not folders: nothing machine-specific goes into a model folder.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PELabelUpLib.models.segmenter import SegmenterPreprocessing
from training.engine import FitResult
from training.engine.records import patch_metrics, patch_run_record

from .lineage import BaseModel, lineage
from .sources import SegmenterCase

MODEL_NAME = "pelabelup-segmenter"
LABEL_SOURCES_CSV = "label_sources.csv"


def _shown(path: Path, root: Path) -> str:
    """A label file named relative to its source folder's parent (no machine-specific prefix)."""
    try:
        return str(path.resolve().relative_to(root.resolve().parent))
    except ValueError:
        return path.name


def case_records(cases: Sequence[SegmenterCase], cohort: Path | None, role: str) -> list[dict[str, str]]:
    """Per case: its id, ``role`` (``train`` or ``val``), label kind, ``source`` (``gt``, ``pseudo``, ``corrected``
    or ``datastore``) and label file (relative), for the metadata and ``label_sources.csv``."""
    out = []
    for c in cases:
        root = Path(c.label_spec.partition(":")[2]) if ":" in c.label_spec else cohort
        out.append({"case_id": c.case_id, "role": role, "labels": c.label_kind, "source": c.label_spec.partition(":")[0],
                    "label_file": _shown(c.label_path, root) if root is not None else c.label_path.name})
    return out


def write_label_sources(path: Path, records: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "role", "labels", "source", "label_file"])
        writer.writeheader()
        writer.writerows(records)


def model_metadata(args: argparse.Namespace, spec: dict[str, Any], prep: SegmenterPreprocessing, result: FitResult,
                   records: list[dict[str, str]], val_ids: list[str], seconds: float, precision: str,
                   augmentation: dict[str, Any], base: BaseModel | None) -> dict[str, Any]:
    """The model folder's metadata; with ``base``, the lineage of a fine-tuned version
    (:func:`~training.segmenter.lineage.lineage`)."""
    counts = {k: sum(r["labels"] == k for r in records if r["role"] == "train") for k in ("corrected", "pseudo", "gt")}
    n_train = sum(r["role"] == "train" for r in records)
    label_words = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    meta: dict[str, Any] = {
        "name": MODEL_NAME, "version": args.version, "task": "segmenter", "network": spec,
        "preprocessing": prep.as_metadata(),
        "inputs": "CT in HU and its artery territory (0/1), any grid: cut to the grown territory's box plus "
                  "preprocessing.context_mm, resampled (linear) to preprocessing.spacing_mm; channels "
                  "(CT in preprocessing.window_hu mapped to [0, 1], territory); the network sees (N, 2, Z, Y, X)",
        "outputs": "(N, 1, Z, Y, X) embolus logits; sigmoid >= preprocessing.threshold inside the territory grown "
                   "by preprocessing.territory_dilation_mm is embolus, put back on the input grid",
        "training": {
            "cohort": {"name": args.cohort.name if args.cohort is not None else None,
                       "description": args.cohort_description, "train_cases": n_train, "val_cases": val_ids},
            # kinds only: the folders are machine-specific
            "labels": (["datastore"] if args.datastore is not None else []) + [s.partition(":")[0] for s in args.labels],
            "label_counts": counts, "territory": args.territory.partition(":")[0], "cases": records,
            "label_fraction": args.label_fraction,
        } | patch_run_record(args, result, seconds, world_size=args.world_size, patch_zyx=prep.roi_size,
                             augmentation=augmentation, precision=precision, device=args.device_used),
        "metrics": patch_metrics(result),
    }
    if args.datastore is not None:
        meta["training"]["datastore"] = {"name": args.datastore.name,
                                         "cases": sum(r["source"] == "datastore" for r in records)}
    if base is None:
        meta["changelog"] = [f"{args.version}: DynUNet trained on {n_train} cases ({label_words}; "
                             f"{args.epochs} epochs of {args.patches_per_epoch} patches)"]
        return meta
    entry = (f"fine-tuned from {base.name} {base.version} on {n_train} cases ({label_words}; "
             f"{args.epochs} epochs of {args.patches_per_epoch} patches)")
    meta |= lineage(base, args.version, entry)
    meta["training"]["base"] = {"name": base.name, "version": base.version, "sha256": base.metadata["sha256"]}
    return meta

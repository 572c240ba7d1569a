"""What the evaluate command lines of the trainers share: their common options, logging, and where results go.

``python -m training.artery.evaluate`` and ``python -m training.segmenter.evaluate`` score a model folder on
held-out data; both take ``--model``, ``--write`` (merge the figures into the folder's ``metadata["metrics"]``),
``--json`` (every score, per case), ``--threads`` and ``--device``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from PELabelUpLib.models.folder import METADATA_FILE, read_model_folder

log = logging.getLogger("training.evaluate")


def evaluate_parser(prog: str, description: str, *, model_help: str = "model folder") -> argparse.ArgumentParser:
    """A parser with the options every evaluate command line has; the caller adds its data options."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--model", type=Path, required=True, help=model_help)
    p.add_argument("--write", action="store_true", help="record the figures in the model's metadata")
    p.add_argument("--json", type=Path, help="also write every score (per case) to this JSON file")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    return p


def start_evaluation(args: argparse.Namespace) -> None:
    """Log with times to stderr; set torch's CPU threads when asked."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)


def brief_figures(summary: dict[str, Any], *, drop: tuple[str, ...] = ("per_case",)) -> dict[str, Any]:
    """A summary without its per-case lists (``drop``), floats rounded to 4 places: what goes into metadata."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items() if k not in drop}


def record_metrics(model_dir: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge ``metrics`` into a model folder's ``metadata["metrics"]`` (atomic rewrite of ``metadata.json``).

    Returns the new metadata. The weights file and its recorded sha256 are not touched.
    """
    metadata = dict(read_model_folder(model_dir).metadata)
    metadata["metrics"] = dict(metadata.get("metrics") or {}) | metrics
    rewrite_metadata(model_dir, metadata)
    return metadata


def rewrite_metadata(model_dir: str | Path, metadata: dict[str, Any]) -> None:
    """Replace a model folder's ``metadata.json`` with ``metadata`` (atomic; the weights and their recorded
    sha256 are not touched)."""
    path = read_model_folder(model_dir).path / METADATA_FILE
    tmp = path.with_name(f".{METADATA_FILE}.tmp")
    tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    tmp.replace(path)


def finish_evaluation(args: argparse.Namespace, report: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Log ``metrics``, write ``report`` to ``--json`` and, with ``--write``, merge ``metrics`` into the model."""
    for name, values in metrics.items():
        log.info("%s: %s", name, json.dumps(values))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.write and metrics:
        record_metrics(args.model, metrics)
        log.info("metrics recorded in %s", Path(args.model) / METADATA_FILE)

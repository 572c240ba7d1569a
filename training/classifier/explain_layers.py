"""Choose the layers a classifier is explained at: the slice pointing game of Grad-CAM (or Grad-CAM++) at each
candidate set of layers, on a validation cohort with ground truth.

A classifier's metadata may name its explanation layers (``explanation.target_layers``, read by
:func:`PELabelUpLib.explain.registry.explainer_for_model`); without them the Grad-CAM family explains the last
convolution, whose coarse grid can put the peak beside a clot rather than on it. This scores the heat the chain's
first round makes (each explained slice's map times its PE probability, :func:`~PELabelUpLib.labelup.slices.
explain_slices`) at each candidate, in the territories the chain used (``--territory pred:DIR``: analysis or
prediction folders with ``arteries.nii.gz``; ``gt``: the cohort's artery masks)::

    python -m training.classifier.explain_layers --model models/pelabelup-classifier --cohort cohort-val \\
        --territory pred:predictions-val --layers default features.1.5 features.1.5,features.3.3

Each ``--layers`` entry is one candidate: ``default`` (the last convolution) or comma-separated layer names (the
maps of several layers are averaged). Prints the pointing (a hit: the slice's hottest pixel within 5 mm of an
embolus; :func:`~PELabelUpLib.evaluate.pointing.pointing_hits`) over every positive axial slice, per candidate;
``--write CANDIDATE`` records that candidate in the model folder's metadata (weights untouched): for Grad-CAM as
``explanation.target_layers`` (every Grad-CAM-family explainer's default), for ``--explainer gradcampp`` as
``explanation.gradcampp.target_layers``. A Grad-CAM++ layer so recorded also makes Grad-CAM++ the classifier's
explainer under the chain's default ``--explainer auto``
(:func:`~PELabelUpLib.explain.registry.resolve_explainer`); choose it on validation data only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate.pointing import DEFAULT_TOLERANCE_MM, pointing_hits
from PELabelUpLib.evaluate.predictions import read_cohort
from PELabelUpLib.explain.registry import EXPLAINERS, get_explainer
from PELabelUpLib.io import load_ct, read_label_file
from PELabelUpLib.labelup.pipeline import LabelUpSettings
from PELabelUpLib.labelup.slices import classify_slices, slice_heat
from PELabelUpLib.models.folder import METADATA_FILE, load_model, read_model_folder
from PELabelUpLib.models.slices import SliceSpec, build_slice_stack
from training.engine.evaluate_cli import rewrite_metadata
from training.segmenter.data import read_mask_on
from training.segmenter.sources import TerritorySource, parse_territory_source

log = logging.getLogger("training.classifier.explain_layers")

DEFAULT = "default"


def parse_candidate(text: str) -> tuple[str, ...] | None:
    """``default`` -> ``None`` (the explainer's own layer); ``a,b`` -> ``("a", "b")``."""
    if text == DEFAULT:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise ValueError(f"a layer candidate is 'default' or comma-separated layer names, got {text!r}")
    return names


def slice_pointing(cohort: str | Path, network: nn.Module, metadata: dict[str, Any], territory: TerritorySource,
                   candidates: Sequence[tuple[str, ...] | None], *, explainer: str = "gradcam",
                   device: str = "cpu", limit: int | None = None) -> list[dict[str, Any]]:
    """Per candidate: slice pointing hits and positive slices over the cohort's positive cases (first ``limit``)."""
    spec, settings = SliceSpec.from_metadata(metadata), LabelUpSettings()
    explainers = [get_explainer(explainer) if c is None else get_explainer(explainer, target_layers=c)
                  for c in candidates]
    hits: list[list[float]] = [[] for _ in candidates]
    studies = 0
    for row in read_cohort(cohort):
        if limit is not None and studies >= limit:
            break
        territory_path, truth_path = territory.file_for(row), row.truth_dir / "emboli.nii.gz"
        if row.ct_path is None or territory_path is None or not truth_path.is_file():
            log.warning("%s: skipped (CT, territory or emboli.nii.gz missing)", row.case_id)
            continue
        truth, _ = read_label_file(truth_path)
        positive = np.flatnonzero(truth.any(axis=(1, 2)))
        if positive.size == 0:
            continue
        studies += 1
        volume = load_ct(row.ct_path)
        stack = build_slice_stack(volume.hu, read_mask_on(territory_path, volume.geometry),
                                  volume.geometry.spacing_mm, spec)
        probs = classify_slices(stack, network, spec, device=device)
        for i, chosen in enumerate(explainers):
            heat = slice_heat(stack, network, spec, chosen, probs, settings.explain_min_probability, device=device)
            if heat is None:
                heat = np.zeros(volume.hu.shape, dtype=np.float32)
            hits[i].extend(pointing_hits((heat[k] for k in positive), (truth[k] for k in positive),
                                         spacing_mm=volume.geometry.spacing_mm[:2]).tolist())
        log.info("%s: %d positive slices", row.case_id, positive.size)
    if studies == 0:
        raise InputError(cohort, "no positive case with a CT, a territory and emboli.nii.gz")
    return [{"layers": DEFAULT if c is None else ",".join(c), "pointing": float(np.mean(h)) if h else None,
             "hits": int(np.sum(h)), "positive_slices": len(h), "studies": studies}
            for c, h in zip(candidates, hits, strict=True)]


def record_layers(model_dir: str | Path, layers: tuple[str, ...] | None, explainer: str = "gradcam") -> None:
    """Write the layers into a model folder's metadata (``None``: remove them): for Grad-CAM as
    ``explanation.target_layers``, which every layered explainer reads unless it has its own; for another
    explainer as ``explanation.<explainer>.target_layers``."""
    metadata = dict(read_model_folder(model_dir).metadata)
    explanation = dict(metadata.get("explanation") or {})
    target = explanation if explainer == "gradcam" else dict(explanation.get(explainer) or {})
    if layers is None:
        target.pop("target_layers", None)
    else:
        target["target_layers"] = list(layers)
    if explainer != "gradcam":
        if target:
            explanation[explainer] = target
        else:
            explanation.pop(explainer, None)
    if explanation:
        metadata["explanation"] = explanation
    else:
        metadata.pop("explanation", None)
    rewrite_metadata(model_dir, metadata)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.classifier.explain_layers",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="classifier model folder")
    p.add_argument("--cohort", type=Path, required=True, help="cohort with ground truth (cohort.csv)")
    p.add_argument("--territory", default="gt", help="gt | pred:DIR (default: gt)")
    p.add_argument("--layers", nargs="+", default=[DEFAULT], metavar="CANDIDATE",
                   help="'default' or comma-separated layer names, one candidate each")
    p.add_argument("--explainer", choices=[n for n, s in EXPLAINERS.items() if s.layered], default="gradcam")
    p.add_argument("--limit", type=int, help="only the first N positive cases")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--write", metavar="CANDIDATE", help="record this candidate in the model's metadata")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        candidates = [parse_candidate(c) for c in args.layers]
        chosen = parse_candidate(args.write) if args.write else None
        network, metadata = load_model(args.model, device=args.device)
        results = slice_pointing(args.cohort, network, metadata, parse_territory_source(args.territory), candidates,
                                 explainer=args.explainer, device=args.device, limit=args.limit)
    except (InputError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(f"{'layers':40s} {'pointing':>8s} {'hits':>6s} {'slices':>6s}  ({results[0]['studies']} positive studies, "
          f"{args.explainer}, tolerance {DEFAULT_TOLERANCE_MM:g} mm)")
    for r in results:
        print(f"{r['layers']:40s} {r['pointing']:8.3f} {r['hits']:6d} {r['positive_slices']:6d}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.write:
        record_layers(args.model, chosen, args.explainer)
        log.info("explanation layers %s recorded in %s", args.write, Path(args.model) / METADATA_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

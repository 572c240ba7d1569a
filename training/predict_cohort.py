"""Run the label-up chain over a cohort and write one prediction folder per case (then ``pelabelup evaluate``).

    python -m training.predict_cohort --cohort COHORT --out PREDICTIONS \\
        --artery-model Resources/Models/pelabelup-arteries --classifier-model models/pelabelup-classifier [--explainer gradcam]
    pelabelup evaluate --cohort COHORT --predictions PREDICTIONS --out REPORT

Each case folder holds ``result.json``, ``heatmap.nii.gz``, ``pseudomask.nii.gz`` and ``arteries.nii.gz`` on the
case's own grid (:mod:`PELabelUpLib.labelup.outputs`). Finished cases are kept when the command is run again.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from PELabelUpLib.errors import PELabelUpError
from PELabelUpLib.evaluate.predictions import read_cohort
from PELabelUpLib.explain.registry import explainer_choices
from PELabelUpLib.io import load_ct, read_label_file
from PELabelUpLib.labelup.outputs import write_labelup_outputs
from PELabelUpLib.labelup.pipeline import LabelUpSettings, label_up_case
from PELabelUpLib.models.folder import load_model

log = logging.getLogger("training.predict_cohort")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.predict_cohort", description=__doc__.split("\n")[0])
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder (cohort.csv), either layout")
    p.add_argument("--out", type=Path, required=True, help="predictions folder (one sub-folder per case)")
    p.add_argument("--artery-model", type=Path, required=True)
    p.add_argument("--territory", choices=("model", "gt"), default="model",
                   help="gt: use the cohort's artery masks instead of the artery model (to measure the rest of "
                        "the chain apart from the territory)")
    p.add_argument("--classifier-model", type=Path, required=True)
    p.add_argument("--explainer", choices=explainer_choices(), default=LabelUpSettings.explainer)
    p.add_argument("--max-rounds", type=int, default=LabelUpSettings.max_rounds, help="iExplain rounds at most")
    p.add_argument("--heat-low", type=float, default=LabelUpSettings.heat_low)
    p.add_argument("--heat-high", type=float, default=LabelUpSettings.heat_high)
    p.add_argument("--wall-clear-mm", type=_mm_or_off, default=LabelUpSettings.wall_clear_mm,
                   help="candidates also from the territory's wall where no opacified lumen lies within this many mm "
                        "(default: off)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--limit", type=int, help="only the first N cases")
    return p.parse_args(argv)


def _mm_or_off(text: str) -> float | None:
    if text.lower() in ("off", "none"):
        return None
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a distance in mm >= 0 or 'off', got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = replace(LabelUpSettings(), explainer=args.explainer, max_rounds=args.max_rounds,
                       heat_low=args.heat_low, heat_high=args.heat_high, wall_clear_mm=args.wall_clear_mm)
    try:
        artery = load_model(args.artery_model, device=args.device)
        classifier = load_model(args.classifier_model, device=args.device)
        cases = read_cohort(args.cohort)[: args.limit]
    except PELabelUpError as exc:
        print(f"predict_cohort: error: {exc}", file=sys.stderr)
        return 2
    models = [{k: m[1][k] for k in ("name", "version", "sha256")} for m in (artery, classifier)]
    started = time.perf_counter()
    for case in tqdm(cases, unit="case", desc="label-up"):
        folder = args.out / case.case_id
        if (folder / "result.json").is_file():
            continue
        if case.ct_path is None:
            print(f"predict_cohort: error: {case.truth_dir}: no CT for case {case.case_id}", file=sys.stderr)
            return 2
        volume = load_ct(case.ct_path)
        territory = read_label_file(case.truth_dir / "arteries.nii.gz")[0] if args.territory == "gt" else None
        result = label_up_case(volume, artery, classifier, settings=settings, device=args.device, territory=territory)
        write_labelup_outputs(folder, result, volume, settings, models,
                              {"device": args.device, "territory_source": args.territory})
    print(f"{len(cases)} cases in {time.perf_counter() - started:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
